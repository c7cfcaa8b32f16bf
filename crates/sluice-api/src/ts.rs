//! Time-series write bodies (SPEC §2, §6; field names from the seed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One time-series point. A series is identified by metric, entity and sorted tags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataPoint {
    #[schema(example = "cpu_usage")]
    pub metric: String,
    #[schema(example = "server01")]
    pub entity: String,
    /// Milliseconds since the Unix epoch.
    #[schema(example = 1702645200000i64)]
    pub timestamp_ms: i64,
    #[schema(example = 75.5)]
    pub value: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(example = json!({"datacenter": "eu-west-1", "environment": "production"}))]
    pub tags: BTreeMap<String, String>,
}

/// `POST /ts/put` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PutResponse {
    pub success: bool,
    /// The WAL position of the write.
    pub lsn: u64,
}

/// `POST /ts/put/batch` body: all points are written, or none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchPutRequest {
    pub points: Vec<DataPoint>,
}

/// `POST /ts/put/batch` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchPutResponse {
    pub success: bool,
    pub points_written: u64,
    /// The WAL position of the batch.
    pub lsn: u64,
}

/// How durable a write must be before it is acknowledged (`?ack=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ack {
    /// Accepted into the bounded buffer; reaches the WAL within `wal.flush_interval_ms`.
    Buffer,
    /// Written to the WAL file: survives a process crash, not a power cut.
    Wal,
    /// fdatasync'd: survives a power cut.
    Fsync,
}

/// The `?ack=` query parameter of write routes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
pub struct AckParams {
    /// Acknowledgement level; the route's default when absent (`fsync` for direct and batch
    /// writes, `buffer` for buffered ones).
    pub ack: Option<Ack>,
}
