//! Authentication and authorization at the HTTP edge: the part of the route guard that decides, for
//! each request, what its route declares (`x-sluice-authz`, see `crate::auth::authz`), who is
//! asking ([`Auth::authenticate`](crate::auth::Auth::authenticate)) and whether they may
//! ([`Auth::authorize`](crate::auth::Auth::authorize)), and which database it acts on. It runs
//! before admission control, so unauthenticated traffic never consumes an actor's budget, and
//! puts the [`Actor`] in the request's extensions for the layers and handlers after it.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use sluice_api::ErrorCode;

use crate::auth::{Refusal, Scope};
use crate::db::DEFAULT_DATABASE;
use crate::error::ApiError;
use crate::state::AppState;

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthenticated(why) => {
                let mut r = ApiError::new(ErrorCode::Unauthenticated, why).into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sluice\""),
                );
                r
            }
            Refusal::Forbidden(why) => ApiError::new(ErrorCode::Forbidden, why).into_response(),
        }
    }
}

/// The database a request acts on, decided once by [`request_database`] (in the middleware)
/// and read from the request's extensions by the handlers' extractors, so authorization and
/// the handler can never disagree about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetDatabase(pub String);

/// The database a request acts on: the `{db}` of `/v1/databases/{db}/…` (percent-decoded; not
/// UTF-8 → 400), else, for line protocol, its `db` (or else `bucket`) query parameter decoded
/// like the query string parser does (keys included; given twice → 400), else `default`.
pub fn request_database(route: &str, uri: &axum::http::Uri) -> Result<String, ApiError> {
    let bad = |what: &str| {
        ApiError::new(
            ErrorCode::InvalidDatabase,
            format!("the database name in the {what} is not valid"),
        )
    };
    if route.starts_with("/v1/databases/{db}") {
        let rest = uri.path().strip_prefix("/v1/databases/").unwrap_or("");
        let seg = rest.split('/').next().unwrap_or("");
        return percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| bad("path"));
    }
    if route == "/write" || route == "/api/v2/write" {
        let (mut db, mut bucket) = (None, None);
        for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "db" => &mut db,
                "bucket" => &mut bucket,
                _ => continue,
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(bad("query (given twice)"));
            }
        }
        if let Some(name) = db.or(bucket) {
            return Ok(name);
        }
    }
    Ok(DEFAULT_DATABASE.to_string())
}

/// Authenticates, looks up the route's declaration, authorizes; puts the [`Actor`] in the
/// request's extensions. `Err` is the refusal to answer. Part of the route guard
/// (`crate::http::middleware::guard`).
pub fn check(state: &AppState, req: &mut Request) -> Result<(), Box<Response>> {
    let auth = state.auth();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("", |p| p.as_str());
    let table = state.route_table();
    if table.is_seed(req.method(), route) {
        crate::request_id::mark_seed_route();
    }
    let Some(need) = table.need(req.method(), route, auth.public_metrics()) else {
        return Ok(());
    };
    let (action, scope) = (need.action, need.scope);
    let actor = auth
        .authenticate(req.headers())
        .map_err(|r| Box::new(r.into_response()))?;
    // Database policies exist only once recovery has finished: decide nothing before.
    if state.databases().is_none() {
        return Err(Box::new(ApiError::not_ready().into_response()));
    }
    let short_route = route
        .strip_prefix("/v1/databases/{db}")
        .filter(|r| r.starts_with('/'))
        .unwrap_or(route);
    // HEAD is GET without a body: policies see one method.
    let method = if req.method() == Method::HEAD {
        "GET".to_string()
    } else {
        req.method().as_str().to_string()
    };
    let decision = match scope {
        Scope::Server => auth.authorize(&actor, action, None, short_route, &method),
        Scope::AnyDatabase => {
            if actor.roles.any() || auth.dev_mode() {
                Ok(())
            } else {
                Err(Refusal::Forbidden(format!(
                    "actor {:?} has no role on any database",
                    actor.name
                )))
            }
        }
        Scope::Database => {
            let name =
                request_database(route, req.uri()).map_err(|e| Box::new(e.into_response()))?;
            req.extensions_mut().insert(TargetDatabase(name.clone()));
            // An unknown database: decide on roles alone (its policy does not exist), and let
            // the handler answer 404 to those allowed to know.
            let db = state.databases().and_then(|d| d.get(&name));
            let policy = db.as_ref().and_then(|d| d.policy.as_deref());
            auth.authorize(&actor, action, Some((&name, policy)), short_route, &method)
        }
    };
    decision.map_err(|r| Box::new(r.into_response()))?;
    if need.mutates
        && let Some(refusal) = state.replication().refuse_write()
    {
        return Err(Box::new(refusal.into_response()));
    }
    req.extensions_mut().insert(actor);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_of_a_request() {
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        let db = |route: &str, u: &str| request_database(route, &uri(u)).ok();
        assert_eq!(db("/ts/put", "/ts/put").as_deref(), Some("default"));
        let nested = "/v1/databases/{db}/ts/put";
        assert_eq!(
            db(nested, "/v1/databases/db%31/ts/put").as_deref(),
            Some("db1")
        );
        assert_eq!(db(nested, "/v1/databases/%FF/ts/put"), None, "not UTF-8");
        assert_eq!(
            db(nested, "/v1/databases/a+b/ts/put").as_deref(),
            Some("a+b")
        );
        assert_eq!(
            db("/write", "/write?db=x&precision=s").as_deref(),
            Some("x")
        );
        assert_eq!(
            db("/write", "/write?%64b=x").as_deref(),
            Some("x"),
            "encoded key"
        );
        assert_eq!(db("/write", "/write?b%75cket=y").as_deref(), Some("y"));
        assert_eq!(db("/write", "/write?bucket=y&db=x").as_deref(), Some("x"));
        assert_eq!(db("/write", "/write?db=x&%64b=z"), None, "given twice");
        assert_eq!(
            db("/api/v2/write", "/api/v2/write?bucket=y").as_deref(),
            Some("y")
        );
        assert_eq!(db("/ts/put", "/ts/put?db=x").as_deref(), Some("default"));
        let nested_lp = "/v1/databases/{db}/write";
        assert_eq!(
            db(nested_lp, "/v1/databases/a/write?db=b").as_deref(),
            Some("a")
        );
    }
}
