//! Databases: each an isolated namespace with its own WAL.
//!
//! Layout: `<data_dir>/databases/<name>/wal/`, `…/ts/` and `…/vectors/`. Opening a database
//! opens its engines (time-series chunks and the LSN they hold; the vector snapshot and its
//! LSN), then opens (and so recovers) its WAL, replaying every record after the checkpoint into
//! the engine it belongs to (each skips what it already holds), applies the replayed vector
//! operations, then starts its flusher. [`Databases`] is the registry: `default` plus what the
//! catalogue lists, created and deleted at runtime.
//!
//! The WAL is shared by the engines, so it may only be checkpointed at the lowest LSN every
//! engine holds durably ([`Database::checkpoint_bound`]).
//!
//! Replay refuses record kinds it does not know: they were written by a newer Sluice, and
//! skipping them would silently drop data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use sluice_ts::{TsConfig, TsEngine, TsMetrics};
use sluice_vector::{VectorConfig, VectorEngine, VectorMetrics};
use sluice_wal::{
    DurableHook, FatalHandler, Lsn, OpenError, RecordRef, Wal, WalConfig, WalMetrics, WalOptions,
};

use crate::catalogue::{Catalogue, CatalogueError, DatabaseSettings, known_name};
use crate::core::records::Kind;
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
    /// Deletes chunks past retention (`crate::retention`).
    pub sweeper: crate::retention::Sweeper,
    /// Its `[databases.<name>]` settings.
    pub settings: DatabaseSettings,
    /// Its Cedar policies, compiled (with the server-level ones added by the authorizer).
    pub policy: Option<Arc<crate::auth::policy::CompiledPolicy>>,
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
    /// Called by every database's WAL writer when its durable LSN advances (wakes the
    /// replication shippers and changefeeds).
    pub on_durable: Option<DurableHook>,
    /// The WAL retention floor a database opens with (what its replicas still need).
    pub retain_from: Option<RetainFrom>,
}

/// The retention floor of a database's WAL, by database name.
pub type RetainFrom = Arc<dyn Fn(&str) -> Option<Lsn> + Send + Sync>;

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

    /// Present while a replica loads a snapshot into this database (see `reset_for_snapshot`).
    pub fn snapshot_marker(data_dir: &Path, name: &str) -> PathBuf {
        data_dir
            .join("databases")
            .join(name)
            .join("SNAPSHOT_INCOMPLETE")
    }

    /// At start: a snapshot load that did not finish left an unknown part of the snapshot.
    /// Discard the database's data; the primary sees the gap and sends the data again.
    fn discard_unfinished_snapshot(data_dir: &Path, name: &str) -> Result<(), DatabaseOpenError> {
        let err = |message: String| DatabaseOpenError {
            name: name.to_string(),
            message,
        };
        let marker = Database::snapshot_marker(data_dir, name);
        if !marker.exists() {
            return Ok(());
        }
        tracing::warn!(
            db = name,
            "an unfinished replication snapshot was found; discarding this database's data"
        );
        for dir in [
            Database::ts_dir(data_dir, name),
            Database::vector_dir(data_dir, name),
            Database::wal_dir(data_dir, name),
        ] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| err(format!("removing {}: {e}", dir.display())))?;
            }
        }
        std::fs::remove_file(&marker)
            .map_err(|e| err(format!("removing {}: {e}", marker.display())))
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
            retain_from: settings.retain_from.as_ref().and_then(|f| f(name)),
            on_durable: settings.on_durable.clone(),
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
        let sweeper = match crate::retention::Sweeper::start(name, ts.clone()) {
            Ok(s) => s,
            Err(e) => {
                flusher.stop();
                return Err(err(format!("starting the retention sweep: {e}")));
            }
        };
        Ok((
            Database {
                name: name.to_string(),
                wal,
                ts,
                vectors,
                flusher,
                sweeper,
                settings: DatabaseSettings::default(),
                policy: None,
            },
            stats,
        ))
    }

    /// Flushes the buffers (checkpointing the WAL) and closes the WAL.
    pub fn close(&self) {
        self.sweeper.stop();
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
    match Kind::of(record.kind) {
        Some(Kind::Points | Kind::SeriesPoints) => {
            let batch = sluice_ts::record::decode_any(record.kind, record.payload)
                .map_err(|e| e.to_string())?;
            stats.points += batch.len() as u64;
            ts.replay(batch, record.lsn);
        }
        Some(Kind::TsDelete) => {
            let q = sluice_ts::record::decode_delete(record.payload).map_err(|e| e.to_string())?;
            ts.replay_delete(&q, record.lsn)
                .map_err(|e| format!("applying the deletion at LSN {}: {e}", record.lsn))?;
        }
        Some(Kind::VectorOps | Kind::Collection) => {
            vectors.replay(record.kind, record.payload, record.lsn)?;
            stats.vector_records += 1;
        }
        None => {
            return Err(format!(
                "unknown record kind {}: written by a newer Sluice? refusing to skip it",
                record.kind.0
            ));
        }
    }
    stats.records += 1;
    Ok(())
}

