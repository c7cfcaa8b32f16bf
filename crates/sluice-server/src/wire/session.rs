//! One client's protocol state and the answer to each frame: authentication (`AUTH`),
//! authorization per opcode ([`opcode_authz`]), admission, dispatch, and error frames (the one
//! mapping of error codes to wire statuses, [`wire_status`]).

use sluice_api::ErrorCode;
use std::sync::Arc;

use sluice_api::ErrorBody;
use sluice_wire::{DecodeError, Request, Status, encode_frame};

use axum::http::Method;

use crate::auth::authz::Need;
use crate::auth::{Action, Actor, Scope};
use crate::config::WireConfig;
use crate::core;
use crate::db::{DEFAULT_DATABASE, Database};
use crate::error::ApiError;
use crate::request_id;
use crate::state::AppState;

use super::dispatch::{dispatch, json, ts_put, wire_json};

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
    pub(super) fn subscribe(
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
        O::VectorSearch => (read, Method::POST, "/vectors/search"),
    })
}

/// Authenticates an `AUTH` frame or authorizes any other; the error to answer otherwise.
pub(super) fn admit(
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
pub(super) fn auth_required() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        "authentication required: send an AUTH frame with a bearer token first",
    )
}

/// Answers one request frame into `out`.
pub(super) async fn handle(
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

/// The wire status of each error code: the one place it is decided (exhaustive, so a new code
/// cannot be added without its status). Refusals that mean "nothing was done, retry later"
/// are `0x04`, like HTTP's 503 + Retry-After.
pub fn wire_status(code: ErrorCode) -> Status {
    use ErrorCode as C;
    match code {
        C::InvalidOpcode => Status::InvalidOpcode,
        C::MalformedPayload | C::FrameTooLarge | C::TextMessage | C::TruncatedFrame => {
            Status::MalformedPayload
        }
        C::Unauthenticated => Status::Unauthorized,
        C::Forbidden | C::CrossOrigin => Status::Forbidden,
        C::RateLimited
        | C::TooManyBytesInFlight
        | C::TooManyInFlight
        | C::TooManyRequests
        | C::NewSeriesLimit => Status::TooManyRequests,
        C::BufferOverflow
        | C::FlushUnavailable
        | C::NotReady
        | C::Overloaded
        | C::InsufficientStorage
        | C::ShuttingDown
        | C::Unavailable
        | C::ServerOverloaded
        | C::TooManySessions
        | C::ConfigDrift
        | C::EpochNotSaved
        | C::ReplicationBusy => Status::BufferOverflow,
        C::PayloadTooLarge
        | C::BadRequest
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
        | C::InvalidValue
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

/// An error frame carrying the HTTP error shape; 5xx details are logged, not sent.
pub(super) fn error_frame(e: ApiError, out: &mut Vec<u8>) {
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
