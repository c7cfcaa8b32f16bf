//! Disk faults injected under the log (`sluice_wal::faults`): a full disk, a failing device,
//! torn writes, and crashes that lose whatever was written but not yet fdatasync'd, at every
//! fdatasync boundary (group commit, segment rotation, checkpoint).
//!
//! The promises: nothing acknowledged at `fsync` is lost; a full disk refuses new appends with
//! `StorageFull`, keeps the pending batch and its waiters, and resumes by itself with the same
//! LSNs once space returns; a failed fdatasync or a failing device (EIO) poisons the log and
//! runs the fatal handler; recovery finds consecutive LSNs and never hands one out twice.
//!
//! The injector is process-wide: nextest runs each test in its own process; under `cargo test`
//! the tests of this file take [`SERIAL`] so they do not install over each other.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{KIND, Records, open_collect, payload};
use sluice_wal::faults::{self, Action, Fault, Injector, Op};
use sluice_wal::{AckLevel, Lsn, Wal, WalConfig, WalError, WalOptions};

/// One test at a time in a process (see the module doc).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_segment(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wal")
}

/// Fails operations on demand: `full` makes segment writes tear halfway with ENOSPC and file
/// creations fail with ENOSPC; `eio_write` / `eio_sync` make segment writes / fdatasyncs fail
/// with EIO; `full_checkpoint` fails the checkpoint file's write with ENOSPC.
#[derive(Default)]
struct Switches {
    full: AtomicBool,
    eio_write: AtomicBool,
    eio_sync: AtomicBool,
    full_checkpoint: AtomicBool,
    refused: AtomicU64,
}

impl Injector for Switches {
    fn before(&self, op: Op<'_>) -> Option<Fault> {
        let checkpoint = op
            .path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("CHECKPOINT"));
        let fault = match op.action {
            Action::Write { len } if is_segment(op.path) => {
                if self.eio_write.load(Ordering::SeqCst) {
                    Some(Fault::Fail(libc::EIO))
                } else if self.full.load(Ordering::SeqCst) {
                    Some(Fault::Torn {
                        written: len / 2,
                        errno: libc::ENOSPC,
                    })
                } else {
                    None
                }
            }
            Action::Write { .. } if checkpoint && self.full_checkpoint.load(Ordering::SeqCst) => {
                Some(Fault::Fail(libc::ENOSPC))
            }
            Action::Sync if is_segment(op.path) && self.eio_sync.load(Ordering::SeqCst) => {
                Some(Fault::Fail(libc::EIO))
            }
            Action::Create if self.full.load(Ordering::SeqCst) => Some(Fault::Fail(libc::ENOSPC)),
            _ => None,
        };
        if fault.is_some() {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        fault
    }
}

fn install(switches: &Arc<Switches>) {
    faults::install(Some(switches.clone() as Arc<dyn Injector>));
}

/// A log whose fatal handler records the error instead of aborting.
fn open_observed(dir: &Path, config: WalConfig) -> (Wal, Arc<Mutex<Option<String>>>) {
    let fatal = Arc::new(Mutex::new(None));
    let seen = fatal.clone();
    let options = WalOptions {
        config,
        on_fatal: Some(Arc::new(move |e: &WalError| {
            *seen.lock().unwrap() = Some(e.to_string());
        })),
        ..WalOptions::default()
    };
    (Wal::open(dir, options, |_| Ok(())).unwrap(), fatal)
}

fn assert_consecutive(records: &Records, from: u64) {
    for (i, (lsn, body)) in records.iter().enumerate() {
        assert_eq!(*lsn, from + i as u64, "LSNs must be consecutive");
        assert_eq!(*body, payload(*lsn), "record {lsn} damaged");
    }
}

