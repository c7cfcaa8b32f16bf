//! Operational routes: health, readiness, version, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_api::system::{Health, Readiness, Version};

use crate::state::AppState;

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "system", extensions(("x-sluice-authz" = json!("public"))),
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
    })
}

/// Readiness: every database has finished recovery.
#[utoipa::path(get, path = "/readyz", tag = "system", extensions(("x-sluice-authz" = json!("public"))),
    responses(
        (status = 200, description = "Recovery finished; all routes serve", body = Readiness),
        (status = 503, description = "Still recovering", body = Readiness,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.databases() {
        Some(dbs) => Json(Readiness {
            status: "ready".to_string(),
            databases: dbs.names(),
        })
        .into_response(),
        None => {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Readiness {
                    status: "recovering".to_string(),
                    databases: Vec::new(),
                }),
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            // A 503 here is an answer, not an error: keep this body.
            r.extensions_mut().insert(crate::http::error::ErrorShaped);
            r
        }
    }
}

/// Server and API version.
#[utoipa::path(get, path = "/version", tag = "system", extensions(("x-sluice-authz" = json!("public"))),
    responses((status = 200, description = "Versions", body = Version)))]
pub async fn version() -> Json<Version> {
    Json(Version {
        name: "sluice".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        api_version: "v1".to_string(),
    })
}

/// Metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "system", extensions(("x-sluice-authz" = json!("metrics"))),
    responses((status = 200, description = "Prometheus text exposition format",
        content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().encode(),
    )
        .into_response()
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", extensions(("x-sluice-authz" = json!("public"))),
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_json().to_string(),
    )
        .into_response()
}
