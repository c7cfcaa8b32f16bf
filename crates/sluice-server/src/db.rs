//! Databases: each an isolated namespace with its own WAL (SPEC §2).
//!
//! Layout: `<data_dir>/databases/<name>/wal/` and `…/ts/`. Opening a database opens its
//! time-series engine (chunks and the LSN they hold), then opens (and so recovers) its WAL,
//! replaying every record after that LSN into the engine, then starts its flusher. Only
//! `default` exists until runtime database management lands; the registry is built for many.
//!
//! Replay refuses record kinds it does not know: they were written by a newer Sluice, and
//! skipping them would silently drop data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_ts::{TsConfig, TsEngine, TsMetrics};
use sluice_wal::{FatalHandler, OpenError, RecordRef, Wal, WalConfig, WalMetrics, WalOptions};

use crate::flusher::Flusher;
use crate::metrics::Metrics;

pub const DEFAULT_DATABASE: &str = "default";

/// One open database.
pub struct Database {
    pub name: String,
    pub wal: Arc<Wal>,
    pub ts: Arc<TsEngine>,
    pub flusher: Flusher,
}

/// What replay found in a database's WAL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub records: u64,
    pub points: u64,
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
    pub on_fatal: Option<FatalHandler>,
}

impl Database {
    pub fn wal_dir(data_dir: &Path, name: &str) -> PathBuf {
        data_dir.join("databases").join(name).join("wal")
    }

    pub fn ts_dir(data_dir: &Path, name: &str) -> PathBuf {
        data_dir.join("databases").join(name).join("ts")
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
            |record| replay(&ts, record, &mut stats),
        )
        .map_err(|e: OpenError| err(e.to_string()))?;
        let flushed = ts.flushed_lsn();
        if wal.status().written_lsn < flushed {
            return Err(err(format!(
                "the WAL ends at LSN {} but the time-series data holds everything up to {flushed}: \
                 the WAL lost synced records; refusing to start rather than reuse LSNs",
                wal.status().written_lsn
            )));
        }
        metrics.register_database(name, |r| {
            wal_metrics.register(r);
            ts_metrics.register(r);
        });
        let ts = Arc::new(ts);
        let wal = Arc::new(wal);
        let flusher = Flusher::start(name, ts.clone(), wal.clone())
            .map_err(|e| err(format!("starting the flusher: {e}")))?;
        Ok((
            Database {
                name: name.to_string(),
                wal,
                ts,
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

fn replay(ts: &TsEngine, record: RecordRef<'_>, stats: &mut ReplayStats) -> Result<(), String> {
    match record.kind {
        sluice_ts::record::POINTS => {
            let points = sluice_ts::record::decode(record.payload).map_err(|e| e.to_string())?;
            stats.points += points.len() as u64;
            ts.replay(points, record.lsn);
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
