//! Replication routes (SPEC §6, §8): the seed's `POST /api/v1/wal/apply`,
//! `GET /api/v1/replication/stats` and `POST /api/v1/replication/config`, plus replica
//! management and promotion. All are admin-only on the server (see `auth::classify`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use sluice_api::ErrorBody;
use sluice_api::ErrorCode;
use sluice_api::replication::{
    PromoteResponse, RemoveReplicaResponse, ReplicaInfo, ReplicaList, ReplicationConfigRequest,
    ReplicationConfigResponse, ReplicationStats, WalApplyRequest, WalApplyResponse,
};

use crate::catalogue::{CatalogueError, DatabaseSettings, valid_name};
use crate::config::Role;
use crate::db::{Database, ManageError};
use crate::error::{ApiError, SeedFields};
use crate::http::extract::{ApiJson, ReplicationJson};
use crate::metrics::ReasonLabels;
use crate::replication::apply::{self, ApplyError};
use crate::replication::{AddReplicaError, EpochRefusal, check_compression};
use crate::state::AppState;

/// Apply a compressed WAL batch from the primary (replicas only; admin).
#[utoipa::path(post, path = "/api/v1/wal/apply", tag = "replication", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server"}))),
    request_body(content = WalApplyRequest, description = "Sent with `Content-Encoding: zstd` and `X-Primary-ID`"),
    params(("X-Primary-ID" = Option<String>, Header, description = "The shipping primary; must equal primary_id")),
    responses(
        (status = 200, description = "Applied and durable (records already held are skipped)", body = WalApplyResponse),
        (status = 400, description = "Corrupt batch (CRC, size, record or count mismatch): nothing applied", body = ErrorBody),
        (status = 409, description = "`wal_gap` (expected_lsn says where this replica's log continues), `stale_epoch` (a newer primary was accepted), `conflicting_primary` (another node shipped under this epoch), or `not_a_replica`", body = ErrorBody),
        (status = 413, description = "Batch larger than this replica accepts", body = ErrorBody),
        (status = 503, description = "Buffers full, or a newer epoch could not be saved (`epoch_not_saved`); retry", body = ErrorBody),
    ))]
pub async fn wal_apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    sent: Option<axum::Extension<crate::http::middleware::SentBodyBytes>>,
    ReplicationJson(req): ReplicationJson<WalApplyRequest>,
) -> Result<Json<WalApplyResponse>, ApiError> {
    // The body as sent (before the decompression layer), for the replica's byte counts.
    let sent = sent.map_or(0, |e| e.0.0);
    apply_batch(
        &state,
        headers.get("x-primary-id").map(|h| h.as_bytes()),
        sent,
        req,
    )
    .await
    .map(Json)
}

/// Checks and applies one shipped batch (HTTP and wire opcode `0x90`).
pub async fn apply_batch(
    state: &AppState,
    primary_header: Option<&[u8]>,
    sent_bytes: u64,
    req: WalApplyRequest,
) -> Result<WalApplyResponse, ApiError> {
    let repl = state.replication();
    let refused = |code: ErrorCode| {
        repl.metrics
            .refused_batches
            .get_or_create(&ReasonLabels {
                reason: code.as_str(),
            })
            .inc();
    };
    check_sender(state, req.epoch, &req.primary_id)?;
    let (epoch, primary_id) = (req.epoch, req.primary_id.clone());
    if let Some(h) = primary_header
        && h != req.primary_id.as_bytes()
    {
        return Err(ApiError::invalid_field(
            "primary_id",
            "differs from the X-Primary-ID header",
        ));
    }
    if !valid_name(&req.database) {
        return Err(ApiError::invalid_field(
            "database",
            "not a valid database name",
        ));
    }
    // Uncompressed: at least one largest record (with its header) beyond a full batch.
    let cap = state
        .config()
        .http
        .max_batch_body_bytes
        .saturating_mul(2)
        .max(sluice_wal::record::MAX_PAYLOAD_BYTES + repl.config().max_batch_bytes + (1 << 16));
    let max_dimension = state.config().vector.max_dimension;
    let (req, unpacked) = tokio::task::spawn_blocking(move || {
        let u = apply::unpack(&req, cap, max_dimension);
        (req, u)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let unpacked = unpacked.map_err(|e| {
        refused(match e {
            ApplyError::Refused(_) => ErrorCode::RecordRefused,
            _ => ErrorCode::CorruptBatch,
        });
        apply_error(e)
    })?;
    repl.note_batch(&req);
    let db = database_for(state, &req.database).await?;
    let uncompressed = req.uncompressed_bytes as f64;
    let ratio = uncompressed / unpacked.compressed_len.max(1) as f64;
    let decompress_ms = unpacked.decompress_ms;
    let lock = repl.apply_lock(&db.name);
    let _guard = lock.lock().await;
    // Again under the lock: a promotion (which takes every apply lock) or a newer primary's
    // batch may have come first while this one waited.
    check_sender(state, epoch, &primary_id)?;
    let applied = tokio::task::spawn_blocking(move || apply::apply(&db, unpacked))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            match e {
                ApplyError::Gap { .. } => refused(ErrorCode::WalGap),
                ApplyError::Overloaded => refused(ErrorCode::Overloaded),
                _ => {}
            }
            apply_error(e)
        })?;
    let m = &repl.metrics;
    m.applied_batches.inc();
    m.applied_entries.inc_by(applied.applied);
    m.received_bytes.inc_by(sent_bytes);
    m.received_uncompressed_bytes.inc_by(uncompressed as u64);
    Ok(WalApplyResponse {
        success: true,
        entries_applied: applied.applied,
        compression_ratio: ratio,
        decompression_time_ms: decompress_ms,
        entries_skipped: applied.skipped,
        last_applied_lsn: applied.last_lsn.0,
    })
}

