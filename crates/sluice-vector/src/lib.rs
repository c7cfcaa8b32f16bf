//! The Sluice vector engine: collections of `{pk, vector, metadata}` entities, searched with
//! HNSW (usearch) and metadata filters, fed directly or through the VectorAutoBuffer.
//!
//! - [`distance`]: distances, precisions and the exact distance functions (the same formulas
//!   usearch uses, so exact scans and index results rank alike);
//! - [`filter`]: metadata filters (`=`, `$in`, `$gt/$gte/$lt/$lte`);
//! - [`record`]: the WAL records of vector operations and collection changes;
//! - [`collection`]: one collection's index, its entity catalogue and exact scans;
//! - [`snapshot`]: index snapshots taken at checkpoints;
//! - [`engine`]: the buffer, direct and buffered writes, flush, search, recovery.
//!
//! Like the time-series engine, it knows nothing of HTTP.

pub mod collection;
pub mod distance;
pub mod engine;
pub mod filter;
pub mod record;
pub mod snapshot;

pub use collection::{CollectionConfig, Decay, HnswParams, InvalidCollection, TimeRange};
pub use distance::{Distance, Precision};
pub use engine::{
    AutoBufferConfig, BufferStats, Entity, FlushOutcome, FlushTrigger, SearchHit, SearchRequest,
    VectorConfig, VectorEngine, VectorError, VectorMetrics,
};
pub use filter::{Filter, InvalidFilter};
