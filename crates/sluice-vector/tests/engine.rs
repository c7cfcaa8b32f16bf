//! The vector engine against brute force, and its recovery: snapshot + replay of the logged
//! records must give the same answers as the engine that wrote them.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use sluice_vector::engine::{WriteMode, entity};
use sluice_vector::record::Op;
use sluice_vector::{
    CollectionConfig, Distance, Filter, FlushTrigger, HnswParams, Precision, SearchRequest,
    VectorConfig, VectorEngine, VectorError, VectorMetrics,
};
use sluice_wal::{Lsn, RecordKind};

/// Records "logged" by the engine, as the WAL would hold them.
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

    fn replay_into(&self, engine: &VectorEngine) {
        for (kind, payload, lsn) in self.records.borrow().iter() {
            engine.replay(*kind, payload, *lsn).unwrap();
        }
        engine.finish_replay().unwrap();
    }
}

fn meta(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// `n` vectors around 20 random centres; metadata `bucket` = i % 100 (for selectivity).
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % centres.len()];
            c.iter()
                .map(|x| x + rng.random_range(-0.3..0.3f32))
                .collect()
        })
        .collect()
}

fn collection(name: &str, dim: usize, distance: Distance) -> CollectionConfig {
    CollectionConfig {
        name: name.into(),
        dimension: dim,
        distance,
        precision: Precision::F32,
        hnsw: HnswParams::default(),
        ttl_ms: None,
    }
}

fn engine(dir: &std::path::Path) -> VectorEngine {
    VectorEngine::open(dir, VectorConfig::default(), VectorMetrics::default()).unwrap()
}

fn brute_force(
    data: &[Vec<f32>],
    q: &[f32],
    k: usize,
    keep: impl Fn(usize) -> bool,
    d: Distance,
) -> Vec<String> {
    let mut all: Vec<(f32, usize)> = (0..data.len())
        .filter(|i| keep(*i))
        .map(|i| (d.between(q, &data[i]), i))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.into_iter()
        .take(k)
        .map(|(_, i)| format!("p{i}"))
        .collect()
}

fn load(e: &VectorEngine, log: &Log, data: &[Vec<f32>], mode: WriteMode) {
    for (chunk_no, chunk) in data.chunks(500).enumerate() {
        let ops = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let i = chunk_no * 500 + j;
                Op::Add(entity(
                    &format!("p{i}"),
                    v.clone(),
                    meta(json!({"bucket": i % 100, "parity": if i % 2 == 0 {"even"} else {"odd"}})),
                ))
            })
            .collect();
        e.write("c", ops, mode, log.append()).unwrap();
    }
}

