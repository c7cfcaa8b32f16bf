//! The binary wire protocol listener (SPEC §7; frames in `sluice-wire`, reference in
//! `docs/wire-protocol.md`).
//!
//! One task per connection reads into a buffer, splits frames without copying
//! ([`sluice_wire::split_frame`]), and answers each request in order through the same engine
//! paths as HTTP (`routes::ts::write`, `routes::vectors::write`, the stats builders), so an
//! operation behaves the same on both transports. Clients may pipeline: the frames of one
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
//! Replication opcodes `0x90`–`0x92` run the replication routes' handlers
//! (`routes::replication`); `0x93` (`CHANGES_SUBSCRIBE`) is served on `/v1/ws` only.
//!
//! Time-series puts (`0x70`, `0x73`) decode straight into the engine's series + samples
//! ([`sluice_wire::decode_ts_series`]): a series' strings once per frame, no owned point per
//! point (4.6M points/s per core at `fsync` on the benchmark).

use sluice_api::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sluice_api::ErrorBody;
use sluice_vector::engine::WriteMode;
use sluice_vector::record::{EntityData, Op};
use sluice_wal::AckLevel;
use sluice_wire::{DecodeError, FrameError, Request, Status, encode_frame, split_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use axum::http::Method;

use crate::auth::authz::Need;
use crate::auth::{Action, Actor, Scope};
use crate::config::WireConfig;
use crate::core;
use crate::core::feed::{Feed, FeedEnd};
use crate::db::{DEFAULT_DATABASE, Database};
use crate::error::ApiError;
use crate::request_id;
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

/// Largest frame accepted before the connection has authenticated.
pub const PRE_AUTH_MAX_FRAME: usize = 64 * 1024;

/// One client's protocol state, whatever the transport (TCP or WebSocket): who it is.
pub struct Session {
    actor: Option<Arc<Actor>>,
}

impl Session {
    /// A new session: the anonymous admin in dev mode, else unauthenticated until `AUTH`.
    pub fn new(state: &AppState) -> Session {
        let actor = if state.auth().dev_mode() {
            state.auth().authenticate_token("").ok()
        } else {
            None
        };
        Session { actor }
    }

    /// A session already authenticated (e.g. by the WebSocket upgrade's `Authorization`).
    pub fn authenticated(actor: Arc<Actor>) -> Session {
        Session { actor: Some(actor) }
    }

    /// The largest frame this session may send now.
    pub fn max_frame(&self, config: &WireConfig) -> usize {
        if self.actor.is_some() {
            config.max_frame_bytes
        } else {
            PRE_AUTH_MAX_FRAME.min(config.max_frame_bytes)
        }
    }

    /// Checks a `CHANGES_SUBSCRIBE` frame: the database to follow and the first LSN to send.
    fn subscribe(
        &self,
        state: &AppState,
        frame: &sluice_wire::RawFrame<'_>,
    ) -> Result<(Arc<Database>, sluice_wal::Lsn), ApiError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Subscribe {
            #[serde(default = "default_db")]
            database: String,
            from_lsn: Option<u64>,
        }
        fn default_db() -> String {
            DEFAULT_DATABASE.to_string()
        }
        let Some(actor) = self.actor.as_ref().filter(|a| !a.expired()) else {
            return Err(auth_required());
        };
        let req: Subscribe = wire_json(frame.payload)?;
        let db = state.database(&req.database)?;
        state
            .auth()
            .authorize(
                actor,
                crate::auth::Action::Read,
                Some((&db.name, db.policy.as_deref())),
                "/changes",
                "WIRE",
            )
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Forbidden,
                    format!("actor {:?} may not read database {:?}", actor.name, db.name),
                )
            })?;
        let start = core::feed::start_position(&db, req.from_lsn)?;
        Ok((db, start))
    }

    /// Answers one request frame into `out`.
    pub async fn handle(
        &mut self,
        state: &AppState,
        frame: &sluice_wire::RawFrame<'_>,
        out: &mut Vec<u8>,
    ) {
        handle(state, frame, out, &mut self.actor).await
    }
}

