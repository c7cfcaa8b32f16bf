//! Vector bodies (the buffered routes' fields from the seed).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// One entity of a collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VectorEntity {
    /// Primary key, unique within the collection.
    #[schema(example = "doc_12345")]
    pub pk: String,
    /// As many components as the collection's dimension.
    #[schema(example = json!([0.123, 0.456, 0.789]))]
    pub vector: Vec<f32>,
    /// A JSON object; searches filter on its top-level fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, example = json!({"title": "Sample Document", "category": "technology"}))]
    pub metadata: Option<Map<String, Value>>,
    /// The entity's time, milliseconds since the Unix epoch: what a search's `time_range` and
    /// `decay` look at. Entities without one never match a time range and get no decay bonus.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::int::optional"
    )]
    #[schema(example = 1765800000000i64)]
    pub timestamp_ms: Option<i64>,
    /// When the entity expires (milliseconds since the Unix epoch); overrides the collection's
    /// `ttl_ms`. An expired entity is gone from search and get at once.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::int::optional"
    )]
    #[schema(example = 1768400000000i64)]
    pub expires_at_ms: Option<i64>,
}

/// A search's window of entity times, inclusive: `from_ms <= timestamp_ms <= to_ms`. A missing
/// bound is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::int::optional"
    )]
    #[schema(example = 1765000000000i64)]
    pub from_ms: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::int::optional"
    )]
    #[schema(example = 1765800000000i64)]
    pub to_ms: Option<i64>,
}

/// Recency decay: hits are ranked by `distance − weight · 2^(−age / half_life_ms)`, where `age`
/// is now minus the entity's `timestamp_ms` (no bonus without a time). Applied to every
/// candidate inside the search, not to a prefix of it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decay {
    /// Age at which the bonus halves, 1 ms to 100 years.
    #[serde(deserialize_with = "crate::int::integer")]
    #[schema(example = 86400000, minimum = 1, maximum = 3162240000000u64)]
    pub half_life_ms: u64,
    /// The bonus of an entity written now, in units of the metric's distance (0 to 1000).
    #[schema(example = 0.2, minimum = 0.0, maximum = 1000.0)]
    pub weight: f32,
}

/// `?collection=` of the vector routes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CollectionParams {
    /// Collection to act on; `default` when absent.
    pub collection: Option<String>,
}

/// `POST /vectors/add` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AddResponse {
    pub success: bool,
    /// The WAL position of the write.
    pub lsn: u64,
}

/// `POST /vectors/add/batch` body: all entities are written, or none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchAddRequest {
    pub vectors: Vec<VectorEntity>,
}

/// `POST /vectors/add/batch` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchAddResponse {
    pub success: bool,
    pub vectors_written: u64,
    /// The WAL position of the batch.
    pub lsn: u64,
}

/// Answer of the buffered vector routes (seed shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BufferedVectorResponse {
    pub success: bool,
    /// True when the operation went through the buffer; false when the VectorAutoBuffer is
    /// disabled and it was applied like a direct write.
    pub buffered: bool,
    /// Operations in the buffer after this one.
    pub buffer_size: u64,
}

/// `DELETE /vectors/remove/buffered` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    #[schema(example = "doc_12345")]
    pub pk: String,
}

/// `GET /vectors/buffer/stats` answer (seed fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VectorBufferStats {
    /// Operations (add, update, remove) accepted into the buffer since start.
    pub vectors_buffered: u64,
    /// Operations applied to the indexes by flushes since start.
    pub vectors_flushed: u64,
    pub flush_count: u64,
    /// Flushes triggered by count, age, memory or shutdown.
    pub auto_flush_count: u64,
    pub manual_flush_count: u64,
    /// Operations in the buffer now.
    pub current_buffer_size: u64,
    /// Estimated bytes the buffer holds now.
    pub current_buffer_memory: u64,
    /// The buffer holds vectors uncompressed: always `none`.
    #[schema(example = "none")]
    pub compression_type: String,
    /// RFC 3339 time of the last flush, or null.
    #[schema(example = "2025-12-15T12:30:00Z")]
    pub last_flush_time: Option<String>,
    /// Index snapshots written since start.
    pub snapshot_count: u64,
    /// WAL position the last snapshot covers.
    pub last_snapshot_lsn: u64,
}

/// `POST /vectors/buffer/flush` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VectorFlushResponse {
    pub success: bool,
    /// Operations this flush applied to the indexes.
    pub vectors_flushed: u64,
}

