//! The background sweep of one database's time series, on a thread of its own (not the
//! flusher's, so a sweep never delays a flush or a checkpoint by more than one step).
//!
//! At start and then every `ts.retention_sweep_interval_ms`, the thread walks the series in
//! steps of [`STEP_SERIES`] (`TsEngine::sweep`, each step under the engine's flush lock): a step
//! reads those series' chunk keys and headers with one range scan, deletes the chunks whose
//! newest point is past that series' retention (the database's, or a per-metric rule's), and
//! merges stranded runs of small chunks (cold compaction), and rolls points past a downsampling
//! rule's age up into buckets (`sluice_ts::rollup`), in one synced batch. Queries hide
//! expired points at once, whatever the sweep has reached; the sweep frees the space and keeps
//! reads from fanning out over many small chunks. A failed step is logged and retried at the
//! next sweep (a step is idempotent; a batch whose sync failed is re-checked next time).

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use sluice_ts::TsEngine;

/// Series per sweep step (the flush lock is held for one step).
pub const STEP_SERIES: usize = 1024;

pub struct Sweeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sweeper {
    pub fn start(db: &str, ts: Arc<TsEngine>) -> std::io::Result<Sweeper> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let every = Duration::from_millis(ts.config().retention_sweep_interval_ms.max(10));
        let (db, flag) = (db.to_string(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("retention-{db}"))
            .spawn(move || {
                loop {
                    sweep(&db, &ts, &flag);
                    let (lock, cv) = &*flag;
                    let stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    let (stopped, _) = cv
                        .wait_timeout_while(stopped, every, |s| !*s)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *stopped {
                        return;
                    }
                }
            })?;
        Ok(Sweeper {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread (between steps) and waits for it.
    pub fn stop(&self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
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

fn sweep(db: &str, ts: &TsEngine, stop: &(Mutex<bool>, Condvar)) {
    let mut next = Some(0);
    let (mut expired, mut merged, mut written, mut rolled, mut blocks) = (0, 0, 0, 0, 0);
    while let Some(first) = next {
        if *stop.0.lock().unwrap_or_else(PoisonError::into_inner) {
            return;
        }
        match ts.sweep(first, STEP_SERIES) {
            Ok(step) => {
                tracing::debug!(
                    db,
                    first,
                    rolled = step.rolled,
                    expired = step.expired,
                    "sweep step committed"
                );
                next = step.next;
                expired += step.expired;
                merged += step.merged;
                written += step.written;
                rolled += step.rolled;
                blocks += step.rollup_blocks;
            }
            Err(e) => {
                tracing::warn!(db, error = %e, "a sweep step failed; retried at the next sweep");
                break;
            }
        }
    }
    if expired > 0 {
        tracing::info!(db, chunks = expired, "deleted chunks past retention");
    }
    if merged > 0 {
        tracing::info!(db, merged, written, "merged stranded small chunks");
    }
    if rolled > 0 || blocks > 0 {
        tracing::info!(db, chunks = rolled, blocks, "downsampled old points");
    }
    tracing::debug!(db, "sweep finished");
}
