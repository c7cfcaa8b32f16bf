//! The time-series engine of one database: the in-memory head (the TSAutoBuffer), flushes into
//! compressed chunks (Gorilla, or decimal-aware when values are exact decimals), and queries over
//! both.
//!
//! # Write path
//! [`TsEngine::write`] encodes the points as one WAL record and, under the engine lock, hands it
//! to the caller's `append` (the WAL enqueue, which assigns the LSN) and inserts the points into
//! the head. Doing both under one lock makes head order equal LSN order, which is what lets a
//! flush say "everything up to LSN L is in chunks" and checkpoint the WAL there. The caller then
//! waits for its acknowledgement level outside the lock. Queries see the head at once
//! (read-your-writes at every ack level).
//!
//! # Flush
//! A flush (count, age, memory, manual or shutdown trigger) freezes the head (queries keep
//! seeing it), sorts and de-duplicates each series' points, writes them as new chunks of at
//! most `chunk_target_points`, merges the series' small chunks size-tiered (see [`Small`]), and
//! commits chunks, deletions, new series and the flushed LSN in one atomic, synced fjall batch.
//! The caller then checkpoints the WAL at that LSN. One flush runs at a time; writes continue
//! into a fresh head meanwhile.
//!
//! # Limits
//! The head is bounded: a write that would take head plus frozen memory past
//! `overflow_buffer_bytes` is refused (the seed's "Buffer overflow"), before it reaches the WAL.
//! Memory is estimated at 16 bytes per point plus each new series' key. A query may collect at
//! most `max_query_points` points, and decodes at most twice that from chunks before it is
//! refused (chunks also hold points outside its range), so a query over a huge range fails
//! early instead of decoding it all.
//!
//! # Deletes
//! [`TsEngine::delete`] removes the points of a selection in a time range. It holds the flush
//! lock throughout (no flush runs, so there is no frozen head and every chunk predates it):
//! under the engine lock it logs a [`crate::record::DELETE`] record and removes the matching
//! points from the head, so points written after it are never touched; once the record is
//! durable it rewrites the chunks that hold matching points, each keeping its `seq` (so which
//! write of a timestamp wins does not change), and drops the chunks left empty, in one synced
//! batch. The deletion is then in chunks and head alike: queries see it as soon as the call
//! returns, and the space is free for the LSM's compaction. Until the rewrite is committed,
//! the WAL may not be checkpointed past the record ([`TsEngine::persisted_bound`]); a
//! deletion replayed over chunks it already rewrote finds nothing more to delete, so replay
//! (and a replica applying the record) is idempotent. The series themselves stay known.
//!
//! # Cardinality
//! A database holds at most `max_series` series, and creates at most
//! `max_new_series_per_hour` new ones in any hour (0: no limit), counted in one-minute buckets
//! ([`SeriesRate`]). A write that would pass either is refused whole before it is logged.
//! Replayed and replicated records are never refused (the primary already admitted them).
//! [`TsEngine::cardinality`] reports series counts by metric, label and label value from the
//! inverted index, reading no points.
//!
//! # Sweep
//! A background sweep ([`TsEngine::sweep`], in steps of series, each under the flush lock)
//! deletes chunks wholly past their series' retention and merges *stranded* small chunks: the
//! flusher merges a series' newest small chunks size-tiered, but only the run it has written
//! since start; small chunks from before a restart, or left behind a full chunk, would stay
//! small forever. A run of small chunks consecutive in write order (no other chunk of the
//! series between them in `seq`) is merged into one chunk, or full ones, at the run's newest
//! `seq`: every other chunk of the series stays older or newer than all of them, so the last
//! write of a timestamp still wins. A step reads its series' chunk keys and headers in one
//! range scan and decodes only the chunks it merges.
//!
//! # Downsampling
//! With downsampling rules ([`crate::rollup`]), the same sweep step rolls each series' raw
//! points before the first rule's cutoff up into buckets of the tier their age calls for
//! (chunks wholly before it deleted, one reaching past it rewritten with its later points),
//! moves buckets into coarser tiers as they age, and drops buckets past retention: all in
//! the step's one batch, so a point is raw or in one bucket, never both. Aggregated queries
//! add each tier's buckets (whole summaries: `avg` is sum / count) to the raw points of their
//! range; raw reads see a bucket as its last point. A deletion drops the buckets wholly
//! inside its range.
//!
//! # Out of order and duplicates
//! Points may arrive in any order; chunks of one series may overlap in time. For a timestamp
//! written more than once, the last write (highest LSN) wins, in queries and in chunks.

use crate::series::HashMap;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_wal::Lsn;

use crate::batch::{Batch, Sample};
use crate::names::{KnownSeries, NamedBatch, NamedSeries, SeriesCache};
use crate::point::PointLimits;
use crate::query::{self, Acc, Query, SeriesResult};
use crate::rollup::{self, DownsampleRule, Tiers};
use crate::series::{Narrow, SeriesId, SeriesIndex, SeriesKey};
use crate::store::{ChunkInfo, ChunkPlan, ChunkStore, ChunkWrite, RollupWrite, StoreError};

/// TSAutoBuffer settings (seed names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoBufferConfig {
    /// When false, buffered routes behave like direct ones (ack at fsync).
    pub enabled: bool,
    /// Flush when the head holds this many points.
    pub max_points_per_buffer: usize,
    /// Flush when the oldest point in the head is this old.
    pub flush_interval_ms: u64,
    /// Flush when the head's estimated memory reaches this.
    pub max_buffer_bytes: usize,
    /// Refuse writes while head plus flushing memory is at or above this.
    pub overflow_buffer_bytes: usize,
    /// Count-triggered flushes start at most this often (ms; 0: at once). Under sustained
    /// ingest the count trigger trips on every write; flushing each few thousand points would
    /// write tiny chunks and merge them over and over. Memory, age, manual and shutdown
    /// flushes are never delayed.
    pub min_flush_gap_ms: u64,
}

impl Default for AutoBufferConfig {
    fn default() -> Self {
        AutoBufferConfig {
            enabled: true,
            max_points_per_buffer: 1000,
            flush_interval_ms: 5000,
            max_buffer_bytes: 64 * 1024 * 1024,
            overflow_buffer_bytes: 256 * 1024 * 1024,
            min_flush_gap_ms: 200,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsConfig {
    pub auto_buffer: AutoBufferConfig,
    /// Points older than this are dropped from queries and storage; 0 keeps everything.
    pub retention_ms: u64,
    /// Retention by metric name over `retention_ms`: the first rule whose glob matches a
    /// series' metric sets its retention.
    pub retention_rules: Vec<RetentionRule>,
    /// How often the server sweeps chunks past retention (ms).
    pub retention_sweep_interval_ms: u64,
    pub max_query_points: usize,
    /// A series' chunk is closed at this many points.
    pub chunk_target_points: usize,
    /// Most series one database may hold; writes that would add more are refused.
    pub max_series: usize,
    /// Most new series a database creates in any hour; 0 for no limit.
    pub max_new_series_per_hour: usize,
    pub point_limits: PointLimits,
    /// Downsampling rules, by increasing age (see [`crate::rollup`]); checked by
    /// [`crate::rollup::validate`] when the engine opens.
    pub downsampling: Vec<DownsampleRule>,
}

impl Default for TsConfig {
    fn default() -> Self {
        TsConfig {
            auto_buffer: AutoBufferConfig::default(),
            retention_ms: 0,
            retention_rules: Vec::new(),
            retention_sweep_interval_ms: 3_600_000,
            max_query_points: 5_000_000,
            chunk_target_points: 2048,
            max_series: 1_000_000,
            max_new_series_per_hour: 0,
            point_limits: PointLimits::default(),
            downsampling: Vec::new(),
        }
    }
}

/// A retention rule: metrics whose name matches `metric` (a glob: `*` any run of characters,
/// `?` one character; the whole name must match) keep points for `retention_ms` (0: forever).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionRule {
    pub metric: String,
    pub retention_ms: u64,
}

impl RetentionRule {
    /// The rule's glob as an anchored regex; an error for a glob too large to compile.
    pub fn regex(&self) -> Result<regex::Regex, String> {
        let mut re = String::with_capacity(self.metric.len() + 8);
        re.push_str("^(?:");
        let mut buf = [0u8; 4];
        for c in self.metric.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(c.encode_utf8(&mut buf))),
            }
        }
        re.push_str(")$");
        regex::RegexBuilder::new(&re)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("retention rule {:?}: {e}", self.metric))
    }
}

/// Why a flush ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushTrigger {
    Count,
    Age,
    Memory,
    Manual,
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError<E> {
    #[error("buffer overflow")]
    Overflow { buffer_size: u64 },
    #[error("the database holds {limit} series, its limit; the write would add more")]
    SeriesLimit { limit: usize },
    /// The write would create more new series within an hour than `limit`; room returns in
    /// `retry_after_secs` (unless the write alone adds more than the limit: `adding`).
    #[error(
        "the database may create {limit} new series an hour (it created {recent} in the last hour) and this write adds {adding}"
    )]
    NewSeriesRate {
        limit: usize,
        recent: usize,
        adding: usize,
        retry_after_secs: u64,
    },
    #[error(transparent)]
    Append(E),
}

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the WAL did not become durable: {0}")]
    Wal(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError<E> {
    #[error(transparent)]
    Append(E),
    #[error("the WAL did not become durable: {0}")]
    Wal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Series counts and limits of a database ([`TsEngine::cardinality`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cardinality {
    pub counts: crate::series::Counts,
    /// Series the database holds.
    pub total_series: u64,
    /// New series created in the last hour.
    pub new_series_last_hour: u64,
    pub max_series: u64,
    /// 0: no limit.
    pub max_new_series_per_hour: u64,
}

/// What one step of [`TsEngine::sweep`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepStep {
    /// The next series to sweep; `None` after the last.
    pub next: Option<SeriesId>,
    /// Chunks deleted because their newest point is past retention.
    pub expired: usize,
    /// Small chunks merged, and the chunks written for them.
    pub merged: usize,
    pub written: usize,
    /// Raw chunks rolled up (downsampled and deleted), and rollup blocks written or deleted.
    pub rolled: usize,
    pub rollup_blocks: usize,
}

/// What a deletion removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// Series the selection matched.
    pub series: u64,
    /// Stored points removed, buffered and in chunks (a timestamp written twice counts twice).
    pub points: u64,
    /// Chunks rewritten without the deleted points.
    pub chunks_rewritten: u64,
    /// Chunks removed whole.
    pub chunks_removed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "the query would answer more than {limit} points (raw points, or buckets of an aggregation over all its series or groups), or merge more than twice that from overlapping chunks; narrow the range or the selection, or widen the step"
    )]
    TooManyPoints { limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a write left behind.
#[derive(Clone, Copy, Debug)]
pub struct WriteOutcome {
    /// Points in the head after the write.
    pub buffer_size: u64,
    /// A count or memory threshold tripped: the caller should wake the flusher.
    pub flush_due: Option<FlushTrigger>,
}

/// What a flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FlushOutcome {
    pub points: u64,
    /// LSN up to which everything is now in chunks (`None` if the head was empty).
    pub flushed_lsn: Option<Lsn>,
}

/// The seed's buffer statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferStats {
    pub points_buffered: u64,
    pub points_flushed: u64,
    pub flush_count: u64,
    pub auto_flush_count: u64,
    pub manual_flush_count: u64,
    pub current_buffer_size: u64,
    pub current_buffer_memory: u64,
    pub avg_compression_ratio: f64,
    pub last_flush_time_ms: Option<i64>,
}

/// The engine's Prometheus metrics (seed names).
#[derive(Clone, Debug, Default)]
pub struct TsMetrics {
    pub points_buffered: Counter,
    pub points_flushed: Counter,
    pub flush_count: Counter,
    pub compression_ratio: Gauge<f64, AtomicU64>,
    pub current_size: Gauge,
}

impl TsMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ts_auto_buffer");
        r.register(
            "points_buffered",
            "Points accepted into the time-series buffer",
            self.points_buffered.clone(),
        );
        r.register(
            "points_flushed",
            "Points flushed into compressed chunks",
            self.points_flushed.clone(),
        );
        r.register("flush_count", "Buffer flushes", self.flush_count.clone());
        r.register(
            "compression_ratio",
            "Raw bytes (16 per point) over stored bytes, over all flushes",
            self.compression_ratio.clone(),
        );
        r.register(
            "current_size",
            "Points in the buffer now",
            self.current_size.clone(),
        );
    }
}

#[derive(Default)]
struct Head {
    series: HashMap<SeriesId, Vec<(i64, f64)>>,
    points: usize,
    bytes: usize,
    first_insert: Option<Instant>,
    last_lsn: Lsn,
}

struct State {
    index: SeriesIndex,
    head: Head,
    frozen: Option<Arc<Head>>,
    flushed_lsn: Lsn,
    /// Deletions logged whose chunk rewrite is not committed, in LSN order: the WAL must keep
    /// them, and no flush runs until they are done (see [`TsEngine::complete_deletes`]).
    pending_deletes: Vec<PendingDelete>,
    /// New series created per minute over the last hour.
    new_series: SeriesRate,
}

/// A deletion whose buffered points are gone but whose chunk rewrite is not committed.
#[derive(Clone, Debug)]
struct PendingDelete {
    lsn: Lsn,
    /// The series it selected when it was logged.
    ids: Vec<SeriesId>,
    from: i64,
    to: i64,
    /// Buffered points it removed.
    buffered: u64,
}

/// New series created per minute over the last hour: a ring of 60 one-minute buckets.
struct SeriesRate {
    minutes: [usize; 60],
    /// The minute (since the epoch) of the newest bucket.
    newest: i64,
}

impl Default for SeriesRate {
    fn default() -> Self {
        SeriesRate {
            minutes: [0; 60],
            newest: 0,
        }
    }
}

impl SeriesRate {
    fn advance(&mut self, now_minute: i64) {
        if now_minute > self.newest {
            let gap = (now_minute - self.newest).min(60);
            for m in now_minute - gap + 1..=now_minute {
                self.minutes[m.rem_euclid(60) as usize] = 0;
            }
            self.newest = now_minute;
        }
    }

    fn add(&mut self, now_ms: i64, n: usize) {
        if n > 0 {
            let minute = now_ms.div_euclid(60_000);
            self.advance(minute);
            self.minutes[minute.rem_euclid(60) as usize] += n;
        }
    }

    /// New series created in the last hour (this minute included).
    fn count(&mut self, now_ms: i64) -> usize {
        self.advance(now_ms.div_euclid(60_000));
        self.minutes.iter().sum()
    }

    /// Seconds until at least `need` of the last hour's new series have left the window.
    fn retry_after(&self, now_ms: i64, need: usize) -> u64 {
        let mut freed = 0;
        for m in self.newest - 59..=self.newest {
            freed += self.minutes[m.rem_euclid(60) as usize];
            if freed >= need {
                let leaves_ms = (m + 60) * 60_000;
                return ((leaves_ms - now_ms).max(0) as u64).div_ceil(1000).max(1);
            }
        }
        3600
    }
}