#[test]
fn recall_at_10_against_brute_force_also_with_selective_filters() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let log = Log::default();
    let dim = 32;
    let mut data = clustered(20_100, dim, 7);
    // Queries from the same distribution as the data (same cluster centres).
    let queries = data.split_off(20_000);
    e.create_collection(collection("c", dim, Distance::Cosine), log.append())
        .unwrap();
    load(&e, &log, &data, WriteMode::Direct);
    // (filter, which data indexes pass it, expected selectivity)
    type Keep = Box<dyn Fn(usize) -> bool>;
    let cases: Vec<(Option<Value>, Keep)> = vec![
        (None, Box::new(|_| true)),
        (Some(json!({"parity": "even"})), Box::new(|i| i % 2 == 0)),
        (
            Some(json!({"bucket": {"$lt": 10}})),
            Box::new(|i| i % 100 < 10),
        ),
        (
            Some(json!({"bucket": {"$in": [42]}})),
            Box::new(|i| i % 100 == 42),
        ),
    ];
    for (filter, keep) in cases {
        let f = filter
            .as_ref()
            .map(|f| Filter::parse(f, "filter.").unwrap());
        let mut found = 0;
        for q in &queries {
            let truth = brute_force(&data, q, 10, &keep, Distance::Cosine);
            let hits = e
                .search(
                    "c",
                    &SearchRequest {
                        vector: q.clone(),
                        k: 10,
                        ef: Some(128),
                        filter: f.clone(),
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(hits.len(), 10, "exactly k results for {filter:?}");
            for h in &hits {
                let i: usize = h.pk[1..].parse().unwrap();
                assert!(keep(i), "{} does not pass {filter:?}", h.pk);
            }
            found += hits.iter().filter(|h| truth.contains(&h.pk)).count();
        }
        let recall = found as f64 / (10 * queries.len()) as f64;
        eprintln!("recall@10 {recall} for {filter:?}");
        assert!(recall >= 0.95, "recall@10 {recall} for {filter:?}");
    }
}

#[test]
fn buffered_writes_are_searchable_before_and_after_flush_and_updates_and_removes_win() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let log = Log::default();
    e.create_collection(collection("c", 3, Distance::L2), log.append())
        .unwrap();
    let add = |pk: &str, v: [f32; 3], m: Value, mode| {
        e.write(
            "c",
            vec![Op::Add(entity(pk, v.to_vec(), meta(m)))],
            mode,
            log.append(),
        )
        .unwrap();
    };
    add("a", [0.0, 0.0, 0.0], json!({"t": 1}), WriteMode::Direct);
    add("b", [5.0, 5.0, 5.0], json!({"t": 2}), WriteMode::Buffered);
    let search = |q: [f32; 3], k| {
        e.search(
            "c",
            &SearchRequest {
                vector: q.to_vec(),
                k,
                ef: None,
                filter: None,
                ..Default::default()
            },
        )
        .unwrap()
        .into_iter()
        .map(|h| h.pk)
        .collect::<Vec<_>>()
    };
    assert_eq!(
        search([5.0, 5.0, 5.0], 1),
        ["b"],
        "buffered add is searchable"
    );
    // A buffered update of an indexed entity moves it; the index's old version is shadowed.
    e.write(
        "c",
        vec![Op::Update(entity(
            "a",
            vec![6.0, 6.0, 6.0],
            meta(json!({"t": 3})),
        ))],
        WriteMode::Buffered,
        log.append(),
    )
    .unwrap();
    assert_eq!(search([6.0, 6.0, 6.0], 2), ["a", "b"]);
    assert_eq!(search([0.0, 0.0, 0.0], 2), ["b", "a"]);
    assert_eq!(
        e.get("c", "a").unwrap().unwrap().metadata,
        meta(json!({"t": 3}))
    );
    e.flush(FlushTrigger::Manual).unwrap();
    assert_eq!(search([0.0, 0.0, 0.0], 2), ["b", "a"]);
    assert_eq!(e.get("c", "a").unwrap().unwrap().vector, [6.0, 6.0, 6.0]);
    // Remove, buffered: gone from search and get at once, and after the flush.
    e.write(
        "c",
        vec![Op::Remove { pk: "b".into() }],
        WriteMode::Buffered,
        log.append(),
    )
    .unwrap();
    assert_eq!(search([5.0, 5.0, 5.0], 5), ["a"]);
    assert_eq!(e.get("c", "b").unwrap(), None);
    e.flush(FlushTrigger::Manual).unwrap();
    assert_eq!(search([5.0, 5.0, 5.0], 5), ["a"]);
    // Update or remove of a missing pk is refused before anything is logged.
    let before = log.records.borrow().len();
    let err = e
        .write(
            "c",
            vec![Op::Remove { pk: "b".into() }],
            WriteMode::Buffered,
            log.append(),
        )
        .unwrap_err();
    assert!(
        matches!(err, VectorError::NotFound { index: 0, .. }),
        "{err:?}"
    );
    let err = e
        .write(
            "c",
            vec![Op::Update(entity("zz", vec![1.0, 1.0, 1.0], Map::new()))],
            WriteMode::Direct,
            log.append(),
        )
        .unwrap_err();
    assert!(matches!(err, VectorError::NotFound { .. }), "{err:?}");
    let err = e
        .write(
            "c",
            vec![Op::Add(entity("x", vec![1.0, 1.0], Map::new()))],
            WriteMode::Direct,
            log.append(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            VectorError::Mismatched {
                field: "vector",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(log.records.borrow().len(), before);
}

#[test]
fn snapshot_plus_replay_answers_like_the_engine_that_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let dim = 16;
    let mut data = clustered(3020, dim, 3);
    let queries = data.split_off(3000);
    // Two searches per query whose answers are exact, so that two indexes built in another
    // order must agree: unfiltered with `ef` beyond the collection's size (an exact scan), and
    // a selective filter (answered by an exact scan of its matches).
    let answers = |e: &VectorEngine| -> Vec<Vec<(String, Map<String, Value>)>> {
        let filters = [None, Some(json!({"bucket": {"$in": [3, 50]}}))];
        queries
            .iter()
            .flat_map(|q| filters.iter().map(move |f| (q, f)))
            .map(|(q, f)| {
                e.search(
                    "c",
                    &SearchRequest {
                        vector: q.clone(),
                        k: 10,
                        ef: Some(4096),
                        filter: f.as_ref().map(|f| Filter::parse(f, "").unwrap()),
                        ..Default::default()
                    },
                )
                .unwrap()
                .into_iter()
                .map(|h| (h.pk, h.metadata))
                .collect()
            })
            .collect()
    };
    let expected = {
        let e = engine(dir.path());
        e.create_collection(collection("c", dim, Distance::Cosine), log.append())
            .unwrap();
        e.create_collection(collection("gone", 2, Distance::L2), log.append())
            .unwrap();
        load(&e, &log, &data[..2000], WriteMode::Buffered);
        e.flush(FlushTrigger::Manual).unwrap();
        assert!(e.snapshot(|_| Ok(())).unwrap().is_some());
        // After the snapshot: more adds, updates, removes, and a collection deleted.
        load(&e, &log, &data, WriteMode::Direct);
        for i in (0..3000).step_by(7) {
            e.write(
                "c",
                vec![Op::Remove {
                    pk: format!("p{i}"),
                }],
                WriteMode::Buffered,
                log.append(),
            )
            .unwrap();
        }
        e.delete_collection("gone", log.append()).unwrap();
        // Applied to the index (the log still holds it all after the snapshot): no buffered
        // pk shadows an indexed one, so searches take the same (exact) path as after replay.
        e.flush(FlushTrigger::Manual).unwrap();
        let entities: Vec<_> = (0..3000)
            .map(|i| e.get("c", &format!("p{i}")).unwrap())
            .collect();
        (answers(&e), entities)
    };
    let e = engine(dir.path());
    assert!(e.snapshot_lsn().get() > 0);
    log.replay_into(&e);
    for i in 0..3000 {
        let pk = format!("p{i}");
        assert_eq!(e.get("c", &pk).unwrap(), expected.1[i], "{pk}");
    }
    assert_eq!(answers(&e), expected.0);
    assert!(e.collection("gone").is_none());
    assert_eq!(
        e.collection("c").unwrap().vectors,
        3000 - 3000_u64.div_ceil(7)
    );
}

/// Removals (and updates, which remove the entity's previous vector) can leave entities the
/// graph no longer reaches; a search whose `ef` covers the whole collection scans it instead,
/// so its answer is the exact one.
#[test]
fn a_search_with_ef_covering_the_collection_is_exact_after_updates_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let log = Log::default();
    let dim = 8;
    let n = 3000;
    let mut data = clustered(n + 40, dim, 11);
    let queries = data.split_off(n);
    // A sparse graph (the smallest `M`, a narrow construction beam) that misses entities.
    let mut config = collection("c", dim, Distance::L2);
    config.hnsw = HnswParams {
        m: 2,
        ef_construction: 2,
        ef_search: 2,
    };
    e.create_collection(config, log.append()).unwrap();
    // Every entity is updated twice (its vector rotates through others' vectors), then three
    // in four are removed.
    let mut current: Vec<usize> = (0..n).collect();
    for round in 0..3 {
        let ops = (0..n)
            .map(|i| {
                current[i] = (i + round * 7) % n;
                Op::Add(entity(
                    &format!("p{i}"),
                    data[current[i]].clone(),
                    meta(json!({"bucket": i % 100})),
                ))
            })
            .collect();
        e.write("c", ops, WriteMode::Direct, log.append()).unwrap();
    }
    let removed = |i: usize| !i.is_multiple_of(4);
    let ops = (0..n)
        .filter(|i| removed(*i))
        .map(|i| Op::Remove {
            pk: format!("p{i}"),
        })
        .collect();
    e.write("c", ops, WriteMode::Direct, log.append()).unwrap();
    let live = e.collection("c").unwrap().vectors as usize;
    assert_eq!(live, n / 4);
    let now: Vec<Vec<f32>> = current.iter().map(|j| data[*j].clone()).collect();
    for q in &queries {
        for f in [None, Some(json!({"bucket": {"$lt": 50}}))] {
            let keep = |i: usize| !removed(i) && (f.is_none() || i % 100 < 50);
            let hits = e
                .search(
                    "c",
                    &SearchRequest {
                        vector: q.clone(),
                        k: 10,
                        ef: Some(live),
                        filter: f.as_ref().map(|f| Filter::parse(f, "").unwrap()),
                        ..Default::default()
                    },
                )
                .unwrap();
            let pks: Vec<String> = hits.into_iter().map(|h| h.pk).collect();
            assert_eq!(pks, brute_force(&now, q, 10, keep, Distance::L2), "{f:?}");
        }
    }
}

#[test]
fn replay_skips_operations_of_a_collection_deleted_before_the_snapshot_was_taken() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    {
        let e = engine(dir.path());
        e.create_collection(collection("d", 2, Distance::L2), log.append())
            .unwrap();
        e.create_collection(collection("c", 2, Distance::L2), log.append())
            .unwrap();
        // A buffered operation keeps the snapshot's bound below everything after it.
        e.write(
            "d",
            vec![Op::Add(entity("x", vec![1.0, 2.0], Map::new()))],
            WriteMode::Buffered,
            log.append(),
        )
        .unwrap();
        e.write(
            "c",
            vec![Op::Add(entity("y", vec![3.0, 4.0], Map::new()))],
            WriteMode::Direct,
            log.append(),
        )
        .unwrap();
        e.delete_collection("c", log.append()).unwrap();
        // `c` again, another dimension: operations of the old one must not reach it.
        e.create_collection(collection("c", 3, Distance::L2), log.append())
            .unwrap();
        e.write(
            "c",
            vec![Op::Add(entity("z", vec![1.0, 1.0, 1.0], Map::new()))],
            WriteMode::Direct,
            log.append(),
        )
        .unwrap();
        let bound = e.snapshot(|_| Ok(())).unwrap().unwrap();
        assert_eq!(bound, Lsn(2), "one below the oldest buffered operation");
    }
    let e = engine(dir.path());
    log.replay_into(&e);
    assert_eq!(e.get("d", "x").unwrap().unwrap().vector, [1.0, 2.0]);
    assert_eq!(e.get("c", "y").unwrap(), None);
    assert_eq!(e.get("c", "z").unwrap().unwrap().vector, [1.0, 1.0, 1.0]);
    assert_eq!(e.collection("c").unwrap().config.dimension, 3);
}

