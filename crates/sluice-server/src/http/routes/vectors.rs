//! Vector routes: collections, writes (direct, batch, buffered), buffer stats and flush, get,
//! delete, search.
//!
//! Every write is validated completely, logged as one WAL record and then applied to the index
//! (direct: before the answer, so the entity is searchable on return) or buffered (the seed's
//! buffered routes), see `sluice_vector::engine`. Direct writes run on the blocking pool: an
//! HNSW insert costs tens to hundreds of microseconds per vector. Direct and batch writes
//! default to `ack=fsync`, buffered ones to `ack=buffer` (or `fsync`, applied directly, when the
//! VectorAutoBuffer is disabled).

use sluice_api::ErrorCode;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use sluice_api::ErrorBody;
use sluice_api::ts::{AckParams, FormatParams};
use sluice_api::vector::{
    AddResponse, BatchAddRequest, BatchAddResponse, BufferedVectorResponse, CollectionInfo,
    CollectionList, CollectionParams, CreateCollection, DeleteResponse, Distance, HnswSpec,
    Precision, RemoveRequest, SearchRequest, SearchResponse, SearchResult, VectorBufferStats,
    VectorEntity, VectorFlushResponse,
};
use sluice_vector::VectorError;
use sluice_vector::engine::{DEFAULT_COLLECTION, WriteMode};
use sluice_vector::record::{EntityData, Op};
use sluice_wal::{AckLevel, WalError};

use crate::core;
use crate::db::Database;

/// The `{pk}` path parameter (by name: nested routes also carry `{db}`).
#[derive(serde::Deserialize)]
pub struct PkPath {
    pk: String,
}

/// The `{name}` path parameter.
#[derive(serde::Deserialize)]
pub struct NamePath {
    name: String,
}
use crate::error::ApiError;
use crate::http::extract::{AckParam, ApiJson, BatchJson, Db};
use crate::http::routes::WriteErrors;
use crate::state::AppState;

/// The `?collection=` parameter (default `default`).
pub struct CollectionParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CollectionParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(p) = Query::<CollectionParams>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid_field("collection", e.body_text()))?;
        Ok(CollectionParam(
            p.collection
                .unwrap_or_else(|| DEFAULT_COLLECTION.to_string()),
        ))
    }
}

/// Errors of routes that act on one collection.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only the OpenAPI document uses it; handlers answer with `ApiError`.
pub enum ReadErrors {
    /// Invalid input or parameter
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No such collection (or entity)
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The server is not ready
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
}

/// Add (or replace) one entity; searchable when acknowledged (default `ack=fsync`).
#[utoipa::path(post, path = "/vectors/add", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))), params(AckParams, CollectionParams),
    request_body = VectorEntity,
    responses(
        (status = 200, description = "Written and indexed", body = AddResponse),
        (status = 404, description = "No such collection (collection `default` is created by its first insert)", body = ErrorBody),
        WriteErrors,
    ))]
pub async fn add(
    Db(db): Db,
    ack: AckParam,
    CollectionParam(collection): CollectionParam,
    ApiJson(e): ApiJson<VectorEntity>,
) -> Result<Json<AddResponse>, ApiError> {
    let ops = vec![Op::Add(entity(e))];
    let (lsn, _) = core::vectors::write(
        db,
        collection,
        ops,
        WriteMode::Direct,
        ack.or(AckLevel::Fsync),
        |_| String::new(),
    )
    .await?;
    Ok(Json(AddResponse {
        success: true,
        lsn: lsn.get(),
    }))
}

/// Add (or replace) many entities, all or nothing, indexed in parallel (default `ack=fsync`).
#[utoipa::path(post, path = "/vectors/add/batch", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))), params(AckParams, CollectionParams),
    request_body = BatchAddRequest,
    responses(
        (status = 200, description = "Every entity written and indexed", body = BatchAddResponse),
        (status = 404, description = "No such collection", body = ErrorBody),
        WriteErrors,
    ))]
pub async fn add_batch(
    State(state): State<AppState>,
    Db(db): Db,
    ack: AckParam,
    CollectionParam(collection): CollectionParam,
    BatchJson(batch): BatchJson<BatchAddRequest>,
) -> Result<Json<BatchAddResponse>, ApiError> {
    core::vectors::check_batch_len(
        batch.vectors.len(),
        state.config().vector.max_vectors_per_batch,
    )?;
    let n = batch.vectors.len() as u64;
    let ops = batch
        .vectors
        .into_iter()
        .map(|e| Op::Add(entity(e)))
        .collect();
    let (lsn, _) = core::vectors::write(
        db,
        collection,
        ops,
        WriteMode::Direct,
        ack.or(AckLevel::Fsync),
        |i| format!("vectors[{i}]."),
    )
    .await?;
    Ok(Json(BatchAddResponse {
        success: true,
        vectors_written: n,
        lsn: lsn.get(),
    }))
}

