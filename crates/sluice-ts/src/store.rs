//! Flushed time-series data in fjall: per-series Gorilla chunks, the series catalogue, and the
//! engine's flushed LSN.
//!
//! Keyspaces:
//! - `series`: `id u32 BE` → encoded [`SeriesKey`].
//! - `chunks`: `id u32 BE ++ min_ts (i64, sign bit flipped) BE ++ seq u64 BE` →
//!   `max_ts i64 LE ++ codec u8 ++ block` (Gorilla, or decimal when the values allow it; see
//!   `sluice-gorilla`). A series' chunks are contiguous and ordered by start
//!   time; `seq` (the flush that wrote it) orders overlapping chunks for last-write-wins.
//! - `meta`: `flushed_lsn` and `next_seq`, written in the same atomic batch as the chunks.
//! - `rollups`: downsampled buckets in blocks (see [`crate::rollup`]), written by the sweep in
//!   the same atomic batch that deletes what they summarize.
//!
//! A flush commits one cross-keyspace batch and then persists with `SyncAll`: after
//! [`ChunkStore::commit_flush`] returns, the chunks and `flushed_lsn` are durable together, so
//! WAL replay can skip exactly the records the chunks hold.
//!
//! # The chunk directory
//! Reads do not range-scan the `chunks` keyspace. Size-tiered merging rewrites a series' small
//! chunks at every flush (a merged chunk is inserted, its inputs deleted), so until the LSM
//! compacts them away a series' key range holds dozens of tombstones and shadowed versions per
//! live chunk: measured on 10,000 series after 82 flushes, 890,000 entries behind 20,000 live
//! chunks, and a range scan per series cost 25 µs where a point read of each live chunk cost
//! 2 µs. So the store keeps, per series, the `(min_ts, max_ts, seq)` of its live chunks in
//! memory (24 bytes a chunk, about 3 % of a full chunk's bytes) and reads a query's chunks by
//! key. A series' entry is loaded by one range scan the first time it is read (opening a large
//! store reads nothing; the scan runs outside the lock, and is redone under it only for a
//! series a commit changed meanwhile) and kept up to date by every commit that writes or
//! deletes its chunks.
//!
//! Invariant: a directory entry and the snapshot a reader takes under the same lock agree.
//! Commits apply their batch and update the directory under the directory's write lock, and a
//! reader takes its snapshot under the lock it listed chunks under, so every chunk listed is in
//! the snapshot (a merge's new chunk and its deleted inputs change together).

use std::path::Path;
use std::sync::{PoisonError, RwLock};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};
use sluice_wal::Lsn;

use crate::series::{SeriesId, SeriesKey};

const FLUSHED_LSN: &[u8] = b"flushed_lsn";
const NEXT_SEQ: &[u8] = b"next_seq";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("time-series storage: {0}")]
    Fjall(#[from] fjall::Error),
    #[error("time-series storage is corrupt: {0}")]
    Corrupt(String),
    /// A flush's batch could not be written (nothing of it was committed): retrying it is
    /// safe.
    #[error("time-series storage: {0}")]
    Io(#[from] std::io::Error),
    /// A flush's batch was committed but its sync failed: what is on disk is unknown, and a
    /// retry would commit the same chunks again. Fatal, as a failed WAL fdatasync is.
    #[error("time-series storage: syncing a flush failed: {0}")]
    SyncFailed(String),
}

pub struct ChunkStore {
    db: Database,
    series: Keyspace,
    chunks: Keyspace,
    meta: Keyspace,
    rollups: Keyspace,
    /// Live chunks per series id (see the module doc).
    directory: RwLock<Directory>,
    /// What the fault seam (`sluice_wal::faults`) calls a flush's batch: `<dir>/chunks`.
    fault_path: std::path::PathBuf,
}

/// The live chunks of the series read so far.
#[derive(Default)]
struct Directory {
    /// By series id; each loaded list in write (`seq`) order.
    entries: Vec<Entry>,
    /// Commits so far.
    generation: u64,
}

#[derive(Clone)]
enum Entry {
    /// Not read yet; `touched` is the generation of the last commit that changed its chunks
    /// (a scan from an older snapshot is stale).
    Unloaded {
        touched: u64,
    },
    Loaded(Vec<ChunkMeta>),
}

impl Directory {
    fn entry_mut(&mut self, series: SeriesId) -> &mut Entry {
        let i = series as usize;
        if self.entries.len() <= i {
            self.entries.resize(i + 1, Entry::Unloaded { touched: 0 });
        }
        &mut self.entries[i]
    }

    fn loaded(&self, series: SeriesId) -> Option<&[ChunkMeta]> {
        match self.entries.get(series as usize) {
            Some(Entry::Loaded(live)) => Some(live),
            _ => None,
        }
    }

    /// Applies a commit's change to `series` (`edit` on a loaded entry; an unloaded one is
    /// marked as changed by this commit).
    fn change(&mut self, series: SeriesId, edit: impl FnOnce(&mut Vec<ChunkMeta>)) {
        let generation = self.generation;
        match self.entry_mut(series) {
            Entry::Loaded(live) => edit(live),
            Entry::Unloaded { touched } => *touched = generation,
        }
    }
}

/// Where a live chunk is: its key parts and its last timestamp.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ChunkMeta {
    min_ts: i64,
    max_ts: i64,
    seq: u64,
}

