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
    pub code: ErrorCode,
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

macro_rules! error_codes {
    ($($variant:ident = $code:literal,)*) => {
        /// The stable `code` of an error answer: what programs match on (never the message).
        /// Serialized as the snake_case strings listed; a client meeting a code newer than
        /// itself reads it as [`ErrorCode::Unknown`].
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ErrorCode {
            $(#[serde(rename = $code)] $variant,)*
            /// A code this build does not know (never sent by this server).
            #[default]
            #[serde(other, rename = "unknown")]
            Unknown,
        }

        impl ErrorCode {
            /// Every code this server sends.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                    ErrorCode::Unknown => "unknown",
                }
            }
        }
    };
}

error_codes! {
    // Requests the server cannot read.
    BadRequest = "bad_request",
    BodyReadFailed = "body_read_failed",
    BodyTimeout = "body_timeout",
    ClientError = "client_error",
    InvalidDatabase = "invalid_database",
    InvalidEncoding = "invalid_encoding",
    InvalidField = "invalid_field",
    // A value that fits the schema but breaks a rule it cannot state (422).
    InvalidValue = "invalid_value",
    InvalidJson = "invalid_json",
    InvalidLineProtocol = "invalid_line_protocol",
    InvalidParameter = "invalid_parameter",
    JsonTooDeep = "json_too_deep",
    MethodNotAllowed = "method_not_allowed",
    NotFound = "not_found",
    PayloadTooLarge = "payload_too_large",
    QueryTooLarge = "query_too_large",
    RequestTimeout = "request_timeout",
    TooLargeExpanded = "too_large_expanded",
    TooManyPoints = "too_many_points",
    Unprocessable = "unprocessable",
    UnsupportedMediaType = "unsupported_media_type",
    // The wire protocol and WebSocket sessions.
    CrossOrigin = "cross_origin",
    FrameTooLarge = "frame_too_large",
    InvalidOpcode = "invalid_opcode",
    MalformedPayload = "malformed_payload",
    SubscriptionTransport = "subscription_transport",
    TextMessage = "text_message",
    TooManySessions = "too_many_sessions",
    TruncatedFrame = "truncated_frame",
    WebsocketRequired = "websocket_required",
    // Who may do what, and how much.
    Forbidden = "forbidden",
    RateLimited = "rate_limited",
    ServerOverloaded = "server_overloaded",
    TooManyBytesInFlight = "too_many_bytes_in_flight",
    TooManyInFlight = "too_many_in_flight",
    TooManyRequests = "too_many_requests",
    Unauthenticated = "unauthenticated",
    // Data and catalogue.
    CollectionExists = "collection_exists",
    CollectionLimit = "collection_limit",
    CollectionNotFound = "collection_not_found",
    ConfigDrift = "config_drift",
    DatabaseExists = "database_exists",
    DatabaseNotFound = "database_not_found",
    DatabaseProtected = "database_protected",
    DatabaseReplaced = "database_replaced",
    EntityNotFound = "entity_not_found",
    SeriesLimit = "series_limit",
    NewSeriesLimit = "new_series_limit",
    // Capacity and life cycle: retry later.
    BufferOverflow = "buffer_overflow",
    FlushUnavailable = "flush_unavailable",
    NotReady = "not_ready",
    Overloaded = "overloaded",
    InsufficientStorage = "insufficient_storage",
    ShuttingDown = "shutting_down",
    Unavailable = "unavailable",
    // Replication.
    AlreadyPrimary = "already_primary",
    ConflictingPrimary = "conflicting_primary",
    CorruptBatch = "corrupt_batch",
    CorruptSnapshot = "corrupt_snapshot",
    EpochNotSaved = "epoch_not_saved",
    LsnGone = "lsn_gone",
    NotAReplica = "not_a_replica",
    ReadOnlyReplica = "read_only_replica",
    RecordRefused = "record_refused",
    ReplicaExists = "replica_exists",
    ReplicaNotFound = "replica_not_found",
    ReplicationBusy = "replication_busy",
    SnapshotStalled = "snapshot_stalled",
    StaleEpoch = "stale_epoch",
    WalGap = "wal_gap",
    // A bug or a fault of the server: quote the error_id.
    Internal = "internal",
}

/// The schema lists the strings on the wire (a derived schema would list the Rust names).
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Stable snake_case identifier of the kind of error. Clients must accept codes \
                 newer than themselves.",
            ))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .build()
            .into()
    }
}

impl ToSchema for ErrorCode {}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_serialize_as_their_strings_and_unknown_ones_parse() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        assert_eq!(
            serde_json::from_str::<ErrorCode>("\"from_the_future\"").unwrap(),
            ErrorCode::Unknown
        );
        let mut seen = std::collections::HashSet::new();
        assert!(ErrorCode::ALL.iter().all(|c| seen.insert(c.as_str())));
    }
}
