//! The request middleware: the outermost layer every request passes through.
//!
//! It assigns the request id and opens the request's span, counts and times the request for
//! `/metrics`, and makes sure every error answer has the one error shape: responses with status
//! ≥ 400 that did not come from [`ApiError`] (unknown route, wrong method, framework
//! rejections, body limits) are rewritten, keeping their status and headers.

use sluice_api::ErrorCode;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tracing::Instrument;

use crate::error::ApiError;
use crate::http::error::{ErrorShaped, code_for_status};
use crate::request_id;
use crate::state::AppState;

/// The route template a response was produced for, set by [`guard`].
#[derive(Clone, Debug)]
struct RouteLabel(MatchedPath);

/// Outer middleware (`Router::layer`).
/// The request body's `Content-Length` as it arrived, before request decompression removes the
/// header (replication counts the bytes a primary really sent).
#[derive(Clone, Copy, Debug)]
pub struct SentBodyBytes(pub u64);

pub async fn outer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    crate::http::routes::prom::accept_snappy(&mut req);
    if let Some(n) = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        req.extensions_mut().insert(SentBodyBytes(n));
    }
    let id = request_id::from_headers(req.headers());
    let method = req.method().clone();
    // The span is debug-level: at info, creating and entering a span per request cost more than
    // the rest of a small request (measured ~250 µs on the 2-core VM). Lines logged at info and
    // above about a request name its `request_id` explicitly; debug lines get it from the span.
    let span = tracing::debug_span!("request", request_id = %id, method = %method, path = %req.uri().path());
    let metrics = state.metrics();
    let in_flight = InFlight::new(&metrics.http_in_flight);

    let mut response = request_id::scope(id.clone(), next.run(req).instrument(span.clone())).await;
    let status = response.status();
    if status.as_u16() >= 400 && response.extensions().get::<ErrorShaped>().is_none() {
        response = request_id::scope(id.clone(), reshape_error(response))
            .instrument(span.clone())
            .await;
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(request_id::HEADER, v);
    }

    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or("unmatched", |r| r.0.as_str());
    metrics.observe_http(
        method_label(&method),
        route,
        status.as_u16(),
        started.elapsed(),
    );
    drop(in_flight);
    if status == axum::http::StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(request_id = %id, status = status.as_u16(), "request failed");
    }
    response
}

/// Counts a request in flight until dropped, also when the client goes away mid-request and
/// the request future is dropped.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> InFlight<'a> {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method as a metrics label: the standard methods, else `OTHER` (clients choose method
/// names freely; labels must stay bounded).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// The route guard (`Router::route_layer`, so it runs only for matched routes), one layer for
/// three jobs: authentication and authorization ([`crate::http::authn::check`]), admission
/// control ([`crate::http::admission::run`]), and the route template for the metrics label
/// (bounded cardinality, unlike raw paths). One layer, not three: each `from_fn` layer boxes
/// and moves the request's future, and on small requests the stack of them cost more than the
/// handler.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let label = req
        .extensions()
        .get::<MatchedPath>()
        .cloned()
        .map(RouteLabel);
    let mut response = match crate::http::authn::check(&state, &mut req) {
        Ok(()) => crate::http::admission::run(&state, req, next).await,
        Err(refusal) => *refusal,
    };
    if let Some(label) = label {
        response.extensions_mut().insert(label);
    }
    response
}

/// Rewrites a non-shaped error response into the error shape, keeping status and headers.
async fn reshape_error(response: Response) -> Response {
    const MAX_MESSAGE_BYTES: usize = 1024;
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let text = match http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_string(),
        Err(_) => String::new(),
    };
    let mut message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let mut shaped = ApiError::new(code_for_status(status), message).into_response();
    *shaped.status_mut() = status;
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped.extensions_mut().extend(parts.extensions);
    *shaped.status_mut() = status;
    shaped
}

/// The fallback for unknown routes.
pub async fn not_found(req: Request<Body>) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}