/// Refuses a sender unless this node is a replica and the sender's epoch is current (records a
/// newer one).
fn check_sender(state: &AppState, epoch: u64, primary_id: &str) -> Result<(), ApiError> {
    let repl = state.replication();
    let refused = |code: ErrorCode| {
        repl.metrics
            .refused_batches
            .get_or_create(&ReasonLabels {
                reason: code.as_str(),
            })
            .inc();
    };
    if repl.role() != Role::Replica {
        // A primary that was promoted over the sender: tell it it is fenced.
        if epoch < repl.epoch() {
            refused(ErrorCode::StaleEpoch);
            return Err(stale_epoch(epoch, repl.epoch()));
        }
        refused(ErrorCode::NotAReplica);
        return Err(ApiError::new(
            ErrorCode::NotAReplica,
            "this node is a primary and applies no shipped WAL (if it was promoted, the sender is a stale primary)",
        ));
    }
    match repl.accept_epoch(epoch, primary_id) {
        Ok(()) => Ok(()),
        Err(EpochRefusal::Stale(current)) => {
            refused(ErrorCode::StaleEpoch);
            Err(stale_epoch(epoch, current))
        }
        Err(EpochRefusal::Conflict { epoch, holder }) => {
            refused(ErrorCode::ConflictingPrimary);
            Err(ApiError::new(
                ErrorCode::ConflictingPrimary,
                format!(
                    "{primary_id:?} ships under epoch {epoch}, which this node accepted from {holder:?}: two primaries claim one epoch; promote one of them again"
                ),
            ))
        }
        Err(EpochRefusal::Persist(e)) => Err(ApiError::new(
            ErrorCode::EpochNotSaved,
            format!("could not save the newer primary epoch: {e}"),
        )),
    }
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotParams {
    /// The database the snapshot replaces (created if missing).
    database: String,
    /// The primary's LSN the snapshot stands for; shipping continues after it.
    lsn: u64,
}

/// Replace a database with a snapshot from the primary (replicas only; admin). Sent by a
/// primary whose WAL no longer holds what this replica needs (see docs/replication.md).
#[utoipa::path(post, path = "/api/v1/replication/snapshot", tag = "replication", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server"}))),
    params(SnapshotParams,
        ("X-Primary-ID" = Option<String>, Header, description = "The sending primary"),
        ("X-Primary-Epoch" = Option<u64>, Header, description = "The sending primary's epoch")),
    request_body(content = String, content_type = "application/x-ndjson", description = "zstd-compressed NDJSON: points, collection, vectors lines and an end line"),
    responses(
        (status = 200, description = "Installed and durable; last_applied_lsn is the snapshot's LSN", body = WalApplyResponse),
        (status = 400, description = "Malformed or truncated snapshot (the database stays marked unfinished)", body = ErrorBody),
        (status = 409, description = "`stale_epoch` or `not_a_replica`", body = ErrorBody),
    ))]
