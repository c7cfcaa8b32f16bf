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

/// A search as a transport received it.
pub struct Query<'a> {
    pub vector: Vec<f32>,
    pub k: usize,
    pub ef: Option<usize>,
    /// The request's JSON object; `None` or empty: none.
    pub filter: Option<&'a serde_json::Value>,
    pub time_range: Option<sluice_api::vector::TimeRange>,
    pub decay: Option<sluice_api::vector::Decay>,
}

/// The largest decay weight (in units of distance).
pub const MAX_DECAY_WEIGHT: f32 = 1000.0;

/// A similarity search of `collection`, as HTTP and the wire protocol run it: the filter is
/// parsed and named `filter.<path>` when invalid; `ef` must be 1 to [`MAX_EF`] when given; a
/// time range must not be empty; a decay needs a half-life of 1 ms to 100 years and a weight
/// of 0 to [`MAX_DECAY_WEIGHT`].
pub async fn search(
    db: Arc<Database>,
    collection: String,
    q: Query<'_>,
) -> Result<Vec<sluice_vector::engine::SearchHit>, ApiError> {
    let Query {
        vector,
        k,
        ef,
        filter,
        time_range,
        decay,
    } = q;
    let time_range = time_range
        .map(|r| {
            let r = sluice_vector::TimeRange {
                from_ms: r.from_ms.unwrap_or(i64::MIN),
                to_ms: r.to_ms.unwrap_or(i64::MAX),
            };
            if r.from_ms > r.to_ms {
                return Err(ApiError::invalid_value(
                    "time_range",
                    "from_ms is after to_ms: the window is empty",
                ));
            }
            Ok(r)
        })
        .transpose()?;
    let decay = decay
        .map(|d| {
            if !(1..=sluice_vector::collection::MAX_TTL_MS).contains(&d.half_life_ms) {
                return Err(ApiError::invalid_field(
                    "decay.half_life_ms",
                    "must be 1 ms to 100 years",
                ));
            }
            if !(0.0..=MAX_DECAY_WEIGHT).contains(&d.weight) {
                return Err(ApiError::invalid_field(
                    "decay.weight",
                    format!("must be 0 to {MAX_DECAY_WEIGHT}"),
                ));
            }
            Ok(sluice_vector::Decay {
                half_life_ms: d.half_life_ms as f64,
                weight: d.weight,
            })
        })
        .transpose()?;
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
        time_range,
        decay,
        now_ms: None,
    };
    let cheap = request.filter.is_none()
        && request.time_range.is_none()
        && request.decay.is_none()
        && request.ef.unwrap_or(0) <= INLINE_MAX_EF;
    let result = if cheap {
        db.vectors.search(&collection, &request)
    } else {
        tokio::task::spawn_blocking(move || db.vectors.search(&collection, &request))
            .await
            .map_err(|e| ApiError::internal(format!("search task: {e}")))?
    };
    result.map_err(|e| error(e.widen(), |_| String::new()))
}

/// The longest `with_series` window: 100 years.
pub const MAX_SERIES_WINDOW_MS: u64 = sluice_vector::collection::MAX_TTL_MS;

/// Refuses a `with_series` the server cannot answer (checked before the search runs).
pub fn check_with_series(w: &sluice_api::vector::WithSeries) -> Result<(), ApiError> {
    if !(1..=MAX_SERIES_WINDOW_MS).contains(&w.window_ms) {
        return Err(ApiError::invalid_field(
            "with_series.window_ms",
            "must be 1 ms to 100 years",
        ));
    }
    Ok(())
}

/// For each hit, in order: the aggregate of the series its metadata names (string fields
/// `metric` and `entity`), over the window ending now, across every series of that metric and
/// entity; `None` for a hit that names none. One query per distinct series, on the blocking
/// pool.
pub async fn series_of_hits(
    db: Arc<Database>,
    hits: &[sluice_vector::engine::SearchHit],
    w: sluice_api::vector::WithSeries,
) -> Result<Vec<Option<sluice_api::vector::HitSeries>>, ApiError> {
    check_with_series(&w)?;
    let named: Vec<Option<(String, String)>> = hits
        .iter()
        .map(
            |h| match (h.metadata.get("metric"), h.metadata.get("entity")) {
                (Some(serde_json::Value::String(m)), Some(serde_json::Value::String(e))) => {
                    Some((m.clone(), e.clone()))
                }
                _ => None,
            },
        )
        .collect();
    let to_ms = crate::now_ms();
    let from_ms = to_ms.saturating_sub(w.window_ms as i64);
    let agg = super::ts::aggregation(w.aggregation);
    tokio::task::spawn_blocking(move || {
        let mut values: std::collections::HashMap<(String, String), Option<f64>> =
            std::collections::HashMap::new();
        let mut out = Vec::with_capacity(named.len());
        for n in named {
            let Some((metric, entity)) = n else {
                out.push(None);
                continue;
            };
            let key = (metric, entity);
            if !values.contains_key(&key) {
                let q = sluice_ts::query::Query {
                    metric: key.0.clone(),
                    entity: Some(key.1.clone()),
                    tags: Vec::new(),
                    matchers: Vec::new(),
                    from_ms,
                    to_ms,
                    aggregation: Some(agg),
                    step_ms: None,
                    group_by: vec!["entity".to_string()],
                };
                let found = db.ts.query(&q).map_err(super::ts::query_error)?;
                let value = found.first().and_then(|s| s.points.first()).map(|p| p.1);
                values.insert(key.clone(), value);
            }
            let value = values[&key];
            out.push(Some(sluice_api::vector::HitSeries {
                metric: key.0,
                entity: key.1,
                from_ms,
                to_ms,
                value,
            }));
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::internal(format!("series task: {e}")))?
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
