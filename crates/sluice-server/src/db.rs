//! Databases: each an isolated namespace with its own WAL (SPEC §2).
//!
//! Layout: `<data_dir>/databases/<name>/wal/`, `…/ts/` and `…/vectors/`. Opening a database
//! opens its engines (time-series chunks and the LSN they hold; the vector snapshot and its
//! LSN), then opens (and so recovers) its WAL, replaying every record after the checkpoint into
//! the engine it belongs to (each skips what it already holds), applies the replayed vector
//! operations, then starts its flusher. Only `default` exists until runtime database
//! management lands; the registry is built for many.
//!
//! The WAL is shared by the engines, so it may only be checkpointed at the lowest LSN every
//! engine holds durably ([`Database::checkpoint_bound`]).
//!
//! Replay refuses record kinds it does not know: they were written by a newer Sluice, and
//! skipping them would silently drop data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_ts::{TsConfig, TsEngine, TsMetrics};
use sluice_vector::{VectorConfig, VectorEngine, VectorMetrics};
use sluice_wal::{FatalHandler, Lsn, OpenError, RecordRef, Wal, WalConfig, WalMetrics, WalOptions};

use crate::flusher::Flusher;
use crate::metrics::Metrics;

pub const DEFAULT_DATABASE: &str = "default";

/// One open database.
pub struct Database {
    pub name: String,
    pub wal: Arc<Wal>,
    pub ts: Arc<TsEngine>,
    pub vectors: Arc<VectorEngine>,
    pub flusher: Flusher,
}

/// What replay found in a database's WAL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub records: u64,
    pub points: u64,
    pub vector_records: u64,
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("database {name:?}: {message}")]
pub struct DatabaseOpenError {
    pub name: String,
    pub message: String,
}

/// Settings every database opens with.
#[derive(Clone)]
pub struct OpenSettings {
    pub data_dir: PathBuf,
    pub wal: WalConfig,
    pub ts: TsConfig,
    pub vector: VectorConfig,
    pub on_fatal: Option<FatalHandler>,
}

impl Database {
    pub fn wal_dir(data_dir: &Path, name: &str) -> PathBuf {
        data_dir.join("databases").join(name).join("wal")
    }

    pub fn ts_dir(data_dir: &Path, name: &str) -> PathBuf {
        data_dir.join("databases").join(name).join("ts")
    }

    pub fn vector_dir(data_dir: &Path, name: &str) -> PathBuf {
        data_dir.join("databases").join(name).join("vectors")
    }

    /// The highest LSN the WAL may be checkpointed at: the lowest that every engine holds.
    pub fn checkpoint_bound(ts: &TsEngine, vectors: &VectorEngine, wal: &Wal) -> Lsn {
        // Read before asking the engines (see their `persisted_bound`).
        let written = wal.status().written_lsn;
        ts.persisted_bound(written)
            .min(vectors.persisted_bound(written))
    }

