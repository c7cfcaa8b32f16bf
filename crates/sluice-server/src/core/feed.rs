//! Following a database's log from an LSN: the one loop behind SSE changefeeds, WebSocket
//! subscriptions and the replication shipper.
//!
//! A [`Feed`] owns a WAL cursor and reads only durable records, in chunks of about
//! `chunk_bytes` off the async workers (a read touches segment files). [`Feed::next`] waits for
//! more: it is woken by the node's durability notification (every WAL writer signals it after
//! an fsync) or polls every [`POLL`], so a feed never misses a record and never spins. A
//! subscriber costs a file handle and one chunk, never memory in proportion to how far behind
//! it is.
//!
//! A feed ends ([`FeedEnd`]) when the server stops, when its database is deleted or replaced by
//! a snapshot (the log it reads is closed: waiting would be for ever), when the records it
//! needs are no longer retained, or when a read fails.
//!
//! [`events`] turns records into changefeed events (`id` = LSN, an event name, JSON data): what
//! SSE streams and WebSocket subscriptions send; [`start_position`] decides where a
//! subscription starts. What a transport does when its peer
//! stops reading is the transport's: each sends with [`Feed::stall_timeout`] and cuts a peer
//! that takes nothing for that long, so ingest never waits for a subscriber.

use std::sync::Arc;
use std::time::Duration;

use sluice_wal::{Cursor, Lsn, ReadBatch, ReadError};
use tokio::sync::{Notify, watch};

use serde_json::json;
use sluice_api::ErrorCode;

use crate::core::records::Kind;
use crate::db::Database;
use crate::error::ApiError;
use crate::state::AppState;

/// How often an idle feed looks at its log even without a durability notification.
pub const POLL: Duration = Duration::from_millis(250);

/// Why a feed ended.
#[derive(Debug)]
pub enum FeedEnd {
    /// The server is shutting down.
    Stopping,
    /// The database was deleted or replaced (a snapshot): subscribe again.
    Replaced,
    /// The records from `requested` are no longer retained; `oldest` is the first that is.
    Gone { requested: Lsn, oldest: Lsn },
    /// Reading the log failed.
    Failed(String),
}

pub struct Feed {
    state: AppState,
    db: Arc<Database>,
    cursor: Cursor,
    chunk_bytes: usize,
    notify: Arc<Notify>,
    stop: watch::Receiver<bool>,
}

impl Feed {
    /// A feed of `db` whose first record is `start`, read in chunks of about `chunk_bytes`.
    pub fn new(state: &AppState, db: Arc<Database>, start: Lsn, chunk_bytes: usize) -> Feed {
        let repl = state.replication();
        Feed {
            notify: repl.durable.clone(),
            stop: repl.stopping(),
            state: state.clone(),
            db,
            cursor: Cursor::at(start),
            chunk_bytes,
        }
    }