pub async fn snapshot(
    State(state): State<AppState>,
    axum::extract::Query(params): axum::extract::Query<SnapshotParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<WalApplyResponse>, ApiError> {
    let epoch = match headers.get("x-primary-epoch") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ApiError::invalid_field("X-Primary-Epoch", "must be an integer"))?,
        None => 0,
    };
    let primary_id = headers
        .get("x-primary-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_field("X-Primary-ID", "required: the sending primary's node id")
        })?
        .to_string();
    if params.lsn == u64::MAX {
        return Err(ApiError::invalid_field("lsn", "out of range"));
    }
    check_sender(&state, epoch, &primary_id)?;
    if !valid_name(&params.database) {
        return Err(ApiError::invalid_field(
            "database",
            "not a valid database name",
        ));
    }
    let lock = state.replication().apply_lock(&params.database);
    let _guard = lock.lock().await;
    check_sender(&state, epoch, &primary_id)?;
    crate::replication::snapshot::install(
        &state,
        &params.database,
        sluice_wal::Lsn(params.lsn),
        body,
    )
    .await?;
    Ok(Json(WalApplyResponse {
        success: true,
        entries_applied: 0,
        compression_ratio: 0.0,
        decompression_time_ms: 0.0,
        entries_skipped: 0,
        last_applied_lsn: params.lsn,
    }))
}

fn stale_epoch(epoch: u64, current: u64) -> ApiError {
    ApiError::new(
        ErrorCode::StaleEpoch,
        format!(
            "batch of epoch {epoch} refused: this node follows (or is) a primary of epoch {current}; the sender was superseded"
        ),
    )
}

fn apply_error(e: ApplyError) -> ApiError {
    let message = e.to_string();
    match e {
        ApplyError::Corrupt(_) => ApiError::new(ErrorCode::CorruptBatch, message),
        ApplyError::TooLarge(_) => ApiError::new(ErrorCode::PayloadTooLarge, message),
        ApplyError::Gap { expected, .. } => {
            ApiError::new(ErrorCode::WalGap, message).with_fields(SeedFields {
                expected_lsn: Some(expected.0),
                ..SeedFields::default()
            })
        }
        ApplyError::Overloaded => ApiError::new(ErrorCode::Overloaded, message).retry_after(1),
        ApplyError::Refused(_) => ApiError::new(ErrorCode::RecordRefused, message),
        ApplyError::Internal(_) => ApiError::internal(message),
    }
}

/// The database a batch is for, created (with default settings) if this replica lacks it.
async fn database_for(state: &AppState, name: &str) -> Result<std::sync::Arc<Database>, ApiError> {
    let dbs = state.databases().ok_or_else(ApiError::not_ready)?.clone();
    if let Some(db) = dbs.get(name) {
        return Ok(db);
    }
    let name = name.to_string();
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        match dbs.create(&name, &DatabaseSettings::default(), st.metrics()) {
            Ok(db) => Ok(db),
            Err(ManageError::Catalogue(CatalogueError::Exists(_))) => dbs
                .get(&name)
                .ok_or_else(|| ApiError::internal("database created and gone")),
            Err(e) => Err(ApiError::internal(format!(
                "creating database {name} for the primary's WAL: {e}"
            ))),
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

/// Replication statistics (the seed's fields, from real counters).
#[utoipa::path(get, path = "/api/v1/replication/stats", tag = "replication", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server"}))),
    responses((status = 200, description = "Replicas, shipping totals, and on a replica what it applied", body = ReplicationStats)))]
pub async fn stats(State(state): State<AppState>) -> Json<ReplicationStats> {
    Json(
        state
            .replication()
            .stats(state.databases().map(|d| d.as_ref())),
    )
}

/// Configure WAL compression (the seed's `configure_compression`): applies to the next batch.
#[utoipa::path(post, path = "/api/v1/replication/config", tag = "replication", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server"}))),
    request_body = ReplicationConfigRequest,
    responses(
        (status = 200, description = "The compression now in force", body = ReplicationConfigResponse),
        (status = 400, description = "Unknown compression type or level outside 1..=22", body = ErrorBody),
    ))]
pub async fn config(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ReplicationConfigRequest>,
) -> Result<Json<ReplicationConfigResponse>, ApiError> {
    configure(&state, req).map(Json)
}

/// Sets the compression (HTTP and wire opcode `0x92`).
pub fn configure(
    state: &AppState,
    req: ReplicationConfigRequest,
) -> Result<ReplicationConfigResponse, ApiError> {
    let repl = state.replication();
    let (kind, level) = repl.compression();
    let kind = req.compression_type.unwrap_or(kind);
    let level = req.level.unwrap_or(level);
    check_compression(&kind, level).map_err(|e| {
        let field = if e.starts_with("compression level") {
            "level"
        } else {
            "compression_type"
        };
        ApiError::invalid_field(field, e)
    })?;
    repl.set_compression(kind.clone(), level);
    Ok(ReplicationConfigResponse {
        success: true,
        compression_type: kind,
        level,
    })
}

