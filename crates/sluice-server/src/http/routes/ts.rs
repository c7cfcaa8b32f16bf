//! Time-series routes: writes (direct, batch, buffered), buffer stats and flush, query, export,
//! delete.
//!
//! Every write is validated completely, encoded as one WAL record and inserted into the engine's
//! head in LSN order (`TsEngine::write`), then acknowledged at the requested level: a
//! batch is all-or-nothing because it is one record, refused whole before anything is logged if
//! any point is invalid. Direct and batch writes default to `ack=fsync`, buffered ones to
//! `ack=buffer` (or `fsync` when the TSAutoBuffer is disabled).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sluice_api::ErrorBody;
use sluice_api::ts::{
    AckParams, BatchPutRequest, BatchPutResponse, BufferStats, BufferedPutResponse,
    CardinalityResponse, DataPoint, ExportRequest, FlushResponse, FormatParams, LabelCount,
    LabelValueCount, MetricCount, PutResponse, QueryRequest, QueryResponse, SeriesData, TagMatcher,
    TsDeleteRequest, TsDeleteResponse,
};
use sluice_ts::Batch;
use sluice_ts::query::{MatchOp, Matcher, Query};
use sluice_wal::AckLevel;

use crate::core;
use crate::error::ApiError;
use crate::http::arrow;
use crate::http::extract::{AckParam, ApiJson, BatchJson, Db};
use crate::http::routes::WriteErrors;
use crate::state::AppState;

/// Most matchers in one query.
pub const MAX_MATCHERS: usize = 64;
/// Most buckets one aggregation may produce per series.
const MAX_BUCKETS: i64 = 1_000_000;
/// Write one point (default `ack=fsync`).
#[utoipa::path(post, path = "/ts/put", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))), params(AckParams), request_body = DataPoint,
    responses(
        (status = 200, description = "Written at the requested level", body = PutResponse),
        WriteErrors,
    ))]
pub async fn put(
    Db(db): Db,
    ack: AckParam,
    ApiJson(point): ApiJson<DataPoint>,
) -> Result<Json<PutResponse>, ApiError> {
    let point = core::ts::point_from(point, &db.ts.config().point_limits, "")?;
    let (lsn, _) = core::ts::write(&db, Batch::from_point(point), ack.or(AckLevel::Fsync)).await?;
    Ok(Json(PutResponse {
        success: true,
        lsn: lsn.get(),
    }))
}

/// Write a batch of points, all or nothing (default `ack=fsync`).
#[utoipa::path(post, path = "/ts/put/batch", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))), params(AckParams), request_body = BatchPutRequest,
    responses(
        (status = 200, description = "Every point written at the requested level", body = BatchPutResponse),
        WriteErrors,
    ))]
pub async fn put_batch(
    State(state): State<AppState>,
    Db(db): Db,
    ack: AckParam,
    BatchJson(batch): BatchJson<BatchPutRequest>,
) -> Result<Json<BatchPutResponse>, ApiError> {
    core::ts::check_batch_len(batch.points.len(), &state.config().limits)?;
    let limits = db.ts.config().point_limits;
    let points = batch
        .points
        .into_iter()
        .enumerate()
        .map(|(i, p)| core::ts::point_from(p, &limits, &format!("points[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let n = points.len() as u64;
    let (lsn, _) =
        core::ts::write(&db, Batch::from_points(points), ack.or(AckLevel::Fsync)).await?;
    Ok(Json(BatchPutResponse {
        success: true,
        points_written: n,
        lsn: lsn.get(),
    }))
}

/// Write one point through the TSAutoBuffer (seed route; default `ack=buffer`).
#[utoipa::path(post, path = "/ts/put/buffered", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))), params(AckParams), request_body = DataPoint,
    responses(
        (status = 200, description = "Accepted; visible to queries at once", body = BufferedPutResponse),
        WriteErrors,
    ))]
pub async fn put_buffered(
    Db(db): Db,
    ack: AckParam,
    ApiJson(point): ApiJson<DataPoint>,
) -> Result<Json<BufferedPutResponse>, ApiError> {
    let enabled = db.ts.config().auto_buffer.enabled;
    let point = core::ts::point_from(point, &db.ts.config().point_limits, "")?;
    let default_ack = if enabled {
        AckLevel::Buffer
    } else {
        AckLevel::Fsync
    };
    let (_, buffer_size) =
        core::ts::write(&db, Batch::from_point(point), ack.or(default_ack)).await?;
    Ok(Json(BufferedPutResponse {
        success: true,
        buffered: enabled,
        buffer_size,
    }))
}

/// TSAutoBuffer statistics (seed fields).
#[utoipa::path(get, operation_id = "ts_buffer_stats", path = "/ts/buffer/stats", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    responses(
        (status = 200, description = "Buffer statistics since start", body = BufferStats),
        (status = 503, description = "Server not ready", body = ErrorBody),
    ))]