/// `POST /vectors/search` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query; as many components as the collection's dimension.
    pub vector: Vec<f32>,
    /// Results wanted (1 to `vector.max_k`).
    #[schema(example = 10)]
    #[serde(deserialize_with = "crate::int::integer")]
    pub k: usize,
    /// Every field must match: `{field: value}` (equality; an array field matches if any
    /// element does), `{field: {"$in": [values]}}`, `{field: {"$gt" | "$gte" | "$lt" | "$lte":
    /// number, ...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, example = json!({"category": "technology", "year": {"$gte": 2020}}))]
    pub filter: Option<Value>,
    /// Candidates explored (the collection's `ef_search` when absent); more is slower and
    /// finds more of the true nearest neighbours. At least the collection's size makes the
    /// search exact (a scan of every entity).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::int::optional"
    )]
    pub ef: Option<usize>,
    /// Only entities whose `timestamp_ms` is in this window (applied inside the index
    /// traversal; a narrow window is answered by an exact scan of its entities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// Favour recent entities (see `Decay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<Decay>,
    /// For every hit whose metadata names a series (string fields `metric` and `entity`):
    /// that series' aggregate over the last `window_ms`, in the same answer (`series`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_series: Option<WithSeries>,
}

/// `with_series` of a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithSeries {
    /// `last` for the newest value; `avg` is the mean of every point (not of partial means).
    pub aggregation: crate::ts::Aggregation,
    /// The window ending now, 1 ms to 100 years.
    #[serde(deserialize_with = "crate::int::integer")]
    #[schema(example = 3600000, minimum = 1, maximum = 3162240000000u64)]
    pub window_ms: u64,
}

/// A hit's series aggregate (`with_series`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HitSeries {
    pub metric: String,
    pub entity: String,
    /// The window: `from_ms <= timestamp_ms <= to_ms`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// The aggregate over every series of that metric and entity (whatever their tags); null
    /// when the window holds no point.
    pub value: Option<f64>,
}

/// One search result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResult {
    pub pk: String,
    /// `cosine`: the cosine similarity; `ip`: the inner product (higher is better for both);
    /// `l2`: the Euclidean distance (lower is better). Results are always best first.
    pub score: f32,
    /// The metric's distance, lower is closer (`cosine`: 1 − similarity, `l2`: squared
    /// Euclidean distance, `ip`: 1 − inner product).
    pub distance: f32,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// With `decay`: what results are ordered by, `distance` less the recency bonus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<f32>,
    /// With `with_series`, for a hit whose metadata names a series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<HitSeries>,
}

/// `POST /vectors/search` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Best first.
    pub results: Vec<SearchResult>,
}

/// `DELETE /vectors/{pk}` and collection deletion answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeleteResponse {
    pub success: bool,
    /// The WAL position of the deletion.
    pub lsn: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    Cosine,
    L2,
    Ip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
    /// Components must lie in [-1, 1].
    I8,
}

/// HNSW parameters of a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HnswSpec {
    /// Graph connectivity (`M`), 2 to 128.
    #[schema(example = 16)]
    #[serde(deserialize_with = "crate::int::integer")]
    pub m: usize,
    /// Candidates explored per insert, 1 to 4096.
    #[schema(example = 128)]
    #[serde(deserialize_with = "crate::int::integer")]
    pub ef_construction: usize,
    /// Default candidates explored per search, 1 to 4096.
    #[schema(example = 64)]
    #[serde(deserialize_with = "crate::int::integer")]
    pub ef_search: usize,
}

/// `POST /v1/collections` body. Omitted settings take the server's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ -`, starting with a letter or digit.
    #[schema(example = "articles")]
    pub name: String,
    #[schema(example = 768)]
    #[serde(deserialize_with = "crate::int::integer")]
    pub dimension: usize,
    pub distance: Option<Distance>,
    pub precision: Option<Precision>,
    pub hnsw: Option<HnswSpec>,
    /// Entities written without `expires_at_ms` expire this long after they are written
    /// (1 ms to 100 years); none when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::int::optional"
    )]
    #[schema(example = 2592000000u64, minimum = 1, maximum = 3162240000000u64)]
    pub ttl_ms: Option<u64>,
}

/// A collection's definition and size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionInfo {
    pub name: String,
    pub dimension: usize,
    pub distance: Distance,
    pub precision: Precision,
    pub hnsw: HnswSpec,
    /// Time to live of entities written without `expires_at_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Entities in the index (not counting the buffer).
    pub vectors: u64,
    /// Operations waiting in the buffer.
    pub buffered: u64,
    /// Memory the index uses.
    pub index_bytes: u64,
}

/// `GET /v1/collections` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionInfo>,
}
