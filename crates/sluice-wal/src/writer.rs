//! The log handle and its group-commit writer thread.
//!
//! Appenders take a short lock that assigns the next LSN and enqueues the record on a bounded
//! queue, so queue order is LSN order and a full queue fails at once. One writer thread per log
//! drains whatever has queued (up to `max_batch_records` / `max_batch_bytes`), encodes it into
//! one buffer, issues one `write`, wakes the `wal`-level waiters, and — if any record of the
//! batch asked for `fsync`, a checkpoint or sync is pending, or unsynced data is older than
//! `flush_interval_ms` — one `fdatasync`, then wakes the `fsync`-level waiters. While it syncs,
//! new appends queue up and form the next batch: that is the whole of group commit.
//!
//! Waking the writer costs two context switches, more than a small buffered write costs the
//! server. So an append wakes it only when somebody waits on it (a `wal` or `fsync` append, a
//! sync, a checkpoint), when a batch is full, or when the writer sleeps with nothing due (the
//! first record after a quiet spell). Records acknowledged at `buffer` otherwise wait until the
//! oldest of them has queued for `flush_interval_ms`, then are written and synced together:
//! they are durable within about `flush_interval_ms` of their acknowledgement as before, and a
//! stream of buffered writes costs the writer one wake-up per interval, not one per write.
//!
//! A full disk (`ENOSPC`, `EDQUOT`, or `EFBIG` past the file size limit) is a condition that
//! passes, not a failing device: the writer cuts the segment back to its last whole batch,
//! syncs what earlier batches wrote (so their `buffer`/`wal` acknowledgements keep their
//! `flush_interval_ms` promise), refuses new appends with [`WalError::StorageFull`] (the server
//! answers 507), and retries the batch in hand (10 ms, doubling to 1 s) until it is written; its
//! records keep their LSNs and their waiters wait. [`Wal::wait_durable`] answers `StorageFull`
//! for records not yet written, so nobody waits on a stalled log forever. A sync marker or a
//! segment rotation that finds the disk full is skipped (rotation is tried again after a
//! second; the active segment grows past its size meanwhile); a checkpoint that does answers
//! its caller `StorageFull` and is tried again by the next one. Closing while the disk stays
//! full for [`CLOSE_GRACE`]: what was written is synced, what was not is given up (waiters hear
//! `StorageFull`, `close` returns it); the process is not aborted. Every other write failure,
//! and every fdatasync failure, poisons the log and stops the process: after a failed
//! fdatasync the kernel may have dropped the dirty pages, so nothing it covered can be trusted.
//! All file I/O goes through [`crate::faults`], where tests inject these failures.
//!
//! Invariants:
//! - `durable_lsn <= written_lsn <= next LSN - 1`; every waiter is woken only once its level holds.
//! - While the storage is full, no append is accepted and no LSN is skipped: the stalled batch
//!   is written with the LSNs it had.
//! - Only the writer thread touches segment files after open.
//! - A segment is fdatasync'd before the next one is created.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{OpenError, WalError, io_ctx};
use crate::metrics::WalMetrics;
use crate::record::{self, Lsn, MAX_PAYLOAD_BYTES, RecordKind, RecordRef};
use crate::segment::{self, SegmentInfo};
use crate::{checkpoint, recovery};

/// How durable a write must be before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AckLevel {
    /// Accepted into the queue; written and fsync'd within about `flush_interval_ms` (see the
    /// module doc: buffered appends do not wake the writer one by one).
    Buffer,
    /// Written to the segment file: survives a process crash, not a power cut.
    Wal,
    /// fdatasync'd: survives a power cut.
    Fsync,
}

/// Tunables of one log. Every field has a production default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_size_bytes: u64,
    /// Records that may wait for the writer; beyond it appends fail with `Overloaded`.
    pub queue_capacity: usize,
    /// Payload bytes that may wait for the writer; beyond it appends fail with `Overloaded`
    /// (a record is always accepted into an empty queue, whatever its size).
    pub queue_capacity_bytes: usize,
    /// Most records written by one `write` call.
    pub max_batch_records: usize,
    /// Most payload bytes gathered into one batch (a single larger record still goes alone).
    pub max_batch_bytes: usize,
    /// Longest time data acknowledged at `buffer` or `wal` stays written but not fsync'd.
    pub flush_interval_ms: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_size_bytes: 64 * 1024 * 1024,
            queue_capacity: 65_536,
            queue_capacity_bytes: 256 * 1024 * 1024,
            max_batch_records: 8_192,
            max_batch_bytes: 8 * 1024 * 1024,
            flush_interval_ms: 10,
        }
    }
}

/// Called once when a write or fdatasync fails. The default aborts the process.
pub type FatalHandler = Arc<dyn Fn(&WalError) + Send + Sync>;

/// Called (from the writer thread) each time the durable LSN advances; must not block.
pub type DurableHook = Arc<dyn Fn(Lsn) + Send + Sync>;

/// Everything [`Wal::open`] takes besides the directory.
#[derive(Clone, Default)]
pub struct WalOptions {
    pub config: WalConfig,
    pub metrics: WalMetrics,
    pub on_fatal: Option<FatalHandler>,
    /// Keep every segment holding this LSN or later, checkpointed or not (replicas and
    /// changefeeds still need them). See [`Wal::set_retain_from`].
    pub retain_from: Option<Lsn>,
    pub on_durable: Option<DurableHook>,
}

/// When the writer wrote a batch: lets readers tell how far behind they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteMark {
    /// The last LSN of the batch.
    pub lsn: Lsn,
    /// Record bytes written since the log was opened, up to and including the batch.
    pub bytes_end: u64,
    /// Wall-clock milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// How many write marks are kept. Marks closer than 1 ms are merged; when the list is full,
/// its older half is thinned (pairs of neighbours merged into one spanning both), so the marks
/// always reach back to when the log was opened: recent positions at 1 ms, older ones coarser.
/// A lag measured from a merged mark counts its whole span (an over-estimate by at most one
/// span, never an under-estimate).
const MARKS: usize = 4096;

/// A snapshot of the log's positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalStatus {
    /// The last LSN handed out to an appender.
    pub last_assigned_lsn: Lsn,
    /// The last LSN written to the segment file.
    pub written_lsn: Lsn,
    /// The last LSN known to be fdatasync'd.
    pub durable_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    /// Bytes of torn tail cut when the log was opened.
    pub truncated_bytes_at_open: u64,
}