/// The replicas this primary ships to.
#[utoipa::path(get, path = "/api/v1/replication/replicas", tag = "replication", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server"}))),
    responses((status = 200, description = "Registered replicas", body = ReplicaList)))]
pub async fn list_replicas(State(state): State<AppState>) -> Json<ReplicaList> {
    Json(ReplicaList {
        replicas: state.replication().list(),
    })
}

/// Register a replica (persisted); shipping starts at once, from its first record.
#[utoipa::path(post, path = "/api/v1/replication/replicas", tag = "replication", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server"}))),
    request_body = ReplicaInfo,
    responses(
        (status = 201, description = "Registered", body = ReplicaInfo),
        (status = 200, description = "Already registered with this endpoint", body = ReplicaInfo),
        (status = 400, description = "Invalid id or endpoint", body = ErrorBody),
        (status = 409, description = "The id is registered with another endpoint", body = ErrorBody),
    ))]
pub async fn add_replica(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ReplicaInfo>,
) -> Result<(StatusCode, Json<ReplicaInfo>), ApiError> {
    let st = state.clone();
    let (id, endpoint) = (req.replica_id.clone(), req.endpoint.clone());
    let added = tokio::task::spawn_blocking(move || st.replication().add_replica(&id, &endpoint))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| match e {
            AddReplicaError::Invalid(m) => {
                let field = if m.starts_with("replica_id") {
                    "replica_id"
                } else {
                    "endpoint"
                };
                ApiError::invalid_field(field, m)
            }
            AddReplicaError::Exists(_) => ApiError::new(ErrorCode::ReplicaExists, e.to_string()),
            AddReplicaError::Io(m) => ApiError::internal(m),
        })?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(req)))
}

#[derive(serde::Deserialize)]
pub struct ReplicaPath {
    replica_id: String,
}

/// Unregister a replica: its shipper stops and its WAL retention ends.
#[utoipa::path(delete, path = "/api/v1/replication/replicas/{replica_id}", tag = "replication", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server"}))),
    params(("replica_id" = String, Path, description = "Replica id")),
    responses(
        (status = 200, description = "Removed", body = RemoveReplicaResponse),
        (status = 404, description = "No such replica", body = ErrorBody),
    ))]
pub async fn remove_replica(
    State(state): State<AppState>,
    Path(ReplicaPath { replica_id }): Path<ReplicaPath>,
) -> Result<Json<RemoveReplicaResponse>, ApiError> {
    let st = state.clone();
    let id = replica_id.clone();
    let removed = tokio::task::spawn_blocking(move || st.replication().remove_replica(&id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::internal)?;
    if !removed {
        return Err(ApiError::new(
            ErrorCode::ReplicaNotFound,
            format!("no replica {replica_id:?}"),
        ));
    }
    Ok(Json(RemoveReplicaResponse { success: true }))
}

/// How long a promotion waits for applies in progress.
const PROMOTE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Promote this replica to primary: it takes writes, and batches from primaries of older
/// epochs are refused from now on (the old primary is fenced).
#[utoipa::path(post, path = "/api/v1/replication/promote", tag = "replication", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server"}))),
    responses(
        (status = 200, description = "Promoted", body = PromoteResponse),
        (status = 409, description = "Already a primary", body = ErrorBody),
        (status = 503, description = "`replication_busy`: an apply of the old primary did not end within 30 s; retry", body = ErrorBody),
    ))]
pub async fn promote(State(state): State<AppState>) -> Result<Json<PromoteResponse>, ApiError> {
    if state.replication().role() == Role::Primary {
        return Err(ApiError::new(
            ErrorCode::AlreadyPrimary,
            "this node is already a primary",
        ));
    }
    // Every database's apply lock: a batch or snapshot of the old primary in progress ends
    // first, and those waiting re-check the role under the lock and are refused.
    let repl = state.replication();
    let mut names = state.databases().map(|d| d.names()).unwrap_or_default();
    names.extend(repl.apply_lock_names());
    names.sort();
    names.dedup();
    let mut guards = Vec::with_capacity(names.len());
    for name in names {
        let lock = repl.apply_lock(&name);
        let guard = tokio::time::timeout(PROMOTE_LOCK_WAIT, lock.lock_owned())
            .await
            .map_err(|_| {
                ApiError::new(ErrorCode::ReplicationBusy,
                    format!("database {name} is still applying from the old primary (a snapshot?); retry"),
                )
                .retry_after(5)
            })?;
        guards.push(guard);
    }
    let st = state.clone();
    let epoch = tokio::task::spawn_blocking(move || st.replication().promote())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::internal)?;
    Ok(Json(PromoteResponse {
        success: true,
        role: "primary".into(),
        epoch,
    }))
}
