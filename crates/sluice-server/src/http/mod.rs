//! The HTTP front door: the router (routes and OpenAPI document from the same definitions),
//! the request middleware, extractors, and the connection loop.

pub mod extract;
pub mod middleware;
pub mod request_id;
pub mod routes;
pub mod serve;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "Time series and vectors behind one fast front door. Every error answer has the shape of ErrorBody; its error_id equals the X-Request-Id response header.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "system", description = "Health, readiness, version, metrics, this document"),
        (name = "timeseries", description = "Time-series writes and queries"),
        (name = "vectors", description = "Vector collections, writes and similarity search"),
    ),
    components(schemas(sluice_api::ErrorBody))
)]
struct ApiDoc;

/// The routes with their OpenAPI document, before state and middleware.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::system::healthz))
        .routes(routes!(routes::system::readyz))
        .routes(routes!(routes::system::version))
        .routes(routes!(routes::system::metrics))
        .routes(routes!(routes::system::openapi))
        .routes(routes!(routes::ts::put))
        .routes(routes!(routes::ts::put_batch))
        .routes(routes!(routes::ts::put_buffered))
        .routes(routes!(routes::ts::buffer_stats))
        .routes(routes!(routes::ts::buffer_flush))
        .routes(routes!(routes::ts::query))
        .routes(routes!(routes::ts::export))
        .routes(routes!(routes::lineproto::write_v1))
        .routes(routes!(routes::lineproto::write_v2))
        .routes(routes!(routes::vectors::add))
        .routes(routes!(routes::vectors::add_batch))
        .routes(routes!(routes::vectors::add_buffered))
        .routes(routes!(routes::vectors::update_buffered))
        .routes(routes!(routes::vectors::remove_buffered))
        .routes(routes!(routes::vectors::buffer_stats))
        .routes(routes!(routes::vectors::buffer_flush))
        .routes(routes!(routes::vectors::get, routes::vectors::delete))
        .routes(routes!(routes::vectors::search))
        .routes(routes!(
            routes::vectors::list_collections,
            routes::vectors::create_collection
        ))
        .routes(routes!(
            routes::vectors::get_collection,
            routes::vectors::delete_collection
        ))
}

/// The OpenAPI document as served at `/openapi.json` (and committed as `openapi/openapi.json`).
pub fn openapi_json() -> String {
    let (_, api) = api_router().split_for_parts();
    // The document is built from static definitions; failing to serialize it is a bug that the
    // golden test catches.
    api.to_pretty_json().unwrap_or_default()
}

/// The complete application: routes, fallback, middleware, state.
pub fn app(state: AppState) -> Router {
    let (router, api) = api_router().split_for_parts();
    state.set_openapi_json(api.to_pretty_json().unwrap_or_default());
    router
        .route_layer(axum::middleware::from_fn(middleware::route_label))
        .fallback(middleware::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::outer,
        ))
        .with_state(state)
}