#[test]
fn a_full_disk_refuses_new_appends_keeps_the_pending_write_and_resumes_with_the_same_lsns() {
    let _serial = serial();
    let switches = Arc::new(Switches::default());
    install(&switches);
    let dir = tempfile::tempdir().unwrap();
    let (wal, fatal) = open_observed(dir.path(), WalConfig::default());
    common::append_synced(&wal, 1, 10);
    switches.full.store(true, Ordering::SeqCst);
    let wal = Arc::new(wal);
    let pending = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            wal.append(KIND, payload(11), AckLevel::Fsync)
                .unwrap()
                .wait_blocking()
        })
    };
    // Once the writer has met the full disk (and retried: the state is set after the first
    // refusal), new appends are refused at once, at every level.
    for _ in 0..500 {
        if switches.refused.load(Ordering::SeqCst) >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(
        wal.append(KIND, payload(99), AckLevel::Buffer),
        Err(WalError::StorageFull)
    ));
    assert!(matches!(
        wal.append(KIND, payload(99), AckLevel::Fsync),
        Err(WalError::StorageFull)
    ));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !pending.is_finished(),
        "the pending write was answered while the disk is full"
    );
    // Waiting for durability answers at once: written records are durable (synced when the
    // disk filled), the stalled one is refused instead of waited on forever.
    wal.wait_durable(Lsn(10)).unwrap();
    assert!(matches!(
        wal.wait_durable(Lsn(11)),
        Err(WalError::StorageFull)
    ));
    assert!(wal.storage_full());
    assert!(
        switches.refused.load(Ordering::SeqCst) >= 2,
        "the writer retries"
    );
    // Space returns: the pending write lands with its LSN, appends are accepted again.
    switches.full.store(false, Ordering::SeqCst);
    assert_eq!(pending.join().unwrap().unwrap(), Lsn(11));
    assert_eq!(
        wal.append(KIND, payload(12), AckLevel::Fsync)
            .unwrap()
            .wait_blocking()
            .unwrap(),
        Lsn(12)
    );
    assert!(fatal.lock().unwrap().is_none(), "a full disk is not fatal");
    wal.close().unwrap();
    drop(wal);
    // The torn halves were cut away: recovery reads 1..=12 whole and cuts nothing.
    let (wal, records) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(records.len(), 12);
    assert_consecutive(&records, 1);
    assert_eq!(wal.status().truncated_bytes_at_open, 0);
}

#[test]
fn a_failing_device_on_write_poisons_the_log_and_keeps_what_was_acknowledged() {
    let _serial = serial();
    let switches = Arc::new(Switches::default());
    install(&switches);
    let dir = tempfile::tempdir().unwrap();
    let (wal, fatal) = open_observed(dir.path(), WalConfig::default());
    common::append_synced(&wal, 1, 5);
    switches.eio_write.store(true, Ordering::SeqCst);
    let r = wal
        .append(KIND, payload(6), AckLevel::Fsync)
        .unwrap()
        .wait_blocking();
    assert!(matches!(r, Err(WalError::Poisoned)), "{r:?}");
    assert!(
        fatal
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|e| e.contains("writing"))
    );
    assert!(matches!(
        wal.append(KIND, payload(7), AckLevel::Buffer),
        Err(WalError::Poisoned)
    ));
    drop(wal);
    switches.eio_write.store(false, Ordering::SeqCst);
    let (wal, records) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(records.len(), 5);
    assert_consecutive(&records, 1);
    // The next LSN follows what is on disk: 6 was never acknowledged, and is given anew.
    assert_eq!(
        wal.append(KIND, payload(6), AckLevel::Fsync)
            .unwrap()
            .wait_blocking()
            .unwrap(),
        Lsn(6)
    );
}

#[test]
fn a_failed_fsync_poisons_the_log_before_anyone_hears_an_answer() {
    let _serial = serial();
    let switches = Arc::new(Switches::default());
    install(&switches);
    let dir = tempfile::tempdir().unwrap();
    let (wal, fatal) = open_observed(dir.path(), WalConfig::default());
    common::append_synced(&wal, 1, 5);
    switches.eio_sync.store(true, Ordering::SeqCst);
    let r = wal
        .append(KIND, payload(6), AckLevel::Fsync)
        .unwrap()
        .wait_blocking();
    assert!(matches!(r, Err(WalError::Poisoned)), "{r:?}");
    assert!(
        fatal
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|e| e.contains("fdatasync"))
    );
    drop(wal);
    switches.eio_sync.store(false, Ordering::SeqCst);
    let (_, records) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert!(records.len() >= 5, "every acknowledged record survives");
    assert_consecutive(&records, 1);
}