/// The chunks of some series that overlap a time range, and a snapshot holding them all
/// ([`ChunkStore::plan`]); [`ChunkStore::read_planned`] decodes one series' chunks.
pub struct ChunkPlan {
    snapshot: Snapshot,
    series: Vec<(SeriesId, Vec<ChunkMeta>)>,
}

impl ChunkPlan {
    /// Whether series `i` of the plan has no chunk in the range.
    pub fn is_empty(&self, i: usize) -> bool {
        self.series[i].1.is_empty()
    }

    /// The time spans `(min_ts, max_ts)` of series `i`'s chunks in the range, in write order;
    /// [`ChunkStore::read_one`] decodes chunk `j` of them.
    pub fn spans(&self, i: usize) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.series[i].1.iter().map(|m| (m.min_ts, m.max_ts))
    }

    /// The chunks of series `i` in the range as `(min_ts, max_ts, seq)`, in write order.
    pub fn chunks(&self, i: usize) -> impl Iterator<Item = (i64, i64, u64)> + '_ {
        self.series[i].1.iter().map(|m| (m.min_ts, m.max_ts, m.seq))
    }
}

/// What a store holds when opened.
pub struct Opened {
    pub store: ChunkStore,
    /// Persisted series, by dense id.
    pub series: Vec<SeriesKey>,
    pub flushed_lsn: Lsn,
    pub next_seq: u64,
}

/// One chunk to write.
pub struct ChunkWrite {
    pub series: SeriesId,
    pub min_ts: i64,
    pub max_ts: i64,
    pub seq: u64,
    pub block: Vec<u8>,
}

/// A stored chunk's key parts and header ([`ChunkStore::list_chunks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    pub series: SeriesId,
    pub min_ts: i64,
    pub max_ts: i64,
    pub seq: u64,
    pub points: usize,
}

/// A chunk read back.
pub struct StoredChunk {
    pub seq: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub points: Vec<(i64, f64)>,
}

/// A block of downsampled buckets to write (`Some`) or delete (`None`).
pub struct RollupWrite {
    pub series: SeriesId,
    pub resolution_ms: i64,
    pub block_start: i64,
    pub block: Option<Vec<u8>>,
}

/// The key of a rollup block: `series u32 BE ++ resolution u64 BE ++ block_start` (sign bit
/// flipped, BE), so a series' blocks of one resolution are contiguous and in time order.
pub fn rollup_key(series: SeriesId, resolution_ms: i64, block_start: i64) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[0..4].copy_from_slice(&series.to_be_bytes());
    k[4..12].copy_from_slice(&(resolution_ms as u64).to_be_bytes());
    k[12..20].copy_from_slice(&((block_start as u64) ^ (1 << 63)).to_be_bytes());
    k
}

pub fn chunk_key(series: SeriesId, min_ts: i64, seq: u64) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[0..4].copy_from_slice(&series.to_be_bytes());
    k[4..12].copy_from_slice(&((min_ts as u64) ^ (1 << 63)).to_be_bytes());
    k[12..20].copy_from_slice(&seq.to_be_bytes());
    k
}

fn parse_chunk_key(k: &[u8]) -> Option<(SeriesId, i64, u64)> {
    if k.len() != 20 {
        return None;
    }
    let series = u32::from_be_bytes(k[0..4].try_into().ok()?);
    let min_ts = (u64::from_be_bytes(k[4..12].try_into().ok()?) ^ (1 << 63)) as i64;
    let seq = u64::from_be_bytes(k[12..20].try_into().ok()?);
    Some((series, min_ts, seq))
}

