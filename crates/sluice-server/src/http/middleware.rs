//! The request middleware: the outermost service every request passes through
//! ([`FrontDoor`]) and the guard of every matched route ([`Guard`]).
//!
//! The front door assigns the request id and opens the request's span, counts and times the
//! request for `/metrics`, and makes sure every error answer has the one error shape: responses
//! with status ≥ 400 that did not come from [`ApiError`] (unknown route, wrong method,
//! framework rejections, body limits) are rewritten, keeping their status and headers.
//!
//! Both are hand-written tower services with one boxed future each: the per-request cost of
//! the layers is part of every small request's cost (see `bench/src/bin/front_bench.rs`).

use sluice_api::ErrorCode;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tower::util::BoxCloneSyncService;
use tower::{Layer as _, ServiceExt};
use tracing::Instrument;

use crate::error::ApiError;
use crate::http::error::{ErrorShaped, code_for_status};
use crate::request_id;
use crate::state::AppState;

/// The route template a response was produced for, set by [`Guard`].
#[derive(Clone, Debug)]
struct RouteLabel(MatchedPath);

/// The request body's `Content-Length` as it arrived, for requests whose body the
/// decompression layer decodes (it removes the header); replication counts the bytes a
/// primary really sent. Without it, the `Content-Length` header is still there.
#[derive(Clone, Copy, Debug)]
pub struct SentBodyBytes(pub u64);

/// A boxed response future (one allocation per request and layer, where `from_fn` layers
/// cost several: a boxed clone of the inner service and two boxed futures).
type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The outermost service: the request id and its scope, the request's span (at debug level),
/// the in-flight gauge, error shaping, and request metrics. It also routes each request past
/// the body-encoding layers when it needs none of them: request bodies sent with
/// `Content-Encoding` go through request decompression, requests with `Accept-Encoding` through
/// response compression; a plain request skips both (each wraps every body, and together they
/// cost ~10–15 % of a small request even when they decoded and compressed nothing).
#[derive(Clone)]
pub struct FrontDoor {
    state: AppState,
    /// The router alone.
    plain: Router,
    /// The router behind request decompression and (when configured) response compression.
    encoded: BoxCloneSyncService<Request, Response, Infallible>,
    compression: bool,
}

impl FrontDoor {
    pub fn new(state: AppState, router: Router, compression: bool) -> FrontDoor {
        // Request bodies in gzip or zstd are decompressed as they are read; the extractors'
        // body limits then apply to the decompressed bytes (a bomb gets 413).
        let decompressed = tower_http::decompression::RequestDecompressionLayer::new()
            .gzip(true)
            .zstd(true)
            .layer(router.clone());
        let encoded = if compression {
            use tower_http::compression::{DefaultPredicate, Predicate as _};
            // Error answers are not compressed: the front door may rewrite one into the error
            // shape, which must not keep a `Content-Encoding` of a body it replaced.
            let compressed = tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .br(true)
                .zstd(true)
                .compress_when(DefaultPredicate::new().and(successful as SuccessPredicate))
                .layer(decompressed);
            BoxCloneSyncService::new(ServiceExt::<Request>::map_response(compressed, boxed_body))
        } else {
            BoxCloneSyncService::new(ServiceExt::<Request>::map_response(
                decompressed,
                boxed_body,
            ))
        };
        FrontDoor {
            state,
            plain: router,
            encoded,
            compression,
        }
    }
}

type SuccessPredicate = fn(
    axum::http::StatusCode,
    axum::http::Version,
    &axum::http::HeaderMap,
    &axum::http::Extensions,
) -> bool;

/// Whether a response is no error (the only ones compressed).
fn successful(
    status: axum::http::StatusCode,
    _: axum::http::Version,
    _: &axum::http::HeaderMap,
    _: &axum::http::Extensions,
) -> bool {
    status.as_u16() < 400
}

/// A response with its body as axum's [`Body`].
fn boxed_body<B>(r: axum::http::Response<B>) -> Response
where
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    r.map(Body::new)
}

