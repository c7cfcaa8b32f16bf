//! What each opcode does: a thin call into the core (`core::ts`, `core::vectors`,
//! `core::replication`), so an operation behaves the same as over HTTP, with the answer encoded
//! as the protocol says (a little-endian u64, or the HTTP JSON for stats and replication).

use sluice_api::ErrorCode;
use std::sync::Arc;

use serde::Serialize;
use sluice_vector::engine::WriteMode;
use sluice_vector::record::{EntityData, Op};
use sluice_wal::AckLevel;
use sluice_wire::Request;

use crate::core;
use crate::db::{DEFAULT_DATABASE, Database};
use crate::error::ApiError;
use crate::state::AppState;

/// A JSON payload (replication opcodes carry the HTTP bodies).
pub(super) fn wire_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_field("payload", format!("not the expected JSON: {e}")))
}

pub(super) fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

pub(super) async fn dispatch(state: &AppState, request: Request<'_>) -> Result<Vec<u8>, ApiError> {
    let db = state.database(DEFAULT_DATABASE)?;
    match request {
        Request::Auth { .. } => Ok(Vec::new()),
        // Decoded by `decode_ts_series` before `dispatch` (see `handle`).
        Request::TsPutBuffered { .. } | Request::TsPut { .. } => Err(ApiError::internal(
            "time-series puts are decoded by decode_ts_series",
        )),
        Request::TsBufferStats => Ok(json(&core::ts::stats_body(&db))),
        Request::TsBufferFlush => Ok(json(&core::ts::flush_now(&db).await?)),
        Request::VectorAddBuffered { entities, .. } => {
            vector_write(
                state,
                db,
                entities.into_iter().map(|e| Op::Add(entity(e))).collect(),
            )
            .await
        }
        Request::VectorUpdateBuffered { entities, .. } => {
            vector_write(
                state,
                db,
                entities
                    .into_iter()
                    .map(|e| Op::Update(entity(e)))
                    .collect(),
            )
            .await
        }
        Request::VectorRemoveBuffered { pks, .. } => {
            let ops = pks
                .into_iter()
                .map(|pk| Op::Remove { pk: pk.to_string() })
                .collect();
            vector_write(state, db, ops).await
        }
        Request::VectorBufferStats => Ok(json(&core::vectors::stats_body(&db))),
        Request::VectorBufferFlush => Ok(json(&core::vectors::flush_now(&db).await?)),
        Request::WalApplyCompressed(body) => {
            let req = wire_json(body)?;
            let sent = body.len() as u64;
            Ok(json(
                &core::replication::apply_batch(state, None, sent, req).await?,
            ))
        }
        Request::ReplicationStats => Ok(json(
            &state
                .replication()
                .stats(state.databases().map(|d| d.as_ref())),
        )),
        Request::ReplicationConfig(body) => Ok(json(&core::replication::configure(
            state,
            wire_json(body)?,
        )?)),
        Request::VectorSearch(q) => vector_search(db, q).await,
        Request::ChangesSubscribe(_) => Err(ApiError::new(
            ErrorCode::SubscriptionTransport,
            "changefeed subscriptions are served over /v1/ws (or as SSE at /v1/databases/{db}/changes), not on the TCP listener",
        )),
    }
}