fn u64_value(v: Option<fjall::UserValue>) -> Result<Option<u64>, StoreError> {
    v.map(|v| {
        <[u8; 8]>::try_from(&v[..])
            .map(u64::from_le_bytes)
            .map_err(|_| StoreError::Corrupt("meta value is not 8 bytes".into()))
    })
    .transpose()
}

impl ChunkStore {
    pub fn open(dir: &Path) -> Result<Opened, StoreError> {
        let db = Database::builder(dir).open()?;
        let series = db.keyspace("series", KeyspaceCreateOptions::default)?;
        let chunks = db.keyspace("chunks", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        let rollups = db.keyspace("rollups", KeyspaceCreateOptions::default)?;

        let mut keys = Vec::new();
        for kv in series.iter() {
            let (k, v) = kv.into_inner()?;
            let id = <[u8; 4]>::try_from(&k[..])
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("series id key is not 4 bytes".into()))?;
            if id as usize != keys.len() {
                return Err(StoreError::Corrupt(format!("series ids not dense at {id}")));
            }
            let key = SeriesKey::decode(&v)
                .ok_or_else(|| StoreError::Corrupt(format!("series {id} undecodable")))?;
            keys.push(key);
        }
        let flushed_lsn = Lsn(u64_value(meta.get(FLUSHED_LSN)?)?.unwrap_or(0));
        let next_seq = u64_value(meta.get(NEXT_SEQ)?)?.unwrap_or(1);
        Ok(Opened {
            store: ChunkStore {
                db,
                series,
                chunks,
                meta,
                rollups,
                directory: RwLock::default(),
                fault_path: dir.join("chunks"),
            },
            series: keys,
            flushed_lsn,
            next_seq,
        })
    }

    /// Deletes merged-away chunks and writes new series, chunks and the flushed LSN in one
    /// atomic batch, then syncs it to disk.
    pub fn commit_flush(
        &self,
        new_series: &[(SeriesId, &SeriesKey)],
        chunks: &[ChunkWrite],
        deletes: &[(SeriesId, i64, u64)],
        flushed_lsn: Lsn,
        next_seq: u64,
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for &(series, min_ts, seq) in deletes {
            batch.remove(&self.chunks, chunk_key(series, min_ts, seq).to_vec());
        }
        for (id, key) in new_series {
            batch.insert(&self.series, id.to_be_bytes().to_vec(), key.encode());
        }
        for c in chunks {
            batch.insert(
                &self.chunks,
                chunk_key(c.series, c.min_ts, c.seq).to_vec(),
                chunk_value(c),
            );
        }
        batch.insert(
            &self.meta,
            FLUSHED_LSN.to_vec(),
            flushed_lsn.get().to_le_bytes().to_vec(),
        );
        batch.insert(
            &self.meta,
            NEXT_SEQ.to_vec(),
            next_seq.to_le_bytes().to_vec(),
        );
        // The flush's two steps, as the fault seam sees them: the batch written, then synced.
        let bytes = chunks.iter().map(|c| c.block.len() + 32).sum::<usize>();
        if let Some(fault) = sluice_wal::faults::decide_write(&self.fault_path, bytes) {
            return Err(StoreError::Io(fault));
        }
        {
            let mut dir = self.directory_mut();
            batch.commit()?;
            dir.generation += 1;
            // A series persisted for the first time has no chunk but this flush's: its entry
            // is known without a scan.
            for (id, _) in new_series {
                let e = dir.entry_mut(*id);
                if matches!(e, Entry::Unloaded { .. }) {
                    *e = Entry::Loaded(Vec::new());
                }
            }
            for &(series, min_ts, seq) in deletes {
                dir.change(series, |live| {
                    live.retain(|m| (m.min_ts, m.seq) != (min_ts, seq))
                });
            }
            for c in chunks {
                dir.change(c.series, |live| {
                    live.push(ChunkMeta {
                        min_ts: c.min_ts,
                        max_ts: c.max_ts,
                        seq: c.seq,
                    })
                });
            }
        }
        sluice_wal::faults::sync_with(&self.fault_path, || {
            self.db
                .persist(PersistMode::SyncAll)
                .map_err(std::io::Error::other)
        })
        .map_err(|e| StoreError::SyncFailed(e.to_string()))?;
        Ok(())
    }