#[test]
fn a_direct_write_superseding_a_buffered_one_lets_snapshots_and_checkpoints_advance() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let e = engine(dir.path());
    e.create_collection(collection("c", 2, Distance::L2), log.append())
        .unwrap();
    e.write(
        "c",
        vec![Op::Add(entity("p", vec![1.0, 0.0], Map::new()))],
        WriteMode::Buffered,
        log.append(),
    )
    .unwrap();
    e.write(
        "c",
        vec![Op::Add(entity("p", vec![0.0, 1.0], Map::new()))],
        WriteMode::Direct,
        log.append(),
    )
    .unwrap();
    assert_eq!(e.ms_until_age_due(), None, "nothing is buffered any more");
    assert_eq!(e.due(), None);
    let last = Lsn(log.records.borrow().len() as u64);
    assert_eq!(e.snapshot(|_| Ok(())).unwrap(), Some(last));
    assert_eq!(
        e.persisted_bound(Lsn(99)),
        Lsn(99),
        "clean: any written LSN"
    );
    assert_eq!(e.get("c", "p").unwrap().unwrap().vector, [0.0, 1.0]);
    // A later flush must not bring the superseded buffered version back.
    e.flush(FlushTrigger::Manual).unwrap();
    assert_eq!(e.get("c", "p").unwrap().unwrap().vector, [0.0, 1.0]);
}

