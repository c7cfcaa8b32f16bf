//! The one error shape of every 4xx and 5xx answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error answer: a message for people, a stable `code` for programs, and the request id
/// that appears in the server's log lines for this request and in `X-Request-Id`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    #[schema(example = "body is not valid JSON: expected value at line 1 column 1")]
    pub error: String,
    /// Stable snake_case identifier of the kind of error, for programs.
    #[schema(example = "invalid_json")]
    pub code: String,
    /// The request id (`X-Request-Id`); quote it when reporting a problem.
    #[schema(example = "01JDQ6V6M9WJ3V4C2K7Q9X8Y7Z")]
    pub error_id: String,
    /// For validation errors: the path of the offending field, e.g. `points[3].value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "points[3].value")]
    pub field: Option<String>,
    /// Present on seed routes, which keep their documented `success: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// Present on the seed's buffer overflow answer: points in the buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_size: Option<u64>,
    /// In wire protocol error frames (which have no headers): seconds to wait before retrying,
    /// what HTTP says in `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_sec: Option<u64>,
    /// On a replica's refusal of a WAL batch that does not continue its log (`wal_gap`): the
    /// LSN it expects next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_lsn: Option<u64>,
    /// On a write refused by a read-only replica (`read_only_replica`): the primary to send
    /// writes to (its id, and endpoint when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
}