pub async fn buffer_stats(Db(db): Db) -> Result<Json<BufferStats>, ApiError> {
    Ok(Json(core::ts::stats_body(&db)))
}

/// Flush the TSAutoBuffer now (admin).
#[utoipa::path(post, operation_id = "ts_buffer_flush", path = "/ts/buffer/flush", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "database"}))),
    responses(
        (status = 200, description = "Flushed; the WAL is checkpointed", body = FlushResponse),
        (status = 503, description = "Flusher busy or server not ready", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn buffer_flush(Db(db): Db) -> Result<Json<FlushResponse>, ApiError> {
    core::ts::flush_now(&db).await.map(Json)
}

/// Query points: raw, or aggregated per step and group.
///
/// With `?format=arrow` (or `Accept: application/vnd.apache.arrow.stream`) the answer is an
/// Arrow IPC stream, with `?format=parquet` (or `Accept: application/vnd.apache.parquet`) a
/// Parquet file, one row per point: `metric`, `entity`, `tags` (JSON object), `timestamp` (ms,
/// UTC), `value`.
#[utoipa::path(post, operation_id = "ts_query", path = "/ts/query", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))), request_body = QueryRequest, params(FormatParams),
    responses(
        (status = 200, description = "Matching series, ordered by entity and tags (JSON, or Arrow IPC or Parquet when asked for)", content(
            (QueryResponse = "application/json"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 400, description = "Invalid query, or it would collect too many points", body = ErrorBody),
        (status = 422, description = "`invalid_value`: `to_ms` before `from_ms`, `step_ms` or `group_by` without an aggregation, too many steps, an invalid regex", body = ErrorBody),
        (status = 503, description = "Server not ready", body = ErrorBody),
    ))]
pub async fn query(
    Db(db): Db,
    headers: axum::http::HeaderMap,
    axum::extract::Query(format): axum::extract::Query<FormatParams>,
    ApiJson(req): ApiJson<QueryRequest>,
) -> Result<Response, ApiError> {
    let q = to_query(req)?;
    let result = tokio::task::spawn_blocking(move || db.ts.query(&q))
        .await
        .map_err(|e| ApiError::internal(format!("query task: {e}")))?
        .map_err(core::ts::query_error)?;
    if let Some(kind) = arrow::columnar(&headers, format.format) {
        let mut rows = arrow::ArrowRows::new(kind).map_err(arrow_error)?;
        let mut body = rows.take();
        for s in &result {
            let tags = arrow::tags_json(&s.tags);
            for &(t, v) in &s.points {
                if let Some(b) = rows
                    .push(&s.metric, &s.entity, &tags, t, v)
                    .map_err(arrow_error)?
                {
                    body.extend(b);
                }
            }
        }
        body.extend(rows.finish().map_err(arrow_error)?);
        return Ok(([(header::CONTENT_TYPE, kind.content_type())], body).into_response());
    }
    Ok(Json(QueryResponse {
        series: result
            .into_iter()
            .map(|s| SeriesData {
                metric: s.metric,
                entity: s.entity,
                tags: s.tags.into_iter().collect(),
                points: s.points,
            })
            .collect(),
    })
    .into_response())
}

fn arrow_error(e: arrow_schema::ArrowError) -> ApiError {
    ApiError::internal(format!("encoding Arrow: {e}"))
}

/// Export points as NDJSON, one DataPoint per line, streamed series by series.
///
/// With `?format=arrow` (or `Accept: application/vnd.apache.arrow.stream`) the answer is an
/// Arrow IPC stream instead, with `?format=parquet` (or `Accept: application/vnd.apache.parquet`)
/// a Parquet file (one zstd row group per batch), streamed in batches of up to 65,536 rows as
/// they are read: `metric`, `entity`, `tags` (JSON object), `timestamp` (ms, UTC), `value`.
#[utoipa::path(post, path = "/ts/export", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))), request_body = ExportRequest, params(FormatParams),
    responses(
        (status = 200, description = "NDJSON stream of DataPoint objects, or Arrow IPC or Parquet when asked for", content(
            (DataPoint = "application/x-ndjson"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 400, description = "Invalid selection", body = ErrorBody),
        (status = 422, description = "`invalid_value`: `to_ms` before `from_ms`, an invalid regex", body = ErrorBody),
        (status = 503, description = "Server not ready", body = ErrorBody),
    ))]
pub async fn export(
    Db(db): Db,
    headers: axum::http::HeaderMap,
    axum::extract::Query(format): axum::extract::Query<FormatParams>,
    ApiJson(req): ApiJson<ExportRequest>,
) -> Result<Response, ApiError> {
    let columnar = arrow::columnar(&headers, format.format);
    let q = selection(
        req.metric,
        req.entity,
        req.tags,
        req.matchers,
        req.from_ms,
        req.to_ms,
    )?;
    let content_type = columnar.map_or("application/x-ndjson", |c| c.content_type());
    let (tx, response) = super::streamed(content_type);
    tokio::task::spawn_blocking(move || {
        if let Some(kind) = columnar {
            return export_arrow(&db, &q, kind, &tx);
        }
        let mut frame = Vec::with_capacity(super::EXPORT_FRAME_BYTES + 512);
        let mut open = true;
        let result = db.ts.export(&q, |key, t, v| {
            let line = DataPoint {
                metric: key.metric.clone(),
                entity: key.entity.clone(),
                timestamp_ms: Some(t),
                value: v,
                tags: key.tags.iter().cloned().collect::<BTreeMap<_, _>>(),
            };
            if serde_json::to_writer(&mut frame, &line).is_err() {
                return false;
            }
            frame.push(b'\n');
            if frame.len() >= super::EXPORT_FRAME_BYTES {
                open = tx
                    .blocking_send(Ok(Bytes::from(std::mem::take(&mut frame))))
                    .is_ok();
            }
            open
        });
        match result {
            Ok(()) if open && !frame.is_empty() => {
                let _ = tx.blocking_send(Ok(Bytes::from(frame)));
            }
            Ok(()) => {}
            Err(e) => super::fail_stream(&tx, e.to_string()),
        }
    });
    Ok(response)
}

/// An export as an Arrow IPC stream or a Parquet file (see `http::arrow`), sent batch by batch
/// on `tx`.
fn export_arrow(db: &crate::db::Database, q: &Query, kind: arrow::Columnar, tx: &super::StreamTx) {
    let send = |b: Vec<u8>| tx.blocking_send(Ok(Bytes::from(b))).is_ok();
    let fail = |e: String| super::fail_stream(tx, e);
    let mut rows = match arrow::ArrowRows::new(kind) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    if !send(rows.take()) {
        return;
    }
    let mut open = true;
    let mut failed = None;
    let mut last: Option<(sluice_ts::series::SeriesKey, String)> = None;
    let result = db.ts.export(q, |key, t, v| {
        if last.as_ref().is_none_or(|(k, _)| k != key) {
            last = Some((key.clone(), arrow::tags_json(&key.tags)));
        }
        let tags = last.as_ref().map_or("{}", |(_, j)| j.as_str());
        match rows.push(&key.metric, &key.entity, tags, t, v) {
            Ok(Some(b)) => open = send(b),
            Ok(None) => {}
            Err(e) => {
                failed = Some(e.to_string());
                return false;
            }
        }
        open
    });
    match (result, failed) {
        (Err(e), _) => fail(e.to_string()),
        (Ok(()), Some(e)) => fail(e),
        (Ok(()), None) if open => match rows.finish() {
            Ok(b) => {
                send(b);
            }
            Err(e) => fail(e.to_string()),
        },
        (Ok(()), None) => {}
    }
}

/// Delete points (admin): the points of the selected series in `[from_ms, to_ms]`.
///
/// Logged and fsync'd before it is applied to buffered and stored points (no `ack` choice),
/// and shipped to replicas like a write; queries see it as soon as the answer is sent, and
/// after a restart. Points written after it are not touched; the series stay known. Chunks
/// holding deleted points are rewritten without them, so the space is reclaimed as the
/// storage compacts. Flushes wait while a deletion rewrites chunks: delete long ranges of
/// many series in a quiet moment.
#[utoipa::path(post, operation_id = "ts_delete", path = "/ts/delete", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "database", "mutates": true}))), request_body = TsDeleteRequest,
    responses(
        (status = 200, description = "Deleted; durable and visible to every query", body = TsDeleteResponse),
        (status = 400, description = "Invalid selection", body = ErrorBody),
        (status = 409, description = "`read_only_replica`: delete on the primary", body = ErrorBody),
        (status = 422, description = "`invalid_value`: `to_ms` before `from_ms`, an invalid regex", body = ErrorBody),
        (status = 503, description = "Server not ready", body = ErrorBody),
        (status = 507, description = "The disk is full: retry when space returns (the deletion is logged and completes at the retry or the next start)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn delete(
    Db(db): Db,
    ApiJson(req): ApiJson<TsDeleteRequest>,
) -> Result<Json<TsDeleteResponse>, ApiError> {
    let q = selection(
        req.metric,
        req.entity,
        req.tags,
        req.matchers,
        req.from_ms,
        req.to_ms,
    )?;
    let (lsn, out) = core::ts::delete(db, q).await?;
    Ok(Json(TsDeleteResponse {
        success: true,
        lsn: lsn.0,
        series: out.series,
        points_deleted: out.points,
        chunks_rewritten: out.chunks_rewritten,
        chunks_removed: out.chunks_removed,
    }))
}

/// Most entries per list of a cardinality answer.
const MAX_CARDINALITY_LIMIT: u32 = 1000;

/// Query parameters of `GET /ts/cardinality`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CardinalityParams {
    /// Count only the series of this metric.
    pub metric: Option<String>,
    /// Entries per list, 1 to 1000 (default 10).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Series counts: the database's totals and limits, and the metrics, labels and label values
/// with the most series. Reads only the series index.
#[utoipa::path(get, operation_id = "ts_cardinality", path = "/ts/cardinality", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    params(CardinalityParams),
    responses(
        (status = 200, description = "Series counts", body = CardinalityResponse),
        (status = 400, description = "Invalid parameters", body = ErrorBody),
        (status = 503, description = "Server not ready", body = ErrorBody),
    ))]
pub async fn cardinality(
    Db(db): Db,
    axum::extract::Query(params): axum::extract::Query<CardinalityParams>,
) -> Result<Json<CardinalityResponse>, ApiError> {
    let limit = params.limit.unwrap_or(10);
    if !(1..=MAX_CARDINALITY_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be 1 to {MAX_CARDINALITY_LIMIT}"),
        ));
    }
    let c = tokio::task::spawn_blocking(move || {
        db.ts.cardinality(params.metric.as_deref(), limit as usize)
    })
    .await
    .map_err(|e| ApiError::internal(format!("cardinality task: {e}")))?;
    Ok(Json(CardinalityResponse {
        total_series: c.total_series,
        series: c.counts.series,
        new_series_last_hour: c.new_series_last_hour,
        max_series: c.max_series,
        max_new_series_per_hour: c.max_new_series_per_hour,
        series_count_by_metric: c
            .counts
            .metrics
            .into_iter()
            .map(|(metric, series)| MetricCount { metric, series })
            .collect(),
        series_count_by_label: c
            .counts
            .labels
            .into_iter()
            .map(|(label, series, values)| LabelCount {
                label,
                series,
                values,
            })
            .collect(),
        series_count_by_label_value: c
            .counts
            .label_values
            .into_iter()
            .map(|(label, value, series)| LabelValueCount {
                label,
                value,
                series,
            })
            .collect(),
    }))
}

