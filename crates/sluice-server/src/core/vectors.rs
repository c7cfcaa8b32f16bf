//! Vector operations, the same for every transport: the batch cap, the write (WAL record, then
//! the index or the VectorAutoBuffer in LSN order, then the acknowledgement), stats, flush and
//! the mapping of engine errors.
//!
//! Direct writes are applied to the index before the answer (on the blocking pool: an HNSW
//! insert costs tens to hundreds of microseconds per vector), so the entity is searchable on
//! return; buffered writes go to the VectorAutoBuffer and are searchable at once through its
//! exact scan. A batch is one WAL record: all-or-nothing, refused whole before anything is
//! logged when any entity is invalid or the batch is over `vector.max_vectors_per_batch`.
//!
//! Searches ([`search`]) run on the request's worker when cheap (no filter, `ef` at most
//! [`INLINE_MAX_EF`]): a plain search is a fraction of a millisecond of CPU, and handing it to
//! the blocking pool cost more in thread wake-ups than the search (it halved throughput in the
//! benchmark). Filtered searches may count or scan a large share of the collection, and large
//! `ef`s explore much of the graph: those go to the pool so they never hold up the connections
//! the worker serves.

use std::sync::Arc;

use sluice_api::ErrorCode;
use sluice_api::vector::{VectorBufferStats, VectorFlushResponse};
use sluice_vector::VectorError;
use sluice_vector::engine::WriteMode;
use sluice_vector::record::Op;
use sluice_wal::{AckLevel, Lsn, WalError};

use crate::db::Database;
use crate::error::ApiError;
use crate::timefmt::rfc3339_from_ms;

/// Searches with at most this `ef` and no filter run on the request's worker (see the module doc).
pub const INLINE_MAX_EF: usize = 512;

/// The largest `ef` a search may ask for.
pub const MAX_EF: usize = 4096;

/// A similarity search of `collection`, as HTTP and the wire protocol run it: `filter` (the
/// request's JSON object, `None` or empty: none) is parsed and named `filter.<path>` when
/// invalid; `ef` must be 1 to [`MAX_EF`] when given.
pub async fn search(
    db: Arc<Database>,
    collection: String,
    vector: Vec<f32>,
    k: usize,
    ef: Option<usize>,
    filter: Option<&serde_json::Value>,
) -> Result<Vec<sluice_vector::engine::SearchHit>, ApiError> {
    let filter = filter
        .map(|f| sluice_vector::Filter::parse(f, "filter."))
        .transpose()
        // The filter language is a grammar over a free-form object: its errors are 422.
        .map_err(|e| ApiError::invalid_value(e.field, e.reason))?
        .filter(|f| !f.is_empty());
    if let Some(ef) = ef
        && !(1..=MAX_EF).contains(&ef)
    {
        return Err(ApiError::invalid_field(
            "ef",
            format!("must be 1 to {MAX_EF}"),
        ));
    }
    let request = sluice_vector::SearchRequest {
        vector,
        k,
        ef,
        filter,
    };
    let cheap = request.filter.is_none() && request.ef.unwrap_or(0) <= INLINE_MAX_EF;
    let result = if cheap {
        db.vectors.search(&collection, &request)
    } else {
        tokio::task::spawn_blocking(move || db.vectors.search(&collection, &request))
            .await
            .map_err(|e| ApiError::internal(format!("search task: {e}")))?
    };
    result.map_err(|e| error(e.widen(), |_| String::new()))
}

/// Refuses an empty batch, or one of more than `max` entities, naming the field `vectors`
/// (HTTP batches and wire batches alike).
pub fn check_batch_len(entities: usize, max: usize) -> Result<(), ApiError> {
    if entities == 0 || entities > max {
        return Err(ApiError::invalid_field(
            "vectors",
            format!("must hold 1 to {max} entities, not {entities}"),
        ));
    }
    Ok(())
}