#[test]
fn the_snapshot_waits_for_the_wal_and_fails_without_committing_if_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let e = engine(dir.path());
    e.create_collection(collection("c", 2, Distance::L2), log.append())
        .unwrap();
    assert!(e.snapshot(|_| Err("no".into())).is_err());
    assert_eq!(e.snapshot_lsn(), Lsn(0));
    assert!(!dir.path().join("MANIFEST").exists());
    let mut asked = None;
    e.snapshot(|l| {
        asked = Some(l);
        Ok(())
    })
    .unwrap();
    assert_eq!(asked, Some(Lsn(1)));
}

#[test]
fn a_snapshot_never_installs_a_collection_created_after_its_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let at = sluice_wal::Lsn(5);
    let late = e.load_collection(collection("late", 4, Distance::L2), 7, at);
    assert!(late.is_err(), "{late:?}");
    e.load_collection(collection("early", 4, Distance::L2), 3, at)
        .unwrap();
    let ids: Vec<(String, u64)> = e
        .collections_with_ids()
        .into_iter()
        .map(|(c, id)| (c.name, id))
        .collect();
    assert_eq!(ids, [("early".to_string(), 3)]);
}

// ----- time: expiry, time ranges, decay -----

fn timed(pk: &str, v: Vec<f32>, ts: Option<i64>, exp: Option<i64>) -> Op {
    let mut e = entity(pk, v, Map::new());
    e.timestamp_ms = ts;
    e.expires_at_ms = exp;
    Op::Add(e)
}

