//! One collection: its usearch HNSW index and the catalogue of its entities.
//!
//! # Keys
//! The index knows vectors by `u64` keys; the catalogue maps `pk → key` and `key → (pk,
//! metadata)`. Every add or update gets a fresh key (never reused), and the entity's previous
//! key is removed from the index after the catalogue points at the new one. So a key is live
//! exactly when the catalogue holds it, and a search that checks keys against the catalogue
//! (under its read lock, held for the whole search) never sees a half-applied write: a key added
//! but not yet published, or one being replaced, is simply not live. usearch reuses the slots of
//! removed keys for later adds, so deletes free their space without a rebuild, and its removal
//! does not block concurrent searches.
//!
//! # Concurrency
//! usearch allows concurrent add, remove and search, each using one of a fixed number of
//! per-thread contexts; more callers than contexts fail, so callers take a permit first
//! ([`Permits`]). Growing capacity (`reserve`) must not overlap anything else: it takes the
//! index's write lock, everything else its read lock. Mutations of one collection are ordered
//! by the engine (one applier at a time); searches run alongside them.
//!
//! # Filters and exact scans
//! Filters are evaluated inside the index search (usearch's filtered search calls back per
//! candidate), so `k` results come back when the graph reaches them. A very selective filter
//! disconnects the graph from the point of view of the search and recall collapses, so a search
//! first counts the filter's matches (stopping early once they are many): when they are few
//! (at most `max(EXACT_SCAN_MIN, live / EXACT_SCAN_DIVISOR)`), it scans exactly those vectors
//! instead, which is both exact and cheaper. If the filtered index search still finds fewer
//! than `k`, it falls back to the exact scan too.
//!
//! # Time: expiry, time ranges and recency decay
//! An entity may carry a time (`timestamp_ms`) and an expiry (`expires_at_ms`); the catalogue
//! keeps both in ordered indexes (`by_time`, `by_expiry`). An expired entity is not live: the
//! same predicate that applies filters drops it inside the traversal, at once, whatever the
//! background sweep has removed. A time range is one more predicate inside the traversal, and
//! its matches are counted and enumerated from `by_time` (a range walk, not a scan of the
//! catalogue), so a narrow window goes to the exact scan of just its entities.
//!
//! A recency decay ranks by `distance − weight · 2^(−age / half_life)` (an entity without a
//! time gets no bonus). No fixed prefix is rescored: the search is a threshold algorithm over
//! two ordered streams, the index's nearest-first answer and `by_time` newest first. Every
//! entity either stream yields is scored; an entity neither has yielded is at least as far as
//! the index stream's last distance and at most as recent as the time stream's last entity, so
//! its score is at least `d_last − weight · bonus_last`. Once the `k`-th best score is at or
//! below that bound nothing unseen can enter the answer; otherwise both streams are deepened
//! (×4) and the search goes on, ending in an exact scan when the depth covers the collection.
//!
//! # Per-request `ef`
//! usearch's search expansion is a setting of the whole index, and a search explores
//! `max(expansion, count)` candidates. The index's own expansion is kept at 1 and each search
//! asks for `count = max(k, ef)` and keeps the best `k`: the same exploration as a search with
//! expansion `ef`, without racing other searches over a shared setting. When `count` covers
//! every entity of the collection, the search is an exact scan instead: it computes the same
//! number of distances, and it cannot miss an entity that removals left unreachable in the
//! graph. So a search with `ef` at least the collection's size is exact, whatever order the
//! index was built in (after a restart, a snapshot load or on a replica).

use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use usearch::{Index, IndexOptions};

use crate::distance::{Distance, Precision};
use crate::filter::Filter;
use crate::record::{EntityData, Op};

/// A filter with at most this many matches is answered by an exact scan...
pub const EXACT_SCAN_MIN: usize = 1000;
/// ...or at most this fraction (1/n) of the live entities, whichever is larger.
pub const EXACT_SCAN_DIVISOR: usize = 50;
/// Longest collection name.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct HnswParams {
    /// Graph connectivity (`M`).
    pub m: usize,
    /// Candidates explored while inserting.
    pub ef_construction: usize,
    /// Default candidates explored while searching (a request's `ef` overrides it).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 128,
            ef_search: 64,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionConfig {
    pub name: String,
    pub dimension: usize,
    pub distance: Distance,
    pub precision: Precision,
    pub hnsw: HnswParams,
    /// Entities written without `expires_at_ms` expire this long after they are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// The longest TTL: 100 years.
pub const MAX_TTL_MS: u64 = 100 * 366 * 86_400_000;

/// A collection definition that cannot be used; `field` names the offending field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidCollection {
    pub field: &'static str,
    pub reason: String,
}

