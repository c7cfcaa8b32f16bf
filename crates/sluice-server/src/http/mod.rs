//! The HTTP front door: the router (routes and OpenAPI document from the same definitions),
//! the request middleware, extractors, and the connection loop.

pub mod admission;
pub mod arrow;
pub mod authn;
pub mod console;
pub mod contract;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod routes;
pub mod serve;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::authz::RouteTable;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "Time series and vectors behind one fast front door. Every error answer has the shape of ErrorBody (seed routes add `success: false`; the Prometheus API answers in Prometheus's shape); its error_id equals the X-Request-Id response header. A request that breaks this document's schemas is refused with 400 (413 for size, 415 for an unknown Content-Encoding, 408 for a body sent too slowly); one that fits them but breaks a rule a schema cannot state (one field against another, a regex's or a filter's syntax, a vector against its collection) with 422 `invalid_value`. A method a path does not serve is 405 with an `Allow` header. 429 and 507 (the disk is full: writes resume by themselves when space returns) always carry Retry-After. See docs/api-contract.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "system", description = "Health, readiness, version, metrics, this document"),
        (name = "timeseries", description = "Time-series writes and queries"),
        (name = "vectors", description = "Vector collections, writes and similarity search"),
        (name = "databases", description = "Databases: list, create, delete. Every data route also exists under /v1/databases/{db}/…, acting on that database; the flat routes act on `default`."),
        (name = "prometheus", description = "The Prometheus HTTP API (PromQL queries, series and label look-ups) and remote write, for Grafana, Prometheus and its agents. See docs/prometheus.md for how series map to labels."),
        (name = "replication", description = "Compressed WAL shipping to replicas, promotion, and changefeeds"),
    ),
    components(schemas(sluice_api::ErrorBody, sluice_api::ts::Ack))
)]
struct ApiDoc;

/// The data routes: served flat (on `default`) and under `/v1/databases/{db}`.
fn data_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::ts::put))
        .routes(routes!(routes::ts::put_batch))
        .routes(routes!(routes::ts::put_buffered))
        .routes(routes!(routes::ts::buffer_stats))
        .routes(routes!(routes::ts::buffer_flush))
        .routes(routes!(routes::ts::query))
        .routes(routes!(routes::ts::export))
        .routes(routes!(routes::ts::delete))
        .routes(routes!(routes::ts::cardinality))
        .routes(routes!(routes::lineproto::write_v1))
        .routes(routes!(routes::lineproto::write_v2))
        .routes(routes!(routes::prom::query))
        .routes(routes!(routes::prom::query_range))
        .routes(routes!(routes::prom::series))
        .routes(routes!(routes::prom::labels))
        .routes(routes!(routes::prom::label_values))
        .routes(routes!(routes::prom::metadata))
        .routes(routes!(routes::prom::buildinfo))
        .routes(routes!(routes::prom::remote_write))
        .routes(routes!(routes::vectors::add))
        .routes(routes!(routes::vectors::add_batch))
        .routes(routes!(routes::vectors::add_buffered))
        .routes(routes!(routes::vectors::update_buffered))
        .routes(routes!(routes::vectors::remove_buffered))
        .routes(routes!(routes::vectors::buffer_stats))
        .routes(routes!(routes::vectors::buffer_flush))
        .routes(routes!(routes::vectors::get, routes::vectors::delete))
        .routes(routes!(routes::vectors::search))
        .routes(routes!(routes::vectors::export))
        .routes(routes!(
            routes::vectors::list_collections,
            routes::vectors::create_collection
        ))
        .routes(routes!(
            routes::vectors::get_collection,
            routes::vectors::delete_collection
        ))
}

/// Prefix of the per-database copies of the data routes.
pub const DATABASE_PREFIX: &str = "/v1/databases/{db}";

/// Operation ids made unique: a handler served for GET and POST (the Prometheus API) gets one
/// id from its definition; the POST operation becomes `<id>_post`. Generators key methods by
/// these ids, so two operations may not share one.
fn unique_operation_ids(api: &mut utoipa::openapi::OpenApi) {
    for item in api.paths.paths.values_mut() {
        if let (Some(get), Some(post)) = (&item.get, &mut item.post)
            && get.operation_id.is_some()
            && get.operation_id == post.operation_id
        {
            post.operation_id = post.operation_id.take().map(|id| format!("{id}_post"));
        }
    }
}