/// A time-series put (`TS_PUT_BUFFERED` or `TS_PUT`): its series and samples as an engine
/// batch, each error naming its field (`points[3].value`; a series' errors name its first
/// point), written at the opcode's acknowledgement level.
pub(super) async fn ts_put(
    state: &AppState,
    put: sluice_wire::TsSeriesBatch<'_>,
) -> Result<Vec<u8>, ApiError> {
    let db = state.database(DEFAULT_DATABASE)?;
    core::ts::check_batch_len(put.samples.len(), &state.config().limits)?;
    let limits = db.ts.config().point_limits;
    // Field paths as before the series-grouped decoder: indexed when the frame holds more than
    // one point. Series are checked before values, so the first error reported is the first
    // bad series, else the first bad value.
    let many = put.samples.len() > 1;
    let field = |i: usize, f: &str| {
        if many {
            format!("points[{i}].{f}")
        } else {
            f.to_string()
        }
    };
    let mut batch = sluice_ts::Batch::with_capacity(put.series.len(), put.samples.len());
    for s in put.series {
        let key = sluice_ts::series::SeriesKey::new(
            s.metric.to_string(),
            s.entity.to_string(),
            s.tags,
            &limits,
        )
        .map_err(|e| ApiError::invalid_field(field(s.first, &e.field), e.reason))?;
        batch.add_series(key);
    }
    let now_ms = sluice_ts::now_ms();
    for (i, s) in put.samples.iter().enumerate() {
        let timestamp_ms = if s.timestamp_ms == sluice_wire::TIMESTAMP_NOW {
            now_ms
        } else {
            s.timestamp_ms
        };
        batch
            .push(s.series, timestamp_ms, s.value)
            .map_err(|e| ApiError::invalid_field(field(i, &e.field), e.reason))?;
    }
    if put.op == sluice_wire::Opcode::TsPut {
        let (lsn, _) = core::ts::write(&db, batch, AckLevel::Fsync).await?;
        Ok(lsn.get().to_le_bytes().to_vec())
    } else {
        let ack = ts_buffered_ack(&db);
        let (_, size) = core::ts::write(&db, batch, ack).await?;
        Ok(size.to_le_bytes().to_vec())
    }
}

/// `VECTOR_SEARCH`: the search of `POST /vectors/search`, its hits in binary (metadata as JSON).
async fn vector_search(
    db: Arc<Database>,
    q: sluice_wire::VectorQuery<'_>,
) -> Result<Vec<u8>, ApiError> {
    let filter: Option<serde_json::Value> =
        if q.filter.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(q.filter).map_err(|e| {
                ApiError::invalid_field("filter", format!("not a JSON object: {e}"))
            })?)
        };
    let collection = if q.collection.is_empty() {
        sluice_vector::engine::DEFAULT_COLLECTION
    } else {
        q.collection
    };
    let hits = core::vectors::search(
        db,
        collection.to_string(),
        core::vectors::Query {
            vector: q.vector.to_vec(),
            k: q.k as usize,
            ef: (q.ef != 0).then_some(q.ef as usize),
            filter: filter.as_ref(),
            time_range: None,
            decay: None,
        },
    )
    .await?;
    let metadata: Vec<Vec<u8>> = hits
        .iter()
        .map(|h| {
            if h.metadata.is_empty() {
                Vec::new()
            } else {
                json(&h.metadata)
            }
        })
        .collect();
    let refs: Vec<sluice_wire::SearchHitRef<'_>> = hits
        .iter()
        .zip(&metadata)
        .map(|(h, m)| sluice_wire::SearchHitRef {
            pk: &h.pk,
            distance: h.distance,
            score: h.score,
            metadata: m,
        })
        .collect();
    let mut out = Vec::with_capacity(4 + refs.len() * 32);
    sluice_wire::encode_search_hits(&refs, &mut out)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(out)
}

pub(super) fn ts_buffered_ack(db: &Database) -> AckLevel {
    if db.ts.config().auto_buffer.enabled {
        AckLevel::Buffer
    } else {
        AckLevel::Fsync
    }
}

pub(super) fn entity(e: sluice_wire::VectorEntity<'_>) -> EntityData {
    EntityData {
        pk: e.pk.to_string(),
        vector: e.vector.to_vec(),
        metadata: e.metadata.unwrap_or_default(),
        timestamp_ms: None,
        expires_at_ms: None,
    }
}

pub(super) async fn vector_write(
    state: &AppState,
    db: Arc<Database>,
    ops: Vec<Op>,
) -> Result<Vec<u8>, ApiError> {
    core::vectors::check_batch_len(ops.len(), state.config().vector.max_vectors_per_batch)?;
    let enabled = db.vectors.config().auto_buffer.enabled;
    let (mode, ack) = if enabled {
        (WriteMode::Buffered, AckLevel::Buffer)
    } else {
        (WriteMode::Direct, AckLevel::Fsync)
    };
    let batch = ops.len() > 1;
    let prefix: fn(usize) -> String = if batch {
        |i| format!("vectors[{i}].")
    } else {
        |_| String::new()
    };
    let (_, size) = core::vectors::write(
        db,
        sluice_vector::engine::DEFAULT_COLLECTION.to_string(),
        ops,
        mode,
        ack,
        prefix,
    )
    .await?;
    Ok(size.to_le_bytes().to_vec())
}
