//! The server's one error type, and the edge where it becomes an HTTP answer.
//!
//! Layers below the server return their own typed errors (`WalError`, `InvalidPoint`, …) that
//! know nothing of transports. [`ApiError`] is what every operation of the server returns, and
//! it knows nothing of HTTP either: a typed [`ErrorCode`] (shared with clients through
//! `sluice-api`, serialized as stable snake_case strings), an external message, the details a
//! client acts on (field path, retry-after, the seed routes' `success: false` and
//! `buffer_size`, replication's `expected_lsn` and `primary`), and for internal errors a
//! detail that is logged under the request id but never sent. Each transport maps the code in
//! exactly one function: [`http_status`] here, `wire::wire_status` for wire error frames; both
//! matches are exhaustive, so a new code cannot be added without its statuses.
//!
//! Every 4xx/5xx body has the shape of [`sluice_api::ErrorBody`]; errors produced outside
//! handlers (unknown route, wrong method, framework rejections) are rewritten into that shape
//! by the request middleware, keeping their status ([`ApiError::code_for_status`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_api::{ErrorBody, ErrorCode};
use sluice_wal::WalError;

use crate::http::request_id;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    pub retry_after_secs: Option<u64>,
    /// Logged, never sent.
    pub internal: Option<Box<str>>,
    /// Seed routes' extra fields.
    pub seed: Option<Box<SeedFields>>,
}

/// The optional fields of an error answer: those seed routes keep (`success: false`,
/// `buffer_size`) and replication's (`expected_lsn`, `primary`).
#[derive(Debug, Default)]
pub struct SeedFields {
    pub success: Option<bool>,
    pub buffer_size: Option<u64>,
    pub expected_lsn: Option<u64>,
    pub primary: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            field: None,
            retry_after_secs: None,
            internal: None,
            seed: None,
        }
    }

    /// The seed's buffer overflow answer: 503, `{"success": false, "error": "Buffer overflow",
    /// "buffer_size": N}` plus `code` and `error_id`.
    pub fn buffer_overflow(buffer_size: u64) -> ApiError {
        ApiError {
            seed: Some(Box::new(SeedFields {
                success: Some(false),
                buffer_size: Some(buffer_size),
                ..SeedFields::default()
            })),
            ..ApiError::new(ErrorCode::BufferOverflow, "Buffer overflow")
        }
        .retry_after(1)
    }

    /// A 400 naming the field at fault.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let field = field.into();
        let message = message.into();
        ApiError {
            field: Some(field.clone()),
            ..ApiError::new(ErrorCode::InvalidField, format!("{field}: {message}"))
        }
    }

    /// Adds the optional fields of the answer.
    pub fn with_fields(mut self, fields: SeedFields) -> ApiError {
        self.seed = Some(Box::new(fields));
        self
    }

    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after_secs = Some(secs);
        self
    }

    /// A 500 whose detail is logged but not sent.
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError {
            internal: Some(detail.into().into_boxed_str()),
            ..ApiError::new(
                ErrorCode::Internal,
                "internal error; quote the error_id when reporting it",
            )
        }
    }

    pub fn not_ready() -> ApiError {
        ApiError::new(
            ErrorCode::NotReady,
            "the server is still recovering its databases",
        )
        .retry_after(1)
    }

    /// The code of a rejection made outside a handler (by the framework or a layer), which
    /// keeps its own status.
    pub fn code_for_status(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::Unprocessable,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::TooManyRequests,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            s if s.is_client_error() => ErrorCode::ClientError,
            _ => ErrorCode::Internal,
        }
    }

    pub fn body(&self, error_id: String) -> ErrorBody {
        ErrorBody {
            error: self.message.clone(),
            code: self.code,
            error_id,
            field: self.field.clone(),
            success: self.seed.as_ref().and_then(|s| s.success),
            buffer_size: self.seed.as_ref().and_then(|s| s.buffer_size),
            retry_after_sec: None,
            expected_lsn: self.seed.as_ref().and_then(|s| s.expected_lsn),
            primary: self.seed.as_ref().and_then(|s| s.primary.clone()),
        }
    }
}

/// The HTTP status of each error code: the one place it is decided. Exhaustive, so a new code
/// cannot be added without its status.
pub fn http_status(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::BadRequest
        | C::BodyReadFailed
        | C::InvalidDatabase
        | C::InvalidEncoding
        | C::InvalidField
        | C::InvalidJson
        | C::InvalidLineProtocol
        | C::InvalidParameter
        | C::JsonTooDeep
        | C::QueryTooLarge
        | C::ClientError
        | C::InvalidOpcode
        | C::MalformedPayload
        | C::SubscriptionTransport
        | C::TextMessage
        | C::TruncatedFrame
        | C::CorruptBatch
        | C::CorruptSnapshot
        | C::Unknown => StatusCode::BAD_REQUEST,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::Forbidden | C::CrossOrigin => StatusCode::FORBIDDEN,
        C::NotFound
        | C::CollectionNotFound
        | C::DatabaseNotFound
        | C::EntityNotFound
        | C::ReplicaNotFound => StatusCode::NOT_FOUND,
        C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        C::BodyTimeout | C::RequestTimeout | C::SnapshotStalled => StatusCode::REQUEST_TIMEOUT,
        C::CollectionExists
        | C::DatabaseExists
        | C::DatabaseProtected
        | C::AlreadyPrimary
        | C::ConflictingPrimary
        | C::NotAReplica
        | C::ReadOnlyReplica
        | C::ReplicaExists
        | C::StaleEpoch
        | C::WalGap => StatusCode::CONFLICT,
        C::LsnGone | C::DatabaseReplaced => StatusCode::GONE,
        C::PayloadTooLarge | C::TooLargeExpanded | C::TooManyPoints | C::FrameTooLarge => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        C::Unprocessable | C::CollectionLimit | C::SeriesLimit | C::RecordRefused => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        C::WebsocketRequired => StatusCode::UPGRADE_REQUIRED,
        C::RateLimited | C::TooManyBytesInFlight | C::TooManyInFlight | C::TooManyRequests => {
            StatusCode::TOO_MANY_REQUESTS
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
        | C::ReplicationBusy => StatusCode::SERVICE_UNAVAILABLE,
        C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error_id = request_id::current();
        // Only internal errors are logged as errors: 503s (overload, not ready) are expected
        // under load and counted by the metrics; logging each would amplify the overload.
        let status = http_status(self.code);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(
                request_id = %error_id,
                code = self.code.as_str(),
                internal = self.internal.as_deref().unwrap_or(""),
                "{}",
                self.message
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                code = self.code.as_str(),
                "{}",
                self.message
            );
        }
        let mut response = (status, axum::Json(self.body(error_id))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ErrorShaped);
        response
    }
}

/// Marks a response whose body already has the error shape.
#[derive(Clone, Copy, Debug)]
pub struct ErrorShaped;

impl From<WalError> for ApiError {
    fn from(e: WalError) -> ApiError {
        match e {
            WalError::Overloaded { .. } => ApiError::new(
                ErrorCode::Overloaded,
                "the write-ahead log queue is full; retry shortly",
            )
            .retry_after(1),
            WalError::RecordTooLarge { size, max } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the write encodes to {size} bytes; one write may be at most {max}"),
            ),
            WalError::Closed => {
                ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down").retry_after(1)
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<crate::flusher::FlushRequestError> for ApiError {
    /// A manual flush the flusher cannot take now: 503, retry shortly.
    fn from(e: crate::flusher::FlushRequestError) -> ApiError {
        ApiError::new(ErrorCode::FlushUnavailable, e.to_string()).retry_after(1)
    }
}
