//! Replication operations shared by HTTP and the wire protocol: applying a batch shipped by
//! the primary (verify everything, then append at the primary's LSNs under the database's
//! apply lock; see `replication::apply`) and setting the shipping compression.

use sluice_api::ErrorCode;
use sluice_api::replication::{
    ReplicationConfigRequest, ReplicationConfigResponse, WalApplyRequest, WalApplyResponse,
};

use crate::catalogue::{CatalogueError, DatabaseSettings, known_name};
use crate::config::Role;
use crate::db::{Database, ManageError};
use crate::error::{ApiError, SeedFields};
use crate::metrics::ReasonLabels;
use crate::replication::apply::{self, ApplyError};
use crate::replication::{EpochRefusal, check_compression};
use crate::state::AppState;

/// Checks and applies one shipped batch (HTTP and wire opcode `0x90`).
pub async fn apply_batch(
    state: &AppState,
    primary_header: Option<&[u8]>,
    sent_bytes: u64,
    req: WalApplyRequest,
) -> Result<WalApplyResponse, ApiError> {
    let repl = state.replication();
    let refused = |code: ErrorCode| count_refusal(repl, code);
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
    if !known_name(&req.database) {
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

/// Counts a refused batch by its reason.
fn count_refusal(repl: &crate::replication::Replication, code: ErrorCode) {
    repl.metrics
        .refused_batches
        .get_or_create(&ReasonLabels {
            reason: code.as_str(),
        })
        .inc();
}

/// Refuses a sender unless this node is a replica and the sender's epoch is current (records a
/// newer one).
pub fn check_sender(state: &AppState, epoch: u64, primary_id: &str) -> Result<(), ApiError> {
    let repl = state.replication();
    let refused = |code: ErrorCode| count_refusal(repl, code);
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

pub fn stale_epoch(epoch: u64, current: u64) -> ApiError {
    ApiError::new(
        ErrorCode::StaleEpoch,
        format!(
            "batch of epoch {epoch} refused: this node follows (or is) a primary of epoch {current}; the sender was superseded"
        ),
    )
}

pub fn apply_error(e: ApplyError) -> ApiError {
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
pub async fn database_for(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<Database>, ApiError> {
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