/// Why a database could not be created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(
        "invalid database name {0:?}: use lower-case letters, digits, _ and -, starting with a letter or digit, at most 64 bytes"
    )]
    InvalidName(String),
    #[error("the database \"default\" always exists and cannot be deleted")]
    Protected,
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Open(#[from] DatabaseOpenError),
    #[error("database {name:?}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
}

/// How long a delete waits for requests that still hold the database.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The open databases, by name, and the catalogue that lists them.
///
/// Create and delete are serialized (`manage`), update the catalogue file first (so a refused
/// file change leaves everything as it was), and are blocking: run them off the async workers.
/// A deleted database's directory is renamed to `databases/.trash-*` and then removed; trash
/// left by a crash is removed at the next start, and a directory found where a new database is
/// being created (its delete crashed after the catalogue was updated) is moved to the trash
/// first, so a new database never sees old data.
pub struct Databases {
    by_name: RwLock<BTreeMap<String, Arc<Database>>>,
    settings: OpenSettings,
    catalogue: Catalogue,
    manage: Mutex<()>,
}

impl Databases {
    /// Opens `default` and every database the catalogue lists.
    pub fn open_all(
        settings: OpenSettings,
        catalogue: Catalogue,
        listed: BTreeMap<String, DatabaseSettings>,
        metrics: &Metrics,
    ) -> Result<Databases, DatabaseOpenError> {
        let dbs = Databases {
            by_name: RwLock::default(),
            settings,
            catalogue,
            manage: Mutex::new(()),
        };
        dbs.empty_trash();
        let mut all = listed;
        all.entry(DEFAULT_DATABASE.to_string()).or_default();
        for (name, db_settings) in &all {
            Database::discard_unfinished_snapshot(&dbs.settings.data_dir, name)?;
            dbs.open_one(name, db_settings, metrics)?;
        }
        Ok(dbs)
    }