/// The error frame for a frame longer than `max` (the caller then closes the connection).
pub fn too_large_frame(length: usize, max: usize, out: &mut Vec<u8>) {
    error_frame(
        ApiError::new(
            ErrorCode::FrameTooLarge,
            format!("a frame of {length} bytes exceeds the limit of {max}; closing"),
        ),
        out,
    );
}

async fn connection(
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

/// What an opcode needs, declared here for the wire as `x-sluice-authz` declares it for each
/// HTTP route, with the route it mirrors (Cedar policies see that route, so one policy covers
/// both transports). `None` for `AUTH`, which every connection may send. The authorization
/// coverage test holds each declaration equal to its route's.
pub fn opcode_authz(opcode: sluice_wire::Opcode) -> Option<(Need, Method, &'static str)> {
    use sluice_wire::Opcode as O;
    let need = |action, scope| Need {
        action,
        scope,
        mutates: action == Action::Write,
    };
    let write = need(Action::Write, Scope::Database);
    let read = need(Action::Read, Scope::Database);
    let flush = need(Action::Admin, Scope::Database);
    let server = need(Action::Admin, Scope::Server);
    Some(match opcode {
        O::Auth => return None,
        O::TsPutBuffered => (write, Method::POST, "/ts/put/buffered"),
        O::TsPut => (write, Method::POST, "/ts/put/batch"),
        O::TsBufferStats => (read, Method::GET, "/ts/buffer/stats"),
        O::TsBufferFlush => (flush, Method::POST, "/ts/buffer/flush"),
        O::VectorAddBuffered => (write, Method::POST, "/vectors/add/buffered"),
        O::VectorUpdateBuffered => (write, Method::POST, "/vectors/update/buffered"),
        O::VectorRemoveBuffered => (write, Method::DELETE, "/vectors/remove/buffered"),
        O::VectorBufferStats => (read, Method::GET, "/vectors/buffer/stats"),
        O::VectorBufferFlush => (flush, Method::POST, "/vectors/buffer/flush"),
        O::WalApplyCompressed => (server, Method::POST, "/api/v1/wal/apply"),
        O::ReplicationStats => (server, Method::GET, "/api/v1/replication/stats"),
        O::ReplicationConfig => (server, Method::POST, "/api/v1/replication/config"),
        O::ChangesSubscribe => (read, Method::GET, "/v1/databases/{db}/changes"),
    })
}

/// Authenticates an `AUTH` frame or authorizes any other; the error to answer otherwise.
fn admit(
    state: &AppState,
    frame: &sluice_wire::RawFrame<'_>,
    actor: &mut Option<Arc<Actor>>,
) -> Result<(), ApiError> {
    let auth = state.auth();
    let opcode = sluice_wire::Opcode::from_u8(frame.code);
    if opcode == Some(sluice_wire::Opcode::Auth) {
        if auth.dev_mode() {
            return Ok(());
        }
        let token = match sluice_wire::decode_request(frame) {
            Ok(Request::Auth { token }) => token,
            _ => "",
        };
        return match auth.authenticate_token(token) {
            Ok(a) => {
                *actor = Some(a);
                Ok(())
            }
            Err(_) => {
                // A failed AUTH leaves the connection unauthenticated, whoever it was before.
                *actor = None;
                Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "invalid or expired credentials",
                ))
            }
        };
    }
    if actor.as_ref().is_some_and(|a| a.expired()) {
        *actor = None;
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "the connection's credentials expired: send AUTH again",
        ));
    }
    let Some(a) = actor.as_ref() else {
        return Err(auth_required());
    };
    // Unknown opcodes are answered by the decoder.
    let Some(opcode) = opcode else { return Ok(()) };
    let Some((need, _, twin)) = opcode_authz(opcode) else {
        return Ok(());
    };
    let (action, scope) = (need.action, need.scope);
    // Policies see the route without its database prefix, as for HTTP requests.
    let route = twin.strip_prefix("/v1/databases/{db}").unwrap_or(twin);
    let db = state.databases().and_then(|d| d.get(DEFAULT_DATABASE));
    let target = match scope {
        crate::auth::Scope::Database => Some((
            DEFAULT_DATABASE,
            db.as_ref().and_then(|d| d.policy.as_deref()),
        )),
        _ => None,
    };
    auth.authorize(a, action, target, route, "WIRE")
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Forbidden,
                format!("actor {:?} may not {} here", a.name, action.as_str()),
            )
        })?;
    if need.mutates
        && let Some(refusal) = state.replication().refuse_write()
    {
        return Err(refusal);
    }
    Ok(())
}

