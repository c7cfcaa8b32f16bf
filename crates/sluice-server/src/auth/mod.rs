//! Authentication and authorization, for every transport.
//!
//! - **Who** ([`Auth::authenticate`]): a bearer token (table of SHA-256 digests, see
//!   [`tokens`]) or a JWT ([`jwt`]); the `Bearer` scheme is matched case-insensitively. Missing
//!   or wrong credentials → 401 with `WWW-Authenticate: Bearer`. With no credentials configured
//!   the server is in dev mode: every request acts as `anonymous` with admin everywhere (and
//!   the start-up logs say so loudly).
//! - **What** ([`authz`]): every operation declares, where it is registered, an action —
//!   `read`, `write` or `admin` — and a scope: one database (the `{db}` of
//!   `/v1/databases/{db}/…`, the `db`/`bucket` parameter of line protocol, else `default`) or
//!   the server (database management, replication). Public routes (`/healthz`, `/readyz`,
//!   `/version`, `/openapi.json`, and `/metrics` unless `auth.public_metrics = false`) need no
//!   credentials; `/v1/ws` authenticates and authorizes per frame like the wire listener. An
//!   undeclared route is admin-only on the server (fail closed), and the authorization
//!   coverage test fails for it.
//! - **Allowed?** ([`Auth::authorize`]): the actor's role on the database (the larger of its
//!   role there and its `*` role; server scope uses `*`) grants `read` (reader), `write`
//!   (writer) or everything (admin); Cedar policies ([`policy`]) can narrow or extend that.
//!   Not allowed → 403.
//!
//! The transports apply it: HTTP in its route middleware (`http::authn`), the wire protocol
//! per frame; both before admission control, so unauthenticated traffic never consumes an
//! actor's budget.

pub mod authz;
pub mod jwt;
pub mod policy;
pub mod tokens;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use serde::Deserialize;

use crate::config::AuthConfig;

/// A role on a database. Ordered: each grants what the ones before it grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Writer,
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    pub fn grants(&self, action: Action) -> bool {
        match action {
            Action::Read => true,
            Action::Write => *self >= Role::Writer,
            Action::Admin => *self == Role::Admin,
        }
    }
}

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Admin,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Admin => "admin",
        }
    }
}

/// An actor's roles: per database, and `*` for every database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles(BTreeMap<String, Role>);

impl Roles {
    pub fn none() -> Roles {
        Roles::default()
    }

    pub fn admin_everywhere() -> Roles {
        Roles(BTreeMap::from([("*".to_string(), Role::Admin)]))
    }

    pub fn from_map(map: BTreeMap<String, Role>) -> Result<Roles, String> {
        for db in map.keys() {
            if db != "*" && !crate::catalogue::known_name(db) {
                return Err(format!("roles: {db:?} is not a database name or \"*\""));
            }
        }
        Ok(Roles(map))
    }

    /// The role on `db`: the larger of the role there and the `*` role.
    pub fn on(&self, db: &str) -> Option<Role> {
        self.0.get(db).copied().max(self.0.get("*").copied())
    }

    /// The role for server-level routes: the `*` role.
    pub fn on_server(&self) -> Option<Role> {
        self.0.get("*").copied()
    }

    /// Whether the actor has any role anywhere.
    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }
}

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub roles: Roles,
    /// When its credentials expire (JWT `exp`, Unix seconds); long-lived sessions (wire,
    /// WebSocket) re-check it on every frame.
    pub expires_at: Option<u64>,
}

impl Actor {
    pub fn expired(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.expires_at.is_some_and(|exp| exp <= now)
    }
}

/// Where a route acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One database (from the request).
    Database,
    /// The server as a whole (`*` role).
    Server,
    /// Any database the actor has a role on (the handler filters, e.g. listing databases).
    AnyDatabase,
}

/// Why a request is refused.
pub enum Refusal {
    Unauthenticated(&'static str),
    Forbidden(String),
}

/// Credentials and policies of a server.
pub struct Auth {
    tokens: tokens::TokenTable,
    jwt: Option<jwt::JwtVerifier>,
    roles_policy: policy::CompiledPolicy,
    server_policy: Option<policy::CompiledPolicy>,
    public_metrics: bool,
    dev_actor: Arc<Actor>,
}

impl Auth {
    pub fn from_config(c: &AuthConfig) -> Result<Auth, String> {
        let mut tokens = tokens::TokenTable::default();
        if !c.bearer_tokens_file.is_empty() {
            let text = std::fs::read_to_string(&c.bearer_tokens_file)
                .map_err(|e| format!("auth.bearer_tokens_file {}: {e}", c.bearer_tokens_file))?;
            tokens.add_json(
                &text,
                &format!("auth.bearer_tokens_file {}", c.bearer_tokens_file),
            )?;
        }
        if !c.bearer_tokens_json.is_empty() {
            tokens.add_json(&c.bearer_tokens_json, "auth.bearer_tokens_json")?;
        }
        if !c.bearer_token.is_empty() {
            tokens
                .add("default", &c.bearer_token, Roles::admin_everywhere())
                .map_err(|e| format!("auth.bearer_token: {e}"))?;
        }
        let jwt = jwt::JwtVerifier::from_config(&c.jwt).map_err(|e| format!("auth.jwt: {e}"))?;
        let server_policy = if c.cedar_policy_file.is_empty() {
            None
        } else {
            let text = std::fs::read_to_string(&c.cedar_policy_file)
                .map_err(|e| format!("auth.cedar_policy_file {}: {e}", c.cedar_policy_file))?;
            Some(
                policy::compile(&text)
                    .map_err(|e| format!("auth.cedar_policy_file {}: {e}", c.cedar_policy_file))?,
            )
        };
        Ok(Auth {
            tokens,
            jwt,
            roles_policy: policy::compile(policy::ROLE_POLICIES)?,
            server_policy,
            public_metrics: c.public_metrics,
            dev_actor: Arc::new(Actor {
                name: "anonymous".into(),
                roles: Roles::admin_everywhere(),
                expires_at: None,
            }),
        })
    }