    /// Ends the feed (`FeedEnd::Stopping`) when the server starts draining instead of when
    /// replication stops: for subscribers' streams, which must not hold the drain.
    pub fn until_draining(mut self) -> Feed {
        self.stop = self.state.draining();
        self
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// The LSN of the next record the feed returns.
    pub fn next_lsn(&self) -> Lsn {
        self.cursor.next_lsn()
    }

    /// Moves the feed so that its next record is `lsn` (a no-op if it is already there).
    pub fn seek(&mut self, lsn: Lsn) {
        if self.cursor.next_lsn() != lsn {
            self.cursor = Cursor::at(lsn);
        }
    }

    /// How long a transport waits for a peer to take an event before cutting it.
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.state.config().replication.changefeed_stall_timeout_ms)
    }

    /// The durable records after the cursor, without waiting: an empty batch when there are
    /// none yet.
    pub async fn read_now(&mut self) -> Result<ReadBatch, FeedEnd> {
        if *self.stop.borrow() {
            return Err(FeedEnd::Stopping);
        }
        if !self.still_current() {
            return Err(FeedEnd::Replaced);
        }
        let wal = self.db.wal.clone();
        let mut cursor = self.cursor.clone();
        let max = self.chunk_bytes;
        let (read, cursor) =
            tokio::task::spawn_blocking(move || (wal.read(&mut cursor, max), cursor))
                .await
                .map_err(|e| FeedEnd::Failed(format!("the read task failed: {e}")))?;
        // Only a completed read moves the cursor: a caller that drops this future (it lost a
        // `select!`) reads the same records next time.
        self.cursor = cursor;
        match read {
            Ok(batch) => Ok(batch),
            Err(ReadError::Gone { requested, oldest }) => Err(FeedEnd::Gone { requested, oldest }),
            Err(e) => Err(FeedEnd::Failed(e.to_string())),
        }
    }

    /// The next records, waiting up to `idle` for some to become durable: an empty batch when
    /// none did (callers send keep-alives or check their peer, then call again).
    pub async fn next(&mut self, idle: Duration) -> Result<ReadBatch, FeedEnd> {
        let notify = self.notify.clone();
        let notified = notify.notified();
        tokio::pin!(notified);
        // Registered before the read: a record made durable during it still wakes us.
        notified.as_mut().enable();
        let batch = self.read_now().await?;
        if !batch.is_empty() {
            return Ok(batch);
        }
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(idle.min(POLL)) => {}
            _ = stop.wait_for(|s| *s) => return Err(FeedEnd::Stopping),
        }
        self.read_now().await
    }

    /// Waits until a log becomes durable further, `idle` (at most [`POLL`]) passes, or the
    /// server stops (`Err`). Holds nothing: safe to drop when raced against a peer. A
    /// notification that came before the call is not seen; the poll bounds that delay.
    pub async fn wait(&self, idle: Duration) -> Result<(), FeedEnd> {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = self.notify.notified() => Ok(()),
            _ = tokio::time::sleep(idle.min(POLL)) => Ok(()),
            _ = stop.wait_for(|s| *s) => Err(FeedEnd::Stopping),
        }
    }

    /// Whether the feed's database is still the one its name opens.
    fn still_current(&self) -> bool {
        self.state
            .databases()
            .and_then(|dbs| dbs.get(&self.db.name))
            .is_some_and(|d| Arc::ptr_eq(&d, &self.db))
    }
}

/// The first LSN a subscription sends: after `after` (the last LSN the subscriber has), at
/// the oldest retained record for `0`, or at the next record written when `None`. A position
/// whose records are gone is refused with 410 `lsn_gone`.
pub fn start_position(db: &Database, after: Option<u64>) -> Result<Lsn, ApiError> {
    let oldest = db
        .wal
        .oldest_readable_lsn()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let start = match after {
        None => db.wal.status().durable_lsn.next(),
        Some(0) => oldest.max(Lsn(1)),
        Some(l) => Lsn(l.saturating_add(1)),
    };
    if start < oldest && start <= db.wal.status().durable_lsn {
        return Err(gone(start, oldest));
    }
    Ok(start)
}

fn gone(start: Lsn, oldest: Lsn) -> ApiError {
    ApiError::new(
        ErrorCode::LsnGone,
        format!(
            "changes from LSN {start} are no longer retained; the oldest is {oldest} (start over from a fresh read of the data)"
        ),
    )
}

/// The changefeed events of the records in `bytes` (records as the WAL reader returns them),
/// one record at a time: `(lsn, event name, data as JSON text)`. Shared by the SSE stream and
/// WebSocket subscriptions, which send what they encoded every [`SEND_BYTES`], so a
/// subscriber holds about that much plus one record's events, never a whole read's.
pub fn events(bytes: &[u8]) -> impl Iterator<Item = (u64, &'static str, String)> + '_ {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let r = sluice_wal::record::decode(rest).ok()?;
        rest = &rest[r.encoded_len()..];
        Some(event_of(r))
    })
}

/// Encoded events are sent once they reach about this size.
pub const SEND_BYTES: usize = 1 << 20;