/// Add (or replace) one entity through the VectorAutoBuffer (seed route; default
/// `ack=buffer`). Searchable at once: searches scan the buffer exactly.
#[utoipa::path(post, path = "/vectors/add/buffered", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))), params(AckParams, CollectionParams),
    request_body = VectorEntity,
    responses(
        (status = 200, description = "Accepted; visible to get and search at once", body = BufferedVectorResponse),
        (status = 404, description = "No such collection", body = ErrorBody),
        WriteErrors,
    ))]
pub async fn add_buffered(
    Db(db): Db,
    ack: AckParam,
    CollectionParam(collection): CollectionParam,
    ApiJson(e): ApiJson<VectorEntity>,
) -> Result<Json<BufferedVectorResponse>, ApiError> {
    buffered(db, ack, collection, Op::Add(entity(e))).await
}

/// Replace an existing entity through the VectorAutoBuffer (seed route; default `ack=buffer`).
#[utoipa::path(post, path = "/vectors/update/buffered", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))), params(AckParams, CollectionParams),
    request_body = VectorEntity,
    responses(
        (status = 200, description = "Accepted; visible to get and search at once", body = BufferedVectorResponse),
        (status = 404, description = "No such collection or entity", body = ErrorBody),
        WriteErrors,
    ))]
pub async fn update_buffered(
    Db(db): Db,
    ack: AckParam,
    CollectionParam(collection): CollectionParam,
    ApiJson(e): ApiJson<VectorEntity>,
) -> Result<Json<BufferedVectorResponse>, ApiError> {
    buffered(db, ack, collection, Op::Update(entity(e))).await
}

/// Remove an entity through the VectorAutoBuffer (seed route; default `ack=buffer`).
#[utoipa::path(delete, path = "/vectors/remove/buffered", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))), params(AckParams, CollectionParams),
    request_body = RemoveRequest,
    responses(
        (status = 200, description = "Accepted; gone from get and search at once", body = BufferedVectorResponse),
        (status = 404, description = "No such collection or entity", body = ErrorBody),
        WriteErrors,
    ))]
pub async fn remove_buffered(
    Db(db): Db,
    ack: AckParam,
    CollectionParam(collection): CollectionParam,
    ApiJson(r): ApiJson<RemoveRequest>,
) -> Result<Json<BufferedVectorResponse>, ApiError> {
    buffered(db, ack, collection, Op::Remove { pk: r.pk }).await
}

async fn buffered(
    db: Arc<Database>,
    ack: AckParam,
    collection: String,
    op: Op,
) -> Result<Json<BufferedVectorResponse>, ApiError> {
    let enabled = db.vectors.config().auto_buffer.enabled;
    let (mode, default_ack) = if enabled {
        (WriteMode::Buffered, AckLevel::Buffer)
    } else {
        (WriteMode::Direct, AckLevel::Fsync)
    };
    let (_, buffer_size) =
        core::vectors::write(db, collection, vec![op], mode, ack.or(default_ack), |_| {
            String::new()
        })
        .await?;
    Ok(Json(BufferedVectorResponse {
        success: true,
        buffered: enabled,
        buffer_size,
    }))
}

/// VectorAutoBuffer statistics (seed fields).
#[utoipa::path(get, operation_id = "vector_buffer_stats", path = "/vectors/buffer/stats", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    responses(
        (status = 200, description = "Buffer statistics since start", body = VectorBufferStats),
        (status = 503, description = "Server not ready", body = ErrorBody),
    ))]
pub async fn buffer_stats(Db(db): Db) -> Result<Json<VectorBufferStats>, ApiError> {
    Ok(Json(core::vectors::stats_body(&db)))
}

/// Apply the VectorAutoBuffer to the indexes now (admin).
#[utoipa::path(post, operation_id = "vector_buffer_flush", path = "/vectors/buffer/flush", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "database"}))),
    responses(
        (status = 200, description = "Applied to the indexes", body = VectorFlushResponse),
        (status = 503, description = "Flusher busy or server not ready", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn buffer_flush(Db(db): Db) -> Result<Json<VectorFlushResponse>, ApiError> {
    core::vectors::flush_now(&db).await.map(Json)
}

/// One entity, buffered or indexed. The vector is returned at the collection's precision.
#[utoipa::path(get, path = "/vectors/{pk}", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    params(("pk" = String, Path, description = "Primary key"), CollectionParams),
    responses(
        (status = 200, description = "The entity", body = VectorEntity),
        ReadErrors,
    ))]
