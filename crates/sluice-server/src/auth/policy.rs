//! Cedar policies: rules beyond roles, server-level (`auth.cedar_policy_file`) and per database
//! (`[databases.<name>] policy`).
//!
//! The request Cedar sees is built only from server-side facts, never from request bodies:
//! - principal `Actor::"<actor>"`;
//! - action `Action::"read"`, `Action::"write"` or `Action::"admin"` (the route's class);
//! - resource `Database::"<db>"`, or `Server::"sluice"` for server-level routes;
//! - context `{role, route, method, database}`: the actor's role on that database (`"none"`
//!   when it has none), the route template (`/ts/put`, database prefix removed), the HTTP
//!   method, the database name (`""` for server-level routes).
//!
//! Roles are themselves written as Cedar ([`ROLE_POLICIES`]) and evaluated with the configured
//! policies, so one rule decides: a request is allowed when some policy permits it and none
//! forbids it. A `forbid` narrows what a role grants; a `permit` grants beyond roles. With no
//! policies configured the same rule is evaluated by a direct role check (no Cedar on the hot
//! path); a test checks the two agree.
//!
//! Server-level and database policies are separate policy sets (their ids would clash); both
//! are evaluated and combined with the same rule.

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, RestrictedExpression,
};

use super::Action;

/// What roles grant, as Cedar.
pub const ROLE_POLICIES: &str = r#"
permit(principal, action == Action::"read", resource)
  when { context.role == "reader" || context.role == "writer" || context.role == "admin" };
permit(principal, action == Action::"write", resource)
  when { context.role == "writer" || context.role == "admin" };
permit(principal, action == Action::"admin", resource)
  when { context.role == "admin" };
"#;

/// A parsed policy set.
pub struct CompiledPolicy {
    set: PolicySet,
}

/// Parses Cedar policy text.
pub fn compile(text: &str) -> Result<CompiledPolicy, String> {
    let set: PolicySet = text
        .parse()
        .map_err(|e: cedar_policy::ParseErrors| format!("invalid Cedar policy: {e}"))?;
    Ok(CompiledPolicy { set })
}

/// The facts of one authorization question.
pub struct Question<'a> {
    pub actor: &'a str,
    pub action: Action,
    /// `None` for server-level routes.
    pub database: Option<&'a str>,
    pub role: &'a str,
    pub route: &'a str,
    pub method: &'a str,
}

/// What one policy set says about a question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Permit,
    Forbid,
    Silent,
}

impl CompiledPolicy {
    pub fn evaluate(&self, q: &Question<'_>) -> Verdict {
        let Some(request) = request(q) else {
            return Verdict::Forbid;
        };
        let response = Authorizer::new().is_authorized(&request, &self.set, &Entities::empty());
        // A policy that fails to evaluate (a typo'd context field, an attribute of an entity
        // Cedar is not given) might have been a `forbid`: fail closed.
        let mut failed = false;
        for e in response.diagnostics().errors() {
            tracing::warn!(error = %e, "a Cedar policy failed to evaluate; denying the request");
            failed = true;
        }
        match response.decision() {
            _ if failed => Verdict::Forbid,
            Decision::Allow => Verdict::Permit,
            // A deny with reasons is a satisfied `forbid`; without, nothing permitted.
            Decision::Deny if response.diagnostics().reason().next().is_some() => Verdict::Forbid,
            Decision::Deny => Verdict::Silent,
        }
    }
}

/// Combines verdicts: allowed when something permits and nothing forbids.
pub fn allowed(verdicts: &[Verdict]) -> bool {
    verdicts.contains(&Verdict::Permit) && !verdicts.contains(&Verdict::Forbid)
}

fn request(q: &Question<'_>) -> Option<Request> {
    let uid = |ty: &str, id: &str| -> Option<EntityUid> {
        let escaped = id.escape_default().to_string();
        format!("{ty}::\"{escaped}\"").parse().ok()
    };
    let principal = uid("Actor", q.actor)?;
    let action = uid("Action", q.action.as_str())?;
    let resource = match q.database {
        Some(db) => uid("Database", db)?,
        None => uid("Server", "sluice")?,
    };
    let context = Context::from_pairs([
        (
            "role".to_string(),
            RestrictedExpression::new_string(q.role.to_string()),
        ),
        (
            "route".to_string(),
            RestrictedExpression::new_string(q.route.to_string()),
        ),
        (
            "method".to_string(),
            RestrictedExpression::new_string(q.method.to_string()),
        ),
        (
            "database".to_string(),
            RestrictedExpression::new_string(q.database.unwrap_or("").to_string()),
        ),
    ])
    .ok()?;
    Request::new(principal, action, resource, context, None).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn q<'a>(action: Action, role: &'a str, db: Option<&'a str>) -> Question<'a> {
        Question {
            actor: "alice",
            action,
            database: db,
            role,
            route: "/ts/put",
            method: "POST",
        }
    }

    #[test]
    fn role_policies_agree_with_the_direct_role_check() {
        let roles = compile(ROLE_POLICIES).unwrap();
        for role in [
            None,
            Some(Role::Reader),
            Some(Role::Writer),
            Some(Role::Admin),
        ] {
            for action in [Action::Read, Action::Write, Action::Admin] {
                let name = role.map_or("none", |r| r.as_str());
                let cedar = allowed(&[roles.evaluate(&q(action, name, Some("db1")))]);
                let direct = role.is_some_and(|r| r.grants(action));
                assert_eq!(cedar, direct, "{name} {action:?}");
            }
        }
    }

    #[test]
    fn forbid_narrows_and_permit_extends() {
        let roles = compile(ROLE_POLICIES).unwrap();
        let extra = compile(
            r#"forbid(principal == Actor::"alice", action == Action::"write", resource == Database::"db1")
                 when { context.route == "/ts/put" };
               permit(principal == Actor::"bob", action == Action::"read", resource);"#,
        )
        .unwrap();
        let alice_write = q(Action::Write, "writer", Some("db1"));
        assert!(!allowed(&[
            roles.evaluate(&alice_write),
            extra.evaluate(&alice_write)
        ]));
        let alice_other_db = q(Action::Write, "writer", Some("db2"));
        assert!(allowed(&[
            roles.evaluate(&alice_other_db),
            extra.evaluate(&alice_other_db)
        ]));
        let mut bob = q(Action::Read, "none", Some("db1"));
        bob.actor = "bob";
        assert!(allowed(&[roles.evaluate(&bob), extra.evaluate(&bob)]));
        bob.action = Action::Write;
        assert!(!allowed(&[roles.evaluate(&bob), extra.evaluate(&bob)]));
    }

    #[test]
    fn odd_names_do_not_break_requests() {
        let roles = compile(ROLE_POLICIES).unwrap();
        let mut question = q(Action::Read, "reader", Some("db1"));
        question.actor = "jwt:a\"b\\c\n";
        assert_eq!(roles.evaluate(&question), Verdict::Permit);
    }

    #[test]
    fn a_policy_that_fails_to_evaluate_denies() {
        let roles = compile(ROLE_POLICIES).unwrap();
        let typo =
            compile(r#"forbid(principal, action, resource) when { context.routes == "/ts/put" };"#)
                .unwrap();
        let question = q(Action::Read, "admin", Some("db1"));
        assert_eq!(typo.evaluate(&question), Verdict::Forbid);
        assert!(!allowed(&[
            roles.evaluate(&question),
            typo.evaluate(&question)
        ]));
    }

    #[test]
    fn bad_policy_text_is_an_error() {
        assert!(compile("permit(principal, action, resource").is_err());
        assert!(compile("allow everything").is_err());
    }
}
