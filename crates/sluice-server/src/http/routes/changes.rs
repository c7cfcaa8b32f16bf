//! Changefeeds: `GET /v1/databases/{db}/changes?from_lsn=N` streams the database's
//! WAL records after LSN `N` as Server-Sent Events, read straight from the WAL (the same
//! reader replication uses), so a subscriber costs a file handle and a small bounded queue,
//! never memory in proportion to how far behind it is.
//!
//! - Each record is one event: `id:` is its LSN, `event:` is `points`, `vectors` or
//!   `collection`, `data:` its JSON. Only durable records are sent.
//! - Resuming: `from_lsn` (or the `Last-Event-ID` header) is the last LSN the subscriber has;
//!   the stream starts right after it, so reconnecting with the last id seen misses nothing
//!   and repeats nothing. `from_lsn=0` starts at the first record; without either, the stream
//!   starts at the next record written.
//! - A position whose WAL is no longer retained answers 410 `lsn_gone` (with the oldest LSN
//!   in the message); if it goes away while streaming, an `error` event says so and the stream
//!   ends.
//! - A subscriber that accepts nothing for `replication.changefeed_stall_timeout_ms` (its
//!   queue of 8 chunks stays full) is disconnected: its connection is closed. It resumes from
//!   its last event id. Ingest never waits for a subscriber.
//! - A comment line every 15 s keeps idle connections alive through proxies.

use sluice_api::ErrorCode;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sluice_api::ErrorBody;

use crate::core::feed::{Feed, FeedEnd, SEND_BYTES, events, start_position};
use crate::error::ApiError;
use crate::http::serve::ConnectionCloser;
use crate::state::AppState;

const CHUNK_BYTES: usize = 256 * 1024;
const KEEPALIVE: Duration = Duration::from_secs(15);
const QUEUE: usize = 8;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The last LSN the subscriber has: events start after it (0: from the first record).
    /// Default: the `Last-Event-ID` header, else the next record written.
    pub from_lsn: Option<u64>,
}

#[derive(Deserialize)]
pub struct ChangesPath {
    db: String,
}

/// Stream a database's changes as Server-Sent Events, resumable by LSN.
#[utoipa::path(get, path = "/v1/databases/{db}/changes", tag = "replication", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    params(("db" = String, Path, description = "Database name"), ChangesParams),
    responses(
        (status = 200, description = "`text/event-stream`: one event per WAL record (`id` = LSN; `event` = points | vectors | collection | delete | error)", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid from_lsn or Last-Event-ID", body = ErrorBody),
        (status = 404, description = "No such database", body = ErrorBody),
        (status = 410, description = "The WAL after from_lsn is no longer retained", body = ErrorBody),
    ))]
pub async fn changes(
    State(state): State<AppState>,
    Path(ChangesPath { db }): Path<ChangesPath>,
    Query(params): Query<ChangesParams>,
    headers: HeaderMap,
    closer: Option<axum::Extension<ConnectionCloser>>,
) -> Result<Response, ApiError> {
    let db = state.database(&db)?;
    let after = match params.from_lsn {
        Some(l) => Some(l),
        None => match headers.get("last-event-id") {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| {
                    ApiError::invalid_field("Last-Event-ID", "must be an LSN (an integer)")
                })?,
            None => None,
        },
    };
    let start = start_position(&db, after)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
    let closer = closer.map(|c| c.0);
    let name = db.name.clone();
    let mut feed = Feed::new(&state, db, start, CHUNK_BYTES).until_draining();
    let stall = feed.stall_timeout();
    tokio::spawn(async move {
        let mut last_sent = tokio::time::Instant::now();
        loop {
            let idle = KEEPALIVE.saturating_sub(last_sent.elapsed());
            let chunk = match feed.next(idle).await {
                Ok(batch) if batch.is_empty() => {
                    if last_sent.elapsed() < KEEPALIVE {
                        continue;
                    }
                    Bytes::from_static(b": keepalive\n\n")
                }
                Ok(batch) => {
                    // Sent every SEND_BYTES; the last piece goes below with the common send.
                    let mut out = Vec::new();
                    for (lsn, event, data) in events(&batch.bytes) {
                        if out.len() >= SEND_BYTES {
                            let piece = Bytes::from(std::mem::take(&mut out));
                            if !send_or_stall(&tx, piece, stall, &closer, &name, lsn).await {
                                return;
                            }
                        }
                        out.extend_from_slice(
                            format!("id: {lsn}\nevent: {event}\ndata: {data}\n\n").as_bytes(),
                        );
                    }
                    Bytes::from(out)
                }
                Err(FeedEnd::Stopping) => return,
                Err(FeedEnd::Replaced) => {
                    let data = json!({"code": ErrorCode::DatabaseReplaced, "error": "the database was deleted or replaced (a snapshot); subscribe again"});
                    return end_with_error(&tx, data, stall).await;
                }
                Err(FeedEnd::Gone { requested, oldest }) => {
                    let data = json!({"code": ErrorCode::LsnGone, "requested_lsn": requested.0, "oldest_lsn": oldest.0});
                    return end_with_error(&tx, data, stall).await;
                }
                Err(FeedEnd::Failed(e)) => {
                    tracing::error!(db = %name, error = %e, "changefeed read failed");
                    let data =
                        json!({"code": ErrorCode::Internal, "error": "reading the WAL failed"});
                    return end_with_error(&tx, data, stall).await;
                }
            };
            if !send_or_stall(&tx, chunk, stall, &closer, &name, feed.next_lsn().0).await {
                return;
            }
            last_sent = tokio::time::Instant::now();
        }
    });
    // Fused: the compression layer may poll a finished body again.
    let stream =
        futures_util::StreamExt::fuse(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
        }));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Queues `chunk` for the subscriber; `false` when the feed must end: the subscriber went
/// away, or took nothing for `stall` (then its connection is closed; it resumes from the last
/// event id it got, at or before `next_lsn`).
async fn send_or_stall(
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    chunk: Bytes,
    stall: Duration,
    closer: &Option<ConnectionCloser>,
    name: &str,
    next_lsn: u64,
) -> bool {
    match tx.send_timeout(chunk, stall).await {
        Ok(()) => true,
        Err(tokio::sync::mpsc::error::SendTimeoutError::Timeout(_)) => {
            tracing::info!(db = %name, next_lsn, "changefeed subscriber stalled; disconnecting it");
            if let Some(c) = closer {
                c.close();
            }
            false
        }
        Err(tokio::sync::mpsc::error::SendTimeoutError::Closed(_)) => false,
    }
}

/// Sends an `error` event (waiting at most `stall` for the subscriber) before a feed ends.
async fn end_with_error(
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    data: serde_json::Value,
    stall: Duration,
) {
    let _ = tx
        .send_timeout(
            Bytes::from(format!("event: error\ndata: {data}\n\n")),
            stall,
        )
        .await;
}
