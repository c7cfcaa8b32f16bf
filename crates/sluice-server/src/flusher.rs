//! One flusher thread per database: runs the TSAutoBuffer's flushes off the request path and
//! checkpoints the WAL after each.
//!
//! Triggers: a write that trips the count or memory threshold nudges the thread (a bounded,
//! coalescing channel: a nudge while one is pending is dropped); the thread wakes by itself when
//! the head's age trigger is due; a manual flush waits for its answer; stop runs a last flush.
//! Every hour (and at start) it also deletes chunks past retention.
//!
//! Before a flush commits chunks that claim "everything up to LSN L", it waits until the WAL
//! is durable up to L. A storage or checkpoint failure during a flush is treated like an fsync
//! failure: the process stops (see the WAL's failure policy); the points are still in the WAL.
//! A checkpoint refused because the WAL queue is full is simply left to the next flush.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_ts::{FlushOutcome, FlushTrigger, TsEngine};
use sluice_wal::{Wal, WalError};
use tokio::sync::oneshot;

const QUEUE: usize = 64;
const IDLE_WAKE: Duration = Duration::from_secs(1);
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

enum Request {
    Nudge(FlushTrigger),
    Manual(oneshot::Sender<FlushOutcome>),
    Stop,
}

#[derive(Debug, thiserror::Error)]
pub enum FlushRequestError {
    #[error("the flusher is busy; retry")]
    Busy,
    #[error("the flusher has stopped")]
    Stopped,
}

pub struct Flusher {
    tx: SyncSender<Request>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    pub fn start(db: &str, ts: Arc<TsEngine>, wal: Arc<Wal>) -> std::io::Result<Flusher> {
        let (tx, rx) = sync_channel(QUEUE);
        let name = db.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("flush-{db}"))
            .spawn(move || run(&name, &ts, &wal, &rx))?;
        Ok(Flusher {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Asks for a flush soon; never blocks.
    pub fn nudge(&self, trigger: FlushTrigger) {
        let _ = self.tx.try_send(Request::Nudge(trigger));
    }

    /// Flushes now and waits for the outcome.
    pub async fn flush_now(&self) -> Result<FlushOutcome, FlushRequestError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Request::Manual(reply)) {
            Ok(()) => rx.await.map_err(|_| FlushRequestError::Stopped),
            Err(TrySendError::Full(_)) => Err(FlushRequestError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(FlushRequestError::Stopped),
        }
    }

    /// Runs a last flush and joins the thread. Idempotent.
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

fn run(db: &str, ts: &TsEngine, wal: &Wal, rx: &Receiver<Request>) {
    let mut last_retention: Option<Instant> = None;
    loop {
        if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
            match ts.enforce_retention() {
                Ok(0) => {}
                Ok(n) => tracing::info!(db, chunks = n, "deleted chunks past retention"),
                Err(e) => fatal(db, &format!("retention sweep failed: {e}")),
            }
            last_retention = Some(Instant::now());
        }
        let wait = ts.ms_until_age_due().map_or(IDLE_WAKE, |ms| {
            Duration::from_millis(ms.max(1)).min(IDLE_WAKE)
        });
        match rx.recv_timeout(wait) {
            Ok(Request::Nudge(trigger)) => {
                flush(db, ts, wal, trigger);
            }
            Ok(Request::Manual(reply)) => {
                let _ = reply.send(flush(db, ts, wal, FlushTrigger::Manual));
            }
            Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => {
                flush(db, ts, wal, FlushTrigger::Shutdown);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(trigger) = ts.due() {
                    flush(db, ts, wal, trigger);
                }
            }
        }
    }
}

fn flush(db: &str, ts: &TsEngine, wal: &Wal, trigger: FlushTrigger) -> FlushOutcome {
    let started = Instant::now();
    let outcome = match ts.flush(trigger, |lsn| {
        wal.wait_durable(lsn).map_err(|e| e.to_string())
    }) {
        Ok(o) => o,
        Err(e) => fatal(db, &format!("flushing the time-series buffer failed: {e}")),
    };
    if let Some(lsn) = outcome.flushed_lsn {
        match wal.checkpoint(lsn).and_then(|t| t.wait_blocking()) {
            Ok(_) => {}
            // A full queue only delays the checkpoint (and the deletion of old segments) to the
            // next flush; the chunks already hold the data.
            Err(WalError::Overloaded { .. }) => {
                tracing::debug!(db, lsn = %lsn, "WAL queue full; checkpoint left to the next flush");
            }
            Err(e) => fatal(db, &format!("checkpointing the WAL at {lsn} failed: {e}")),
        }
        tracing::debug!(db, ?trigger, points = outcome.points, lsn = %lsn, ms = started.elapsed().as_millis() as u64, "flushed");
    }
    outcome
}

fn fatal(db: &str, message: &str) -> ! {
    tracing::error!(
        db,
        "{message}; stopping the process so recovery starts from the WAL"
    );
    eprintln!("sluice: fatal: database {db}: {message}; aborting");
    std::process::abort();
}