/// The write-ahead log of one database.
pub struct Wal {
    pub(crate) shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    config: WalConfig,
    /// The sender and the next LSN to assign, under one lock so queue order is LSN order.
    /// `None` once the log is closed.
    submit: Mutex<Option<Submitter>>,
    written_lsn: AtomicU64,
    pub(crate) durable_lsn: AtomicU64,
    checkpoint_lsn: AtomicU64,
    /// Segments holding this LSN or later are kept (`u64::MAX`: none retained).
    retain_from: AtomicU64,
    on_durable: Option<DurableHook>,
    marks: Mutex<std::collections::VecDeque<WriteMark>>,
    /// Payload bytes enqueued and not yet drained by the writer.
    queued_bytes: AtomicUsize,
    /// Appends and control requests on their way to the writer.
    queue: Mutex<Queue>,
    /// Wakes the writer (see the module doc for when).
    wake_writer: Condvar,
    /// Signalled whenever `durable_lsn` advances or the writer stops.
    durable_changed: Condvar,
    durable_mutex: Mutex<()>,
    writer_stopped: AtomicBool,
    poisoned: AtomicBool,
    /// The last write found the storage full; appends are refused until a write succeeds.
    storage_full: AtomicBool,
    /// The log closed with the storage full and gave up what it could not write.
    closed_full: AtomicBool,
    truncated_bytes_at_open: u64,
    metrics: WalMetrics,
    on_fatal: FatalHandler,
    /// Held for the life of the log: one process per directory.
    _lock: File,
    /// Lets unit tests hold the writer between batches.
    #[cfg(test)]
    test_gate: Mutex<()>,
}

struct Submitter {
    next_lsn: u64,
}

/// The queue between appenders and the writer thread.
#[derive(Default)]
struct Queue {
    msgs: VecDeque<Msg>,
    /// Messages in `msgs` somebody waits on (`wal`/`fsync` appends, syncs, checkpoints).
    urgent: usize,
    /// No later than when the oldest message in `msgs` was queued.
    oldest: Option<Instant>,
    /// The writer sleeps with nothing due: the next message must wake it.
    writer_parked: bool,
    /// The log is closing: no message will come; the writer drains and stops.
    closed: bool,
}

/// What the writer does next.
enum Next {
    /// Write a batch starting with this message; its records queued no later than the instant.
    Batch(Msg, Instant),
    /// Unsynced data reached `flush_interval_ms`: sync it.
    SyncDue,
    /// The log is closed and the queue empty.
    Closed,
}

impl Msg {
    /// Whether somebody waits on the writer for this message.
    fn urgent(&self) -> bool {
        match self {
            Msg::Append(p) => p.done.is_some(),
            Msg::Sync(_) | Msg::Checkpoint(..) => true,
        }
    }
}

enum Msg {
    Append(Pending),
    /// Make everything written so far durable, then answer.
    Sync(oneshot::Sender<Result<(), WalError>>),
    /// Make everything up to `lsn` durable, record the checkpoint, delete covered segments.
    Checkpoint(Lsn, oneshot::Sender<Result<(), WalError>>),
}

struct Pending {
    lsn: Lsn,
    kind: RecordKind,
    payload: Vec<u8>,
    ack: AckLevel,
    done: Option<oneshot::Sender<Result<(), WalError>>>,
}

/// An accepted append (or control request) whose acknowledgement can be awaited.
#[must_use = "an append is acknowledged only once the ticket is waited on"]
pub struct Ticket {
    lsn: Lsn,
    done: Option<oneshot::Receiver<Result<(), WalError>>>,
    shared: Arc<Shared>,
}

/// The ticket of an append.
pub type Appended = Ticket;

impl Ticket {
    /// The LSN assigned to the record (for control requests: the LSN they cover).
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Waits until the requested level holds.
    pub async fn wait(self) -> Result<Lsn, WalError> {
        match self.done {
            None => Ok(self.lsn),
            Some(rx) => match rx.await {
                Ok(result) => result.map(|()| self.lsn),
                Err(_) => Err(self.shared.stopped_error()),
            },
        }
    }

    /// Blocking form of [`Ticket::wait`], for threads outside an async runtime.
    pub fn wait_blocking(self) -> Result<Lsn, WalError> {
        match self.done {
            None => Ok(self.lsn),
            Some(rx) => match rx.blocking_recv() {
                Ok(result) => result.map(|()| self.lsn),
                Err(_) => Err(self.shared.stopped_error()),
            },
        }
    }
}

const LOCK_FILE: &str = "LOCK";

