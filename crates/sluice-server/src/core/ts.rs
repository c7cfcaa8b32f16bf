//! Time-series operations, the same for every transport: the batch cap, point validation,
//! the write (WAL record + head insert in LSN order, then the acknowledgement), stats and
//! flush.
//!
//! A write is validated completely, encoded as one WAL record and inserted into the engine's
//! head under the engine's lock (`TsEngine::write` calls the WAL append inside it), then
//! acknowledged at the requested level: `buffer` once queued, `wal` once written to the
//! segment file, `fsync` once on disk. A batch is all-or-nothing because it is one record,
//! refused whole before anything is logged if any point is invalid or the batch is over
//! `limits.max_points_per_batch`.

use sluice_api::ErrorCode;
use sluice_api::ts::{BufferStats, DataPoint, FlushResponse};
use sluice_ts::engine::{DeleteError, DeleteOutcome, WriteOutcome};
use sluice_ts::store::StoreError;
use sluice_ts::{Batch, NamedBatch, Point, PointLimits, WriteError};
use sluice_wal::{AckLevel, Lsn};

use crate::config::LimitsConfig;
use crate::db::Database;
use crate::error::ApiError;
use crate::timefmt::rfc3339_from_ms;

/// Refuses an empty batch, or one of more than `limits.max_points_per_batch` points, naming
/// the field `points` (HTTP batches and wire batches alike).
pub fn check_batch_len(points: usize, limits: &LimitsConfig) -> Result<(), ApiError> {
    let max = limits.max_points_per_batch;
    if points > max {
        return Err(ApiError::invalid_field(
            "points",
            format!("{points} points; a batch may hold at most {max}"),
        ));
    }
    if points == 0 {
        return Err(ApiError::invalid_field(
            "points",
            "must hold at least one point",
        ));
    }
    Ok(())
}

/// The TSAutoBuffer statistics as HTTP and the wire protocol answer them.
pub fn stats_body(db: &Database) -> BufferStats {
    let s = db.ts.stats();
    BufferStats {
        points_buffered: s.points_buffered,
        points_flushed: s.points_flushed,
        flush_count: s.flush_count,
        auto_flush_count: s.auto_flush_count,
        manual_flush_count: s.manual_flush_count,
        current_buffer_size: s.current_buffer_size,
        current_buffer_memory: s.current_buffer_memory,
        avg_compression_ratio: s.avg_compression_ratio,
        last_flush_time: s.last_flush_time_ms.map(rfc3339_from_ms),
    }
}

/// A manual TSAutoBuffer flush, as HTTP and the wire protocol run it.
pub async fn flush_now(db: &Database) -> Result<FlushResponse, ApiError> {
    let outcome = db.flusher.flush_now().await?;
    Ok(FlushResponse {
        success: true,
        points_flushed: outcome.points,
    })
}

/// A JSON point as the engine's point, with field paths under `prefix` in its errors; a point
/// without `timestamp_ms` gets the receive time.
/// The answer to a failed time-series query.
pub fn query_error(e: sluice_ts::engine::QueryError) -> ApiError {
    match e {
        sluice_ts::engine::QueryError::TooManyPoints { .. } => {
            ApiError::new(ErrorCode::QueryTooLarge, e.to_string())
        }
        sluice_ts::engine::QueryError::Store(e) => ApiError::internal(e.to_string()),
    }
}

/// The engine's aggregation for the API's.
pub fn aggregation(a: sluice_api::ts::Aggregation) -> sluice_ts::query::Aggregation {
    use sluice_api::ts::Aggregation as A;
    use sluice_ts::query::Aggregation as E;
    match a {
        A::Min => E::Min,
        A::Max => E::Max,
        A::Sum => E::Sum,
        A::Avg => E::Avg,
        A::Count => E::Count,
        A::First => E::First,
        A::Last => E::Last,
    }
}

pub fn point_from(p: DataPoint, limits: &PointLimits, prefix: &str) -> Result<Point, ApiError> {
    let timestamp_ms = p.timestamp_ms.unwrap_or_else(sluice_ts::now_ms);
    Point::new(p.metric, p.entity, timestamp_ms, p.value, p.tags, limits)
        .map_err(|e| ApiError::invalid_field(format!("{prefix}{}", e.field), e.reason))
}