/// The VectorAutoBuffer statistics as HTTP and the wire protocol answer them.
pub fn stats_body(db: &Database) -> VectorBufferStats {
    let s = db.vectors.stats();
    VectorBufferStats {
        vectors_buffered: s.vectors_buffered,
        vectors_flushed: s.vectors_flushed,
        flush_count: s.flush_count,
        auto_flush_count: s.auto_flush_count,
        manual_flush_count: s.manual_flush_count,
        current_buffer_size: s.current_buffer_size,
        current_buffer_memory: s.current_buffer_memory,
        compression_type: "none".to_string(),
        last_flush_time: s.last_flush_time_ms.map(rfc3339_from_ms),
        snapshot_count: s.snapshot_count,
        last_snapshot_lsn: s.last_snapshot_lsn,
    }
}

/// A manual VectorAutoBuffer flush, as HTTP and the wire protocol run it.
pub async fn flush_now(db: &Database) -> Result<VectorFlushResponse, ApiError> {
    let outcome = db.flusher.flush_vectors_now().await?;
    Ok(VectorFlushResponse {
        success: true,
        vectors_flushed: outcome.vectors,
    })
}

/// Logs and applies or buffers `ops`, nudges the flusher if a threshold tripped, and waits for
/// `ack`. Returns the LSN and the buffer size after the write. `prefix(i)` is the field path
/// prefix of operation `i` in the request body.
pub async fn write(
    db: Arc<Database>,
    collection: String,
    ops: Vec<Op>,
    mode: WriteMode,
    ack: AckLevel,
    prefix: fn(usize) -> String,
) -> Result<(Lsn, u64), ApiError> {
    let engine_db = db.clone();
    let run = move || {
        let db = engine_db;
        db.vectors.write(&collection, ops, mode, |kind, payload| {
            let t = db.wal.append(kind, payload, ack)?;
            let lsn = t.lsn();
            Ok::<_, WalError>((t, lsn))
        })
    };
    let result = match mode {
        WriteMode::Buffered => run(),
        WriteMode::Direct => tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| ApiError::internal(format!("vector write task: {e}")))?,
    };
    let (ticket, outcome) = match result {
        Ok(r) => r,
        // The operations are logged but the index failed to take them: memory and log now
        // disagree. Like a failed fsync, that stops the process; recovery applies the log.
        Err(VectorError::Index(e)) => {
            super::stop_logged_but_not_applied(&db.name, Lsn(0), &e.to_string())
        }
        Err(e) => return Err(error(e, prefix)),
    };
    if let Some(trigger) = outcome.flush_due {
        db.flusher.nudge_vectors(trigger);
    }
    let lsn = ticket.wait().await?;
    Ok((lsn, outcome.buffer_size))
}

/// The answer to an engine error; `prefix(i)` is the field path prefix of operation `i`.
pub fn error(e: VectorError<WalError>, prefix: fn(usize) -> String) -> ApiError {
    match e {
        VectorError::CollectionNotFound(_) => {
            ApiError::new(ErrorCode::CollectionNotFound, e.to_string())
        }
        VectorError::CollectionExists(_) => {
            ApiError::new(ErrorCode::CollectionExists, e.to_string())
        }
        VectorError::TooManyCollections { .. } => {
            ApiError::new(ErrorCode::CollectionLimit, e.to_string())
        }
        VectorError::InvalidCollection(e) => ApiError::invalid_field(e.field, e.reason),
        VectorError::InvalidEntity {
            index,
            field,
            reason,
        } => ApiError::invalid_field(format!("{}{field}", prefix(index)), reason),
        VectorError::Mismatched {
            index,
            field,
            reason,
        } => ApiError::invalid_value(format!("{}{field}", prefix(index)), reason),
        VectorError::NotFound { .. } => ApiError::new(ErrorCode::EntityNotFound, e.to_string()),
        VectorError::Overflow { buffer_size } => ApiError::buffer_overflow(buffer_size),
        VectorError::Index(e) => ApiError::internal(e.to_string()),
        VectorError::Append(e) => ApiError::from(e),
    }
}
