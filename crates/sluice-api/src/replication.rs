//! Replication: the seed's compressed WAL shipping bodies, replica management,
//! statistics, and the changefeed events.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/wal/apply`: a batch of WAL records shipped by a primary. The seed's fields
/// (`primary_id`, `compression`, `entries_compressed`) plus what the replica needs to check
/// and place the batch. The HTTP body itself travels with `Content-Encoding: zstd`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WalApplyRequest {
    /// The shipping primary (also in `X-Primary-ID`).
    pub primary_id: String,
    /// How `entries_compressed` is compressed: `zstd` or `none`.
    pub compression: String,
    /// The records, base64: each as in the primary's WAL segment (length, CRC32C, LSN, kind,
    /// payload), consecutive LSNs from `first_lsn` to `last_lsn`.
    pub entries_compressed: String,
    /// The database the records belong to (created on the replica if missing).
    #[serde(default = "default_database")]
    pub database: String,
    /// The primary's epoch; batches from an older epoch than the replica has seen are refused.
    #[serde(default, deserialize_with = "crate::int::integer")]
    pub epoch: u64,
    #[serde(deserialize_with = "crate::int::integer")]
    pub first_lsn: u64,
    #[serde(deserialize_with = "crate::int::integer")]
    pub last_lsn: u64,
    /// Number of records.
    #[serde(deserialize_with = "crate::int::integer")]
    pub entries: u64,
    /// Bytes of the records before compression (the replica refuses to inflate beyond it).
    #[serde(deserialize_with = "crate::int::integer")]
    pub uncompressed_bytes: u64,
    /// CRC32C of the decoded `entries_compressed` bytes, checked before decompressing.
    #[serde(deserialize_with = "crate::int::integer")]
    pub entries_crc32c: u32,
    /// The primary's durable LSN of this database when the batch was cut.
    #[serde(default, deserialize_with = "crate::int::integer")]
    pub primary_durable_lsn: u64,
    /// How far behind the primary the replica is after this batch: bytes and milliseconds.
    #[serde(default, deserialize_with = "crate::int::integer")]
    pub lag_bytes: u64,
    #[serde(default, deserialize_with = "crate::int::integer")]
    pub lag_ms: u64,
    /// Where the primary takes writes (named in the replica's refusals of writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_endpoint: Option<String>,
}

fn default_database() -> String {
    "default".to_string()
}

/// The seed's answer to a WAL batch, plus where the replica's log now ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WalApplyResponse {
    pub success: bool,
    /// Records applied by this batch (records the replica already had are skipped).
    pub entries_applied: u64,
    /// Uncompressed over compressed bytes of the entries.
    pub compression_ratio: f64,
    pub decompression_time_ms: f64,
    /// Records of the batch the replica already had.
    pub entries_skipped: u64,
    /// The replica's last durable LSN of the database: the primary's confirmed position.
    pub last_applied_lsn: u64,
}

/// `POST /api/v1/replication/replicas`: register a replica (persisted on the primary).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaInfo {
    #[schema(example = "replica-1")]
    pub replica_id: String,
    /// The replica's HTTP base URL.
    #[schema(example = "http://10.0.0.7:8080")]
    pub endpoint: String,
}

/// One replica as the primary sees it (the seed's fields first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaStatus {
    pub replica_id: String,
    pub endpoint: String,
    /// Confirmed LSN of database `default`, as 16 hex digits (per database: `databases`).
    #[schema(example = "0000000000000042")]
    pub last_confirmed_lsn: String,
    /// WAL bytes written on the primary that the replica has not confirmed (all databases).
    pub lag_bytes: u64,
    /// Age of the oldest record the replica has not confirmed, in milliseconds (0 = caught up).
    pub lag_ms: u64,
    pub is_healthy: bool,
    pub databases: Vec<ReplicaDatabaseStatus>,
    /// The last failure, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The replica refused this primary's epoch: another node was promoted.
    pub fenced: bool,
    pub snapshots_sent: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaDatabaseStatus {
    pub name: String,
    pub confirmed_lsn: u64,
    /// The primary's durable LSN of this database.
    pub primary_lsn: u64,
    pub lag_bytes: u64,
    pub lag_ms: u64,
}

/// The seed's shipping totals (since the primary started).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShippingStats {
    pub total_entries_shipped: u64,
    /// HTTP body bytes sent (compressed).
    pub total_bytes_shipped: u64,
    /// WAL record bytes those bodies carried.
    pub total_bytes_uncompressed: u64,
    /// `total_bytes_uncompressed / total_bytes_shipped` (0 before the first batch).
    pub avg_compression_ratio: f64,
    pub total_batches: u64,
    pub failed_ships: u64,
}

/// `GET /api/v1/replication/stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicationStats {
    pub replicas: Vec<ReplicaStatus>,
    pub stats: ShippingStats,
    /// `primary` or `replica`.
    pub role: String,
    pub node_id: String,
    pub epoch: u64,
    pub compression_type: String,
    pub compression_level: i32,
    /// On a replica: what it has applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaSideStats>,
}

/// A replica's own view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaSideStats {
    /// The primary whose batches it applies (the last one accepted).
    pub primary_id: Option<String>,
    pub primary_endpoint: Option<String>,
    /// The highest primary epoch accepted.
    pub primary_epoch: u64,
    pub batches_applied: u64,
    pub entries_applied: u64,
    pub batches_refused: u64,
    pub snapshots_installed: u64,
    /// Request body bytes of the applied batches, as the primary sent them (compressed).
    pub bytes_received: u64,
    /// WAL record bytes those batches carried.
    pub bytes_uncompressed_received: u64,
    pub databases: Vec<ReplicaSideDatabase>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaSideDatabase {
    pub name: String,
    /// The last LSN in this replica's log (its primary's LSN).
    pub applied_lsn: u64,
    /// The primary's durable LSN as of the last batch.
    pub primary_lsn: u64,
    /// Bytes and milliseconds behind the primary as of the last batch.
    pub lag_bytes: u64,
    pub lag_ms: u64,
    /// Milliseconds since the last batch arrived.
    pub last_batch_age_ms: Option<u64>,
}

/// `POST /api/v1/replication/config`: the seed's `configure_compression`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicationConfigRequest {
    /// `zstd` or `none`.
    #[serde(default)]
    pub compression_type: Option<String>,
    /// zstd level, 1 to 22.
    #[serde(
        default,
        alias = "compression_level",
        deserialize_with = "crate::int::optional"
    )]
    pub level: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicationConfigResponse {
    pub success: bool,
    pub compression_type: String,
    pub level: i32,
}

/// `POST /api/v1/replication/promote`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromoteResponse {
    pub success: bool,
    pub role: String,
    /// The new epoch: batches from primaries of older epochs are refused from now on.
    pub epoch: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaList {
    pub replicas: Vec<ReplicaInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RemoveReplicaResponse {
    pub success: bool,
}
