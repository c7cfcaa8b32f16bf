//! The vector engine of one database: collections, the VectorAutoBuffer, direct and buffered
//! writes, flushes, searches, snapshots and recovery.
//!
//! # Write path
//! Every write is validated completely, then, under the engine's state lock, logged (the
//! caller's `append`, which assigns the LSN) and either put in the buffer (buffered) or given
//! an *apply turn* (direct). Turns are handed out under the state lock, so they are in LSN
//! order, and served one at a time ([`Sequencer`]): index mutations happen in LSN order without
//! holding the state lock, so buffered writes never wait for an index insert.
//!
//! - **Direct** (`/vectors/add`, batches): the caller applies its operations to the index in
//!   its turn and answers when done, so the entity is searchable on return. A direct write
//!   supersedes any older buffered operation on the same pk, which is dropped from the buffer.
//! - **Buffered**: the buffer keeps the newest operation per pk (every operation carries the
//!   entity's whole state, so older ones are dead). A flush (count, age, memory, manual,
//!   shutdown) freezes the buffer, takes a turn and applies it to the index in parallel.
//!
//! # Reads
//! A search takes, under the state lock, the newest buffered (head over frozen) operation of
//! each pk of the collection; scans those exactly, and searches the index with those pks
//! *shadowed* (the index holds an older version of them, or none). Get reads the buffer first,
//! then the index. So reads see every write at every ack level (read-your-writes).
//!
//! # Snapshots and recovery
//! The index lives in memory; durability comes from the WAL until a snapshot covers it. A
//! snapshot takes a turn (so every earlier turn is applied) and records LSN `B` = one below
//! the oldest buffered operation (or the last vector record when the buffer is empty): every
//! operation at or below `B` is in the index. It may hold some later ones too (direct writes
//! applied before the snapshot's turn); that is harmless because every record carries the
//! entity's whole state and replay applies all records after `B` in order, so replaying a
//! suffix over a state that already holds part of it ends in the same state. Recovery loads
//! the snapshot, replays later records into the buffer, and flushes. The WAL may be
//! checkpointed at `B` ([`VectorEngine::persisted_bound`]).
//!
//! # Expiry
//! An entity expires at its `expires_at_ms`, or, when written without one into a collection
//! with a `ttl_ms`, at the write's time plus the TTL: the write fills it in before logging, so
//! replay and replicas hold the same expiry. Reads hide an expired entity at once (a time
//! predicate, like a filter). [`VectorEngine::expire`] removes expired entities for good with
//! `Expire` operations, logged and replicated like any write. An `Expire` removes the entity only
//! if the state it finds when applied is itself expired by the operation's time; it is resolved
//! against the buffer under the state lock wherever it is inserted (write, replay, replica), so
//! it never removes a newer write of the same pk. Reads ignore pending `Expire`s (what they would
//! remove is already hidden).
//!
//! # Limits
//! The buffer refuses writes once its estimated memory (head plus frozen) reaches
//! `overflow_buffer_bytes`; `k` is at most `max_k`; dimensions at most `max_dimension`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};
use sluice_wal::{Lsn, RecordKind};

use crate::collection::{
    Collection, CollectionConfig, Decay, Hit, HnswParams, IndexError, InvalidCollection,
    SearchSpec, TimeRange,
};
use crate::distance::{Distance, Precision};
use crate::filter::Filter;
use crate::record::{self, CollectionChange, EntityData, Op};
use crate::snapshot::{self, SavedCollection, SnapshotError};

/// The collection the seed's flat routes act on.
pub const DEFAULT_COLLECTION: &str = "default";

/// VectorAutoBuffer settings (seed names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoBufferConfig {
    /// When false, buffered routes behave like direct ones.
    pub enabled: bool,
    pub max_vectors_per_buffer: usize,
    pub flush_interval_ms: u64,
    pub max_buffer_bytes: usize,
    /// Refuse writes while head plus flushing memory is at or above this.
    pub overflow_buffer_bytes: usize,
}

