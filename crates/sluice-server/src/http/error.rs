//! Where errors become HTTP answers: the status of each error code, the response with the
//! `ErrorBody` shape, `Retry-After`, and the log line of an internal error under the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_api::ErrorCode;

use crate::error::ApiError;
use crate::request_id;

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
        C::Unprocessable
        | C::InvalidValue
        | C::CollectionLimit
        | C::SeriesLimit
        | C::RecordRefused => StatusCode::UNPROCESSABLE_ENTITY,
        C::WebsocketRequired => StatusCode::UPGRADE_REQUIRED,
        C::RateLimited
        | C::TooManyBytesInFlight
        | C::TooManyInFlight
        | C::TooManyRequests
        | C::NewSeriesLimit => StatusCode::TOO_MANY_REQUESTS,
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
        C::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
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