/// The routes with their OpenAPI document, before state and middleware.
pub fn api_router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::system::healthz))
        .routes(routes!(routes::system::readyz))
        .routes(routes!(routes::system::version))
        .routes(routes!(routes::system::metrics))
        .routes(routes!(routes::system::openapi))
        .routes(routes!(routes::databases::list, routes::databases::create))
        .routes(routes!(routes::databases::delete))
        .routes(routes!(routes::replication::wal_apply))
        .routes(routes!(routes::replication::stats))
        .routes(routes!(routes::replication::config))
        .routes(routes!(
            routes::replication::list_replicas,
            routes::replication::add_replica
        ))
        .routes(routes!(routes::replication::remove_replica))
        .routes(routes!(routes::replication::promote))
        .routes(routes!(routes::replication::snapshot))
        .routes(routes!(routes::changes::changes))
        .merge(data_router())
        .nest(DATABASE_PREFIX, data_router());
    document_database_routes(router.get_openapi_mut());
    unique_operation_ids(router.get_openapi_mut());
    router
}

/// The nested copies share their handlers' documentation: give each its `db` path parameter
/// and an operation id of its own (`db_<id>`).
fn document_database_routes(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
    use utoipa::openapi::{Required, schema::Object, schema::Type};
    let db_param = || -> Parameter {
        ParameterBuilder::new()
            .name("db")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("Database name"))
            .schema(Some(Object::with_type(Type::String)))
            .build()
    };
    for (path, item) in api.paths.paths.iter_mut() {
        if !path.starts_with(DATABASE_PREFIX) || path == DATABASE_PREFIX {
            continue;
        }
        for op in operations_mut(item) {
            let params = op.parameters.get_or_insert_with(Vec::new);
            // By location too: line protocol also takes a query parameter named `db`.
            if !params
                .iter()
                .any(|p| p.name == "db" && p.parameter_in == ParameterIn::Path)
            {
                params.insert(0, db_param());
            }
            if let Some(id) = &op.operation_id {
                op.operation_id = Some(format!("db_{id}"));
            }
            op.responses
                .responses
                .entry("404".into())
                .or_insert_with(|| error_response("No such database (or resource)").into());
        }
    }
}

fn operations_mut(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// A documented error answer with the `ErrorBody` shape.
fn error_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// With credentials configured, the document declares the bearer scheme, requires it on every
/// protected operation, and documents 401/403 there; in dev mode it has no security scheme.
/// 429 (admission) is documented on every protected operation either way.
fn document_security(
    api: &mut utoipa::openapi::OpenApi,
    table: &RouteTable,
    secured: bool,
    public_metrics: bool,
) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    if secured {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A bearer token from the token table, or a JWT (HS256, RS256, ES256)",
                    ))
                    .build(),
            ),
        );
    }
    for (path, item) in api.paths.paths.iter_mut() {
        let public = crate::auth::authz::operations(item)
            .any(|(m, _)| table.need(&m, path, public_metrics).is_none());
        if public {
            continue;
        }
        for op in operations_mut(item) {
            let responses = &mut op.responses.responses;
            responses
                .entry("429".into())
                .or_insert_with(|| error_response("Over this actor's admission budget or rate limit (Retry-After says when to retry)").into());
            if secured {
                responses
                    .entry("401".into())
                    .or_insert_with(|| error_response("Missing or invalid credentials").into());
                responses.entry("403".into()).or_insert_with(|| {
                    error_response("The actor's roles or policies do not allow this").into()
                });
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
            }
        }
    }
}

/// The OpenAPI document of `api` as served with this security setting (`secured`: credentials
/// are configured). `table` says which operations are public.
pub fn document(
    api: &mut utoipa::openapi::OpenApi,
    table: &RouteTable,
    secured: bool,
    public_metrics: bool,
) {
    document_security(api, table, secured, public_metrics);
}

/// The complete HTTP application over `routes` (the served API, see `crate::router`):
/// middleware, fallback, state. `state` must hold the routes' authorization table.
pub fn app(state: AppState, routes: OpenApiRouter<AppState>) -> middleware::FrontDoor {
    let (router, mut api) = routes.split_for_parts();
    let auth = state.auth();
    document_security(
        &mut api,
        state.route_table(),
        !auth.dev_mode(),
        auth.public_metrics(),
    );
    state.set_openapi_json(contract::finish(&api, state.config()));
    let compression = state.config().http.compression;
    let router = router
        .route_layer(middleware::GuardLayer(state.clone()))
        // The console and /docs are static files: public, outside the guard.
        .merge(console::router())
        .fallback(middleware::not_found)
        .with_state(state.clone());
    middleware::FrontDoor::new(state, router, compression)
}