/// A chunk smaller than `chunk_target_points` written since start. Each series keeps the run
/// of its newest small chunks (oldest first, consecutive in `seq` among the series' chunks) and
/// merges them size-tiered, like a binary counter: a new chunk at least as large as the one
/// before it is merged with it (repeatedly), and a merge reaching the target seals full chunks.
/// Each point is so rewritten O(log(target / points per flush)) times, never once per flush.
#[derive(Clone, Copy, Debug)]
struct Small {
    min_ts: i64,
    seq: u64,
    count: usize,
    /// Stored bytes of the chunk (block plus key and header).
    stored_bytes: usize,
}

struct FlushState {
    next_seq: u64,
    persisted_series: usize,
    small: HashMap<SeriesId, Vec<Small>>,
}

#[derive(Default)]
struct Counters {
    points_buffered: AtomicU64,
    points_flushed: AtomicU64,
    flush_count: AtomicU64,
    manual_flush_count: AtomicU64,
    stored_bytes: AtomicI64,
    last_flush_ms: AtomicU64,
}

pub struct TsEngine {
    config: TsConfig,
    /// `config.retention_rules`, compiled.
    rules: Vec<(regex::Regex, u64)>,
    store: ChunkStore,
    state: Mutex<State>,
    /// Series known by a protocol's raw names ([`crate::names`]).
    names: Mutex<SeriesCache>,
    flush: Mutex<FlushState>,
    /// Odd while a sweep step commits points moving from chunks into downsampled buckets
    /// (see [`Self::consistent`]).
    rollup_epoch: AtomicU64,
    counters: Counters,
    metrics: TsMetrics,
}

const POINT_BYTES: usize = 16;
/// A sweep step stops taking series once it has this many bytes of chunks and rollups to
/// write (one series' work may pass it).
const MAX_SWEEP_STEP_BYTES: usize = 64 << 20;