    fn open_one(
        &self,
        name: &str,
        db_settings: &DatabaseSettings,
        metrics: &Metrics,
    ) -> Result<Arc<Database>, DatabaseOpenError> {
        let mut settings = self.settings.clone();
        if let Some(r) = db_settings.retention_ms {
            settings.ts.retention_ms = r;
        }
        settings.ts.retention_rules = db_settings
            .retention_rules
            .iter()
            .map(|r| sluice_ts::RetentionRule {
                metric: r.metric.clone(),
                retention_ms: r.retention_ms,
            })
            .collect();
        settings.ts.downsampling = db_settings
            .downsampling
            .iter()
            .map(|r| sluice_ts::DownsampleRule {
                after_ms: r.after_ms,
                resolution_ms: r.resolution_ms,
            })
            .collect();
        if let Some(m) = db_settings.max_series {
            settings.ts.max_series = usize::try_from(m).unwrap_or(usize::MAX);
        }
        if let Some(m) = db_settings.max_new_series_per_hour {
            settings.ts.max_new_series_per_hour = usize::try_from(m).unwrap_or(usize::MAX);
        }
        let policy = match &db_settings.policy {
            Some(text) => Some(Arc::new(crate::auth::policy::compile(text).map_err(
                |e| DatabaseOpenError {
                    name: name.to_string(),
                    message: format!("policy: {e}"),
                },
            )?)),
            None => None,
        };
        let (mut db, stats) = Database::open(name, &settings, metrics)?;
        db.settings = db_settings.clone();
        db.policy = policy;
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
        let db = Arc::new(db);
        self.by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), db.clone());
        Ok(db)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Database>> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<Database>> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Creates a database: listed in the catalogue file, then opened. Blocking.
    pub fn create(
        &self,
        name: &str,
        db_settings: &DatabaseSettings,
        metrics: &Metrics,
    ) -> Result<Arc<Database>, ManageError> {
        if !known_name(name) {
            return Err(ManageError::InvalidName(name.to_string()));
        }
        if let Some(policy) = &db_settings.policy {
            crate::auth::policy::compile(policy).map_err(|e| DatabaseOpenError {
                name: name.to_string(),
                message: format!("policy: {e}"),
            })?;
        }
        let _manage = self.manage.lock().unwrap_or_else(PoisonError::into_inner);
        if self.get(name).is_some() {
            return Err(CatalogueError::Exists(name.to_string()).into());
        }
        self.catalogue.add(name, db_settings)?;
        let dir = self.settings.data_dir.join("databases").join(name);
        let opened = self.move_to_trash(name, &dir).and_then(|()| {
            self.open_one(name, db_settings, metrics)
                .map_err(Into::into)
        });
        match opened {
            Ok(db) => {
                tracing::info!(db = name, "database created");
                Ok(db)
            }
            Err(e) => {
                // Leave the catalogue as it was: the database does not exist.
                if let Err(undo) = self.catalogue.remove(name) {
                    tracing::error!(db = name, error = %undo, "could not unlist a database that failed to open");
                }
                Err(e)
            }
        }
    }

    /// Deletes a database and its data. Blocking.
    pub fn delete(&self, name: &str, metrics: &Metrics) -> Result<(), ManageError> {
        if name == DEFAULT_DATABASE {
            return Err(ManageError::Protected);
        }
        let _manage = self.manage.lock().unwrap_or_else(PoisonError::into_inner);
        if self.get(name).is_none() {
            return Err(CatalogueError::NotFound(name.to_string()).into());
        }
        self.catalogue.remove(name)?;
        let db = self
            .by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        metrics.unregister_database(name);
        if let Some(db) = db {
            db.close();
            // Requests still holding the database (a long export) keep its engines, and their
            // files, open: wait for them before the directory goes, so a database re-created
            // under this name never shares a path with a live engine of the old one.
            let started = std::time::Instant::now();
            while Arc::strong_count(&db) > 1 && started.elapsed() < RELEASE_WAIT {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if Arc::strong_count(&db) > 1 {
                tracing::warn!(
                    db = name,
                    "requests still hold the deleted database; removing its files anyway"
                );
            }
        }
        let dir = self.settings.data_dir.join("databases").join(name);
        self.move_to_trash(name, &dir)?;
        self.empty_trash();
        tracing::info!(db = name, "database deleted");
        Ok(())
    }

    /// Replaces a database's data with an empty state whose WAL continues after `at`, creating
    /// the database (listed with default settings) if it does not exist: a replica about to
    /// load a snapshot taken at `at`. Until [`Databases::finish_snapshot`], a marker file makes
    /// the next start discard the database (a half-loaded snapshot must never pass for data
    /// up to `at`). Blocking.
    pub fn reset_for_snapshot(
        &self,
        name: &str,
        at: Lsn,
        metrics: &Metrics,
    ) -> Result<Arc<Database>, ManageError> {
        if !known_name(name) {
            return Err(ManageError::InvalidName(name.to_string()));
        }
        let _manage = self.manage.lock().unwrap_or_else(PoisonError::into_inner);
        let io = |source| ManageError::Io {
            name: name.to_string(),
            source,
        };
        let db_settings = match self.get(name) {
            Some(db) => db.settings.clone(),
            None => {
                let fresh = DatabaseSettings::default();
                self.catalogue.add(name, &fresh)?;
                fresh
            }
        };
        let old = self
            .by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        if let Some(db) = old {
            metrics.unregister_database(name);
            db.close();
            let started = std::time::Instant::now();
            while Arc::strong_count(&db) > 1 && started.elapsed() < RELEASE_WAIT {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let dir = self.settings.data_dir.join("databases").join(name);
        self.move_to_trash(name, &dir)?;
        self.empty_trash();
        std::fs::create_dir_all(&dir).map_err(io)?;
        let marker = Database::snapshot_marker(&self.settings.data_dir, name);
        std::fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        sluice_wal::reset_to(&Database::wal_dir(&self.settings.data_dir, name), at).map_err(
            |e| {
                ManageError::Open(DatabaseOpenError {
                    name: name.to_string(),
                    message: e.to_string(),
                })
            },
        )?;
        Ok(self.open_one(name, &db_settings, metrics)?)
    }

    /// Ends a snapshot load: the engines hold it durably (see `Flusher::persist_now`).
    pub fn finish_snapshot(&self, name: &str) -> std::io::Result<()> {
        let marker = Database::snapshot_marker(&self.settings.data_dir, name);
        std::fs::remove_file(&marker)?;
        if let Some(dir) = marker.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn move_to_trash(&self, name: &str, dir: &Path) -> Result<(), ManageError> {
        if !dir.exists() {
            return Ok(());
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let trash = self
            .settings
            .data_dir
            .join("databases")
            .join(format!(".trash-{name}-{nanos}"));
        std::fs::rename(dir, &trash).map_err(|source| ManageError::Io {
            name: name.to_string(),
            source,
        })
    }

    fn empty_trash(&self) {
        let root = self.settings.data_dir.join("databases");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".trash-")
                && let Err(e) = std::fs::remove_dir_all(entry.path())
            {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a deleted database's files");
            }
        }
    }

    /// Flushes every buffer and closes every WAL: nothing acknowledged is left only in memory.
    pub fn close_all(&self) {
        for db in self.all() {
            db.close();
        }
    }
}