/// The `0x05` answer to a frame that needs a connection authenticated by `AUTH`.
fn auth_required() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        "authentication required: send an AUTH frame with a bearer token first",
    )
}

/// Answers one request frame into `out`.
async fn handle(
    state: &AppState,
    frame: &sluice_wire::RawFrame<'_>,
    out: &mut Vec<u8>,
    actor: &mut Option<Arc<Actor>>,
) {
    if let Err(e) = admit(state, frame, actor) {
        return error_frame(e, out);
    }
    // The same per-actor admission as HTTP: one frame is one request of its payload's size.
    let _admitted = match actor.as_ref() {
        Some(a) if state.admission().enabled() && frame.code != sluice_wire::Opcode::Auth as u8 => {
            match state.admission().admit(state, &a.name, frame.payload.len()) {
                Ok(admitted) => Some(admitted),
                Err(r) => {
                    state.metrics().admission_rejected(r.code);
                    return error_frame(r.into_api_error(), out);
                }
            }
        }
        _ => None,
    };
    let decode_error = |e: DecodeError, out: &mut Vec<u8>| {
        let code = match e {
            DecodeError::UnknownOpcode(_) => ErrorCode::InvalidOpcode,
            DecodeError::Malformed(_) => ErrorCode::MalformedPayload,
        };
        debug_assert_eq!(wire_status(code), e.status());
        error_frame(ApiError::new(code, e.to_string()), out)
    };
    // Time-series puts decode straight into series and samples (no owned point per point).
    let answer = match sluice_wire::decode_ts_series(frame) {
        Ok(Some(put)) => ts_put(state, put).await,
        Ok(None) => match sluice_wire::decode_request(frame) {
            Ok(request) => dispatch(state, request).await,
            Err(e) => return decode_error(e, out),
        },
        Err(e) => return decode_error(e, out),
    };
    match answer {
        Ok(payload) => encode_frame(Status::Ok as u8, 0, &payload, out),
        Err(e) => error_frame(e, out),
    }
}

/// A JSON payload (replication opcodes carry the HTTP bodies).
fn wire_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_field("payload", format!("not the expected JSON: {e}")))
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

async fn dispatch(state: &AppState, request: Request<'_>) -> Result<Vec<u8>, ApiError> {
    let db = state.database(DEFAULT_DATABASE)?;
    match request {
        Request::Auth { .. } => Ok(Vec::new()),
        // Decoded by `decode_ts_series` before `dispatch` (see `handle`).
        Request::TsPutBuffered { .. } | Request::TsPut { .. } => Err(ApiError::internal(
            "time-series puts are decoded by decode_ts_series",
        )),
        Request::TsBufferStats => Ok(json(&core::ts::stats_body(&db))),
        Request::TsBufferFlush => Ok(json(&core::ts::flush_now(&db).await?)),
        Request::VectorAddBuffered { entities, .. } => {
            vector_write(
                state,
                db,
                entities.into_iter().map(|e| Op::Add(entity(e))).collect(),
            )
            .await
        }
        Request::VectorUpdateBuffered { entities, .. } => {
            vector_write(
                state,
                db,
                entities
                    .into_iter()
                    .map(|e| Op::Update(entity(e)))
                    .collect(),
            )
            .await
        }
        Request::VectorRemoveBuffered { pks, .. } => {
            let ops = pks
                .into_iter()
                .map(|pk| Op::Remove { pk: pk.to_string() })
                .collect();
            vector_write(state, db, ops).await
        }
        Request::VectorBufferStats => Ok(json(&core::vectors::stats_body(&db))),
        Request::VectorBufferFlush => Ok(json(&core::vectors::flush_now(&db).await?)),
        Request::WalApplyCompressed(body) => {
            let req = wire_json(body)?;
            let sent = body.len() as u64;
            Ok(json(
                &core::replication::apply_batch(state, None, sent, req).await?,
            ))
        }
        Request::ReplicationStats => Ok(json(
            &state
                .replication()
                .stats(state.databases().map(|d| d.as_ref())),
        )),
        Request::ReplicationConfig(body) => Ok(json(&core::replication::configure(
            state,
            wire_json(body)?,
        )?)),
        Request::ChangesSubscribe(_) => Err(ApiError::new(
            ErrorCode::SubscriptionTransport,
            "changefeed subscriptions are served over /v1/ws (or as SSE at /v1/databases/{db}/changes), not on the TCP listener",
        )),
    }
}

