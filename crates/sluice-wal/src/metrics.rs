//! Counters of one log, in Prometheus types so the server can register them with a `db` label.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The metrics of one log. Cloning shares the underlying atomics.
#[derive(Clone, Debug)]
pub struct WalMetrics {
    pub appends: Counter,
    pub appended_bytes: Counter,
    pub batches: Counter,
    pub fsyncs: Counter,
    pub fsync_seconds: Histogram,
    pub batch_records: Histogram,
    pub overloaded: Counter,
    pub queue_depth: Gauge,
    pub segments: Gauge,
    pub truncated_bytes: Counter,
    pub checkpoint_lsn: Gauge,
    pub last_lsn: Gauge,
    /// 1 while the storage is full and appends are refused (see `WalError::StorageFull`).
    pub storage_full: Gauge,
}

impl Default for WalMetrics {
    fn default() -> Self {
        WalMetrics {
            appends: Counter::default(),
            appended_bytes: Counter::default(),
            batches: Counter::default(),
            fsyncs: Counter::default(),
            // 20 µs .. ~5 s
            fsync_seconds: Histogram::new(exponential_buckets(0.000_02, 2.0, 18)),
            // 1 .. 32768 records
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            overloaded: Counter::default(),
            queue_depth: Gauge::default(),
            segments: Gauge::default(),
            truncated_bytes: Counter::default(),
            checkpoint_lsn: Gauge::default(),
            last_lsn: Gauge::default(),
            storage_full: Gauge::default(),
        }
    }
}

impl WalMetrics {
    /// Registers every metric under the `wal_` prefix in `registry` (usually a sub-registry
    /// carrying the database label).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("wal");
        r.register(
            "storage_full",
            "1 while the disk is full and the WAL refuses appends (it retries by itself)",
            self.storage_full.clone(),
        );
        r.register(
            "appends",
            "Records appended to the WAL",
            self.appends.clone(),
        );
        r.register(
            "appended_bytes",
            "Bytes written to WAL segments, framing included",
            self.appended_bytes.clone(),
        );
        r.register(
            "batches",
            "Group-commit batches written (one write each)",
            self.batches.clone(),
        );
        r.register(
            "fsyncs",
            "fdatasync calls on WAL segments",
            self.fsyncs.clone(),
        );
        r.register(
            "fsync_seconds",
            "Latency of one fdatasync of a WAL segment",
            self.fsync_seconds.clone(),
        );
        r.register(
            "batch_records",
            "Records per group-commit batch",
            self.batch_records.clone(),
        );
        r.register(
            "overloaded",
            "Appends refused because the WAL queue was full",
            self.overloaded.clone(),
        );
        r.register(
            "queue_depth",
            "Records waiting in the WAL queue",
            self.queue_depth.clone(),
        );
        r.register(
            "segments",
            "WAL segment files on disk",
            self.segments.clone(),
        );
        r.register(
            "truncated_bytes",
            "Bytes of torn tail cut off during recovery",
            self.truncated_bytes.clone(),
        );
        r.register(
            "checkpoint_lsn",
            "LSN up to which the WAL is checkpointed",
            self.checkpoint_lsn.clone(),
        );
        r.register(
            "last_lsn",
            "Last LSN written to the WAL",
            self.last_lsn.clone(),
        );
    }
}
