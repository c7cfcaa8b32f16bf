//! One flusher thread per database: runs both auto-buffers' flushes and the vector snapshots
//! off the request path, and checkpoints the WAL after each.
//!
//! Triggers: a write that trips a count or memory threshold nudges the thread (at most one
//! nudge per buffer is queued: a nudge while one is pending is dropped, so a burst of writes
//! never fills the queue and a manual flush always finds room); the thread wakes by itself when
//! a buffer's age trigger is due, and checks whether a vector snapshot is due; a manual flush
//! waits for its answer; stop flushes both buffers, snapshots the vector indexes and
//! checkpoints, so a clean restart replays nothing. (Chunks past retention are deleted by the
//! database's own sweep thread, `crate::retention`.)
//!
//! Count-triggered time-series flushes start at most every
//! `features.ts_auto_buffer.min_flush_gap_ms` (capped at half `flush_interval_ms`; a count
//! nudge within the gap is deferred to its end): under sustained ingest the count trips on
//! every write, and back-to-back flushes of a few thousand points would write tiny chunks and
//! merge them again and again (the fjall memtable then dominated the ingest profile). Memory
//! (checked before count), age, manual, persist and shutdown flushes are never delayed.
//!
//! Before a time-series flush commits chunks that claim "everything up to LSN L", it waits
//! until the WAL is durable up to L. The WAL is checkpointed at the lowest LSN both engines
//! hold durably (`Database::checkpoint_bound`): chunks for the time series, the last snapshot
//! for vectors (a vector flush only applies the buffer to the in-memory index). A storage,
//! index or checkpoint failure is treated like an fsync failure: the process stops (see the
//! WAL's failure policy); the data is still in the WAL. A checkpoint refused because the WAL
//! queue is full is simply left to the next round.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_ts::engine::FlushError;
use sluice_ts::store::StoreError;
use sluice_ts::{FlushOutcome, FlushTrigger, TsEngine};
use sluice_vector::VectorEngine;
use sluice_vector::engine::{FlushOutcome as VectorFlushOutcome, FlushTrigger as VectorTrigger};
use sluice_wal::{Wal, WalError};
use tokio::sync::oneshot;

use crate::db::Database;

const QUEUE: usize = 64;
const IDLE_WAKE: Duration = Duration::from_secs(1);

enum Request {
    Nudge(FlushTrigger),
    NudgeVectors(VectorTrigger),
    Manual(oneshot::Sender<FlushOutcome>),
    ManualVectors(oneshot::Sender<VectorFlushOutcome>),
    /// Flush both buffers, snapshot the vector indexes, checkpoint.
    Persist(oneshot::Sender<()>),
    Stop,
}

#[derive(Debug, thiserror::Error)]
pub enum FlushRequestError {
    #[error("the flusher is busy; retry")]
    Busy,
    /// The disk is full: the buffers keep their data, flushing resumes when space returns.
    #[error("the disk is full: the flush was postponed until space returns")]
    StorageFull,
    #[error("the flusher has stopped")]
    Stopped,
}

pub struct Flusher {
    tx: SyncSender<Request>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pending: Arc<Pending>,
}

/// Whether a nudge of each buffer is queued (for time series: a count nudge queued or its
/// flush deferred; a memory nudge queued).
#[derive(Default)]
struct Pending {
    ts: AtomicBool,
    ts_memory: AtomicBool,
    vectors: AtomicBool,
    /// The flusher is paused by a full disk (see [`FULL_RETRY`]).
    storage_full: AtomicBool,
}

struct Engines {
    db: String,
    ts: Arc<TsEngine>,
    vectors: Arc<VectorEngine>,
    wal: Arc<Wal>,
    pending: Arc<Pending>,
    /// The storage was full at the last try: flushes, snapshots and checkpoints wait until
    /// this instant (see [`FULL_RETRY`]).
    full_until: Mutex<Option<Instant>>,
}

/// How long the flusher waits after finding the storage full before trying again. A full disk
/// is not fatal: the buffers keep their data (a failed flush puts it back), the WAL refuses new
/// writes until it can write again, and every step resumes once space returns.
const FULL_RETRY: Duration = Duration::from_secs(1);