fn pks(hits: &[sluice_vector::engine::SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.pk.clone()).collect()
}

#[test]
fn expired_entities_vanish_from_get_and_search_at_once_and_the_sweep_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let e = engine(dir.path());
    let mut c = collection("c", 2, Distance::L2);
    c.ttl_ms = Some(300);
    e.create_collection(c, log.append()).unwrap();
    let now = sluice_vector::engine::now_ms();
    let far = now + 3_600_000;
    // ttl from the collection (a), an explicit later expiry (b), and one buffered (c).
    e.write(
        "c",
        vec![timed("a", vec![0.0, 0.0], None, None)],
        WriteMode::Direct,
        log.append(),
    )
    .unwrap();
    e.write(
        "c",
        vec![timed("b", vec![0.1, 0.0], None, Some(far))],
        WriteMode::Direct,
        log.append(),
    )
    .unwrap();
    e.write(
        "c",
        vec![timed("c", vec![0.2, 0.0], None, None)],
        WriteMode::Buffered,
        log.append(),
    )
    .unwrap();
    let a = e.get("c", "a").unwrap().unwrap();
    let ttl_expiry = a.expires_at_ms.unwrap();
    assert!(
        (now + 300..=now + 1_000).contains(&ttl_expiry),
        "the ttl is filled in at write"
    );
    let search = |at: i64| {
        let req = SearchRequest {
            vector: vec![0.0, 0.0],
            k: 10,
            now_ms: Some(at),
            ..Default::default()
        };
        pks(&e.search("c", &req).unwrap())
    };
    assert_eq!(search(now), ["a", "b", "c"]);
    assert_eq!(
        search(ttl_expiry + 500),
        ["b"],
        "hidden by the clock, before any sweep"
    );
    std::thread::sleep(std::time::Duration::from_millis(
        (ttl_expiry + 600 - sluice_vector::engine::now_ms()).max(0) as u64,
    ));
    assert!(e.get("c", "a").unwrap().is_none() && e.get("c", "c").unwrap().is_none());
    assert!(e.get("c", "b").unwrap().is_some());
    let at = sluice_vector::engine::now_ms();
    let (_, n) = e.expire("c", at, 1000, log.append()).unwrap().unwrap();
    assert_eq!(n, 2, "one indexed and one buffered entity expired");
    assert!(
        e.expire("c", at, 1000, log.append()).unwrap().is_none(),
        "nothing left"
    );
    e.flush(FlushTrigger::Manual).unwrap();
    assert_eq!(
        e.collection("c").unwrap().vectors,
        1,
        "removed from the index"
    );
    // A replay of the log ends in the same state.
    let dir2 = tempfile::tempdir().unwrap();
    let e2 = engine(dir2.path());
    log.replay_into(&e2);
    assert_eq!(e2.collection("c").unwrap().vectors, 1);
    assert_eq!(e2.get("c", "b").unwrap().unwrap().expires_at_ms, Some(far));
}