impl TsEngine {
    /// Opens the engine's storage in `dir`. Replay the WAL after this with [`TsEngine::replay`].
    pub fn open(dir: &Path, config: TsConfig, metrics: TsMetrics) -> Result<TsEngine, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Fjall(e.into()))?;
        let opened = ChunkStore::open(dir)?;
        let mut index = SeriesIndex::default();
        for (id, key) in opened.series.into_iter().enumerate() {
            index.insert_with_id(key, id as SeriesId);
        }
        let persisted_series = index.len();
        let rules = config
            .retention_rules
            .iter()
            .map(|r| r.regex().map(|re| (re, r.retention_ms)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::Corrupt)?;
        rollup::validate(&config.downsampling).map_err(|(i, field, e)| {
            StoreError::Corrupt(format!("downsampling rule {i}: {field} {e}"))
        })?;
        Ok(TsEngine {
            rules,
            config,
            store: opened.store,
            state: Mutex::new(State {
                index,
                head: Head::default(),
                frozen: None,
                flushed_lsn: opened.flushed_lsn,
                pending_deletes: Vec::new(),
                new_series: SeriesRate::default(),
            }),
            names: Mutex::new(SeriesCache::default()),
            flush: Mutex::new(FlushState {
                next_seq: opened.next_seq,
                persisted_series,
                small: HashMap::default(),
            }),
            rollup_epoch: AtomicU64::new(0),
            counters: Counters::default(),
            metrics,
        })
    }

    pub fn config(&self) -> &TsConfig {
        &self.config
    }

    /// The LSN up to which chunks hold everything; WAL records at or below it are not replayed.
    pub fn flushed_lsn(&self) -> Lsn {
        self.lock_state().flushed_lsn
    }

    /// The highest LSN the WAL may be checkpointed at as far as this engine is concerned,
    /// given `written`, the WAL's written LSN read *before* this call: with nothing buffered,
    /// every point logged so far is in chunks (writes log and buffer under one lock).
    pub fn persisted_bound(&self, written: Lsn) -> Lsn {
        let st = self.lock_state();
        let bound = if st.head.points == 0 && st.frozen.is_none() {
            written.max(st.flushed_lsn)
        } else {
            st.flushed_lsn
        };
        match st.pending_deletes.first() {
            Some(p) => bound.min(Lsn(p.lsn.0.saturating_sub(1))),
            None => bound,
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs and applies a write: `append` receives the encoded WAL record and returns the
    /// caller's ticket and the LSN it was given. See the module doc for why this is one step.
    pub fn write<T, E>(
        &self,
        batch: Batch,
        append: impl FnOnce(Vec<u8>) -> Result<(T, Lsn), E>,
    ) -> Result<(T, WriteOutcome), WriteError<E>> {
        let payload = crate::record::encode_batch(&batch);
        let mut st = self.lock_state();
        self.admit(&mut st, batch.series.len(), batch.series.iter())?;
        let (ticket, lsn) = append(payload).map_err(WriteError::Append)?;
        // Only admitted writes count towards the new-series rate (not replay or replication).
        let before = st.index.len();
        let outcome = self.insert(&mut st, batch, lsn);
        let new = st.index.len() - before;
        st.new_series.add(now_ms(), new);
        Ok((ticket, outcome))
    }

    /// [`Self::write`] for a batch whose series are named by raw bytes (see [`crate::names`]):
    /// known series skip the index, new ones are remembered by their raw names once they have
    /// an id. The WAL record is the one [`Self::write`] logs for the same keys.
    pub fn write_named<T, E>(
        &self,
        batch: NamedBatch,
        append: impl FnOnce(Vec<u8>) -> Result<(T, Lsn), E>,
    ) -> Result<(T, WriteOutcome), WriteError<E>> {
        let payload = crate::record::encode_named(&batch);
        let mut st = self.lock_state();
        let new_keys = batch.series.iter().filter_map(|s| match s {
            NamedSeries::New(key, _) => Some(key),
            NamedSeries::Known(_) => None,
        });
        self.admit(&mut st, new_keys.clone().count(), new_keys)?;
        let (ticket, lsn) = append(payload).map_err(WriteError::Append)?;
        let mut ids: Vec<SeriesId> = Vec::with_capacity(batch.series.len());
        let mut remember = Vec::new();
        for s in batch.series {
            match s {
                NamedSeries::Known(k) => ids.push(k.id),
                NamedSeries::New(key, raw) => {
                    let encoded = raw.as_ref().map(|_| key.encode());
                    let (id, added) = st.index.get_or_insert_owned(key);
                    if let Some(bytes) = added {
                        st.head.bytes += bytes;
                        st.new_series.add(now_ms(), 1);
                    }
                    ids.push(id);
                    if let (Some(raw), Some(encoded)) = (raw, encoded) {
                        remember.push((
                            raw,
                            KnownSeries {
                                id,
                                encoded: encoded.into(),
                            },
                        ));
                    }
                }
            }
        }
        let outcome = self.insert_samples(&mut st, &ids, &batch.samples, lsn);
        drop(st);
        if !remember.is_empty() {
            let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
            for (raw, known) in remember {
                names.insert(raw, known);
            }
        }
        Ok((ticket, outcome))
    }

    /// What of `raws` the engine knows (see [`crate::names`]), in order.
    pub fn known_series<'r>(
        &self,
        raws: impl IntoIterator<Item = Option<&'r [u8]>>,
    ) -> Vec<Option<KnownSeries>> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        raws.into_iter()
            .map(|raw| raw.and_then(|r| names.get(r).cloned()))
            .collect()
    }

    /// Refuses a write the head has no room for, or whose series (`count` `keys`, those not
    /// yet in the index new) would pass the series limit or the new-series rate.
    fn admit<'k, E>(
        &self,
        st: &mut State,
        count: usize,
        keys: impl Iterator<Item = &'k SeriesKey>,
    ) -> Result<(), WriteError<E>> {
        let frozen_bytes = st.frozen.as_ref().map_or(0, |f| f.bytes);
        if st.head.bytes + frozen_bytes >= self.config.auto_buffer.overflow_buffer_bytes {
            return Err(WriteError::Overflow {
                buffer_size: st.head.points as u64,
            });
        }
        let limit = self.config.max_series;
        let rate = self.config.max_new_series_per_hour;
        let now = now_ms();
        let recent = if rate > 0 {
            st.new_series.count(now)
        } else {
            0
        };
        // `count` bounds the new series from above: only near a limit are they counted.
        if st.index.len() + count > limit || (rate > 0 && recent + count > rate) {
            let mut added: std::collections::HashSet<&SeriesKey> = Default::default();
            for key in keys {
                if st.index.id(key).is_none()
                    && added.insert(key)
                    && st.index.len() + added.len() > limit
                {
                    return Err(WriteError::SeriesLimit { limit });
                }
            }
            if rate > 0 && recent + added.len() > rate {
                let need = recent + added.len() - rate;
                return Err(WriteError::NewSeriesRate {
                    limit: rate,
                    recent,
                    adding: added.len(),
                    retry_after_secs: st.new_series.retry_after(now, need),
                });
            }
        }
        Ok(())
    }

    /// Applies a record shipped from a primary: `append` logs it at the primary's LSN (and
    /// returns that LSN) under the same lock as a local write, then the points are buffered.
    /// A record the chunks already hold (at or below the flushed LSN, as after a snapshot
    /// transfer) is logged, to keep the sequence, but not buffered again.
    pub fn apply_replicated<E>(
        &self,
        batch: Batch,
        append: impl FnOnce() -> Result<Lsn, E>,
    ) -> Result<WriteOutcome, WriteError<E>> {
        let mut st = self.lock_state();
        let frozen_bytes = st.frozen.as_ref().map_or(0, |f| f.bytes);
        if st.head.bytes + frozen_bytes >= self.config.auto_buffer.overflow_buffer_bytes {
            return Err(WriteError::Overflow {
                buffer_size: st.head.points as u64,
            });
        }
        let lsn = append().map_err(WriteError::Append)?;
        if lsn <= st.flushed_lsn {
            return Ok(WriteOutcome {
                buffer_size: st.head.points as u64,
                flush_due: None,
            });
        }
        Ok(self.insert(&mut st, batch, lsn))
    }

    /// Deletes the points of the series `q` selects (metric, entity, tags, matchers) in
    /// `[q.from_ms, q.to_ms]`: `append` logs the encoded record (see the module doc, "Deletes")
    /// and returns the caller's ticket and its LSN; `wait_durable(L)` returns once the WAL is
    /// fsync'd up to `L`, before any chunk is rewritten.
    pub fn delete<T, E>(
        &self,
        q: &Query,
        append: impl FnOnce(Vec<u8>) -> Result<(T, Lsn), E>,
        wait_durable: impl FnOnce(Lsn) -> Result<(), String>,
    ) -> Result<(T, DeleteOutcome), DeleteError<E>> {
        let payload = crate::record::encode_delete(q);
        let mut fs = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
        let (ticket, lsn) = {
            let mut st = self.lock_state();
            let (ticket, lsn) = append(payload).map_err(DeleteError::Append)?;
            self.delete_buffered(&mut st, q, lsn);
            (ticket, lsn)
        };
        wait_durable(lsn).map_err(DeleteError::Wal)?;
        let outcome = self.complete_deletes(&mut fs, Some(lsn))?;
        Ok((ticket, outcome))
    }

    /// Applies a deletion shipped from a primary: `append` logs it at the primary's LSN under
    /// the engine lock (as [`Self::apply_replicated`] does for points); `wait_durable` as in
    /// [`Self::delete`]. A record at or below the flushed LSN is logged but not applied again.
    pub fn apply_replicated_delete<E>(
        &self,
        q: &Query,
        append: impl FnOnce() -> Result<Lsn, E>,
        wait_durable: impl FnOnce(Lsn) -> Result<(), String>,
    ) -> Result<DeleteOutcome, DeleteError<E>> {
        let mut fs = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
        let lsn = {
            let mut st = self.lock_state();
            let lsn = append().map_err(DeleteError::Append)?;
            if lsn <= st.flushed_lsn {
                return Ok(DeleteOutcome::default());
            }
            self.delete_buffered(&mut st, q, lsn);
            lsn
        };
        wait_durable(lsn).map_err(DeleteError::Wal)?;
        Ok(self.complete_deletes(&mut fs, Some(lsn))?)
    }

    /// Re-applies a deletion during recovery (skipped when the chunks hold its LSN).
    pub fn replay_delete(&self, q: &Query, lsn: Lsn) -> Result<DeleteOutcome, StoreError> {
        let mut fs = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut st = self.lock_state();
            if lsn <= st.flushed_lsn {
                return Ok(DeleteOutcome::default());
            }
            self.delete_buffered(&mut st, q, lsn);
        }
        self.complete_deletes(&mut fs, Some(lsn))
    }

    /// Rewrites the chunks of every pending deletion, oldest first (called with the flush lock
    /// held, so the chunks hold nothing written after any of them); returns what the one at
    /// `lsn` removed. A failure leaves that deletion and the later ones pending: the WAL keeps
    /// them, flushes wait for them ([`Self::flush`] completes them first), and the next start
    /// replays them.
    fn complete_deletes(
        &self,
        fs: &mut FlushState,
        lsn: Option<Lsn>,
    ) -> Result<DeleteOutcome, StoreError> {
        let pending = self.lock_state().pending_deletes.clone();
        let mut wanted = DeleteOutcome::default();
        for p in pending {
            let outcome = self.delete_stored(fs, &p)?;
            let mut st = self.lock_state();
            st.pending_deletes.retain(|x| x.lsn != p.lsn);
            // Chunks now hold the deletion: a flush of what the head holds may claim its LSN.
            if st.head.points > 0 {
                st.head.last_lsn = st.head.last_lsn.max(p.lsn);
            }
            if Some(p.lsn) == lsn {
                wanted = outcome;
            }
        }
        Ok(wanted)
    }

    /// Removes the buffered points of a deletion logged at `lsn` and marks it pending (with the
    /// series it selects now). Called with the flush lock held.
    fn delete_buffered(&self, st: &mut State, q: &Query, lsn: Lsn) {
        debug_assert!(st.frozen.is_none(), "deletes hold the flush lock");
        let ids: Vec<SeriesId> = st
            .index
            .select(&q.metric, q.entity.as_deref(), &q.tags)
            .iter()
            .filter(|id| {
                st.index
                    .key(*id)
                    .is_some_and(|k| q.matchers.iter().all(|m| m.matches(k)))
            })
            .collect();
        let (from, to) = (q.from_ms, q.to_ms);
        let mut removed = 0usize;
        for id in &ids {
            if let Some(points) = st.head.series.get_mut(id) {
                let before = points.len();
                points.retain(|(t, _)| *t < from || *t > to);
                removed += before - points.len();
            }
        }
        st.head.points -= removed;
        st.head.bytes = st.head.bytes.saturating_sub(removed * POINT_BYTES);
        if st.head.points == 0 {
            st.head.first_insert = None;
        }
        self.metrics.current_size.set(st.head.points as i64);
        if st.pending_deletes.iter().any(|p| p.lsn == lsn) {
            return;
        }
        st.pending_deletes.push(PendingDelete {
            lsn,
            ids,
            from,
            to,
            buffered: removed as u64,
        });
    }

    /// Rewrites the chunks of a pending deletion's series that hold points in its range (see
    /// the module doc), in one synced batch. Called with the flush lock held.
    fn delete_stored(
        &self,
        fs: &mut FlushState,
        p: &PendingDelete,
    ) -> Result<DeleteOutcome, StoreError> {
        let (ids, from, to) = (&p.ids[..], p.from, p.to);
        let mut outcome = DeleteOutcome {
            series: ids.len() as u64,
            points: p.buffered,
            ..DeleteOutcome::default()
        };
        let plan = self.store.plan(ids, from, to)?;
        let mut writes = Vec::new();
        let mut deletes = Vec::new();
        let mut run_edits = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            for (j, (min_ts, max_ts, seq)) in plan.chunks(i).enumerate() {
                if from <= min_ts && max_ts <= to {
                    // Wholly inside the range: removed by key, nothing decoded.
                    outcome.points += self.store.count_one(&plan, i, j)? as u64;
                    outcome.chunks_removed += 1;
                    deletes.push((id, min_ts, seq));
                    run_edits.push(RunEdit::new(id, min_ts, seq, &[], None));
                    continue;
                }
                let old = self.store.read_one(&plan, i, j)?;
                let kept: Vec<(i64, f64)> = old
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t < from || *t > to)
                    .collect();
                if kept.len() == old.len() {
                    continue;
                }
                outcome.points += (old.len() - kept.len()) as u64;
                deletes.push((id, min_ts, seq));
                let block = (!kept.is_empty()).then(|| encode_chunk(&kept));
                run_edits.push(RunEdit::new(id, min_ts, seq, &kept, block.as_deref()));
                match block {
                    Some(block) => {
                        outcome.chunks_rewritten += 1;
                        writes.push(ChunkWrite {
                            series: id,
                            min_ts: kept[0].0,
                            max_ts: kept[kept.len() - 1].0,
                            seq,
                            block,
                        });
                    }
                    None => outcome.chunks_removed += 1,
                }
            }
        }
        // Downsampled buckets wholly inside the range go too (a bucket only partly inside it
        // cannot be split, and stays).
        let mut rollups = Vec::new();
        for &id in ids {
            for r in &self.config.downsampling {
                let res = r.resolution_ms as i64;
                for (bs, v) in self.store.rollup_blocks(Some(&plan), id, res, from, to)? {
                    let mut buckets: BTreeMap<i64, Acc> =
                        decode_rollup(id, &v)?.into_iter().collect();
                    let gone: u64 = take_buckets(&mut buckets, |start| {
                        from <= start && start.saturating_add(res - 1) <= to
                    })
                    .iter()
                    .map(|(_, a)| a.count)
                    .sum();
                    if gone == 0 {
                        continue;
                    }
                    outcome.points += gone;
                    rollups.push(RollupWrite {
                        series: id,
                        resolution_ms: res,
                        block_start: bs,
                        block: (!buckets.is_empty()).then(|| rollup::encode_block(&buckets)),
                    });
                }
            }
        }
        self.store.commit_rewrite(&writes, &deletes, &rollups)?;
        apply_run_edits(&mut fs.small, &run_edits);
        Ok(outcome)
    }

    /// Series counts by metric, label and label value (the `limit` largest of each) among the
    /// series of `metric` (every series when `None`), with the database's totals and limits.
    pub fn cardinality(&self, metric: Option<&str>, limit: usize) -> Cardinality {
        let mut st = self.lock_state();
        let within = metric.map(|m| st.index.select(m, None, &[]));
        let counts = st.index.counts(within.as_ref(), limit);
        Cardinality {
            counts,
            total_series: st.index.len() as u64,
            new_series_last_hour: st.new_series.count(now_ms()) as u64,
            max_series: self.config.max_series as u64,
            max_new_series_per_hour: self.config.max_new_series_per_hour as u64,
        }
    }

    /// Every metric name with at least one series.
    pub fn metrics(&self) -> Vec<String> {
        self.lock_state().index.metrics()
    }

    /// Buffers points of a snapshot being loaded as of `lsn` (the snapshot's LSN: the WAL
    /// continues after it); flush when the outcome asks, and once at the end.
    pub fn load_base(&self, batch: Batch, lsn: Lsn) -> WriteOutcome {
        let mut st = self.lock_state();
        self.insert(&mut st, batch, lsn)
    }

    /// Re-applies a WAL record during recovery (records already in chunks are skipped).
    pub fn replay(&self, batch: Batch, lsn: Lsn) {
        let mut st = self.lock_state();
        if lsn > st.flushed_lsn {
            self.insert(&mut st, batch, lsn);
        }
    }

    fn insert(&self, st: &mut State, batch: Batch, lsn: Lsn) -> WriteOutcome {
        // One index lookup per series of the batch, then a push per sample.
        let mut ids: Vec<SeriesId> = Vec::with_capacity(batch.series.len());
        for key in batch.series {
            let (id, added) = st.index.get_or_insert_owned(key);
            if let Some(bytes) = added {
                st.head.bytes += bytes;
            }
            ids.push(id);
        }
        self.insert_samples(st, &ids, &batch.samples, lsn)
    }

    /// Buffers `samples` (whose `series` index `ids`) as of `lsn`.
    fn insert_samples(
        &self,
        st: &mut State,
        ids: &[SeriesId],
        samples: &[Sample],
        lsn: Lsn,
    ) -> WriteOutcome {
        // Equal only while a snapshot is loaded (every point at the snapshot's LSN).
        debug_assert!(lsn >= st.head.last_lsn);
        let n = samples.len();
        for s in samples {
            st.head
                .series
                .entry(ids[s.series as usize])
                .or_default()
                .push((s.timestamp_ms, s.value));
        }
        st.head.points += n;
        st.head.bytes += n * POINT_BYTES;
        st.head.last_lsn = lsn;
        st.head.first_insert.get_or_insert_with(Instant::now);
        self.counters
            .points_buffered
            .fetch_add(n as u64, Ordering::Relaxed);
        self.metrics.points_buffered.inc_by(n as u64);
        self.metrics.current_size.set(st.head.points as i64);
        let ab = &self.config.auto_buffer;
        // Memory first: a count flush may be deferred (`min_flush_gap_ms`), a memory one not.
        let flush_due = if st.head.bytes >= ab.max_buffer_bytes {
            Some(FlushTrigger::Memory)
        } else if st.head.points >= ab.max_points_per_buffer {
            Some(FlushTrigger::Count)
        } else {
            None
        };
        WriteOutcome {
            buffer_size: st.head.points as u64,
            flush_due,
        }
    }

    /// Whether the head has a reason to be flushed now (count, memory or age).
    pub fn due(&self) -> Option<FlushTrigger> {
        let st = self.lock_state();
        let ab = &self.config.auto_buffer;
        if st.head.points == 0 {
            None
        } else if st.head.bytes >= ab.max_buffer_bytes {
            Some(FlushTrigger::Memory)
        } else if st.head.points >= ab.max_points_per_buffer {
            Some(FlushTrigger::Count)
        } else if st
            .head
            .first_insert
            .is_some_and(|t| t.elapsed().as_millis() >= u128::from(ab.flush_interval_ms))
        {
            Some(FlushTrigger::Age)
        } else {
            None
        }
    }

    /// Milliseconds until the head's age trigger fires, if it holds anything.
    pub fn ms_until_age_due(&self) -> Option<u64> {
        let st = self.lock_state();
        st.head.first_insert.map(|t| {
            self.config
                .auto_buffer
                .flush_interval_ms
                .saturating_sub(t.elapsed().as_millis() as u64)
        })
    }

    /// Flushes the head into chunks. `wait_durable(L)` must return once the WAL is fsync'd up to
    /// `L`, the last LSN of the frozen head: the chunks claim "everything up to L", so the log
    /// must hold L before they do (else a crash could let the log hand out L again). The caller
    /// checkpoints the WAL at the returned LSN.
    pub fn flush(
        &self,
        trigger: FlushTrigger,
        wait_durable: impl FnOnce(Lsn) -> Result<(), String>,
    ) -> Result<FlushOutcome, FlushError> {
        let mut fs = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
        // A deletion whose rewrite failed goes first: chunks written now would hold points
        // logged after it, which it must not touch.
        self.complete_deletes(&mut fs, None)?;
        let (frozen, new_series) = {
            let mut st = self.lock_state();
            if st.head.points == 0 {
                if trigger == FlushTrigger::Manual {
                    self.count_flush(trigger);
                }
                return Ok(FlushOutcome::default());
            }
            let frozen = Arc::new(std::mem::take(&mut st.head));
            st.frozen = Some(frozen.clone());
            let new_series: Vec<(SeriesId, SeriesKey)> = (fs.persisted_series..st.index.len())
                .filter_map(|id| {
                    st.index
                        .key(id as SeriesId)
                        .map(|k| (id as SeriesId, k.clone()))
                })
                .collect();
            self.metrics.current_size.set(0);
            (frozen, new_series)
        };

        let result = match wait_durable(frozen.last_lsn) {
            Ok(()) => self
                .write_chunks(&mut fs, &frozen, &new_series)
                .map_err(FlushError::Store),
            Err(e) => Err(FlushError::Wal(e)),
        };
        let mut st = self.lock_state();
        match result {
            Ok(stored_bytes) => {
                st.frozen = None;
                st.flushed_lsn = frozen.last_lsn;
                drop(st);
                fs.persisted_series += new_series.len();
                fs.next_seq += 1;
                let points = frozen.points as u64;
                self.counters
                    .points_flushed
                    .fetch_add(points, Ordering::Relaxed);
                self.counters
                    .stored_bytes
                    .fetch_add(stored_bytes, Ordering::Relaxed);
                self.metrics.points_flushed.inc_by(points);
                self.metrics.compression_ratio.set(self.compression_ratio());
                self.count_flush(trigger);
                Ok(FlushOutcome {
                    points,
                    flushed_lsn: Some(frozen.last_lsn),
                })
            }
            Err(e) => {
                // Put the points back in front of anything written since, so nothing is lost
                // from memory; the WAL still holds them too.
                let frozen = Arc::try_unwrap(frozen).unwrap_or_else(|a| clone_head(&a));
                st.frozen = None;
                let newer = std::mem::replace(&mut st.head, frozen);
                merge_head(&mut st.head, newer);
                Err(e)
            }
        }
    }

    fn count_flush(&self, trigger: FlushTrigger) {
        self.counters.flush_count.fetch_add(1, Ordering::Relaxed);
        if trigger == FlushTrigger::Manual {
            self.counters
                .manual_flush_count
                .fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .last_flush_ms
            .store(now_ms().max(0) as u64, Ordering::Relaxed);
        self.metrics.flush_count.inc();
    }

    /// Builds and commits the chunks of a frozen head, merging small chunks size-tiered (see
    /// [`Small`]); returns the net change of stored bytes.
    fn write_chunks(
        &self,
        fs: &mut FlushState,
        frozen: &Head,
        new_series: &[(SeriesId, SeriesKey)],
    ) -> Result<i64, StoreError> {
        let target = self.config.chunk_target_points.max(1);
        let seq = fs.next_seq;
        let cutoff = self.retention_cutoff();
        let mut writes = Vec::new();
        let mut deletes = Vec::new();
        let mut runs: Vec<(SeriesId, Vec<Small>)> = Vec::new();
        let mut deleted_bytes = 0u64;
        let mut series_ids: Vec<&SeriesId> = frozen.series.keys().collect();
        series_ids.sort();
        for &id in series_ids {
            let mut points =
                query::merge_sources(vec![frozen.series[&id].clone()], cutoff, i64::MAX);
            if points.is_empty() {
                continue;
            }
            let mut run = fs.small.get(&id).cloned().unwrap_or_default();
            // Merge while the newest chunk is at least as large as the one before it.
            while let Some(prev) = run.last().copied()
                && prev.count <= points.len()
                && points.len() < target
            {
                let Some(old) = self.store.chunk(id, prev.min_ts, prev.seq)? else {
                    run.pop();
                    continue;
                };
                points = query::merge_sources(vec![old.points, points], i64::MIN, i64::MAX);
                deletes.push((id, prev.min_ts, prev.seq));
                deleted_bytes += prev.stored_bytes as u64;
                run.pop();
            }
            if points.len() >= target {
                // This flush writes a full chunk: it ends the run. Merging older small chunks
                // past it later would make their points newer than its, and an overwritten
                // timestamp could come back. They stay as they are.
                run.clear();
            }
            for part in points.chunks(target) {
                let block = encode_chunk(part);
                let stored_bytes = block.len() + CHUNK_OVERHEAD_BYTES;
                if part.len() < target {
                    run.push(Small {
                        min_ts: part[0].0,
                        seq,
                        count: part.len(),
                        stored_bytes,
                    });
                }
                writes.push(ChunkWrite {
                    series: id,
                    min_ts: part[0].0,
                    max_ts: part[part.len() - 1].0,
                    seq,
                    block,
                });
            }
            runs.push((id, run));
        }
        let series_refs: Vec<(SeriesId, &SeriesKey)> =
            new_series.iter().map(|(id, k)| (*id, k)).collect();
        self.store
            .commit_flush(&series_refs, &writes, &deletes, frozen.last_lsn, seq + 1)?;
        for (id, run) in runs {
            if run.is_empty() {
                fs.small.remove(&id);
            } else {
                fs.small.insert(id, run);
            }
        }
        let written: u64 = writes
            .iter()
            .map(|w| (w.block.len() + CHUNK_OVERHEAD_BYTES) as u64)
            .sum();
        // Negative when merges saved more chunk overhead than the new points cost.
        Ok(written as i64 - deleted_bytes as i64)
    }

    fn compression_ratio(&self) -> f64 {
        let stored = self.counters.stored_bytes.load(Ordering::Relaxed);
        if stored <= 0 {
            return 0.0;
        }
        (self.counters.points_flushed.load(Ordering::Relaxed) * POINT_BYTES as u64) as f64
            / stored as f64
    }

    pub fn stats(&self) -> BufferStats {
        let (size, memory) = {
            let st = self.lock_state();
            (st.head.points as u64, st.head.bytes as u64)
        };
        let c = &self.counters;
        // Manual first: a flush counted between the two loads only makes `flush_count` larger.
        let manual = c.manual_flush_count.load(Ordering::Relaxed);
        let flush_count = c.flush_count.load(Ordering::Relaxed).max(manual);
        let last = c.last_flush_ms.load(Ordering::Relaxed);
        BufferStats {
            points_buffered: c.points_buffered.load(Ordering::Relaxed),
            points_flushed: c.points_flushed.load(Ordering::Relaxed),
            flush_count,
            auto_flush_count: flush_count.saturating_sub(manual),
            manual_flush_count: manual,
            current_buffer_size: size,
            current_buffer_memory: memory,
            avg_compression_ratio: self.compression_ratio(),
            last_flush_time_ms: (last > 0).then_some(last as i64),
        }
    }

    /// Bytes of the live chunks and rollups (see [`ChunkStore::live_bytes`]); reads them all.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        self.store.live_bytes()
    }

    /// Net bytes of chunk data stored by flushes since open (Gorilla blocks plus key and header).
    pub fn stored_bytes(&self) -> u64 {
        self.counters.stored_bytes.load(Ordering::Relaxed).max(0) as u64
    }

    /// The oldest timestamp any series keeps: what flushes keep and reads plan for (each
    /// series is then held to its own [`Self::series_cutoff`]).
    fn retention_cutoff(&self) -> i64 {
        let now = now_ms();
        self.rules
            .iter()
            .map(|(_, ms)| cutoff_at(now, *ms))
            .fold(cutoff_at(now, self.config.retention_ms), i64::min)
    }

    /// The oldest timestamp the series of `metric` keep: the first matching rule's retention,
    /// else the database's.
    pub fn series_cutoff(&self, metric: &str) -> i64 {
        let ms = self
            .rules
            .iter()
            .find(|(re, _)| re.is_match(metric))
            .map_or(self.config.retention_ms, |(_, ms)| *ms);
        cutoff_at(now_ms(), ms)
    }

    /// `from` held to each series' retention, for the series `ids` (see [`Self::series_cutoff`]).
    fn series_froms(&self, st: &State, ids: &[SeriesId], from: i64) -> Vec<i64> {
        if self.rules.is_empty() {
            return vec![from.max(cutoff_at(now_ms(), self.config.retention_ms)); ids.len()];
        }
        ids.iter()
            .map(|id| {
                st.index
                    .key(*id)
                    .map_or(from, |k| from.max(self.series_cutoff(&k.metric)))
            })
            .collect()
    }

    /// One step of the background sweep over series `first..first + count` (see the module
    /// doc, "Sweep"): deletes the chunks whose newest point is past the series' retention, and
    /// merges runs of small chunks that no flush will merge any more. Returns the next series
    /// to sweep (`None` after the last) and what it did.
    pub fn sweep(&self, first: SeriesId, count: usize) -> Result<SweepStep, StoreError> {
        self.sweep_at(first, count, now_ms())
    }

    /// [`Self::sweep`] with downsampling tiers as of `now` (tests move time with it).
    fn sweep_at(&self, first: SeriesId, count: usize, now: i64) -> Result<SweepStep, StoreError> {
        let mut fs = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
        // A deletion whose rewrite failed goes first, as before a flush: rolled into buckets,
        // its points could no longer be removed exactly.
        self.complete_deletes(&mut fs, None)?;
        let cutoffs: Vec<i64> = {
            let st = self.lock_state();
            let end = st.index.len().min(first as usize + count.max(1));
            (first as usize..end)
                .map(|id| {
                    st.index
                        .key(id as SeriesId)
                        .map_or(i64::MIN, |k| self.series_cutoff(&k.metric))
                })
                .collect()
        };
        let total = self.lock_state().index.len();
        let next = first as usize + cutoffs.len();
        let mut step = SweepStep {
            next: (next < total).then_some(next as SeriesId),
            ..SweepStep::default()
        };
        if cutoffs.is_empty() {
            return Ok(step);
        }
        let target = self.config.chunk_target_points.max(1);
        let listed = self.store.list_chunks(first, cutoffs.len())?;
        let tiers = Tiers::at(&self.config.downsampling, now);
        let mut writes = Vec::new();
        let mut deletes = Vec::new();
        let mut rollups = Vec::new();
        let mut run_edits = Vec::new();
        let (mut pending, mut counted) = (0usize, (0usize, 0usize));
        let mut by_series = listed.chunk_by(|a, b| a.series == b.series).peekable();
        for (i, &cutoff) in cutoffs.iter().enumerate() {
            let id = first + i as SeriesId;
            // A step's batch is bounded by bytes too: the first sweep after rules are set on
            // a large database rolls up months of points, and the flush lock is held for the
            // step. The rest of the series wait for the next step.
            // (Counted as they are added: the lists only grow.)
            let (w, r): (&[ChunkWrite], &[RollupWrite]) =
                (&writes[counted.0..], &rollups[counted.1..]);
            pending += w.iter().map(|w| w.block.len()).sum::<usize>()
                + r.iter()
                    .map(|r| r.block.as_ref().map_or(0, Vec::len))
                    .sum::<usize>();
            counted = (writes.len(), rollups.len());
            if pending > MAX_SWEEP_STEP_BYTES {
                step.next = Some(id);
                break;
            }
            let series: &[ChunkInfo] = match by_series.peek() {
                Some(s) if s[0].series == id => by_series.next().unwrap_or_default(),
                _ => &[],
            };
            let mut live: Vec<&ChunkInfo> = Vec::with_capacity(series.len());
            for c in series {
                if c.max_ts < cutoff {
                    deletes.push((id, c.min_ts, c.seq));
                    step.expired += 1;
                } else {
                    live.push(c);
                }
            }
            if !tiers.is_empty() {
                let before = (writes.len(), deletes.len());
                step.rolled += self.roll_series(
                    id,
                    &live,
                    cutoff,
                    &tiers,
                    &mut run_edits,
                    &mut writes,
                    &mut deletes,
                    &mut rollups,
                )?;
                if (writes.len(), deletes.len()) != before {
                    // Its chunks changed in this step: merging waits for the next sweep.
                    continue;
                }
            }
            let flusher_run = fs.small.get(&id);
            let in_flusher_run = |c: &ChunkInfo| {
                flusher_run
                    .is_some_and(|r| r.iter().any(|s| (s.min_ts, s.seq) == (c.min_ts, c.seq)))
            };
            // Runs of small chunks consecutive in write order, outside the run the flusher
            // still merges: merged into one chunk (or full ones) at the run's newest seq, every
            // other chunk of the series stays older or newer than all of them, so which write
            // of a timestamp wins does not change. Chunks of one flush share a seq: a run takes
            // all of a seq or none of it, so the merged chunk's seq is no other chunk's.
            live.sort_by_key(|c| c.seq);
            let stranded = |c: &ChunkInfo| c.points < target && !in_flusher_run(c);
            let by_seq: Vec<&[&ChunkInfo]> = live.chunk_by(|a, b| a.seq == b.seq).collect();
            let all_stranded = |g: &[&ChunkInfo]| g.iter().all(|c| stranded(c));
            for groups in by_seq.chunk_by(|a, b| all_stranded(a) && all_stranded(b)) {
                let run: Vec<&ChunkInfo> = groups.iter().flat_map(|g| g.iter().copied()).collect();
                if run.len() < 2 || !all_stranded(groups[0]) {
                    continue;
                }
                let seq = run[run.len() - 1].seq;
                let mut sources = Vec::with_capacity(run.len());
                for c in &run {
                    match self.store.chunk(id, c.min_ts, c.seq)? {
                        Some(chunk) => sources.push(chunk.points),
                        None => continue,
                    }
                    deletes.push((id, c.min_ts, c.seq));
                }
                let points = query::merge_sources(sources, cutoff, i64::MAX);
                for part in points.chunks(target) {
                    writes.push(ChunkWrite {
                        series: id,
                        min_ts: part[0].0,
                        max_ts: part[part.len() - 1].0,
                        seq,
                        block: encode_chunk(part),
                    });
                }
                step.merged += run.len();
            }
        }
        if rollups.is_empty() {
            self.store.commit_rewrite(&writes, &deletes, &rollups)?;
        } else {
            // Queries check the epoch around reading the heads and taking their snapshot
            // (see `Self::consistent`): odd while points move from chunks into buckets.
            self.rollup_epoch.fetch_add(1, Ordering::AcqRel);
            let committed = self.store.commit_rewrite(&writes, &deletes, &rollups);
            self.rollup_epoch.fetch_add(1, Ordering::AcqRel);
            committed?;
        }
        apply_run_edits(&mut fs.small, &run_edits);
        step.written = writes.len();
        step.rollup_blocks = rollups.len();
        Ok(step)
    }

    /// The downsampling part of a sweep step for one series (see [`crate::rollup`]): rolls
    /// every raw point before tier 0's cutoff into a bucket of the tier its age calls for,
    /// moves buckets of a tier past the next tier's cutoff into it, and drops buckets wholly
    /// past retention (`retention` is the oldest timestamp the series keeps).
    ///
    /// The chunks holding points before the cutoff are decoded together, oldest write first
    /// (the last write of a timestamp wins, as in queries); those wholly before it are
    /// deleted, and one reaching past it is rewritten with only its later points, keeping its
    /// `seq` (as a deletion rewrites it). Chunk writes and deletes go to `writes` and
    /// `deletes`, rollup blocks to `out`: the caller commits them all in one batch, so a
    /// point is in a chunk or in a bucket, never both, then applies `run_edits` to the
    /// flusher's small-chunk runs. Returns the chunks rolled up.
    #[allow(clippy::too_many_arguments)]
    fn roll_series(
        &self,
        id: SeriesId,
        live: &[&ChunkInfo],
        retention: i64,
        tiers: &Tiers,
        run_edits: &mut Vec<RunEdit>,
        writes: &mut Vec<ChunkWrite>,
        deletes: &mut Vec<(SeriesId, i64, u64)>,
        out: &mut Vec<RollupWrite>,
    ) -> Result<usize, StoreError> {
        let cutoff = tiers.cutoff[0];
        let mut old: Vec<&ChunkInfo> = live.iter().copied().filter(|c| c.min_ts < cutoff).collect();
        old.sort_by_key(|c| c.seq);
        let mut sources = Vec::with_capacity(old.len());
        for c in &old {
            let Some(chunk) = self.store.chunk(id, c.min_ts, c.seq)? else {
                continue;
            };
            deletes.push((id, c.min_ts, c.seq));
            let kept: Vec<(i64, f64)> = chunk
                .points
                .iter()
                .copied()
                .filter(|p| p.0 >= cutoff)
                .collect();
            let block = (!kept.is_empty()).then(|| encode_chunk(&kept));
            run_edits.push(RunEdit::new(id, c.min_ts, c.seq, &kept, block.as_deref()));
            if let Some(block) = block {
                writes.push(ChunkWrite {
                    series: id,
                    min_ts: kept[0].0,
                    max_ts: kept[kept.len() - 1].0,
                    seq: c.seq,
                    block,
                });
            }
            sources.push(chunk.points);
        }

        // Blocks touched, by (tier, block start): their buckets, and whether stored before.
        let mut blocks: BTreeMap<(usize, i64), (BTreeMap<i64, Acc>, bool)> = BTreeMap::new();
        let load = |k: usize, bs: i64| -> Result<(BTreeMap<i64, Acc>, bool), StoreError> {
            match self.store.rollup_block(id, tiers.res[k], bs)? {
                Some(v) => Ok((decode_rollup(id, &v)?.into_iter().collect(), true)),
                None => Ok((BTreeMap::new(), false)),
            }
        };
        // Buckets past a coarser tier's cutoff, or past retention: every stored block that
        // may hold one is read (after a sweep, only the block at each boundary).
        for k in 0..tiers.res.len() {
            let upto = tiers
                .cutoff
                .get(k + 1)
                .copied()
                .unwrap_or(i64::MIN)
                .max(retention.saturating_sub(tiers.res[k]));
            if upto == i64::MIN {
                continue;
            }
            for (bs, v) in self
                .store
                .rollup_blocks(None, id, tiers.res[k], i64::MIN, upto)?
            {
                // A block a finer tier's moves already filled in this step is taken as it
                // now is, not as stored.
                let (mut buckets, touched) = match blocks.remove(&(k, bs)) {
                    Some((b, _)) => (b, true),
                    None => (decode_rollup(id, &v)?.into_iter().collect(), false),
                };
                let moved = take_buckets(&mut buckets, |start| {
                    start.saturating_add(tiers.res[k]) <= retention
                        || tiers.tier_of(start).is_some_and(|t| t > k)
                });
                if moved.is_empty() && !touched {
                    continue;
                }
                blocks.insert((k, bs), (buckets, true));
                for (start, acc) in moved {
                    if start.saturating_add(tiers.res[k]) <= retention {
                        continue;
                    }
                    let t = tiers.tier_of(start).unwrap_or(k);
                    let key = (t, tiers.block(t, start));
                    if let std::collections::btree_map::Entry::Vacant(v) = blocks.entry(key) {
                        v.insert(load(key.0, key.1)?);
                    }
                    if let Some((b, _)) = blocks.get_mut(&key) {
                        b.entry(tiers.bucket(t, start))
                            .and_modify(|a| a.merge(&acc))
                            .or_insert(acc);
                    }
                }
            }
        }
        // Raw points: the last write of a timestamp wins among them, as in queries.
        if !sources.is_empty() {
            for (t, v) in query::merge_sources(sources, retention, cutoff - 1) {
                if !v.is_finite() {
                    continue;
                }
                let k = tiers.tier_of(t).unwrap_or(0);
                let key = (k, tiers.block(k, t));
                if let std::collections::btree_map::Entry::Vacant(v) = blocks.entry(key) {
                    v.insert(load(key.0, key.1)?);
                }
                if let Some((buckets, _)) = blocks.get_mut(&key) {
                    buckets
                        .entry(tiers.bucket(k, t))
                        .and_modify(|a| a.add(t, v))
                        .or_insert_with(|| Acc::new(t, v));
                }
            }
        }
        for ((k, bs), (buckets, stored)) in blocks {
            if buckets.is_empty() && !stored {
                continue;
            }
            out.push(RollupWrite {
                series: id,
                resolution_ms: tiers.res[k],
                block_start: bs,
                block: (!buckets.is_empty()).then(|| rollup::encode_block(&buckets)),
            });
        }
        Ok(old.len())
    }

    /// The downsampled buckets of series `id` starting in `[from, to]`, every tier, through
    /// `plan`'s snapshot (see [`ChunkStore::rollup_blocks`]), decoded for `agg` only
    /// ([`rollup::decode_block_for`]; a bucket decoded for `first` or `last` alone is placed
    /// by that point's time).
    fn rollups_in(
        &self,
        plan: Option<&ChunkPlan>,
        id: SeriesId,
        from: i64,
        to: i64,
        agg: query::Aggregation,
    ) -> Result<Vec<(i64, Acc)>, StoreError> {
        let mut out = Vec::new();
        for r in &self.config.downsampling {
            let res = r.resolution_ms as i64;
            for (_, v) in self.store.rollup_blocks(plan, id, res, from, to)? {
                let buckets = rollup::decode_block_for(&v, Some(agg)).map_err(|e| {
                    StoreError::Corrupt(format!("rollup block of series {id}: {e}"))
                })?;
                out.extend(buckets.into_iter().filter(|(s, _)| (from..=to).contains(s)));
            }
        }
        Ok(out)
    }

    /// [`Self::rollups_in`] as points for answers that return points (raw queries, PromQL,
    /// exports): each bucket's last point, at its own timestamp (as a Prometheus-style
    /// downsampler keeps the last sample of each interval), in time order.
    fn rollup_points(
        &self,
        plan: Option<&ChunkPlan>,
        id: SeriesId,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        if self.config.downsampling.is_empty() {
            return Ok(Vec::new());
        }
        let mut points: Vec<(i64, f64)> = self
            .rollups_in(plan, id, from, to, query::Aggregation::Last)?
            .into_iter()
            .map(|(_, a)| a.last)
            .filter(|(t, _)| (from..=to).contains(t))
            .collect();
        points.sort_by_key(|p| p.0);
        Ok(points)
    }

    /// Runs a query over chunks, the frozen head and the head.
    ///
    /// Raw answers are bounded by `max_query_points` points (collected, and decoded at most
    /// twice that). Aggregated answers are bounded by their output: at most
    /// `max_query_points` buckets over all series or groups; their input is read one chunk
    /// at a time (a run of chunks whose time spans overlap, at most twice the limit of points,
    /// is merged first so the last write of a timestamp still wins), so a count over years of
    /// one series holds one chunk, not the series.
    pub fn query(&self, q: &Query) -> Result<Vec<SeriesResult>, QueryError> {
        if let Some(agg) = q.aggregation {
            return self.query_aggregated(q, agg);
        }
        let from = q.from_ms.max(self.series_cutoff(&q.metric));
        let (selected, plan) = self.select_planned(q, from)?;
        let limit = self.config.max_query_points;
        let mut collected = 0usize;
        // Chunks hold points outside the range too (and overwritten ones): decoding may take
        // up to twice the limit before the query is refused, never the whole range.
        let mut decode_budget = limit.saturating_mul(2);
        let mut keys = Vec::with_capacity(selected.len());
        let mut series_points = Vec::with_capacity(selected.len());
        for (i, (id, key, buffered)) in selected.into_iter().enumerate() {
            let Some(chunks) = self.store.read_planned(&plan, i, &mut decode_budget)? else {
                return Err(QueryError::TooManyPoints { limit });
            };
            // Downsampled parts first: oldest, so a raw point of the same timestamp wins.
            let mut sources = vec![self.rollup_points(Some(&plan), id, from, q.to_ms)?];
            sources.extend(chunks.into_iter().map(|c| c.points));
            sources.extend(buffered);
            let mut points = query::merge_sources(sources, from, q.to_ms);
            // JSON answers carry finite values only (remote write may store NaN and ±Inf).
            points.retain(|(_, v)| v.is_finite());
            collected += points.len();
            if collected > limit {
                return Err(QueryError::TooManyPoints { limit });
            }
            if !points.is_empty() {
                keys.push(key);
                series_points.push(points);
            }
        }
        Ok(raw_results(keys, series_points))
    }

    /// [`Self::query`] with an aggregation: series by series, chunk by chunk, into one set
    /// of buckets per output series (each selected series, or each group).
    fn query_aggregated(
        &self,
        q: &Query,
        agg: query::Aggregation,
    ) -> Result<Vec<SeriesResult>, QueryError> {
        let from = q.from_ms.max(self.series_cutoff(&q.metric));
        let limit = self.config.max_query_points;
        if from > q.to_ms {
            // The range lies wholly before the retention cutoff.
            return Ok(Vec::new());
        }
        let (selected, plan) = self.select_planned(q, from)?;
        // Output series: one per selected series, or one per group; `member[i]` is series
        // i's output.
        let (outputs, member): (Vec<OutputSeries>, Vec<usize>) = if q.group_by.is_empty() {
            let outputs = selected
                .iter()
                .map(|(_, k, _)| (k.metric.clone(), k.entity.clone(), k.tags.clone()))
                .collect();
            (outputs, (0..selected.len()).collect())
        } else {
            let mut member = vec![0; selected.len()];
            let groups = query::group(selected.iter().map(|(_, k, _)| k), &q.group_by);
            let outputs = groups
                .into_iter()
                .enumerate()
                .map(|(g, ((entity, tags), members))| {
                    for i in members {
                        member[i] = g;
                    }
                    (q.metric.clone(), entity, tags)
                })
                .collect();
            (outputs, member)
        };
        let mut buckets: Vec<query::Buckets> = (0..outputs.len())
            .map(|_| query::Buckets::new(q.from_ms, q.step_ms))
            .collect();
        let mut total = 0usize;
        for (i, (id, _, heads)) in selected.into_iter().enumerate() {
            let out = &mut buckets[member[i]];
            let before = out.len();
            self.stream_series(&plan, i, heads, from, q.to_ms, limit, |points| {
                out.add(points.iter().copied().filter(|(_, v)| v.is_finite()));
            })?;
            // Downsampled parts of the range: whole summaries (so `avg` is sum / count).
            if !self.config.downsampling.is_empty() {
                out.add_summaries(self.rollups_in(Some(&plan), id, from, q.to_ms, agg)?);
            }
            total += out.len() - before;
            if total > limit {
                return Err(QueryError::TooManyPoints { limit });
            }
        }
        Ok(outputs
            .into_iter()
            .zip(buckets)
            .filter(|(_, b)| !b.is_empty())
            .map(|((metric, entity, tags), b)| SeriesResult {
                metric,
                entity,
                tags,
                points: b.finish(agg),
            })
            .collect())
    }

    /// Hands the points of series `i` of `plan` in `[from, to]` to `f` in time order, a
    /// chunk at a time, with `heads` (its buffered points, oldest head first): chunks and
    /// heads whose time spans overlap are merged together first (the last write of a
    /// timestamp wins), at most `2 * limit` decoded points per merged run.
    #[allow(clippy::too_many_arguments)]
    fn stream_series(
        &self,
        plan: &ChunkPlan,
        i: usize,
        heads: Vec<Vec<(i64, f64)>>,
        from: i64,
        to: i64,
        limit: usize,
        mut f: impl FnMut(&[(i64, f64)]),
    ) -> Result<(), QueryError> {
        // Sources in write order: chunks by seq, then the heads; each with its time span.
        enum Source {
            Chunk(usize),
            Head(Vec<(i64, f64)>),
        }
        let mut sources: Vec<(i64, i64, usize, Source)> = plan
            .spans(i)
            .enumerate()
            .map(|(j, (lo, hi))| (lo, hi, j, Source::Chunk(j)))
            .collect();
        let chunks = sources.len();
        for (h, points) in heads.into_iter().enumerate() {
            let lo = points.iter().map(|p| p.0).min();
            let hi = points.iter().map(|p| p.0).max();
            if let (Some(lo), Some(hi)) = (lo, hi) {
                sources.push((lo, hi, chunks + h, Source::Head(points)));
            }
        }
        sources.sort_by_key(|s| s.0);
        let budget = limit.saturating_mul(2);
        let mut run: Vec<(usize, Source)> = Vec::new();
        let mut run_end = i64::MIN;
        let mut flush = |run: &mut Vec<(usize, Source)>| -> Result<(), QueryError> {
            run.sort_by_key(|(order, _)| *order);
            let mut decoded = 0usize;
            let mut points: Vec<Vec<(i64, f64)>> = Vec::with_capacity(run.len());
            for (_, source) in run.drain(..) {
                let p = match source {
                    Source::Chunk(j) => self.store.read_one(plan, i, j)?,
                    Source::Head(p) => p,
                };
                decoded += p.len();
                if decoded > budget {
                    return Err(QueryError::TooManyPoints { limit });
                }
                points.push(p);
            }
            if points.len() == 1 && points[0].windows(2).all(|w| w[0].0 < w[1].0) {
                // One source in time order (a chunk, or a head written in order).
                let p = &points[0];
                let lo = p.partition_point(|x| x.0 < from);
                // `from` may lie after `to` (a range wholly before the retention cutoff).
                let hi = p.partition_point(|x| x.0 <= to).max(lo);
                f(&p[lo..hi]);
            } else {
                f(&query::merge_sources(points, from, to));
            }
            Ok(())
        };
        for (lo, hi, order, source) in sources {
            if !run.is_empty() && lo > run_end {
                flush(&mut run)?;
            }
            run_end = if run.is_empty() { hi } else { run_end.max(hi) };
            run.push((order, source));
        }
        if !run.is_empty() {
            flush(&mut run)?;
        }
        Ok(())
    }

    /// The series the index narrows to that `keep` accepts, in id order (the order series were
    /// first written). Reads no points.
    pub fn find_series(
        &self,
        narrows: &[Narrow],
        mut keep: impl FnMut(&SeriesKey) -> bool,
    ) -> Vec<(SeriesId, SeriesKey)> {
        let st = self.lock_state();
        let mut out = Vec::new();
        let mut visit = |id: SeriesId| {
            if let Some(key) = st.index.key(id)
                && keep(key)
            {
                out.push((id, key.clone()));
            }
        };
        match st.index.narrowed(narrows) {
            Some(ids) => ids.iter().for_each(&mut visit),
            None => (0..st.index.len() as SeriesId).for_each(&mut visit),
        }
        out
    }

    /// The points of each series in `[from, to]` (chunks, the frozen head and the head; the
    /// last write of a timestamp wins), in the order of `ids`. Decodes at most `budget` points
    /// (decremented by what is decoded): [`QueryError::TooManyPoints`] past it.
    pub fn read_series(
        &self,
        ids: &[SeriesId],
        from: i64,
        to: i64,
        budget: &mut usize,
    ) -> Result<Vec<Vec<(i64, f64)>>, QueryError> {
        let mut out = Vec::with_capacity(ids.len());
        self.read_series_each(ids, from, to, budget, |_, points, _| {
            out.push(points);
            Ok::<(), QueryError>(())
        })?;
        Ok(out)
    }

    /// [`Self::read_series`], handing each series' points to `f(index in ids, points, budget)`
    /// as soon as they are read, so a caller that reduces them holds one series at a time; `f`
    /// may charge what it holds to the same budget. An error from `f` ends the read.
    pub fn read_series_each<E: From<QueryError>>(
        &self,
        ids: &[SeriesId],
        from: i64,
        to: i64,
        budget: &mut usize,
        mut f: impl FnMut(usize, Vec<(i64, f64)>, &mut usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let limit = *budget;
        let (buffered, froms, plan) = self.consistent(|| {
            let mut buffered: Vec<Vec<Vec<(i64, f64)>>> = Vec::with_capacity(ids.len());
            let mut copied = 0usize;
            let froms = {
                let st = self.lock_state();
                let froms = self.series_froms(&st, ids, from);
                for (i, id) in ids.iter().enumerate() {
                    let from = froms[i];
                    let mut sources = Vec::new();
                    for head in st.frozen.iter().map(|f| &**f).chain([&st.head]) {
                        if let Some(points) = head.series.get(id) {
                            let inside: Vec<(i64, f64)> = points
                                .iter()
                                .copied()
                                .filter(|(t, _)| *t >= from && *t <= to)
                                .collect();
                            if !inside.is_empty() {
                                copied += inside.len();
                                if copied > limit {
                                    return Err(QueryError::TooManyPoints { limit });
                                }
                                sources.push(inside);
                            }
                        }
                    }
                    buffered.push(sources);
                }
                froms
            };
            let earliest = froms.iter().copied().min().unwrap_or(from);
            let plan = self.store.plan(ids, earliest, to)?;
            *budget = limit - copied;
            Ok((buffered, froms, plan))
        })?;
        for (i, heads) in buffered.into_iter().enumerate() {
            let from = froms[i];
            let Some(chunks) = self
                .store
                .read_planned(&plan, i, budget)
                .map_err(QueryError::from)?
            else {
                return Err(QueryError::TooManyPoints { limit }.into());
            };
            if chunks.is_empty() && heads.len() <= 1 && self.config.downsampling.is_empty() {
                // Only buffered points: already in time order within one head.
                let points = heads.into_iter().next().unwrap_or_default();
                if points.windows(2).all(|w| w[0].0 < w[1].0) {
                    f(i, points, budget)?;
                } else {
                    f(i, query::merge_sources(vec![points], from, to), budget)?;
                }
                continue;
            }
            let rolled = self
                .rollup_points(Some(&plan), ids[i], from, to)
                .map_err(QueryError::from)?;
            *budget = budget
                .checked_sub(rolled.len())
                .ok_or(QueryError::TooManyPoints { limit })?;
            let mut sources = vec![rolled];
            sources.extend(chunks.into_iter().map(|c| c.points));
            sources.extend(heads);
            f(i, query::merge_sources(sources, from, to), budget)?;
        }
        Ok(())
    }

    /// Which of `ids` hold data in `[from, to]`: a buffered point inside it, a chunk whose
    /// time span overlaps it (by the chunks' time spans in the store's chunk directory), or a
    /// rollup block that does (by its key). Nothing is decoded, so a look-up over a long range
    /// costs no points.
    pub fn series_with_data(
        &self,
        ids: &[SeriesId],
        from: i64,
        to: i64,
    ) -> Result<Vec<bool>, QueryError> {
        let (mut found, froms): (Vec<bool>, Vec<i64>) = {
            let st = self.lock_state();
            let froms = self.series_froms(&st, ids, from);
            let found = ids
                .iter()
                .zip(&froms)
                .map(|(id, &from)| {
                    st.frozen.iter().map(|f| &**f).chain([&st.head]).any(|h| {
                        h.series
                            .get(id)
                            .is_some_and(|p| p.iter().any(|(t, _)| *t >= from && *t <= to))
                    })
                })
                .collect();
            (found, froms)
        };
        let earliest = froms.iter().copied().min().unwrap_or(from);
        let plan = self.store.plan(ids, earliest, to)?;
        for (i, f) in found.iter_mut().enumerate() {
            *f = *f
                || plan.spans(i).any(|(_, hi)| hi >= froms[i])
                || self
                    .config
                    .downsampling
                    .iter()
                    .try_fold(false, |found, r| {
                        Ok::<_, StoreError>(
                            found
                                || !self
                                    .store
                                    .rollup_blocks(
                                        Some(&plan),
                                        ids[i],
                                        r.resolution_ms as i64,
                                        froms[i],
                                        to,
                                    )?
                                    .is_empty(),
                        )
                    })?;
        }
        Ok(found)
    }

    /// Streams every point of the selection, series by series; stops when `emit` returns false.
    pub fn export(
        &self,
        q: &Query,
        mut emit: impl FnMut(&SeriesKey, i64, f64) -> bool,
    ) -> Result<(), QueryError> {
        let from = q.from_ms.max(self.series_cutoff(&q.metric));
        // One snapshot for the whole export: a sweep step during it cannot move points between
        // what was read and what is still to read.
        let (selected, plan) = self.select_planned(q, from)?;
        let mut unbounded = usize::MAX;
        for (i, (id, key, buffered)) in selected.into_iter().enumerate() {
            let mut sources = vec![self.rollup_points(Some(&plan), id, from, q.to_ms)?];
            let chunks = self
                .store
                .read_planned(&plan, i, &mut unbounded)?
                .unwrap_or_default();
            sources.extend(chunks.into_iter().map(|c| c.points));
            sources.extend(buffered);
            for (t, v) in query::merge_sources(sources, from, q.to_ms) {
                if !v.is_finite() {
                    continue;
                }
                if !emit(&key, t, v) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Runs `read`, which copies buffered points and then takes a snapshot of the store,
    /// again until no sweep step moved points from chunks into downsampled buckets while it
    /// ran. Such a step could otherwise leave a point both in the copied head (written late,
    /// then flushed and rolled up in between) and in a bucket of the snapshot, where no
    /// timestamp tells the two apart. Sweep steps are rare and short; a retry redoes only the
    /// copy and the snapshot.
    fn consistent<T, E>(&self, mut read: impl FnMut() -> Result<T, E>) -> Result<T, E> {
        loop {
            let before = self.rollup_epoch.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let r = read()?;
            if self.rollup_epoch.load(Ordering::Acquire) == before {
                return Ok(r);
            }
        }
    }

    /// [`Self::select`] and a plan of the selected series' chunks in `[from, q.to_ms]`, taken
    /// consistently ([`Self::consistent`]).
    fn select_planned(
        &self,
        q: &Query,
        from: i64,
    ) -> Result<(Vec<Selected>, ChunkPlan), StoreError> {
        self.consistent(|| {
            let selected = self.select(q);
            let ids: Vec<SeriesId> = selected.iter().map(|(id, _, _)| *id).collect();
            let plan = self.store.plan(&ids, from, q.to_ms)?;
            Ok((selected, plan))
        })
    }

    /// The selected series with copies of their buffered points (frozen first, then head).
    fn select(&self, q: &Query) -> Vec<Selected> {
        let st = self.lock_state();
        let ids = st.index.select(&q.metric, q.entity.as_deref(), &q.tags);
        let mut out = Vec::new();
        for id in ids.iter() {
            let Some(key) = st.index.key(id) else {
                continue;
            };
            if !q.matchers.iter().all(|m| m.matches(key)) {
                continue;
            }
            let mut buffered = Vec::new();
            for head in st.frozen.iter().map(|f| &**f).chain([&st.head]) {
                if let Some(points) = head.series.get(&id) {
                    buffered.push(
                        points
                            .iter()
                            .copied()
                            .filter(|(t, _)| *t >= q.from_ms && *t <= q.to_ms)
                            .collect(),
                    );
                }
            }
            out.push((id, key.clone(), buffered));
        }
        out.sort_by(|a, b| (&a.1.entity, &a.1.tags).cmp(&(&b.1.entity, &b.1.tags)));
        out
    }
}

/// A chunk's block for `points` (in time order): Gorilla, or decimal when the values allow.
pub(crate) fn encode_chunk(points: &[(i64, f64)]) -> Vec<u8> {
    let mut encoder = sluice_gorilla::ChunkEncoder::for_points(points);
    for &(t, v) in points {
        encoder.push(t, v);
    }
    encoder.snapshot()
}

/// A chunk rewritten with fewer points, or removed, as the flusher's small-chunk run must see
/// it: applied ([`apply_run_edits`]) only once the batch holding the change is committed, so
/// a failed batch leaves the run as the store still is.
struct RunEdit {
    series: SeriesId,
    min_ts: i64,
    seq: u64,
    /// The rewritten chunk's first timestamp, points and stored bytes; `None`: removed.
    kept: Option<(i64, usize, usize)>,
}

impl RunEdit {
    fn new(
        series: SeriesId,
        min_ts: i64,
        seq: u64,
        kept: &[(i64, f64)],
        block: Option<&[u8]>,
    ) -> RunEdit {
        let kept = match (block, kept.first()) {
            (Some(block), Some(first)) => {
                Some((first.0, kept.len(), block.len() + CHUNK_OVERHEAD_BYTES))
            }
            _ => None,
        };
        RunEdit {
            series,
            min_ts,
            seq,
            kept,
        }
    }
}

/// Applies committed [`RunEdit`]s: a run's chunk rewritten stays in the run, one removed
/// leaves it.
fn apply_run_edits(small: &mut HashMap<SeriesId, Vec<Small>>, edits: &[RunEdit]) {
    for e in edits {
        let Some(run) = small.get_mut(&e.series) else {
            continue;
        };
        let Some(at) = run
            .iter()
            .position(|s| (s.min_ts, s.seq) == (e.min_ts, e.seq))
        else {
            continue;
        };
        match e.kept {
            Some((first, count, bytes)) => {
                run[at].min_ts = first;
                run[at].count = count;
                run[at].stored_bytes = bytes;
            }
            None => {
                run.remove(at);
            }
        }
    }
    small.retain(|_, run| !run.is_empty());
}

/// Removes and returns the buckets whose start `pick` accepts.
fn take_buckets(
    buckets: &mut BTreeMap<i64, Acc>,
    mut pick: impl FnMut(i64) -> bool,
) -> Vec<(i64, Acc)> {
    let starts: Vec<i64> = buckets.keys().copied().filter(|&s| pick(s)).collect();
    starts
        .into_iter()
        .filter_map(|s| buckets.remove(&s).map(|a| (s, a)))
        .collect()
}

fn decode_rollup(id: SeriesId, v: &[u8]) -> Result<Vec<(i64, Acc)>, StoreError> {
    rollup::decode_block(v)
        .map_err(|e| StoreError::Corrupt(format!("rollup block of series {id}: {e}")))
}

/// A selected series: its id, key, and copies of its buffered points (frozen first, then head).
type Selected = (SeriesId, SeriesKey, Vec<Vec<(i64, f64)>>);

/// An answer's series: metric, entity, tags.
type OutputSeries = (String, String, Vec<(String, String)>);

/// Bytes a chunk costs besides its Gorilla block: its 20-byte key and 8-byte header.
const CHUNK_OVERHEAD_BYTES: usize = 28;

/// A raw answer: each series with its points (aggregations are answered by
/// [`TsEngine::query_aggregated`]).
fn raw_results(keys: Vec<SeriesKey>, series_points: Vec<Vec<(i64, f64)>>) -> Vec<SeriesResult> {
    keys.into_iter()
        .zip(series_points)
        .map(|(k, points)| SeriesResult {
            metric: k.metric,
            entity: k.entity,
            tags: k.tags,
            points,
        })
        .collect()
}

fn clone_head(h: &Head) -> Head {
    Head {
        series: h.series.clone(),
        points: h.points,
        bytes: h.bytes,
        first_insert: h.first_insert,
        last_lsn: h.last_lsn,
    }
}

/// Appends `newer` (written after `base`) into `base`.
fn merge_head(base: &mut Head, newer: Head) {
    for (id, points) in newer.series {
        base.series.entry(id).or_default().extend(points);
    }
    base.points += newer.points;
    base.bytes += newer.bytes;
    if newer.points > 0 {
        base.last_lsn = newer.last_lsn;
    }
}

pub use sluice_wal::now_ms;

/// The cutoff of a retention of `ms` at `now` (0: keep everything).
fn cutoff_at(now: i64, ms: u64) -> i64 {
    if ms == 0 {
        i64::MIN
    } else {
        now.saturating_sub(ms.min(i64::MAX as u64) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Point;

    fn engine(dir: &Path, target: usize) -> TsEngine {
        let config = TsConfig {
            chunk_target_points: target,
            ..TsConfig::default()
        };
        TsEngine::open(dir, config, TsMetrics::default()).unwrap()
    }

    /// An engine with chunks of `target` points and a query limit of `limit` points.
    fn limited_engine(dir: &Path, target: usize, limit: usize) -> TsEngine {
        let config = TsConfig {
            chunk_target_points: target,
            max_query_points: limit,
            ..TsConfig::default()
        };
        TsEngine::open(dir, config, TsMetrics::default()).unwrap()
    }

    fn pt(ts: i64, v: f64) -> Point {
        Point::new("m".into(), "e".into(), ts, v, [], &PointLimits::default()).unwrap()
    }

    fn write(e: &TsEngine, lsn: &mut u64, points: Vec<Point>) {
        *lsn += 1;
        let l = Lsn(*lsn);
        e.write(Batch::from_points(points), |_payload| Ok::<_, ()>(((), l)))
            .unwrap();
    }

    fn all(e: &TsEngine) -> Vec<(i64, f64)> {
        let q = Query {
            metric: "m".into(),
            entity: None,
            tags: vec![],
            matchers: vec![],
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            aggregation: None,
            step_ms: None,
            group_by: vec![],
        };
        e.query(&q)
            .unwrap()
            .pop()
            .map(|s| s.points)
            .unwrap_or_default()
    }

    fn agg_query(
        agg: Option<query::Aggregation>,
        from_ms: i64,
        to_ms: i64,
        step_ms: Option<i64>,
        group_by: &[&str],
    ) -> Query {
        Query {
            metric: "m".into(),
            entity: None,
            tags: vec![],
            matchers: vec![],
            from_ms,
            to_ms,
            aggregation: agg,
            step_ms,
            group_by: group_by.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// What an aggregation answers, worked out from the raw answer: every point of every
    /// series collected first (as queries did before aggregations streamed).
    fn aggregated_from_raw(e: &TsEngine, q: &Query) -> Vec<SeriesResult> {
        let raw = e
            .query(&Query {
                aggregation: None,
                step_ms: None,
                group_by: vec![],
                ..q.clone()
            })
            .unwrap();
        let agg = q.aggregation.unwrap();
        if q.group_by.is_empty() {
            return raw
                .into_iter()
                .map(|s| SeriesResult {
                    points: query::aggregate([s.points.as_slice()], agg, q.from_ms, q.step_ms),
                    ..s
                })
                .collect();
        }
        let keys: Vec<SeriesKey> = raw
            .iter()
            .map(|s| {
                SeriesKey::new(
                    s.metric.clone(),
                    s.entity.clone(),
                    s.tags.clone(),
                    &PointLimits::default(),
                )
                .unwrap()
            })
            .collect();
        query::group(keys.iter(), &q.group_by)
            .into_iter()
            .map(|((entity, tags), members)| SeriesResult {
                metric: q.metric.clone(),
                entity,
                tags,
                points: query::aggregate(
                    members.iter().map(|&i| raw[i].points.as_slice()),
                    agg,
                    q.from_ms,
                    q.step_ms,
                ),
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Streamed aggregations (chunk by chunk, overlapping chunks and heads merged) answer
        /// exactly what aggregating the collected points answers: out-of-order and repeated
        /// timestamps, overwrites, non-finite values, flushes between writes, steps, groups.
        #[test]
        fn streamed_aggregations_answer_as_collected_points_do(
            writes in proptest::collection::vec(
                (proptest::collection::vec((0u8..4, 0i64..400, -50i32..50), 1..40), proptest::prelude::any::<bool>()),
                1..12,
            ),
            from in -10i64..200,
            len in 0i64..500,
            step in proptest::option::of(1i64..90),
            grouped in proptest::prelude::any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let e = engine(dir.path(), 16);
            let mut lsn = 0;
            for (points, flush) in writes {
                // Built sample by sample: remote write stores NaN too (which queries skip).
                let mut batch = Batch::default();
                for s in 0..4u8 {
                    let dc = if s % 2 == 0 { "eu" } else { "us" };
                    batch.add_series(
                        SeriesKey::new("m".into(), format!("e{s}"), vec![("dc".into(), dc.into())], &PointLimits::default()).unwrap(),
                    );
                }
                for (s, t, v) in points {
                    let v = if v == 49 { f64::NAN } else { f64::from(v) / 4.0 };
                    batch.push_sample(u32::from(s), t, v);
                }
                lsn += 1;
                let l = Lsn(lsn);
                e.write(batch, |_payload| Ok::<_, ()>(((), l))).unwrap();
                if flush {
                    e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
                }
            }
            let group: &[&str] = if grouped { &["dc"] } else { &[] };
            for agg in [
                query::Aggregation::Count,
                query::Aggregation::Sum,
                query::Aggregation::Avg,
                query::Aggregation::Min,
                query::Aggregation::Max,
                query::Aggregation::First,
                query::Aggregation::Last,
            ] {
                let q = agg_query(Some(agg), from, from + len, step, group);
                let streamed = e.query(&q).unwrap();
                let collected = aggregated_from_raw(&e, &q);
                proptest::prop_assert_eq!(
                    format!("{streamed:?}"),
                    format!("{collected:?}"),
                    "{:?}",
                    agg
                );
            }
        }
    }

    /// An aggregation is bounded by its output, not by the points it reads: a count over
    /// 2,000 times the point limit answers, holding one chunk at a time; a raw read of the same
    /// range, or an aggregation with more buckets than the limit, is refused.
    #[test]
    fn aggregations_are_bounded_by_their_output_not_their_input() {
        let dir = tempfile::tempdir().unwrap();
        let e = limited_engine(dir.path(), 1000, 1000);
        let mut lsn = 0;
        let n = 2_000_000i64;
        for block in 0..(n / 100_000) {
            let points = (block * 100_000..(block + 1) * 100_000)
                .map(|t| pt(t, (t % 10) as f64))
                .collect();
            write(&e, &mut lsn, points);
            e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        }
        let one = |agg| {
            e.query(&agg_query(Some(agg), 0, n, None, &[])).unwrap()[0]
                .points
                .clone()
        };
        assert_eq!(one(query::Aggregation::Count), [(0, n as f64)]);
        assert_eq!(one(query::Aggregation::Max), [(0, 9.0)]);
        assert_eq!(one(query::Aggregation::Avg), [(0, 4.5)]);
        assert_eq!(one(query::Aggregation::Last), [(0, 9.0)]);
        // 1,000 buckets: the limit, answered; 1,001 are refused.
        let steps = e
            .query(&agg_query(
                Some(query::Aggregation::Count),
                0,
                n - 1,
                Some(n / 1000),
                &[],
            ))
            .unwrap();
        assert_eq!(steps[0].points.len(), 1000);
        assert!(steps[0].points.iter().all(|&(_, c)| c == (n / 1000) as f64));
        assert!(matches!(
            e.query(&agg_query(
                Some(query::Aggregation::Count),
                0,
                n - 1,
                Some(n / 1000 - 1),
                &[]
            )),
            Err(QueryError::TooManyPoints { limit: 1000 })
        ));
        assert!(matches!(
            e.query(&agg_query(None, 0, n, None, &[])),
            Err(QueryError::TooManyPoints { limit: 1000 })
        ));
    }

    /// A range wholly before the retention cutoff, with a chunk straddling both (its points
    /// before the range, inside the retained part and after it): nothing, for raw and
    /// aggregated queries alike, and no panic.
    #[test]
    fn a_range_before_the_retention_cutoff_answers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = TsConfig {
            retention_ms: 8_000,
            ..TsConfig::default()
        };
        let e = TsEngine::open(dir.path(), config, TsMetrics::default()).unwrap();
        let now = now_ms();
        let mut lsn = 0;
        write(
            &e,
            &mut lsn,
            vec![pt(now - 10_000, 1.0), pt(now - 8_500, 2.0), pt(now, 3.0)],
        );
        e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        for agg in [None, Some(query::Aggregation::Count)] {
            let q = agg_query(agg, now - 20_000, now - 9_000, None, &[]);
            assert_eq!(e.query(&q).unwrap(), Vec::new(), "{agg:?}");
        }
    }

    #[test]
    fn a_query_stops_decoding_chunks_past_twice_its_point_limit() {
        let dir = tempfile::tempdir().unwrap();
        let e = limited_engine(dir.path(), 10, 25);
        let mut lsn = 0;
        write(&e, &mut lsn, (0..100).map(|t| pt(t, 1.0)).collect());
        e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        let q = |from_ms, to_ms| Query {
            metric: "m".into(),
            entity: None,
            tags: vec![],
            matchers: vec![],
            from_ms,
            to_ms,
            aggregation: None,
            step_ms: None,
            group_by: vec![],
        };
        // 20 points in range: answered, although 30 were decoded (3 chunks).
        assert_eq!(e.query(&q(5, 24)).unwrap()[0].points.len(), 20);
        // 100 points: refused once 50 are decoded, not after all 100.
        let mut budget = 50;
        assert!(
            e.store
                .chunks_overlapping_within(0, 0, 99, &mut budget)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            e.query(&q(0, 99)),
            Err(QueryError::TooManyPoints { limit: 25 })
        ));
    }

    /// The chunk directory and the snapshot a read takes agree while flushes merge chunks
    /// (insert the merged one, delete its inputs), also while a read loads the directory: a
    /// reader never misses a point it saw before, never sees a wrong one, and never finds a
    /// listed chunk missing.
    #[test]
    fn reads_during_merging_flushes_see_every_point() {
        let dir = tempfile::tempdir().unwrap();
        let e = std::sync::Arc::new(engine(dir.path(), 64));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (e, done) = (e.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    // Every other read loads the directory again, racing the commits.
                    if reads % 2 == 0 {
                        e.store.forget_directory();
                    }
                    let got = all(&e);
                    assert!(got.len() >= seen, "{} points after {seen}", got.len());
                    for (i, &(t, v)) in got.iter().enumerate() {
                        assert_eq!((t, v), (i as i64 * 10, i as f64));
                    }
                    seen = got.len();
                    reads += 1;
                }
                reads
            })
        };
        let mut lsn = 0;
        for f in 0..300i64 {
            write(&e, &mut lsn, vec![pt(f * 10, f as f64)]);
            e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(all(&e).len(), 300);
    }

    #[test]
    fn small_chunks_merge_size_tiered_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut lsn = 0;
        let mut want = Vec::new();
        let target = 8;
        {
            let e = engine(dir.path(), target);
            // Twenty flushes of two points each: small chunks merge, full ones seal.
            for f in 0..20 {
                let pts = vec![pt(f * 10, f as f64), pt(f * 10 + 5, f as f64 + 0.5)];
                want.extend(pts.iter().map(|p| (p.timestamp_ms, p.value)));
                write(&e, &mut lsn, pts);
                let out = e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
                assert_eq!(out.flushed_lsn, Some(Lsn(lsn)));
                assert_eq!(all(&e), want);
                let chunks = e.store.chunks_overlapping(0, i64::MIN, i64::MAX).unwrap();
                assert!(chunks.iter().all(|c| c.points.len() <= target));
                // Binary-counter merging keeps the number of chunks logarithmic.
                assert!(
                    chunks.len() <= 2 + (f as usize + 1) * 2 / target + 3,
                    "{} chunks after {} flushes",
                    chunks.len(),
                    f + 1
                );
                assert_eq!(
                    chunks.iter().map(|c| c.points.len()).sum::<usize>(),
                    want.len()
                );
            }
            // Out of order and an overwrite: last write wins across merges.
            write(&e, &mut lsn, vec![pt(5, 99.0), pt(7, 7.0)]);
            e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
            want[1] = (5, 99.0);
            want.insert(2, (7, 7.0));
            assert_eq!(all(&e), want);
            for f in 20..30 {
                write(&e, &mut lsn, vec![pt(f * 10, f as f64)]);
                e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
                want.push((f * 10, f as f64));
            }
            assert_eq!(all(&e), want);
            assert!(e.stats().avg_compression_ratio > 0.0);
        }
        let e = engine(dir.path(), target);
        assert_eq!(e.flushed_lsn(), Lsn(lsn));
        assert_eq!(all(&e), want);
        // Replay of an already flushed record is skipped; a newer one is applied.
        e.replay(Batch::from_points(vec![pt(1000, 1.0)]), Lsn(lsn));
        e.replay(Batch::from_points(vec![pt(2000, 2.0)]), Lsn(lsn + 1));
        let got = all(&e);
        assert_eq!(got.last(), Some(&(2000, 2.0)));
        assert!(!got.contains(&(1000, 1.0)));
    }

    /// Every stored point as `(entity, ts) -> value`.
    fn by_entity(e: &TsEngine) -> std::collections::BTreeMap<(String, i64), f64> {
        let q = agg_query(None, i64::MIN, i64::MAX, None, &[]);
        let mut out = std::collections::BTreeMap::new();
        for s in e.query(&q).unwrap() {
            for (t, v) in s.points {
                out.insert((s.entity.clone(), t), v);
            }
        }
        out
    }

    #[test]
    fn deletes_match_a_model_across_flushes_merges_and_reopen() {
        enum Rec {
            Points(Vec<Point>),
            Delete(Query),
        }
        let dir = tempfile::tempdir().unwrap();
        let target = 6;
        let mut e = engine(dir.path(), target);
        let mut log: Vec<(Lsn, Rec)> = Vec::new();
        let mut model = std::collections::BTreeMap::new();
        let mut lsn = 0u64;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let (mut deleted, mut reopened) = (0u64, 0);
        for step in 0..600 {
            match next(12) {
                0..=5 => {
                    let mut points = Vec::new();
                    for _ in 0..1 + next(4) {
                        let entity = format!("e{}", next(2));
                        let t = next(300) as i64;
                        points.push(
                            Point::new(
                                "m".into(),
                                entity.clone(),
                                t,
                                step as f64,
                                [],
                                &PointLimits::default(),
                            )
                            .unwrap(),
                        );
                        model.insert((entity, t), step as f64);
                    }
                    lsn += 1;
                    let l = Lsn(lsn);
                    e.write(Batch::from_points(points.clone()), |_| Ok::<_, ()>(((), l)))
                        .unwrap();
                    log.push((l, Rec::Points(points)));
                }
                6 | 7 => {
                    e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
                }
                8 | 9 => {
                    let from = next(300) as i64;
                    let to = from + next(80) as i64;
                    let entity = match next(3) {
                        0 => None,
                        n => Some(format!("e{}", n - 1)),
                    };
                    let mut q = agg_query(None, from, to, None, &[]);
                    q.entity = entity.clone();
                    let before = model.len();
                    model.retain(|(en, t), _| {
                        !(entity.as_ref().is_none_or(|x| x == en) && (from..=to).contains(t))
                    });
                    lsn += 1;
                    let l = Lsn(lsn);
                    let (_, out) = e
                        .delete(
                            &q,
                            |payload| {
                                assert_eq!(
                                    crate::record::decode_delete(&payload).unwrap().to_ms,
                                    to
                                );
                                Ok::<_, ()>(((), l))
                            },
                            |_| Ok(()),
                        )
                        .unwrap();
                    // Stored points may include overwritten versions of a timestamp.
                    assert!(out.points >= (before - model.len()) as u64);
                    deleted += out.points;
                    log.push((l, Rec::Delete(q)));
                }
                10 => {
                    // A restart: records the chunks do not hold are replayed, deletions too.
                    drop(e);
                    e = engine(dir.path(), target);
                    for (l, rec) in &log {
                        match rec {
                            Rec::Points(p) => e.replay(Batch::from_points(p.clone()), *l),
                            Rec::Delete(q) => {
                                e.replay_delete(q, *l).unwrap();
                            }
                        }
                    }
                    reopened += 1;
                }
                _ => {
                    // The newest record replayed again (a crash before the checkpoint):
                    // a deletion over chunks it already rewrote changes nothing.
                    if let Some((l, Rec::Delete(q))) = log.last() {
                        let out = e.replay_delete(q, *l).unwrap();
                        assert_eq!(out.points, 0, "{out:?}");
                    }
                }
            }
            assert_eq!(by_entity(&e), model, "after step {step}");
        }
        assert!(
            deleted > 100 && reopened > 10,
            "{deleted} deleted, {reopened} reopens"
        );
        // Nothing pending: the WAL may be checkpointed past every deletion.
        assert!(e.lock_state().pending_deletes.is_empty());
    }

    #[test]
    fn a_pending_deletion_holds_the_checkpoint_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), 4);
        let mut lsn = 0;
        write(&e, &mut lsn, vec![pt(1, 1.0), pt(2, 2.0)]);
        e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        let q = agg_query(None, 0, 10, None, &[]);
        // The WAL never becomes durable: the chunks are not rewritten, the record must stay.
        let err = e
            .delete(
                &q,
                |_| Ok::<_, ()>(((), Lsn(2))),
                |_| Err("disk gone".into()),
            )
            .unwrap_err();
        assert!(matches!(err, DeleteError::Wal(_)));
        assert_eq!(e.persisted_bound(Lsn(2)), Lsn(1));
        // Points logged after it, in its range, must survive it: the next flush completes the
        // deletion before it writes them.
        let mut next = 2;
        write(&e, &mut next, vec![pt(5, 5.0)]);
        assert_eq!(e.persisted_bound(Lsn(3)), Lsn(1));
        let out = e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        assert_eq!(out.flushed_lsn, Some(Lsn(3)));
        assert_eq!(all(&e), [(5, 5.0)]);
        assert_eq!(e.persisted_bound(Lsn(3)), Lsn(3));
        // The chunks hold it now: a replay skips it.
        let out = e.replay_delete(&q, Lsn(2)).unwrap();
        assert_eq!(out.points, 0);
    }

    fn tagged(metric: &str, entity: &str, tags: &[(&str, &str)]) -> Point {
        let tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Point::new(
            metric.into(),
            entity.into(),
            1,
            1.0,
            tags,
            &PointLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn new_series_per_hour_are_limited_and_counted_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let config = TsConfig {
            max_new_series_per_hour: 5,
            ..TsConfig::default()
        };
        let e = TsEngine::open(dir.path(), config, TsMetrics::default()).unwrap();
        let mut lsn = 0;
        let series = |range: std::ops::Range<usize>| -> Vec<Point> {
            range.map(|i| tagged("m", &format!("e{i}"), &[])).collect()
        };
        write(&e, &mut lsn, series(0..3));
        // Known series cost nothing, even in a batch larger than the limit.
        let mut again = series(0..3);
        again.extend(series(0..3));
        write(&e, &mut lsn, again);
        let appended = std::cell::Cell::new(false);
        let try_write = |points: Vec<Point>| {
            e.write(Batch::from_points(points), |_| {
                appended.set(true);
                Ok::<_, ()>(((), Lsn(100)))
            })
        };
        // 3 + 3 new > 5: refused before anything is logged, naming the numbers.
        match try_write(series(0..6)) {
            Err(WriteError::NewSeriesRate {
                limit,
                recent,
                adding,
                retry_after_secs,
            }) => {
                assert_eq!((limit, recent, adding), (5, 3, 3));
                assert!((1..=3600).contains(&retry_after_secs), "{retry_after_secs}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(!appended.get());
        write(&e, &mut lsn, series(0..5));
        assert_eq!(e.cardinality(None, 10).new_series_last_hour, 5);
        assert!(matches!(
            try_write(series(5..6)),
            Err(WriteError::NewSeriesRate { .. })
        ));
        // Replay (and replicas) are never refused.
        e.replay(Batch::from_points(series(10..20)), Lsn(50));
        assert_eq!(e.cardinality(None, 10).total_series, 15);

        // The window: buckets leave it after an hour.
        let mut rate = SeriesRate::default();
        let t0 = 1_700_000_000_000i64;
        rate.add(t0, 4);
        rate.add(t0 + 30 * 60_000, 2);
        assert_eq!(rate.count(t0 + 59 * 60_000), 6);
        assert_eq!(
            rate.retry_after(t0 + 59 * 60_000, 1),
            60 - (t0 % 60_000) as u64 / 1000
        );
        assert_eq!(rate.count(t0 + 61 * 60_000), 2);
        assert_eq!(rate.count(t0 + 200 * 60_000), 0);
    }

    #[test]
    fn cardinality_counts_series_by_metric_label_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), 64);
        let mut lsn = 0;
        let mut points = Vec::new();
        for i in 0..10 {
            points.push(tagged(
                "cpu",
                &format!("h{i}"),
                &[("dc", if i < 7 { "eu" } else { "us" })],
            ));
        }
        for i in 0..3 {
            points.push(tagged(
                "mem",
                &format!("h{i}"),
                &[("dc", "eu"), ("tier", "db")],
            ));
        }
        write(&e, &mut lsn, points);
        let c = e.cardinality(None, 2);
        assert_eq!((c.total_series, c.counts.series), (13, 13));
        assert_eq!(
            c.counts.metrics,
            [("cpu".to_string(), 10), ("mem".to_string(), 3)]
        );
        assert_eq!(
            c.counts.labels,
            [("dc".to_string(), 13, 2), ("entity".to_string(), 13, 10)]
        );
        assert_eq!(
            c.counts.label_values,
            [
                ("dc".to_string(), "eu".to_string(), 10),
                ("dc".to_string(), "us".to_string(), 3)
            ]
        );
        let m = e.cardinality(Some("mem"), 10);
        assert_eq!(m.counts.series, 3);
        assert_eq!(m.counts.metrics, [("mem".to_string(), 3)]);
        assert_eq!(
            m.counts.labels,
            [
                ("dc".to_string(), 3, 1),
                ("entity".to_string(), 3, 3),
                ("tier".to_string(), 3, 1)
            ]
        );
        assert_eq!(
            e.cardinality(Some("nope"), 10).counts,
            crate::series::Counts::default()
        );
    }

    #[test]
    fn retention_rules_hold_each_metric_to_its_own_retention() {
        let dir = tempfile::tempdir().unwrap();
        let rule = |metric: &str, retention_ms| RetentionRule {
            metric: metric.into(),
            retention_ms,
        };
        let config = TsConfig {
            retention_ms: 60_000,
            retention_rules: vec![rule("debug_*", 10_000), rule("keep_?", 0)],
            // A chunk per point: no merging, so each chunk's fate is the test's to predict.
            chunk_target_points: 1,
            ..TsConfig::default()
        };
        let e = TsEngine::open(dir.path(), config, TsMetrics::default()).unwrap();
        let now = now_ms();
        let at = |metric: &str, ago: i64| {
            Point::new(
                metric.into(),
                "e".into(),
                now - ago,
                1.0,
                [],
                &PointLimits::default(),
            )
            .unwrap()
        };
        let mut lsn = 0;
        // Old points first, in chunks of their own; then newer ones.
        write(
            &e,
            &mut lsn,
            vec![
                at("debug_x", 300_000),
                at("keep_x", 300_000),
                at("other", 300_000),
            ],
        );
        e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        write(
            &e,
            &mut lsn,
            vec![
                at("debug_x", 30_000),
                at("keep_x", 30_000),
                at("other", 30_000),
                at("keep_xy", 300_000),
            ],
        );
        let visible = |metric: &str| -> Vec<i64> {
            let mut q = agg_query(None, 0, now, None, &[]);
            q.metric = metric.into();
            e.query(&q)
                .unwrap()
                .into_iter()
                .flat_map(|s| s.points)
                .map(|p| now - p.0)
                .collect()
        };
        let check = || {
            assert_eq!(visible("debug_x"), Vec::<i64>::new(), "10 s: neither");
            assert_eq!(visible("keep_x"), [300_000, 30_000], "forever: both");
            assert_eq!(visible("other"), [30_000], "the database's 60 s");
            assert_eq!(
                visible("keep_xy"),
                Vec::<i64>::new(),
                "`?` is one character"
            );
            // The PromQL read path holds each series to its own retention too.
            let ids: Vec<SeriesId> = (0..4).collect();
            let mut budget = 1000;
            let got: Vec<usize> = e
                .read_series(&ids, 0, now, &mut budget)
                .unwrap()
                .iter()
                .map(Vec::len)
                .collect();
            assert_eq!(got, [0, 2, 1, 0]);
            let with_data = e.series_with_data(&ids, 0, now).unwrap();
            assert_eq!(with_data, [false, true, true, false]);
        };
        check();
        e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        check();
        // The sweep, in steps of one series, deletes the chunks wholly past each retention:
        // debug_x's two, other's old one, keep_xy's.
        let (mut next, mut deleted) = (Some(0), 0);
        while let Some(first) = next {
            let step = e.sweep(first, 1).unwrap();
            next = step.next;
            deleted += step.expired;
        }
        assert_eq!(deleted, 4);
        check();
        let stored: usize = (0..4)
            .map(|id| {
                e.store
                    .chunks_overlapping(id, i64::MIN, i64::MAX)
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(stored, 3, "keep_x's two chunks and other's newer one");
        assert!(
            RetentionRule {
                metric: "a(b".into(),
                retention_ms: 1
            }
            .regex()
            .is_ok(),
            "globs escape regex syntax"
        );
    }

    #[test]
    fn the_sweep_merges_stranded_small_chunks_keeping_the_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let target = 8;
        let mut lsn = 0;
        let mut model = std::collections::BTreeMap::new();
        // Each "restart" writes a few points and flushes: the new small chunk cannot merge
        // with the previous run (forgotten at the restart), so small chunks pile up. Later
        // rounds overwrite earlier timestamps; one round seals a full chunk in the middle.
        for round in 0..12i64 {
            let e = engine(dir.path(), target);
            let mut points = vec![
                pt(round * 10, round as f64),
                pt(round * 10 + 1, round as f64),
            ];
            if round % 3 == 2 {
                points.push(pt((round - 2) * 10, 100.0 + round as f64));
            }
            if round == 6 {
                points.extend((0..target as i64).map(|i| pt(500 + i, 6.0)));
                points.push(pt(11, 66.0));
            }
            for p in &points {
                model.insert(p.timestamp_ms, p.value);
            }
            write(&e, &mut lsn, points);
            e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        }
        let want: Vec<(i64, f64)> = model.into_iter().collect();
        let e = engine(dir.path(), target);
        let chunks = |e: &TsEngine| {
            e.store
                .chunks_overlapping(0, i64::MIN, i64::MAX)
                .unwrap()
                .len()
        };
        let before = chunks(&e);
        assert_eq!(all(&e), want);
        let step = e.sweep(0, 100).unwrap();
        assert_eq!(step.next, None);
        assert_eq!(step.expired, 0);
        assert!(step.merged >= 8 && step.written <= 4, "{step:?}");
        assert_eq!(
            all(&e),
            want,
            "the last write of every timestamp still wins"
        );
        assert!(
            chunks(&e) <= before / 2,
            "{} chunks, {before} before",
            chunks(&e)
        );
        // A second sweep finds nothing more to merge; a restart sees the same points.
        let again = e.sweep(0, 100).unwrap();
        assert_eq!((again.merged, again.written), (0, 0), "{again:?}");
        drop(e);
        let e = engine(dir.path(), target);
        assert_eq!(all(&e), want);
        // The flusher's own run is left to the flusher.
        write(&e, &mut lsn, vec![pt(900, 1.0)]);
        e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        write(&e, &mut lsn, vec![pt(901, 1.0)]);
        e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        let run = e
            .flush
            .lock()
            .unwrap()
            .small
            .get(&0)
            .cloned()
            .unwrap_or_default();
        e.sweep(0, 100).unwrap();
        for s in run {
            assert!(e.store.chunk(0, s.min_ts, s.seq).unwrap().is_some());
        }
    }

    /// Buckets of `step` (aligned to `from`) over a model's points, for each aggregation.
    fn model_buckets(
        model: &std::collections::BTreeMap<i64, f64>,
        agg: query::Aggregation,
        from: i64,
        to: i64,
        step: Option<i64>,
    ) -> Vec<(i64, f64)> {
        let inside: Vec<(i64, f64)> = model.range(from..=to).map(|(t, v)| (*t, *v)).collect();
        query::aggregate([&inside[..]], agg, from, step)
    }

    fn assert_close(got: &[(i64, f64)], want: &[(i64, f64)], what: &str) {
        assert_eq!(
            got.len(),
            want.len(),
            "{what}: {} buckets, want {}",
            got.len(),
            want.len()
        );
        for (g, w) in got.iter().zip(want) {
            let tol = 1e-9 * w.1.abs().max(1.0);
            assert!(
                g.0 == w.0 && (g.1 - w.1).abs() <= tol,
                "{what}: {g:?} != {w:?}"
            );
        }
    }

    #[test]
    fn downsampling_rolls_old_chunks_up_and_answers_match_the_raw_points() {
        use query::Aggregation::*;
        let dir = tempfile::tempdir().unwrap();
        // After 1 min: 1-s buckets; after 10 min: 10-s buckets.
        let rules = vec![
            DownsampleRule {
                after_ms: 60_000,
                resolution_ms: 1_000,
            },
            DownsampleRule {
                after_ms: 600_000,
                resolution_ms: 10_000,
            },
        ];
        let open = |dir: &Path| {
            let config = TsConfig {
                chunk_target_points: 64,
                downsampling: rules.clone(),
                ..TsConfig::default()
            };
            TsEngine::open(dir, config, TsMetrics::default()).unwrap()
        };
        let e = open(dir.path());
        let now = now_ms();
        let start = rollup::align(now - 1_200_000, 10_000);
        let mut model = std::collections::BTreeMap::new();
        let mut lsn = 0;
        // 20 minutes at 150 ms, in flushes of 2,000 points written newest batch first (so
        // chunks overlap in time), with some timestamps written twice.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut value = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 20_000) as f64 / 100.0 - 50.0
        };
        let times: Vec<i64> = (start..now).step_by(150).collect();
        for batch in times.chunks(2_000).rev() {
            let mut points: Vec<Point> = batch.iter().map(|&t| pt(t, value())).collect();
            for p in batch.iter().step_by(97) {
                points.push(pt(*p, value()));
            }
            for p in &points {
                model.insert(p.timestamp_ms, p.value);
            }
            write(&e, &mut lsn, points);
            e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        }
        let check = |e: &TsEngine, model: &std::collections::BTreeMap<i64, f64>, what: &str| {
            for agg in [Min, Max, Sum, Avg, Count, First, Last] {
                for (from, to, step) in [
                    (start, now, Some(10_000)),
                    (start, now, Some(60_000)),
                    // One bucket across both resolutions and the raw part: avg is sum/count.
                    (start, now, None),
                    (start + 300_000, now - 30_000, None),
                ] {
                    let got = e.query(&agg_query(Some(agg), from, to, step, &[])).unwrap();
                    let got = got.first().map(|s| s.points.clone()).unwrap_or_default();
                    let want = model_buckets(model, agg, from, to, step);
                    assert_close(
                        &got,
                        &want,
                        &format!("{what}: {agg:?} {from}..{to} {step:?}"),
                    );
                }
            }
        };
        check(&e, &model, "before the sweep");
        let step = e.sweep(0, 100).unwrap();
        assert!(step.rolled > 0 && step.rollup_blocks > 0, "{step:?}");
        check(&e, &model, "after the sweep");
        // Raw reads see a downsampled bucket as its last point.
        let raw = all(&e);
        assert!(
            raw.len() < model.len() / 5,
            "{} raw points of {}",
            raw.len(),
            model.len()
        );
        let tiers = Tiers::at(&rules, now_ms());
        for (t, v) in &raw {
            assert_eq!(model.get(t), Some(v));
        }
        assert!(raw.iter().filter(|p| p.0 < tiers.cutoff[1]).count() <= 60 + 1);
        // Nothing is left raw past tier 0's cutoff.
        let old_chunks = e
            .store
            .chunks_overlapping(0, i64::MIN, tiers.cutoff[0] - 60_000)
            .unwrap();
        assert!(
            old_chunks.is_empty(),
            "{} chunks left raw",
            old_chunks.len()
        );
        // A second sweep moves nothing it already moved; a restart sees the same answers.
        let again = e.sweep(0, 100).unwrap();
        assert!(again.rolled <= 2, "{again:?}");
        check(&e, &model, "after a second sweep");
        drop(e);
        let e = open(dir.path());
        check(&e, &model, "after a restart");
        // A late point in a rolled-up range joins its bucket, buffered, flushed and rolled.
        let late = start + 123_457;
        assert!(!model.contains_key(&late));
        write(&e, &mut lsn, vec![pt(late, 1e6)]);
        model.insert(late, 1e6);
        check(&e, &model, "a late point, buffered");
        e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        check(&e, &model, "a late point, flushed");
        let step = e.sweep(0, 100).unwrap();
        assert!(step.rolled >= 1, "{step:?}");
        check(&e, &model, "a late point, rolled up");
        // A deletion removes the buckets wholly inside its range.
        let (del_from, del_to) = (start + 100_000, start + 199_999);
        let q = agg_query(None, del_from, del_to, None, &[]);
        let mut l = lsn;
        e.delete(
            &q,
            |_| {
                l += 1;
                Ok::<_, ()>(((), Lsn(l)))
            },
            |_| Ok(()),
        )
        .unwrap();
        model.retain(|t, _| !(del_from..=del_to).contains(t));
        check(&e, &model, "after a deletion");
    }

    #[test]
    fn downsampled_buckets_move_into_coarser_tiers_as_time_passes() {
        use query::Aggregation::*;
        let dir = tempfile::tempdir().unwrap();
        // Three tiers, so a step both fills a tier-1 block from tier 0 and moves buckets of
        // that same block on into tier 2.
        let rules = vec![
            DownsampleRule {
                after_ms: 10_000,
                resolution_ms: 1_000,
            },
            DownsampleRule {
                after_ms: 60_000,
                resolution_ms: 10_000,
            },
            DownsampleRule {
                after_ms: 600_000,
                resolution_ms: 60_000,
            },
        ];
        let config = TsConfig {
            chunk_target_points: 50,
            downsampling: rules,
            ..TsConfig::default()
        };
        let e = TsEngine::open(dir.path(), config, TsMetrics::default()).unwrap();
        // Whole minutes: the query's buckets are the stored ones.
        let t0 = 12_000_000i64;
        let start = t0 - 1_980_000;
        let mut model = std::collections::BTreeMap::new();
        let mut lsn = 0;
        for slab in (start..t0).step_by(90_000) {
            let points: Vec<Point> = (slab..slab + 90_000)
                .step_by(250)
                .map(|t| pt(t, ((t / 250) % 97) as f64 - 40.5))
                .collect();
            for p in &points {
                model.insert(p.timestamp_ms, p.value);
            }
            write(&e, &mut lsn, points);
            e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        }
        let check = |what: &str| {
            for agg in [Min, Max, Sum, Avg, Count, First, Last] {
                for step in [Some(60_000), None] {
                    let from = start;
                    let got = e.query(&agg_query(Some(agg), from, t0, step, &[])).unwrap();
                    let got = got.first().map(|s| s.points.clone()).unwrap_or_default();
                    let want = model_buckets(&model, agg, from, t0, step);
                    assert_close(&got, &want, &format!("{what}: {agg:?} {step:?}"));
                }
            }
        };
        check("raw");
        let mut rolled = 0;
        for now in [
            t0,
            t0 + 5_000,
            t0 + 30_000,
            t0 + 100_000,
            t0 + 650_000,
            t0 + 2_000_000,
        ] {
            let step = e.sweep_at(0, 10, now).unwrap();
            rolled += step.rolled;
            check(&format!("swept at {now}"));
            // Everything past the last cutoff is in 1-minute buckets now.
            let tiers = Tiers::at(&e.config.downsampling, now);
            for (k, res) in tiers.res.iter().enumerate() {
                for (_, v) in e
                    .store
                    .rollup_blocks(None, 0, *res, i64::MIN, i64::MAX)
                    .unwrap()
                {
                    for (start, _) in rollup::decode_block(&v).unwrap() {
                        assert_eq!(tiers.tier_of(start), Some(k), "at {now}: bucket {start}");
                    }
                }
            }
        }
        assert!(rolled > 0);
        assert!(all(&e).len() <= 34, "{} raw reads", all(&e).len());
    }

    #[test]
    fn an_overwrite_sealed_into_a_full_chunk_is_not_undone_by_later_merges() {
        let dir = tempfile::tempdir().unwrap();
        let mut lsn = 0;
        let e = engine(dir.path(), 4);
        // Small chunk A holds ts 100.
        write(&e, &mut lsn, vec![pt(100, 1.0), pt(200, 1.0), pt(300, 1.0)]);
        e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        // Overwrite ts 100 within a flush that seals a full chunk.
        write(
            &e,
            &mut lsn,
            vec![pt(100, 2.0), pt(150, 2.0), pt(160, 2.0), pt(170, 2.0)],
        );
        e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        for i in 0..6 {
            write(&e, &mut lsn, vec![pt(1000 + i, 3.0)]);
            e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
        }
        assert!(all(&e).contains(&(100, 2.0)), "{:?}", all(&e));
    }

    #[test]
    fn stored_bytes_stat_matches_the_chunks_after_merges() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), 256);
        let mut lsn = 0u64;
        for round in 0..60i64 {
            let pts = (0..5)
                .flat_map(|s| (0..20).map(move |i| (s, round * 20 + i)))
                .map(|(s, i)| {
                    Point::new(
                        "m".into(),
                        format!("h{s}"),
                        i * 1000,
                        (i % 97) as f64 / 4.0,
                        [],
                        &PointLimits::default(),
                    )
                    .unwrap()
                })
                .collect();
            write(&e, &mut lsn, pts);
            e.flush(FlushTrigger::Count, |_| Ok(())).unwrap();
        }
        let mut actual = 0usize;
        for sid in 0..5 {
            for c in e.store.chunks_overlapping(sid, i64::MIN, i64::MAX).unwrap() {
                let mut enc = sluice_gorilla::ChunkEncoder::for_points(&c.points);
                for &(t, v) in &c.points {
                    enc.push(t, v);
                }
                actual += enc.snapshot().len() + CHUNK_OVERHEAD_BYTES;
            }
        }
        assert_eq!(e.stored_bytes(), actual as u64);
        assert_eq!(e.stats().points_flushed, 6000);
    }

    #[test]
    fn overflow_refuses_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let config = TsConfig {
            auto_buffer: AutoBufferConfig {
                max_buffer_bytes: 10,
                overflow_buffer_bytes: 100,
                ..AutoBufferConfig::default()
            },
            ..TsConfig::default()
        };
        let e = TsEngine::open(dir.path(), config, TsMetrics::default()).unwrap();
        let mut appended = 0;
        let mut refused = false;
        for i in 0..100 {
            match e.write(Batch::from_points(vec![pt(i, 1.0)]), |_| {
                appended += 1;
                Ok::<_, ()>(((), Lsn(appended)))
            }) {
                Ok((_, outcome)) => assert_eq!(outcome.flush_due, Some(FlushTrigger::Memory)),
                Err(WriteError::Overflow { buffer_size }) => {
                    assert_eq!(buffer_size, appended);
                    refused = true;
                    break;
                }
                Err(WriteError::Append(()))
                | Err(WriteError::SeriesLimit { .. })
                | Err(WriteError::NewSeriesRate { .. }) => unreachable!(),
            }
        }
        assert!(refused);
    }
}
