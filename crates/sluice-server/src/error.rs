//! The edge where errors become HTTP answers.
//!
//! Layers below the server return their own typed errors (`WalError`, `InvalidPoint`, …) that
//! know nothing of HTTP. [`ApiError`] is the one place they are turned into a status, a stable
//! `code`, an external message, and (for 5xx) an internal detail that is logged under the
//! request id but never sent. Every 4xx/5xx body has the shape of [`sluice_api::ErrorBody`];
//! errors produced outside handlers (unknown route, wrong method, framework rejections) are
//! rewritten into that shape by the request middleware.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_api::ErrorBody;
use sluice_wal::WalError;

use crate::http::request_id;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
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
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
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
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "buffer_overflow",
                "Buffer overflow",
            )
        }
        .retry_after(1)
    }

    /// A 400 naming the field at fault.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let field = field.into();
        let message = message.into();
        ApiError {
            field: Some(field.clone()),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                format!("{field}: {message}"),
            )
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
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; quote the error_id when reporting it",
            )
        }
    }

    pub fn not_ready() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the server is still recovering its databases",
        )
        .retry_after(1)
    }

    /// The default code for a status produced outside a handler.
    pub fn code_for_status(status: StatusCode) -> &'static str {
        match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_client_error() => "client_error",
            _ => "internal",
        }
    }

    pub fn body(&self, error_id: String) -> ErrorBody {
        ErrorBody {
            error: self.message.clone(),
            code: self.code.to_string(),
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error_id = request_id::current();
        // Only internal errors are logged as errors: 503s (overload, not ready) are expected
        // under load and counted by the metrics; logging each would amplify the overload.
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(
                request_id = %error_id,
                code = self.code,
                internal = self.internal.as_deref().unwrap_or(""),
                "{}",
                self.message
            );
        } else {
            tracing::debug!(
                status = self.status.as_u16(),
                code = self.code,
                "{}",
                self.message
            );
        }
        let mut response = (self.status, axum::Json(self.body(error_id))).into_response();
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
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the write-ahead log queue is full; retry shortly",
            )
            .retry_after(1),
            WalError::RecordTooLarge { size, max } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the write encodes to {size} bytes; one write may be at most {max}"),
            ),
            WalError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            )
            .retry_after(1),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<crate::flusher::FlushRequestError> for ApiError {
    /// A manual flush the flusher cannot take now: 503, retry shortly.
    fn from(e: crate::flusher::FlushRequestError) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "flush_unavailable",
            e.to_string(),
        )
        .retry_after(1)
    }
}