#[test]
fn an_expire_never_removes_a_newer_write_of_the_same_pk() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let e = engine(dir.path());
    e.create_collection(collection("c", 2, Distance::L2), log.append())
        .unwrap();
    let now = sluice_vector::engine::now_ms();
    // x expired long ago in the index; then rewritten with a far expiry (buffered), and the
    // sweep's Expire (which looked before the rewrite) arrives after it.
    e.write(
        "c",
        vec![timed("x", vec![1.0, 0.0], None, Some(now - 10_000))],
        WriteMode::Direct,
        log.append(),
    )
    .unwrap();
    e.write(
        "c",
        vec![timed("y", vec![1.0, 0.0], None, Some(now - 10_000))],
        WriteMode::Direct,
        log.append(),
    )
    .unwrap();
    e.write(
        "c",
        vec![timed("x", vec![2.0, 0.0], Some(now), Some(now + 3_600_000))],
        WriteMode::Buffered,
        log.append(),
    )
    .unwrap();
    let expire = |pk: &str| Op::Expire {
        pk: pk.into(),
        at_ms: now,
    };
    e.write(
        "c",
        vec![expire("x"), expire("y")],
        WriteMode::Direct,
        log.append(),
    )
    .unwrap();
    e.flush(FlushTrigger::Manual).unwrap();
    assert_eq!(e.get("c", "x").unwrap().unwrap().vector, vec![2.0, 0.0]);
    assert_eq!(e.collection("c").unwrap().vectors, 1, "y is removed");
    // Replay resolves the same way, whether x's rewrite is still buffered or not.
    let dir2 = tempfile::tempdir().unwrap();
    let e2 = engine(dir2.path());
    log.replay_into(&e2);
    assert_eq!(e2.get("c", "x").unwrap().unwrap().vector, vec![2.0, 0.0]);
    assert_eq!(e2.collection("c").unwrap().vectors, 1);
    // Times survive a snapshot (its catalogue carries them).
    assert!(e.snapshot(|_| Ok(())).unwrap().is_some());
    drop(e);
    let e3 = engine(dir.path());
    e3.finish_replay().unwrap();
    let x = e3.get("c", "x").unwrap().unwrap();
    assert_eq!(
        (x.timestamp_ms, x.expires_at_ms),
        (Some(now), Some(now + 3_600_000))
    );
    let req = SearchRequest {
        vector: vec![2.0, 0.0],
        k: 1,
        time_range: Some(sluice_vector::TimeRange {
            from_ms: now,
            to_ms: now,
        }),
        ..Default::default()
    };
    assert_eq!(
        pks(&e3.search("c", &req).unwrap()),
        ["x"],
        "by_time rebuilt at load"
    );
}

/// Entities with times spread over [0, n) seconds; queries from the same distribution.
fn timed_load(e: &VectorEngine, log: &Log, data: &[Vec<f32>], mode: WriteMode) {
    for (chunk_no, chunk) in data.chunks(500).enumerate() {
        let ops = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let i = chunk_no * 500 + j;
                timed(&format!("p{i}"), v.clone(), Some(i as i64 * 1000), None)
            })
            .collect();
        e.write("c", ops, mode, log.append()).unwrap();
    }
}

#[test]
fn time_range_search_recall_at_10_against_brute_force_on_the_same_window() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let log = Log::default();
    let dim = 32;
    let n = 20_000;
    let mut data = clustered(n + 50, dim, 11);
    let queries = data.split_off(n);
    e.create_collection(collection("c", dim, Distance::Cosine), log.append())
        .unwrap();
    timed_load(&e, &log, &data[..n - 500], WriteMode::Direct);
    // The newest 500 stay buffered: searched by the exact scan, merged with the index's.
    let tail: Vec<Op> = (n - 500..n)
        .map(|i| {
            timed(
                &format!("p{i}"),
                data[i].clone(),
                Some(i as i64 * 1000),
                None,
            )
        })
        .collect();
    e.write("c", tail, WriteMode::Buffered, log.append())
        .unwrap();
    // Windows of 1 %, 10 % and 50 % (in the middle, so neither end is special).
    for share in [0.01, 0.1, 0.5] {
        let width = (n as f64 * share) as i64;
        let from = (n as i64 - width) / 2;
        let (from_ms, to_ms) = (from * 1000, (from + width - 1) * 1000);
        let mut found = 0;
        for q in &queries {
            let truth = brute_force(
                &data,
                q,
                10,
                |i| (from..from + width).contains(&(i as i64)),
                Distance::Cosine,
            );
            let req = SearchRequest {
                vector: q.clone(),
                k: 10,
                time_range: Some(sluice_vector::TimeRange { from_ms, to_ms }),
                ..Default::default()
            };
            let hits = e.search("c", &req).unwrap();
            assert_eq!(hits.len(), 10);
            for h in &hits {
                let t = h.timestamp_ms.unwrap();
                assert!(
                    (from_ms..=to_ms).contains(&t),
                    "{} at {t} is outside the window",
                    h.pk
                );
            }
            found += hits.iter().filter(|h| truth.contains(&h.pk)).count();
        }
        let recall = found as f64 / (10 * queries.len()) as f64;
        assert!(recall >= 0.95, "recall@10 {recall} for a {share} window");
    }
}