/// A point of a `points` event, serialized from the record's series without copying it.
#[derive(serde::Serialize)]
struct PointEvent<'a> {
    metric: &'a str,
    entity: &'a str,
    timestamp_ms: i64,
    value: f64,
    tags: Tags<'a>,
}

/// A series' sorted tags as a JSON object.
struct Tags<'a>(&'a [(String, String)]);

impl serde::Serialize for Tags<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

fn event_of(r: sluice_wal::RecordRef<'_>) -> (u64, &'static str, String) {
    let lsn = r.lsn.0;
    let (event, data) = match Kind::of(r.kind) {
        Some(Kind::Points | Kind::SeriesPoints) => {
            match sluice_ts::record::decode_any(r.kind, r.payload) {
                Ok(batch) => {
                    #[derive(serde::Serialize)]
                    struct PointsEvent<'a> {
                        lsn: u64,
                        points: Vec<PointEvent<'a>>,
                    }
                    let points = batch
                        .points()
                        .map(|(k, t, v)| PointEvent {
                            metric: &k.metric,
                            entity: &k.entity,
                            timestamp_ms: t,
                            value: v,
                            tags: Tags(&k.tags),
                        })
                        .collect();
                    let text =
                        serde_json::to_string(&PointsEvent { lsn, points }).unwrap_or_default();
                    return (lsn, "points", text);
                }
                Err(e) => (
                    "error",
                    json!({"lsn": lsn, "code": "undecodable", "error": e.to_string()}),
                ),
            }
        }
        Some(Kind::TsDelete) => match sluice_ts::record::decode_delete(r.payload) {
            Ok(q) => (
                "delete",
                json!({
                    "lsn": lsn,
                    "metric": q.metric,
                    "entity": q.entity,
                    "tags": q.tags.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                    "matchers": q.matchers.iter().map(|m| json!({
                        "tag": m.tag,
                        "op": match m.op {
                            sluice_ts::query::MatchOp::Eq => "=",
                            sluice_ts::query::MatchOp::Ne => "!=",
                            sluice_ts::query::MatchOp::Re => "=~",
                            sluice_ts::query::MatchOp::NotRe => "!~",
                        },
                        "value": m.value,
                    })).collect::<Vec<_>>(),
                    "from_ms": q.from_ms,
                    "to_ms": q.to_ms,
                }),
            ),
            Err(e) => (
                "error",
                json!({"lsn": lsn, "code": "undecodable", "error": e.to_string()}),
            ),
        },
        Some(Kind::VectorOps) => match sluice_vector::record::decode_ops(r.payload) {
            Ok((collection, _, ops)) => {
                use sluice_vector::record::Op;
                let ops: Vec<_> = ops
                    .into_iter()
                    .map(|op| match op {
                        Op::Add(e) => json!({"op": "add", "pk": e.pk, "vector": e.vector, "metadata": e.metadata}),
                        Op::Update(e) => json!({"op": "update", "pk": e.pk, "vector": e.vector, "metadata": e.metadata}),
                        Op::Remove { pk } => json!({"op": "remove", "pk": pk}),
                        Op::Expire { pk, at_ms } => json!({"op": "expire", "pk": pk, "at_ms": at_ms}),
                    })
                    .collect();
                (
                    "vectors",
                    json!({"lsn": lsn, "collection": collection, "ops": ops}),
                )
            }
            Err(e) => (
                "error",
                json!({"lsn": lsn, "code": "undecodable", "error": e.to_string()}),
            ),
        },
        Some(Kind::Collection) => match sluice_vector::record::decode_collection(r.payload) {
            Ok(change) => ("collection", json!({"lsn": lsn, "change": change})),
            Err(e) => (
                "error",
                json!({"lsn": lsn, "code": "undecodable", "error": e.to_string()}),
            ),
        },
        None => ("unknown", json!({"lsn": lsn, "kind": r.kind.0})),
    };
    (lsn, event, data.to_string())
}