impl CollectionConfig {
    pub fn validate(&self, max_dimension: usize) -> Result<(), InvalidCollection> {
        let bad = |field, reason: String| Err(InvalidCollection { field, reason });
        if !valid_name(&self.name) {
            return bad(
                "name",
                format!(
                    "1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '_' and '-', starting with a letter or digit"
                ),
            );
        }
        if self.dimension == 0 || self.dimension > max_dimension {
            return bad("dimension", format!("must be 1 to {max_dimension}"));
        }
        let h = &self.hnsw;
        if !(2..=128).contains(&h.m) {
            return bad("hnsw.m", "must be 2 to 128".into());
        }
        if !(1..=4096).contains(&h.ef_construction) {
            return bad("hnsw.ef_construction", "must be 1 to 4096".into());
        }
        if !(1..=4096).contains(&h.ef_search) {
            return bad("hnsw.ef_search", "must be 1 to 4096".into());
        }
        if let Some(ttl) = self.ttl_ms
            && !(1..=MAX_TTL_MS).contains(&ttl)
        {
            return bad("ttl_ms", format!("must be 1 to {MAX_TTL_MS} (100 years)"));
        }
        Ok(())
    }
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why an index operation failed (usearch reports C++ exceptions as text).
#[derive(Debug, thiserror::Error)]
#[error("vector index: {0}")]
pub struct IndexError(pub String);

fn index_err(e: impl std::fmt::Display) -> IndexError {
    IndexError(e.to_string())
}

/// A counting semaphore bounding concurrent index calls to usearch's thread contexts.
pub struct Permits {
    free: Mutex<usize>,
    cv: Condvar,
}

pub struct Permit<'a>(&'a Permits);

impl Permits {
    fn new(n: usize) -> Permits {
        Permits {
            free: Mutex::new(n),
            cv: Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.cv.notify_one();
    }
}

/// A live entity's catalogue entry.
#[derive(Clone, Debug)]
pub struct Stored {
    pub pk: String,
    pub metadata: Map<String, Value>,
    pub timestamp_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
}

impl Stored {
    fn live_at(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_none_or(|t| t > now_ms)
    }
}

#[derive(Default)]
pub struct Catalog {
    by_pk: HashMap<String, u64>,
    by_key: HashMap<u64, Stored>,
    /// `(timestamp_ms, key)` of the entities that have a time.
    by_time: BTreeSet<(i64, u64)>,
    /// `(expires_at_ms, key)` of the entities that expire.
    by_expiry: BTreeSet<(i64, u64)>,
    next_key: u64,
}

impl Catalog {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn contains_pk(&self, pk: &str) -> bool {
        self.by_pk.contains_key(pk)
    }

    /// Every live pk.
    pub fn pks(&self) -> Vec<String> {
        self.by_pk.keys().cloned().collect()
    }

    /// The stored state of `pk`.
    pub fn get(&self, pk: &str) -> Option<&Stored> {
        self.by_key.get(self.by_pk.get(pk)?)
    }

    fn insert(&mut self, key: u64, s: Stored) -> Option<u64> {
        if let Some(t) = s.timestamp_ms {
            self.by_time.insert((t, key));
        }
        if let Some(t) = s.expires_at_ms {
            self.by_expiry.insert((t, key));
        }
        let old = self.by_pk.insert(s.pk.clone(), key);
        self.by_key.insert(key, s);
        old
    }

    /// Forgets `key` (already unlinked from `by_pk`, or about to be).
    fn forget(&mut self, key: u64) {
        if let Some(s) = self.by_key.remove(&key) {
            if let Some(t) = s.timestamp_ms {
                self.by_time.remove(&(t, key));
            }
            if let Some(t) = s.expires_at_ms {
                self.by_expiry.remove(&(t, key));
            }
        }
    }

    /// Up to `limit` entities expired at `now_ms`: `(pk, expires_at_ms)`, soonest first.
    pub fn expired(&self, now_ms: i64, limit: usize) -> Vec<(String, i64)> {
        self.by_expiry
            .range(..=(now_ms, u64::MAX))
            .take(limit)
            .filter_map(|(t, key)| self.by_key.get(key).map(|s| (s.pk.clone(), *t)))
            .collect()
    }