#[test]
fn decay_ranks_like_brute_force_over_every_entity() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let log = Log::default();
    let dim = 16;
    let n = 10_000;
    let mut data = clustered(n + 20, dim, 5);
    let queries = data.split_off(n);
    e.create_collection(collection("c", dim, Distance::Cosine), log.append())
        .unwrap();
    timed_load(&e, &log, &data, WriteMode::Direct);
    let now = n as i64 * 1000;
    for (weight, half_life) in [(0.05f32, 2_000_000.0), (0.3, 500_000.0), (2.0, 100_000.0)] {
        let decay = sluice_vector::Decay {
            half_life_ms: half_life,
            weight,
        };
        let mut found = 0;
        for q in &queries {
            let mut all: Vec<(f32, usize)> = (0..n)
                .map(|i| {
                    (
                        decay.rank(
                            Distance::Cosine.between(q, &data[i]),
                            now,
                            Some(i as i64 * 1000),
                        ),
                        i,
                    )
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            let truth: Vec<String> = all.iter().take(10).map(|(_, i)| format!("p{i}")).collect();
            let req = SearchRequest {
                vector: q.clone(),
                k: 10,
                decay: Some(decay),
                now_ms: Some(now),
                ..Default::default()
            };
            let hits = e.search("c", &req).unwrap();
            assert_eq!(hits.len(), 10);
            assert!(
                hits.windows(2).all(|w| w[0].rank <= w[1].rank),
                "ordered by rank"
            );
            found += hits.iter().filter(|h| truth.contains(&h.pk)).count();
        }
        let recall = found as f64 / (10 * queries.len()) as f64;
        assert!(
            recall >= 0.95,
            "recall@10 {recall} with weight {weight}, half-life {half_life}"
        );
    }
}

#[test]
fn expired_entities_count_as_absent_and_the_sweep_looks_past_live_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let e = engine(dir.path());
    e.create_collection(collection("c", 2, Distance::L2), log.append())
        .unwrap();
    let now = sluice_vector::engine::now_ms();
    let old = Some(now - 10_000);
    for pk in ["x", "y", "z"] {
        e.write(
            "c",
            vec![timed(pk, vec![1.0, 0.0], None, old)],
            WriteMode::Direct,
            log.append(),
        )
        .unwrap();
    }
    // Update and remove of an expired entity: not found, as a get says, before any sweep.
    let update = Op::Update(entity("y", vec![2.0, 0.0], Map::new()));
    let err = e
        .write("c", vec![update], WriteMode::Direct, log.append())
        .unwrap_err();
    assert!(matches!(err, VectorError::NotFound { .. }), "{err:?}");
    let remove = Op::Remove { pk: "z".into() };
    let err = e
        .write("c", vec![remove], WriteMode::Buffered, log.append())
        .unwrap_err();
    assert!(matches!(err, VectorError::NotFound { .. }), "{err:?}");
    // Expire operations are never mixed with other writes.
    let mixed = vec![
        Op::Add(entity("w", vec![1.0, 1.0], Map::new())),
        Op::Expire {
            pk: "w".into(),
            at_ms: now,
        },
    ];
    let err = e
        .write("c", mixed, WriteMode::Direct, log.append())
        .unwrap_err();
    assert!(
        matches!(err, VectorError::InvalidEntity { field: "op", .. }),
        "{err:?}"
    );
    // x is rewritten (live, buffered): a sweep of one looks past it and removes y.
    e.write(
        "c",
        vec![timed("x", vec![3.0, 0.0], None, None)],
        WriteMode::Buffered,
        log.append(),
    )
    .unwrap();
    let (_, n) = e.expire("c", now, 1, log.append()).unwrap().unwrap();
    assert_eq!(n, 1);
    let (_, n) = e.expire("c", now, 1, log.append()).unwrap().unwrap();
    assert_eq!(n, 1);
    assert!(
        e.expire("c", now, 1, log.append()).unwrap().is_none(),
        "only x is left, and live"
    );
    e.flush(FlushTrigger::Manual).unwrap();
    assert_eq!(e.collection("c").unwrap().vectors, 1);
    assert_eq!(e.get("c", "x").unwrap().unwrap().vector, vec![3.0, 0.0]);
}
