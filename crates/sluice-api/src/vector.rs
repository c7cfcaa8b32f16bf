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
}

/// A collection's definition and size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionInfo {
    pub name: String,
    pub dimension: usize,
    pub distance: Distance,
    pub precision: Precision,
    pub hnsw: HnswSpec,
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
