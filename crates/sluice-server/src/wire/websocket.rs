//! The wire protocol over WebSocket at `/v1/ws`: the same frames as binary messages, and
//! changefeed subscriptions (`CHANGES_SUBSCRIBE`, `0x93`) that turn a session into an event
//! stream over a [`Feed`](crate::core::feed::Feed).

use sluice_api::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use sluice_api::ErrorBody;
use sluice_wire::{FrameError, Status, encode_frame, split_frame};

use crate::config::WireConfig;
use crate::core;
use crate::core::feed::{Feed, FeedEnd};
use crate::db::Database;
use crate::error::ApiError;
use crate::state::AppState;

use super::dispatch::json;
use super::session::{Session, error_frame, too_large_frame};

/// The wire adapter's HTTP route: the WebSocket upgrade at `/v1/ws`.
pub fn ws_router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(websocket))
}

/// The wire protocol over WebSocket: each binary message carries one or more whole request
/// frames and is answered by one binary message with their response frames, in order.
///
/// Credentials may come with the upgrade request (`Authorization: Bearer …`: a wrong one is
/// refused with 401 before upgrading) or later in an `AUTH` frame. A session that was not
/// authenticated at the upgrade is limited to messages of [`PRE_AUTH_MAX_FRAME`] bytes for its
/// whole life (the WebSocket layer buffers a whole message before we see it, so the limit is
/// fixed at the upgrade); clients sending larger batches authenticate at the upgrade. A frame
/// cut at the end of a message, or a message over the limit, gets an error frame and the
/// connection is closed. Text messages are refused the same way. Answers to one message go out
/// in messages of at most ~1 MiB; a peer that does not read them within `wire.idle_timeout_ms`
/// is disconnected. Sessions count against `wire.max_connections` (their own pool: upgraded
/// connections leave the HTTP loop); an `Origin` other than the server's own is refused (403).
#[utoipa::path(get, path = "/v1/ws", tag = "system", extensions(("x-sluice-authz" = json!("public"))),
    params(
        ("Upgrade" = String, Header, description = "`websocket` (RFC 6455)"),
        ("Connection" = String, Header, description = "Includes `upgrade`"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`"),
        ("Sec-WebSocket-Key" = String, Header, description = "16 random bytes, base64"),
    ),
    responses(
        (status = 101, description = "Switching to WebSocket: wire protocol frames as binary messages (docs/wire-protocol.md)"),
        (status = 401, description = "The upgrade carried wrong credentials", body = ErrorBody),
        (status = 403, description = "Cross-origin upgrade", body = ErrorBody),
        (status = 426, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 503, description = "Too many WebSocket sessions", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]

pub async fn websocket(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
    upgrade: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => {
            return ApiError::new(
                ErrorCode::WebsocketRequired,
                format!("/v1/ws speaks the wire protocol over WebSocket: {e}"),
            )
            .into_response();
        }
    };
    // Browsers send `Origin` on WebSocket upgrades and do not preflight them: refuse pages of
    // other origins (a page must not drive a local dev-mode server).
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        let same = origin
            .split_once("://")
            .is_some_and(|(_, rest)| !host.is_empty() && rest == host);
        if !same {
            return ApiError::new(
                ErrorCode::CrossOrigin,
                format!(
                    "WebSocket upgrade from origin {origin:?} refused: not this server's origin"
                ),
            )
            .into_response();
        }
    }
    // Upgraded sessions leave the HTTP connection loop: count them against their own cap.
    let Ok(slot) = state.ws_slots().clone().try_acquire_owned() else {
        return ApiError::new(
            ErrorCode::TooManySessions,
            "too many WebSocket sessions; retry later",
        )
        .retry_after(1)
        .into_response();
    };
    let session =
        if headers.contains_key(axum::http::header::AUTHORIZATION) && !state.auth().dev_mode() {
            match state.auth().authenticate(&headers) {
                Ok(actor) => Session::authenticated(actor),
                Err(refusal) => return refusal.into_response(),
            }
        } else {
            Session::new(&state)
        };
    let config = state.config().wire.clone();
    let max_message = session.max_frame(&config) + sluice_wire::HEADER_LEN;
    upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            if let Err(e) = ws_session(socket, session, &state, &config, max_message).await {
                tracing::debug!(error = %e, "websocket session ended");
            }
        })
}

pub(super) async fn ws_session(
    mut socket: axum::extract::ws::WebSocket,
    mut session: Session,
    state: &AppState,
    config: &WireConfig,
    max_message: usize,
) -> Result<(), axum::Error> {
    use axum::extract::ws::Message;
    let idle = Duration::from_millis(config.idle_timeout_ms);
    loop {
        let message = match tokio::time::timeout(idle, socket.recv()).await {
            Err(_) | Ok(None) => return Ok(()),
            Ok(Some(m)) => m?,
        };
        let data = match message {
            Message::Binary(b) => b,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return Ok(()),
            Message::Text(_) => {
                let mut out = Vec::new();
                error_frame(
                    ApiError::new(
                        ErrorCode::TextMessage,
                        "send wire frames as binary WebSocket messages",
                    ),
                    &mut out,
                );
                socket.send(Message::Binary(out.into())).await?;
                return socket.send(Message::Close(None)).await;
            }
        };
        let mut out = Vec::with_capacity(256);
        let mut rest: &[u8] = &data;
        let mut close = false;
        let mut answered = 0usize;
        while !rest.is_empty() {
            match split_frame(rest, session.max_frame(config)) {
                Ok(Some((frame, n)))
                    if frame.code == sluice_wire::Opcode::ChangesSubscribe as u8 =>
                {
                    rest = &rest[n..];
                    match session.subscribe(state, &frame) {
                        Ok((db, start)) => {
                            // The answers before it, then the acknowledgement; from then on
                            // the session only streams events.
                            let ack = serde_json::json!({"subscribed": true, "database": db.name, "from_lsn": start.0 - 1});
                            encode_frame(Status::Ok as u8, 0, &json(&ack), &mut out);
                            send_within(&mut socket, out, idle).await?;
                            return ws_feed(socket, state, db, start).await;
                        }
                        Err(e) => error_frame(e, &mut out),
                    }
                }
                Ok(Some((frame, n))) => {
                    session.handle(state, &frame, &mut out).await;
                    rest = &rest[n..];
                    answered += 1;
                    // Answers can outgrow their requests (a 6-byte stats frame gets JSON):
                    // send them in messages of at most ~1 MiB, and let other tasks run.
                    if out.len() >= WS_ANSWER_CHUNK {
                        send_within(&mut socket, std::mem::take(&mut out), idle).await?;
                    }
                    if answered.is_multiple_of(1024) {
                        tokio::task::yield_now().await;
                    }
                }
                Ok(None) => {
                    error_frame(
                        ApiError::new(
                            ErrorCode::TruncatedFrame,
                            format!(
                                "a message must hold whole frames; {} bytes of a frame are missing their rest (messages are at most {max_message} bytes)",
                                rest.len()
                            ),
                        ),
                        &mut out,
                    );
                    close = true;
                    break;
                }
                Err(FrameError::TooLarge { length, max }) => {
                    too_large_frame(length as usize, max, &mut out);
                    close = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            send_within(&mut socket, out, idle).await?;
        }
        if close {
            return socket.send(Message::Close(None)).await;
        }
    }
}

/// A subscribed WebSocket session: every record of `db` from `start` on, one frame per event
/// (status `0x00`, flag [`sluice_wire::FLAG_EVENT`], payload `{"id", "event", "data"}` as the
/// SSE changefeed has them), read from the WAL as the client takes them. A client that takes
/// nothing for `replication.changefeed_stall_timeout_ms` is disconnected; it resumes with
/// `from_lsn` = the last id it saw.
pub(super) async fn ws_feed(
    mut socket: axum::extract::ws::WebSocket,
    state: &AppState,
    db: Arc<Database>,
    start: sluice_wal::Lsn,
) -> Result<(), axum::Error> {
    use axum::extract::ws::Message;
    let mut feed = Feed::new(state, db, start, WS_ANSWER_CHUNK).until_draining();
    let stall = feed.stall_timeout();
    loop {
        // Reads are never raced (a dropped read would keep its blocking task running); only
        // the wait for more records is, against the peer closing (all it may do now).
        match feed.read_now().await {
            Ok(batch) if batch.is_empty() => {
                tokio::select! {
                    r = feed.wait(crate::core::feed::POLL) => {
                        if r.is_err() {
                            return socket.send(Message::Close(None)).await;
                        }
                    }
                    m = socket.recv() => match m {
                        None | Some(Ok(Message::Close(_))) | Some(Err(_)) => return Ok(()),
                        Some(Ok(_)) => {}
                    },
                }
            }
            Ok(batch) => {
                let mut out = Vec::new();
                for (id, event, data) in core::feed::events(&batch.bytes) {
                    if out.len() >= core::feed::SEND_BYTES {
                        send_within(&mut socket, std::mem::take(&mut out), stall).await?;
                    }
                    // `event` is one of a few fixed names and `data` is JSON text.
                    let payload = format!(r#"{{"id":{id},"event":"{event}","data":{data}}}"#);
                    encode_frame(
                        Status::Ok as u8,
                        sluice_wire::FLAG_EVENT,
                        payload.as_bytes(),
                        &mut out,
                    );
                }
                send_within(&mut socket, out, stall).await?;
            }
            Err(FeedEnd::Stopping) => return socket.send(Message::Close(None)).await,
            Err(FeedEnd::Replaced) => {
                let message = "the database was deleted or replaced (a snapshot); subscribe again";
                return end_feed(socket, ErrorCode::DatabaseReplaced, message.into(), stall).await;
            }
            Err(FeedEnd::Gone { requested, oldest }) => {
                let message = format!(
                    "the WAL from LSN {requested} is no longer retained; the oldest is {oldest}"
                );
                return end_feed(socket, ErrorCode::LsnGone, message, stall).await;
            }
            Err(FeedEnd::Failed(e)) => {
                tracing::error!(db = %feed.database().name, error = %e, "changefeed read failed");
                let message = "reading the WAL failed".to_string();
                return end_feed(socket, ErrorCode::Internal, message, stall).await;
            }
        }
    }
}

/// Ends a subscribed session: an error frame (its `code` says why), then close.
pub(super) async fn end_feed(
    mut socket: axum::extract::ws::WebSocket,
    code: ErrorCode,
    message: String,
    stall: Duration,
) -> Result<(), axum::Error> {
    let mut out = Vec::new();
    error_frame(ApiError::new(code, message), &mut out);
    send_within(&mut socket, out, stall).await?;
    socket.send(axum::extract::ws::Message::Close(None)).await
}

/// Answers of one WebSocket message are sent in messages of about this size at most.
pub(super) const WS_ANSWER_CHUNK: usize = 1 << 20;

/// Sends one binary message, giving up (ending the session) if the peer does not take it
/// within `idle`: a client that stops reading cannot pin answers in memory.
pub(super) async fn send_within(
    socket: &mut axum::extract::ws::WebSocket,
    bytes: Vec<u8>,
    idle: Duration,
) -> Result<(), axum::Error> {
    match tokio::time::timeout(
        idle,
        socket.send(axum::extract::ws::Message::Binary(bytes.into())),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(axum::Error::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the peer does not read its answers",
        ))),
    }
}