/// A time-series put (`TS_PUT_BUFFERED` or `TS_PUT`): its series and samples as an engine
/// batch, each error naming its field (`points[3].value`; a series' errors name its first
/// point), written at the opcode's acknowledgement level.
async fn ts_put(
    state: &AppState,
    put: sluice_wire::TsSeriesBatch<'_>,
) -> Result<Vec<u8>, ApiError> {
    let db = state.database(DEFAULT_DATABASE)?;
    core::ts::check_batch_len(put.samples.len(), &state.config().limits)?;
    let limits = db.ts.config().point_limits;
    // Field paths as before the series-grouped decoder: indexed when the frame holds more than
    // one point. Series are checked before values, so the first error reported is the first
    // bad series, else the first bad value.
    let many = put.samples.len() > 1;
    let field = |i: usize, f: &str| {
        if many {
            format!("points[{i}].{f}")
        } else {
            f.to_string()
        }
    };
    let mut batch = sluice_ts::Batch::with_capacity(put.series.len(), put.samples.len());
    for s in put.series {
        let key = sluice_ts::series::SeriesKey::new(
            s.metric.to_string(),
            s.entity.to_string(),
            s.tags,
            &limits,
        )
        .map_err(|e| ApiError::invalid_field(field(s.first, &e.field), e.reason))?;
        batch.add_series(key);
    }
    let now_ms = sluice_ts::now_ms();
    for (i, s) in put.samples.iter().enumerate() {
        let timestamp_ms = if s.timestamp_ms == sluice_wire::TIMESTAMP_NOW {
            now_ms
        } else {
            s.timestamp_ms
        };
        batch
            .push(s.series, timestamp_ms, s.value)
            .map_err(|e| ApiError::invalid_field(field(i, &e.field), e.reason))?;
    }
    if put.op == sluice_wire::Opcode::TsPut {
        let (lsn, _) = core::ts::write(&db, batch, AckLevel::Fsync).await?;
        Ok(lsn.get().to_le_bytes().to_vec())
    } else {
        let ack = ts_buffered_ack(&db);
        let (_, size) = core::ts::write(&db, batch, ack).await?;
        Ok(size.to_le_bytes().to_vec())
    }
}

fn ts_buffered_ack(db: &Database) -> AckLevel {
    if db.ts.config().auto_buffer.enabled {
        AckLevel::Buffer
    } else {
        AckLevel::Fsync
    }
}

fn entity(e: sluice_wire::VectorEntity<'_>) -> EntityData {
    EntityData {
        pk: e.pk.to_string(),
        vector: e.vector.to_vec(),
        metadata: e.metadata.unwrap_or_default(),
    }
}

async fn vector_write(
    state: &AppState,
    db: Arc<Database>,
    ops: Vec<Op>,
) -> Result<Vec<u8>, ApiError> {
    core::vectors::check_batch_len(ops.len(), state.config().vector.max_vectors_per_batch)?;
    let enabled = db.vectors.config().auto_buffer.enabled;
    let (mode, ack) = if enabled {
        (WriteMode::Buffered, AckLevel::Buffer)
    } else {
        (WriteMode::Direct, AckLevel::Fsync)
    };
    let batch = ops.len() > 1;
    let prefix: fn(usize) -> String = if batch {
        |i| format!("vectors[{i}].")
    } else {
        |_| String::new()
    };
    let (_, size) = core::vectors::write(
        db,
        sluice_vector::engine::DEFAULT_COLLECTION.to_string(),
        ops,
        mode,
        ack,
        prefix,
    )
    .await?;
    Ok(size.to_le_bytes().to_vec())
}

