//! Snapshot transfer: how a replica whose next record is no longer in its primary's WAL catches
//! up.
//!
//! # Why a fuzzy copy is exact
//! The primary reads its durable LSN `X`, pins its WAL from `X + 1` (retention, so those records
//! stay), then streams the database's state as it reads it: every time-series point (queries
//! merge chunks and buffer) and every vector collection (with its id: later records name the
//! incarnation by it) and entity (after a vector flush, so the index holds every operation up
//! to `X`). Writes after `X` may or may not be in that copy. The replica loads the copy as "the
//! state at `X`", then applies records `X + 1…` as usual, which makes it exact: a point written
//! twice ends with its last write (the highest LSN wins), and every vector record carries the
//! entity's whole state (re-applying a suffix over a state that holds part of it ends in the
//! same state; the engines' recovery already relies on this).
//!
//! # Wire format
//! `POST /api/v1/replication/snapshot?database=D&lsn=X` (admin, replicas only), body
//! `application/x-ndjson` with `Content-Encoding: zstd`, one object per line:
//! `{"points": [DataPoint…]}`, `{"collection": {"config": {…}, "id": N}}`,
//! `{"vectors": {"collection": "name", "entities": [{"pk", "vector", "metadata"}…]}}`, and
//! last `{"end": {"points": N, "entities": M}}`; a body without the trailer (or whose counts
//! differ) is refused and the database stays marked unfinished.
//!
//! # Replica side
//! Under the database's apply lock: the database is replaced by an empty one whose WAL
//! continues after `X`, with a marker file (`Databases::reset_for_snapshot`); lines are loaded
//! into the engines as of `X` (flushing when the buffers ask); then both engines persist
//! (flush, vector snapshot, checkpoint) and the marker goes. A crash before that discards the
//! database at the next start, so a half-loaded copy never passes for data up to `X`; the
//! primary then sees the gap and sends a snapshot again.

use sluice_api::ErrorCode;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_api::ts::DataPoint;
use sluice_vector::CollectionConfig;
use sluice_vector::record::EntityData;
use sluice_wal::Lsn;

use super::ReplicaLink;
use crate::db::Database;
use crate::error::ApiError;
use crate::state::AppState;

/// Points per `points` line; entities per `vectors` line.
const POINTS_PER_LINE: usize = 10_000;
const ENTITIES_PER_LINE: usize = 500;
/// Longest line the replica accepts (a `vectors` line of large vectors).
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest pause between two pieces of a snapshot body the replica waits through.
const SNAPSHOT_IDLE: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    Points(Vec<DataPoint>),
    Collection(CollectionLine),
    Vectors(VectorsLine),
    End(EndLine),
}

#[derive(Serialize, Deserialize)]
struct CollectionLine {
    config: CollectionConfig,
    id: u64,
}

