//! Replication: a primary ships its databases' WAL records, zstd-compressed, to each
//! registered replica; a replica applies them at the primary's LSNs and serves reads.
//!
//! # What it owns
//! - The node's **role** (`primary`/`replica`, from config; a replica becomes primary by
//!   `POST /api/v1/replication/promote`) and its persisted state, `<data_dir>/replication.json`:
//!   node id, epoch, the highest primary epoch accepted, the registered replicas and each one's
//!   confirmed LSN per database. Written atomically (temp file, fsync, rename, directory fsync)
//!   when a replica is added or removed, on promotion, and at most once a second while confirmed
//!   positions advance. A stale confirmed LSN only makes the primary re-send records, which the
//!   replica skips.
//! - On a primary, one **shipper** task per replica (`shipper.rs`) and the **retention floor**
//!   of every database's WAL: segments holding records a healthy replica has not confirmed (or
//!   that follow a snapshot being sent) are kept past the checkpoint, unless that replica is
//!   more than `max_retained_wal_bytes` behind; a replica whose next record is gone is caught
//!   up by snapshot transfer (`snapshot.rs`).
//! - On a replica, the **apply** path (`apply.rs`), serialized per database.
//!
//! # Invariants
//! - A replica's log holds exactly its primary's records at the primary's LSNs: records are
//!   appended with `Wal::append_at` under the engines' locks, already-applied LSNs are skipped,
//!   a gap is refused (`409 wal_gap` with `expected_lsn`) and nothing of a batch is applied
//!   unless every record of it decodes and passes its CRC.
//! - A primary ships only durable records (a replica never holds what its primary may lose in
//!   a power cut), and counts a record as confirmed only once the replica answered that it is
//!   durable there.
//! - Epoch fencing: every batch carries the primary's epoch; a replica refuses batches of an
//!   epoch older than the highest it has accepted (`409 stale_epoch`). Promotion raises the
//!   epoch above every epoch the node has seen, so after promoting a replica its old primary
//!   is refused by it (and by every replica that has followed the new primary).
//! - A replica refuses writes (`409 read_only_replica`, naming its primary); flushes, reads,
//!   changefeeds and replication routes work.
//!
//! # Limits (known)
//! - Database deletion on a primary is not shipped (creation is: a batch or snapshot for a
//!   missing database creates it with default settings).
//! - Shipping is HTTP without TLS from the primary's side (the server's HTTP client has no TLS
//!   stack); use a private network or a TLS-terminating proxy.

pub mod apply;
pub mod shipper;
pub mod snapshot;

use sluice_api::ErrorCode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use sluice_api::replication::{
    ReplicaDatabaseStatus, ReplicaInfo, ReplicaSideDatabase, ReplicaSideStats, ReplicaStatus,
    ReplicationStats, ShippingStats,
};
use sluice_wal::Lsn;

use crate::config::{Config, Role};
use crate::db::{DEFAULT_DATABASE, Databases};

const STATE_FILE: &str = "replication.json";

/// Checks a compression setting.
pub fn check_compression(kind: &str, level: i32) -> Result<(), String> {
    if kind != "zstd" && kind != "none" {
        return Err(format!("compression must be zstd or none, not {kind:?}"));
    }
    if !(1..=22).contains(&level) {
        return Err(format!("compression level must be 1 to 22, not {level}"));
    }
    Ok(())
}

/// Checks a replica's id and endpoint.
pub fn check_replica(id: &str, endpoint: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(format!(
            "replica_id {id:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.'"
        ));
    }
    let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
        format!("endpoint {endpoint:?} must be an http:// URL (shipping has no TLS client yet)")
    })?;
    if !valid_endpoint_rest(rest) {
        return Err(format!(
            "endpoint {endpoint:?} is not http://host[:port][/path] (a host name or IPv4 address, a port up to 65535, at most 256 characters after http://)"
        ));
    }
    Ok(())
}

