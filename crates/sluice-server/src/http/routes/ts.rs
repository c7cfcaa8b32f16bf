//! Time-series write routes. Each write is validated completely, encoded as one WAL record and
//! acknowledged at the requested level (SPEC §3): a batch is all-or-nothing because it is one
//! record, refused whole before anything is logged if any point is invalid.

use axum::Json;
use axum::extract::State;
use sluice_api::ErrorBody;
use sluice_api::ts::{AckParams, BatchPutRequest, BatchPutResponse, DataPoint, PutResponse};
use sluice_ts::{Point, PointLimits};
use sluice_wal::{AckLevel, Lsn};

use crate::db::{DEFAULT_DATABASE, Database};
use crate::error::ApiError;
use crate::http::extract::{AckParam, ApiJson, BatchJson};
use crate::state::AppState;

/// Write one point (default `ack=fsync`).
#[utoipa::path(post, path = "/ts/put", tag = "timeseries", params(AckParams), request_body = DataPoint,
    responses(
        (status = 200, description = "Written at the requested level", body = PutResponse),
        (status = 400, description = "Invalid point or parameter", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Write queue full or server not ready", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn put(
    State(state): State<AppState>,
    ack: AckParam,
    ApiJson(point): ApiJson<DataPoint>,
) -> Result<Json<PutResponse>, ApiError> {
    let db = state.database(DEFAULT_DATABASE)?;
    let point = to_point(point, &db.point_limits, "")?;
    let lsn = write(&db, &[point], ack.or(AckLevel::Fsync)).await?;
    Ok(Json(PutResponse {
        success: true,
        lsn: lsn.get(),
    }))
}

/// Write a batch of points, all or nothing (default `ack=fsync`).
#[utoipa::path(post, path = "/ts/put/batch", tag = "timeseries", params(AckParams), request_body = BatchPutRequest,
    responses(
        (status = 200, description = "Every point written at the requested level", body = BatchPutResponse),
        (status = 400, description = "A point or parameter is invalid; nothing was written", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
        (status = 503, description = "Write queue full or server not ready", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn put_batch(
    State(state): State<AppState>,
    ack: AckParam,
    BatchJson(batch): BatchJson<BatchPutRequest>,
) -> Result<Json<BatchPutResponse>, ApiError> {
    let db = state.database(DEFAULT_DATABASE)?;
    let max = state.config().limits.max_points_per_batch;
    if batch.points.len() > max {
        return Err(ApiError::invalid_field(
            "points",
            format!(
                "{} points; a batch may hold at most {max}",
                batch.points.len()
            ),
        ));
    }
    if batch.points.is_empty() {
        return Err(ApiError::invalid_field(
            "points",
            "must hold at least one point",
        ));
    }
    let points = batch
        .points
        .into_iter()
        .enumerate()
        .map(|(i, p)| to_point(p, &db.point_limits, &format!("points[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let lsn = write(&db, &points, ack.or(AckLevel::Fsync)).await?;
    Ok(Json(BatchPutResponse {
        success: true,
        points_written: points.len() as u64,
        lsn: lsn.get(),
    }))
}

fn to_point(p: DataPoint, limits: &PointLimits, prefix: &str) -> Result<Point, ApiError> {
    Point::new(p.metric, p.entity, p.timestamp_ms, p.value, p.tags, limits)
        .map_err(|e| ApiError::invalid_field(format!("{prefix}{}", e.field), e.reason))
}

async fn write(db: &Database, points: &[Point], ack: AckLevel) -> Result<Lsn, ApiError> {
    let payload = sluice_ts::record::encode(points);
    let ticket = db.wal.append(sluice_ts::record::POINTS, payload, ack)?;
    Ok(ticket.wait().await?)
}