impl Default for AutoBufferConfig {
    fn default() -> Self {
        AutoBufferConfig {
            enabled: true,
            max_vectors_per_buffer: 1000,
            flush_interval_ms: 5000,
            max_buffer_bytes: 64 * 1024 * 1024,
            overflow_buffer_bytes: 256 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorConfig {
    pub auto_buffer: AutoBufferConfig,
    /// Dimension of collection `default`; 0 takes it from the first insert.
    pub default_dimension: usize,
    pub default_distance: Distance,
    pub default_precision: Precision,
    pub default_hnsw: HnswParams,
    pub max_dimension: usize,
    pub max_k: usize,
    pub max_collections: usize,
    pub max_pk_chars: usize,
    pub max_metadata_bytes: usize,
    /// Snapshot when this many operations were applied since the last one...
    pub snapshot_after_ops: u64,
    /// ...or when there are changes and the last snapshot is this old.
    pub snapshot_interval_ms: u64,
    /// Threads applying a flush or a direct batch to the index.
    pub apply_threads: usize,
}

impl Default for VectorConfig {
    fn default() -> Self {
        VectorConfig {
            auto_buffer: AutoBufferConfig::default(),
            default_dimension: 0,
            default_distance: Distance::Cosine,
            default_precision: Precision::F32,
            default_hnsw: HnswParams::default(),
            max_dimension: 4096,
            max_k: 1000,
            max_collections: 1000,
            max_pk_chars: 512,
            max_metadata_bytes: 64 * 1024,
            snapshot_after_ops: 200_000,
            snapshot_interval_ms: 10 * 60 * 1000,
            apply_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
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
    /// Recovery applying what it replayed (not counted in the statistics).
    Replay,
}

/// How a write reaches the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Applied to the index before the write returns.
    Direct,
    /// Put in the buffer; applied at the next flush.
    Buffered,
}

#[derive(Debug, thiserror::Error)]
pub enum VectorError<E = std::convert::Infallible> {
    #[error("collection {0:?} does not exist")]
    CollectionNotFound(String),
    #[error("collection {0:?} already exists")]
    CollectionExists(String),
    #[error("the database holds {limit} collections, its limit")]
    TooManyCollections { limit: usize },
    #[error(transparent)]
    InvalidCollection(#[from] InvalidCollection),
    /// Operation `index` of the request is invalid; `field` is relative to the entity.
    #[error("{field}: {reason}")]
    InvalidEntity {
        index: usize,
        field: &'static str,
        reason: String,
    },
    /// Operation `index` fits the request's shape but breaks a rule a schema cannot state:
    /// its collection's (dimension, what the distance and precision need), or the size of
    /// its metadata as JSON.
    #[error("{field}: {reason}")]
    Mismatched {
        index: usize,
        field: &'static str,
        reason: String,
    },
    #[error("no entity with pk {pk:?}")]
    NotFound { index: usize, pk: String },
    #[error("buffer overflow")]
    Overflow { buffer_size: u64 },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Append(E),
}

impl VectorError {
    /// Widens an error that cannot come from an append.
    pub fn widen<E>(self) -> VectorError<E> {
        match self {
            VectorError::CollectionNotFound(n) => VectorError::CollectionNotFound(n),
            VectorError::CollectionExists(n) => VectorError::CollectionExists(n),
            VectorError::TooManyCollections { limit } => VectorError::TooManyCollections { limit },
            VectorError::InvalidCollection(e) => VectorError::InvalidCollection(e),
            VectorError::InvalidEntity {
                index,
                field,
                reason,
            } => VectorError::InvalidEntity {
                index,
                field,
                reason,
            },
            VectorError::Mismatched {
                index,
                field,
                reason,
            } => VectorError::Mismatched {
                index,
                field,
                reason,
            },
            VectorError::NotFound { index, pk } => VectorError::NotFound { index, pk },
            VectorError::Overflow { buffer_size } => VectorError::Overflow { buffer_size },
            VectorError::Index(e) => VectorError::Index(e),
            VectorError::Append(never) => match never {},
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{path}: {source}")]
    Index { path: PathBuf, source: IndexError },
}

/// What a write left behind.
#[derive(Clone, Copy, Debug)]
pub struct WriteOutcome {
    /// Operations in the buffer (head and flushing) after the write.
    pub buffer_size: u64,
    pub flush_due: Option<FlushTrigger>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    pub vectors: u64,
}

/// The seed's buffer statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferStats {
    pub vectors_buffered: u64,
    pub vectors_flushed: u64,
    pub flush_count: u64,
    pub auto_flush_count: u64,
    pub manual_flush_count: u64,
    pub current_buffer_size: u64,
    pub current_buffer_memory: u64,
    pub last_flush_time_ms: Option<i64>,
    pub snapshot_count: u64,
    pub last_snapshot_lsn: u64,
}

/// An entity as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub pk: String,
    pub vector: Vec<f32>,
    pub metadata: Map<String, Value>,
    pub timestamp_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct SearchRequest {
    pub vector: Vec<f32>,
    pub k: usize,
    pub ef: Option<usize>,
    pub filter: Option<Filter>,
    /// Only entities with a time in this window.
    pub time_range: Option<TimeRange>,
    /// Rank by distance less a recency bonus.
    pub decay: Option<Decay>,
    /// The search's clock (expiry, decay); the server's when absent.
    pub now_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub pk: String,
    /// Distance as the metric defines it (lower is closer).
    pub distance: f32,
    /// Cosine similarity, inner product, or Euclidean distance (see `distance.rs`).
    pub score: f32,
    /// What the hits are ordered by: `distance`, less the decay bonus when decay is asked for.
    pub rank: f32,
    pub metadata: Map<String, Value>,
    pub timestamp_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
}

/// A collection's definition and size.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionInfo {
    pub config: CollectionConfig,
    pub vectors: u64,
    pub buffered: u64,
    pub index_bytes: u64,
}

/// The engine's Prometheus metrics (seed names).
#[derive(Clone, Debug, Default)]
pub struct VectorMetrics {
    pub vectors_buffered: Counter,
    pub vectors_flushed: Counter,
    pub flush_count: Counter,
    pub current_size: Gauge,
    pub snapshots: Counter,
}

impl VectorMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("vector_auto_buffer");
        r.register(
            "vectors_buffered",
            "Vector operations accepted into the buffer",
            self.vectors_buffered.clone(),
        );
        r.register(
            "vectors_flushed",
            "Vector operations applied to the index by flushes",
            self.vectors_flushed.clone(),
        );
        r.register("flush_count", "Buffer flushes", self.flush_count.clone());
        r.register(
            "current_size",
            "Vector operations in the buffer now",
            self.current_size.clone(),
        );
        registry.register(
            "vector_snapshots",
            "Vector index snapshots written",
            self.snapshots.clone(),
        );
    }
}

/// A logged operation not yet in the index.
#[derive(Clone, Debug)]
struct Pending {
    lsn: Lsn,
    op: Arc<Op>,
}

#[derive(Default)]
struct Buffer {
    /// Collection id → pk → newest operation.
    ops: HashMap<u64, HashMap<String, Pending>>,
    entries: usize,
    bytes: usize,
    first_insert: Option<Instant>,
    min_lsn: Option<Lsn>,
}

impl Buffer {
    fn is_empty(&self) -> bool {
        self.entries == 0
    }

    fn insert(&mut self, coll: u64, lsn: Lsn, op: Op) {
        let bytes = op_bytes(&op);
        let old = self.ops.entry(coll).or_default().insert(
            op.pk().to_string(),
            Pending {
                lsn,
                op: Arc::new(op),
            },
        );
        match old {
            Some(old) => self.bytes = self.bytes - op_bytes(&old.op) + bytes,
            None => {
                self.entries += 1;
                self.bytes += bytes;
            }
        }
        self.first_insert.get_or_insert_with(Instant::now);
        self.min_lsn.get_or_insert(lsn);
    }

    /// Removes the operation on `pk` (only if it is the one logged at `lsn`, when given).
    fn remove(&mut self, coll: u64, pk: &str, lsn: Option<Lsn>) {
        if let Some(ops) = self.ops.get_mut(&coll)
            && ops.get(pk).is_some_and(|p| lsn.is_none_or(|l| p.lsn == l))
            && let Some(old) = ops.remove(pk)
        {
            self.entries -= 1;
            self.bytes -= op_bytes(&old.op);
        }
        self.reset_if_empty();
    }

    fn drop_collection(&mut self, coll: u64) {
        if let Some(ops) = self.ops.remove(&coll) {
            for p in ops.values() {
                self.entries -= 1;
                self.bytes -= op_bytes(&p.op);
            }
        }
        self.reset_if_empty();
    }

    /// An empty buffer has no age and no oldest LSN (they drive flushes and snapshot bounds).
    fn reset_if_empty(&mut self) {
        if self.entries == 0 {
            *self = Buffer::default();
        }
    }

    fn get(&self, coll: u64, pk: &str) -> Option<&Pending> {
        self.ops.get(&coll)?.get(pk)
    }
}

/// An `Expire` about to be logged or buffered, resolved against the newest pending operation
/// on its pk (see the module doc): kept when there is none (the index's state decides when it
/// is applied), a `Remove` when the pending state is expired by then, dropped otherwise.
fn resolve_expire(st: &State, coll: u64, op: Op) -> Option<Op> {
    let Op::Expire { pk, at_ms } = op else {
        return Some(op);
    };
    match newest(st, coll, &pk).map(|p| &*p.op) {
        None | Some(Op::Expire { .. }) => Some(Op::Expire { pk, at_ms }),
        Some(Op::Add(e) | Op::Update(e)) if e.expired(at_ms) => Some(Op::Remove { pk }),
        Some(_) => None,
    }
}

/// Every pk of a collection with a logged but unapplied operation, with the newest one.
fn pending_ops(st: &State, coll: u64) -> HashMap<String, Pending> {
    let mut out: HashMap<String, Pending> = HashMap::new();
    let sources = [
        st.frozen.as_ref().and_then(|f| f.ops.get(&coll)),
        st.inflight.ops.get(&coll),
        st.head.ops.get(&coll),
    ];
    for ops in sources.into_iter().flatten() {
        for (pk, p) in ops {
            if out.get(pk).is_none_or(|q| q.lsn < p.lsn) {
                out.insert(pk.clone(), p.clone());
            }
        }
    }
    out
}

/// The newest logged but unapplied operation on `pk`: buffered, flushing, or a direct write in
/// flight (highest LSN wins).
fn newest<'a>(st: &'a State, coll: u64, pk: &str) -> Option<&'a Pending> {
    [
        st.head.get(coll, pk),
        st.inflight.get(coll, pk),
        st.frozen.as_ref().and_then(|f| f.get(coll, pk)),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|p| p.lsn)
}

fn op_bytes(op: &Op) -> usize {
    96 + op.pk().len()
        + op.entity()
            .map_or(0, |e| 4 * e.vector.len() + 48 * e.metadata.len())
}

struct State {
    /// By name; a collection's id is the LSN of its creation record (unique, and the same
    /// after recovery, so logged operations name the incarnation they belong to).
    collections: HashMap<String, Arc<Collection>>,
    head: Buffer,
    frozen: Option<Arc<Buffer>>,
    /// Direct operations logged and waiting for (or in) their apply turn: visible to reads and
    /// existence checks until the index holds them.
    inflight: Buffer,
    /// LSN of the last record this engine logged or replayed.
    last_lsn: Lsn,
    /// The last snapshot covers everything at or below this LSN.
    snapshot_lsn: Lsn,
    ops_since_snapshot: u64,
    last_snapshot: Instant,
}

/// Hands out turns in order and serves them one at a time.
struct Sequencer {
    serving: Mutex<(u64, u64)>,
    cv: Condvar,
}

/// A place in the apply order; waits for (and then passes on) its turn even when dropped unused.
struct Ticket<'a> {
    seq: &'a Sequencer,
    n: u64,
    used: bool,
}

