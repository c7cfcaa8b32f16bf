//! The wire adapter: the binary protocol's TCP listener and its WebSocket twin at `/v1/ws`
//! (frames in `sluice-wire`, reference with byte-level examples in `docs/wire-protocol.md`).
//!
//! `mod.rs` accepts connections; `session` holds a client's protocol state and answers each
//! frame (authentication, authorization, admission, error frames); `dispatch` calls the core
//! for each opcode; `websocket` serves the same frames over WebSocket and changefeed
//! subscriptions.
//!
//! One task per connection reads into a buffer, splits frames without copying
//! ([`sluice_wire::split_frame`]), and answers each request in order through the same core
//! operations as HTTP (`core::ts`, `core::vectors`, `core::replication`), so an operation
//! behaves the same on both transports, limits included. Clients may pipeline: the frames of one
//! read (at most 64 KiB plus the rest of a frame) are answered in request order in one write,
//! then the next read happens; a peer that does not read its answers within
//! `wire.idle_timeout_ms` is disconnected.
//!
//! # Limits
//! - A frame longer than `wire.max_frame_bytes` gets an error frame (status `0x02`) and the
//!   connection is closed: its payload is never read, so the stream cannot be resynchronised.
//! - An unknown opcode (`0x01`) or a malformed payload (`0x02`) gets an error frame and the
//!   connection stays usable (the frame's length was honoured).
//! - At most `wire.max_connections` connections; a connection idle for `wire.idle_timeout_ms`
//!   is closed. Memory per connection is bounded by one frame plus the answers of one read.
//! - A full buffer or WAL queue answers `0x04` (buffer overflow; retry later) with the HTTP
//!   error body.
//! - Shutdown: the listener stops accepting, connections finish the request in hand and close.
//!
//! # Authentication
//! With credentials configured, a connection starts unauthenticated: until an `AUTH` frame
//! carries a valid bearer token or JWT, every other frame is answered `0x05` without decoding
//! its payload, and frames may be at most [`PRE_AUTH_MAX_FRAME`] bytes (an anonymous peer
//! cannot make the server buffer 32 MiB). A bad token answers `0x05` and leaves the connection
//! unauthenticated. Each operation is then authorized exactly like its HTTP route
//! ([`opcode_authz`] declares what each opcode needs and the route it mirrors; `Auth::authorize`
//! decides), on the
//! `default` database: `0x06` when refused. A failed `AUTH` leaves the connection
//! unauthenticated; a JWT's `exp` is re-checked on every frame. In dev mode `AUTH` is accepted
//! and ignored. Every other frame then passes the same per-actor admission as an HTTP request
//! (`Admission::admit`: load shedding → `0x04`, rate limit and in-flight budgets → `0x07`), a
//! frame counting as one request of its payload's size.
//!
//! Replication opcodes `0x90`–`0x92` run `core::replication` like their HTTP routes;
//! `0x93` (`CHANGES_SUBSCRIBE`) is served on `/v1/ws` only.
//!
//! Time-series puts (`0x70`, `0x73`) decode straight into the engine's series + samples
//! ([`sluice_wire::decode_ts_series`]): a series' strings once per frame, no owned point per
//! point (4.6M points/s per core at `fsync` on the benchmark).

mod dispatch;
mod session;
mod websocket;

pub use session::{PRE_AUTH_MAX_FRAME, Session, opcode_authz, too_large_frame, wire_status};
pub use websocket::{websocket, ws_router};

use std::sync::Arc;
use std::time::Duration;

use sluice_wire::{FrameError, split_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::config::WireConfig;
use crate::state::AppState;

/// Serves the wire protocol on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, state: AppState, mut stop: watch::Receiver<bool>) {
    let config = state.config().wire.clone();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let stopping = *stop.borrow();
        if stopping {
            break;
        }
        let permit = tokio::select! {
            c = stop.changed() => if c.is_err() { break } else { continue },
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _) = tokio::select! {
            c = stop.changed() => if c.is_err() { break } else { continue },
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "wire accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (state, config, stop) = (state.clone(), config.clone(), stop.clone());
        tasks.spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(stream, &state, &config, stop).await {
                tracing::debug!(error = %e, "wire connection ended");
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    // Connections notice the stop between requests; give them a moment, then cut them.
    let grace = Duration::from_millis(state.config().http.shutdown_grace_ms);
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tasks.abort_all();
    }
}

pub(super) async fn connection(
    mut stream: TcpStream,
    state: &AppState,
    config: &WireConfig,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut session = Session::new(state);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Answer every complete frame already buffered, in order.
        let mut used = 0;
        loop {
            match split_frame(&buf[used..], session.max_frame(config)) {
                Ok(Some((frame, n))) => {
                    session.handle(state, &frame, &mut out).await;
                    used += n;
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { length, max }) => {
                    too_large_frame(length as usize, max, &mut out);
                    stream.write_all(&out).await?;
                    return stream.shutdown().await;
                }
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            // A peer that stops reading its answers is cut off like an idle one.
            match tokio::time::timeout(idle, stream.write_all(&out)).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            }
            out.clear();
        }
        let stopping = *stop.borrow();
        if stopping {
            return stream.shutdown().await;
        }
        let read = tokio::select! {
            r = tokio::time::timeout(idle, stream.read(&mut chunk)) => Ok(r),
            c = stop.changed() => Err(c.is_err()),
        };
        let n = match read {
            Ok(Ok(r)) => r?,
            // Idle too long, or the server's stop signal is gone.
            Ok(Err(_)) | Err(true) => return stream.shutdown().await,
            // The stop signal changed: checked at the loop's top.
            Err(false) => continue,
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