/// A selection without aggregation (export, delete) as a checked query.
fn selection(
    metric: String,
    entity: Option<String>,
    tags: BTreeMap<String, String>,
    matchers: Vec<TagMatcher>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Query, ApiError> {
    to_query(QueryRequest {
        metric,
        entity,
        tags,
        matchers,
        from_ms,
        to_ms,
        aggregation: None,
        step_ms: None,
        group_by: Vec::new(),
    })
}

fn to_query(req: QueryRequest) -> Result<Query, ApiError> {
    if req.metric.is_empty() {
        return Err(ApiError::invalid_field("metric", "must not be empty"));
    }
    if req.to_ms < req.from_ms {
        return Err(ApiError::invalid_value(
            "to_ms",
            "must not be before from_ms",
        ));
    }
    if req.matchers.len() > MAX_MATCHERS {
        return Err(ApiError::invalid_field(
            "matchers",
            format!("at most {MAX_MATCHERS} matchers"),
        ));
    }
    if let Some(step) = req.step_ms {
        if step <= 0 {
            return Err(ApiError::invalid_field("step_ms", "must be positive"));
        }
        if req.aggregation.is_none() {
            return Err(ApiError::invalid_value("step_ms", "needs an aggregation"));
        }
        let span = i128::from(req.to_ms) - i128::from(req.from_ms);
        if span / i128::from(step) >= i128::from(MAX_BUCKETS) {
            return Err(ApiError::invalid_value(
                "step_ms",
                format!("the range holds more than {MAX_BUCKETS} steps; use a larger step"),
            ));
        }
    }
    if !req.group_by.is_empty() && req.aggregation.is_none() {
        return Err(ApiError::invalid_value("group_by", "needs an aggregation"));
    }
    let matchers = req
        .matchers
        .into_iter()
        .enumerate()
        .map(|(i, m)| to_matcher(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Query {
        metric: req.metric,
        entity: req.entity,
        tags: req.tags.into_iter().collect(),
        matchers,
        from_ms: req.from_ms,
        to_ms: req.to_ms,
        aggregation: req.aggregation.map(core::ts::aggregation),
        step_ms: req.step_ms,
        group_by: req.group_by,
    })
}

fn to_matcher(i: usize, m: TagMatcher) -> Result<Matcher, ApiError> {
    let op = match m.op.as_str() {
        "=" => MatchOp::Eq,
        "!=" => MatchOp::Ne,
        "=~" => MatchOp::Re,
        "!~" => MatchOp::NotRe,
        other => {
            return Err(ApiError::invalid_field(
                format!("matchers[{i}].op"),
                format!("{other:?} is not one of =, !=, =~, !~"),
            ));
        }
    };
    Matcher::new(m.tag, op, m.value).map_err(|e| {
        ApiError::invalid_value(
            format!("matchers[{i}].value"),
            format!("invalid regex: {e}"),
        )
    })
}