/// `host[:port][/path]` after `http://`, the grammar the OpenAPI document states as a pattern:
/// host 1 to 253 of `A-Z a-z 0-9 . -`, port 1 to 5 digits up to 65535 (no leading zero when
/// five), path `/` then `A-Z a-z 0-9 . _ ~ / -`; 256 characters in all.
fn valid_endpoint_rest(rest: &str) -> bool {
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host_ok = (1..=253).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && !(p.len() == 5 && p.starts_with('0'))
            && p.parse::<u32>().is_ok_and(|n| n <= 65535)
    });
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'/' | b'-'));
    rest.len() <= 256 && host_ok && port_ok && path_ok
}

/// What `replication.json` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PersistedState {
    node_id: String,
    /// This node's epoch as a primary.
    epoch: u64,
    /// The highest epoch of a primary whose batches this node accepted.
    #[serde(default)]
    primary_epoch: u64,
    /// The node id of that primary: another node claiming the same epoch (two replicas
    /// promoted from one primary) is refused.
    #[serde(default)]
    primary_id: Option<String>,
    #[serde(default)]
    replicas: Vec<PersistedReplica>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PersistedReplica {
    replica_id: String,
    endpoint: String,
    /// Confirmed LSN per database.
    #[serde(default)]
    confirmed: BTreeMap<String, u64>,
}

/// Shipping totals and their Prometheus twins.
#[derive(Clone, Default)]
pub struct ShipperMetrics {
    pub bytes_uncompressed: Counter,
    pub bytes_shipped: Counter,
    pub batches: Counter,
    pub entries: Counter,
    pub failed: Counter,
    pub compression_ratio: Gauge<f64, AtomicU64>,
    pub snapshots: Counter,
    pub applied_batches: Counter,
    pub applied_entries: Counter,
    pub refused_batches: Family<crate::metrics::ReasonLabels, Counter>,
    pub snapshots_installed: Counter,
    pub received_bytes: Counter,
    pub received_uncompressed_bytes: Counter,
}

impl ShipperMetrics {
    fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "wal_shipper_bytes_uncompressed",
            "WAL record bytes shipped to replicas, before compression",
            self.bytes_uncompressed.clone(),
        );
        r.register(
            "wal_shipper_bytes_shipped",
            "Bytes sent to replicas (compressed request bodies)",
            self.bytes_shipped.clone(),
        );
        r.register(
            "wal_shipper_compression_ratio",
            "Uncompressed over shipped bytes, over all batches so far",
            self.compression_ratio.clone(),
        );
        r.register(
            "wal_shipper_batches",
            "WAL batches a replica accepted",
            self.batches.clone(),
        );
        r.register(
            "wal_shipper_entries",
            "WAL records a replica accepted",
            self.entries.clone(),
        );
        r.register(
            "wal_shipper_failed_ships",
            "Shipping attempts that failed (unreachable replica, refusal, timeout)",
            self.failed.clone(),
        );
        r.register(
            "wal_shipper_snapshots",
            "Snapshots sent to replicas whose WAL was no longer retained",
            self.snapshots.clone(),
        );
        r.register(
            "replication_applied_batches",
            "WAL batches this replica applied",
            self.applied_batches.clone(),
        );
        r.register(
            "replication_applied_entries",
            "WAL records this replica applied",
            self.applied_entries.clone(),
        );
        r.register(
            "replication_refused_batches",
            "WAL batches this replica refused, by reason",
            self.refused_batches.clone(),
        );
        r.register(
            "replication_received_bytes",
            "Bytes of applied WAL batches as sent by the primary (compressed bodies)",
            self.received_bytes.clone(),
        );
        r.register(
            "replication_received_uncompressed_bytes",
            "WAL record bytes of applied batches",
            self.received_uncompressed_bytes.clone(),
        );
        r.register(
            "replication_snapshots_installed",
            "Snapshots this replica installed",
            self.snapshots_installed.clone(),
        );
    }
}

