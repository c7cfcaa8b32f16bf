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
//!
//! A flush commits one cross-keyspace batch and then persists with `SyncAll`: after
//! [`ChunkStore::commit_flush`] returns, the chunks and `flushed_lsn` are durable together, so
//! WAL replay can skip exactly the records the chunks hold.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
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
}

pub struct ChunkStore {
    db: Database,
    series: Keyspace,
    chunks: Keyspace,
    meta: Keyspace,
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

/// A chunk read back.
pub struct StoredChunk {
    pub seq: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub points: Vec<(i64, f64)>,
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
            let mut value = Vec::with_capacity(8 + c.block.len());
            value.extend_from_slice(&c.max_ts.to_le_bytes());
            value.extend_from_slice(&c.block);
            batch.insert(
                &self.chunks,
                chunk_key(c.series, c.min_ts, c.seq).to_vec(),
                value,
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
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
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
        let start = chunk_key(series, i64::MIN, 0);
        let end = chunk_key(series, to, u64::MAX);
        let mut out = Vec::new();
        // Through a snapshot: a flush commits its deletes and inserts as one batch, but a plain
        // range read sees the batch while it is being applied (the merged chunk's inputs
        // already deleted, the merged chunk not yet inserted), so a query could miss points.
        let snapshot = self.db.snapshot();
        for kv in snapshot.range(&self.chunks, start..=end) {
            let (k, v) = kv.into_inner()?;
            let (_, min_ts, seq) =
                parse_chunk_key(&k).ok_or_else(|| StoreError::Corrupt("bad chunk key".into()))?;
            let (max_ts, block) = split_value(&v)?;
            if max_ts < from {
                continue;
            }
            let points = sluice_gorilla::decode_chunk(block)
                .map_err(|e| StoreError::Corrupt(format!("chunk of series {series}: {e}")))?;
            match budget.checked_sub(points.len()) {
                Some(left) => *budget = left,
                None => return Ok(None),
            }
            out.push(StoredChunk {
                seq,
                min_ts,
                max_ts,
                points,
            });
        }
        out.sort_by_key(|c| c.seq);
        Ok(Some(out))
    }

    /// Whether a chunk of `series` spans part of `[from, to]`, by its first and last timestamps
    /// alone (no chunk is decoded: one spanning the range across a gap counts).
    pub fn has_chunk_overlapping(
        &self,
        series: SeriesId,
        from: i64,
        to: i64,
    ) -> Result<bool, StoreError> {
        let start = chunk_key(series, i64::MIN, 0);
        let end = chunk_key(series, to, u64::MAX);
        let snapshot = self.db.snapshot();
        for kv in snapshot.range(&self.chunks, start..=end) {
            let (_, v) = kv.into_inner()?;
            if split_value(&v)?.0 >= from {
                return Ok(true);
            }
        }
        Ok(false)
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

    /// Deletes every chunk whose newest point is older than `cutoff`; returns how many.
    pub fn delete_older_than(&self, cutoff: i64) -> Result<usize, StoreError> {
        let mut doomed = Vec::new();
        for kv in self.chunks.iter() {
            let (k, v) = kv.into_inner()?;
            let (max_ts, _) = split_value(&v)?;
            if max_ts < cutoff {
                doomed.push(k);
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut batch = self.db.batch();
        for k in &doomed {
            batch.remove(&self.chunks, k.clone());
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(doomed.len())
    }

    /// Bytes of stored data on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
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
        assert_eq!(o.store.delete_older_than(21).unwrap(), 1);
        assert!(
            o.store
                .chunks_overlapping(0, i64::MIN, i64::MAX)
                .unwrap()
                .is_empty()
        );
    }
}