    /// Keys with a time in `range`, oldest first.
    fn in_range(&self, range: TimeRange) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.by_time
            .range((range.from_ms, 0)..=(range.to_ms, u64::MAX))
            .map(|(_, k)| *k)
    }
}

/// An inclusive window of entity times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl TimeRange {
    pub const ALL: TimeRange = TimeRange {
        from_ms: i64::MIN,
        to_ms: i64::MAX,
    };

    pub fn contains(&self, t: Option<i64>) -> bool {
        t.is_some_and(|t| self.from_ms <= t && t <= self.to_ms)
    }
}

/// Recency decay: ranks by `distance − weight · 2^(−age / half_life_ms)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decay {
    pub half_life_ms: f64,
    pub weight: f32,
}

impl Decay {
    /// The bonus of an entity with time `t` at `now_ms`: 1 for now or later, halving every
    /// half-life; 0 without a time.
    pub fn bonus(&self, now_ms: i64, t: Option<i64>) -> f32 {
        match t {
            None => 0.0,
            Some(t) => {
                let age = (now_ms as f64 - t as f64).max(0.0);
                (-age / self.half_life_ms).exp2() as f32
            }
        }
    }

    pub fn rank(&self, distance: f32, now_ms: i64, t: Option<i64>) -> f32 {
        distance - self.weight * self.bonus(now_ms, t)
    }
}

/// One search hit: the entity and its distance (lower is closer).
#[derive(Clone, Debug)]
pub struct Hit {
    pub pk: String,
    pub distance: f32,
    /// What the answer is ordered by: the distance, less the decay bonus when there is one.
    pub rank: f32,
    pub metadata: Map<String, Value>,
    pub timestamp_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
}

impl Hit {
    fn new(s: &Stored, distance: f32, spec: &SearchSpec<'_>) -> Hit {
        Hit {
            pk: s.pk.clone(),
            distance,
            rank: spec.rank(distance, s.timestamp_ms),
            metadata: s.metadata.clone(),
            timestamp_ms: s.timestamp_ms,
            expires_at_ms: s.expires_at_ms,
        }
    }
}

/// What a search needs besides the query vector.
pub struct SearchSpec<'a> {
    pub k: usize,
    pub ef: usize,
    pub filter: Option<&'a Filter>,
    /// Entities whose newest state is in the buffer: the index's version must not be returned.
    pub shadowed: &'a HashSet<String>,
    /// The search's clock: entities expired at this time are not live; decay ages from it.
    pub now_ms: i64,
    pub time_range: Option<TimeRange>,
    pub decay: Option<Decay>,
}

impl SearchSpec<'_> {
    /// Whether an entity's own fields (not its buffering) pass the search's predicates.
    pub fn admits(
        &self,
        metadata: &Map<String, Value>,
        timestamp_ms: Option<i64>,
        expires_at_ms: Option<i64>,
    ) -> bool {
        expires_at_ms.is_none_or(|t| t > self.now_ms)
            && self.time_range.is_none_or(|r| r.contains(timestamp_ms))
            && self.filter.is_none_or(|f| f.matches(metadata))
    }

    pub fn rank(&self, distance: f32, timestamp_ms: Option<i64>) -> f32 {
        match &self.decay {
            Some(d) => d.rank(distance, self.now_ms, timestamp_ms),
            None => distance,
        }
    }
}

pub struct Collection {
    pub id: u64,
    pub config: CollectionConfig,
    index: RwLock<Index>,
    catalog: RwLock<Catalog>,
    permits: Permits,
    threads: usize,
    /// Slots freed by removals and maybe not yet reused: counted in capacity planning.
    freed_slots: Mutex<usize>,
}

impl Collection {
    /// A new, empty collection. `threads` is the most concurrent index calls.
    pub fn new(
        id: u64,
        config: CollectionConfig,
        threads: usize,
    ) -> Result<Collection, IndexError> {
        let index = Index::new(&options(&config)).map_err(index_err)?;
        index
            .reserve_capacity_and_threads(1024, threads)
            .map_err(index_err)?;
        index.change_expansion_search(1);
        Ok(Collection {
            id,
            config,
            index: RwLock::new(index),
            catalog: RwLock::new(Catalog::default()),
            permits: Permits::new(threads),
            threads,
            freed_slots: Mutex::new(0),
        })
    }