    /// Replaces chunks in place for a deletion: removes `deletes` and writes `chunks` (each
    /// keeping the `seq` of the chunk it replaces, so last-write-wins among a series' chunks is
    /// unchanged) in one atomic batch, then syncs it. The flushed LSN is not touched: a
    /// deletion replayed over chunks it already rewrote finds nothing more to delete.
    /// `rollups` (the sweep's downsampling) are written or deleted in the same batch.
    pub fn commit_rewrite(
        &self,
        chunks: &[ChunkWrite],
        deletes: &[(SeriesId, i64, u64)],
        rollups: &[RollupWrite],
    ) -> Result<(), StoreError> {
        if chunks.is_empty() && deletes.is_empty() && rollups.is_empty() {
            return Ok(());
        }
        // A chunk rewritten under its own key is replaced, not removed and re-inserted.
        let written: std::collections::HashSet<(SeriesId, i64, u64)> =
            chunks.iter().map(|c| (c.series, c.min_ts, c.seq)).collect();
        let deletes: Vec<(SeriesId, i64, u64)> = deletes
            .iter()
            .copied()
            .filter(|d| !written.contains(d))
            .collect();
        let mut batch = self.db.batch();
        for &(series, min_ts, seq) in &deletes {
            batch.remove(&self.chunks, chunk_key(series, min_ts, seq).to_vec());
        }
        for c in chunks {
            batch.insert(
                &self.chunks,
                chunk_key(c.series, c.min_ts, c.seq).to_vec(),
                chunk_value(c),
            );
        }
        for r in rollups {
            let key = rollup_key(r.series, r.resolution_ms, r.block_start).to_vec();
            match &r.block {
                Some(block) => batch.insert(&self.rollups, key, block.clone()),
                None => batch.remove(&self.rollups, key),
            }
        }
        let bytes = chunks.iter().map(|c| c.block.len() + 32).sum::<usize>()
            + rollups
                .iter()
                .map(|r| r.block.as_ref().map_or(20, |b| b.len() + 20))
                .sum::<usize>();
        if let Some(fault) = sluice_wal::faults::decide_write(&self.fault_path, bytes) {
            return Err(StoreError::Io(fault));
        }
        {
            let mut dir = self.directory_mut();
            batch.commit()?;
            dir.generation += 1;
            for &(series, min_ts, seq) in &deletes {
                dir.change(series, |live| {
                    live.retain(|m| (m.min_ts, m.seq) != (min_ts, seq))
                });
            }
            for c in chunks {
                dir.change(c.series, |live| {
                    live.retain(|m| (m.min_ts, m.seq) != (c.min_ts, c.seq));
                    // In `seq` order, as readers expect (an old seq goes back among its peers).
                    let at = live.partition_point(|m| m.seq <= c.seq);
                    live.insert(
                        at,
                        ChunkMeta {
                            min_ts: c.min_ts,
                            max_ts: c.max_ts,
                            seq: c.seq,
                        },
                    )
                });
            }
        }
        sluice_wal::faults::sync_with(&self.fault_path, || {
            self.db
                .persist(PersistMode::SyncAll)
                .map_err(std::io::Error::other)
        })
        .map_err(|e| StoreError::SyncFailed(e.to_string()))
    }

    fn directory_mut(&self) -> std::sync::RwLockWriteGuard<'_, Directory> {
        self.directory
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A series' live chunks, from the keyspace (one range scan, through `snapshot`).
    fn load_series(
        snapshot: &Snapshot,
        chunks: &Keyspace,
        series: SeriesId,
    ) -> Result<Vec<ChunkMeta>, StoreError> {
        let mut live = Vec::new();
        let start = chunk_key(series, i64::MIN, 0);
        let end = chunk_key(series, i64::MAX, u64::MAX);
        for kv in snapshot.range(chunks, start..=end) {
            let (k, v) = kv.into_inner()?;
            let (_, min_ts, seq) =
                parse_chunk_key(&k).ok_or_else(|| StoreError::Corrupt("bad chunk key".into()))?;
            let (max_ts, _) = split_value(&v)?;
            live.push(ChunkMeta {
                min_ts,
                max_ts,
                seq,
            });
        }
        // Kept in write order: commits append chunks of ever newer flushes (`seq` only grows),
        // so readers never sort.
        live.sort_by_key(|m| m.seq);
        Ok(live)
    }

