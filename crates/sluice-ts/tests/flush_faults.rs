//! Disk faults at the chunk flush boundary (injected through `sluice_wal::faults` at the flush's
//! batch write and its sync): a flush that meets a full disk or a failing device fails whole;
//! its points stay in the buffer (queries answer them), the flushed LSN does not move (so the
//! WAL is not checkpointed past them), and the next flush writes them. An engine reopened
//! from the store after a failed flush, with the WAL's records replayed from its flushed LSN,
//! answers every point.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use sluice_ts::query::Query;
use sluice_ts::{Batch, FlushTrigger, Point, PointLimits, TsConfig, TsEngine, TsMetrics};
use sluice_wal::Lsn;
use sluice_wal::faults::{self, Action, Fault, Injector, Op};

/// 0: nothing; 1: the batch write fails with ENOSPC; 2: its sync fails with EIO.
struct FlushFaults(AtomicU8);

impl Injector for FlushFaults {
    fn before(&self, op: Op<'_>) -> Option<Fault> {
        if !op.path.ends_with("chunks") {
            return None;
        }
        match (self.0.load(Ordering::SeqCst), op.action) {
            (1, Action::Write { .. }) => Some(Fault::Fail(libc::ENOSPC)),
            (2, Action::Sync) => Some(Fault::Fail(libc::EIO)),
            _ => None,
        }
    }
}

fn query() -> Query {
    Query {
        metric: "m".into(),
        entity: None,
        tags: vec![],
        matchers: vec![],
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        aggregation: None,
        step_ms: None,
        group_by: vec![],
    }
}

fn points(e: &TsEngine) -> Vec<(i64, f64)> {
    e.query(&query())
        .unwrap()
        .pop()
        .map(|s| s.points)
        .unwrap_or_default()
}

/// Writes points `from..to` (timestamp i, value i) as one record with LSN `lsn`.
fn write(e: &TsEngine, lsn: u64, from: i64, to: i64) -> Batch {
    let pts: Vec<Point> = (from..to)
        .map(|i| {
            Point::new(
                "m".into(),
                "e".into(),
                i,
                i as f64,
                [],
                &PointLimits::default(),
            )
            .unwrap()
        })
        .collect();
    let batch = Batch::from_points(pts);
    e.write(batch.clone(), |_payload| Ok::<_, ()>(((), Lsn(lsn))))
        .unwrap();
    batch
}

#[test]
fn a_failed_chunk_flush_keeps_its_points_and_the_flushed_lsn_and_the_next_one_writes_them() {
    let faults_on = Arc::new(FlushFaults(AtomicU8::new(0)));
    faults::install(Some(faults_on.clone() as Arc<dyn Injector>));
    let dir = tempfile::tempdir().unwrap();
    let e = TsEngine::open(dir.path(), TsConfig::default(), TsMetrics::default()).unwrap();
    let mut log = Vec::new();
    log.push(write(&e, 1, 0, 100));
    e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
    assert_eq!(e.persisted_bound(Lsn(1)), Lsn(1));
    for (mode, lsn) in [(1u8, 2u64), (2, 3)] {
        log.push(write(&e, lsn, lsn as i64 * 100, lsn as i64 * 100 + 100));
        faults_on.0.store(mode, Ordering::SeqCst);
        let r = e.flush(FlushTrigger::Manual, |_| Ok(()));
        assert!(r.is_err(), "mode {mode}: the flush succeeded");
        // Nothing lost from memory; the checkpoint bound has not moved past the failed flush.
        assert_eq!(points(&e).len(), (lsn as usize) * 100, "mode {mode}");
        assert_eq!(e.persisted_bound(Lsn(lsn)), Lsn(1), "mode {mode}");
    }
    // A crash now: the store holds what its last good flush (and maybe the batch whose sync
    // failed) wrote; the WAL replays everything after the flushed LSN.
    faults_on.0.store(0, Ordering::SeqCst);
    drop(e);
    let e = TsEngine::open(dir.path(), TsConfig::default(), TsMetrics::default()).unwrap();
    let flushed = e.persisted_bound(Lsn(0));
    assert!(flushed <= Lsn(3));
    for (i, batch) in log.iter().enumerate() {
        let lsn = Lsn(i as u64 + 1);
        if lsn > flushed {
            e.write(batch.clone(), |_payload| Ok::<_, ()>(((), lsn)))
                .unwrap();
        }
    }
    assert_eq!(points(&e).len(), 300);
    // The disk is back: the flush writes them, and a reopened engine has them all.
    e.flush(FlushTrigger::Manual, |_| Ok(())).unwrap();
    assert_eq!(e.persisted_bound(Lsn(3)), Lsn(3));
    drop(e);
    let e = TsEngine::open(dir.path(), TsConfig::default(), TsMetrics::default()).unwrap();
    let all = points(&e);
    assert_eq!(all.len(), 300);
    assert!(all.iter().all(|(t, v)| *t as f64 == *v));
}
