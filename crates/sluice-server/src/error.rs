//! The server's one error type.
//!
//! Layers below the server return their own typed errors (`WalError`, `InvalidPoint`, …) that
//! know nothing of transports. [`ApiError`] is what every operation of the server returns, and
//! it knows nothing of HTTP either: a typed [`ErrorCode`] (shared with clients through
//! `sluice-api`, serialized as stable snake_case strings), an external message, the details a
//! client acts on (field path, retry-after, the seed routes' `success: false` and
//! `buffer_size`, replication's `expected_lsn` and `primary`), and for internal errors a
//! detail that is logged under the request id but never sent. Each transport maps the code in
//! exactly one function: `http::error::http_status` for HTTP answers, `wire::wire_status` for
//! wire error frames; both
//! matches are exhaustive, so a new code cannot be added without its statuses.
//!
//! Every 4xx/5xx body has the shape of [`sluice_api::ErrorBody`]; errors produced outside
//! handlers (unknown route, wrong method, framework rejections) are rewritten into that shape
//! by the request middleware, keeping their status.

use sluice_api::{ErrorBody, ErrorCode};
use sluice_wal::WalError;

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

    /// A 422 naming the field whose value fits the request's schema but breaks a rule the
    /// schema cannot state: one field against another, a regex's or a policy's syntax, a
    /// vector against its collection.
    pub fn invalid_value(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            code: ErrorCode::InvalidValue,
            ..ApiError::invalid_field(field, message)
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

    pub fn body(&self, error_id: String) -> ErrorBody {
        ErrorBody {
            error: self.message.clone(),
            code: self.code,
            error_id,
            field: self.field.clone(),
            // Seed routes answer `success: false` on every error, as the seed documents.
            success: self
                .seed
                .as_ref()
                .and_then(|s| s.success)
                .or_else(|| crate::request_id::on_seed_route().then_some(false)),
            buffer_size: self.seed.as_ref().and_then(|s| s.buffer_size),
            retry_after_sec: None,
            expected_lsn: self.seed.as_ref().and_then(|s| s.expected_lsn),
            primary: self.seed.as_ref().and_then(|s| s.primary.clone()),
        }
    }
}

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
            WalError::StorageFull => ApiError::new(
                ErrorCode::InsufficientStorage,
                "the disk is full: writes are refused until space returns (reads are served); retry later",
            )
            .retry_after(5),
            WalError::Closed => {
                ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down").retry_after(1)
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<crate::flusher::FlushRequestError> for ApiError {
    /// A manual flush the flusher cannot take now: 503, retry shortly; a full disk: 507.
    fn from(e: crate::flusher::FlushRequestError) -> ApiError {
        match e {
            crate::flusher::FlushRequestError::StorageFull => {
                ApiError::new(ErrorCode::InsufficientStorage, e.to_string()).retry_after(5)
            }
            _ => ApiError::new(ErrorCode::FlushUnavailable, e.to_string()).retry_after(1),
        }
    }
}