pub async fn get(
    Db(db): Db,
    Path(PkPath { pk }): Path<PkPath>,
    CollectionParam(collection): CollectionParam,
) -> Result<Json<VectorEntity>, ApiError> {
    let found =
        tokio::task::spawn_blocking(move || db.vectors.get(&collection, &pk).map(|e| (e, pk)))
            .await
            .map_err(|e| ApiError::internal(format!("get task: {e}")))?
            .map_err(|e| core::vectors::error(e.widen(), |_| String::new()))?;
    match found {
        (Some(e), _) => Ok(Json(VectorEntity {
            pk: e.pk,
            vector: e.vector,
            metadata: Some(e.metadata),
            timestamp_ms: e.timestamp_ms,
            expires_at_ms: e.expires_at_ms,
        })),
        (None, pk) => Err(ApiError::new(
            ErrorCode::EntityNotFound,
            format!("no entity with pk {pk:?}"),
        )),
    }
}

/// Remove one entity now (default `ack=fsync`); gone from search on return.
#[utoipa::path(delete, operation_id = "delete_vector", path = "/vectors/{pk}", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))),
    params(("pk" = String, Path, description = "Primary key"), AckParams, CollectionParams),
    responses(
        (status = 200, description = "Removed", body = DeleteResponse),
        (status = 404, description = "No such collection or entity", body = ErrorBody),
        WriteErrors,
    ))]
pub async fn delete(
    Db(db): Db,
    Path(PkPath { pk }): Path<PkPath>,
    ack: AckParam,
    CollectionParam(collection): CollectionParam,
) -> Result<Json<DeleteResponse>, ApiError> {
    let ops = vec![Op::Remove { pk }];
    let (lsn, _) = core::vectors::write(
        db,
        collection,
        ops,
        WriteMode::Direct,
        ack.or(AckLevel::Fsync),
        |_| String::new(),
    )
    .await?;
    Ok(Json(DeleteResponse {
        success: true,
        lsn: lsn.get(),
    }))
}

/// The `k` nearest entities that pass the filter, best first; buffered writes included.
#[utoipa::path(post, path = "/vectors/search", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))), params(CollectionParams),
    request_body = SearchRequest,
    responses(
        (status = 200, description = "Results, best first", body = SearchResponse),
        (status = 422, description = "`invalid_value`: the filter is not valid, or the vector does not fit the collection (dimension, what its distance and precision need)", body = ErrorBody),
        ReadErrors,
    ))]
pub async fn search(
    Db(db): Db,
    CollectionParam(collection): CollectionParam,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let decayed = req.decay.is_some();
    if let Some(w) = &req.with_series {
        core::vectors::check_with_series(w)?;
    }
    let hits = core::vectors::search(
        db.clone(),
        collection,
        core::vectors::Query {
            vector: req.vector,
            k: req.k,
            ef: req.ef,
            filter: req.filter.as_ref(),
            time_range: req.time_range,
            decay: req.decay,
        },
    )
    .await?;
    let mut series = match req.with_series {
        Some(w) => core::vectors::series_of_hits(db, &hits, w).await?,
        None => Vec::new(),
    }
    .into_iter();
    Ok(Json(SearchResponse {
        results: hits
            .into_iter()
            .map(|h| SearchResult {
                series: series.next().flatten(),
                pk: h.pk,
                score: h.score,
                distance: h.distance,
                metadata: h.metadata,
                timestamp_ms: h.timestamp_ms,
                expires_at_ms: h.expires_at_ms,
                rank: decayed.then_some(h.rank),
            })
            .collect(),
    }))
}

/// The collections of the database.
#[utoipa::path(get, path = "/v1/collections", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    responses(
        (status = 200, description = "Every collection, by name", body = CollectionList),
        (status = 503, description = "Server not ready", body = ErrorBody),
    ))]
pub async fn list_collections(Db(db): Db) -> Result<Json<CollectionList>, ApiError> {
    Ok(Json(CollectionList {
        collections: db
            .vectors
            .collections()
            .into_iter()
            .map(collection_info)
            .collect(),
    }))
}

