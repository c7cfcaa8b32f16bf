//! The Sluice time-series engine.
//!
//! - [`point`]: the validated point; [`batch`]: a write as series and samples; [`record`]:
//!   their WAL record encoding;
//! - [`series`]: series identity and the roaring-bitmap inverted index; [`names`]: series a
//!   protocol names by its own bytes (the remote-write fast path);
//! - [`store`]: Gorilla chunks and the series catalogue in fjall;
//! - [`query`]: selection, aggregation, grouping;
//! - [`rollup`]: downsampling rules and the stored buckets;
//! - [`engine`]: the head (TSAutoBuffer), flushes, and queries over head and chunks.
//!
//! The engine knows nothing of HTTP: the server converts its wire types into [`Point`]s and
//! [`query::Query`]s and maps the engine's errors at the edge.

pub mod batch;
pub mod engine;
pub mod names;
pub mod point;
pub mod query;
pub mod record;
pub mod rollup;
pub mod series;
pub mod store;

pub use batch::{Batch, Sample};
pub use engine::now_ms;
pub use engine::{
    AutoBufferConfig, BufferStats, Cardinality, DeleteError, DeleteOutcome, FlushOutcome,
    FlushTrigger, RetentionRule, TsConfig, TsEngine, TsMetrics, WriteError,
};
pub use names::{KnownSeries, NamedBatch, NamedSeries};
pub use point::{InvalidPoint, Point, PointLimits};
pub use rollup::DownsampleRule;
