//! Route handlers, one module per route class. Each handler carries its `#[utoipa::path]`
//! definition, so a route cannot be served without being documented.

pub mod changes;
pub mod databases;
pub mod lineproto;
pub mod prom;
pub mod replication;
pub mod system;
pub mod ts;
pub mod vectors;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use sluice_api::ErrorBody;

/// NDJSON exports send frames of about this size.
pub const EXPORT_FRAME_BYTES: usize = 64 * 1024;

/// The sending side of a streamed answer: frames, or the error that cut it short.
pub type StreamTx = tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>;

/// A streamed answer of `content_type` whose frames a producer sends on the returned sender
/// (from a blocking task: `blocking_send`). A failed send means the client went away.
pub fn streamed(content_type: &'static str) -> (StreamTx, Response) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    // Fused: the compression layer may poll a finished body again (an unfused `unfold`
    // panics then, cutting a compressed export short).
    let stream =
        futures_util::StreamExt::fuse(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
    let response = (
        [(axum::http::header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response();
    (tx, response)
}

/// Ends a stream with an error the client sees as a cut-off body (the status is already sent).
pub fn fail_stream(tx: &StreamTx, e: String) {
    tracing::error!(error = %e, "export failed mid-stream");
    let _ = tx.blocking_send(Err(std::io::Error::other(e)));
}

/// The error answers every write route shares, documented once.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only the OpenAPI document uses it; handlers answer with `ApiError`.
pub enum WriteErrors {
    /// Invalid input or parameter; nothing was written
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Body too large (or, for line protocol, it expands to too many points)
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// The write would exceed the database's series limit; nothing was written
    #[response(status = 422)]
    SeriesLimit(ErrorBody),
    /// Write queue or buffer full (seed routes: `success: false`, `"error": "Buffer overflow"`,
    /// `buffer_size`), or the server is not ready
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
}