/// A replica as its shipper tracks it.
pub struct ReplicaLink {
    pub id: String,
    pub endpoint: String,
    pub state: Mutex<LinkState>,
    /// Set when the replica is removed: its shipper stops.
    pub removed: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
pub struct LinkState {
    /// Confirmed LSN per database.
    pub confirmed: BTreeMap<String, Lsn>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub fenced: bool,
    pub snapshots_sent: u64,
    /// Databases whose needed WAL is gone: a snapshot must be sent first.
    pub needs_snapshot: BTreeMap<String, Lsn>,
    /// While a snapshot is sent: the first LSN after it, kept in the WAL.
    pub pins: BTreeMap<String, Lsn>,
}

impl ReplicaLink {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn healthy(&self) -> bool {
        let st = self.lock();
        st.consecutive_failures < 3 && !st.fenced
    }
}

/// What a replica knows of one database's primary.
#[derive(Clone, Default)]
pub struct ReplicaDbProgress {
    pub primary_lsn: u64,
    pub lag_bytes: u64,
    pub lag_ms: u64,
    pub last_batch: Option<Instant>,
}

#[derive(Default)]
struct ReplicaSide {
    primary_id: Option<String>,
    primary_endpoint: Option<String>,
    progress: BTreeMap<String, ReplicaDbProgress>,
}

/// Why a sender's epoch was refused (see [`Replication::accept_epoch`]).
#[derive(Debug)]
pub enum EpochRefusal {
    /// A newer primary (of this epoch) was accepted.
    Stale(u64),
    /// Another node already shipped under this epoch.
    Conflict { epoch: u64, holder: String },
    /// The new epoch could not be saved.
    Persist(String),
}

/// The node's replication state; one per server, in `AppState`.
pub struct Replication {
    role: AtomicU8,
    config: crate::config::ReplicationSection,
    state_path: Mutex<Option<PathBuf>>,
    persisted: Mutex<PersistedState>,
    /// The persisted state differs from the file (confirmed positions advanced).
    dirty: std::sync::atomic::AtomicBool,
    links: Mutex<Vec<Arc<ReplicaLink>>>,
    compression: Mutex<(String, i32)>,
    pub metrics: ShipperMetrics,
    replica_side: Mutex<ReplicaSide>,
    /// Woken whenever any database's WAL becomes durable further.
    pub durable: Arc<tokio::sync::Notify>,
    apply_locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Held while a retention floor is computed and stored, so a floor computed before a
    /// snapshot pin was set never overwrites one that counts it.
    floor_lock: Mutex<()>,
    /// Set once shippers run (after recovery); replicas added later start their own.
    started: Mutex<Option<crate::state::AppState>>,
    stop: tokio::sync::watch::Sender<bool>,
    /// `monitoring.replicate`: whether `_monitoring` is shipped like any database.
    ship_monitoring: bool,
}

const PRIMARY: u8 = 0;
const REPLICA: u8 = 1;

impl Replication {
    pub fn new(config: &Config) -> Replication {
        let r = &config.replication;
        Replication {
            role: AtomicU8::new(match config.role {
                Role::Primary => PRIMARY,
                Role::Replica => REPLICA,
            }),
            config: r.clone(),
            state_path: Mutex::new(None),
            persisted: Mutex::new(PersistedState {
                node_id: r.node_id.clone(),
                epoch: 1,
                ..PersistedState::default()
            }),
            dirty: Default::default(),
            links: Mutex::new(Vec::new()),
            compression: Mutex::new((r.compression.clone(), r.compression_level)),
            metrics: ShipperMetrics::default(),
            replica_side: Mutex::default(),
            durable: Arc::new(tokio::sync::Notify::new()),
            apply_locks: Mutex::default(),
            floor_lock: Mutex::default(),
            started: Mutex::new(None),
            stop: tokio::sync::watch::Sender::new(false),
            ship_monitoring: config.monitoring.replicate,
        }
    }

    /// Whether database `db` is shipped to replicas: all are but `_monitoring`, unless
    /// `monitoring.replicate` (each node keeps its own metrics). What is not shipped holds no
    /// WAL for replicas and has no lag.
    pub fn ships(&self, db: &str) -> bool {
        db != crate::catalogue::MONITORING_DB || self.ship_monitoring
    }