    /// Live entities.
    pub fn len(&self) -> usize {
        self.read_catalog().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, pk: &str) -> bool {
        self.read_catalog().contains_pk(pk)
    }

    /// Whether the index holds `pk` not expired at `now_ms`.
    pub fn contains_live(&self, pk: &str, now_ms: i64) -> bool {
        self.read_catalog()
            .get(pk)
            .is_some_and(|s| s.live_at(now_ms))
    }

    pub fn read_catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes the index uses in memory.
    pub fn memory_bytes(&self) -> usize {
        self.read_index().memory_usage()
    }

    /// Applies operations (in order; only one applier at a time per collection). Adds run on up
    /// to `parallelism` threads. On error the catalogue is unchanged; vectors already added
    /// under fresh keys stay invisible (not live).
    pub fn apply(&self, ops: Vec<Op>, parallelism: usize) -> Result<(), IndexError> {
        // The last operation per pk decides; earlier ones in the same batch never become live.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            last.insert(op.pk(), i);
        }
        let mut finals: Vec<&Op> = Vec::with_capacity(last.len());
        for (i, op) in ops.iter().enumerate() {
            if last[op.pk()] == i {
                finals.push(op);
            }
        }
        let adds: Vec<&EntityData> = finals.iter().filter_map(|op| op.entity()).collect();
        let first_key = {
            let mut cat = self.catalog.write().unwrap_or_else(PoisonError::into_inner);
            let k = cat.next_key;
            cat.next_key += adds.len() as u64;
            k
        };
        self.ensure_capacity(adds.len())?;
        self.add_parallel(first_key, &adds, parallelism)?;
        {
            // usearch reuses freed slots for new adds first.
            let mut freed = self
                .freed_slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *freed = freed.saturating_sub(adds.len());
        }
        // Publish: the catalogue points at the new keys; old keys are then removed.
        let mut old_keys = Vec::new();
        {
            let mut cat = self.catalog.write().unwrap_or_else(PoisonError::into_inner);
            let mut key = first_key;
            for op in &finals {
                let old = match op {
                    Op::Add(e) | Op::Update(e) => {
                        let old = cat.insert(
                            key,
                            Stored {
                                pk: e.pk.clone(),
                                metadata: e.metadata.clone(),
                                timestamp_ms: e.timestamp_ms,
                                expires_at_ms: e.expires_at_ms,
                            },
                        );
                        key += 1;
                        old
                    }
                    Op::Remove { pk } => cat.by_pk.remove(pk),
                    Op::Expire { pk, at_ms } => {
                        let due = cat
                            .get(pk)
                            .is_some_and(|s| s.expires_at_ms.is_some_and(|t| t <= *at_ms));
                        if due { cat.by_pk.remove(pk) } else { None }
                    }
                };
                if let Some(old) = old {
                    cat.forget(old);
                    old_keys.push(old);
                }
            }
        }
        let index = self.read_index();
        for key in &old_keys {
            let _permit = self.permits.acquire();
            index.remove(*key).map_err(index_err)?;
        }
        *self
            .freed_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += old_keys.len();
        Ok(())
    }

    fn ensure_capacity(&self, adds: usize) -> Result<(), IndexError> {
        let freed = *self
            .freed_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let need = {
            let index = self.read_index();
            let need = index.size() + freed + adds;
            if need <= index.capacity() {
                return Ok(());
            }
            need.max(index.capacity() * 2)
        };
        let index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        index
            .reserve_capacity_and_threads(need, self.threads)
            .map_err(index_err)
    }

    fn add_parallel(
        &self,
        first_key: u64,
        adds: &[&EntityData],
        parallelism: usize,
    ) -> Result<(), IndexError> {
        let threads = parallelism
            .clamp(1, self.threads)
            .min(adds.len().div_ceil(32).max(1));
        let index = self.read_index();
        let add_range = |start: usize, end: usize| -> Result<(), IndexError> {
            for (i, e) in adds[start..end].iter().enumerate() {
                let _permit = self.permits.acquire();
                index
                    .add(first_key + (start + i) as u64, &e.vector)
                    .map_err(index_err)?;
            }
            Ok(())
        };
        if threads <= 1 {
            return add_range(0, adds.len());
        }
        let per = adds.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (start, end) = (t * per, ((t + 1) * per).min(adds.len()));
                    let add_range = &add_range;
                    s.spawn(move || add_range(start, end))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Result<Vec<()>, _>>()
                .map(|_| ())
        })
    }

    /// The stored vector (at the collection's precision, as f32) and state of `pk`, unless it
    /// is expired at `now_ms`.
    pub fn get(&self, pk: &str, now_ms: i64) -> Option<(Vec<f32>, Stored)> {
        let cat = self.read_catalog();
        let key = *cat.by_pk.get(pk)?;
        let stored = cat.by_key.get(&key).filter(|s| s.live_at(now_ms))?;
        let mut v = vec![0f32; self.config.dimension];
        let index = self.read_index();
        let _permit = self.permits.acquire();
        match index.get(key, &mut v) {
            Ok(n) if n > 0 => Some((v, stored.clone())),
            _ => None,
        }
    }

    /// The `k` live entities closest to `query` that pass the filter and are not shadowed.
    pub fn search(&self, query: &[f32], spec: &SearchSpec<'_>) -> Result<Vec<Hit>, IndexError> {
        let cat = self.read_catalog();
        if cat.is_empty() || spec.k == 0 {
            return Ok(Vec::new());
        }
        let index = self.read_index();
        let count = spec.k.max(spec.ef);
        // Only buffered pks that the index also holds need hiding (most buffered adds are new).
        let shadowing = spec.shadowed.iter().any(|pk| cat.by_pk.contains_key(pk));
        let live = |key: u64| -> Option<&Stored> {
            let s = cat.by_key.get(&key)?;
            if shadowing && spec.shadowed.contains(&s.pk) {
                return None;
            }
            spec.admits(&s.metadata, s.timestamp_ms, s.expires_at_ms)
                .then_some(s)
        };
        let collect = |keys: &[u64], distances: &[f32]| -> Vec<Hit> {
            keys.iter()
                .zip(distances)
                .filter_map(|(k, d)| live(*k).map(|s| Hit::new(s, *d, spec)))
                .take(spec.k)
                .collect()
        };
        // The entities a predicate may admit: a time range's from `by_time`, else all.
        let candidates = || -> Box<dyn Iterator<Item = u64> + '_> {
            match spec.time_range {
                Some(r) => Box::new(cat.in_range(r)),
                None => Box::new(cat.by_key.keys().copied()),
            }
        };
        let every_match = || -> Vec<u64> { candidates().filter(|k| live(*k).is_some()).collect() };
        let wanted = spec.k.min(cat.len());
        if count >= cat.len() {
            // The search would explore every entity anyway: answer exactly, which costs the
            // same distance computations and cannot miss a node the graph does not reach.
            return Ok(self.exact(&index, &cat, query, spec, every_match()));
        }
        let selective = spec.filter.is_some() || spec.time_range.is_some();
        let threshold = EXACT_SCAN_MIN.max(cat.len() / EXACT_SCAN_DIVISOR);
        if let Some(r) = spec.time_range
            && cat.in_range(r).take(threshold + 1).count() <= threshold
        {
            // A narrow window: its entities, from the time index, are few enough to scan.
            let keys = cat.in_range(r).filter(|k| live(*k).is_some()).collect();
            return Ok(self.exact(&index, &cat, query, spec, keys));
        }
        if spec.filter.is_some() {
            let mut matching = Vec::new();
            for key in candidates() {
                if live(key).is_some() {
                    matching.push(key);
                    if matching.len() > threshold {
                        break;
                    }
                }
            }
            if matching.len() <= threshold {
                return Ok(self.exact(&index, &cat, query, spec, matching));
            }
        }
        if let Some(decay) = spec.decay {
            return self.search_decayed(&index, &cat, query, spec, decay, &live);
        }
        if !selective && !shadowing {
            // The common case: a plain search, its few unpublished keys dropped afterwards.
            let m = {
                let _permit = self.permits.acquire();
                index.search(query, count).map_err(index_err)?
            };
            let hits = collect(&m.keys, &m.distances);
            if hits.len() >= wanted {
                return Ok(hits);
            }
        }
        let m = {
            let _permit = self.permits.acquire();
            index
                .filtered_search(query, count, |key| live(key).is_some())
                .map_err(index_err)?
        };
        let hits = collect(&m.keys, &m.distances);
        if hits.len() >= spec.k {
            return Ok(hits);
        }
        // The graph did not reach k matches: answer exactly over every match.
        Ok(self.exact(&index, &cat, query, spec, every_match()))
    }

    /// The threshold algorithm of the module doc: the `k` best by decayed rank.
    fn search_decayed<'c>(
        &self,
        index: &Index,
        cat: &'c Catalog,
        query: &[f32],
        spec: &SearchSpec<'_>,
        decay: Decay,
        live: &dyn Fn(u64) -> Option<&'c Stored>,
    ) -> Result<Vec<Hit>, IndexError> {
        let distance = self.config.distance;
        let range = spec.time_range.unwrap_or(TimeRange::ALL);
        let mut depth = spec.k.max(spec.ef);
        let mut v = vec![0f32; self.config.dimension];
        loop {
            if depth >= cat.len() {
                let every: Vec<u64> = cat
                    .by_key
                    .keys()
                    .copied()
                    .filter(|k| live(*k).is_some())
                    .collect();
                return Ok(self.exact(index, cat, query, spec, every));
            }
            let m = {
                let _permit = self.permits.acquire();
                index
                    .filtered_search(query, depth, |key| live(key).is_some())
                    .map_err(index_err)?
            };
            let mut scored: HashMap<u64, f32> = m
                .keys
                .iter()
                .copied()
                .zip(m.distances.iter().copied())
                .collect();
            // The index stream's bound: every unseen entity is at least this far.
            let d_last = if m.keys.len() < depth {
                f32::INFINITY
            } else {
                m.distances.last().copied().unwrap_or(f32::INFINITY)
            };
            // The time stream, newest first.
            let mut taken = 0;
            let mut t_last = None;
            {
                let _permit = self.permits.acquire();
                for key in cat.in_range(range).rev() {
                    let Some(s) = live(key) else { continue };
                    taken += 1;
                    t_last = s.timestamp_ms;
                    if let std::collections::hash_map::Entry::Vacant(slot) = scored.entry(key)
                        && matches!(index.get(key, &mut v), Ok(n) if n > 0)
                    {
                        slot.insert(distance.between(query, &v));
                    }
                    if taken >= depth {
                        break;
                    }
                }
            }
            // Past the time stream's end only untimed entities remain: no bonus.
            let bonus_last = if taken < depth {
                0.0
            } else {
                decay.bonus(spec.now_ms, t_last)
            };
            let mut hits: Vec<Hit> = scored
                .into_iter()
                .filter_map(|(key, d)| live(key).map(|s| Hit::new(s, d, spec)))
                .collect();
            hits.sort_by(|a, b| a.rank.total_cmp(&b.rank).then_with(|| a.pk.cmp(&b.pk)));
            hits.truncate(spec.k);
            let bound = d_last - decay.weight * bonus_last;
            let settled = hits.len() == spec.k && hits.last().is_some_and(|h| h.rank <= bound);
            if settled {
                return Ok(hits);
            }
            if d_last == f32::INFINITY {
                // The graph gave all it reaches: fewer than k means some matches are out of its
                // reach, so the answer is an exact scan of every match.
                if hits.len() < spec.k {
                    let every = cat
                        .by_key
                        .keys()
                        .copied()
                        .filter(|k| live(*k).is_some())
                        .collect();
                    return Ok(self.exact(index, cat, query, spec, every));
                }
                return Ok(hits);
            }
            depth = depth.saturating_mul(4);
        }
    }

    fn exact(
        &self,
        index: &Index,
        cat: &Catalog,
        query: &[f32],
        spec: &SearchSpec<'_>,
        keys: Vec<u64>,
    ) -> Vec<Hit> {
        let k = spec.k;
        let distance = self.config.distance;
        let mut heap: BinaryHeap<(OrdF32, u64, OrdF32)> = BinaryHeap::with_capacity(k + 1);
        let mut v = vec![0f32; self.config.dimension];
        let _permit = self.permits.acquire();
        for key in keys {
            if !matches!(index.get(key, &mut v), Ok(n) if n > 0) {
                continue;
            }
            let d = distance.between(query, &v);
            let rank = match &spec.decay {
                Some(_) => spec.rank(d, cat.by_key.get(&key).and_then(|s| s.timestamp_ms)),
                None => d,
            };
            if heap.len() < k {
                heap.push((OrdF32(rank), key, OrdF32(d)));
            } else if heap.peek().is_some_and(|(worst, _, _)| rank < worst.0) {
                heap.pop();
                heap.push((OrdF32(rank), key, OrdF32(d)));
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .filter_map(|(_, key, d)| cat.by_key.get(&key).map(|s| Hit::new(s, d.0, spec)))
            .collect()
    }

    /// Up to `limit` indexed entities expired at `now_ms`: `(pk, expires_at_ms)`.
    pub fn expired(&self, now_ms: i64, limit: usize) -> Vec<(String, i64)> {
        self.read_catalog().expired(now_ms, limit)
    }

    /// Writes the index to `index_path` and returns the catalogue's serialized form.
    pub fn save(&self, index_path: &Path) -> Result<Vec<u8>, IndexError> {
        let path = index_path
            .to_str()
            .ok_or_else(|| IndexError("non-UTF-8 path".into()))?;
        let index = self.read_index();
        index.save(path).map_err(index_err)?;
        let cat = self.read_catalog();
        let entries: Vec<(u64, &str, &Map<String, Value>)> = cat
            .by_key
            .iter()
            .map(|(k, s)| (*k, s.pk.as_str(), &s.metadata))
            .collect();
        let times = cat
            .by_key
            .iter()
            .filter(|(_, s)| s.timestamp_ms.is_some() || s.expires_at_ms.is_some())
            .map(|(k, s)| (*k, s.timestamp_ms, s.expires_at_ms))
            .collect();
        serde_json::to_vec(&SavedCatalog {
            next_key: cat.next_key,
            entries,
            times,
        })
        .map_err(index_err)
    }

    /// Loads a collection saved by [`Collection::save`].
    pub fn load(
        id: u64,
        config: CollectionConfig,
        threads: usize,
        index_path: &Path,
        catalog: &[u8],
    ) -> Result<Collection, IndexError> {
        let saved: LoadedCatalog = serde_json::from_slice(catalog).map_err(index_err)?;
        let c = Collection::new(id, config, threads)?;
        {
            let index = c.index.write().unwrap_or_else(PoisonError::into_inner);
            let path = index_path
                .to_str()
                .ok_or_else(|| IndexError("non-UTF-8 path".into()))?;
            index.load(path).map_err(index_err)?;
            if index.dimensions() != c.config.dimension {
                return Err(IndexError(format!(
                    "index file has dimension {}, collection {}",
                    index.dimensions(),
                    c.config.dimension
                )));
            }
            let cap = index.capacity().max(1024);
            index
                .reserve_capacity_and_threads(cap, threads)
                .map_err(index_err)?;
            index.change_expansion_search(1);
        }
        let mut cat = c.catalog.write().unwrap_or_else(PoisonError::into_inner);
        cat.next_key = saved.next_key;
        let times: HashMap<u64, (Option<i64>, Option<i64>)> = saved
            .times
            .into_iter()
            .map(|(k, t, e)| (k, (t, e)))
            .collect();
        for (key, pk, metadata) in saved.entries {
            if key >= saved.next_key {
                return Err(IndexError(format!("catalogue key {key} beyond next_key")));
            }
            let (timestamp_ms, expires_at_ms) = times.get(&key).copied().unwrap_or_default();
            cat.insert(
                key,
                Stored {
                    pk,
                    metadata,
                    timestamp_ms,
                    expires_at_ms,
                },
            );
        }
        drop(cat);
        let present = c.read_index().size();
        if present != c.len() {
            return Err(IndexError(format!(
                "index holds {present} vectors, catalogue {}",
                c.len()
            )));
        }
        Ok(c)
    }
}

#[derive(Serialize)]
struct SavedCatalog<'a> {
    next_key: u64,
    entries: Vec<(u64, &'a str, &'a Map<String, Value>)>,
    /// `(key, timestamp_ms, expires_at_ms)` of the entities that have either (absent in
    /// catalogues written before entities had times).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    times: Vec<(u64, Option<i64>, Option<i64>)>,
}

#[derive(Deserialize)]
struct LoadedCatalog {
    next_key: u64,
    entries: Vec<(u64, String, Map<String, Value>)>,
    #[serde(default)]
    times: Vec<(u64, Option<i64>, Option<i64>)>,
}

fn options(c: &CollectionConfig) -> IndexOptions {
    IndexOptions {
        dimensions: c.dimension,
        metric: c.distance.metric(),
        quantization: c.precision.scalar(),
        connectivity: c.hnsw.m,
        expansion_add: c.hnsw.ef_construction,
        expansion_search: c.hnsw.ef_search,
        multi: false,
    }
}

#[derive(Clone, Copy, Debug)]
struct OrdF32(f32);

impl PartialEq for OrdF32 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for OrdF32 {}

impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