/// Create a collection.
#[utoipa::path(post, path = "/v1/collections", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "database", "mutates": true}))),
    request_body = CreateCollection,
    responses(
        (status = 201, description = "Created", body = CollectionInfo),
        (status = 400, description = "Invalid definition", body = ErrorBody),
        (status = 409, description = "A collection of that name exists", body = ErrorBody),
        (status = 422, description = "The database holds its most collections", body = ErrorBody),
        (status = 503, description = "Write queue full or server not ready", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn create_collection(
    Db(db): Db,
    ApiJson(req): ApiJson<CreateCollection>,
) -> Result<(StatusCode, Json<CollectionInfo>), ApiError> {
    let defaults = db.vectors.config();
    let config = sluice_vector::CollectionConfig {
        name: req.name,
        dimension: req.dimension,
        distance: req.distance.map_or(defaults.default_distance, |d| match d {
            Distance::Cosine => sluice_vector::Distance::Cosine,
            Distance::L2 => sluice_vector::Distance::L2,
            Distance::Ip => sluice_vector::Distance::Ip,
        }),
        precision: req
            .precision
            .map_or(defaults.default_precision, |p| match p {
                Precision::F32 => sluice_vector::Precision::F32,
                Precision::F16 => sluice_vector::Precision::F16,
                Precision::I8 => sluice_vector::Precision::I8,
            }),
        hnsw: req
            .hnsw
            .map_or(defaults.default_hnsw, |h| sluice_vector::HnswParams {
                m: h.m,
                ef_construction: h.ef_construction,
                ef_search: h.ef_search,
            }),
        ttl_ms: req.ttl_ms,
    };
    let name = config.name.clone();
    let ticket = db
        .vectors
        .create_collection(config, |kind, payload| {
            let t = db.wal.append(kind, payload, AckLevel::Fsync)?;
            let lsn = t.lsn();
            Ok::<_, WalError>((t, lsn))
        })
        .map_err(|e| core::vectors::error(e, |_| String::new()))?;
    ticket.wait().await?;
    let info = db.vectors.collection(&name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::CollectionNotFound,
            format!("collection {name:?} was deleted meanwhile"),
        )
    })?;
    Ok((StatusCode::CREATED, Json(collection_info(info))))
}

/// One collection's definition and size.
#[utoipa::path(get, path = "/v1/collections/{name}", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    params(("name" = String, Path, description = "Collection name")),
    responses(
        (status = 200, description = "The collection", body = CollectionInfo),
        (status = 404, description = "No such collection", body = ErrorBody),
        (status = 503, description = "Server not ready", body = ErrorBody),
    ))]
pub async fn get_collection(
    Db(db): Db,
    Path(NamePath { name }): Path<NamePath>,
) -> Result<Json<CollectionInfo>, ApiError> {
    db.vectors
        .collection(&name)
        .map(|i| Json(collection_info(i)))
        .ok_or_else(|| {
            core::vectors::error(VectorError::CollectionNotFound(name), |_| String::new())
        })
}

