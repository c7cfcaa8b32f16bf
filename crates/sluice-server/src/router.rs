//! The served API, composed: the HTTP adapter's routes plus the wire adapter's WebSocket
//! upgrade (`/v1/ws`), as one router, one OpenAPI document and one authorization table read
//! from it. With `server` (the life cycle), this is the only module that sees both adapters;
//! they never import each other.

use std::sync::LazyLock;

use utoipa_axum::router::OpenApiRouter;

use crate::auth::authz::RouteTable;
use crate::state::AppState;

/// Every route, before state and middleware.
pub fn api_router() -> OpenApiRouter<AppState> {
    crate::http::api_router().merge(crate::wire::ws_router())
}

/// Every operation's authorization, as declared in its `#[utoipa::path]` (`x-sluice-authz`).
/// Built once; an operation without a valid declaration is logged and fails closed (the
/// authorization coverage test fails for it).
pub fn route_table() -> &'static RouteTable {
    static TABLE: LazyLock<RouteTable> = LazyLock::new(|| {
        let (_, api) = api_router().split_for_parts();
        let (table, errors) = RouteTable::from_openapi(&api);
        for e in errors {
            tracing::error!("{e}; the route is admin-only on the server");
        }
        table
    });
    &TABLE
}

/// The OpenAPI document as served at `/openapi.json` in dev mode with the default settings
/// (and committed as `openapi/openapi.json`).
pub fn openapi_json() -> String {
    let (_, mut api) = api_router().split_for_parts();
    crate::http::document(&mut api, route_table(), false, true);
    crate::http::contract::finish(&api, &crate::config::Config::default())
}

/// The complete HTTP application of a server.
pub fn app(state: AppState) -> crate::http::middleware::FrontDoor {
    state.set_route_table(route_table());
    crate::http::app(state, api_router())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authz::{Authz, RouteTable};
    use crate::http::DATABASE_PREFIX;

    /// The authorization coverage test: every HTTP operation declares what it needs, nested
    /// copies declare what their flat routes do, and every wire opcode needs exactly what the
    /// route it mirrors declares.
    #[test]
    fn every_operation_and_opcode_declares_its_authorization_the_same_on_both_transports() {
        let (_, api) = api_router().split_for_parts();
        let (table, errors) = RouteTable::from_openapi(&api);
        assert!(errors.is_empty(), "undeclared or malformed: {errors:#?}");
        let operations: usize = api
            .paths
            .paths
            .values()
            .map(|item| crate::auth::authz::operations(item).count())
            .sum();
        assert_eq!(table.iter().count(), operations);

        for ((method, path), authz) in table.iter() {
            if let Some(flat) = path.strip_prefix(DATABASE_PREFIX).filter(|r| !r.is_empty())
                && let Some(flat_authz) = table.get(method, flat)
            {
                assert_eq!(*authz, flat_authz, "{method} {path} differs from {flat}");
            }
        }

        let mut public: Vec<&str> = table
            .iter()
            .filter(|(_, a)| matches!(a, Authz::Public | Authz::Metrics))
            .map(|((_, p), _)| p)
            .collect();
        public.sort_unstable();
        assert_eq!(
            public,
            [
                "/healthz",
                "/metrics",
                "/openapi.json",
                "/readyz",
                "/v1/ws",
                "/version"
            ]
        );

        for opcode in sluice_wire::Opcode::ALL {
            let Some((need, method, route)) = crate::wire::opcode_authz(opcode) else {
                assert_eq!(opcode, sluice_wire::Opcode::Auth, "only AUTH is undeclared");
                continue;
            };
            assert_eq!(
                table.get(&method, route),
                Some(Authz::Needs(need)),
                "{opcode:?} mirrors {method} {route}, which declares otherwise"
            );
        }
    }
}
