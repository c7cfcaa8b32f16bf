//! Disk faults under vector snapshots (injected through `sluice_wal::faults`): a snapshot that
//! meets a full disk or a failing device at any of its files (index, catalogue, MANIFEST, their
//! syncs) fails without committing: the MANIFEST and `snapshot_lsn` stay as they were, so the
//! WAL (not checkpointed past them) still holds everything. Once the disk recovers the next
//! snapshot succeeds, and an engine opened from it plus replay holds every entity.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Map;
use sluice_vector::engine::{WriteMode, entity};
use sluice_vector::record::Op;
use sluice_vector::{
    CollectionConfig, Distance, FlushTrigger, HnswParams, Precision, VectorConfig, VectorEngine,
    VectorMetrics,
};
use sluice_wal::faults::{self, Action, Fault, Injector, Op as IoOp};
use sluice_wal::{Lsn, RecordKind};

#[derive(Default)]
struct Log {
    records: RefCell<Vec<(RecordKind, Vec<u8>, Lsn)>>,
}

impl Log {
    fn append(&self) -> impl FnMut(RecordKind, Vec<u8>) -> Result<((), Lsn), ()> + '_ {
        move |kind, payload| {
            let mut r = self.records.borrow_mut();
            let lsn = Lsn(r.len() as u64 + 1);
            r.push((kind, payload, lsn));
            Ok(((), lsn))
        }
    }
}

/// Fails the `n`-th file operation of a snapshot (counted from when it is armed) with `errno`.
struct NthFails {
    armed: Mutex<Option<(usize, i32)>>,
    seen: AtomicUsize,
    ops: Mutex<Vec<String>>,
}

impl Injector for NthFails {
    fn before(&self, op: IoOp<'_>) -> Option<Fault> {
        let (n, errno) = (*self.armed.lock().unwrap())?;
        let i = self.seen.fetch_add(1, Ordering::SeqCst);
        self.ops.lock().unwrap().push(format!(
            "{:?} {}",
            op.action,
            op.path.file_name().unwrap().to_string_lossy()
        ));
        if i != n {
            return None;
        }
        Some(match op.action {
            Action::Write { len } => Fault::Torn {
                written: len / 2,
                errno,
            },
            _ => Fault::Fail(errno),
        })
    }
}

fn open(dir: &std::path::Path) -> VectorEngine {
    VectorEngine::open(dir, VectorConfig::default(), VectorMetrics::default()).unwrap()
}

#[test]
fn a_failed_snapshot_commits_nothing_and_the_next_one_recovers_everything() {
    let injector = Arc::new(NthFails {
        armed: Mutex::new(None),
        seen: AtomicUsize::new(0),
        ops: Mutex::new(Vec::new()),
    });
    faults::install(Some(injector.clone() as Arc<dyn Injector>));
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let e = open(dir.path());
    let config = CollectionConfig {
        name: "c".into(),
        dimension: 4,
        distance: Distance::L2,
        precision: Precision::F32,
        hnsw: HnswParams::default(),
        ttl_ms: None,
    };
    e.create_collection(config, log.append()).unwrap();
    let mut next = 0;
    let mut add = |e: &VectorEngine, n: usize| {
        for _ in 0..n {
            let v = vec![next as f32, 1.0, 2.0, 3.0];
            e.write(
                "c",
                vec![Op::Add(entity(&format!("p{next}"), v, Map::new()))],
                WriteMode::Direct,
                &mut log.append(),
            )
            .unwrap();
            next += 1;
        }
    };
    add(&e, 50);
    e.flush(FlushTrigger::Manual).unwrap();
    let first = e.snapshot(|_| Ok(())).unwrap().unwrap();
    // Count the file operations of one snapshot, then fail each of them in turn.
    add(&e, 10);
    *injector.armed.lock().unwrap() = Some((usize::MAX, 0));
    injector.seen.store(0, Ordering::SeqCst);
    e.snapshot(|_| Ok(())).unwrap().unwrap();
    let ops = injector.seen.load(Ordering::SeqCst);
    assert!(
        ops >= 6,
        "a snapshot's file operations: {:?}",
        injector.ops.lock().unwrap()
    );
    let committed = e.snapshot_lsn();
    for n in 0..ops {
        for errno in [libc::ENOSPC, libc::EIO] {
            add(&e, 3);
            let manifest = std::fs::read(dir.path().join("MANIFEST")).unwrap();
            *injector.armed.lock().unwrap() = Some((n, errno));
            injector.seen.store(0, Ordering::SeqCst);
            let r = e.snapshot(|_| Ok(()));
            assert!(
                r.is_err(),
                "operation {n} failed with {errno}, yet the snapshot succeeded"
            );
            assert_eq!(
                e.snapshot_lsn(),
                committed,
                "operation {n}: snapshot_lsn moved"
            );
            // The MANIFEST is untouched, except when only the directory's sync after its
            // rename failed (the last operation): then the new one, complete, may stand.
            if std::fs::read(dir.path().join("MANIFEST")).unwrap() != manifest {
                assert_eq!(n, ops - 1, "operation {n}: the MANIFEST changed");
            }
            // Whatever MANIFEST stands opens: its files are whole.
            let copy = tempfile::tempdir().unwrap();
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let p = entry.unwrap().path();
                std::fs::copy(&p, copy.path().join(p.file_name().unwrap())).unwrap();
            }
            faults::install(None);
            let reopened = open(copy.path());
            assert!(reopened.snapshot_lsn() >= first, "operation {n}");
            drop(reopened);
            faults::install(Some(injector.clone() as Arc<dyn Injector>));
        }
    }
    *injector.armed.lock().unwrap() = None;
    assert!(first < committed);
    let last = e.snapshot(|_| Ok(())).unwrap().unwrap();
    assert!(last > committed);
    drop(e);
    faults::install(None);
    // Reopened from the last snapshot plus the log: every entity is there.
    let e = open(dir.path());
    assert_eq!(e.snapshot_lsn(), last);
    for (kind, payload, lsn) in log.records.borrow().iter() {
        e.replay(*kind, payload, *lsn).unwrap();
    }
    e.finish_replay().unwrap();
    for i in 0..next {
        assert!(
            matches!(e.get("c", &format!("p{i}")), Ok(Some(_))),
            "p{i} lost"
        );
    }
}
