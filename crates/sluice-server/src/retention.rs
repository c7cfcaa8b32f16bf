//! The retention sweep of one database, on a thread of its own (off the flusher, so a sweep
//! never delays a flush or a checkpoint).
//!
//! At start and then every `ts.retention_sweep_interval_ms`, when the database or one of its
//! per-metric rules has a retention, the thread walks the series in steps of [`STEP_SERIES`]
//! (`TsEngine::sweep_retention`): each step reads those series' chunk keys and headers with one
//! range scan and deletes, in one synced batch, the chunks whose newest point is past that
//! series' retention. Queries hide expired points at once, whatever the sweep has reached; the
//! sweep only frees the space. A failed step is logged and retried at the next sweep (deleting
//! expired chunks twice, or a batch whose sync failed, is harmless).

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use sluice_ts::TsEngine;

/// Series per sweep step.
pub const STEP_SERIES: usize = 4096;

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
                    if ts.has_retention() {
                        sweep(&db, &ts, &flag);
                    }
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
    let mut deleted = 0;
    while let Some(first) = next {
        if *stop.0.lock().unwrap_or_else(PoisonError::into_inner) {
            return;
        }
        match ts.sweep_retention(first, STEP_SERIES) {
            Ok((n, d)) => {
                next = n;
                deleted += d;
            }
            Err(e) => {
                tracing::warn!(db, error = %e, "a retention sweep step failed; retried at the next sweep");
                break;
            }
        }
    }
    if deleted > 0 {
        tracing::info!(db, chunks = deleted, "deleted chunks past retention");
    }
}
