//! Time-series write bodies (field names from the seed).

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
    /// Milliseconds since the Unix epoch. Optional on writes: a point without one is stamped
    /// with the server's receive time (as InfluxDB does for line protocol without a
    /// timestamp). Always present in answers and exports.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::int::optional"
    )]
    #[schema(example = 1702645200000i64)]
    pub timestamp_ms: Option<i64>,
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

/// `POST /ts/put/buffered` answer (seed shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BufferedPutResponse {
    pub success: bool,
    /// True when the point went through the buffer; false when the TSAutoBuffer is disabled and
    /// the write was acknowledged like a direct one.
    pub buffered: bool,
    /// Points in the buffer after this write.
    pub buffer_size: u64,
}

/// `GET /ts/buffer/stats` answer (seed fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BufferStats {
    /// Points accepted into the buffer since start (every time-series write passes through it).
    pub points_buffered: u64,
    /// Points flushed into compressed chunks since start.
    pub points_flushed: u64,
    pub flush_count: u64,
    /// Flushes triggered by count, age, memory or shutdown.
    pub auto_flush_count: u64,
    pub manual_flush_count: u64,
    /// Points in the buffer now.
    pub current_buffer_size: u64,
    /// Estimated bytes the buffer holds now.
    pub current_buffer_memory: u64,
    /// Raw size (16 bytes per point) over stored size, over all flushes since start; 0 before
    /// the first flush.
    pub avg_compression_ratio: f64,
    /// RFC 3339 time of the last flush, or null.
    #[schema(example = "2025-12-15T12:30:00Z")]
    pub last_flush_time: Option<String>,
}

/// `POST /ts/buffer/flush` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlushResponse {
    pub success: bool,
    /// Points this flush moved into chunks.
    pub points_flushed: u64,
}

/// A tag matcher of a query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagMatcher {
    /// Tag name; `entity` matches the entity.
    pub tag: String,
    /// `=`, `!=`, `=~` (anchored regex) or `!~`.
    #[schema(example = "=~")]
    pub op: String,
    pub value: String,
}

/// Aggregation of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    Min,
    Max,
    Sum,
    Avg,
    Count,
    First,
    Last,
}

/// `POST /ts/query` body. The range is inclusive: `from_ms <= timestamp_ms <= to_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub metric: String,
    pub entity: Option<String>,
    /// Every pair must match exactly.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub matchers: Vec<TagMatcher>,
    #[serde(deserialize_with = "crate::int::integer")]
    pub from_ms: i64,
    #[serde(deserialize_with = "crate::int::integer")]
    pub to_ms: i64,
    pub aggregation: Option<Aggregation>,
    /// Bucket width; needs `aggregation`. Buckets start at `from_ms`.
    #[serde(default, deserialize_with = "crate::int::optional")]
    pub step_ms: Option<i64>,
    /// Tags to group by (`entity` included); needs `aggregation`.
    #[serde(default)]
    pub group_by: Vec<String>,
}

/// `POST /ts/export` body: a selection without aggregation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    pub metric: String,
    pub entity: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub matchers: Vec<TagMatcher>,
    #[serde(deserialize_with = "crate::int::integer")]
    pub from_ms: i64,
    #[serde(deserialize_with = "crate::int::integer")]
    pub to_ms: i64,
}

/// `POST /ts/delete` body: the selection of `/ts/query` (without aggregation) whose points in
/// `[from_ms, to_ms]` are deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TsDeleteRequest {
    pub metric: String,
    pub entity: Option<String>,
    /// Every pair must match exactly.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub matchers: Vec<TagMatcher>,
    #[serde(deserialize_with = "crate::int::integer")]
    pub from_ms: i64,
    #[serde(deserialize_with = "crate::int::integer")]
    pub to_ms: i64,
}

/// `POST /ts/delete` answer: the deletion is durable and visible to every query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TsDeleteResponse {
    pub success: bool,
    /// LSN of the deletion's WAL record (replicas apply it at the same LSN).
    pub lsn: u64,
    /// Series the selection matched (they stay known, with the points outside the range).
    pub series: u64,
    /// Stored points removed, buffered and in chunks (an overwritten timestamp counts once
    /// per stored version).
    pub points_deleted: u64,
    /// Chunks rewritten without the deleted points.
    pub chunks_rewritten: u64,
    /// Chunks removed whole.
    pub chunks_removed: u64,
}

/// `GET /ts/cardinality` answer: series counts from the series index (no points are read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardinalityResponse {
    /// Series the database holds.
    pub total_series: u64,
    /// Series counted below: every series, or those of `metric`.
    pub series: u64,
    /// New series the database created in the last hour.
    pub new_series_last_hour: u64,
    /// The database's limit on series (writes past it get 422 `series_limit`).
    pub max_series: u64,
    /// The database's limit on new series an hour, 0 for none (writes past it get 429
    /// `new_series_limit` with Retry-After).
    pub max_new_series_per_hour: u64,
    /// Metrics by series count, largest first.
    pub series_count_by_metric: Vec<MetricCount>,
    /// Labels (`entity` included) by the series that carry them, with their distinct values.
    pub series_count_by_label: Vec<LabelCount>,
    /// Label values by series count.
    pub series_count_by_label_value: Vec<LabelValueCount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MetricCount {
    pub metric: String,
    pub series: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LabelCount {
    pub label: String,
    pub series: u64,
    /// Distinct values of the label among the series counted.
    pub values: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LabelValueCount {
    pub label: String,
    pub value: String,
    pub series: u64,
}

/// One series of a query answer (with `group_by`: one group, `entity`/`tags` hold its key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SeriesData {
    pub metric: String,
    pub entity: String,
    pub tags: BTreeMap<String, String>,
    /// `[timestamp_ms, value]` pairs, oldest first.
    #[schema(value_type = Vec<Vec<f64>>, example = json!([[1702645200000i64, 75.5]]))]
    pub points: Vec<(i64, f64)>,
}

/// `POST /ts/query` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    pub series: Vec<SeriesData>,
}

/// What a read answers in (`?format=`): `json` (the default; NDJSON for exports), `arrow` (an
/// Apache Arrow IPC stream) or `parquet` (an Apache Parquet file). Without `?format=`, an
/// `Accept` of `application/vnd.apache.arrow.stream` or `application/vnd.apache.parquet`
/// chooses the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Json,
    Arrow,
    Parquet,
}

/// `?format=` of `/ts/query`, `/ts/export` and the vector export.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
pub struct FormatParams {
    #[param(inline)]
    pub format: Option<OutputFormat>,
}
