//! Replication and changefeeds against real processes on loopback: a primary and a
//! replica converge, a replica killed mid-stream converges after restart, re-sent and
//! corrupted batches, epochs and promotion, read-only replicas, stats against bytes sent, and
//! SSE changefeeds (order, resume, stalled subscribers).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::{Options, TestServer, point, wait_until};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest;

const CONVERGE: Duration = Duration::from_secs(60);

async fn replica_of(primary: &TestServer, id: &str, replica: &TestServer) {
    let (status, body) = primary
        .post_json(
            "/api/v1/replication/replicas",
            &json!({"replica_id": id, "endpoint": replica.base}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

fn replica_options() -> Options {
    Options {
        args: vec!["--role".into(), "replica".into()],
        ..Options::default()
    }
}

/// Waits until the replica has confirmed everything durable on the primary, in every database,
/// and the primary's positions stay put for three polls (writes acknowledged at `buffer` reach
/// the primary's WAL a few milliseconds after their answer).
async fn converged(primary: &TestServer) -> Value {
    let deadline = Instant::now() + CONVERGE;
    let (mut last, mut stable) = (Value::Null, 0);
    loop {
        let (status, stats) = primary.get_json("/api/v1/replication/stats").await;
        assert_eq!(status, 200);
        let r = &stats["replicas"][0];
        let dbs = r["databases"].as_array().unwrap();
        if !dbs.is_empty()
            && dbs.iter().all(|d| {
                d["confirmed_lsn"] == d["primary_lsn"] && d["primary_lsn"].as_u64() > Some(0)
            })
        {
            let positions: Value = dbs.iter().map(|d| d["primary_lsn"].clone()).collect();
            stable = if positions == last { stable + 1 } else { 0 };
            last = positions;
            if stable == 2 {
                return stats;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replica did not converge: {stats:#}\nprimary log:\n{}",
            primary.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything a node holds of the test's data, as one canonical JSON value and its SHA-256.
async fn state_of(
    node: &TestServer,
    dbs: &[&str],
    metrics: &[&str],
    pks: &[String],
) -> (Value, String) {
    let mut out = BTreeMap::new();
    for db in dbs {
        for m in metrics {
            let (status, body) = node
                .post_json(
                    &format!("/v1/databases/{db}/ts/query"),
                    &json!({"metric": m, "from_ms": 0, "to_ms": i64::MAX / 2}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            out.insert(format!("{db}/ts/{m}"), body);
        }
        for pk in pks {
            let r = node
                .client
                .get(node.url(&format!("/v1/databases/{db}/vectors/{pk}")))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            let v = if status == 200 { body } else { json!(status) };
            out.insert(format!("{db}/vec/{pk}"), v);
        }
    }
    let v = serde_json::to_value(out).unwrap();
    let hash = hex(&sha2::Sha256::digest(v.to_string().as_bytes()));
    (v, hash)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes a mix of every kind of record into `db` on `node`; `round` varies the data.
async fn ingest(node: &TestServer, db: &str, round: u32) -> Vec<String> {
    let p = |s: &str| format!("/v1/databases/{db}{s}");
    let base = 1_700_000_000_000i64 + i64::from(round) * 1_000_000;
    for b in 0..5 {
        let points: Vec<Value> = (0..50)
            .map(|i| {
                let mut pt = point("cpu", base + b * 1000 + i, (b * 50 + i) as f64 * 0.5);
                pt["entity"] = json!(format!("host{}", i % 5));
                pt["tags"] = json!({"dc": if i % 2 == 0 { "a" } else { "b" }});
                pt
            })
            .collect();
        let (s, body) = node
            .post_json(&p("/ts/put/batch"), &json!({ "points": points }))
            .await;
        assert_eq!(s, 200, "{body}");
    }
    for i in 0..20 {
        let (s, body) = node
            .post_json(&p("/ts/put/buffered"), &point("mem", base + i, i as f64))
            .await;
        assert_eq!(s, 200, "{body}");
    }
    let lines: String = (0..30)
        .map(|i| {
            format!(
                "disk,host=h{} used={}i {}\n",
                i % 3,
                i * 7,
                (base + i) * 1_000_000
            )
        })
        .collect();
    let r = node
        .client
        .post(node.url(&p("/write")))
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let mut pks = Vec::new();
    for i in 0..12u32 {
        let pk = format!("doc-{round}-{i}");
        let v = [i as f32, 1.0, (round as f32) + 0.5, (i % 3) as f32];
        let path = if i % 2 == 0 {
            "/vectors/add"
        } else {
            "/vectors/add/buffered"
        };
        let (s, body) = node
            .post_json(
                &p(path),
                &json!({"pk": pk, "vector": v, "metadata": {"i": i}}),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        pks.push(pk);
    }
    let (s, body) = node
        .post_json(
            &p("/vectors/update/buffered"),
            &json!({"pk": pks[1], "vector": [9.0, 9.0, 9.0, 9.0], "metadata": {"updated": true}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let r = node
        .client
        .delete(node.url(&p("/vectors/remove/buffered")))
        .json(&json!({"pk": pks[2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    pks
}

const METRICS: &[&str] = &["cpu", "mem", "disk_used"];

#[tokio::test]
async fn primary_and_replica_converge_and_the_replica_is_read_only() {
    let primary = TestServer::start().await;
    let replica = TestServer::start_with(replica_options()).await;
    let (s, body) = primary
        .post_json("/v1/databases", &json!({"name": "other"}))
        .await;
    assert_eq!(s, 201, "{body}");
    // Data written before the replica is registered is shipped too.
    let mut pks = ingest(&primary, "default", 0).await;
    replica_of(&primary, "r1", &replica).await;
    pks.extend(ingest(&primary, "default", 1).await);
    pks.extend(ingest(&primary, "other", 2).await);
    let stats = converged(&primary).await;

    let dbs = ["default", "other"];
    let (a, ha) = state_of(&primary, &dbs, METRICS, &pks).await;
    let (b, hb) = state_of(&replica, &dbs, METRICS, &pks).await;
    assert_eq!(a, b, "query results differ");
    assert_eq!(ha, hb);
    // The data really is there (not two empty states).
    assert_eq!(a["default/ts/cpu"]["series"].as_array().unwrap().len(), 10);
    assert_eq!(a["other/vec/doc-2-1"]["metadata"], json!({"updated": true}));
    assert_eq!(a["other/vec/doc-2-2"], json!(404));

    // Same LSN, same log: the changefeeds of both nodes are identical record for record.
    for db in dbs {
        let lsn = stats["replicas"][0]["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == db)
            .unwrap()["confirmed_lsn"]
            .as_u64()
            .unwrap();
        let path = format!("/v1/databases/{db}/changes?from_lsn=0");
        // A chunk may run past `lsn` (the primary may hold later records): compare up to it.
        let upto = |mut e: Vec<(u64, String, Value)>| {
            e.retain(|(id, _, _)| *id <= lsn);
            e
        };
        let ea = upto(events_until(&primary, &path, &[], lsn).await);
        let eb = upto(events_until(&replica, &path, &[], lsn).await);
        assert_eq!(
            ea.iter().map(|e| e.0).collect::<Vec<_>>(),
            (1..=lsn).collect::<Vec<_>>()
        );
        assert_eq!(ea, eb, "database {db}: the logs differ");
    }

    // Writes to the replica are refused, naming the primary; reads and flushes work.
    let (s, body) = replica.post_json("/ts/put", &point("cpu", 1, 1.0)).await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["code"], "read_only_replica");
    assert!(body["primary"].as_str().is_some(), "{body}");
    assert!(body["error_id"].as_str().is_some());
    let (s, _) = replica
        .post_json("/v1/collections", &json!({"name": "c2", "dimension": 3}))
        .await;
    assert_eq!(s, 409);
    let (s, _) = replica
        .post_json("/v1/databases", &json!({"name": "x"}))
        .await;
    assert_eq!(s, 409);
    let (s, _) = replica.post_json("/ts/buffer/flush", &json!({})).await;
    assert_eq!(s, 200);

    // The primary's stats match the bytes the replica received, and the metrics.
    let (_, ps) = primary.get_json("/api/v1/replication/stats").await;
    let (_, rs) = replica.get_json("/api/v1/replication/stats").await;
    let st = &ps["stats"];
    assert_eq!(st["failed_ships"], 0, "{ps:#}");
    assert!(st["total_batches"].as_u64().unwrap() > 0);
    assert_eq!(
        st["total_bytes_shipped"], rs["replica"]["bytes_received"],
        "{ps:#}\n{rs:#}"
    );
    assert_eq!(
        st["total_bytes_uncompressed"],
        rs["replica"]["bytes_uncompressed_received"]
    );
    let total_lsns: u64 = ps["replicas"][0]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["confirmed_lsn"].as_u64().unwrap())
        .sum();
    assert_eq!(st["total_entries_shipped"].as_u64(), Some(total_lsns));
    let ratio = st["avg_compression_ratio"].as_f64().unwrap();
    let expected = st["total_bytes_uncompressed"].as_f64().unwrap()
        / st["total_bytes_shipped"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9 && ratio > 1.0, "{st}");
    assert_eq!(
        primary.metric("wal_shipper_bytes_shipped_total").await,
        st["total_bytes_shipped"].as_f64()
    );
    assert_eq!(
        primary.metric("wal_shipper_batches_total").await,
        st["total_batches"].as_f64()
    );
    let r = &ps["replicas"][0];
    assert_eq!(r["replica_id"], "r1");
    assert_eq!(r["is_healthy"], true);
    assert_eq!(r["lag_bytes"], 0);
    assert_eq!(r["last_confirmed_lsn"].as_str().unwrap().len(), 16);
    assert_eq!(rs["role"], "replica");
}

#[tokio::test]
async fn a_replica_killed_mid_stream_converges_after_restart() {
    let primary = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    let replica = TestServer::start_in(&dir, replica_options()).await;
    let addr = replica.addr();
    replica_of(&primary, "r1", &replica).await;
    let mut pks = Vec::new();
    // Ingest while the replica dies.
    let writer = {
        let p = primary.base.clone();
        tokio::spawn(async move {
            let c = reqwest::Client::new();
            for b in 0..60i64 {
                let points: Vec<Value> = (0..100)
                    .map(|i| point("load", b * 100 + i, i as f64))
                    .collect();
                let r = c
                    .post(format!("{p}/ts/put/batch"))
                    .json(&json!({ "points": points }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    replica.kill9();
    pks.extend(ingest(&primary, "default", 7).await);
    writer.await.unwrap();
    // The primary keeps trying and reports the replica unhealthy meanwhile.
    wait_until("a failed ship", Duration::from_secs(20), || async {
        let (_, s) = primary.get_json("/api/v1/replication/stats").await;
        if s["stats"]["failed_ships"].as_u64() > Some(0) {
            Ok(())
        } else {
            Err(s)
        }
    })
    .await;
    let replica = TestServer::start_in(
        &dir,
        Options {
            args: vec![
                "--role".into(),
                "replica".into(),
                "--http-addr".into(),
                addr,
            ],
            ..Options::default()
        },
    )
    .await;
    converged(&primary).await;
    let metrics = ["load", "cpu", "mem", "disk_used"];
    let (a, ha) = state_of(&primary, &["default"], &metrics, &pks).await;
    let (b, hb) = state_of(&replica, &["default"], &metrics, &pks).await;
    assert_eq!(a, b);
    assert_eq!(ha, hb);
    let n: usize = a["default/ts/load"]["series"][0]["points"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n, 6000);
}

/// A batch as a primary would send it: `records` are (lsn, kind, payload).
fn batch(records: &[(u64, u8, Vec<u8>)], epoch: u64) -> Value {
    let mut raw = Vec::new();
    for (lsn, kind, payload) in records {
        sluice_wal::record::encode(
            &mut raw,
            sluice_wal::Lsn(*lsn),
            sluice_wal::Lsn(lsn - 1),
            sluice_wal::RecordKind(*kind),
            payload,
        );
    }
    let compressed = zstd::bulk::compress(&raw, 3).unwrap();
    json!({
        "primary_id": "primary-1",
        "compression": "zstd",
        "entries_compressed": base64::engine::general_purpose::STANDARD.encode(&compressed),
        "database": "default",
        "epoch": epoch,
        "first_lsn": records[0].0,
        "last_lsn": records.last().unwrap().0,
        "entries": records.len(),
        "uncompressed_bytes": raw.len(),
        "entries_crc32c": crc32c(&compressed),
    })
}

fn crc32c(b: &[u8]) -> u32 {
    // CRC-32C (Castagnoli), bitwise: the test's own, independent of the server's crate.
    let mut crc = !0u32;
    for &byte in b {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn points_record(metric: &str, ts: i64, value: f64) -> Vec<u8> {
    let p = sluice_ts::Point::new(
        metric.into(),
        "e".into(),
        ts,
        value,
        Vec::<(String, String)>::new(),
        &sluice_ts::PointLimits::default(),
    )
    .unwrap();
    sluice_ts::record::encode(&[p])
}

async fn apply(node: &TestServer, body: &Value) -> (u16, Value) {
    let r = node
        .client
        .post(node.url("/api/v1/wal/apply"))
        .header("x-primary-id", "primary-1")
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn count(node: &TestServer, metric: &str) -> usize {
    let (s, body) = node
        .post_json(
            "/ts/query",
            &json!({"metric": metric, "from_ms": 0, "to_ms": 1_000_000}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["points"].as_array().unwrap().len())
        .sum()
}

#[tokio::test]
async fn batches_apply_idempotently_and_gaps_corruption_and_stale_epochs_are_refused() {
    let replica = TestServer::start_with(replica_options()).await;
    let kind = sluice_ts::record::POINTS.0;
    let recs: Vec<(u64, u8, Vec<u8>)> = (1..=3)
        .map(|i| (i, kind, points_record("m", i as i64 * 10, i as f64)))
        .collect();
    let b = batch(&recs, 1);
    let (s, body) = apply(&replica, &b).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["entries_applied"], 3);
    assert_eq!(body["last_applied_lsn"], 3);
    assert!(body["compression_ratio"].as_f64().unwrap() > 0.0);
    assert!(body["decompression_time_ms"].as_f64().is_some());
    assert_eq!(count(&replica, "m").await, 3);

    // Re-sent: nothing changes.
    let (s, body) = apply(&replica, &b).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        (
            body["entries_applied"].as_u64(),
            body["entries_skipped"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(count(&replica, "m").await, 3);
    // Overlapping: only the new record is applied.
    let more: Vec<_> = (3..=4)
        .map(|i| (i, kind, points_record("m", i as i64 * 10, i as f64)))
        .collect();
    let (s, body) = apply(&replica, &batch(&more, 1)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["entries_applied"], 1);
    assert_eq!(count(&replica, "m").await, 4);

    // A gap is refused, naming where the log continues.
    let gap: Vec<_> = (10..=11)
        .map(|i| (i, kind, points_record("m", i as i64 * 10, 0.0)))
        .collect();
    let (s, body) = apply(&replica, &batch(&gap, 1)).await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["code"], "wal_gap");
    assert_eq!(body["expected_lsn"], 5);

    // Corruption in any layer is refused and applies nothing.
    let next: Vec<_> = (5..=6)
        .map(|i| (i, kind, points_record("m", i as i64 * 10, i as f64)))
        .collect();
    let good = batch(&next, 1);
    let mut bad_crc = good.clone();
    bad_crc["entries_crc32c"] = json!(good["entries_crc32c"].as_u64().unwrap() ^ 1);
    let mut raw = Vec::new();
    for (lsn, k, p) in &next {
        sluice_wal::record::encode(
            &mut raw,
            sluice_wal::Lsn(*lsn),
            sluice_wal::Lsn(lsn - 1),
            sluice_wal::RecordKind(*k),
            p,
        );
    }
    let n = raw.len();
    raw[n - 3] ^= 0x40; // inside the second record's payload: its own CRC no longer matches
    let compressed = zstd::bulk::compress(&raw, 3).unwrap();
    let mut bad_record = good.clone();
    bad_record["entries_compressed"] =
        json!(base64::engine::general_purpose::STANDARD.encode(&compressed));
    bad_record["entries_crc32c"] = json!(crc32c(&compressed));
    let mut bad_size = good.clone();
    bad_size["uncompressed_bytes"] = json!(good["uncompressed_bytes"].as_u64().unwrap() - 1);
    let mut bad_count = good.clone();
    bad_count["entries"] = json!(3);
    let mut bad_b64 = good.clone();
    bad_b64["entries_compressed"] = json!("%%%");
    for (what, b) in [
        ("crc", &bad_crc),
        ("record", &bad_record),
        ("size", &bad_size),
        ("count", &bad_count),
        ("base64", &bad_b64),
    ] {
        let (s, body) = apply(&replica, b).await;
        assert_eq!(s, 400, "{what}: {body}");
        assert_eq!(body["code"], "corrupt_batch", "{what}: {body}");
    }
    let (s, body) = apply(&replica, &json!({"primary_id": 1})).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(count(&replica, "m").await, 4);
    let (_, stats) = replica.get_json("/api/v1/replication/stats").await;
    assert_eq!(
        stats["replica"]["databases"][0]["applied_lsn"], 4,
        "{stats:#}"
    );
    let (s, _) = apply(&replica, &good).await;
    assert_eq!(s, 200);
    assert_eq!(count(&replica, "m").await, 6);

    // Epochs: a newer primary is followed, an older one refused.
    let (s, body) = apply(
        &replica,
        &batch(&[(7, kind, points_record("m", 70, 7.0))], 5),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = apply(
        &replica,
        &batch(&[(8, kind, points_record("m", 80, 8.0))], 4),
    )
    .await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["code"], "stale_epoch");
    // Another node shipping under the epoch this replica follows (two replicas promoted from
    // one primary): refused, nothing applied.
    let mut other = batch(&[(8, kind, points_record("m", 80, 8.0))], 5);
    other["primary_id"] = json!("primary-2");
    let (s, body) = apply(&replica, &other).await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["code"], "conflicting_primary");
    // LSN ranges that cannot be: 400, never an overflow.
    for (first, last) in [(0, 8), (8, u64::MAX), (9, 8)] {
        let mut b = batch(&[(8, kind, points_record("m", 80, 8.0))], 5);
        b["first_lsn"] = json!(first);
        b["last_lsn"] = json!(last);
        let (s, body) = apply(&replica, &b).await;
        assert_eq!(s, 400, "{first}..={last}: {body}");
        // Beyond int64 (the documented range of every integer) the body itself is invalid.
        let code = if last > i64::MAX as u64 {
            "invalid_field"
        } else {
            "corrupt_batch"
        };
        assert_eq!(body["code"], code, "{first}..={last}: {body}");
    }
    assert_eq!(count(&replica, "m").await, 7);

    // Promotion: writes accepted, shipped batches refused from now on, epoch above all seen.
    let (s, body) = replica
        .post_json("/api/v1/replication/promote", &json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["epoch"], 6);
    let (s, body) = apply(
        &replica,
        &batch(&[(8, kind, points_record("m", 80, 8.0))], 5),
    )
    .await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["code"], "stale_epoch");
    let (s, body) = apply(
        &replica,
        &batch(&[(8, kind, points_record("m", 80, 8.0))], 6),
    )
    .await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["code"], "not_a_replica");
    let (s, body) = replica.post_json("/ts/put", &point("m", 90, 9.0)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["lsn"], 8);
    assert_eq!(count(&replica, "m").await, 8);
    let (s, _) = replica
        .post_json("/api/v1/replication/promote", &json!({}))
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn a_promoted_replica_fences_its_old_primary() {
    let primary = TestServer::start().await;
    let replica = TestServer::start_with(replica_options()).await;
    replica_of(&primary, "r1", &replica).await;
    ingest(&primary, "default", 0).await;
    converged(&primary).await;
    let (s, body) = replica
        .post_json("/api/v1/replication/promote", &json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body["epoch"].as_u64().unwrap() >= 2);
    // The old primary keeps writing; its batches are refused and it marks the replica fenced.
    ingest(&primary, "default", 1).await;
    let s = wait_until(
        "the old primary to be fenced",
        Duration::from_secs(20),
        || async {
            let (_, s) = primary.get_json("/api/v1/replication/stats").await;
            if s["replicas"][0]["fenced"] == true {
                Ok(s)
            } else {
                Err(s)
            }
        },
    )
    .await;
    assert_eq!(s["replicas"][0]["is_healthy"], false);
    let (s, _) = replica.post_json("/ts/put", &point("after", 1, 1.0)).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn replicas_are_managed_persisted_and_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let primary = TestServer::start_in(&dir, Options::default()).await;
    for (body, field) in [
        (
            json!({"replica_id": "", "endpoint": "http://127.0.0.1:1"}),
            "replica_id",
        ),
        (
            json!({"replica_id": "a b", "endpoint": "http://127.0.0.1:1"}),
            "replica_id",
        ),
        (
            json!({"replica_id": "r", "endpoint": "ftp://x"}),
            "endpoint",
        ),
        (json!({"replica_id": "r"}), ""),
    ] {
        let (s, b) = primary
            .post_json("/api/v1/replication/replicas", &body)
            .await;
        assert_eq!(s, 400, "{b}");
        if !field.is_empty() {
            assert_eq!(b["field"], field, "{b}");
        }
    }
    let add = json!({"replica_id": "r9", "endpoint": "http://127.0.0.1:9"});
    assert_eq!(
        primary
            .post_json("/api/v1/replication/replicas", &add)
            .await
            .0,
        201
    );
    assert_eq!(
        primary
            .post_json("/api/v1/replication/replicas", &add)
            .await
            .0,
        200
    );
    let other = json!({"replica_id": "r9", "endpoint": "http://127.0.0.1:10"});
    assert_eq!(
        primary
            .post_json("/api/v1/replication/replicas", &other)
            .await
            .0,
        409
    );
    // Compression is configurable (the seed's configure_compression).
    let (s, b) = primary
        .post_json(
            "/api/v1/replication/config",
            &json!({"compression_type": "zstd", "level": 9}),
        )
        .await;
    assert_eq!((s, b["level"].as_i64()), (200, Some(9)), "{b}");
    let (s, b) = primary
        .post_json("/api/v1/replication/config", &json!({"level": 40}))
        .await;
    assert_eq!((s, b["field"].as_str()), (400, Some("level")), "{b}");
    let (s, b) = primary
        .post_json(
            "/api/v1/replication/config",
            &json!({"compression_type": "lz4"}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    // The unreachable replica is reported, not fatal.
    assert_eq!(
        primary.post_json("/ts/put", &point("x", 1, 1.0)).await.0,
        200
    );
    let s = wait_until(
        "the replica to turn unhealthy",
        Duration::from_secs(20),
        || async {
            let (_, s) = primary.get_json("/api/v1/replication/stats").await;
            if s["replicas"][0]["is_healthy"] == false {
                Ok(s)
            } else {
                Err(s)
            }
        },
    )
    .await;
    assert!(s["replicas"][0]["last_error"].as_str().is_some());
    assert_eq!(s["compression_level"], 9);
    primary.stop();
    let primary = TestServer::start_in(&dir, Options::default()).await;
    let (_, list) = primary.get_json("/api/v1/replication/replicas").await;
    assert_eq!(
        list["replicas"],
        json!([{"replica_id": "r9", "endpoint": "http://127.0.0.1:9"}])
    );
    let r = primary
        .client
        .delete(primary.url("/api/v1/replication/replicas/r9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = primary
        .client
        .delete(primary.url("/api/v1/replication/replicas/r9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (_, list) = primary.get_json("/api/v1/replication/replicas").await;
    assert_eq!(list["replicas"], json!([]));
}

/// SSE events `(id, event, data)` from `path` until the one with id `until`.
async fn events_until(
    node: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    until: u64,
) -> Vec<(u64, String, Value)> {
    let mut req = node.client.get(node.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.last().is_none_or(|(id, _, _)| *id < until) {
        let chunk = tokio::time::timeout_at(deadline.into(), r.chunk())
            .await
            .expect("events in time")
            .unwrap()
            .expect("stream open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let (mut id, mut name, mut data) = (None, String::new(), Value::Null);
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse::<u64>().unwrap());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap();
                }
            }
            if let Some(id) = id {
                out.push((id, name, data));
            }
        }
    }
    out
}

#[tokio::test]
async fn changefeeds_deliver_every_change_in_order_and_resume_exactly() {
    let node = TestServer::start().await;
    for i in 0..40 {
        let (s, _) = node.post_json("/ts/put", &point("feed", i, i as f64)).await;
        assert_eq!(s, 200);
    }
    let (s, _) = node
        .post_json(
            "/vectors/add",
            &json!({"pk": "a", "vector": [1.0, 2.0], "metadata": {"x": 1}}),
        )
        .await;
    assert_eq!(s, 200);
    // 40 point records, then the default collection's creation and the add.
    let all = events_until(&node, "/v1/databases/default/changes?from_lsn=0", &[], 42).await;
    let ids: Vec<u64> = all.iter().map(|e| e.0).collect();
    assert_eq!(ids, (1..=42).collect::<Vec<_>>());
    for (i, (id, event, data)) in all.iter().take(40).enumerate() {
        assert_eq!(event, "points");
        assert_eq!(data["lsn"].as_u64(), Some(*id));
        assert_eq!(data["points"][0]["metric"], "feed");
        assert_eq!(data["points"][0]["value"].as_f64(), Some(i as f64));
    }
    assert_eq!(all[40].1, "collection");
    assert_eq!(all[41].1, "vectors");
    assert_eq!(all[41].2["ops"][0]["pk"], "a");

    // Resuming from the last id seen misses nothing and repeats nothing (query or header).
    let rest = events_until(&node, "/v1/databases/default/changes?from_lsn=17", &[], 42).await;
    assert_eq!(rest, all[17..].to_vec());
    let rest = events_until(
        &node,
        "/v1/databases/default/changes",
        &[("Last-Event-ID", "30")],
        42,
    )
    .await;
    assert_eq!(rest, all[30..].to_vec());
    // A live subscriber sees new writes.
    let live = {
        let url = node.url("/v1/databases/default/changes");
        let client = node.client.clone();
        tokio::spawn(async move {
            let mut r = client.get(url).send().await.unwrap();
            let mut text = String::new();
            while !text.contains("live-metric") {
                text.push_str(std::str::from_utf8(&r.chunk().await.unwrap().unwrap()).unwrap());
            }
            text
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, _) = node
        .post_json("/ts/put", &point("live-metric", 1, 1.0))
        .await;
    assert_eq!(s, 200);
    let text = tokio::time::timeout(Duration::from_secs(10), live)
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("id: 43\n"), "{text}");
    // Bad positions and databases.
    let r = node
        .client
        .get(node.url("/v1/databases/default/changes?from_lsn=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = node
        .client
        .get(node.url("/v1/databases/default/changes"))
        .header("Last-Event-ID", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = node
        .client
        .get(node.url("/v1/databases/nope/changes?from_lsn=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// SIGTERM with a changefeed open: the stream ends at the start of the drain (the subscriber
/// resumes from its last id), so the server exits cleanly long before the grace period.
#[tokio::test(flavor = "multi_thread")]
async fn an_open_changefeed_does_not_hold_the_graceful_shutdown() {
    use futures_util::StreamExt;
    let node =
        TestServer::start_with(Options::default().env("SLUICE_HTTP_SHUTDOWN_GRACE_MS", "600000"))
            .await;
    let (s, _) = node.post_json("/ts/put", &point("m", 1, 1.0)).await;
    assert_eq!(s, 200);
    let r = node
        .client
        .get(node.url("/v1/databases/default/changes?from_lsn=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"id: 1\n"), "{first:?}");
    let rest = tokio::spawn(async move {
        let mut n = 0;
        while let Some(chunk) = body.next().await {
            chunk.expect("the stream ends cleanly, not cut");
            n += 1;
        }
        n
    });
    // Exits within the harness's 30 s, against a grace of ten minutes.
    let status = tokio::task::spawn_blocking(move || node.stop())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    tokio::time::timeout(Duration::from_secs(10), rest)
        .await
        .expect("the stream ended")
        .unwrap();
}

#[tokio::test]
async fn a_stalled_subscriber_is_disconnected_without_affecting_ingest() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = TestServer::start_with(
        Options::default().env("SLUICE_REPLICATION_CHANGEFEED_STALL_TIMEOUT_MS", "500"),
    )
    .await;
    let mut sock = tokio::net::TcpStream::connect(node.addr()).await.unwrap();
    sock.write_all(b"GET /v1/databases/default/changes?from_lsn=0 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read; write far more than the socket buffers hold. Every write stays fast.
    let big: Vec<Value> = (0..2000)
        .map(|i| {
            let mut p = point("stall", i, i as f64);
            p["tags"] = json!({"pad": "x".repeat(100)});
            p
        })
        .collect();
    let started = Instant::now();
    for _ in 0..80 {
        let (s, body) = node
            .post_json("/ts/put/batch?ack=wal", &json!({ "points": big }))
            .await;
        assert_eq!(s, 200, "{body}");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    // Longer than the stall timeout: the feed has been stuck since the buffers filled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The server gives up on the subscriber and closes its connection: reading now drains
    // what was in flight, then ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0usize;
    loop {
        match tokio::time::timeout_at(deadline.into(), sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the stalled subscriber was not disconnected ({total} bytes read)"),
        }
    }
    assert!(total > 0);
    let (s, _) = node.post_json("/ts/put", &point("after", 1, 1.0)).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_replica_whose_wal_is_gone_catches_up_by_snapshot() {
    // 1 MiB segments: flushes checkpoint and delete the early ones.
    // Vector snapshots after a few operations, so the vectors do not hold the checkpoint back.
    let small = Options::default()
        .env("SLUICE_WAL_SEGMENT_SIZE_BYTES", "1048576")
        .env("SLUICE_VECTOR_SNAPSHOT_AFTER_OPS", "5")
        .env("SLUICE_VECTOR_SNAPSHOT_INTERVAL_MS", "300")
        .env("SLUICE_VECTOR_AUTO_BUFFER_FLUSH_INTERVAL_MS", "200");
    let primary = TestServer::start_with(small).await;
    let mut pks = ingest(&primary, "default", 0).await;
    let pad = "p".repeat(200);
    for b in 0..60i64 {
        let points: Vec<Value> = (0..200)
            .map(|i| {
                let mut p = point("bulk", b * 200 + i, (b * 200 + i) as f64);
                // A series per point (records group a series' points): ~44 KB a batch.
                p["tags"] = json!({"pad": pad, "k": format!("{}", i)});
                p
            })
            .collect();
        let (s, body) = primary
            .post_json("/ts/put/batch", &json!({ "points": points }))
            .await;
        assert_eq!(s, 200, "{body}");
    }
    // Removed before the copy: must stay removed on the replica.
    let r = primary
        .client
        .delete(primary.url(&format!("/vectors/{}", pks[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = primary.post_json("/ts/buffer/flush", &json!({})).await;
    assert_eq!(s, 200);
    // The first records are gone from the primary's WAL (the changefeed says so too; from 0
    // it starts at the oldest record still there).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = primary
            .client
            .get(primary.url("/v1/databases/default/changes?from_lsn=1"))
            .send()
            .await
            .unwrap();
        if r.status() == 410 {
            assert_eq!(r.json::<Value>().await.unwrap()["code"], "lsn_gone");
            let r = primary
                .client
                .get(primary.url("/v1/databases/default/changes?from_lsn=0"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the primary kept its first WAL segment"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    let replica = TestServer::start_in(&dir, replica_options()).await;
    let addr = replica.addr();
    replica_of(&primary, "r1", &replica).await;
    converged(&primary).await;
    // Writes after the snapshot are shipped as WAL.
    pks.extend(ingest(&primary, "default", 1).await);
    let stats = converged(&primary).await;
    assert_eq!(stats["replicas"][0]["snapshots_sent"], 1, "{stats:#}");
    let metrics = ["cpu", "mem", "disk_used", "bulk"];
    let (a, ha) = state_of(&primary, &["default"], &metrics, &pks).await;
    let (b, hb) = state_of(&replica, &["default"], &metrics, &pks).await;
    assert_eq!(a, b);
    assert_eq!(ha, hb);
    assert_eq!(a[format!("default/vec/{}", pks[0])], json!(404));
    let bulk: usize = a["default/ts/bulk"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["points"].as_array().unwrap().len())
        .sum();
    assert_eq!(bulk, 12000);
    let (_, rs) = replica.get_json("/api/v1/replication/stats").await;
    assert_eq!(rs["replica"]["snapshots_installed"], 1, "{rs:#}");

    // The snapshot is durable on the replica: a restart keeps it and shipping continues.
    assert!(replica.stop().success());
    let replica = TestServer::start_in(
        &dir,
        Options {
            args: vec![
                "--role".into(),
                "replica".into(),
                "--http-addr".into(),
                addr,
            ],
            ..Options::default()
        },
    )
    .await;
    let (s, _) = primary
        .post_json("/ts/put", &point("bulk", 999_999, 1.0))
        .await;
    assert_eq!(s, 200);
    converged(&primary).await;
    let (a, _) = state_of(&primary, &["default"], &metrics, &pks).await;
    let (b, _) = state_of(&replica, &["default"], &metrics, &pks).await;
    assert_eq!(a, b);
}

async fn post_snapshot(node: &TestServer, lsn: u64, ndjson: &str) -> (u16, Value) {
    let r = node
        .client
        .post(node.url(&format!(
            "/api/v1/replication/snapshot?database=default&lsn={lsn}"
        )))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "zstd")
        .header("x-primary-epoch", "1")
        .header("x-primary-id", "primary-1")
        .body(zstd::bulk::compress(ndjson.as_bytes(), 3).unwrap())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_truncated_snapshot_is_refused_and_discarded_at_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    let replica = TestServer::start_in(&dir, replica_options()).await;
    let points = r#"{"points":[{"metric":"m","entity":"e","timestamp_ms":10,"value":1.5}]}"#;
    let (s, body) = post_snapshot(
        &replica,
        5,
        &format!("{points}\n{{\"end\":{{\"points\":1,\"entities\":0}}}}\n"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["last_applied_lsn"], 5);
    assert_eq!(count(&replica, "m").await, 1);
    // The log continues after the snapshot's LSN.
    let kind = sluice_ts::record::POINTS.0;
    let (s, body) = apply(
        &replica,
        &batch(&[(6, kind, points_record("m", 20, 2.0))], 1),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(count(&replica, "m").await, 2);
    // Bad snapshots: refused; a truncated one leaves the database marked unfinished.
    let (s, body) = post_snapshot(&replica, 9, "{\"points\": 5}\n").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (400, Some("corrupt_snapshot")),
        "{body}"
    );
    // The refused copy left an empty database at LSN 0, not a partial one claiming LSN 9.
    let (_, stats) = replica.get_json("/api/v1/replication/stats").await;
    assert_eq!(
        stats["replica"]["databases"][0]["applied_lsn"], 0,
        "{stats:#}"
    );
    assert_eq!(count(&replica, "m").await, 0);
    let (s, body) = apply(
        &replica,
        &batch(&[(10, kind, points_record("m", 30, 3.0))], 1),
    )
    .await;
    assert_eq!((s, body["expected_lsn"].as_u64()), (409, Some(1)), "{body}");
    let (s, body) = post_snapshot(&replica, 9, &format!("{points}\n")).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (400, Some("corrupt_snapshot")),
        "{body}"
    );
    let (s, _) = post_snapshot(
        &replica,
        9,
        &format!("{points}\n{{\"end\":{{\"points\":2,\"entities\":0}}}}\n"),
    )
    .await;
    assert_eq!(s, 400);
    // A crash in the middle of a load: the marker makes the next start discard the database.
    std::fs::write(dir.join("databases/default/SNAPSHOT_INCOMPLETE"), b"").unwrap();
    let (s, _) = post_snapshot(
        &replica,
        5,
        &format!("{points}\n{{\"end\":{{\"points\":1,\"entities\":0}}}}\n"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(count(&replica, "m").await, 1);
    std::fs::write(dir.join("databases/default/SNAPSHOT_INCOMPLETE"), b"").unwrap();
    replica.kill9();
    let replica = TestServer::start_in(&dir, replica_options()).await;
    assert_eq!(count(&replica, "m").await, 0);
    let (_, stats) = replica.get_json("/api/v1/replication/stats").await;
    assert_eq!(
        stats["replica"]["databases"][0]["applied_lsn"], 0,
        "{stats:#}"
    );
    // A primary refuses snapshots.
    let primary = TestServer::start().await;
    let (s, body) = post_snapshot(&primary, 1, "").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (409, Some("not_a_replica")),
        "{body}"
    );
}

/// A well-formed record the replica's engine cannot take (here a collection of dimension 0)
/// is refused with the whole batch before anything is logged: 422 `record_refused`, never a
/// 500, and never skipped on a retry as if it were held.
#[tokio::test]
async fn a_record_the_replica_cannot_apply_is_refused_not_skipped() {
    let replica = TestServer::start_with(replica_options()).await;
    let points = sluice_ts::record::POINTS.0;
    let collection = 3u8; // the vector engine's collection-change record kind
    let bad = serde_json::to_vec(
        &json!({"create": {"name": "c", "dimension": 0, "distance": "l2",
        "precision": "f32", "hnsw": {"m": 16, "ef_construction": 64, "ef_search": 64}}}),
    )
    .unwrap();
    let recs = vec![
        (1, points, points_record("m", 10, 1.0)),
        (2, collection, bad),
        (3, points, points_record("m", 30, 3.0)),
    ];
    let b = batch(&recs, 1);
    for attempt in 0..2 {
        let (s, body) = apply(&replica, &b).await;
        assert_eq!(s, 422, "attempt {attempt}: {body}");
        assert_eq!(body["code"], "record_refused", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("dimension"),
            "{body}"
        );
        assert_eq!(
            count(&replica, "m").await,
            0,
            "nothing of the batch is applied"
        );
    }
    // The replica's log did not move: the batch's first record is still the next it takes.
    let (s, body) = apply(&replica, &batch(&recs[..1], 1)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["entries_applied"], 1);
    assert_eq!(count(&replica, "m").await, 1);
}

/// The Rust client's `apply_wal_batch` (the seed's `ApplyWALBatch`) with a batch built by
/// `wal_batch`, compressed or not: applied once, skipped when sent again.
#[tokio::test]
async fn the_rust_client_ships_wal_batches_it_builds() {
    use sluice_client::{BatchCompression, Client, wal_batch};
    let replica = TestServer::start_with(replica_options()).await;
    let client = Client::new(&replica.base).unwrap();
    let kind = sluice_ts::record::POINTS;
    let records = |lsns: std::ops::RangeInclusive<u64>| {
        let mut raw = Vec::new();
        for lsn in lsns {
            sluice_wal::record::encode(
                &mut raw,
                sluice_wal::Lsn(lsn),
                sluice_wal::Lsn(lsn - 1),
                kind,
                &points_record("shipped", lsn as i64, lsn as f64),
            );
        }
        raw
    };
    let first = wal_batch(
        "primary-1",
        "default",
        1,
        1,
        3,
        3,
        &records(1..=3),
        BatchCompression::Zstd(3),
    )
    .unwrap();
    let applied = client.apply_wal_batch(&first).await.unwrap();
    assert!(applied.success);
    assert_eq!((applied.entries_applied, applied.last_applied_lsn), (3, 3));
    let again = client.apply_wal_batch(&first).await.unwrap();
    assert_eq!((again.entries_applied, again.entries_skipped), (0, 3));
    let plain = wal_batch(
        "primary-1",
        "default",
        1,
        4,
        5,
        2,
        &records(4..=5),
        BatchCompression::None,
    )
    .unwrap();
    assert_eq!(
        client
            .apply_wal_batch(&plain)
            .await
            .unwrap()
            .entries_applied,
        2
    );
    assert_eq!(count(&replica, "shipped").await, 5);
    // A batch that does not continue the log is a typed error naming where it continues.
    let gap = wal_batch(
        "primary-1",
        "default",
        1,
        9,
        9,
        1,
        &records(9..=9),
        BatchCompression::None,
    )
    .unwrap();
    match client.apply_wal_batch(&gap).await {
        Err(sluice_client::Error::Api { status, body, .. }) => {
            assert_eq!(status, 409);
            assert_eq!(body.expected_lsn, Some(6));
        }
        other => panic!("{other:?}"),
    }
}