impl<B> tower::Service<axum::http::Request<B>> for FrontDoor
where
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router and the encoding layers around it are always ready (none of them applies
        // backpressure); a layer that does must not be added inside without polling it here.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> ResponseFuture {
        let started = Instant::now();
        let mut req = req.map(Body::new);
        crate::http::routes::prom::accept_snappy(&mut req);
        let headers = req.headers();
        let decode = headers.contains_key(header::CONTENT_ENCODING);
        let encode = self.compression && headers.contains_key(header::ACCEPT_ENCODING);
        if decode
            && let Some(n) = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            req.extensions_mut().insert(SentBodyBytes(n));
        }
        let id = request_id::from_headers(req.headers());
        let method = method_label(req.method());
        // The span is debug-level: at info, creating and entering a span per request cost more
        // than the rest of a small request (measured ~250 µs on the 2-core VM). Lines logged at
        // info and above about a request name its `request_id` explicitly; debug lines get it
        // from the span.
        let span = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            tracing::debug_span!("request", request_id = %id, method = %method, path = %req.uri().path())
        });
        // A body the decompression layer refuses is answered before routing, so before the
        // guard marks a seed route: remember where the request went (only such requests).
        let seed_probe = decode.then(|| (req.method().clone(), req.uri().path().to_string()));
        // Both are always ready (see `poll_ready`), so no readiness wait is skipped here.
        let inner = if decode || encode {
            self.encoded.call(req)
        } else {
            Box::pin(self.plain.call(req))
        };
        let state = self.state.clone();
        Box::pin(async move {
            let metrics = state.metrics();
            let in_flight = InFlight::new(&metrics.http_in_flight);
            let run = async {
                let Ok(mut response) = inner.await;
                if response.status().as_u16() >= 400
                    && response.extensions().get::<ErrorShaped>().is_none()
                {
                    if let Some((method, path)) = &seed_probe
                        && state.route_table().is_seed_path(method, path)
                    {
                        request_id::mark_seed_route();
                    }
                    response = reshape_error(response).await;
                }
                response
            };
            let mut response = match span {
                Some(span) => request_id::scope(id.clone(), run.instrument(span)).await,
                None => request_id::scope(id.clone(), run).await,
            };
            if let Ok(v) = HeaderValue::try_from(id) {
                response.headers_mut().insert(request_id::HEADER, v);
            }
            let status = response.status();
            let route = response
                .extensions()
                .get::<RouteLabel>()
                .map_or("unmatched", |r| r.0.as_str());
            metrics.observe_http(method, route, status.as_u16(), started.elapsed());
            drop(in_flight);
            if status == axum::http::StatusCode::INTERNAL_SERVER_ERROR {
                let id = response
                    .headers()
                    .get(request_id::HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::warn!(request_id = %id, status = status.as_u16(), "request failed");
            }
            Ok(response)
        })
    }
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
/// control ([`crate::http::admission::enter`]), and the route template for the metrics label
/// (bounded cardinality, unlike raw paths). One hand-written layer: each `from_fn` layer
/// boxes a clone of the inner service and two futures per request, and on small requests a
/// stack of them cost more than the handler.
#[derive(Clone)]
pub struct GuardLayer(pub AppState);

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            state: self.0.clone(),
        }
    }
}

/// See [`GuardLayer`].
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for Guard<S>
where
    S: tower::Service<Request, Error = Infallible> + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> ResponseFuture {
        let label = req
            .extensions()
            .get::<MatchedPath>()
            .cloned()
            .map(RouteLabel);
        let labelled = move |mut response: Response| {
            if let Some(label) = label {
                response.extensions_mut().insert(label);
            }
            response
        };
        if let Err(refusal) = crate::http::authn::check(&self.state, &mut req) {
            return Box::pin(async move { Ok(labelled(drain_then(req, *refusal).await)) });
        }
        let (req, entered) = match crate::http::admission::enter(&self.state, req) {
            Ok(admitted) => admitted,
            Err(refused) => {
                let (refusal, req) = *refused;
                return Box::pin(async move { Ok(labelled(drain_then(req, refusal).await)) });
            }
        };
        // Ready: axum polls this service (and so `inner`) ready before calling it.
        let inner = self.inner.call(req);
        Box::pin(async move {
            let Ok(response) = inner.await;
            let response = crate::http::admission::leave(response.into_response(), entered);
            Ok(labelled(response))
        })
    }
}

/// Most of a refused request's body read and thrown away before the refusal is sent.
const DRAIN_MAX_BYTES: usize = 8 << 20;
/// Longest time spent reading a refused request's body.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// A refusal made before anything read the request's body (authentication, authorization,
/// admission): the body is read and discarded first, up to [`DRAIN_MAX_BYTES`] within
/// [`DRAIN_MAX_TIME`], so that a client still sending reads the answer and its `Retry-After`
/// instead of a reset connection (closing with unread data resets it), and the connection can
/// serve the next request. Nothing is kept: a refused body costs the server reading it, never
/// memory. Past either bound the connection is closed after the answer, as before.
async fn drain_then(req: Request, mut refusal: Response) -> Response {
    let expects_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !expects_body {
        return refusal;
    }
    let mut body = req.into_body();
    let mut read = 0usize;
    let drained = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    read += f.data_ref().map_or(0, |d| d.len());
                    if read > DRAIN_MAX_BYTES {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if !drained {
        refusal
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    refusal
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
        // The body is replaced: headers describing the old one go.
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_ENCODING
        {
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