    /// No credentials configured: everything is open.
    pub fn dev_mode(&self) -> bool {
        self.tokens.is_empty() && self.jwt.is_none()
    }

    pub fn public_metrics(&self) -> bool {
        self.public_metrics
    }

    /// The actor presenting `headers`' credentials.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Actor>, Refusal> {
        if self.dev_mode() {
            return Ok(self.dev_actor.clone());
        }
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(Refusal::Unauthenticated(
                "authentication required: send Authorization: Bearer <token>",
            ))?;
        let value = value
            .to_str()
            .map_err(|_| Refusal::Unauthenticated("malformed Authorization header"))?;
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or(Refusal::Unauthenticated("malformed Authorization header"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Refusal::Unauthenticated(
                "unsupported authorization scheme; use Bearer",
            ));
        }
        self.authenticate_token(token.trim())
    }

    /// The actor a bearer token (or JWT) stands for.
    pub fn authenticate_token(&self, token: &str) -> Result<Arc<Actor>, Refusal> {
        if self.dev_mode() {
            return Ok(self.dev_actor.clone());
        }
        let invalid = Refusal::Unauthenticated("invalid or expired credentials");
        if let Some(actor) = self.tokens.lookup(token) {
            return Ok(actor);
        }
        if let Some(jwt) = &self.jwt
            && token.bytes().filter(|b| *b == b'.').count() == 2
        {
            return match jwt.verify(token) {
                Ok(actor) => Ok(Arc::new(actor)),
                Err(why) => {
                    tracing::debug!(reason = %why, "JWT refused");
                    Err(invalid)
                }
            };
        }
        Err(invalid)
    }

    /// May `actor` do `action` on `database` (`None` = server scope) through `route`?
    pub fn authorize(
        &self,
        actor: &Actor,
        action: Action,
        database: Option<(&str, Option<&policy::CompiledPolicy>)>,
        route: &str,
        method: &str,
    ) -> Result<(), Refusal> {
        let role = match database {
            // The server's own metrics are read-only to ordinary writers (admins may write).
            Some((crate::catalogue::MONITORING_DB, _)) => actor
                .roles
                .on(crate::catalogue::MONITORING_DB)
                .map(|r| if r == Role::Writer { Role::Reader } else { r }),
            Some((db, _)) => actor.roles.on(db),
            None => actor.roles.on_server(),
        };
        let db_policy = database.and_then(|(_, p)| p);
        let ok = if self.server_policy.is_none() && db_policy.is_none() {
            role.is_some_and(|r| r.grants(action))
        } else {
            let q = policy::Question {
                actor: &actor.name,
                action,
                database: database.map(|(db, _)| db),
                role: role.map_or("none", |r| r.as_str()),
                route,
                method,
            };
            let mut verdicts = vec![self.roles_policy.evaluate(&q)];
            verdicts.extend(self.server_policy.iter().map(|p| p.evaluate(&q)));
            verdicts.extend(db_policy.map(|p| p.evaluate(&q)));
            policy::allowed(&verdicts)
        };
        if ok {
            Ok(())
        } else {
            let on = database.map_or("the server".to_string(), |(db, _)| {
                format!("database {db:?}")
            });
            Err(Refusal::Forbidden(format!(
                "actor {:?} may not {} on {on}",
                actor.name,
                action.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_take_the_larger_of_db_and_star() {
        let r = Roles::from_map(BTreeMap::from([
            ("*".to_string(), Role::Reader),
            ("db1".to_string(), Role::Admin),
        ]))
        .unwrap();
        assert_eq!(r.on("db1"), Some(Role::Admin));
        assert_eq!(r.on("db2"), Some(Role::Reader));
        assert_eq!(r.on_server(), Some(Role::Reader));
        assert!(Roles::from_map(BTreeMap::from([("Bad/Name".to_string(), Role::Reader)])).is_err());
    }
}
