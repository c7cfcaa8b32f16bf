//! Authorization declarations: what each operation needs, declared where it is registered.
//!
//! Every HTTP operation carries an `x-sluice-authz` extension in its `#[utoipa::path]`, so the
//! declaration sits next to the handler and is published in the served OpenAPI document:
//!
//! ```text
//! "public"                                   no credentials needed
//! "metrics"                                  public unless `auth.public_metrics = false`,
//!                                            then {"action": "read", "scope": "server"}
//! {"action": "read" | "write" | "admin",
//!  "scope": "database" | "server" | "any_database",
//!  "mutates": bool}                          optional; defaults to action == "write"
//! ```
//!
//! `mutates` marks what a read-only replica refuses (writes, creating and deleting databases
//! and collections); flushes, replication routes and reads do not mutate.
//!
//! [`RouteTable`] is built once from the OpenAPI document; the route middleware looks a request
//! up by (method, matched route). A route without a declaration is refused as admin-only on
//! the server (fail closed), and the authorization coverage test fails for it. Wire opcodes
//! declare theirs in `wire::opcode_authz` together with the HTTP route each one
//! mirrors; the same test holds both declarations equal.

use std::collections::HashMap;

use axum::http::Method;
use serde_json::Value;

use super::{Action, Scope};

/// The OpenAPI extension that holds an operation's declaration.
pub const EXTENSION: &str = "x-sluice-authz";

/// What an operation needs, as declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authz {
    Public,
    /// `/metrics`: public or `read` on the server, as configured.
    Metrics,
    Needs(Need),
}

/// An operation that needs credentials: the action and where it acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub action: Action,
    pub scope: Scope,
    /// Refused on a read-only replica.
    pub mutates: bool,
}

impl Need {
    /// What an undeclared route needs: the most anyone can be asked for.
    pub const FAIL_CLOSED: Need = Need {
        action: Action::Admin,
        scope: Scope::Server,
        mutates: true,
    };
}

impl Authz {
    /// Parses a declaration (see the module doc).
    pub fn from_json(v: &Value) -> Result<Authz, String> {
        match v {
            Value::String(s) if s == "public" => Ok(Authz::Public),
            Value::String(s) if s == "metrics" => Ok(Authz::Metrics),
            Value::Object(o) => {
                if let Some(k) = o
                    .keys()
                    .find(|k| !["action", "scope", "mutates"].contains(&k.as_str()))
                {
                    return Err(format!("unknown key {k:?}"));
                }
                let action = match o.get("action").and_then(Value::as_str) {
                    Some("read") => Action::Read,
                    Some("write") => Action::Write,
                    Some("admin") => Action::Admin,
                    other => return Err(format!("action must be read, write or admin: {other:?}")),
                };
                let scope = match o.get("scope").and_then(Value::as_str) {
                    Some("database") => Scope::Database,
                    Some("server") => Scope::Server,
                    Some("any_database") => Scope::AnyDatabase,
                    other => {
                        return Err(format!(
                            "scope must be database, server or any_database: {other:?}"
                        ));
                    }
                };
                let mutates = match o.get("mutates") {
                    None => action == Action::Write,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => return Err(format!("mutates must be a boolean: {other}")),
                };
                Ok(Authz::Needs(Need {
                    action,
                    scope,
                    mutates,
                }))
            }
            other => Err(format!(
                "expected \"public\", \"metrics\" or an object: {other}"
            )),
        }
    }

    /// What a request needs under this server's configuration; `None` when it is public.
    pub fn need(self, public_metrics: bool) -> Option<Need> {
        match self {
            Authz::Public => None,
            Authz::Metrics if public_metrics => None,
            Authz::Metrics => Some(Need {
                action: Action::Read,
                scope: Scope::Server,
                mutates: false,
            }),
            Authz::Needs(n) => Some(n),
        }
    }
}

/// Every operation's declaration, by route as registered, then method. Looked up on every
/// request: by `&str`, without allocating.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: HashMap<String, Vec<(Method, Authz)>>,
    /// Seed routes: operations whose success answer carries `success` (the seed's shape);
    /// their error answers carry `success: false`.
    /// By route as registered, then method (looked up by `&str` on every request, like
    /// `routes`).
    seed: HashMap<String, Vec<Method>>,
}

impl RouteTable {
    /// Reads the declarations of every operation of `api`. Errors name each operation whose
    /// declaration is missing or malformed (the table still holds the others).
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> (RouteTable, Vec<String>) {
        let mut table = RouteTable::default();
        let mut errors = Vec::new();
        for (path, item) in &api.paths.paths {
            for (method, op) in operations(item) {
                if answers_success_field(api, op) {
                    table
                        .seed
                        .entry(path.clone())
                        .or_default()
                        .push(method.clone());
                }
                let declared = op.extensions.as_ref().and_then(|e| e.get(EXTENSION));
                match declared.map(Authz::from_json) {
                    Some(Ok(authz)) => {
                        table
                            .routes
                            .entry(path.clone())
                            .or_default()
                            .push((method, authz));
                    }
                    Some(Err(e)) => errors.push(format!("{method} {path}: {EXTENSION}: {e}")),
                    None => errors.push(format!("{method} {path}: no {EXTENSION} declaration")),
                }
            }
        }
        (table, errors)
    }