/// An error frame carrying the HTTP error shape; 5xx details are logged, not sent.
/// The wire status of each error code: the one place it is decided (exhaustive, so a new code
/// cannot be added without its status). Refusals that mean "nothing was done, retry later"
/// are `0x04`, like HTTP's 503 + Retry-After.
pub fn wire_status(code: ErrorCode) -> Status {
    use ErrorCode as C;
    match code {
        C::InvalidOpcode => Status::InvalidOpcode,
        C::MalformedPayload
        | C::FrameTooLarge
        | C::TextMessage
        | C::TruncatedFrame
        | C::PayloadTooLarge => Status::MalformedPayload,
        C::Unauthenticated => Status::Unauthorized,
        C::Forbidden | C::CrossOrigin => Status::Forbidden,
        C::RateLimited | C::TooManyBytesInFlight | C::TooManyInFlight | C::TooManyRequests => {
            Status::TooManyRequests
        }
        C::BufferOverflow
        | C::FlushUnavailable
        | C::NotReady
        | C::Overloaded
        | C::ShuttingDown
        | C::Unavailable
        | C::ServerOverloaded
        | C::TooManySessions
        | C::ConfigDrift
        | C::EpochNotSaved
        | C::ReplicationBusy => Status::BufferOverflow,
        C::BadRequest
        | C::BodyReadFailed
        | C::BodyTimeout
        | C::ClientError
        | C::InvalidDatabase
        | C::InvalidEncoding
        | C::InvalidField
        | C::InvalidJson
        | C::InvalidLineProtocol
        | C::InvalidParameter
        | C::JsonTooDeep
        | C::MethodNotAllowed
        | C::NotFound
        | C::QueryTooLarge
        | C::RequestTimeout
        | C::TooLargeExpanded
        | C::TooManyPoints
        | C::Unprocessable
        | C::UnsupportedMediaType
        | C::SubscriptionTransport
        | C::WebsocketRequired
        | C::CollectionExists
        | C::CollectionLimit
        | C::CollectionNotFound
        | C::DatabaseExists
        | C::DatabaseNotFound
        | C::DatabaseProtected
        | C::DatabaseReplaced
        | C::EntityNotFound
        | C::SeriesLimit
        | C::AlreadyPrimary
        | C::ConflictingPrimary
        | C::CorruptBatch
        | C::CorruptSnapshot
        | C::LsnGone
        | C::NotAReplica
        | C::ReadOnlyReplica
        | C::RecordRefused
        | C::ReplicaExists
        | C::ReplicaNotFound
        | C::SnapshotStalled
        | C::StaleEpoch
        | C::WalGap
        | C::Internal
        | C::Unknown => Status::ProcessingError,
    }
}

fn error_frame(e: ApiError, out: &mut Vec<u8>) {
    let status = wire_status(e.code);
    let id = request_id::generate();
    // Only internal errors are logged: 503s are backpressure, expected under load.
    if e.code == ErrorCode::Internal {
        tracing::error!(request_id = %id, code = e.code.as_str(), detail = e.internal.as_deref().unwrap_or(""), "wire request failed");
    }
    let mut body: ErrorBody = e.body(id);
    body.retry_after_sec = e.retry_after_secs;
    encode_frame(status as u8, 0, &json(&body), out);
}

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

async fn ws_session(
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
async fn ws_feed(
    mut socket: axum::extract::ws::WebSocket,
    state: &AppState,
    db: Arc<Database>,
    start: sluice_wal::Lsn,
) -> Result<(), axum::Error> {
    use axum::extract::ws::Message;
    let mut feed = Feed::new(state, db, start, WS_ANSWER_CHUNK);
    let stall = feed.stall_timeout();
    loop {
        // The peer may only close now: watch for that while waiting for records.
        let read = tokio::select! {
            r = feed.next(crate::core::feed::POLL) => r,
            m = socket.recv() => match m {
                None | Some(Ok(Message::Close(_))) | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => continue,
            },
        };
        match read {
            Ok(batch) if batch.is_empty() => {}
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

/// Ends a subscribed session: an error frame (`0x03`, HTTP status 410 in its body), then close.
async fn end_feed(
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
const WS_ANSWER_CHUNK: usize = 1 << 20;

/// Sends one binary message, giving up (ending the session) if the peer does not take it
/// within `idle`: a client that stops reading cannot pin answers in memory.
async fn send_within(
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