/// Whether `e` (or an error it was caused by) says the storage is full.
pub(crate) fn storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && sluice_wal::faults::is_storage_full(io)
        {
            return true;
        }
        if matches!(err.downcast_ref::<WalError>(), Some(WalError::StorageFull)) {
            return true;
        }
        cur = err.source();
    }
    // Libraries that flatten their causes into text still say so.
    let text = e.to_string();
    text.contains("No space left on device")
        || text.contains("Disk quota exceeded")
        || text.contains("File too large")
}

impl Flusher {
    pub fn start(
        db: &str,
        ts: Arc<TsEngine>,
        vectors: Arc<VectorEngine>,
        wal: Arc<Wal>,
    ) -> std::io::Result<Flusher> {
        let (tx, rx) = sync_channel(QUEUE);
        let pending = Arc::new(Pending::default());
        let engines = Engines {
            db: db.to_string(),
            ts,
            vectors,
            wal,
            pending: pending.clone(),
            full_until: Mutex::new(None),
        };
        let thread = std::thread::Builder::new()
            .name(format!("flush-{db}"))
            .spawn(move || engines.run(&rx))?;
        Ok(Flusher {
            tx,
            thread: Mutex::new(Some(thread)),
            pending,
        })
    }

    /// Asks for a time-series flush soon; never blocks.
    /// A count nudge is sent once until the flusher has flushed (or found nothing to flush):
    /// while a count flush waits out `min_flush_gap_ms`, writes that trip the count again do
    /// not wake the flusher (under sustained ingest every write trips it). A memory nudge is
    /// sent once until the flusher takes it.
    pub fn nudge(&self, trigger: FlushTrigger) {
        match trigger {
            FlushTrigger::Memory => {
                self.nudge_once(&self.pending.ts_memory, Request::Nudge(trigger));
            }
            _ => self.nudge_once(&self.pending.ts, Request::Nudge(trigger)),
        }
    }

    /// Asks for a vector flush soon; never blocks.
    pub fn nudge_vectors(&self, trigger: VectorTrigger) {
        self.nudge_once(&self.pending.vectors, Request::NudgeVectors(trigger));
    }

    fn nudge_once(&self, pending: &AtomicBool, request: Request) {
        if !pending.swap(true, Ordering::AcqRel) && self.tx.try_send(request).is_err() {
            pending.store(false, Ordering::Release);
        }
    }