    pub fn config(&self) -> &crate::config::ReplicationSection {
        &self.config
    }

    /// Loads (or creates) `<data_dir>/replication.json` and registers the metrics. Replicas
    /// listed in the configuration are added to those persisted.
    pub fn load(&self, data_dir: &Path, metrics: &crate::metrics::Metrics) -> Result<(), String> {
        metrics.register_server(|r| self.metrics.register(r));
        let path = data_dir.join(STATE_FILE);
        let mut st = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<PersistedState>(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PersistedState {
                epoch: 1,
                ..PersistedState::default()
            },
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        if !self.config.node_id.is_empty() {
            st.node_id = self.config.node_id.clone();
        }
        if st.node_id.is_empty() {
            st.node_id = format!("sluice-{:016x}", rand::random::<u64>());
        }
        st.epoch = st.epoch.max(1);
        for e in &self.config.replicas {
            if !st.replicas.iter().any(|r| r.replica_id == e.replica_id) {
                st.replicas.push(PersistedReplica {
                    replica_id: e.replica_id.clone(),
                    endpoint: e.endpoint.clone(),
                    confirmed: BTreeMap::new(),
                });
            }
        }
        let links = st
            .replicas
            .iter()
            .map(|r| {
                Arc::new(ReplicaLink {
                    id: r.replica_id.clone(),
                    endpoint: r.endpoint.clone(),
                    state: Mutex::new(LinkState {
                        confirmed: r
                            .confirmed
                            .iter()
                            .map(|(db, l)| (db.clone(), Lsn(*l)))
                            .collect(),
                        ..LinkState::default()
                    }),
                    removed: Default::default(),
                })
            })
            .collect();
        *self.links.lock().unwrap_or_else(PoisonError::into_inner) = links;
        *self
            .persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = st;
        *self
            .state_path
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(path);
        self.save()
    }

    /// Writes the state file now (atomically).
    fn save(&self) -> Result<(), String> {
        let Some(path) = self
            .state_path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return Ok(());
        };
        let snapshot = {
            let mut st = self
                .persisted
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
            st.replicas = links
                .iter()
                .map(|l| PersistedReplica {
                    replica_id: l.id.clone(),
                    endpoint: l.endpoint.clone(),
                    confirmed: l
                        .lock()
                        .confirmed
                        .iter()
                        .map(|(d, l)| (d.clone(), l.0))
                        .collect(),
                })
                .collect();
            st.clone()
        };
        self.dirty.store(false, Ordering::Release);
        let bytes = serde_json::to_vec_pretty(&snapshot).map_err(|e| e.to_string())?;
        sluice_wal::durable::write_atomically(&path, &bytes)
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    pub fn role(&self) -> Role {
        if self.role.load(Ordering::Acquire) == REPLICA {
            Role::Replica
        } else {
            Role::Primary
        }
    }

    pub fn node_id(&self) -> String {
        self.persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .node_id
            .clone()
    }

    pub fn epoch(&self) -> u64 {
        self.persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .epoch
    }

    pub fn compression(&self) -> (String, i32) {
        self.compression
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_compression(&self, kind: String, level: i32) {
        *self
            .compression
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (kind, level);
    }

    /// The answer to a write on a replica, if this node is one.
    pub fn refuse_write(&self) -> Option<crate::error::ApiError> {
        if self.role() != Role::Replica {
            return None;
        }
        let side = self
            .replica_side
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let primary = match (&side.primary_id, &side.primary_endpoint) {
            (Some(id), Some(url)) => Some(format!("{id} ({url})")),
            (Some(id), None) => Some(id.clone()),
            _ => None,
        };
        let message = match &primary {
            Some(p) => format!("this node is a read-only replica; send writes to its primary {p}"),
            None => "this node is a read-only replica (no primary has shipped to it yet); send \
                     writes to the primary"
                .to_string(),
        };
        Some(
            crate::error::ApiError::new(ErrorCode::ReadOnlyReplica, message).with_fields(
                crate::error::SeedFields {
                    primary,
                    ..Default::default()
                },
            ),
        )
    }

    /// Becomes primary with an epoch above every epoch this node has seen. The new epoch is
    /// on disk before the role changes; if it cannot be saved, nothing changes.
    pub fn promote(&self) -> Result<u64, String> {
        let (epoch, before) = {
            let mut st = self
                .persisted
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let before = (st.epoch, st.primary_epoch, st.primary_id.clone());
            st.epoch = st.epoch.max(st.primary_epoch) + 1;
            st.primary_epoch = st.epoch;
            st.primary_id = Some(st.node_id.clone());
            (st.epoch, before)
        };
        if let Err(e) = self.save() {
            let mut st = self
                .persisted
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (st.epoch, st.primary_epoch, st.primary_id) = before;
            return Err(e);
        }
        self.role.store(PRIMARY, Ordering::Release);
        tracing::warn!(
            epoch,
            "promoted to primary; batches of older epochs are refused"
        );
        Ok(epoch)
    }

    /// Checks a sender's epoch and id against the primary this node follows, and records a
    /// newer one (on disk before it is accepted: a fence must survive a restart).
    pub fn accept_epoch(&self, epoch: u64, primary_id: &str) -> Result<(), EpochRefusal> {
        let mut st = self
            .persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if epoch < st.primary_epoch {
            return Err(EpochRefusal::Stale(st.primary_epoch));
        }
        if epoch == st.primary_epoch {
            match &st.primary_id {
                Some(id) if id == primary_id => return Ok(()),
                Some(id) if epoch > 0 => {
                    return Err(EpochRefusal::Conflict {
                        epoch,
                        holder: id.clone(),
                    });
                }
                _ => {}
            }
        }
        let before = (st.primary_epoch, st.primary_id.clone());
        st.primary_epoch = epoch;
        st.primary_id = Some(primary_id.to_string());
        drop(st);
        if let Err(e) = self.save() {
            let mut st = self
                .persisted
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if st.primary_epoch == epoch {
                (st.primary_epoch, st.primary_id) = before;
            }
            return Err(EpochRefusal::Persist(e));
        }
        Ok(())
    }

    /// Records what a batch said about its primary.
    pub fn note_batch(&self, req: &sluice_api::replication::WalApplyRequest) {
        let mut side = self
            .replica_side
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        side.primary_id = Some(req.primary_id.clone());
        if req.primary_endpoint.is_some() {
            side.primary_endpoint = req.primary_endpoint.clone();
        }
        let p = side.progress.entry(req.database.clone()).or_default();
        p.primary_lsn = req.primary_durable_lsn;
        p.lag_bytes = req.lag_bytes;
        p.lag_ms = req.lag_ms;
        p.last_batch = Some(Instant::now());
    }

    /// The databases that have an apply lock.
    pub fn apply_lock_names(&self) -> Vec<String> {
        self.apply_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The lock serializing applies to one database.
    pub fn apply_lock(&self, db: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.apply_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(db.to_string())
            .or_default()
            .clone()
    }

    pub fn links(&self) -> Vec<Arc<ReplicaLink>> {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Registers a replica (persisted) and starts shipping to it. Re-registering an id with the
    /// same endpoint changes nothing; with another endpoint it is refused.
    pub fn add_replica(&self, id: &str, endpoint: &str) -> Result<bool, AddReplicaError> {
        check_replica(id, endpoint).map_err(AddReplicaError::Invalid)?;
        let link = {
            let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(l) = links.iter().find(|l| l.id == id) {
                return if l.endpoint == endpoint {
                    Ok(false)
                } else {
                    Err(AddReplicaError::Exists(l.endpoint.clone()))
                };
            }
            let link = Arc::new(ReplicaLink {
                id: id.to_string(),
                endpoint: endpoint.to_string(),
                state: Mutex::default(),
                removed: Default::default(),
            });
            links.push(link.clone());
            link
        };
        self.save().map_err(AddReplicaError::Io)?;
        if let Some(state) = self
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            shipper::spawn(state, link);
        }
        Ok(true)
    }

    /// Unregisters a replica; its shipper stops and its WAL retention ends.
    pub fn remove_replica(&self, id: &str) -> Result<bool, String> {
        let removed = {
            let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(i) = links.iter().position(|l| l.id == id) else {
                return Ok(false);
            };
            links.remove(i)
        };
        removed.removed.store(true, Ordering::Release);
        self.save()?;
        Ok(true)
    }

    /// Computes `db`'s retention floor from the replicas' positions and pins and stores it in
    /// its WAL, as one step (see `floor_lock`).
    pub fn update_floor(&self, db: &crate::db::Database) {
        let _one = self
            .floor_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let floor = self.retain_from(&db.name, |l| db.wal.lag(l).map_or(0, |(b, _)| b));
        db.wal.set_retain_from(floor);
    }

    /// The WAL retention floor of a database: the oldest record a healthy replica still
    /// needs. Replicas too far behind (over `max_retained_wal_bytes`) or fenced hold nothing;
    /// a snapshot in progress holds its pin whatever its lag (without it, the copy would be
    /// useless when it arrives; the pin goes when the transfer ends).
    fn retain_from(&self, db: &str, lag_bytes: impl Fn(Lsn) -> u64) -> Option<Lsn> {
        if !self.ships(db) {
            return None;
        }
        let within = |next: Lsn| {
            (lag_bytes(Lsn(next.0.saturating_sub(1))) <= self.config.max_retained_wal_bytes)
                .then_some(next)
        };
        self.links()
            .iter()
            .filter_map(|l| {
                let st = l.lock();
                if st.fenced {
                    return None;
                }
                let pinned = st.pins.get(db).copied();
                let confirmed = if st.needs_snapshot.contains_key(db) {
                    None
                } else {
                    within(st.confirmed.get(db).copied().unwrap_or(Lsn::ZERO).next())
                };
                pinned.into_iter().chain(confirmed).min()
            })
            .min()
    }

    /// The floor a database opens with, from the persisted positions alone.
    pub fn initial_retain_from(&self, db: &str) -> Option<Lsn> {
        self.retain_from(db, |_| 0)
    }

    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Starts the shippers and the housekeeping task (after recovery).
    pub fn start(&self, state: crate::state::AppState) {
        *self.started.lock().unwrap_or_else(PoisonError::into_inner) = Some(state.clone());
        for link in self.links() {
            shipper::spawn(state.clone(), link);
        }
        tokio::spawn(housekeeping(state));
    }

    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops the shippers and saves the confirmed positions.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
        if let Err(e) = self.save() {
            tracing::warn!(error = %e, "could not save the replication state at shutdown");
        }
    }

    /// `GET /api/v1/replication/stats`.
    pub fn stats(&self, dbs: Option<&Databases>) -> ReplicationStats {
        let m = &self.metrics;
        let shipped = m.bytes_shipped.get();
        let uncompressed = m.bytes_uncompressed.get();
        let mut all = dbs.map(|d| d.all()).unwrap_or_default();
        all.retain(|db| self.ships(&db.name));
        let replicas = self
            .links()
            .iter()
            .map(|l| {
                let st = l.lock();
                let mut lag_bytes = 0;
                let mut lag_ms = 0;
                let databases = all
                    .iter()
                    .map(|db| {
                        let confirmed = st.confirmed.get(&db.name).copied().unwrap_or(Lsn::ZERO);
                        let (b, ms) = db.wal.lag(confirmed).unwrap_or((0, 0));
                        lag_bytes += b;
                        lag_ms = lag_ms.max(ms);
                        ReplicaDatabaseStatus {
                            name: db.name.clone(),
                            confirmed_lsn: confirmed.0,
                            primary_lsn: db.wal.status().durable_lsn.0,
                            lag_bytes: b,
                            lag_ms: ms,
                        }
                    })
                    .collect();
                ReplicaStatus {
                    replica_id: l.id.clone(),
                    endpoint: l.endpoint.clone(),
                    last_confirmed_lsn: format!(
                        "{:016X}",
                        st.confirmed.get(DEFAULT_DATABASE).map_or(0, |l| l.0)
                    ),
                    lag_bytes,
                    lag_ms,
                    is_healthy: st.consecutive_failures < 3 && !st.fenced,
                    databases,
                    last_error: st.last_error.clone(),
                    fenced: st.fenced,
                    snapshots_sent: st.snapshots_sent,
                }
            })
            .collect();
        let (compression_type, compression_level) = self.compression();
        let replica = (self.role() == Role::Replica
            || m.applied_batches.get() > 0
            || m.snapshots_installed.get() > 0)
            .then(|| {
                let side = self
                    .replica_side
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                ReplicaSideStats {
                    primary_id: side.primary_id.clone(),
                    primary_endpoint: side.primary_endpoint.clone(),
                    primary_epoch: self
                        .persisted
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .primary_epoch,
                    batches_applied: m.applied_batches.get(),
                    entries_applied: m.applied_entries.get(),
                    batches_refused: refused_total(m),
                    snapshots_installed: m.snapshots_installed.get(),
                    bytes_received: m.received_bytes.get(),
                    bytes_uncompressed_received: m.received_uncompressed_bytes.get(),
                    databases: all
                        .iter()
                        .map(|db| {
                            let p = side.progress.get(&db.name).cloned().unwrap_or_default();
                            ReplicaSideDatabase {
                                name: db.name.clone(),
                                applied_lsn: db.wal.status().last_assigned_lsn.0,
                                primary_lsn: p.primary_lsn,
                                lag_bytes: p.lag_bytes,
                                lag_ms: p.lag_ms,
                                last_batch_age_ms: p
                                    .last_batch
                                    .map(|t| t.elapsed().as_millis() as u64),
                            }
                        })
                        .collect(),
                }
            });
        ReplicationStats {
            replicas,
            stats: ShippingStats {
                total_entries_shipped: m.entries.get(),
                total_bytes_shipped: shipped,
                total_bytes_uncompressed: uncompressed,
                avg_compression_ratio: if shipped == 0 {
                    0.0
                } else {
                    uncompressed as f64 / shipped as f64
                },
                total_batches: m.batches.get(),
                failed_ships: m.failed.get(),
            },
            role: self.role().as_str().to_string(),
            node_id: self.node_id(),
            epoch: self.epoch(),
            compression_type,
            compression_level,
            replica,
        }
    }

    /// The registered replicas.
    pub fn list(&self) -> Vec<ReplicaInfo> {
        self.links()
            .iter()
            .map(|l| ReplicaInfo {
                replica_id: l.id.clone(),
                endpoint: l.endpoint.clone(),
            })
            .collect()
    }
}

fn refused_total(m: &ShipperMetrics) -> u64 {
    use sluice_api::ErrorCode as C;
    [
        C::StaleEpoch,
        C::WalGap,
        C::CorruptBatch,
        C::Overloaded,
        C::NotAReplica,
        C::ConflictingPrimary,
        C::RecordRefused,
    ]
    .iter()
    .map(|code| {
        m.refused_batches
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: code.as_str(),
            })
            .get()
    })
    .sum()
}

#[derive(Debug, thiserror::Error)]
pub enum AddReplicaError {
    #[error("{0}")]
    Invalid(String),
    #[error("a replica of that id exists with endpoint {0}")]
    Exists(String),
    #[error("saving the replication state: {0}")]
    Io(String),
}

/// Once a second: moves every database's WAL retention floor to what the replicas still
/// need, and saves advanced positions.
async fn housekeeping(state: crate::state::AppState) {
    let repl = state.replication();
    let mut stop = repl.stopping();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Some(dbs) = state.databases() {
            for db in dbs.all() {
                repl.update_floor(&db);
            }
        }
        if repl.dirty.load(Ordering::Acquire) {
            let repl = state.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = repl.replication().save() {
                    tracing::warn!(error = %e, "could not save the replication state");
                }
            })
            .await;
        }
    }
}