#[test]
fn a_full_disk_postpones_rotation_and_checkpoints_and_both_resume() {
    let _serial = serial();
    let switches = Arc::new(Switches::default());
    install(&switches);
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        segment_size_bytes: 1024,
        ..WalConfig::default()
    };
    let (wal, fatal) = open_observed(dir.path(), config.clone());
    let mut lsn = 0;
    let mut put = |wal: &Wal| {
        lsn += 1;
        wal.append(KIND, payload(lsn), AckLevel::Fsync)
            .unwrap()
            .wait_blocking()
            .unwrap()
    };
    for _ in 0..40 {
        put(&wal);
    }
    let before = common::segments(dir.path()).len();
    assert!(before > 1);
    // Creating segments fails: the active one grows past its size instead.
    faults::install(Some(Arc::new(NoCreate) as Arc<dyn Injector>));
    for _ in 0..40 {
        put(&wal);
    }
    assert_eq!(
        common::segments(dir.path()).len(),
        before,
        "no segment was created"
    );
    // A checkpoint that finds the disk full answers StorageFull and changes nothing.
    install(&switches);
    switches.full_checkpoint.store(true, Ordering::SeqCst);
    let last = put(&wal);
    let r = wal.checkpoint(last).unwrap().wait_blocking();
    assert!(matches!(r, Err(WalError::StorageFull)), "{r:?}");
    assert_eq!(wal.status().checkpoint_lsn, Lsn::ZERO);
    // Space returns: rotation (tried again a second after the last postponement) and
    // checkpoints resume.
    switches.full_checkpoint.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..5 {
        put(&wal);
    }
    assert!(
        common::segments(dir.path()).len() > before,
        "rotation did not resume"
    );
    let last = put(&wal);
    wal.checkpoint(last).unwrap().wait_blocking().unwrap();
    assert_eq!(wal.status().checkpoint_lsn, last);
    assert!(fatal.lock().unwrap().is_none());
    drop(wal);
    let (_, records) = open_collect(dir.path(), config).unwrap();
    assert!(
        records.is_empty(),
        "everything was checkpointed: {}",
        records.len()
    );
}

/// Fails every file creation with ENOSPC.
struct NoCreate;

impl Injector for NoCreate {
    fn before(&self, op: Op<'_>) -> Option<Fault> {
        (op.action == Action::Create).then_some(Fault::Fail(libc::ENOSPC))
    }
}

/// Records, before every fdatasync/fsync, the directory a crash at that instant would leave:
/// each file cut to what its last completed sync covered (a file never synced is empty).
struct CrashImages {
    dir: PathBuf,
    images: PathBuf,
    /// Bytes of each file covered by its last sync.
    synced: Mutex<HashMap<PathBuf, u64>>,
    /// Highest LSN acknowledged at `fsync` so far (set by the test after each answer).
    acked: Arc<AtomicU64>,
    taken: Mutex<Vec<(PathBuf, u64)>>,
}

impl CrashImages {
    fn take(&self) {
        let mut taken = self.taken.lock().unwrap();
        let image = self.images.join(format!("{:04}", taken.len()));
        std::fs::create_dir_all(&image).unwrap();
        let synced = self.synced.lock().unwrap();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap();
            if name == "LOCK" || name.to_string_lossy().ends_with(".tmp") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            // Segments lose their unsynced tail; the checkpoint file is replaced atomically
            // (renamed only after its own sync), so it is whole or the old one.
            let keep = if is_segment(&path) {
                synced.get(&path).copied().unwrap_or(0) as usize
            } else {
                bytes.len()
            };
            std::fs::write(image.join(name), &bytes[..keep.min(bytes.len())]).unwrap();
        }
        taken.push((image, self.acked.load(Ordering::SeqCst)));
    }
}

impl Injector for CrashImages {
    fn before(&self, op: Op<'_>) -> Option<Fault> {
        if op.action == Action::Sync && op.path.starts_with(&self.dir) && op.path != self.dir {
            self.take();
            // The sync about to run covers the file as it is now.
            if let Ok(meta) = std::fs::metadata(op.path) {
                self.synced
                    .lock()
                    .unwrap()
                    .insert(op.path.to_path_buf(), meta.len());
            }
        }
        None
    }
}