    /// Flushes the time-series buffer now and waits for the outcome.
    pub async fn flush_now(&self) -> Result<FlushOutcome, FlushRequestError> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::Manual(reply))?;
        let outcome = rx.await.map_err(|_| FlushRequestError::Stopped)?;
        self.not_paused()?;
        Ok(outcome)
    }

    /// A request answered while a full disk paused the flusher did not do its work.
    fn not_paused(&self) -> Result<(), FlushRequestError> {
        if self.pending.storage_full.load(Ordering::Acquire) {
            return Err(FlushRequestError::StorageFull);
        }
        Ok(())
    }

    /// Flushes the vector buffer now and waits for the outcome.
    pub async fn flush_vectors_now(&self) -> Result<VectorFlushOutcome, FlushRequestError> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::ManualVectors(reply))?;
        rx.await.map_err(|_| FlushRequestError::Stopped)
    }

    /// Flushes both buffers, writes a vector snapshot and checkpoints: afterwards the engines
    /// hold durably everything logged before the call (a replica finishing a snapshot load).
    pub async fn persist_now(&self) -> Result<(), FlushRequestError> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::Persist(reply))?;
        rx.await.map_err(|_| FlushRequestError::Stopped)?;
        self.not_paused()
    }

    fn request(&self, r: Request) -> Result<(), FlushRequestError> {
        match self.tx.try_send(r) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(FlushRequestError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(FlushRequestError::Stopped),
        }
    }

    /// Runs a last flush and snapshot and joins the thread. Idempotent.
    pub fn stop(&self) {
        let _ = self.tx.send(Request::Stop);
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Engines {
    fn run(&self, rx: &Receiver<Request>) {
        // At most half the age trigger, so a deferred count flush never outlives it.
        let ab = &self.ts.config().auto_buffer;
        let gap = Duration::from_millis(ab.min_flush_gap_ms.min(ab.flush_interval_ms / 2));
        // When the last time-series flush ended, and a count flush waiting for the gap.
        let mut last_ts: Option<Instant> = None;
        let mut deferred: Option<Instant> = None;
        // Runs a time-series flush now, or defers a count-triggered one until `gap` after
        // the last (see `AutoBufferConfig::min_flush_gap_ms`).
        let ts_flush = |trigger: FlushTrigger,
                        last_ts: &mut Option<Instant>,
                        deferred: &mut Option<Instant>| {
            if trigger == FlushTrigger::Count
                && let Some(last) = *last_ts
                && last.elapsed() < gap
            {
                deferred.get_or_insert(last + gap);
                return None;
            }
            *deferred = None;
            let outcome = self.flush_ts(trigger);
            *last_ts = Some(Instant::now());
            Some(outcome)
        };
        loop {
            // A deferred count flush whose time has come runs even when messages keep the
            // wait below from timing out.
            if deferred.is_some_and(|at| Instant::now() >= at) {
                match self.ts.due() {
                    Some(trigger) => {
                        ts_flush(trigger, &mut last_ts, &mut deferred);
                    }
                    None => deferred = None,
                }
                if deferred.is_none() {
                    self.pending.ts.store(false, Ordering::Release);
                }
            }
            let due_ms = [self.ts.ms_until_age_due(), self.vectors.ms_until_age_due()]
                .into_iter()
                .flatten()
                .min();
            let mut wait = due_ms.map_or(IDLE_WAKE, |ms| {
                Duration::from_millis(ms.max(1)).min(IDLE_WAKE)
            });
            if let Some(at) = deferred {
                wait = wait.min(at.saturating_duration_since(Instant::now()));
            }
            // Storage full: nothing to try before the pause ends.
            if let Some(left) = self.pause_left() {
                wait = wait.max(left);
            }
            match rx.recv_timeout(wait) {
                Ok(Request::Nudge(trigger)) => {
                    if trigger == FlushTrigger::Memory {
                        self.pending.ts_memory.store(false, Ordering::Release);
                    }
                    ts_flush(trigger, &mut last_ts, &mut deferred);
                }
                Ok(Request::NudgeVectors(trigger)) => {
                    self.pending.vectors.store(false, Ordering::Release);
                    self.flush_vectors(trigger);
                }
                Ok(Request::Manual(reply)) => {
                    if let Some(outcome) =
                        ts_flush(FlushTrigger::Manual, &mut last_ts, &mut deferred)
                    {
                        let _ = reply.send(outcome);
                    }
                }
                Ok(Request::ManualVectors(reply)) => {
                    let _ = reply.send(self.flush_vectors(VectorTrigger::Manual));
                }
                Ok(Request::Persist(reply)) => {
                    ts_flush(FlushTrigger::Manual, &mut last_ts, &mut deferred);
                    self.flush_vectors(VectorTrigger::Manual);
                    self.snapshot();
                    self.checkpoint();
                    let _ = reply.send(());
                }
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush_ts(FlushTrigger::Shutdown);
                    self.flush_vectors(VectorTrigger::Shutdown);
                    self.snapshot();
                    self.checkpoint();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    match self.ts.due() {
                        Some(trigger) => {
                            ts_flush(trigger, &mut last_ts, &mut deferred);
                        }
                        // Nothing to flush (another flush took it): no deferred wake-up.
                        None => deferred = None,
                    }
                    if let Some(trigger) = self.vectors.due() {
                        self.flush_vectors(trigger);
                    }
                }
            }
            // A deferred count flush keeps the nudge pending (see `nudge`).
            if deferred.is_none() {
                self.pending.ts.store(false, Ordering::Release);
            }
            if self.vectors.snapshot_due() {
                self.snapshot();
                self.checkpoint();
            }
        }
    }

    /// Whether the storage was found full less than [`FULL_RETRY`] ago.
    fn paused(&self) -> bool {
        self.full_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|t| Instant::now() < t)
    }

    /// How long the pause still lasts.
    fn pause_left(&self) -> Option<Duration> {
        let until = (*self
            .full_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner))?;
        Some(until.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }

    /// Records that `what` found the storage full; everything waits [`FULL_RETRY`].
    fn pause(&self, what: &str, e: &dyn std::fmt::Display) {
        self.pending.storage_full.store(true, Ordering::Release);
        let mut until = self
            .full_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if until.is_none() {
            tracing::error!(db = %self.db, error = %e, "{what}: storage full; data stays in memory and in the WAL, retrying every second");
        }
        *until = Some(Instant::now() + FULL_RETRY);
    }

    /// Clears the pause after a step that wrote succeeded.
    fn resume(&self) {
        self.pending.storage_full.store(false, Ordering::Release);
        if self
            .full_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some()
        {
            tracing::warn!(db = %self.db, "storage has space again; flushing resumed");
        }
    }

    fn flush_ts(&self, trigger: FlushTrigger) -> FlushOutcome {
        if self.paused() {
            return FlushOutcome::default();
        }
        let started = Instant::now();
        let wal = &self.wal;
        let outcome = match self.ts.flush(trigger, |lsn| {
            wal.wait_durable(lsn).map_err(|e| e.to_string())
        }) {
            Ok(o) => o,
            // A failed sync of a committed flush is fatal whatever its cause (see StoreError).
            Err(e)
                if !matches!(e, FlushError::Store(StoreError::SyncFailed(_)))
                    && (storage_full(&e) || self.wal.storage_full()) =>
            {
                self.pause("flushing the time-series buffer", &e);
                return FlushOutcome::default();
            }
            Err(e) => fatal(
                &self.db,
                &format!("flushing the time-series buffer failed: {e}"),
            ),
        };
        if let Some(lsn) = outcome.flushed_lsn {
            self.resume();
            tracing::debug!(db = %self.db, ?trigger, points = outcome.points, lsn = %lsn, ms = started.elapsed().as_millis() as u64, "flushed time series");
            self.checkpoint();
        }
        outcome
    }

    fn flush_vectors(&self, trigger: VectorTrigger) -> VectorFlushOutcome {
        let started = Instant::now();
        let outcome = match self.vectors.flush(trigger) {
            Ok(o) => o,
            Err(e) => fatal(&self.db, &format!("applying the vector buffer failed: {e}")),
        };
        if outcome.vectors > 0 {
            tracing::debug!(db = %self.db, ?trigger, vectors = outcome.vectors, ms = started.elapsed().as_millis() as u64, "flushed vectors");
        }
        outcome
    }

    fn snapshot(&self) {
        if self.paused() {
            return;
        }
        let started = Instant::now();
        let wal = &self.wal;
        match self
            .vectors
            .snapshot(|lsn| wal.wait_durable(lsn).map_err(|e| e.to_string()))
        {
            Ok(Some(lsn)) => tracing::info!(
                db = %self.db,
                lsn = %lsn,
                ms = started.elapsed().as_millis() as u64,
                "vector snapshot written"
            ),
            Ok(None) => {}
            Err(e) if storage_full(&e) || self.wal.storage_full() => {
                self.pause("writing the vector snapshot", &e)
            }
            Err(e) => fatal(
                &self.db,
                &format!("writing the vector snapshot failed: {e}"),
            ),
        }
    }

    /// Checkpoints the WAL at what both engines hold, if that moved.
    fn checkpoint(&self) {
        if self.paused() {
            return;
        }
        let lsn = Database::checkpoint_bound(&self.ts, &self.vectors, &self.wal);
        if lsn <= self.wal.status().checkpoint_lsn {
            return;
        }
        match self.wal.checkpoint(lsn).and_then(|t| t.wait_blocking()) {
            Ok(_) => {}
            // A full queue only delays the checkpoint (and the deletion of old segments) to the
            // next round; the engines already hold the data.
            Err(WalError::Overloaded { .. }) => {
                tracing::debug!(db = %self.db, lsn = %lsn, "WAL queue full; checkpoint left to the next round");
            }
            Err(e @ WalError::StorageFull) => self.pause("checkpointing the WAL", &e),
            Err(e) => fatal(
                &self.db,
                &format!("checkpointing the WAL at {lsn} failed: {e}"),
            ),
        }
    }
}

fn fatal(db: &str, message: &str) -> ! {
    tracing::error!(
        db,
        "{message}; stopping the process so recovery starts from the WAL"
    );
    eprintln!("sluice: fatal: database {db}: {message}; aborting");
    std::process::abort();
}