impl Wal {
    /// Opens (or creates) the log in `dir`: locks it, verifies and repairs it (see
    /// `recovery.rs`), calls `replay` for every record after the checkpoint in LSN order,
    /// and starts the writer thread.
    pub fn open(
        dir: &Path,
        options: WalOptions,
        mut replay: impl FnMut(RecordRef<'_>) -> Result<(), String>,
    ) -> Result<Wal, OpenError> {
        std::fs::create_dir_all(dir)
            .map_err(io_ctx::<OpenError>(format!("creating {}", dir.display())))?;
        let lock = lock_dir(dir)?;
        let recovered = recovery::recover(dir, &mut replay)?;
        let WalOptions {
            config,
            metrics,
            on_fatal,
            retain_from,
            on_durable,
        } = options;

        let mut segments = recovered.segments;
        let (file, seg_len) = match segments.last() {
            Some(last) if !recovered.ends_below_checkpoint => {
                let mut f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&last.path)
                    .map_err(io_ctx::<OpenError>(format!(
                        "opening {}",
                        last.path.display()
                    )))?;
                f.seek(SeekFrom::Start(recovered.last_segment_len))
                    .map_err(io_ctx::<OpenError>(format!(
                        "seeking {}",
                        last.path.display()
                    )))?;
                // What survived a process crash may sit only in the page cache; make it durable
                // before new records claim it as their sync point.
                f.sync_data().map_err(io_ctx::<OpenError>(format!(
                    "syncing {}",
                    last.path.display()
                )))?;
                segment::sync_dir(dir).map_err(OpenError::from)?;
                (f, recovered.last_segment_len)
            }
            _ => {
                let (f, info) =
                    segment::create(dir, recovered.last_lsn.next()).map_err(OpenError::from)?;
                segments.push(info);
                (f, segment::HEADER_BYTES as u64)
            }
        };

        let last = recovered.last_lsn;
        metrics.truncated_bytes.inc_by(recovered.truncated_bytes);
        metrics.last_lsn.set(last.0 as i64);
        metrics
            .checkpoint_lsn
            .set(recovered.checkpoint_lsn.0 as i64);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            submit: Mutex::new(Some(Submitter {
                next_lsn: last.0 + 1,
            })),
            written_lsn: AtomicU64::new(last.0),
            durable_lsn: AtomicU64::new(last.0),
            checkpoint_lsn: AtomicU64::new(recovered.checkpoint_lsn.0),
            retain_from: AtomicU64::new(retain_from.map_or(u64::MAX, |l| l.0)),
            on_durable,
            marks: Mutex::new(std::collections::VecDeque::new()),
            queued_bytes: AtomicUsize::new(0),
            queue: Mutex::new(Queue::default()),
            wake_writer: Condvar::new(),
            durable_changed: Condvar::new(),
            durable_mutex: Mutex::new(()),
            writer_stopped: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            storage_full: AtomicBool::new(false),
            closed_full: AtomicBool::new(false),
            truncated_bytes_at_open: recovered.truncated_bytes,
            metrics,
            on_fatal: on_fatal.unwrap_or_else(|| Arc::new(abort_on_fatal)),
            _lock: lock,
            #[cfg(test)]
            test_gate: Mutex::new(()),
        });

        let mut writer = Writer {
            shared: shared.clone(),
            rotate_after: None,
            file,
            seg_len,
            segments,
            written: last,
            durable: last,
            unsynced_since: None,
            last_marker: None,
            buf: Vec::new(),
        };
        // Segments wholly below a checkpoint survive a crash between the checkpoint and their
        // deletion; finish the job now.
        writer.delete_covered_segments(recovered.checkpoint_lsn);
        let watcher = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wal-writer".to_string())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(move || writer.run());
                if std::panic::catch_unwind(run).is_err() {
                    // A bug, but the same rule as an I/O failure: stop, recover from disk.
                    watcher.poisoned.store(true, Ordering::Release);
                    (watcher.on_fatal)(&WalError::Poisoned);
                    watcher.abandon_queue();
                }
                watcher.writer_stopped.store(true, Ordering::Release);
                watcher.notify_durable();
            })
            .map_err(io_ctx::<OpenError>("spawning the WAL writer thread"))?;
        Ok(Wal {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Enqueues a record. Fails at once with [`WalError::Overloaded`] when the queue is full.
    /// The record has its LSN on return; wait on the ticket for the `ack` level.
    pub fn append(
        &self,
        kind: RecordKind,
        payload: Vec<u8>,
        ack: AckLevel,
    ) -> Result<Ticket, WalError> {
        self.append_checked(None, kind, payload, ack)
    }

    fn append_checked(
        &self,
        at: Option<Lsn>,
        kind: RecordKind,
        payload: Vec<u8>,
        ack: AckLevel,
    ) -> Result<Ticket, WalError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(WalError::RecordTooLarge {
                size: payload.len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }
        if kind == record::SYNC_MARKER {
            return Err(WalError::ReservedKind);
        }
        let (done_tx, done_rx) = match ack {
            AckLevel::Buffer => (None, None),
            AckLevel::Wal | AckLevel::Fsync => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
        };
        let mut guard = self.shared.lock_submit()?;
        let Some(sub) = guard.as_mut() else {
            return Err(self.shared.stopped_error());
        };
        if self.shared.storage_full.load(Ordering::Acquire) {
            return Err(WalError::StorageFull);
        }
        if let Some(at) = at
            && at.0 != sub.next_lsn
        {
            return Err(WalError::OutOfSequence {
                requested: at,
                expected: Lsn(sub.next_lsn),
            });
        }
        let size = payload.len();
        let queued = self.shared.queued_bytes.load(Ordering::Acquire);
        if queued > 0 && queued + size > self.shared.config.queue_capacity_bytes {
            self.shared.metrics.overloaded.inc();
            return Err(WalError::Overloaded {
                queue_capacity: self.shared.config.queue_capacity,
            });
        }
        let lsn = Lsn(sub.next_lsn);
        let msg = Msg::Append(Pending {
            lsn,
            kind,
            payload,
            ack,
            done: done_tx,
        });
        self.shared.send(msg, size)?;
        sub.next_lsn += 1;
        drop(guard);
        Ok(Ticket {
            lsn,
            done: done_rx,
            shared: self.shared.clone(),
        })
    }

    /// Enqueues a record that must get LSN `lsn` (a replica keeping its primary's LSNs). Fails
    /// with [`WalError::OutOfSequence`], enqueuing nothing, if the next LSN is another.
    pub fn append_at(
        &self,
        lsn: Lsn,
        kind: RecordKind,
        payload: Vec<u8>,
        ack: AckLevel,
    ) -> Result<Ticket, WalError> {
        self.append_checked(Some(lsn), kind, payload, ack)
    }

    /// Keeps every segment holding `lsn` or later even once checkpointed (`None`: keep only
    /// what the checkpoint needs). Lowering it cannot bring back deleted segments; raising it
    /// lets the next checkpoint delete more.
    pub fn set_retain_from(&self, lsn: Option<Lsn>) {
        self.shared
            .retain_from
            .store(lsn.map_or(u64::MAX, |l| l.0), Ordering::Release);
    }

    /// How far a reader that has everything up to `lsn` is behind the last write: record bytes
    /// and milliseconds since the oldest record it lacks was written. Measured per write batch
    /// since the log was opened (for a reader behind the records written since then, a lower
    /// bound); `None` before anything was written.
    pub fn lag(&self, lsn: Lsn) -> Option<(u64, u64)> {
        let marks = self
            .shared
            .marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let last = marks.back()?;
        if lsn >= last.lsn {
            return Some((0, 0));
        }
        // The first batch holding a record after `lsn`; before the first mark (the reader
        // lacks records written before this process opened the log), a lower bound.
        let i = marks.partition_point(|m| m.lsn <= lsn);
        let behind = marks.get(i)?;
        let base = if i == 0 { 0 } else { marks[i - 1].bytes_end };
        Some((last.bytes_end - base, now_ms().saturating_sub(behind.at_ms)))
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<Ticket, WalError> {
        self.control(Msg::Sync, None)
    }

    /// Records that every record up to `lsn` is in immutable storage and deletes the segments
    /// that hold only such records. `lsn` must have been written.
    pub fn checkpoint(&self, lsn: Lsn) -> Result<Ticket, WalError> {
        self.control(|tx| Msg::Checkpoint(lsn, tx), Some(lsn))
    }

    fn control(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), WalError>>) -> Msg,
        lsn: Option<Lsn>,
    ) -> Result<Ticket, WalError> {
        let (tx, rx) = oneshot::channel();
        let guard = self.shared.lock_submit()?;
        let Some(sub) = guard.as_ref() else {
            return Err(self.shared.stopped_error());
        };
        let covered = lsn.unwrap_or(Lsn(sub.next_lsn - 1));
        self.shared.send(make(tx), 0)?;
        drop(guard);
        Ok(Ticket {
            lsn: covered,
            done: Some(rx),
            shared: self.shared.clone(),
        })
    }

    /// Blocks until every record up to `lsn` is fdatasync'd. Records acknowledged at `buffer`
    /// or `wal` become durable within `flush_interval_ms` of being written, so this waits about
    /// that long at most, plus any queue ahead of them. Fails if the log stops first.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), WalError> {
        let shared = &self.shared;
        let mut guard = shared
            .durable_mutex
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if shared.durable_lsn.load(Ordering::Acquire) >= lsn.0 {
                return Ok(());
            }
            if shared.poisoned.load(Ordering::Acquire) {
                return Err(WalError::Poisoned);
            }
            // Not written and the disk full: no answer is coming soon.
            if shared.storage_full.load(Ordering::Acquire)
                && lsn.0 > shared.written_lsn.load(Ordering::Acquire)
            {
                return Err(WalError::StorageFull);
            }
            if shared.writer_stopped.load(Ordering::Acquire) {
                return Err(shared.stopped_error());
            }
            // The timeout only guards against a missed wake-up; progress is signalled.
            guard = shared
                .durable_changed
                .wait_timeout(guard, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub fn status(&self) -> WalStatus {
        let last_assigned = self
            .shared
            .submit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(self.shared.written_lsn.load(Ordering::Acquire), |s| {
                s.next_lsn - 1
            });
        WalStatus {
            last_assigned_lsn: Lsn(last_assigned),
            written_lsn: Lsn(self.shared.written_lsn.load(Ordering::Acquire)),
            durable_lsn: Lsn(self.shared.durable_lsn.load(Ordering::Acquire)),
            checkpoint_lsn: Lsn(self.shared.checkpoint_lsn.load(Ordering::Acquire)),
            truncated_bytes_at_open: self.shared.truncated_bytes_at_open,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn config(&self) -> &WalConfig {
        &self.shared.config
    }

    /// Stops accepting appends, lets the writer write and fsync everything queued, and joins it.
    /// Idempotent. Returns `Poisoned` if the log had failed.
    pub fn close(&self) -> Result<(), WalError> {
        {
            let mut submit = self
                .shared
                .submit
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            submit.take();
            self.shared.lock_queue().closed = true;
        }
        self.shared.wake_writer.notify_one();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!(dir = %self.shared.dir.display(), "WAL writer thread panicked");
            return Err(WalError::Poisoned);
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(WalError::Poisoned);
        }
        if self.shared.closed_full.load(Ordering::Acquire) {
            return Err(WalError::StorageFull);
        }
        Ok(())
    }

    /// Whether the storage is full and appends are refused (see the module doc).
    pub fn storage_full(&self) -> bool {
        self.shared.storage_full.load(Ordering::Acquire)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Shared {
    fn lock_submit(&self) -> Result<MutexGuard<'_, Option<Submitter>>, WalError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(WalError::Poisoned);
        }
        Ok(self.submit.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `msg` (carrying `bytes` of payload) for the writer, waking it only when needed
    /// (see the module doc). Called under the submit lock: queue order is LSN order.
    fn send(&self, msg: Msg, bytes: usize) -> Result<(), WalError> {
        let mut q = self.lock_queue();
        if q.closed {
            return Err(if self.poisoned.load(Ordering::Acquire) {
                WalError::Poisoned
            } else {
                self.stopped_error()
            });
        }
        if q.msgs.len() >= self.config.queue_capacity.max(1) {
            self.metrics.overloaded.inc();
            return Err(WalError::Overloaded {
                queue_capacity: self.config.queue_capacity,
            });
        }
        let urgent = msg.urgent();
        q.msgs.push_back(msg);
        q.oldest.get_or_insert_with(Instant::now);
        q.urgent += usize::from(urgent);
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        let wake = urgent || q.writer_parked || self.batch_full(q.msgs.len(), queued);
        if wake {
            q.writer_parked = false;
        }
        drop(q);
        self.metrics.queue_depth.inc();
        if wake {
            self.wake_writer.notify_one();
        }
        Ok(())
    }

    /// The writer's next step: waits until a batch is due (see the module doc), unsynced data
    /// must be synced (`sync_at`), or the log is closed and drained.
    fn next(&self, sync_at: Option<Instant>) -> Next {
        let flush = Duration::from_millis(self.config.flush_interval_ms);
        let mut q = self.lock_queue();
        loop {
            let now = Instant::now();
            if let Some(oldest) = q.oldest
                && !q.msgs.is_empty()
            {
                let due = q.urgent > 0
                    || q.closed
                    || self.batch_full(q.msgs.len(), self.queued_bytes.load(Ordering::Acquire))
                    || now >= oldest + flush;
                if due && let Some(msg) = Self::pop(&mut q) {
                    return Next::Batch(msg, oldest);
                }
            } else if q.closed {
                return Next::Closed;
            }
            if sync_at.is_some_and(|t| now >= t) {
                return Next::SyncDue;
            }
            let deadline = [
                sync_at,
                q.oldest.filter(|_| !q.msgs.is_empty()).map(|t| t + flush),
            ]
            .into_iter()
            .flatten()
            .min();
            q = match deadline {
                Some(at) => {
                    self.wake_writer
                        .wait_timeout(q, at.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => {
                    q.writer_parked = true;
                    let mut q = self
                        .wake_writer
                        .wait(q)
                        .unwrap_or_else(PoisonError::into_inner);
                    q.writer_parked = false;
                    q
                }
            };
        }
    }

    /// Whether `records` queued records of `bytes` payload bytes make a batch worth writing now:
    /// a full batch, or a queue near its capacity (so buffered writes never meet a full queue
    /// while the writer sleeps).
    fn batch_full(&self, records: usize, bytes: usize) -> bool {
        let c = &self.config;
        records >= c.max_batch_records.min(c.queue_capacity / 2).max(1)
            || bytes >= c.max_batch_bytes.min(c.queue_capacity_bytes / 2)
    }

    /// After a failure: refuses every later message and answers every queued one `Poisoned`
    /// (the queue outlives the writer: nobody may wait on a message it will never take).
    fn abandon_queue(&self) {
        self.abandon_queue_with(|| WalError::Poisoned);
    }

    /// Closes the queue and answers everything in it with `err()`; returns the appends given
    /// up.
    fn abandon_queue_with(&self, err: fn() -> WalError) -> usize {
        let msgs = {
            let mut q = self.lock_queue();
            q.closed = true;
            q.urgent = 0;
            q.oldest = None;
            std::mem::take(&mut q.msgs)
        };
        let mut appends = 0;
        for msg in msgs {
            let w = match msg {
                Msg::Append(p) => {
                    appends += 1;
                    p.done
                }
                Msg::Sync(w) | Msg::Checkpoint(_, w) => Some(w),
            };
            if let Some(w) = w {
                let _ = w.send(Err(err()));
            }
        }
        appends
    }

    /// The next queued message, whether due or not (the rest of a batch).
    fn try_next(&self) -> Option<Msg> {
        Self::pop(&mut self.lock_queue())
    }

    fn pop(q: &mut Queue) -> Option<Msg> {
        let msg = q.msgs.pop_front()?;
        q.urgent -= usize::from(msg.urgent());
        if q.msgs.is_empty() {
            q.oldest = None;
        }
        Some(msg)
    }

    fn notify_durable(&self) {
        let _guard = self
            .durable_mutex
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.durable_changed.notify_all();
    }

    fn stopped_error(&self) -> WalError {
        if self.poisoned.load(Ordering::Acquire) {
            WalError::Poisoned
        } else {
            WalError::Closed
        }
    }
}

fn lock_dir(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_ctx::<OpenError>(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_ctx::<OpenError>(format!(
            "locking {}",
            path.display()
        ))(e)),
    }
}

/// Merges neighbouring pairs in the older half of `marks`: a merged mark ends where the later
/// one ended (its LSN and bytes) and starts when the earlier one was written (its time), so a
/// lag read from it covers both batches.
fn thin_older_half(marks: &mut std::collections::VecDeque<WriteMark>) {
    let half = marks.len() / 2;
    let mut kept = std::collections::VecDeque::with_capacity(MARKS);
    let mut older = marks.drain(..half);
    while let Some(first) = older.next() {
        match older.next() {
            Some(second) => kept.push_back(WriteMark {
                lsn: second.lsn,
                bytes_end: second.bytes_end,
                at_ms: first.at_ms,
            }),
            None => kept.push_back(first),
        }
    }
    drop(older);
    kept.append(marks);
    *marks = kept;
}

fn now_ms() -> u64 {
    crate::now_ms().max(0) as u64
}

fn abort_on_fatal(err: &WalError) {
    tracing::error!(error = %err, "write-ahead log I/O failed; stopping the process so recovery starts from what is on disk");
    eprintln!("sluice: fatal: write-ahead log I/O failed: {err}; aborting");
    std::process::abort();
}

type Waiter = oneshot::Sender<Result<(), WalError>>;

/// How long a closing log keeps retrying a write the full disk refuses before giving it up.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long after a postponed segment rotation the next is tried.
const ROTATE_RETRY: Duration = Duration::from_secs(1);

struct Writer {
    shared: Arc<Shared>,
    /// A rotation found the disk full: the next is not tried before this instant.
    rotate_after: Option<Instant>,
    file: File,
    seg_len: u64,
    segments: Vec<SegmentInfo>,
    written: Lsn,
    durable: Lsn,
    /// When the oldest written-but-unsynced byte was written.
    unsynced_since: Option<Instant>,
    /// The LSN the last sync marker vouched for.
    last_marker: Option<Lsn>,
    buf: Vec<u8>,
}

/// What one drained batch asks of the writer.
#[derive(Default)]
struct Batch {
    appends: usize,
    wal_waiters: Vec<Waiter>,
    fsync_waiters: Vec<Waiter>,
    checkpoints: Vec<(Lsn, Waiter)>,
    force_sync: bool,
}

impl Batch {
    /// Answers everyone waiting on the batch with `err()`.
    fn answer_all(self, err: fn() -> WalError) {
        let waiters = self
            .wal_waiters
            .into_iter()
            .chain(self.fsync_waiters)
            .chain(self.checkpoints.into_iter().map(|(_, w)| w));
        for w in waiters {
            let _ = w.send(Err(err()));
        }
    }
}

impl Writer {
    fn run(mut self) {
        let flush_interval = Duration::from_millis(self.shared.config.flush_interval_ms);
        loop {
            let sync_at = self.unsynced_since.map(|t| t + flush_interval);
            match self.shared.next(sync_at) {
                Next::Batch(first, queued) => {
                    if self.write_batch(first, queued).is_err() {
                        return;
                    }
                }
                Next::SyncDue => {
                    if let Err(e) = self.sync().and_then(|()| self.write_sync_marker()) {
                        self.fail(e, Batch::default());
                        return;
                    }
                }
                Next::Closed => break,
            }
        }
        // Closed: everything queued has been drained.
        if let Err(e) = self.sync().and_then(|()| self.write_sync_marker()) {
            self.fail(e, Batch::default());
        }
    }

    /// Drains a batch starting with `first` (its records queued no earlier than `queued`),
    /// writes it, syncs if asked or overdue, answers everyone.
    fn write_batch(&mut self, first: Msg, queued: Instant) -> Result<(), ()> {
        let shared = self.shared.clone();
        let config = &shared.config;
        #[cfg(test)]
        let _gate = shared
            .test_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut batch = Batch::default();
        self.buf.clear();
        // The last record on disk before this batch.
        let on_disk = self.written;
        let mut next = Some(first);
        let mut drained = 0i64;
        while let Some(msg) = next.take() {
            drained += 1;
            match msg {
                Msg::Append(p) => {
                    debug_assert_eq!(p.lsn, self.written.next());
                    self.shared
                        .queued_bytes
                        .fetch_sub(p.payload.len(), Ordering::AcqRel);
                    record::encode(&mut self.buf, p.lsn, self.durable, p.kind, &p.payload);
                    self.written = p.lsn;
                    batch.appends += 1;
                    match (p.ack, p.done) {
                        (AckLevel::Fsync, Some(w)) => batch.fsync_waiters.push(w),
                        (_, Some(w)) => batch.wal_waiters.push(w),
                        (_, None) => {}
                    }
                }
                Msg::Sync(w) => {
                    batch.force_sync = true;
                    batch.fsync_waiters.push(w);
                }
                Msg::Checkpoint(lsn, w) => {
                    batch.force_sync = true;
                    batch.checkpoints.push((lsn, w));
                }
            }
            if batch.appends < config.max_batch_records && self.buf.len() < config.max_batch_bytes {
                next = self.shared.try_next();
            }
        }
        self.shared.metrics.queue_depth.dec_by(drained);

        if !self.buf.is_empty() {
            match self.write_out(on_disk) {
                Ok(()) => {}
                Err(WalError::StorageFull) => {
                    self.give_up_full(batch);
                    return Err(());
                }
                Err(e) => {
                    self.fail(e, batch);
                    return Err(());
                }
            }
            self.seg_len += self.buf.len() as u64;
            let m = &self.shared.metrics;
            m.appends.inc_by(batch.appends as u64);
            m.appended_bytes.inc_by(self.buf.len() as u64);
            m.batches.inc();
            m.batch_records.observe(batch.appends as f64);
            m.last_lsn.set(self.written.0 as i64);
            self.shared
                .written_lsn
                .store(self.written.0, Ordering::Release);
            self.record_mark(self.buf.len() as u64);
            // Unsynced since the batch's records were accepted: a record acknowledged at
            // `buffer` and written late is synced in time all the same.
            self.unsynced_since = Some(self.unsynced_since.map_or(queued, |t| t.min(queued)));
            for w in batch.wal_waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
        }

        let overdue = self
            .unsynced_since
            .is_some_and(|t| t.elapsed().as_millis() >= u128::from(config.flush_interval_ms));
        if !batch.fsync_waiters.is_empty() || batch.force_sync || overdue {
            if let Err(e) = self.sync() {
                self.fail(e, batch);
                return Err(());
            }
            for w in batch.fsync_waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
        for (lsn, w) in batch.checkpoints.drain(..) {
            let _ = w.send(self.apply_checkpoint(lsn));
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(());
        }
        // A segment with no records is never rotated: its successor would have the same name.
        if self.seg_len >= config.segment_size_bytes
            && self.seg_len > segment::HEADER_BYTES as u64
            && self.rotate_after.is_none_or(|t| Instant::now() >= t)
            && let Err(e) = self.rotate()
        {
            self.fail(e, Batch::default());
            return Err(());
        }
        Ok(())
    }

    /// The active segment's path.
    fn active_path(&self) -> PathBuf {
        self.segments
            .last()
            .map_or_else(|| self.shared.dir.clone(), |s| s.path.clone())
    }

    /// Appends `self.buf` to the active segment; storage full is waited out (see the module
    /// doc). `on_disk` is the last record written before this batch. Errors are fatal ones,
    /// except `StorageFull`: the log is closing and the disk stayed full.
    fn write_out(&mut self, on_disk: Lsn) -> Result<(), WalError> {
        let path = self.active_path();
        let mut backoff = Duration::from_millis(10);
        let mut closing_since: Option<Instant> = None;
        loop {
            match crate::faults::write_all(&path, &mut self.file, &self.buf) {
                Ok(()) => {
                    if self.shared.storage_full.swap(false, Ordering::AcqRel) {
                        self.shared.metrics.storage_full.set(0);
                        tracing::warn!(dir = %self.shared.dir.display(), "WAL storage has space again; accepting writes");
                    }
                    return Ok(());
                }
                Err(e) if crate::faults::is_storage_full(&e) => {
                    self.cut_back()?;
                    if !self.shared.storage_full.swap(true, Ordering::AcqRel) {
                        self.shared.metrics.storage_full.set(1);
                        tracing::error!(dir = %self.shared.dir.display(), error = %e,
                            "WAL storage full: refusing writes until space returns (retrying)");
                        // What earlier batches wrote is synced now, not when space returns.
                        self.sync_upto(on_disk)?;
                        self.shared.notify_durable();
                    }
                    if self.shared.lock_queue().closed {
                        let since = *closing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= CLOSE_GRACE {
                            return Err(WalError::StorageFull);
                        }
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(io_ctx::<WalError>("writing a WAL segment")(e)),
            }
        }
    }

    /// Cuts the active segment back to its last whole write (a refused write may have left part
    /// of itself) and puts the file position there. Shrinking needs no space.
    fn cut_back(&mut self) -> Result<(), WalError> {
        self.file
            .set_len(self.seg_len)
            .and_then(|()| self.file.seek(SeekFrom::Start(self.seg_len)).map(|_| ()))
            .map_err(io_ctx::<WalError>(
                "cutting a WAL segment back after a full disk",
            ))
    }

    /// Syncs what is on disk while the batch in hand (after `on_disk`) is not: the durable
    /// LSN becomes `on_disk`, not the last LSN encoded.
    fn sync_upto(&mut self, on_disk: Lsn) -> Result<(), WalError> {
        if self.unsynced_since.is_none() {
            return Ok(());
        }
        crate::faults::sync_data(&self.active_path(), &self.file)
            .map_err(io_ctx::<WalError>("fdatasync of a WAL segment"))?;
        self.shared.metrics.fsyncs.inc();
        self.durable = on_disk;
        self.unsynced_since = None;
        self.shared.durable_lsn.store(on_disk.0, Ordering::Release);
        if let Some(hook) = &self.shared.on_durable {
            hook(on_disk);
        }
        Ok(())
    }

    /// The log closed while the disk stayed full: everything written is durable (synced when
    /// the disk filled); the batch in hand and the queue are given up, their waiters told
    /// `StorageFull`. Not fatal: the process may exit normally and recover from the log.
    fn give_up_full(&mut self, batch: Batch) {
        self.shared.closed_full.store(true, Ordering::Release);
        let in_hand = batch.appends;
        batch.answer_all(|| WalError::StorageFull);
        let queued = self.shared.abandon_queue_with(|| WalError::StorageFull);
        tracing::error!(
            dir = %self.shared.dir.display(),
            in_hand,
            queued,
            durable = %self.durable,
            "WAL closed with the disk full: records after the durable LSN were not written (their writers were answered, or had only `ack=buffer`)"
        );
    }

    fn sync(&mut self) -> Result<(), WalError> {
        if self.unsynced_since.is_none() {
            return Ok(());
        }
        let started = Instant::now();
        crate::faults::sync_data(&self.active_path(), &self.file)
            .map_err(io_ctx::<WalError>("fdatasync of a WAL segment"))?;
        let m = &self.shared.metrics;
        m.fsyncs.inc();
        m.fsync_seconds.observe(started.elapsed().as_secs_f64());
        self.durable = self.written;
        self.unsynced_since = None;
        self.shared
            .durable_lsn
            .store(self.durable.0, Ordering::Release);
        self.shared.notify_durable();
        if let Some(hook) = &self.shared.on_durable {
            hook(self.durable);
        }
        Ok(())
    }

    fn record_mark(&mut self, bytes: u64) {
        let now = now_ms();
        let mut marks = self
            .shared
            .marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let bytes_end = marks.back().map_or(0, |m| m.bytes_end) + bytes;
        match marks.back_mut() {
            Some(m) if m.at_ms == now => {
                m.lsn = self.written;
                m.bytes_end = bytes_end;
            }
            _ => {
                if marks.len() == MARKS {
                    thin_older_half(&mut marks);
                }
                marks.push_back(WriteMark {
                    lsn: self.written,
                    bytes_end,
                    at_ms: now,
                });
            }
        }
    }

    /// Writes and syncs a sync marker vouching for everything written so far (see the crate
    /// doc). Only called right after a sync, when the log is idle or closing.
    fn write_sync_marker(&mut self) -> Result<(), WalError> {
        if self.written == Lsn::ZERO || self.last_marker == Some(self.written) {
            return Ok(());
        }
        debug_assert_eq!(self.durable, self.written);
        self.buf.clear();
        record::encode(
            &mut self.buf,
            self.written,
            self.durable,
            record::SYNC_MARKER,
            &[],
        );
        let path = self.active_path();
        match crate::faults::write_all(&path, &mut self.file, &self.buf) {
            Ok(()) => {}
            // The marker only saves recovery some reading: without space, go without it.
            Err(e) if crate::faults::is_storage_full(&e) => return self.cut_back(),
            Err(e) => return Err(io_ctx::<WalError>("writing a WAL sync marker")(e)),
        }
        self.seg_len += self.buf.len() as u64;
        self.shared
            .metrics
            .appended_bytes
            .inc_by(self.buf.len() as u64);
        crate::faults::sync_data(&path, &self.file)
            .map_err(io_ctx::<WalError>("fdatasync of a WAL segment"))?;
        self.shared.metrics.fsyncs.inc();
        self.last_marker = Some(self.written);
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        self.sync()?;
        let first = self.written.next();
        let (file, info) = match segment::create(&self.shared.dir, first) {
            Ok(created) => created,
            Err(e) if crate::faults::is_storage_full(&e.source) => {
                // Keep appending to the active segment; a batch a second from now tries
                // again. The new file holds no record: removing it loses nothing.
                let _ = std::fs::remove_file(self.shared.dir.join(segment::file_name(first)));
                if self.rotate_after.is_none() {
                    tracing::warn!(error = %e.source, "WAL segment rotation postponed: storage full");
                }
                self.rotate_after = Some(Instant::now() + ROTATE_RETRY);
                return Ok(());
            }
            Err(e) => return Err(WalError::from(e)),
        };
        self.rotate_after = None;
        self.file = file;
        self.seg_len = segment::HEADER_BYTES as u64;
        self.segments.push(info);
        self.shared.metrics.segments.set(self.segments.len() as i64);
        Ok(())
    }

    fn apply_checkpoint(&mut self, lsn: Lsn) -> Result<(), WalError> {
        if lsn > self.durable {
            return Err(WalError::CheckpointBeyondLog {
                requested: lsn,
                written: self.durable,
            });
        }
        if lsn.0 <= self.shared.checkpoint_lsn.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Err(e) = checkpoint::store(&self.shared.dir, lsn) {
            if crate::faults::is_storage_full(&e.source) {
                // The old checkpoint stands (the file is replaced atomically); the next one
                // is tried when its caller asks again.
                tracing::warn!(error = %e.source, checkpoint = %lsn, "WAL checkpoint postponed: storage full");
                return Err(WalError::StorageFull);
            }
            // The checkpoint's write or fsync failed: the same rule as for segments applies.
            self.fail(WalError::from(e), Batch::default());
            return Err(WalError::Poisoned);
        }
        self.shared.checkpoint_lsn.store(lsn.0, Ordering::Release);
        self.shared.metrics.checkpoint_lsn.set(lsn.0 as i64);
        self.delete_covered_segments(lsn);
        Ok(())
    }

    /// Deletes every segment but the active one whose records are all at or below `lsn` and
    /// below the retention floor.
    fn delete_covered_segments(&mut self, lsn: Lsn) {
        let floor = self.shared.retain_from.load(Ordering::Acquire);
        let lsn = Lsn(lsn.0.min(floor.saturating_sub(1)));
        let mut deleted = 0;
        while self.segments.len() > 1 && self.segments[1].first_lsn.0 - 1 <= lsn.0 {
            let seg = self.segments.remove(0);
            match std::fs::remove_file(&seg.path) {
                Ok(()) => deleted += 1,
                Err(e) => {
                    tracing::warn!(path = %seg.path.display(), error = %e, "could not delete a checkpointed WAL segment");
                    self.segments.insert(0, seg);
                    break;
                }
            }
        }
        if deleted > 0 {
            if let Err(e) = segment::sync_dir(&self.shared.dir) {
                let e = WalError::from(e);
                tracing::warn!(error = %e, "could not sync the WAL directory after deleting segments");
            }
            tracing::debug!(deleted, checkpoint = %lsn, "deleted checkpointed WAL segments");
        }
        self.shared.metrics.segments.set(self.segments.len() as i64);
    }

    /// Poisons the log after an I/O failure: the fatal handler runs, every waiter hears
    /// `Poisoned`, and nothing more is accepted.
    fn fail(&mut self, err: WalError, batch: Batch) {
        if self.shared.poisoned.swap(true, Ordering::AcqRel) {
            return;
        }
        // The handler first (the default one aborts): nobody hears an answer before the
        // process has decided to stop.
        (self.shared.on_fatal)(&err);
        batch.answer_all(|| WalError::Poisoned);
        self.shared.abandon_queue();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, config: WalConfig) -> Wal {
        let options = WalOptions {
            config,
            ..WalOptions::default()
        };
        Wal::open(dir, options, |_| Ok(())).unwrap()
    }

    #[test]
    fn thinned_marks_reach_back_to_the_first_and_never_underestimate() {
        let mut marks: std::collections::VecDeque<WriteMark> = (1..=MARKS as u64)
            .map(|i| WriteMark {
                lsn: Lsn(i * 10),
                bytes_end: i * 100,
                at_ms: i,
            })
            .collect();
        for _ in 0..5 {
            thin_older_half(&mut marks);
            assert!(marks.len() <= MARKS * 3 / 4 + 1);
            // The oldest mark still starts at the first batch's time.
            assert_eq!(marks[0].at_ms, 1);
            assert!(
                marks
                    .iter()
                    .zip(marks.iter().skip(1))
                    .all(|(a, b)| a.lsn < b.lsn && a.bytes_end < b.bytes_end && a.at_ms < b.at_ms)
            );
        }
        // The newest quarter keeps its 1-per-batch resolution.
        let n = marks.len();
        assert_eq!(marks[n - 1].lsn, Lsn(MARKS as u64 * 10));
        assert_eq!(marks[n - 2].lsn, Lsn((MARKS as u64 - 1) * 10));
    }

    /// Buffered appends do not wake the writer one by one: a burst becomes one batch, written
    /// and synced once the oldest has waited `flush_interval_ms`; a `wal` or `fsync` append
    /// behind buffered ones is served at once, and writes them first (LSN order).
    #[test]
    fn buffered_appends_are_batched_by_time_and_urgent_ones_are_served_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(
            dir.path(),
            WalConfig {
                // Long enough that the hundred appends below always fit in one interval.
                flush_interval_ms: 1_500,
                ..WalConfig::default()
            },
        );
        let batches = || wal.shared.metrics.batches.get();
        for i in 0..100u8 {
            wal.append(RecordKind(1), vec![i; 8], AckLevel::Buffer)
                .unwrap()
                .wait_blocking()
                .unwrap();
        }
        assert_eq!(wal.status().written_lsn, Lsn(0), "nothing is due yet");
        wal.wait_durable(Lsn(100)).unwrap();
        assert_eq!(batches(), 1);
        assert_eq!(wal.status().durable_lsn, Lsn(100));

        // An hour's interval: were the fsync append to wait for it, the test would time out.
        let dir = tempfile::tempdir().unwrap();
        let wal = open(
            dir.path(),
            WalConfig {
                flush_interval_ms: 3_600_000,
                ..WalConfig::default()
            },
        );
        for i in 0..10u8 {
            let _ = wal
                .append(RecordKind(1), vec![i; 8], AckLevel::Buffer)
                .unwrap();
        }
        let t = wal
            .append(RecordKind(1), vec![1; 8], AckLevel::Fsync)
            .unwrap();
        assert_eq!(t.wait_blocking().unwrap(), Lsn(11));
        assert_eq!(wal.status().durable_lsn, Lsn(11));
        assert_eq!(wal.shared.metrics.batches.get(), 1);
    }

    #[test]
    fn full_queue_answers_overloaded_at_once_instead_of_blocking_or_growing() {
        let dir = tempfile::tempdir().unwrap();
        let capacity = 8;
        let wal = open(
            dir.path(),
            WalConfig {
                queue_capacity: capacity,
                ..WalConfig::default()
            },
        );
        let gate = wal.shared.test_gate.lock().unwrap();
        let mut tickets = Vec::new();
        let overloaded = loop {
            match wal.append(RecordKind(1), vec![7; 16], AckLevel::Fsync) {
                Ok(t) => tickets.push(t),
                Err(e) => break e,
            }
            // The writer may hold one batch (blocked on the gate) besides the full queue.
            assert!(
                tickets.len() <= 2 * capacity + 1,
                "queue grew past its bound"
            );
        };
        assert!(
            matches!(overloaded, WalError::Overloaded { queue_capacity } if queue_capacity == capacity)
        );
        assert!(tickets.len() >= capacity);
        // Refusal left no gap: the next accepted record gets the next LSN.
        let accepted = tickets.len() as u64;
        drop(gate);
        for (i, t) in tickets.into_iter().enumerate() {
            assert_eq!(t.wait_blocking().unwrap(), Lsn(i as u64 + 1));
        }
        let next = wal.append(RecordKind(1), vec![], AckLevel::Fsync).unwrap();
        assert_eq!(next.wait_blocking().unwrap(), Lsn(accepted + 1));
        assert_eq!(wal.status().durable_lsn, Lsn(accepted + 1));
    }

    #[test]
    fn queued_bytes_are_bounded_too() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(
            dir.path(),
            WalConfig {
                queue_capacity_bytes: 4096,
                ..WalConfig::default()
            },
        );
        let gate = wal.shared.test_gate.lock().unwrap();
        let mut tickets = Vec::new();
        let refused = loop {
            match wal.append(RecordKind(1), vec![1; 1000], AckLevel::Wal) {
                Ok(t) => tickets.push(t),
                Err(e) => break e,
            }
            assert!(tickets.len() <= 10, "byte budget ignored");
        };
        assert!(matches!(refused, WalError::Overloaded { .. }));
        // One record larger than the whole budget still goes through an empty queue.
        drop(gate);
        for t in tickets {
            t.wait_blocking().unwrap();
        }
        let big = wal
            .append(RecordKind(1), vec![2; 10_000], AckLevel::Wal)
            .unwrap();
        big.wait_blocking().unwrap();
        assert!(matches!(
            wal.append(RecordKind(0), vec![], AckLevel::Buffer),
            Err(WalError::ReservedKind)
        ));
    }

    #[test]
    fn ack_levels_hold_when_answered() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), WalConfig::default());
        let w = wal
            .append(RecordKind(1), b"a".to_vec(), AckLevel::Wal)
            .unwrap();
        let lsn = w.wait_blocking().unwrap();
        assert!(wal.status().written_lsn >= lsn);
        let f = wal
            .append(RecordKind(1), b"b".to_vec(), AckLevel::Fsync)
            .unwrap();
        let lsn = f.wait_blocking().unwrap();
        assert!(wal.status().durable_lsn >= lsn);
        let b = wal
            .append(RecordKind(1), b"c".to_vec(), AckLevel::Buffer)
            .unwrap();
        assert_eq!(b.lsn(), Lsn(3));
        wal.sync().unwrap().wait_blocking().unwrap();
        assert_eq!(wal.status().durable_lsn, Lsn(3));
    }

    #[test]
    fn wait_durable_returns_once_buffered_records_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(
            dir.path(),
            WalConfig {
                flush_interval_ms: 20,
                ..WalConfig::default()
            },
        );
        let mut last = Lsn::ZERO;
        for _ in 0..50 {
            last = wal
                .append(RecordKind(1), vec![3; 10], AckLevel::Buffer)
                .unwrap()
                .lsn();
        }
        wal.wait_durable(last).unwrap();
        assert!(wal.status().durable_lsn >= last);
        wal.close().unwrap();
        assert!(wal.wait_durable(Lsn(last.0 + 1)).is_err());
    }

    #[test]
    fn closed_log_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), WalConfig::default());
        wal.close().unwrap();
        assert!(matches!(
            wal.append(RecordKind(1), vec![], AckLevel::Buffer),
            Err(WalError::Closed)
        ));
    }

    #[test]
    fn second_open_of_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _wal = open(dir.path(), WalConfig::default());
        let second = Wal::open(dir.path(), WalOptions::default(), |_| Ok(()));
        assert!(matches!(second, Err(OpenError::Locked { .. })));
    }
}