struct Turn<'a> {
    seq: &'a Sequencer,
}

impl Sequencer {
    fn new() -> Sequencer {
        Sequencer {
            serving: Mutex::new((0, 0)),
            cv: Condvar::new(),
        }
    }

    /// Call under the state lock, so tickets follow LSN order.
    fn ticket(&self) -> Ticket<'_> {
        let mut g = self.serving.lock().unwrap_or_else(PoisonError::into_inner);
        let n = g.1;
        g.1 += 1;
        Ticket {
            seq: self,
            n,
            used: false,
        }
    }
}

impl<'a> Ticket<'a> {
    fn wait(mut self) -> Turn<'a> {
        self.used = true;
        self.block();
        Turn { seq: self.seq }
    }

    fn block(&self) {
        let mut g = self
            .seq
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while g.0 != self.n {
            g = self.seq.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.block();
            drop(Turn { seq: self.seq });
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.seq
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0 += 1;
        self.seq.cv.notify_all();
    }
}

#[derive(Default)]
struct Counters {
    vectors_buffered: AtomicU64,
    vectors_flushed: AtomicU64,
    flush_count: AtomicU64,
    manual_flush_count: AtomicU64,
    last_flush_ms: AtomicU64,
    snapshot_count: AtomicU64,
}

pub struct VectorEngine {
    dir: PathBuf,
    config: VectorConfig,
    /// usearch thread contexts per collection.
    index_threads: usize,
    state: Mutex<State>,
    sequencer: Sequencer,
    /// One flush, and one snapshot, at a time.
    flush_lock: Mutex<()>,
    snapshot_lock: Mutex<()>,
    counters: Counters,
    metrics: VectorMetrics,
}

impl VectorEngine {
    /// Opens the engine from its last snapshot in `dir`. Replay the WAL after this with
    /// [`VectorEngine::replay`], then call [`VectorEngine::finish_replay`].
    pub fn open(
        dir: &Path,
        config: VectorConfig,
        metrics: VectorMetrics,
    ) -> Result<VectorEngine, OpenError> {
        std::fs::create_dir_all(dir).map_err(snapshot::io_err(dir))?;
        let index_threads = (config.apply_threads * 2).max(8) + 64;
        let manifest = snapshot::read_manifest(dir)?.unwrap_or_default();
        let mut collections = HashMap::new();
        for saved in &manifest.collections {
            let index_path = dir.join(&saved.index_file);
            let catalog_path = dir.join(&saved.catalog_file);
            snapshot::verify(&index_path, saved.index_crc)?;
            let catalog = std::fs::read(&catalog_path).map_err(snapshot::io_err(&catalog_path))?;
            if crc32c::crc32c(&catalog) != saved.catalog_crc {
                return Err(SnapshotError::Damaged {
                    path: catalog_path,
                    reason: "CRC32C differs from the MANIFEST's".into(),
                }
                .into());
            }
            let c = Collection::load(
                saved.id,
                saved.config.clone(),
                index_threads,
                &index_path,
                &catalog,
            )
            .map_err(|source| OpenError::Index {
                path: index_path.clone(),
                source,
            })?;
            collections.insert(saved.config.name.clone(), Arc::new(c));
        }
        let lsn = Lsn(manifest.lsn);
        Ok(VectorEngine {
            dir: dir.to_path_buf(),
            config,
            index_threads,
            state: Mutex::new(State {
                collections,
                head: Buffer::default(),
                frozen: None,
                inflight: Buffer::default(),
                last_lsn: lsn,
                snapshot_lsn: lsn,
                ops_since_snapshot: 0,
                last_snapshot: Instant::now(),
            }),
            sequencer: Sequencer::new(),
            flush_lock: Mutex::new(()),
            snapshot_lock: Mutex::new(()),
            counters: Counters::default(),
            metrics,
        })
    }

