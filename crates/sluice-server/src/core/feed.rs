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
//! needs are no longer retained, or when a read fails. What a transport does when its peer
//! stops reading is the transport's: each sends with [`Feed::stall_timeout`] and cuts a peer
//! that takes nothing for that long, so ingest never waits for a subscriber.

use std::sync::Arc;
use std::time::Duration;

use sluice_wal::{Cursor, Lsn, ReadBatch, ReadError};
use tokio::sync::{Notify, watch};

use crate::db::Database;
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

    /// Whether the feed's database is still the one its name opens.
    fn still_current(&self) -> bool {
        self.state
            .databases()
            .and_then(|dbs| dbs.get(&self.db.name))
            .is_some_and(|d| Arc::ptr_eq(&d, &self.db))
    }
}