#[test]
fn a_crash_at_any_fsync_boundary_loses_nothing_acknowledged_and_reuses_no_lsn() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("wal");
    let acked = Arc::new(AtomicU64::new(0));
    let images = Arc::new(CrashImages {
        dir: dir.clone(),
        images: root.path().join("images"),
        synced: Mutex::new(HashMap::new()),
        acked: acked.clone(),
        taken: Mutex::new(Vec::new()),
    });
    faults::install(Some(images.clone() as Arc<dyn Injector>));
    let config = WalConfig {
        segment_size_bytes: 1024,
        ..WalConfig::default()
    };
    let wal = Wal::open(&dir, common::options(config.clone()), |_| Ok(())).unwrap();
    // Group commit (fsync appends, some concurrent), buffered appends synced by the interval,
    // rotations every few records, and checkpoints.
    for round in 0..6u64 {
        let base = round * 15;
        // One at a time: a group commit each.
        for i in 1..=5 {
            let lsn = wal
                .append(KIND, payload(base + i), AckLevel::Fsync)
                .unwrap()
                .wait_blocking()
                .unwrap();
            acked.fetch_max(lsn.get(), Ordering::SeqCst);
        }
        // Together: fewer, larger group commits.
        let tickets: Vec<_> = (6..=15)
            .map(|i| {
                let ack = if i % 3 == 0 {
                    AckLevel::Buffer
                } else {
                    AckLevel::Fsync
                };
                (ack, wal.append(KIND, payload(base + i), ack).unwrap())
            })
            .collect();
        for (ack, t) in tickets {
            let lsn = t.wait_blocking().unwrap();
            if ack == AckLevel::Fsync {
                acked.fetch_max(lsn.get(), Ordering::SeqCst);
            }
        }
        if round % 2 == 1 {
            let at = Lsn(base + 5);
            wal.checkpoint(at).unwrap().wait_blocking().unwrap();
        }
    }
    wal.close().unwrap();
    drop(wal);
    faults::install(None);

    let taken = images.taken.lock().unwrap().clone();
    assert!(taken.len() > 40, "{} boundaries", taken.len());
    for (image, acked) in taken {
        let (wal, records) = open_collect(&image, config.clone())
            .unwrap_or_else(|e| panic!("{}: recovery failed: {e}", image.display()));
        let checkpoint = wal.status().checkpoint_lsn.get();
        let from = records.first().map_or(checkpoint + 1, |r| r.0);
        assert!(
            from <= checkpoint + 1,
            "{}: records after the checkpoint are missing",
            image.display()
        );
        assert_consecutive(&records, from);
        let last = records.last().map_or(checkpoint, |r| r.0);
        assert!(
            last >= acked,
            "{}: acknowledged {acked}, recovered up to {last}",
            image.display()
        );
        // The next LSN follows the last one recovered: none is handed out twice.
        let next = wal
            .append(KIND, b"after".to_vec(), AckLevel::Fsync)
            .unwrap()
            .wait_blocking()
            .unwrap();
        assert_eq!(next.get(), last.max(checkpoint) + 1, "{}", image.display());
    }
}

#[test]
fn closing_while_the_disk_stays_full_gives_up_the_unwritten_without_aborting() {
    let _serial = serial();
    let switches = Arc::new(Switches::default());
    install(&switches);
    let dir = tempfile::tempdir().unwrap();
    let (wal, fatal) = open_observed(dir.path(), WalConfig::default());
    for i in 1..=3 {
        wal.append(KIND, payload(i), AckLevel::Wal)
            .unwrap()
            .wait_blocking()
            .unwrap();
    }
    switches.full.store(true, Ordering::SeqCst);
    let stalled = wal.append(KIND, payload(4), AckLevel::Fsync).unwrap();
    let started = std::time::Instant::now();
    let closed = wal.close();
    assert!(matches!(closed, Err(WalError::StorageFull)), "{closed:?}");
    assert!(
        started.elapsed() >= sluice_wal::CLOSE_GRACE,
        "gave up before the grace period"
    );
    assert!(matches!(
        stalled.wait_blocking(),
        Err(WalError::StorageFull)
    ));
    assert!(
        fatal.lock().unwrap().is_none(),
        "closing with a full disk is not fatal"
    );
    drop(wal);
    // Records 1..=3 were written at `wal` and synced when the disk filled; 4 was never written.
    switches.full.store(false, Ordering::SeqCst);
    let (_, records) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(records.len(), 3);
    assert_consecutive(&records, 1);
}
