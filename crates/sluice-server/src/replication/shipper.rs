//! One shipper task per replica, on the primary.
//!
//! Each round visits every database: it reads durable WAL records after the replica's
//! confirmed LSN (about `max_batch_bytes` of them), compresses them (zstd at the configured
//! level), and posts the seed's `POST /api/v1/wal/apply` body, itself sent with
//! `Content-Encoding: zstd` (level 1, which mostly takes back base64's 4/3). The replica answers
//! with the LSN it has durably applied; that becomes the confirmed LSN. A `wal_gap` answer
//! moves the confirmed LSN to what the replica expects (after a restart of either side, the
//! persisted position may be stale), a `stale_epoch` answer fences this primary off that
//! replica for good (another node was promoted). Failures back off exponentially up to
//! `retry_max_ms`; three in a row make the replica unhealthy in the stats.
//!
//! With nothing to ship, the task sleeps until a WAL becomes durable further (a `Notify`
//! woken by every database's WAL writer) or 200 ms pass.
//!
//! A replica whose next record is no longer retained (`ReadError::Gone`) gets a snapshot of
//! the database instead (`snapshot.rs`), then shipping continues after the snapshot's LSN.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use sluice_api::ErrorBody;
use sluice_api::ErrorCode;
use sluice_api::replication::{WalApplyRequest, WalApplyResponse};
use sluice_wal::{Lsn, ReadBatch};

use super::ReplicaLink;
use crate::core::feed::{Feed, FeedEnd};
use crate::db::Database;
use crate::state::AppState;

const IDLE_WAIT: Duration = Duration::from_millis(200);

pub fn spawn(state: AppState, link: Arc<ReplicaLink>) {
    tokio::spawn(run(state, link));
}

enum Shipped {
    Nothing,
    Progress,
}