#[derive(Serialize, Deserialize)]
struct VectorsLine {
    collection: String,
    entities: Vec<SnapshotEntity>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotEntity {
    pk: String,
    vector: Vec<f32>,
    #[serde(default)]
    metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
}

#[derive(Serialize, Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
struct EndLine {
    points: u64,
    entities: u64,
}

// ----- primary -----

/// Sends `db` to the replica as a snapshot; returns the LSN it stands for (the replica's log
/// continues after it).
pub async fn send(state: &AppState, link: &ReplicaLink, db: &Arc<Database>) -> Result<Lsn, String> {
    let repl = state.replication();
    // The snapshot's LSN, pinned: its successors must stay in the WAL until shipped.
    let at = loop {
        let at = db.wal.status().durable_lsn;
        link.lock().pins.insert(db.name.clone(), at.next());
        repl.update_floor(db);
        let oldest = db.wal.oldest_readable_lsn().map_err(|e| e.to_string())?;
        if oldest <= at.next() {
            break at;
        }
        // A checkpoint deleted the segment between reading `at` and pinning: read again.
    };
    // The index must hold every vector operation up to `at` (its catalogue is what is read).
    db.flusher
        .flush_vectors_now()
        .await
        .map_err(|e| format!("flushing vectors for a snapshot: {e}"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let dump_db = db.clone();
    let dumper = tokio::task::spawn_blocking(move || dump(&dump_db, at, ChannelWriter { tx }));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let client = reqwest::Client::builder()
        .timeout(SNAPSHOT_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client
        .post(format!(
            "{}/api/v1/replication/snapshot?database={}&lsn={}",
            link.endpoint.trim_end_matches('/'),
            db.name,
            at.0
        ))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "zstd")
        .header("x-primary-id", repl.node_id())
        .header("x-primary-epoch", repl.epoch().to_string())
        .body(reqwest::Body::wrap_stream(stream));
    if !repl.config().token.is_empty() {
        request = request.bearer_auth(&repl.config().token);
    }
    tracing::info!(replica = %link.id, db = %db.name, lsn = %at, "sending a snapshot");
    let response = request.send().await;
    let dumped = dumper.await.map_err(|e| e.to_string())?;
    let response = response.map_err(|e| format!("sending a snapshot to {}: {e}", link.endpoint))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let counts = dumped.map_err(|e| format!("reading the database for a snapshot: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{} refused the snapshot ({status}): {}",
            link.endpoint,
            text.chars().take(300).collect::<String>()
        ));
    }
    let answer: sluice_api::replication::WalApplyResponse =
        serde_json::from_str(&text).map_err(|e| format!("snapshot answer: {e}"))?;
    if answer.last_applied_lsn != at.0 {
        return Err(format!(
            "the replica answered LSN {} for a snapshot at {at}",
            answer.last_applied_lsn
        ));
    }
    repl.metrics.snapshots.inc();
    tracing::info!(replica = %link.id, db = %db.name, lsn = %at, points = counts.points, entities = counts.entities, "snapshot sent");
    Ok(at)
}

/// Feeds the request body from the blocking dump thread.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "request ended"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the database's state as zstd-compressed NDJSON, as of `at` (see the module doc).
fn dump(db: &Database, at: Lsn, out: ChannelWriter) -> Result<EndLine, String> {
    let io = |e: std::io::Error| e.to_string();
    let enc = zstd::stream::write::Encoder::new(out, 3).map_err(io)?;
    let mut w = std::io::BufWriter::with_capacity(256 * 1024, enc.auto_finish());
    let line = |w: &mut dyn Write, l: &Line| -> Result<(), String> {
        serde_json::to_writer(&mut *w, l).map_err(|e| e.to_string())?;
        w.write_all(b"\n").map_err(io)
    };
    let mut end = EndLine::default();
    for metric in db.ts.metrics() {
        let q = sluice_ts::query::Query {
            metric,
            entity: None,
            tags: Vec::new(),
            matchers: Vec::new(),
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            aggregation: None,
            step_ms: None,
            group_by: Vec::new(),
        };
        let mut batch = Vec::with_capacity(POINTS_PER_LINE);
        let mut failed = None;
        db.ts
            .export(&q, |key, t, v| {
                batch.push(DataPoint {
                    metric: key.metric.clone(),
                    entity: key.entity.clone(),
                    timestamp_ms: Some(t),
                    value: v,
                    tags: key.tags.iter().cloned().collect(),
                });
                if batch.len() == POINTS_PER_LINE {
                    end.points += batch.len() as u64;
                    if let Err(e) = line(&mut w, &Line::Points(std::mem::take(&mut batch))) {
                        failed = Some(e);
                        return false;
                    }
                }
                true
            })
            .map_err(|e| e.to_string())?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !batch.is_empty() {
            end.points += batch.len() as u64;
            line(&mut w, &Line::Points(batch))?;
        }
    }
    for (config, id) in db.vectors.collections_with_ids() {
        if id > at.0 {
            // Created after `at` (while the copy was being read): its creation record and
            // every write to it follow in the WAL after `at`.
            continue;
        }
        let name = config.name.clone();
        line(&mut w, &Line::Collection(CollectionLine { config, id }))?;
        for pks in db.vectors.indexed_pks(&name).chunks(ENTITIES_PER_LINE) {
            let mut entities = Vec::with_capacity(pks.len());
            for pk in pks {
                if let Ok(Some(e)) = db.vectors.get(&name, pk) {
                    entities.push(SnapshotEntity {
                        pk: e.pk,
                        vector: e.vector,
                        metadata: e.metadata,
                        timestamp_ms: e.timestamp_ms,
                        expires_at_ms: e.expires_at_ms,
                    });
                }
            }
            end.entities += entities.len() as u64;
            line(
                &mut w,
                &Line::Vectors(VectorsLine {
                    collection: name.clone(),
                    entities,
                }),
            )?;
        }
    }
    line(&mut w, &Line::End(end))?;
    w.flush().map_err(io)?;
    drop(w);
    Ok(end)
}

// ----- replica -----

/// Replaces database `name` with the snapshot in `body`, taken at `at`. The caller checked
/// the role and the epoch and holds the database's apply lock.
pub async fn install(
    state: &AppState,
    name: &str,
    at: Lsn,
    body: axum::body::Body,
) -> Result<(), ApiError> {
    let dbs = state.databases().ok_or_else(ApiError::not_ready)?.clone();
    let st = state.clone();
    let db_name = name.to_string();
    let db =
        tokio::task::spawn_blocking(move || dbs.reset_for_snapshot(&db_name, at, st.metrics()))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| {
                ApiError::internal(format!("resetting database {name} for a snapshot: {e}"))
            })?;
    let loaded = load(&db, at, body).await;
    drop(db);
    let dbs = state.databases().ok_or_else(ApiError::not_ready)?.clone();
    let st = state.clone();
    let db_name = name.to_string();
    let failed = loaded.is_err();
    let finished = tokio::task::spawn_blocking(move || {
        if failed {
            // Never leave a partial copy claiming LSN `at`: an empty database at LSN 0 is
            // true, and the primary answers its gap with another snapshot.
            dbs.reset_for_snapshot(&db_name, Lsn::ZERO, st.metrics())
                .map_err(|e| e.to_string())?;
        }
        dbs.finish_snapshot(&db_name).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    loaded?;
    finished.map_err(|e| ApiError::internal(format!("finishing a snapshot: {e}")))?;
    state.replication().metrics.snapshots_installed.inc();
    Ok(())
}

/// Loads the snapshot lines into the freshly reset `db` and persists them.
async fn load(db: &Database, at: Lsn, body: axum::body::Body) -> Result<(), ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut got = EndLine::default();
    let mut end = None;
    let bad = |m: String| ApiError::new(ErrorCode::CorruptSnapshot, m);
    loop {
        // A silent sender (a partitioned primary, a half-open connection) must not hold the
        // database's apply lock for ever.
        let next = tokio::time::timeout(SNAPSHOT_IDLE, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::SnapshotStalled,
                    format!("no snapshot bytes for {} s", SNAPSHOT_IDLE.as_secs()),
                )
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| bad(format!("reading the snapshot: {e}")))?;
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let text = &buf[start..start + nl];
            start += nl + 1;
            if end.is_some() {
                return Err(bad("data after the end line".into()));
            }
            let l: Line =
                serde_json::from_slice(text).map_err(|e| bad(format!("snapshot line: {e}")))?;
            if let Line::End(e) = l {
                end = Some(e);
                continue;
            }
            load_line(db, l, at, &mut got).await?;
        }
        buf.drain(..start);
        if buf.len() > MAX_LINE_BYTES {
            return Err(bad(format!(
                "a snapshot line exceeds {MAX_LINE_BYTES} bytes"
            )));
        }
    }
    match end {
        Some(e) if e == got && buf.is_empty() => {}
        Some(e) => {
            return Err(bad(format!(
                "the snapshot announced {e:?} but held {got:?}"
            )));
        }
        None => return Err(bad("the snapshot ended without its end line".into())),
    }
    db.vectors.load_done(at);
    db.flusher.persist_now().await?;
    Ok(())
}