    /// Opens the database: engines first, then the WAL replayed into them, then the flusher.
    pub fn open(
        name: &str,
        settings: &OpenSettings,
        metrics: &Metrics,
    ) -> Result<(Database, ReplayStats), DatabaseOpenError> {
        let err = |message: String| DatabaseOpenError {
            name: name.to_string(),
            message,
        };
        let ts_metrics = TsMetrics::default();
        let ts = TsEngine::open(
            &Database::ts_dir(&settings.data_dir, name),
            settings.ts.clone(),
            ts_metrics.clone(),
        )
        .map_err(|e| err(e.to_string()))?;
        let vector_metrics = VectorMetrics::default();
        let vectors = VectorEngine::open(
            &Database::vector_dir(&settings.data_dir, name),
            settings.vector.clone(),
            vector_metrics.clone(),
        )
        .map_err(|e| err(format!("opening the vector snapshot: {e}")))?;
        let wal_metrics = WalMetrics::default();
        let mut stats = ReplayStats::default();
        let options = WalOptions {
            config: settings.wal.clone(),
            metrics: wal_metrics.clone(),
            on_fatal: settings.on_fatal.clone(),
        };
        let wal = Wal::open(
            &Database::wal_dir(&settings.data_dir, name),
            options,
            |record| replay(&ts, &vectors, record, &mut stats),
        )
        .map_err(|e: OpenError| err(e.to_string()))?;
        vectors
            .finish_replay()
            .map_err(|e| err(format!("applying replayed vector operations: {e}")))?;
        let written = wal.status().written_lsn;
        for (engine, held) in [
            ("time-series data", ts.flushed_lsn()),
            ("vector snapshot", vectors.snapshot_lsn()),
        ] {
            if written < held {
                return Err(err(format!(
                    "the WAL ends at LSN {written} but the {engine} holds everything up to {held}: \
                     the WAL lost synced records; refusing to start rather than reuse LSNs"
                )));
            }
        }
        metrics.register_database(name, |r| {
            wal_metrics.register(r);
            ts_metrics.register(r);
            vector_metrics.register(r);
        });
        let ts = Arc::new(ts);
        let vectors = Arc::new(vectors);
        let wal = Arc::new(wal);
        let flusher = Flusher::start(name, ts.clone(), vectors.clone(), wal.clone())
            .map_err(|e| err(format!("starting the flusher: {e}")))?;
        Ok((
            Database {
                name: name.to_string(),
                wal,
                ts,
                vectors,
                flusher,
            },
            stats,
        ))
    }

    /// Flushes the buffers (checkpointing the WAL) and closes the WAL.
    pub fn close(&self) {
        self.flusher.stop();
        if let Err(e) = self.wal.close() {
            tracing::error!(db = %self.name, error = %e, "closing the WAL failed");
        }
    }
}

fn replay(
    ts: &TsEngine,
    vectors: &VectorEngine,
    record: RecordRef<'_>,
    stats: &mut ReplayStats,
) -> Result<(), String> {
    match record.kind {
        sluice_ts::record::POINTS => {
            let points = sluice_ts::record::decode(record.payload).map_err(|e| e.to_string())?;
            stats.points += points.len() as u64;
            ts.replay(points, record.lsn);
        }
        sluice_vector::record::VECTOR_OPS | sluice_vector::record::COLLECTION => {
            vectors.replay(record.kind, record.payload, record.lsn)?;
            stats.vector_records += 1;
        }
        other => {
            return Err(format!(
                "unknown record kind {}: written by a newer Sluice? refusing to skip it",
                other.0
            ));
        }
    }
    stats.records += 1;
    Ok(())
}

/// The open databases, by name.
#[derive(Default)]
pub struct Databases {
    by_name: BTreeMap<String, Arc<Database>>,
}

impl Databases {
    /// Opens every known database (today: `default`).
    pub fn open_all(
        settings: &OpenSettings,
        metrics: &Metrics,
    ) -> Result<Databases, DatabaseOpenError> {
        let mut dbs = Databases::default();
        dbs.open_one(DEFAULT_DATABASE, settings, metrics)?;
        Ok(dbs)
    }

    fn open_one(
        &mut self,
        name: &str,
        settings: &OpenSettings,
        metrics: &Metrics,
    ) -> Result<(), DatabaseOpenError> {
        let (db, stats) = Database::open(name, settings, metrics)?;
        let status = db.wal.status();
        tracing::info!(
            db = name,
            replayed_records = stats.records,
            replayed_points = stats.points,
            replayed_vector_records = stats.vector_records,
            last_lsn = status.written_lsn.get(),
            checkpoint_lsn = status.checkpoint_lsn.get(),
            truncated_bytes = status.truncated_bytes_at_open,
            "database open"
        );
        self.by_name.insert(name.to_string(), Arc::new(db));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Database>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Flushes every buffer and closes every WAL: nothing acknowledged is left only in memory.
    pub fn close_all(&self) {
        for db in self.by_name.values() {
            db.close();
        }
    }
}