async fn run(state: AppState, link: Arc<ReplicaLink>) {
    let repl = state.replication();
    let config = repl.config().clone();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(config.ship_timeout_ms))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(replica = %link.id, error = %e, "cannot build the shipping HTTP client");
            return;
        }
    };
    let mut stop = repl.stopping();
    let mut feeds: HashMap<String, Feed> = HashMap::new();
    let mut backoff = Duration::ZERO;
    tracing::info!(replica = %link.id, endpoint = %link.endpoint, "shipping WAL to replica");
    loop {
        if *stop.borrow() || link.removed.load(Ordering::Acquire) {
            return;
        }
        let notified = repl.durable.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut progressed = false;
        let mut failure = None;
        let mut current = state.databases().map(|d| d.all()).unwrap_or_default();
        current.retain(|db| repl.ships(&db.name));
        // A feed holds its database open: drop those of deleted or replaced databases, which
        // a failing round (it stops at the first failure) would otherwise keep forever, and
        // with them the deletion that waits for every holder.
        feeds.retain(|name, feed| {
            current
                .iter()
                .any(|db| db.name == *name && Arc::ptr_eq(db, feed.database()))
        });
        if !link.lock().fenced {
            for db in current {
                match ship_one(&state, &link, &client, &db, &mut feeds).await {
                    Ok(Shipped::Progress) => progressed = true,
                    Ok(Shipped::Nothing) => {}
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = failure {
            repl.metrics.failed.inc();
            let failures = {
                let mut st = link.lock();
                st.consecutive_failures += 1;
                st.last_error = Some(e.clone());
                st.consecutive_failures
            };
            if failures == 1 || failures.is_power_of_two() {
                tracing::warn!(replica = %link.id, failures, error = %e, "shipping WAL failed; retrying");
            }
            backoff = (backoff * 2).clamp(
                Duration::from_millis(100),
                Duration::from_millis(config.retry_max_ms),
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            continue;
        }
        backoff = Duration::ZERO;
        if !progressed {
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(IDLE_WAIT) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Ships one batch of `db` if there is one.
async fn ship_one(
    state: &AppState,
    link: &ReplicaLink,
    client: &reqwest::Client,
    db: &Arc<Database>,
    feeds: &mut HashMap<String, Feed>,
) -> Result<Shipped, String> {
    let repl = state.replication();
    if link.lock().needs_snapshot.contains_key(&db.name) {
        let sent = super::snapshot::send(state, link, db).await;
        let mut st = link.lock();
        st.pins.remove(&db.name);
        let at = sent?;
        st.confirmed.insert(db.name.clone(), at);
        st.needs_snapshot.remove(&db.name);
        st.snapshots_sent += 1;
        st.consecutive_failures = 0;
        st.last_error = None;
        drop(st);
        feeds.remove(&db.name);
        repl.mark_dirty();
        return Ok(Shipped::Progress);
    }
    let confirmed = link
        .lock()
        .confirmed
        .get(&db.name)
        .copied()
        .unwrap_or(Lsn::ZERO);
    let max = repl.config().max_batch_bytes;
    let feed = feeds
        .entry(db.name.clone())
        .or_insert_with(|| Feed::new(state, db.clone(), confirmed.next(), max));
    if !Arc::ptr_eq(feed.database(), db) {
        *feed = Feed::new(state, db.clone(), confirmed.next(), max);
    }
    // The confirmed LSN is the truth (a `wal_gap` answer or a snapshot moves it).
    feed.seek(confirmed.next());
    let batch = match feed.read_now().await {
        Ok(b) if b.is_empty() => return Ok(Shipped::Nothing),
        Ok(b) => b,
        Err(FeedEnd::Gone { requested, oldest }) => {
            tracing::warn!(replica = %link.id, db = %db.name, needed = %requested, oldest = %oldest,
                "the WAL this replica needs is no longer retained; sending a snapshot");
            link.lock().needs_snapshot.insert(db.name.clone(), oldest);
            return Ok(Shipped::Progress);
        }
        // The next round ships the database its name opens now, or stops.
        Err(FeedEnd::Replaced | FeedEnd::Stopping) => {
            feeds.remove(&db.name);
            return Ok(Shipped::Nothing);
        }
        Err(FeedEnd::Failed(e)) => return Err(format!("reading the WAL of {}: {e}", db.name)),
    };
    let (kind, level) = repl.compression();
    let (lag_bytes, lag_ms) = db.wal.lag(batch.last_lsn).unwrap_or((0, 0));
    let meta = BatchMeta {
        primary_id: repl.node_id(),
        epoch: repl.epoch(),
        database: db.name.clone(),
        primary_durable_lsn: db.wal.status().durable_lsn.0,
        lag_bytes,
        lag_ms,
        primary_endpoint: Some(repl.config().advertise_url.clone()).filter(|u| !u.is_empty()),
    };
    let uncompressed = batch.bytes.len() as u64;
    let (first, last, records) = (batch.first_lsn, batch.last_lsn, batch.records);
    let zstd_body = kind == "zstd";
    let body = tokio::task::spawn_blocking(move || build_body(&batch, &kind, level, meta))
        .await
        .map_err(|e| e.to_string())??;
    let body_len = body.len() as u64;
    let mut request = client
        .post(format!(
            "{}/api/v1/wal/apply",
            link.endpoint.trim_end_matches('/')
        ))
        .header("content-type", "application/json")
        .header("x-primary-id", repl.node_id())
        .body(body);
    if zstd_body {
        request = request.header("content-encoding", "zstd");
    }
    if !repl.config().token.is_empty() {
        request = request.bearer_auth(&repl.config().token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("sending to {}: {e}", link.endpoint))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("reading the answer of {}: {e}", link.endpoint))?;
    if status.is_success() {
        let answer: WalApplyResponse = serde_json::from_str(&text)
            .map_err(|e| format!("unexpected answer from {}: {e}", link.endpoint))?;
        let applied = Lsn(answer.last_applied_lsn);
        if applied < last {
            return Err(format!(
                "replica answered LSN {applied} after a batch ending at {last}"
            ));
        }
        let durable = db.wal.status().durable_lsn;
        if applied > durable {
            return Err(fenced_ahead(link, &db.name, applied, durable));
        }
        let m = &repl.metrics;
        m.batches.inc();
        m.entries.inc_by(records);
        m.bytes_shipped.inc_by(body_len);
        m.bytes_uncompressed.inc_by(uncompressed);
        let shipped = m.bytes_shipped.get();
        if shipped > 0 {
            m.compression_ratio
                .set(m.bytes_uncompressed.get() as f64 / shipped as f64);
        }
        {
            let mut st = link.lock();
            st.confirmed.insert(db.name.clone(), applied);
            st.consecutive_failures = 0;
            st.last_error = None;
            st.needs_snapshot.remove(&db.name);
        }
        repl.mark_dirty();
        tracing::trace!(replica = %link.id, db = %db.name, %first, %last, "shipped");
        return Ok(Shipped::Progress);
    }
    let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
    let code = body.as_ref().map_or(ErrorCode::Unknown, |b| b.code);
    match code {
        ErrorCode::WalGap => {
            let expected = body
                .as_ref()
                .and_then(|b| b.expected_lsn)
                .ok_or_else(|| "wal_gap answer without expected_lsn".to_string())?;
            let has = Lsn(expected.saturating_sub(1));
            let durable = db.wal.status().durable_lsn;
            if has > durable {
                return Err(fenced_ahead(link, &db.name, has, durable));
            }
            tracing::info!(replica = %link.id, db = %db.name, expected, "replica continues from another LSN");
            link.lock().confirmed.insert(db.name.clone(), has);
            repl.mark_dirty();
            Ok(Shipped::Progress)
        }
        ErrorCode::StaleEpoch => {
            link.lock().fenced = true;
            tracing::error!(replica = %link.id, "the replica follows a newer primary (it was promoted, or another node was): this node's epoch is stale; not shipping to it any more");
            Err(format!(
                "fenced: {}",
                body.map_or_else(|| text.clone(), |b| b.error)
            ))
        }
        _ => Err(format!(
            "{} answered {status}: {}",
            link.endpoint,
            body.map_or_else(|| text.chars().take(200).collect(), |b| b.error)
        )),
    }
}

/// A replica that has records this primary has not: it followed another primary. Shipping to
/// it would diverge it further; stop.
fn fenced_ahead(link: &ReplicaLink, db: &str, has: Lsn, durable: Lsn) -> String {
    link.lock().fenced = true;
    let e = format!(
        "replica holds database {db} up to LSN {has}, beyond this primary's {durable}: it followed another primary; not shipping to it"
    );
    tracing::error!(replica = %link.id, "{e}");
    e
}

struct BatchMeta {
    primary_id: String,
    epoch: u64,
    database: String,
    primary_durable_lsn: u64,
    lag_bytes: u64,
    lag_ms: u64,
    primary_endpoint: Option<String>,
}

/// The request body: the seed's JSON, zstd-compressed as a whole when compression is on.
fn build_body(
    batch: &ReadBatch,
    kind: &str,
    level: i32,
    meta: BatchMeta,
) -> Result<Vec<u8>, String> {
    let compressed = if kind == "zstd" {
        zstd::bulk::compress(&batch.bytes, level).map_err(|e| format!("zstd: {e}"))?
    } else {
        batch.bytes.clone()
    };
    let req = WalApplyRequest {
        primary_id: meta.primary_id,
        compression: kind.to_string(),
        entries_crc32c: crc32c::crc32c(&compressed),
        entries_compressed: base64::engine::general_purpose::STANDARD.encode(&compressed),
        database: meta.database,
        epoch: meta.epoch,
        first_lsn: batch.first_lsn.0,
        last_lsn: batch.last_lsn.0,
        entries: batch.records,
        uncompressed_bytes: batch.bytes.len() as u64,
        primary_durable_lsn: meta.primary_durable_lsn,
        lag_bytes: meta.lag_bytes,
        lag_ms: meta.lag_ms,
        primary_endpoint: meta.primary_endpoint,
    };
    let json = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
    if kind == "zstd" {
        zstd::bulk::compress(&json, 1).map_err(|e| format!("zstd: {e}"))
    } else {
        Ok(json)
    }
}