    /// The chunks of each of `ids` that may hold points in `[from, to]` (by their time spans),
    /// in write (`seq`) order, with a snapshot that holds them; reads no chunk.
    pub fn plan(&self, ids: &[SeriesId], from: i64, to: i64) -> Result<ChunkPlan, StoreError> {
        let pick = |live: &[ChunkMeta]| -> Vec<ChunkMeta> {
            debug_assert!(live.windows(2).all(|w| w[0].seq <= w[1].seq));
            live.iter()
                .filter(|m| m.max_ts >= from && m.min_ts <= to)
                .copied()
                .collect()
        };
        let missing: Vec<SeriesId>;
        let (generation, snapshot) = {
            let dir = self
                .directory
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let snapshot = self.db.snapshot();
            missing = ids
                .iter()
                .copied()
                .filter(|id| dir.loaded(*id).is_none())
                .collect();
            if missing.is_empty() {
                let series = ids
                    .iter()
                    .map(|&id| (id, pick(dir.loaded(id).unwrap_or_default())))
                    .collect();
                return Ok(ChunkPlan { snapshot, series });
            }
            (dir.generation, snapshot)
        };
        // Some series not read yet: scan them from the snapshot outside the lock (a first
        // read of a million series must not hold flushes up), then install each scan unless a
        // commit changed that series meanwhile.
        let mut scanned = Vec::with_capacity(missing.len());
        for &id in &missing {
            scanned.push((id, Self::load_series(&snapshot, &self.chunks, id)?));
        }
        let mut dir = self.directory_mut();
        for (id, live) in scanned {
            let e = dir.entry_mut(id);
            if matches!(e, Entry::Unloaded { touched } if *touched <= generation) {
                *e = Entry::Loaded(live);
            }
        }
        // What a commit changed during the scan is scanned again, under the lock.
        let snapshot = self.db.snapshot();
        let mut series = Vec::with_capacity(ids.len());
        for &id in ids {
            if dir.loaded(id).is_none() {
                let live = Self::load_series(&snapshot, &self.chunks, id)?;
                *dir.entry_mut(id) = Entry::Loaded(live);
            }
            series.push((id, pick(dir.loaded(id).unwrap_or_default())));
        }
        Ok(ChunkPlan { snapshot, series })
    }

    /// Forgets every loaded entry, so the next reads load them again (tests of the load path).
    #[cfg(test)]
    pub(crate) fn forget_directory(&self) {
        let mut dir = self.directory_mut();
        let touched = dir.generation;
        for e in &mut dir.entries {
            *e = Entry::Unloaded { touched };
        }
    }

    /// Decodes the chunks of series `i` of `plan`, at most `budget` points (decremented by
    /// what is decoded): `None` as soon as they hold more.
    pub fn read_planned(
        &self,
        plan: &ChunkPlan,
        i: usize,
        budget: &mut usize,
    ) -> Result<Option<Vec<StoredChunk>>, StoreError> {
        let metas = &plan.series[i].1;
        let mut out = Vec::with_capacity(metas.len());
        for (j, m) in metas.iter().enumerate() {
            let points = self.read_one(plan, i, j)?;
            match budget.checked_sub(points.len()) {
                Some(left) => *budget = left,
                None => return Ok(None),
            }
            out.push(StoredChunk {
                seq: m.seq,
                min_ts: m.min_ts,
                max_ts: m.max_ts,
                points,
            });
        }
        Ok(Some(out))
    }

    /// The points of chunk `j` of series `i` of `plan` (see [`ChunkPlan::spans`]): one chunk
    /// at a time, for readers that reduce a long range without holding it.
    pub fn read_one(
        &self,
        plan: &ChunkPlan,
        i: usize,
        j: usize,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        let series = plan.series[i].0;
        let v = self.planned_value(plan, i, j)?;
        let (_, block) = split_value(&v)?;
        sluice_gorilla::decode_chunk(block)
            .map_err(|e| StoreError::Corrupt(format!("chunk of series {series}: {e}")))
    }