/// Deletes the points `q` selects (`TsEngine::delete`): the record is logged at `fsync`, then
/// applied to the head and the chunks; answered once both are done. Blocking work runs off
/// the async workers.
pub async fn delete(
    db: std::sync::Arc<Database>,
    q: sluice_ts::query::Query,
) -> Result<(Lsn, DeleteOutcome), ApiError> {
    tokio::task::spawn_blocking(move || {
        let logged = std::cell::Cell::new(Lsn(0));
        let append = |payload: Vec<u8>| {
            let ticket = db
                .wal
                .append(super::records::Kind::TsDelete.wal(), payload, AckLevel::Fsync)?;
            let lsn = ticket.lsn();
            logged.set(lsn);
            Ok::<_, sluice_wal::WalError>((ticket, lsn))
        };
        let wal = &db.wal;
        let durable = |lsn| wal.wait_durable(lsn).map_err(|e| e.to_string());
        match db.ts.delete(&q, append, durable) {
            Ok((ticket, outcome)) => Ok((ticket.lsn(), outcome)),
            Err(DeleteError::Append(e)) => Err(ApiError::from(e)),
            // Committed but not synced: what is on disk is unknown (as for a flush, fatal).
            Err(DeleteError::Store(StoreError::SyncFailed(e))) => {
                super::stop_logged_but_not_applied(&db.name, logged.get(), &e)
            }
            // Nothing of the rewrite was committed; the record stays in the WAL (it is
            // applied again at the next start) and a retry of the request completes it.
            Err(e) if crate::flusher::storage_full(&e) || wal.storage_full() => Err(ApiError::new(
                ErrorCode::InsufficientStorage,
                format!("the disk is full; the deletion is logged but not yet applied to stored points: retry it when space returns ({e})"),
            )
            .retry_after(5)),
            Err(e) => Err(ApiError::internal(format!("deleting points: {e}"))),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("delete task: {e}")))?
}

/// Logs and buffers `points`, nudges the flusher if a threshold tripped, and waits for `ack`.
/// Returns the LSN and the buffer size after the write.
pub async fn write(db: &Database, batch: Batch, ack: AckLevel) -> Result<(Lsn, u64), ApiError> {
    logged(db, ack, |append| db.ts.write(batch, append)).await
}

/// [`write`] for a batch whose series are named by a protocol's raw bytes (remote write).
pub async fn write_named(
    db: &Database,
    batch: NamedBatch,
    ack: AckLevel,
) -> Result<(Lsn, u64), ApiError> {
    logged(db, ack, |append| db.ts.write_named(batch, append)).await
}

/// Runs an engine write (`engine_write(append)`) whose record `append` logs at `ack`, wakes
/// the flusher when the write asks for it and waits for the acknowledgement.
async fn logged(
    db: &Database,
    ack: AckLevel,
    engine_write: impl FnOnce(
        &dyn Fn(Vec<u8>) -> Result<(sluice_wal::Ticket, Lsn), sluice_wal::WalError>,
    ) -> Result<
        (sluice_wal::Ticket, WriteOutcome),
        WriteError<sluice_wal::WalError>,
    >,
) -> Result<(Lsn, u64), ApiError> {
    let append = |payload: Vec<u8>| {
        let ticket = db
            .wal
            .append(super::records::Kind::SeriesPoints.wal(), payload, ack)?;
        let lsn = ticket.lsn();
        Ok::<_, sluice_wal::WalError>((ticket, lsn))
    };
    let (ticket, outcome) = engine_write(&append).map_err(|e| match e {
        WriteError::Overflow { buffer_size } => ApiError::buffer_overflow(buffer_size),
        WriteError::SeriesLimit { .. } => ApiError::new(ErrorCode::SeriesLimit, e.to_string()),
        // A write that alone adds more new series than the hourly limit never fits: 422.
        WriteError::NewSeriesRate { limit, adding, .. } if adding > limit => ApiError::new(
            ErrorCode::SeriesLimit,
            format!(
                "{e}: more than the limit by itself; split it or raise max_new_series_per_hour"
            ),
        ),
        WriteError::NewSeriesRate {
            retry_after_secs, ..
        } => ApiError::new(
            ErrorCode::NewSeriesLimit,
            format!("{e}; room returns as the hour moves on (max_new_series_per_hour)"),
        )
        .retry_after(retry_after_secs),
        WriteError::Append(e) => ApiError::from(e),
    })?;
    if let Some(trigger) = outcome.flush_due {
        db.flusher.nudge(trigger);
    }
    let lsn = ticket.wait().await?;
    Ok((lsn, outcome.buffer_size))
}