    pub fn config(&self) -> &VectorConfig {
        &self.config
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The LSN of the last snapshot: WAL records at or below it are not replayed.
    pub fn snapshot_lsn(&self) -> Lsn {
        self.lock_state().snapshot_lsn
    }

    /// The highest LSN the WAL may be checkpointed at as far as this engine is concerned,
    /// given `written`, the WAL's written LSN read *before* this call.
    pub fn persisted_bound(&self, written: Lsn) -> Lsn {
        let st = self.lock_state();
        if st.last_lsn <= st.snapshot_lsn {
            written
        } else {
            st.snapshot_lsn
        }
    }

    // ----- collections -----

    pub fn collections(&self) -> Vec<CollectionInfo> {
        let colls: Vec<Arc<Collection>> = {
            let st = self.lock_state();
            st.collections.values().cloned().collect()
        };
        let mut out: Vec<CollectionInfo> = colls.iter().map(|c| self.info(c)).collect();
        out.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        out
    }

    pub fn collection(&self, name: &str) -> Option<CollectionInfo> {
        let c = self.lock_state().collections.get(name).cloned()?;
        Some(self.info(&c))
    }

    fn info(&self, c: &Collection) -> CollectionInfo {
        let buffered = pending_ops(&self.lock_state(), c.id).len();
        CollectionInfo {
            config: c.config.clone(),
            vectors: c.len() as u64,
            buffered: buffered as u64,
            index_bytes: c.memory_bytes() as u64,
        }
    }

    /// The configuration collection `default` gets when created implicitly.
    pub fn default_collection_config(&self, dimension: usize) -> CollectionConfig {
        CollectionConfig {
            name: DEFAULT_COLLECTION.to_string(),
            dimension: if self.config.default_dimension > 0 {
                self.config.default_dimension
            } else {
                dimension
            },
            distance: self.config.default_distance,
            precision: self.config.default_precision,
            hnsw: self.config.default_hnsw,
            ttl_ms: None,
        }
    }

    /// Creates a collection, logged through `append`.
    pub fn create_collection<T, E>(
        &self,
        config: CollectionConfig,
        append: impl FnOnce(RecordKind, Vec<u8>) -> Result<(T, Lsn), E>,
    ) -> Result<T, VectorError<E>> {
        config.validate(self.config.max_dimension)?;
        let mut st = self.lock_state();
        self.check_new_collection(&st, &config.name)?;
        let (t, lsn) = append(
            record::COLLECTION,
            record::encode_collection(&CollectionChange::Create(config.clone())),
        )
        .map_err(VectorError::Append)?;
        self.install_collection(&mut st, config, lsn)?;
        Ok(t)
    }

    fn check_new_collection<E>(&self, st: &State, name: &str) -> Result<(), VectorError<E>> {
        if st.collections.contains_key(name) {
            return Err(VectorError::CollectionExists(name.to_string()));
        }
        if st.collections.len() >= self.config.max_collections {
            return Err(VectorError::TooManyCollections {
                limit: self.config.max_collections,
            });
        }
        Ok(())
    }

    fn install_collection(
        &self,
        st: &mut State,
        config: CollectionConfig,
        lsn: Lsn,
    ) -> Result<Arc<Collection>, IndexError> {
        let id = lsn.get();
        st.last_lsn = lsn;
        st.ops_since_snapshot += 1;
        let c = Arc::new(Collection::new(id, config.clone(), self.index_threads)?);
        st.collections.insert(config.name, c.clone());
        Ok(c)
    }

    /// Deletes a collection and everything in it, logged through `append`.
    pub fn delete_collection<T, E>(
        &self,
        name: &str,
        append: impl FnOnce(RecordKind, Vec<u8>) -> Result<(T, Lsn), E>,
    ) -> Result<T, VectorError<E>> {
        let mut st = self.lock_state();
        if !st.collections.contains_key(name) {
            return Err(VectorError::CollectionNotFound(name.to_string()));
        }
        let (t, lsn) = append(
            record::COLLECTION,
            record::encode_collection(&CollectionChange::Delete(name.to_string())),
        )
        .map_err(VectorError::Append)?;
        Self::remove_collection(&mut st, name, lsn);
        self.set_gauge(&st);
        Ok(t)
    }

    fn remove_collection(st: &mut State, name: &str, lsn: Lsn) {
        if let Some(c) = st.collections.remove(name) {
            st.head.drop_collection(c.id);
            st.inflight.drop_collection(c.id);
        }
        st.last_lsn = lsn;
        st.ops_since_snapshot += 1;
    }

    // ----- writes -----

    /// Validates and logs `ops` on `collection`, then buffers or applies them (see the module
    /// docs). `append` is the WAL enqueue; it may be called twice when collection `default` is
    /// created implicitly (its creation is logged first). Returns the last append's value.
    pub fn write<T, E>(
        &self,
        collection: &str,
        ops: Vec<Op>,
        mode: WriteMode,
        mut append: impl FnMut(RecordKind, Vec<u8>) -> Result<(T, Lsn), E>,
    ) -> Result<(T, WriteOutcome), VectorError<E>> {
        let mut ops = ops;
        self.check_shapes(&ops)?;
        let now = now_ms();
        // Whether the index holds the pks (live, not expired) that updates and removes need,
        // looked up before the state lock: a catalogue lock may wait behind a long search, and
        // the state lock must never wait for one (every write and read needs it).
        let known = self.lock_state().collections.get(collection).cloned();
        let indexed: HashMap<String, bool> = match &known {
            Some(c) => ops
                .iter()
                .filter(|op| matches!(op, Op::Update(_) | Op::Remove { .. }))
                .map(|op| (op.pk().to_string(), c.contains_live(op.pk(), now)))
                .collect(),
            None => HashMap::new(),
        };
        let mut st = self.lock_state();
        let coll = match st.collections.get(collection) {
            Some(c) => c.clone(),
            None if collection == DEFAULT_COLLECTION => {
                let dim = ops
                    .iter()
                    .find_map(|op| op.entity().map(|e| e.vector.len()))
                    .ok_or_else(|| VectorError::CollectionNotFound(collection.to_string()))?;
                let config = self.default_collection_config(dim);
                config.validate(self.config.max_dimension)?;
                self.check_new_collection(&st, DEFAULT_COLLECTION)?;
                self.check_entities(&config, &ops)?;
                self.check_exists(&st, None, &HashMap::new(), &ops, now)?;
                let (_, lsn) = append(
                    record::COLLECTION,
                    record::encode_collection(&CollectionChange::Create(config.clone())),
                )
                .map_err(VectorError::Append)?;
                self.install_collection(&mut st, config, lsn)?
            }
            None => return Err(VectorError::CollectionNotFound(collection.to_string())),
        };
        self.check_entities(&coll.config, &ops)?;
        if let Some(ttl) = coll.config.ttl_ms {
            let at = now.saturating_add(ttl as i64);
            for op in &mut ops {
                if let Op::Add(e) | Op::Update(e) = op {
                    e.expires_at_ms.get_or_insert(at);
                }
            }
        }
        // The collection was replaced meanwhile: the lookups above were of another incarnation.
        let indexed = match &known {
            Some(k) if Arc::ptr_eq(k, &coll) => indexed,
            _ => HashMap::new(),
        };
        self.check_exists(&st, Some(&coll), &indexed, &ops, now)?;
        // After the check: an Expire resolved into a Remove removes an expired entity, which
        // the check (rightly, for clients) counts as absent.
        if ops.iter().any(|op| matches!(op, Op::Expire { .. })) {
            ops = ops
                .into_iter()
                .filter_map(|op| resolve_expire(&st, coll.id, op))
                .collect();
        }
        let buffered_bytes = st.head.bytes + st.frozen.as_ref().map_or(0, |f| f.bytes);
        if mode == WriteMode::Buffered
            && buffered_bytes >= self.config.auto_buffer.overflow_buffer_bytes
        {
            return Err(VectorError::Overflow {
                buffer_size: (st.head.entries + st.frozen.as_ref().map_or(0, |f| f.entries)) as u64,
            });
        }
        let payload = record::encode_ops(collection, coll.id, &ops);
        let (t, lsn) = append(record::VECTOR_OPS, payload).map_err(VectorError::Append)?;
        st.last_lsn = lsn;
        st.ops_since_snapshot += ops.len() as u64;
        match mode {
            WriteMode::Buffered => {
                let n = ops.len() as u64;
                for op in ops {
                    st.head.insert(coll.id, lsn, op);
                }
                self.counters
                    .vectors_buffered
                    .fetch_add(n, Ordering::Relaxed);
                self.metrics.vectors_buffered.inc_by(n);
                self.set_gauge(&st);
                let outcome = self.outcome(&st);
                Ok((t, outcome))
            }
            WriteMode::Direct => {
                // Older buffered operations on these pks are superseded (a later flush must not
                // apply them over this write); until applied, this write is what reads see.
                for op in &ops {
                    st.head.remove(coll.id, op.pk(), None);
                    st.inflight.insert(coll.id, lsn, op.clone());
                }
                self.set_gauge(&st);
                let outcome = self.outcome(&st);
                let ticket = self.sequencer.ticket();
                drop(st);
                let _turn = ticket.wait();
                let pks: Vec<String> = ops.iter().map(|op| op.pk().to_string()).collect();
                let applied = coll.apply(ops, self.config.apply_threads);
                // Still in the turn: nothing applied after this write can be hidden by it.
                let mut st = self.lock_state();
                for pk in &pks {
                    st.inflight.remove(coll.id, pk, Some(lsn));
                }
                drop(st);
                applied?;
                Ok((t, outcome))
            }
        }
    }

    /// The `current_size` gauge: operations buffered or being flushed (as the stats count).
    fn set_gauge(&self, st: &State) {
        let frozen = st.frozen.as_ref().map_or(0, |f| f.entries);
        self.metrics
            .current_size
            .set((st.head.entries + frozen) as i64);
    }

    fn outcome(&self, st: &State) -> WriteOutcome {
        let cfg = &self.config.auto_buffer;
        let flush_due = if st.head.entries >= cfg.max_vectors_per_buffer {
            Some(FlushTrigger::Count)
        } else if st.head.bytes >= cfg.max_buffer_bytes {
            Some(FlushTrigger::Memory)
        } else {
            None
        };
        WriteOutcome {
            buffer_size: (st.head.entries + st.frozen.as_ref().map_or(0, |f| f.entries)) as u64,
            flush_due,
        }
    }

    /// Checks that need no collection: pk and metadata sizes, finite components.
    fn check_shapes<E>(&self, ops: &[Op]) -> Result<(), VectorError<E>> {
        // An Expire is resolved against the state before its batch, while apply keeps the last
        // operation per pk: a batch mixing them could resolve differently on replay.
        let expires = ops
            .iter()
            .filter(|op| matches!(op, Op::Expire { .. }))
            .count();
        if expires > 0 && expires < ops.len() {
            return Err(VectorError::InvalidEntity {
                index: 0,
                field: "op",
                reason: "expire operations are logged alone, never mixed with other writes".into(),
            });
        }
        for (index, op) in ops.iter().enumerate() {
            let bad = |field, reason: String| {
                Err(VectorError::InvalidEntity {
                    index,
                    field,
                    reason,
                })
            };
            let pk = op.pk();
            if pk.is_empty()
                || (pk.len() > self.config.max_pk_chars
                    && pk.chars().count() > self.config.max_pk_chars)
            {
                return bad(
                    "pk",
                    format!("must be 1 to {} characters", self.config.max_pk_chars),
                );
            }
            if let Some(e) = op.entity() {
                if e.vector.is_empty() {
                    return bad("vector", "must not be empty".into());
                }
                if let Some(i) = e.vector.iter().position(|x| !x.is_finite()) {
                    return bad("vector", format!("component {i} is not a finite f32"));
                }
                let meta_bytes = serde_json::to_vec(&e.metadata).map_or(usize::MAX, |v| v.len());
                if meta_bytes > self.config.max_metadata_bytes {
                    // A size a schema cannot state (bytes of the object as JSON).
                    return Err(VectorError::Mismatched {
                        index,
                        field: "metadata",
                        reason: format!(
                            "{meta_bytes} bytes as JSON; at most {}",
                            self.config.max_metadata_bytes
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn check_entities<E>(&self, c: &CollectionConfig, ops: &[Op]) -> Result<(), VectorError<E>> {
        for (index, op) in ops.iter().enumerate() {
            let Some(e) = op.entity() else { continue };
            check_vector(c, &e.vector).map_err(|reason| VectorError::Mismatched {
                index,
                field: "vector",
                reason,
            })?;
        }
        Ok(())
    }

    /// Updates and removes need the entity to exist (as of the operations before them).
    /// `indexed` says which pks the index held when looked up just before the state lock; the
    /// logged but unapplied operations (buffer, in-flight direct writes) override it. A pk
    /// missing from `indexed` counts as absent, and so does an entity expired at `now` (as a
    /// get answers), whether the sweep has removed it yet or not.
    fn check_exists<E>(
        &self,
        st: &State,
        coll: Option<&Collection>,
        indexed: &HashMap<String, bool>,
        ops: &[Op],
        now: i64,
    ) -> Result<(), VectorError<E>> {
        let mut in_request: HashMap<&str, bool> = HashMap::new();
        for (index, op) in ops.iter().enumerate() {
            let exists_now = |pk: &str| -> bool {
                if let Some(&e) = in_request.get(pk) {
                    return e;
                }
                let Some(c) = coll else { return false };
                match newest(st, c.id, pk).map(|p| &*p.op) {
                    None | Some(Op::Expire { .. }) => indexed.get(pk).copied().unwrap_or(false),
                    Some(op) => op.entity().is_some_and(|e| !e.expired(now)),
                }
            };
            let must_exist = matches!(op, Op::Update(_) | Op::Remove { .. });
            if must_exist && !exists_now(op.pk()) {
                return Err(VectorError::NotFound {
                    index,
                    pk: op.pk().to_string(),
                });
            }
            in_request.insert(op.pk(), op.entity().is_some_and(|e| !e.expired(now)));
        }
        Ok(())
    }

    // ----- flush -----

    /// Which threshold, if any, calls for a flush now.
    pub fn due(&self) -> Option<FlushTrigger> {
        let st = self.lock_state();
        if st.head.is_empty() {
            return None;
        }
        let cfg = &self.config.auto_buffer;
        if st.head.entries >= cfg.max_vectors_per_buffer {
            Some(FlushTrigger::Count)
        } else if st.head.bytes >= cfg.max_buffer_bytes {
            Some(FlushTrigger::Memory)
        } else if st
            .head
            .first_insert
            .is_some_and(|t| t.elapsed().as_millis() as u64 >= cfg.flush_interval_ms)
        {
            Some(FlushTrigger::Age)
        } else {
            None
        }
    }

    /// Milliseconds until the age trigger is due, if the buffer holds anything.
    pub fn ms_until_age_due(&self) -> Option<u64> {
        let st = self.lock_state();
        let first = st.head.first_insert?;
        Some(
            self.config
                .auto_buffer
                .flush_interval_ms
                .saturating_sub(first.elapsed().as_millis() as u64),
        )
    }

    /// Applies the buffer to the indexes (in parallel). Not durable by itself: the WAL holds
    /// the operations until a snapshot covers them.
    pub fn flush(&self, trigger: FlushTrigger) -> Result<FlushOutcome, IndexError> {
        let _one = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (frozen, colls, ticket) = {
            let mut st = self.lock_state();
            if st.head.is_empty() {
                return Ok(FlushOutcome::default());
            }
            let frozen = Arc::new(std::mem::take(&mut st.head));
            st.frozen = Some(frozen.clone());
            let colls: HashMap<u64, Arc<Collection>> =
                st.collections.values().map(|c| (c.id, c.clone())).collect();
            (frozen, colls, self.sequencer.ticket())
        };
        let result = {
            let _turn = ticket.wait();
            let result = self.apply_buffer(&frozen, &colls);
            // Cleared inside the turn: a direct write applied after this flush must never be
            // shadowed by an older operation of the frozen buffer.
            let mut st = self.lock_state();
            st.frozen = None;
            self.set_gauge(&st);
            result
        };
        result?;
        let n = frozen.entries as u64;
        if trigger == FlushTrigger::Replay {
            return Ok(FlushOutcome { vectors: n });
        }
        self.counters
            .vectors_flushed
            .fetch_add(n, Ordering::Relaxed);
        self.counters.flush_count.fetch_add(1, Ordering::Relaxed);
        if trigger == FlushTrigger::Manual {
            self.counters
                .manual_flush_count
                .fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .last_flush_ms
            .store(now_ms() as u64, Ordering::Relaxed);
        self.metrics.vectors_flushed.inc_by(n);
        self.metrics.flush_count.inc();
        Ok(FlushOutcome { vectors: n })
    }

    fn apply_buffer(
        &self,
        buffer: &Buffer,
        colls: &HashMap<u64, Arc<Collection>>,
    ) -> Result<(), IndexError> {
        for (id, ops) in &buffer.ops {
            // A collection deleted since: its operations died with it.
            let Some(c) = colls.get(id) else { continue };
            let ops: Vec<Op> = ops.values().map(|p| (*p.op).clone()).collect();
            c.apply(ops, self.config.apply_threads)?;
        }
        Ok(())
    }

    // ----- snapshots -----

    /// Whether enough has changed since the last snapshot to take one.
    pub fn snapshot_due(&self) -> bool {
        let st = self.lock_state();
        st.last_lsn > st.snapshot_lsn
            && (st.ops_since_snapshot >= self.config.snapshot_after_ops
                || st.last_snapshot.elapsed().as_millis() as u64
                    >= self.config.snapshot_interval_ms)
    }

    /// Writes a snapshot of every collection and returns the LSN it covers (`None` if nothing
    /// changed since the last one). Searches and buffered writes continue meanwhile; direct
    /// writes wait for it.
    ///
    /// `wait_durable(B)` must return once the WAL is durable up to `B`, the LSN the snapshot
    /// claims to cover: a snapshot may never be ahead of the log it lets be checkpointed.
    pub fn snapshot(
        &self,
        wait_durable: impl FnOnce(Lsn) -> Result<(), String>,
    ) -> Result<Option<Lsn>, SnapshotError> {
        let _one = self
            .snapshot_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (bound, colls, ticket, ops_at_start) = {
            let st = self.lock_state();
            let oldest_buffered = [st.head.min_lsn, st.frozen.as_ref().and_then(|f| f.min_lsn)]
                .into_iter()
                .flatten()
                .min();
            let bound = match oldest_buffered {
                Some(l) => Lsn(l.get() - 1),
                None => st.last_lsn,
            };
            if bound <= st.snapshot_lsn {
                return Ok(None);
            }
            let colls: Vec<Arc<Collection>> = st.collections.values().cloned().collect();
            (bound, colls, self.sequencer.ticket(), st.ops_since_snapshot)
        };
        let turn = ticket.wait();
        let mut manifest = snapshot::new_manifest(bound.get());
        for c in &colls {
            let index_file = snapshot::index_file(c.id, bound.get());
            let catalog_file = snapshot::catalog_file(c.id, bound.get());
            let index_path = self.dir.join(&index_file);
            // usearch writes the file itself; the fault seam sees its creation.
            sluice_wal::faults::create(&index_path, || Ok(()))
                .map_err(snapshot::io_err(&index_path))?;
            let catalog = c.save(&index_path).map_err(|e| SnapshotError::Damaged {
                path: index_path.clone(),
                reason: e.to_string(),
            })?;
            let index_crc = snapshot::sync_and_crc(&index_path)?;
            let catalog_crc = snapshot::write_synced(&self.dir.join(&catalog_file), &catalog)?;
            manifest.collections.push(SavedCollection {
                id: c.id,
                config: c.config.clone(),
                index_file,
                index_crc,
                catalog_file,
                catalog_crc,
            });
        }
        drop(turn);
        wait_durable(bound).map_err(|reason| SnapshotError::Damaged {
            path: self.dir.join(snapshot::MANIFEST),
            reason: format!("the WAL did not become durable up to {bound}: {reason}"),
        })?;
        snapshot::commit(&self.dir, &manifest)?;
        let mut st = self.lock_state();
        st.snapshot_lsn = st.snapshot_lsn.max(bound);
        st.ops_since_snapshot = st.ops_since_snapshot.saturating_sub(ops_at_start);
        st.last_snapshot = Instant::now();
        drop(st);
        self.counters.snapshot_count.fetch_add(1, Ordering::Relaxed);
        self.metrics.snapshots.inc();
        Ok(Some(bound))
    }

    // ----- recovery -----

    /// Replays one WAL record (records at or below the snapshot's LSN are skipped). Operations
    /// go to the buffer, which is applied whenever it fills and at [`Self::finish_replay`].
    pub fn replay(&self, kind: RecordKind, payload: &[u8], lsn: Lsn) -> Result<(), String> {
        if lsn <= self.snapshot_lsn() {
            return Ok(());
        }
        match kind {
            record::VECTOR_OPS => {
                let (name, created, ops) =
                    record::decode_ops(payload).map_err(|e| e.to_string())?;
                {
                    let mut st = self.lock_state();
                    st.last_lsn = lsn;
                    // The incarnation the operations were logged against is gone (deleted, or
                    // deleted and created again, after this record; the snapshot was taken
                    // later than its LSN): a later record deletes or recreates it, so they are
                    // dead.
                    let Some(id) = st
                        .collections
                        .get(&name)
                        .map(|c| c.id)
                        .filter(|id| *id == created)
                    else {
                        return Ok(());
                    };
                    for op in ops {
                        if let Some(op) = resolve_expire(&st, id, op) {
                            st.head.insert(id, lsn, op);
                        }
                    }
                }
                if matches!(self.due(), Some(FlushTrigger::Count | FlushTrigger::Memory)) {
                    self.flush(FlushTrigger::Replay)
                        .map_err(|e| e.to_string())?;
                }
            }
            record::COLLECTION => {
                let change = record::decode_collection(payload).map_err(|e| e.to_string())?;
                // Keep order: what is buffered happened before this change.
                self.flush(FlushTrigger::Replay)
                    .map_err(|e| e.to_string())?;
                let mut st = self.lock_state();
                match change {
                    CollectionChange::Create(config) => {
                        // Replayed over a snapshot that already holds a collection of that name
                        // (this incarnation, or a later one): start afresh; the records after
                        // this one rebuild it.
                        Self::remove_collection(&mut st, &config.name, lsn);
                        self.install_collection(&mut st, config, lsn)
                            .map_err(|e| e.to_string())?;
                    }
                    CollectionChange::Delete(name) => Self::remove_collection(&mut st, &name, lsn),
                }
            }
            other => return Err(format!("not a vector record kind: {}", other.0)),
        }
        Ok(())
    }

    /// Applies a record shipped from a primary: `append` logs it at the primary's LSN (and
    /// returns that LSN) under the state lock, as a local write is logged; operations go to
    /// the buffer (as in replay), collection changes take effect at once. A record the last
    /// snapshot already holds (after a snapshot transfer) is logged but not applied again.
    /// Returns the flush the buffer asks for, if any.
    pub fn apply_replicated<E>(
        &self,
        kind: RecordKind,
        payload: &[u8],
        append: impl FnOnce() -> Result<Lsn, E>,
    ) -> Result<Option<FlushTrigger>, VectorError<E>> {
        let invalid = |e: record::DecodeError| VectorError::InvalidEntity {
            index: 0,
            field: "record",
            reason: e.to_string(),
        };
        match kind {
            record::VECTOR_OPS => {
                let (name, created, ops) = record::decode_ops(payload).map_err(invalid)?;
                let mut st = self.lock_state();
                let buffered = st.head.bytes + st.frozen.as_ref().map_or(0, |f| f.bytes);
                if buffered >= self.config.auto_buffer.overflow_buffer_bytes {
                    return Err(VectorError::Overflow {
                        buffer_size: (st.head.entries + st.frozen.as_ref().map_or(0, |f| f.entries))
                            as u64,
                    });
                }
                let lsn = append().map_err(VectorError::Append)?;
                if lsn <= st.snapshot_lsn {
                    return Ok(None);
                }
                st.last_lsn = lsn;
                st.ops_since_snapshot += ops.len() as u64;
                // Operations on an incarnation that no longer exists are dead (see replay).
                let Some(id) = st
                    .collections
                    .get(&name)
                    .map(|c| c.id)
                    .filter(|id| *id == created)
                else {
                    return Ok(None);
                };
                let n = ops.len() as u64;
                for op in ops {
                    if let Some(op) = resolve_expire(&st, id, op) {
                        st.head.insert(id, lsn, op);
                    }
                }
                self.counters
                    .vectors_buffered
                    .fetch_add(n, Ordering::Relaxed);
                self.metrics.vectors_buffered.inc_by(n);
                self.set_gauge(&st);
                Ok(self.outcome(&st).flush_due)
            }
            record::COLLECTION => {
                let change = record::decode_collection(payload).map_err(invalid)?;
                // Keep order: what is buffered happened before this change.
                self.flush(FlushTrigger::Replay)?;
                let mut st = self.lock_state();
                let lsn = append().map_err(VectorError::Append)?;
                if lsn <= st.snapshot_lsn {
                    return Ok(None);
                }
                match change {
                    CollectionChange::Create(config) => {
                        Self::remove_collection(&mut st, &config.name, lsn);
                        self.install_collection(&mut st, config, lsn)?;
                    }
                    CollectionChange::Delete(name) => Self::remove_collection(&mut st, &name, lsn),
                }
                self.set_gauge(&st);
                Ok(None)
            }
            other => Err(VectorError::InvalidEntity {
                index: 0,
                field: "record",
                reason: format!("not a vector record kind: {}", other.0),
            }),
        }
    }

    // ----- snapshot transfer (replication) -----

    /// Every collection with its id (the LSN of its creation record), by name.
    pub fn collections_with_ids(&self) -> Vec<(CollectionConfig, u64)> {
        let st = self.lock_state();
        let mut out: Vec<_> = st
            .collections
            .values()
            .map(|c| (c.config.clone(), c.id))
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }

    /// The pks the index of `collection` holds (call after a flush to cover buffered writes).
    pub fn indexed_pks(&self, collection: &str) -> Vec<String> {
        let coll = self.lock_state().collections.get(collection).cloned();
        coll.map_or_else(Vec::new, |c| c.read_catalog().pks())
    }

    /// The collection and, taken under the same state lock, its logged but unapplied
    /// operations (the newest per pk).
    fn with_pending(
        &self,
        collection: &str,
    ) -> Result<(Arc<Collection>, HashMap<String, Pending>), VectorError> {
        let st = self.lock_state();
        let coll = st
            .collections
            .get(collection)
            .cloned()
            .ok_or_else(|| VectorError::CollectionNotFound(collection.to_string()))?;
        let pending = pending_ops(&st, coll.id);
        Ok((coll, pending))
    }

    /// Every pk of `collection`, indexed or buffered (buffered removals taken out), sorted:
    /// what an export walks (each read back with [`Self::get`], which hides the expired).
    pub fn pks(&self, collection: &str) -> Result<Vec<String>, VectorError> {
        let (coll, pending) = self.with_pending(collection)?;
        let mut pks: HashSet<String> = coll.read_catalog().pks().into_iter().collect();
        for (pk, p) in pending {
            match &*p.op {
                Op::Add(_) | Op::Update(_) => {
                    pks.insert(pk);
                }
                Op::Remove { .. } => {
                    pks.remove(&pk);
                }
                Op::Expire { .. } => {}
            }
        }
        let mut pks: Vec<String> = pks.into_iter().collect();
        pks.sort_unstable();
        Ok(pks)
    }

    /// Installs a collection under its primary's id while loading a snapshot taken at `at`
    /// (see [`Self::load_entities`]). A collection created after `at` cannot be part of that
    /// state (its creation record follows in the WAL) and is refused; the engine's LSN is not
    /// raised by the id, so the snapshot stands for `at` exactly.
    pub fn load_collection(
        &self,
        config: CollectionConfig,
        id: u64,
        at: Lsn,
    ) -> Result<(), VectorError> {
        config.validate(self.config.max_dimension)?;
        if id > at.0 {
            return Err(VectorError::InvalidCollection(InvalidCollection {
                field: "id",
                reason: format!(
                    "collection {:?} was created at LSN {id}, after the snapshot's LSN {at}",
                    config.name
                ),
            }));
        }
        let mut st = self.lock_state();
        let last = st.last_lsn;
        Self::remove_collection(&mut st, &config.name, last);
        self.install_collection(&mut st, config, Lsn(id))?;
        st.last_lsn = last;
        Ok(())
    }

    /// Buffers entities of a snapshot being loaded as of `lsn` (the snapshot's LSN; the WAL
    /// continues after it). Returns the flush the buffer asks for. Finish with a flush and a
    /// snapshot of the engine.
    pub fn load_entities(
        &self,
        collection: &str,
        entities: Vec<EntityData>,
        lsn: Lsn,
    ) -> Result<Option<FlushTrigger>, VectorError> {
        let mut st = self.lock_state();
        let coll = st
            .collections
            .get(collection)
            .cloned()
            .ok_or_else(|| VectorError::CollectionNotFound(collection.to_string()))?;
        for (index, e) in entities.iter().enumerate() {
            check_vector(&coll.config, &e.vector).map_err(|reason| VectorError::Mismatched {
                index,
                field: "vector",
                reason,
            })?;
        }
        let n = entities.len() as u64;
        for e in entities {
            st.head.insert(coll.id, lsn, Op::Add(e));
        }
        st.last_lsn = st.last_lsn.max(lsn);
        st.ops_since_snapshot += n;
        self.set_gauge(&st);
        Ok(self.outcome(&st).flush_due)
    }

    /// Marks everything up to `lsn` as held (a loaded snapshot with no vector data).
    pub fn load_done(&self, lsn: Lsn) {
        let mut st = self.lock_state();
        st.last_lsn = st.last_lsn.max(lsn);
        st.ops_since_snapshot += 1;
    }

    /// Applies what replay buffered.
    pub fn finish_replay(&self) -> Result<(), IndexError> {
        self.flush(FlushTrigger::Replay).map(|_| ())
    }

    // ----- reads -----

    /// The entity `pk` of `collection`, buffered or indexed.
    pub fn get(&self, collection: &str, pk: &str) -> Result<Option<Entity>, VectorError> {
        let (coll, buffered) = {
            let st = self.lock_state();
            let coll = st
                .collections
                .get(collection)
                .cloned()
                .ok_or_else(|| VectorError::CollectionNotFound(collection.to_string()))?;
            let buffered = newest(&st, coll.id, pk)
                .map(|p| p.op.clone())
                .filter(|op| !matches!(**op, Op::Expire { .. }));
            (coll, buffered)
        };
        let now = now_ms();
        if let Some(op) = buffered {
            return Ok(op.entity().filter(|e| !e.expired(now)).map(|e| Entity {
                pk: e.pk.clone(),
                vector: e.vector.clone(),
                metadata: e.metadata.clone(),
                timestamp_ms: e.timestamp_ms,
                expires_at_ms: e.expires_at_ms,
            }));
        }
        Ok(coll.get(pk, now).map(|(vector, s)| Entity {
            pk: s.pk,
            vector,
            metadata: s.metadata,
            timestamp_ms: s.timestamp_ms,
            expires_at_ms: s.expires_at_ms,
        }))
    }

    /// Removes up to `limit` entities of `collection` expired at `now_ms` (indexed or
    /// buffered) with one logged write of `Expire` operations, applied directly. Returns how
    /// many it asked to remove and the append's value, or `None` when nothing was expired.
    pub fn expire<T, E>(
        &self,
        collection: &str,
        now_ms: i64,
        limit: usize,
        append: impl FnMut(RecordKind, Vec<u8>) -> Result<(T, Lsn), E>,
    ) -> Result<Option<(T, usize)>, VectorError<E>> {
        let Ok((coll, pending)) = self.with_pending(collection) else {
            return Ok(None);
        };
        // An indexed entity whose newest state is pending decides by that state: a live rewrite
        // is skipped (the sweep would resolve its Expire to nothing), so look past as many
        // indexed candidates as there are pending operations.
        let due = |pk: &str| match pending.get(pk).map(|p| &*p.op) {
            None | Some(Op::Expire { .. }) => true,
            Some(op) => op.entity().is_some_and(|e| e.expired(now_ms)),
        };
        let mut pks: Vec<String> = coll
            .expired(now_ms, limit.saturating_add(pending.len()))
            .into_iter()
            .map(|(pk, _)| pk)
            .filter(|pk| due(pk))
            .collect();
        let mut buffered: Vec<&String> = pending
            .iter()
            .filter(|(_, p)| p.op.entity().is_some_and(|e| e.expired(now_ms)))
            .map(|(pk, _)| pk)
            .collect();
        buffered.sort();
        pks.extend(buffered.into_iter().cloned());
        let mut seen = HashSet::new();
        pks.retain(|pk| seen.insert(pk.clone()));
        pks.truncate(limit);
        if pks.is_empty() {
            return Ok(None);
        }
        let n = pks.len();
        let ops = pks
            .into_iter()
            .map(|pk| Op::Expire { pk, at_ms: now_ms })
            .collect();
        let (t, _) = self.write(collection, ops, WriteMode::Direct, append)?;
        Ok(Some((t, n)))
    }

    /// The `k` best entities for the query, buffered and indexed, best first.
    pub fn search(
        &self,
        collection: &str,
        req: &SearchRequest,
    ) -> Result<Vec<SearchHit>, VectorError> {
        if req.k == 0 || req.k > self.config.max_k {
            return Err(VectorError::InvalidEntity {
                index: 0,
                field: "k",
                reason: format!("must be 1 to {}", self.config.max_k),
            });
        }
        let (coll, pending) = self.with_pending(collection)?;
        check_vector(&coll.config, &req.vector).map_err(|reason| VectorError::Mismatched {
            index: 0,
            field: "vector",
            reason,
        })?;
        let distance = coll.config.distance;
        // A pending Expire hides nothing the time predicate does not already hide.
        let shadowed: HashSet<String> = pending
            .iter()
            .filter(|(_, p)| !matches!(*p.op, Op::Expire { .. }))
            .map(|(pk, _)| pk.clone())
            .collect();
        let spec = SearchSpec {
            k: req.k,
            ef: req.ef.unwrap_or(coll.config.hnsw.ef_search),
            filter: req.filter.as_ref(),
            shadowed: &shadowed,
            now_ms: req.now_ms.unwrap_or_else(now_ms),
            time_range: req.time_range,
            decay: req.decay,
        };
        let mut hits: Vec<Hit> = pending
            .values()
            .filter_map(|p| p.op.entity())
            .filter(|e| spec.admits(&e.metadata, e.timestamp_ms, e.expires_at_ms))
            .map(|e| {
                let d = distance.between(&req.vector, &e.vector);
                Hit {
                    pk: e.pk.clone(),
                    distance: d,
                    rank: spec.rank(d, e.timestamp_ms),
                    metadata: e.metadata.clone(),
                    timestamp_ms: e.timestamp_ms,
                    expires_at_ms: e.expires_at_ms,
                }
            })
            .collect();
        hits.extend(coll.search(&req.vector, &spec)?);
        hits.sort_by(|a, b| a.rank.total_cmp(&b.rank).then(a.pk.cmp(&b.pk)));
        hits.truncate(req.k);
        Ok(hits
            .into_iter()
            .map(|h| SearchHit {
                score: distance.score(h.distance),
                pk: h.pk,
                distance: h.distance,
                rank: h.rank,
                metadata: h.metadata,
                timestamp_ms: h.timestamp_ms,
                expires_at_ms: h.expires_at_ms,
            })
            .collect())
    }

    // ----- statistics -----

    pub fn stats(&self) -> BufferStats {
        let (size, memory) = {
            let st = self.lock_state();
            let f = st.frozen.as_ref();
            (
                st.head.entries + f.map_or(0, |f| f.entries),
                st.head.bytes + f.map_or(0, |f| f.bytes),
            )
        };
        let c = &self.counters;
        let flushes = c.flush_count.load(Ordering::Relaxed);
        let manual = c.manual_flush_count.load(Ordering::Relaxed);
        let last = c.last_flush_ms.load(Ordering::Relaxed);
        BufferStats {
            vectors_buffered: c.vectors_buffered.load(Ordering::Relaxed),
            vectors_flushed: c.vectors_flushed.load(Ordering::Relaxed),
            flush_count: flushes,
            auto_flush_count: flushes.saturating_sub(manual),
            manual_flush_count: manual,
            current_buffer_size: size as u64,
            current_buffer_memory: memory as u64,
            last_flush_time_ms: (last > 0).then_some(last as i64),
            snapshot_count: c.snapshot_count.load(Ordering::Relaxed),
            last_snapshot_lsn: self.snapshot_lsn().get(),
        }
    }
}

/// Checks a vector against a collection: dimension, and what the distance and precision need.
pub fn check_vector(c: &CollectionConfig, v: &[f32]) -> Result<(), String> {
    if v.len() != c.dimension {
        return Err(format!(
            "has {} components; collection {:?} has dimension {}",
            v.len(),
            c.name,
            c.dimension
        ));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!("component {i} is not a finite f32"));
    }
    if !v.iter().map(|x| x * x).sum::<f32>().is_finite() {
        return Err("components are too large: the squared norm overflows f32".into());
    }
    if c.precision == Precision::F16
        && let Some(i) = v.iter().position(|x| x.abs() > 65504.0)
    {
        return Err(format!(
            "component {i} is beyond ±65504, which f16 precision cannot store"
        ));
    }
    if c.distance == Distance::Cosine && v.iter().all(|x| *x == 0.0) {
        return Err("the zero vector has no cosine distance".into());
    }
    if c.precision == Precision::I8
        && let Some(i) = v.iter().position(|x| !(-1.0..=1.0).contains(x))
    {
        return Err(format!(
            "component {i} is outside [-1, 1], which i8 precision cannot store"
        ));
    }
    Ok(())
}

pub use sluice_wal::now_ms;

/// Builds an entity operation (helper for callers and tests).
pub fn entity(pk: &str, vector: Vec<f32>, metadata: Map<String, Value>) -> EntityData {
    EntityData {
        pk: pk.to_string(),
        vector,
        metadata,
        timestamp_ms: None,
        expires_at_ms: None,
    }
}