    /// The stored value of chunk `j` of series `i` of `plan`.
    fn planned_value(
        &self,
        plan: &ChunkPlan,
        i: usize,
        j: usize,
    ) -> Result<fjall::UserValue, StoreError> {
        let (series, metas) = &plan.series[i];
        let m = metas[j];
        plan.snapshot
            .get(&self.chunks, chunk_key(*series, m.min_ts, m.seq))?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "chunk ({series}, {}, {}) is listed but missing",
                    m.min_ts, m.seq
                ))
            })
    }

    /// The number of points of chunk `j` of series `i` of `plan`, from its header (nothing is
    /// decoded).
    pub fn count_one(&self, plan: &ChunkPlan, i: usize, j: usize) -> Result<usize, StoreError> {
        let series = plan.series[i].0;
        let v = self.planned_value(plan, i, j)?;
        let (_, block) = split_value(&v)?;
        sluice_gorilla::chunk_count(block)
            .map_err(|e| StoreError::Corrupt(format!("chunk of series {series}: {e}")))
    }

    /// Chunks of `series` that may hold points in `[from, to]`, in write (`seq`) order.
    pub fn chunks_overlapping(
        &self,
        series: SeriesId,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        let mut unbounded = usize::MAX;
        Ok(self
            .chunks_overlapping_within(series, from, to, &mut unbounded)?
            .unwrap_or_default())
    }

    /// [`Self::chunks_overlapping`], decoding at most `budget` points (decremented by what is
    /// decoded): `None` as soon as the chunks hold more, so a query over a huge range fails
    /// before it has decoded it all.
    pub fn chunks_overlapping_within(
        &self,
        series: SeriesId,
        from: i64,
        to: i64,
        budget: &mut usize,
    ) -> Result<Option<Vec<StoredChunk>>, StoreError> {
        let plan = self.plan(&[series], from, to)?;
        self.read_planned(&plan, 0, budget)
    }

    /// Reads one chunk by its key parts.
    pub fn chunk(
        &self,
        series: SeriesId,
        min_ts: i64,
        seq: u64,
    ) -> Result<Option<StoredChunk>, StoreError> {
        let Some(v) = self.chunks.get(chunk_key(series, min_ts, seq))? else {
            return Ok(None);
        };
        let (max_ts, block) = split_value(&v)?;
        let points = sluice_gorilla::decode_chunk(block)
            .map_err(|e| StoreError::Corrupt(format!("chunk of series {series}: {e}")))?;
        Ok(Some(StoredChunk {
            seq,
            min_ts,
            max_ts,
            points,
        }))
    }

    /// Every chunk of series `first..first + count`, in key order (by series, then start
    /// time), as [`ChunkInfo`]: one range scan reading keys and headers, nothing decoded.
    pub fn list_chunks(&self, first: SeriesId, count: usize) -> Result<Vec<ChunkInfo>, StoreError> {
        let Some(last) = (first as usize + count).checked_sub(1) else {
            return Ok(Vec::new());
        };
        let start = chunk_key(first, i64::MIN, 0);
        let end = chunk_key(last as SeriesId, i64::MAX, u64::MAX);
        let mut out = Vec::new();
        for kv in self.db.snapshot().range(&self.chunks, start..=end) {
            let (k, v) = kv.into_inner()?;
            let (series, min_ts, seq) =
                parse_chunk_key(&k).ok_or_else(|| StoreError::Corrupt("bad chunk key".into()))?;
            let (max_ts, block) = split_value(&v)?;
            let points = sluice_gorilla::chunk_count(block)
                .map_err(|e| StoreError::Corrupt(format!("chunk of series {series}: {e}")))?;
            out.push(ChunkInfo {
                series,
                min_ts,
                max_ts,
                seq,
                points,
            });
        }
        Ok(out)
    }

    /// The rollup blocks of `series` at `resolution_ms` that may hold buckets starting in
    /// `[from, to]`, as `(block_start, value)`, through the snapshot of `plan` if given (a
    /// query then sees chunks and rollups of the same moment: never a point in both, or in
    /// neither) or the store's latest state.
    pub fn rollup_blocks(
        &self,
        plan: Option<&ChunkPlan>,
        series: SeriesId,
        resolution_ms: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, fjall::UserValue)>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let span = resolution_ms.saturating_mul(crate::rollup::BLOCK_BUCKETS);
        let start = rollup_key(series, resolution_ms, crate::rollup::align(from, span));
        let end = rollup_key(series, resolution_ms, to);
        let fresh;
        let snapshot = match plan {
            Some(p) => &p.snapshot,
            None => {
                fresh = self.db.snapshot();
                &fresh
            }
        };
        let mut out = Vec::new();
        for kv in snapshot.range(&self.rollups, start..=end) {
            let (k, v) = kv.into_inner()?;
            let block_start = k
                .get(12..20)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(|b| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
                .ok_or_else(|| StoreError::Corrupt("bad rollup key".into()))?;
            out.push((block_start, v));
        }
        Ok(out)
    }

    /// One rollup block, if stored.
    pub fn rollup_block(
        &self,
        series: SeriesId,
        resolution_ms: i64,
        block_start: i64,
    ) -> Result<Option<fjall::UserValue>, StoreError> {
        Ok(self
            .rollups
            .get(rollup_key(series, resolution_ms, block_start))?)
    }

    /// Bytes of the live chunks and rollup blocks (keys and values): what the data costs
    /// once the LSM has compacted away what was deleted or rewritten. Reads every entry.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        let snapshot = self.db.snapshot();
        let mut total = 0u64;
        for keyspace in [&self.chunks, &self.rollups] {
            for kv in snapshot.iter(keyspace) {
                let (k, v) = kv.into_inner()?;
                total += (k.len() + v.len()) as u64;
            }
        }
        Ok(total)
    }

    /// Bytes of stored data on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