    /// The declaration of a registered route (HEAD is GET).
    pub fn get(&self, method: &Method, route: &str) -> Option<Authz> {
        let method = head_as_get(method);
        self.routes
            .get(route)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, a)| *a)
    }

    /// What a request needs: `None` for a public route; an undeclared route fails closed.
    pub fn need(&self, method: &Method, route: &str, public_metrics: bool) -> Option<Need> {
        match self.get(method, route) {
            Some(authz) => authz.need(public_metrics),
            None => Some(Need::FAIL_CLOSED),
        }
    }

    /// Whether `route` (as registered) is a seed route for `method` (HEAD is GET).
    pub fn is_seed(&self, method: &Method, route: &str) -> bool {
        let method = head_as_get(method);
        self.seed
            .get(route)
            .is_some_and(|methods| methods.contains(method))
    }

    /// Whether the concrete `path` of a request (not yet routed) is a seed route for `method`:
    /// for answers made before routing (a body the decompression layer refuses).
    pub fn is_seed_path(&self, method: &Method, path: &str) -> bool {
        let method = head_as_get(method);
        self.seed.iter().any(|(template, methods)| {
            methods.contains(method) && {
                let (mut t, mut p) = (template.split('/'), path.split('/'));
                loop {
                    match (t.next(), p.next()) {
                        (None, None) => break true,
                        (Some(a), Some(b)) if a == b || (a.starts_with('{') && !b.is_empty()) => {}
                        _ => break false,
                    }
                }
            }
        })
    }

    /// Every (method, route) with its declaration.
    pub fn iter(&self) -> impl Iterator<Item = ((&Method, &str), &Authz)> {
        self.routes
            .iter()
            .flat_map(|(route, ops)| ops.iter().map(move |(m, a)| ((m, route.as_str()), a)))
    }
}

/// Whether a 2xx answer of `op` is a JSON object with a `success` property (through one
/// `$ref` to the components).
pub fn answers_success_field(
    api: &utoipa::openapi::OpenApi,
    op: &utoipa::openapi::path::Operation,
) -> bool {
    use utoipa::openapi::{RefOr, schema::Schema};
    let components = api.components.as_ref();
    op.responses
        .responses
        .iter()
        .filter(|(status, _)| status.starts_with('2'))
        .filter_map(|(_, r)| match r {
            RefOr::T(r) => r.content.get("application/json"),
            RefOr::Ref(_) => None,
        })
        .filter_map(|c| c.schema.as_ref())
        .any(|schema| {
            let resolved = match schema {
                RefOr::Ref(r) => r
                    .ref_location
                    .strip_prefix("#/components/schemas/")
                    .and_then(|name| components?.schemas.get(name)),
                t => Some(t),
            };
            matches!(resolved, Some(RefOr::T(Schema::Object(o))) if o.properties.contains_key("success"))
        })
}

/// HEAD is GET without a body: declared, authorized and shaped as GET.
fn head_as_get(method: &Method) -> &Method {
    if *method == Method::HEAD {
        &Method::GET
    } else {
        method
    }
}

/// The operations of a path item with their methods.
pub fn operations(
    item: &utoipa::openapi::PathItem,
) -> impl Iterator<Item = (Method, &utoipa::openapi::path::Operation)> {
    [
        (Method::GET, item.get.as_ref()),
        (Method::POST, item.post.as_ref()),
        (Method::PUT, item.put.as_ref()),
        (Method::DELETE, item.delete.as_ref()),
        (Method::PATCH, item.patch.as_ref()),
        (Method::HEAD, item.head.as_ref()),
        (Method::OPTIONS, item.options.as_ref()),
        (Method::TRACE, item.trace.as_ref()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declarations_parse_and_bad_ones_are_named() {
        assert_eq!(Authz::from_json(&json!("public")), Ok(Authz::Public));
        assert_eq!(
            Authz::from_json(&json!({"action": "write", "scope": "database"})),
            Ok(Authz::Needs(Need {
                action: Action::Write,
                scope: Scope::Database,
                mutates: true
            }))
        );
        assert_eq!(
            Authz::from_json(&json!({"action": "admin", "scope": "server"}))
                .map(|a| a.need(true).map(|n| n.mutates)),
            Ok(Some(false))
        );
        assert!(Authz::from_json(&json!({"action": "root", "scope": "server"})).is_err());
        assert!(Authz::from_json(&json!({"action": "read", "scope": "db"})).is_err());
        assert!(Authz::from_json(&json!({"action": "read", "scope": "server", "x": 1})).is_err());
        assert!(Authz::from_json(&json!("private")).is_err());
        assert_eq!(Authz::Metrics.need(true), None);
        assert_eq!(
            Authz::Metrics.need(false).map(|n| n.action),
            Some(Action::Read)
        );
    }

    #[test]
    fn an_undeclared_route_fails_closed() {
        let table = RouteTable::default();
        assert_eq!(
            table.need(&Method::GET, "/new", true),
            Some(Need::FAIL_CLOSED)
        );
    }
}
