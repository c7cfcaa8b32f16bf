//! Replication routes: `POST /api/v1/wal/apply`, `GET /api/v1/replication/stats` and
//! `POST /api/v1/replication/config` (the shapes of the original WAL-shipping design, kept
//! exactly), plus replica management, promotion and snapshot transfer. All are admin-only on
//! the server. The operations themselves are `core::replication`'s, shared with the wire
//! opcodes `0x90`–`0x92`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use sluice_api::ErrorBody;
use sluice_api::ErrorCode;
use sluice_api::replication::{
    PromoteResponse, RemoveReplicaResponse, ReplicaInfo, ReplicaList, ReplicationConfigRequest,
    ReplicationConfigResponse, ReplicationStats, WalApplyRequest, WalApplyResponse,
};

use crate::catalogue::valid_name;
use crate::config::Role;
use crate::core;
use crate::error::ApiError;
use crate::http::extract::{ApiJson, ReplicationJson};
use crate::replication::AddReplicaError;
use crate::state::AppState;

/// Apply a compressed WAL batch from the primary (replicas only; admin).
#[utoipa::path(post, path = "/api/v1/wal/apply", tag = "replication", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server"}))),
    request_body(content = WalApplyRequest, description = "Sent with `Content-Encoding: zstd` and `X-Primary-ID`"),
    params(("X-Primary-ID" = Option<String>, Header, description = "The shipping primary; must equal primary_id")),
    responses(
        (status = 200, description = "Applied and durable (records already held are skipped)", body = WalApplyResponse),
        (status = 400, description = "Corrupt batch (CRC, size, record or count mismatch): nothing applied", body = ErrorBody),
        (status = 409, description = "`wal_gap` (expected_lsn says where this replica's log continues), `stale_epoch` (a newer primary was accepted), `conflicting_primary` (another node shipped under this epoch), or `not_a_replica`", body = ErrorBody),
        (status = 422, description = "`record_refused`: a record this replica's engines cannot take; nothing of the batch is applied", body = ErrorBody),
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
    let sent = sent.map(|e| e.0.0).or_else(|| {
        headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    });
    let sent = sent.unwrap_or(0);
    core::replication::apply_batch(
        &state,
        headers.get("x-primary-id").map(|h| h.as_bytes()),
        sent,
        req,
    )
    .await
    .map(Json)
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
        ("X-Primary-ID" = String, Header, description = "The sending primary (required)"),
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
        // Decimal digits only (what the OpenAPI document states), at most 19 (fits u64).
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
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
    core::replication::check_sender(&state, epoch, &primary_id)?;
    if !valid_name(&params.database) {
        return Err(ApiError::invalid_field(
            "database",
            "not a valid database name",
        ));
    }
    let lock = state.replication().apply_lock(&params.database);
    let _guard = lock.lock().await;
    core::replication::check_sender(&state, epoch, &primary_id)?;
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
    core::replication::configure(&state, req).map(Json)
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