/// A chunk's stored value: `max_ts i64 LE ++ block`.
fn chunk_value(c: &ChunkWrite) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + c.block.len());
    value.extend_from_slice(&c.max_ts.to_le_bytes());
    value.extend_from_slice(&c.block);
    value
}

fn split_value(v: &[u8]) -> Result<(i64, &[u8]), StoreError> {
    if v.len() < 8 {
        return Err(StoreError::Corrupt(
            "chunk value shorter than its header".into(),
        ));
    }
    let max_ts = i64::from_le_bytes(
        v[0..8]
            .try_into()
            .map_err(|_| StoreError::Corrupt("chunk header".into()))?,
    );
    Ok((max_ts, &v[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_sort_by_series_then_time_then_seq() {
        let mut keys = [
            chunk_key(1, 5, 1),
            chunk_key(0, 100, 2),
            chunk_key(1, -5, 3),
            chunk_key(1, 5, 0),
            chunk_key(0, i64::MIN, 9),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_chunk_key(k).unwrap()).collect();
        assert_eq!(
            parsed,
            vec![
                (0, i64::MIN, 9),
                (0, 100, 2),
                (1, -5, 3),
                (1, 5, 0),
                (1, 5, 1)
            ]
        );
    }

    #[test]
    fn flushes_persist_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = SeriesKey {
            metric: "m".into(),
            entity: "e".into(),
            tags: vec![],
        };
        {
            let o = ChunkStore::open(dir.path()).unwrap();
            assert_eq!(o.flushed_lsn, Lsn(0));
            let mut enc = sluice_gorilla::ChunkEncoder::for_points(&[(10, 1.0)]);
            enc.push(10, 1.0);
            enc.push(20, 2.0);
            let block = enc.snapshot();
            let chunk = ChunkWrite {
                series: 0,
                min_ts: 10,
                max_ts: 20,
                seq: 1,
                block,
            };
            o.store
                .commit_flush(&[(0, &key)], &[chunk], &[], Lsn(7), 2)
                .unwrap();
            let got = o.store.chunks_overlapping(0, 15, 30).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].points, vec![(10, 1.0), (20, 2.0)]);
            assert!(o.store.chunks_overlapping(0, 21, 30).unwrap().is_empty());
            assert!(o.store.chunks_overlapping(0, 0, 9).unwrap().is_empty());
        }
        let o = ChunkStore::open(dir.path()).unwrap();
        assert_eq!(o.flushed_lsn, Lsn(7));
        assert_eq!(o.next_seq, 2);
        assert_eq!(o.series, vec![key]);
        let listed = o.store.list_chunks(0, 1).unwrap();
        assert_eq!(
            listed,
            [ChunkInfo {
                series: 0,
                min_ts: 10,
                max_ts: 20,
                seq: 1,
                points: 2
            }]
        );
        assert!(o.store.list_chunks(1, 5).unwrap().is_empty());
        assert!(o.store.list_chunks(0, 0).unwrap().is_empty());
        o.store.commit_rewrite(&[], &[(0, 10, 1)], &[]).unwrap();
        assert!(o.store.list_chunks(0, 1).unwrap().is_empty());
        assert!(
            o.store
                .chunks_overlapping(0, i64::MIN, i64::MAX)
                .unwrap()
                .is_empty()
        );
    }
}