async fn load_line(db: &Database, line: Line, at: Lsn, got: &mut EndLine) -> Result<(), ApiError> {
    let invalid = |m: String| ApiError::new(ErrorCode::CorruptSnapshot, m);
    match line {
        Line::Points(points) => {
            let limits = db.ts.config().point_limits;
            got.points += points.len() as u64;
            let points = points
                .into_iter()
                .map(|p| {
                    let timestamp_ms = p
                        .timestamp_ms
                        .ok_or_else(|| invalid("snapshot point without timestamp_ms".into()))?;
                    sluice_ts::Point::new(
                        p.metric,
                        p.entity,
                        timestamp_ms,
                        p.value,
                        p.tags,
                        &limits,
                    )
                    .map_err(|e| invalid(format!("snapshot point: {}: {}", e.field, e.reason)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let batch = sluice_ts::Batch::from_points(points);
            if db.ts.load_base(batch, at).flush_due.is_some() {
                db.flusher.flush_now().await?;
            }
        }
        Line::Collection(c) => {
            db.vectors
                .load_collection(c.config, c.id, at)
                .map_err(|e| invalid(format!("snapshot collection: {e}")))?;
        }
        Line::Vectors(v) => {
            got.entities += v.entities.len() as u64;
            let entities = v
                .entities
                .into_iter()
                .map(|e| EntityData {
                    pk: e.pk,
                    vector: e.vector,
                    metadata: e.metadata,
                    timestamp_ms: e.timestamp_ms,
                    expires_at_ms: e.expires_at_ms,
                })
                .collect();
            let due = db
                .vectors
                .load_entities(&v.collection, entities, at)
                .map_err(|e| invalid(format!("snapshot entities: {e}")))?;
            if due.is_some() {
                db.flusher.flush_vectors_now().await?;
            }
        }
        Line::End(_) => {}
    }
    Ok(())
}