/// Export every entity of a collection (buffered ones included, expired ones not), in pk order:
/// NDJSON, one `VectorEntity` per line; or, with `?format=arrow` (or `Accept:
/// application/vnd.apache.arrow.stream`) an Arrow IPC stream, with `?format=parquet` (or
/// `Accept: application/vnd.apache.parquet`) a Parquet file: columns `pk` (utf8), `vector`
/// (fixed-size list of float32, the collection's dimension), `metadata` (JSON text),
/// `timestamp` and `expires_at` (timestamp[ms, UTC], null when absent), in batches of about
/// 4 MiB of vectors.
#[utoipa::path(get, operation_id = "collection_export", path = "/v1/collections/{name}/export", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    params(("name" = String, Path, description = "Collection name"), FormatParams),
    responses(
        (status = 200, description = "NDJSON stream of VectorEntity objects, or Arrow IPC or Parquet when asked for", content(
            (VectorEntity = "application/x-ndjson"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"),
            (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 400, description = "`bad_request`: an unknown `format`", body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
        (status = 503, description = "Server not ready", body = ErrorBody),
    ))]
pub async fn export(
    Db(db): Db,
    headers: axum::http::HeaderMap,
    Path(NamePath { name }): Path<NamePath>,
    Query(format): Query<FormatParams>,
) -> Result<axum::response::Response, ApiError> {
    let not_found = |e: VectorError| core::vectors::error(e.widen(), |_| String::new());
    let dimension = db
        .vectors
        .collection(&name)
        .ok_or_else(|| not_found(VectorError::CollectionNotFound(name.clone())))?
        .config
        .dimension;
    let engine = db.vectors.clone();
    let lookup = name.clone();
    let pks = tokio::task::spawn_blocking(move || engine.pks(&lookup))
        .await
        .map_err(|e| ApiError::internal(format!("export task: {e}")))?
        .map_err(not_found)?;
    let columnar = crate::http::arrow::columnar(&headers, format.format);
    let (tx, response) =
        super::streamed(columnar.map_or("application/x-ndjson", |c| c.content_type()));
    tokio::task::spawn_blocking(move || {
        let send = |b: Vec<u8>| tx.blocking_send(Ok(axum::body::Bytes::from(b))).is_ok();
        let mut rows = None;
        if let Some(kind) = columnar {
            match crate::http::arrow::VectorRows::new(kind, dimension) {
                Ok(mut r) => {
                    if !send(r.take()) {
                        return;
                    }
                    rows = Some(r);
                }
                Err(e) => return super::fail_stream(&tx, e.to_string()),
            }
        }
        let mut frame = Vec::new();
        for pk in &pks {
            // Removed or expired since the pks were listed: not part of the export. A collection
            // deleted (or replaced) meanwhile ends the export as failed, never as complete.
            let e = match db.vectors.get(&name, pk) {
                Ok(Some(e)) if e.vector.len() == dimension => e,
                Ok(Some(_)) => {
                    return super::fail_stream(&tx, format!("collection {name:?} was replaced"));
                }
                Ok(None) => continue,
                Err(err) => return super::fail_stream(&tx, err.to_string()),
            };
            let full = match &mut rows {
                Some(r) => {
                    let metadata = serde_json::Value::Object(e.metadata).to_string();
                    match r.push(&e.pk, &e.vector, &metadata, e.timestamp_ms, e.expires_at_ms) {
                        Ok(b) => b,
                        Err(err) => return super::fail_stream(&tx, err.to_string()),
                    }
                }
                None => {
                    let line = VectorEntity {
                        pk: e.pk,
                        vector: e.vector,
                        metadata: Some(e.metadata),
                        timestamp_ms: e.timestamp_ms,
                        expires_at_ms: e.expires_at_ms,
                    };
                    if let Err(err) = serde_json::to_writer(&mut frame, &line) {
                        return super::fail_stream(&tx, err.to_string());
                    }
                    frame.push(b'\n');
                    (frame.len() >= super::EXPORT_FRAME_BYTES).then(|| std::mem::take(&mut frame))
                }
            };
            if let Some(b) = full
                && !send(b)
            {
                return;
            }
        }
        let last = match rows {
            Some(r) => match r.finish() {
                Ok(b) => b,
                Err(err) => return super::fail_stream(&tx, err.to_string()),
            },
            None => frame,
        };
        if !last.is_empty() {
            send(last);
        }
    });
    Ok(response)
}

/// Delete a collection and everything in it.
#[utoipa::path(delete, path = "/v1/collections/{name}", tag = "vectors", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "database", "mutates": true}))),
    params(("name" = String, Path, description = "Collection name")),
    responses(
        (status = 200, description = "Deleted", body = DeleteResponse),
        (status = 404, description = "No such collection", body = ErrorBody),
        (status = 503, description = "Write queue full or server not ready", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn delete_collection(
    Db(db): Db,
    Path(NamePath { name }): Path<NamePath>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let ticket = db
        .vectors
        .delete_collection(&name, |kind, payload| {
            let t = db.wal.append(kind, payload, AckLevel::Fsync)?;
            let lsn = t.lsn();
            Ok::<_, WalError>((t, lsn))
        })
        .map_err(|e| core::vectors::error(e, |_| String::new()))?;
    let lsn = ticket.wait().await?;
    Ok(Json(DeleteResponse {
        success: true,
        lsn: lsn.get(),
    }))
}

fn entity(e: VectorEntity) -> EntityData {
    EntityData {
        pk: e.pk,
        vector: e.vector,
        metadata: e.metadata.unwrap_or_default(),
        timestamp_ms: e.timestamp_ms,
        expires_at_ms: e.expires_at_ms,
    }
}

fn collection_info(i: sluice_vector::engine::CollectionInfo) -> CollectionInfo {
    let c = i.config;
    CollectionInfo {
        name: c.name,
        dimension: c.dimension,
        distance: match c.distance {
            sluice_vector::Distance::Cosine => Distance::Cosine,
            sluice_vector::Distance::L2 => Distance::L2,
            sluice_vector::Distance::Ip => Distance::Ip,
        },
        precision: match c.precision {
            sluice_vector::Precision::F32 => Precision::F32,
            sluice_vector::Precision::F16 => Precision::F16,
            sluice_vector::Precision::I8 => Precision::I8,
        },
        hnsw: HnswSpec {
            m: c.hnsw.m,
            ef_construction: c.hnsw.ef_construction,
            ef_search: c.hnsw.ef_search,
        },
        ttl_ms: c.ttl_ms,
        vectors: i.vectors,
        buffered: i.buffered,
        index_bytes: i.index_bytes,
    }
}
