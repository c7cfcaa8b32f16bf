//! The time-series engine over HTTP against a real server: seed shapes, flush triggers,
//! queries checked against values computed here, concurrency, and durability across restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{Options, TestServer, point, wait_until};
use serde_json::{Value, json};

async fn query(s: &TestServer, body: Value) -> Vec<Value> {
    let (status, r) = s.post_json("/ts/query", &body).await;
    assert_eq!(status, 200, "{body} → {r}");
    r["series"].as_array().unwrap().clone()
}

fn points_of(series: &Value) -> Vec<(i64, f64)> {
    series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

async fn stats(s: &TestServer) -> Value {
    let (status, v) = s.get_json("/ts/buffer/stats").await;
    assert_eq!(status, 200);
    v
}

/// Polls the stats until `pred` holds (deadline 20 s).
async fn wait_stats(s: &TestServer, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, Duration::from_secs(20), || async {
        let v = stats(s).await;
        if pred(&v) { Ok(v) } else { Err(v) }
    })
    .await
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn seed_shapes_of_buffered_put_stats_and_flush() {
    let s = TestServer::start().await;
    let body = json!({"metric": "cpu_usage", "entity": "server01", "timestamp_ms": 1702645200000i64, "value": 75.5,
                      "tags": {"datacenter": "eu-west-1", "environment": "production"}});
    let (status, r) = s.post_json("/ts/put/buffered", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        r,
        json!({"success": true, "buffered": true, "buffer_size": 1})
    );

    let st = stats(&s).await;
    assert_eq!(
        keys(&st),
        [
            "auto_flush_count",
            "avg_compression_ratio",
            "current_buffer_memory",
            "current_buffer_size",
            "flush_count",
            "last_flush_time",
            "manual_flush_count",
            "points_buffered",
            "points_flushed"
        ]
    );
    assert_eq!(st["points_buffered"], 1);
    assert_eq!(st["current_buffer_size"], 1);
    assert!(st["current_buffer_memory"].as_u64().unwrap() > 0);
    assert_eq!(st["last_flush_time"], Value::Null);

    let (status, r) = s.post_json("/ts/buffer/flush", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(r, json!({"success": true, "points_flushed": 1}));
    let st = stats(&s).await;
    assert_eq!(
        (
            st["flush_count"].as_u64(),
            st["manual_flush_count"].as_u64(),
            st["auto_flush_count"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(
        (
            st["points_flushed"].as_u64(),
            st["current_buffer_size"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert!(st["avg_compression_ratio"].as_f64().unwrap() > 0.0);
    let t = st["last_flush_time"].as_str().unwrap();
    assert!(
        t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
        "{t}"
    );

    let text = s.metrics_text().await;
    for line in [
        r#"ts_auto_buffer_points_buffered_total{db="default"} 1"#,
        r#"ts_auto_buffer_points_flushed_total{db="default"} 1"#,
        r#"ts_auto_buffer_flush_count_total{db="default"} 1"#,
        r#"ts_auto_buffer_current_size{db="default"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line}");
    }
    assert!(text.contains(r#"ts_auto_buffer_compression_ratio{db="default"} "#));
}

#[tokio::test]
async fn count_trigger_flushes_automatically() {
    let s =
        TestServer::start_with(Options::default().env("SLUICE_TS_AUTO_BUFFER_MAX_POINTS", "10"))
            .await;
    for i in 0..10 {
        assert_eq!(
            s.post_json("/ts/put/buffered", &point("m", i, 1.0)).await.0,
            200
        );
    }
    let st = wait_stats(&s, "a count flush", |v| v["points_flushed"] == 10).await;
    assert_eq!(st["auto_flush_count"], st["flush_count"]);
    assert_eq!(st["manual_flush_count"], 0);
}

#[tokio::test]
async fn age_trigger_flushes_automatically() {
    let s = TestServer::start_with(
        Options::default().env("SLUICE_TS_AUTO_BUFFER_FLUSH_INTERVAL_MS", "200"),
    )
    .await;
    assert_eq!(
        s.post_json("/ts/put/buffered", &point("m", 1, 1.0)).await.0,
        200
    );
    let st = wait_stats(&s, "an age flush", |v| v["points_flushed"] == 1).await;
    assert_eq!(st["auto_flush_count"], 1);
}

#[tokio::test]
async fn memory_trigger_flushes_automatically() {
    let s = TestServer::start_with(
        Options::default().env("SLUICE_TS_AUTO_BUFFER_MAX_BUFFER_BYTES", "2000"),
    )
    .await;
    let batch: Vec<Value> = (0..200).map(|i| point("m", i, 1.0)).collect();
    assert_eq!(
        s.post_json("/ts/put/batch", &json!({"points": batch}))
            .await
            .0,
        200
    );
    let st = wait_stats(&s, "a memory flush", |v| v["points_flushed"] == 200).await;
    assert_eq!(st["manual_flush_count"], 0);
}

#[tokio::test]
async fn buffer_overflow_answers_the_seed_body_with_503() {
    let s = TestServer::start_with(
        Options::default()
            .env("SLUICE_TS_AUTO_BUFFER_MAX_BUFFER_BYTES", "4000")
            .env(
                "SLUICE_FEATURES_TS_AUTO_BUFFER_OVERFLOW_BUFFER_BYTES",
                "4001",
            ),
    )
    .await;
    let batch: Vec<Value> = (0..300).map(|i| point("m", i, 1.0)).collect();
    let mut overflow = None;
    for round in 0..2000 {
        let r = s
            .client
            .post(s.url("/ts/put/buffered"))
            .json(&point("m", 10_000 + round, 1.0))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            assert_eq!(r.headers()["retry-after"], "1");
            overflow = Some(r.json::<Value>().await.unwrap());
            break;
        }
        // Batches fill the buffer faster than the flusher drains it.
        let _ = s
            .post_json("/ts/put/batch?ack=buffer", &json!({"points": batch}))
            .await;
    }
    let body = overflow.expect("the buffer never overflowed");
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "Buffer overflow");
    assert!(body["buffer_size"].as_u64().is_some(), "{body}");
    assert_eq!(body["code"], "buffer_overflow");
    assert!(body["error_id"].as_str().is_some());
}

#[tokio::test]
async fn disabled_auto_buffer_makes_buffered_puts_direct() {
    let s =
        TestServer::start_with(Options::default().env("SLUICE_TS_AUTO_BUFFER_ENABLED", "false"))
            .await;
    let (status, r) = s.post_json("/ts/put/buffered", &point("m", 1, 1.0)).await;
    assert_eq!(status, 200);
    assert_eq!(r["buffered"], false);
    // Acknowledged at fsync: the WAL is durable up to it.
    assert!(s.metric(r#"wal_fsyncs_total{db="default"}"#).await.unwrap() >= 1.0);
}

/// 3 entities × 2 datacenters of a metric, 60 points each, every 1000 ms, half flushed.
async fn load_fixture(s: &TestServer) -> BTreeMap<(String, String), Vec<(i64, f64)>> {
    let mut expected: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    let mut batch = Vec::new();
    for e in 0..3 {
        for dc in ["eu", "us"] {
            for i in 0..60i64 {
                let ts = 1_000_000 + i * 1000;
                let v = (e * 100 + i) as f64 + if dc == "us" { 0.5 } else { 0.0 };
                batch.push(json!({"metric": "load", "entity": format!("h{e}"), "timestamp_ms": ts, "value": v,
                                  "tags": {"dc": dc, "role": if e == 2 { "db" } else { "web" }}}));
                expected
                    .entry((format!("h{e}"), dc.to_string()))
                    .or_default()
                    .push((ts, v));
            }
        }
    }
    let (first, second) = batch.split_at(batch.len() / 2);
    assert_eq!(
        s.post_json("/ts/put/batch", &json!({"points": first}))
            .await
            .0,
        200
    );
    assert_eq!(s.post_json("/ts/buffer/flush", &json!({})).await.0, 200);
    assert_eq!(
        s.post_json("/ts/put/batch?ack=buffer", &json!({"points": second}))
            .await
            .0,
        200
    );
    expected
}

#[tokio::test]
async fn queries_match_values_computed_here() {
    let s = TestServer::start().await;
    let expected = load_fixture(&s).await;
    let all = |from: i64, to: i64| json!({"metric": "load", "from_ms": from, "to_ms": to});

    // Raw, merging flushed chunks and the buffer, ordered by entity then tags.
    let series = query(&s, all(0, i64::MAX)).await;
    assert_eq!(series.len(), 6);
    for (sr, ((e, dc), pts)) in series.iter().zip(&expected) {
        assert_eq!(&sr["entity"], e.as_str());
        assert_eq!(&sr["tags"]["dc"], dc.as_str());
        assert_eq!(&points_of(sr), pts);
    }

    // Inclusive range.
    let series = query(&s, json!({"metric": "load", "entity": "h1", "tags": {"dc": "eu"}, "from_ms": 1_010_000, "to_ms": 1_012_000})).await;
    assert_eq!(
        points_of(&series[0]),
        vec![(1_010_000, 110.0), (1_011_000, 111.0), (1_012_000, 112.0)]
    );

    // Matchers: !=, regex on tags and on the entity, negative regex.
    let names = |series: &[Value]| {
        series
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s["entity"].as_str().unwrap(),
                    s["tags"]["dc"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    let m = |ms: Value| json!({"metric": "load", "from_ms": 0, "to_ms": i64::MAX, "matchers": ms});
    assert_eq!(
        names(&query(&s, m(json!([{"tag": "dc", "op": "!=", "value": "eu"}]))).await),
        ["h0/us", "h1/us", "h2/us"]
    );
    assert_eq!(names(&query(&s, m(json!([{"tag": "entity", "op": "=~", "value": "h[01]"}, {"tag": "dc", "op": "=", "value": "us"}]))).await), ["h0/us", "h1/us"]);
    assert_eq!(
        names(&query(&s, m(json!([{"tag": "role", "op": "!~", "value": "w.*"}]))).await),
        ["h2/eu", "h2/us"]
    );
    assert!(
        query(&s, m(json!([{"tag": "dc", "op": "=~", "value": "e"}])))
            .await
            .is_empty(),
        "regexes are anchored"
    );

    // Every aggregation per 10 s step, against a computation here.
    let pts = &expected[&("h1".to_string(), "us".to_string())];
    for agg in ["min", "max", "sum", "avg", "count", "first", "last"] {
        let series = query(&s, json!({"metric": "load", "entity": "h1", "tags": {"dc": "us"}, "from_ms": 1_000_000, "to_ms": 1_059_999,
                                      "aggregation": agg, "step_ms": 10_000})).await;
        let got = points_of(&series[0]);
        let want: Vec<(i64, f64)> = pts
            .chunks(10)
            .enumerate()
            .map(|(k, c)| {
                let vals: Vec<f64> = c.iter().map(|p| p.1).collect();
                let v = match agg {
                    "min" => vals.iter().cloned().fold(f64::INFINITY, f64::min),
                    "max" => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                    "sum" => vals.iter().sum(),
                    "avg" => vals.iter().sum::<f64>() / vals.len() as f64,
                    "count" => vals.len() as f64,
                    "first" => vals[0],
                    _ => vals[vals.len() - 1],
                };
                (1_000_000 + k as i64 * 10_000, v)
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{agg}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0, "{agg}");
            assert!((g.1 - w.1).abs() < 1e-9, "{agg}: {g:?} vs {w:?}");
        }
    }

    // Group by dc: sum across entities over the whole range; by entity: count.
    let series = query(&s, json!({"metric": "load", "from_ms": 0, "to_ms": i64::MAX, "aggregation": "sum", "group_by": ["dc"]})).await;
    assert_eq!(series.len(), 2);
    for sr in &series {
        let dc = sr["tags"]["dc"].as_str().unwrap();
        assert_eq!(sr["entity"], "");
        let want: f64 = expected
            .iter()
            .filter(|((_, d), _)| d == dc)
            .flat_map(|(_, p)| p.iter().map(|x| x.1))
            .sum();
        let got = points_of(sr);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 0);
        assert!(
            (got[0].1 - want).abs() < 1e-6,
            "{dc}: {} vs {want}",
            got[0].1
        );
    }
    let series = query(&s, json!({"metric": "load", "from_ms": 1_000_000, "to_ms": 1_100_000, "aggregation": "count", "step_ms": 30_000, "group_by": ["entity"]})).await;
    assert_eq!(
        series
            .iter()
            .map(|s| s["entity"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["h0", "h1", "h2"]
    );
    for sr in &series {
        assert_eq!(points_of(sr), vec![(1_000_000, 60.0), (1_030_000, 60.0)]);
        assert_eq!(sr["tags"], json!({}));
    }
}

#[tokio::test]
async fn duplicate_and_out_of_order_timestamps_keep_the_last_write() {
    let s = TestServer::start().await;
    for (ts, v) in [(3000, 3.0), (1000, 1.0), (2000, 2.0)] {
        assert_eq!(s.post_json("/ts/put", &point("d", ts, v)).await.0, 200);
    }
    assert_eq!(s.post_json("/ts/buffer/flush", &json!({})).await.0, 200);
    // Overwrite one flushed timestamp from the buffer, another twice in the buffer.
    for (ts, v) in [(2000, 20.0), (500, 0.5), (500, 0.25)] {
        assert_eq!(s.post_json("/ts/put", &point("d", ts, v)).await.0, 200);
    }
    let want = vec![(500, 0.25), (1000, 1.0), (2000, 20.0), (3000, 3.0)];
    let q = json!({"metric": "d", "from_ms": 0, "to_ms": 10_000});
    assert_eq!(points_of(&query(&s, q.clone()).await[0]), want);
    assert_eq!(s.post_json("/ts/buffer/flush", &json!({})).await.0, 200);
    assert_eq!(points_of(&query(&s, q).await[0]), want);
}

#[tokio::test]
async fn export_streams_ndjson_datapoints() {
    let s = TestServer::start().await;
    let expected = load_fixture(&s).await;
    let r = s
        .client
        .post(s.url("/ts/export"))
        .json(&json!({"metric": "load", "from_ms": 0, "to_ms": i64::MAX, "tags": {"dc": "eu"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: usize = expected
        .iter()
        .filter(|((_, dc), _)| dc == "eu")
        .map(|(_, p)| p.len())
        .sum();
    assert_eq!(lines.len(), want);
    assert_eq!(
        keys(&lines[0]),
        ["entity", "metric", "tags", "timestamp_ms", "value"]
    );
    assert_eq!(lines[0]["entity"], "h0");
    assert_eq!(lines[0]["value"], 0.0);
}

#[tokio::test]
async fn bad_queries_are_400_or_422_with_a_field_path() {
    let s = TestServer::start().await;
    let cases = [
        (
            json!({"metric": "m", "from_ms": "yesterday", "to_ms": 5}),
            "from_ms",
            400,
        ),
        (
            json!({"metric": "m", "from_ms": 5, "to_ms": 1}),
            "to_ms",
            422,
        ),
        (
            json!({"metric": "", "from_ms": 0, "to_ms": 1}),
            "metric",
            400,
        ),
        (
            json!({"metric": "m", "from_ms": 0, "to_ms": 1, "step_ms": 10}),
            "step_ms",
            422,
        ),
        (
            json!({"metric": "m", "from_ms": 0, "to_ms": 1, "aggregation": "avg", "step_ms": 0}),
            "step_ms",
            400,
        ),
        (
            json!({"metric": "m", "from_ms": 0, "to_ms": i64::MAX, "aggregation": "avg", "step_ms": 1}),
            "step_ms",
            422,
        ),
        (
            json!({"metric": "m", "from_ms": 0, "to_ms": 1, "group_by": ["dc"]}),
            "group_by",
            422,
        ),
        (
            json!({"metric": "m", "from_ms": 0, "to_ms": 1, "aggregation": "median"}),
            "aggregation",
            400,
        ),
        (
            json!({"metric": "m", "from_ms": 0, "to_ms": 1, "matchers": [{"tag": "a", "op": "~=", "value": "x"}]}),
            "matchers[0].op",
            400,
        ),
        (
            json!({"metric": "m", "from_ms": 0, "to_ms": 1, "matchers": [{"tag": "a", "op": "=~", "value": "("}]}),
            "matchers[0].value",
            422,
        ),
        (
            json!({"metric": "m", "from_ms": 0, "to_ms": 1, "tags": {"a": 5}}),
            "tags.a",
            400,
        ),
    ];
    // 400: the body breaks the schema; 422: it fits, but breaks a rule the schema cannot
    // state (one field against another, a regex's syntax).
    for (body, field, want) in cases {
        let (status, err) = s.post_json("/ts/query", &body).await;
        assert_eq!(status, want, "{body} → {err}");
        let code = if want == 400 {
            "invalid_field"
        } else {
            "invalid_value"
        };
        assert_eq!(err["code"], code, "{body} → {err}");
        assert_eq!(err["field"], field, "{body} → {err}");
    }
}

#[tokio::test]
async fn many_concurrent_writers_lose_no_point() {
    let s =
        TestServer::start_with(Options::default().env("SLUICE_TS_AUTO_BUFFER_MAX_POINTS", "500"))
            .await;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16i64 {
        let c = s.client.clone();
        let url = s.url("/ts/put/buffered");
        tasks.spawn(async move {
            for i in 0..100i64 {
                let body = json!({"metric": "conc", "entity": format!("w{w}"), "timestamp_ms": i, "value": (w * 1000 + i) as f64});
                let r = c.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let series = query(&s, json!({"metric": "conc", "from_ms": 0, "to_ms": 1000})).await;
    assert_eq!(series.len(), 16);
    for sr in &series {
        let w: i64 = sr["entity"].as_str().unwrap()[1..].parse().unwrap();
        let want: Vec<(i64, f64)> = (0..100).map(|i| (i, (w * 1000 + i) as f64)).collect();
        assert_eq!(points_of(sr), want);
    }
}

#[tokio::test]
async fn acknowledged_points_survive_kill_9_and_restarts_after_flushes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = TestServer::start_in(&dir, Options::default()).await;
    for i in 0..20 {
        assert_eq!(
            s.post_json("/ts/put?ack=fsync", &point("k", i, i as f64))
                .await
                .0,
            200
        );
    }
    assert_eq!(s.post_json("/ts/buffer/flush", &json!({})).await.0, 200);
    for i in 20..40 {
        let ack = if i % 2 == 0 { "wal" } else { "fsync" };
        assert_eq!(
            s.post_json(&format!("/ts/put?ack={ack}"), &point("k", i, i as f64))
                .await
                .0,
            200
        );
    }
    s.kill9();

    let s = TestServer::start_in(&dir, Options::default()).await;
    let want: Vec<(i64, f64)> = (0..40).map(|i| (i, i as f64)).collect();
    let q = json!({"metric": "k", "from_ms": 0, "to_ms": 1000});
    assert_eq!(
        points_of(&query(&s, q.clone()).await[0]),
        want,
        "chunks + WAL replay after kill -9"
    );
    // Buffered points survive a graceful stop (flushed on shutdown).
    for i in 40..50 {
        assert_eq!(
            s.post_json("/ts/put/buffered", &point("k", i, i as f64))
                .await
                .0,
            200
        );
    }
    assert!(s.stop().success());
    let s = TestServer::start_in(&dir, Options::default()).await;
    let want: Vec<(i64, f64)> = (0..50).map(|i| (i, i as f64)).collect();
    assert_eq!(points_of(&query(&s, q).await[0]), want);
    assert_eq!(
        stats(&s).await["current_buffer_size"],
        0,
        "the shutdown flush left nothing to replay"
    );
}

#[tokio::test]
async fn wal_segments_below_the_checkpoint_are_deleted_after_a_flush() {
    // No automatic flush may checkpoint while the log grows.
    let options = Options::default()
        .env("SLUICE_WAL_SEGMENT_SIZE_BYTES", "1048576")
        .env("SLUICE_TS_AUTO_BUFFER_MAX_POINTS", "100000000")
        .env("SLUICE_TS_AUTO_BUFFER_FLUSH_INTERVAL_MS", "3600000");
    let s = TestServer::start_with(options).await;
    let wal_dir = s.data_dir.join("databases/default/wal");
    let segments = || {
        std::fs::read_dir(&wal_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "wal")
            })
            .count()
    };
    let mut ts = 0i64;
    for _ in 0..100 {
        if segments() >= 3 {
            break;
        }
        let batch: Vec<Value> = (0..5000)
            .map(|_| {
                ts += 1;
                point("seg", ts, ts as f64)
            })
            .collect();
        assert_eq!(
            s.post_json("/ts/put/batch?ack=wal", &json!({"points": batch}))
                .await
                .0,
            200
        );
    }
    assert!(segments() >= 3, "the log did not grow to three segments");
    assert_eq!(s.post_json("/ts/buffer/flush", &json!({})).await.0, 200);
    assert_eq!(segments(), 1, "checkpointed segments were kept");
    assert!(
        s.metric(r#"wal_checkpoint_lsn{db="default"}"#)
            .await
            .unwrap()
            > 0.0
    );
    let series = query(
        &s,
        json!({"metric": "seg", "from_ms": 0, "to_ms": i64::MAX, "aggregation": "count"}),
    )
    .await;
    assert_eq!(points_of(&series[0])[0].1, ts as f64);
}

#[tokio::test]
async fn line_protocol_writes_with_precision_escaping_and_all_or_nothing() {
    let s = TestServer::start().await;
    let body = "weather,host=st\\ 1,region=north temp=21.5,hum=40i,ok=true,desc=\"sunny\" 1700000000\n\
                weather,host=st\\ 1,region=north value=7 1700000060\n";
    let r = s
        .client
        .post(s.url("/write?precision=s"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["x-sluice-skipped-fields"], "1");
    let q = |metric: &str| json!({"metric": metric, "from_ms": 0, "to_ms": i64::MAX});
    let temp = query(&s, q("weather_temp")).await;
    assert_eq!(temp[0]["entity"], "st 1");
    assert_eq!(
        temp[0]["tags"],
        json!({"host": "st 1", "region": "north"}),
        "host names the entity and stays a tag"
    );
    assert_eq!(points_of(&temp[0]), vec![(1_700_000_000_000, 21.5)]);
    assert_eq!(
        points_of(&query(&s, q("weather_hum")).await[0]),
        vec![(1_700_000_000_000, 40.0)]
    );
    assert_eq!(
        points_of(&query(&s, q("weather_ok")).await[0]),
        vec![(1_700_000_000_000, 1.0)]
    );
    assert_eq!(
        points_of(&query(&s, q("weather")).await[0]),
        vec![(1_700_000_060_000, 7.0)]
    );
    assert!(query(&s, q("weather_desc")).await.is_empty());

    // 2.x path, default precision ns.
    let r = s
        .client
        .post(s.url("/api/v2/write?bucket=default"))
        .body("v2m,entity=e value=3 1700000000123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        points_of(&query(&s, q("v2m")).await[0]),
        vec![(1_700_000_000_123, 3.0)]
    );

    // A bad line anywhere: 400 naming it, and nothing of the request is written.
    let r = s
        .client
        .post(s.url("/write"))
        .body("bad ok=1 1\nbad ok=1 2\nbad ok= 3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["field"], "line 3", "{err}");
    assert!(query(&s, q("bad_ok")).await.is_empty());

    let r = s
        .client
        .post(s.url("/write?precision=fortnight"))
        .body("m value=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .client
        .post(s.url("/write?db=telegraf"))
        .body("m value=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "database_not_found"
    );
}

#[tokio::test]
async fn retention_hides_and_deletes_old_points() {
    let day_ms = 86_400_000i64;
    let s = TestServer::start_with(
        Options::default().env("SLUICE_TS_RETENTION_MS", &day_ms.to_string()),
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let batch =
        json!({"points": [point("r", now - 10 * day_ms, 1.0), point("r", now - 1000, 2.0)]});
    assert_eq!(s.post_json("/ts/put/batch", &batch).await.0, 200);
    let q = json!({"metric": "r", "from_ms": 0, "to_ms": i64::MAX});
    assert_eq!(
        points_of(&query(&s, q.clone()).await[0]),
        vec![(now - 1000, 2.0)]
    );
    assert_eq!(s.post_json("/ts/buffer/flush", &json!({})).await.0, 200);
    assert_eq!(points_of(&query(&s, q).await[0]), vec![(now - 1000, 2.0)]);
}

#[tokio::test]
async fn the_series_limit_refuses_new_series_but_not_existing_ones() {
    let s = TestServer::start_with(Options::default().env("SLUICE_TS_MAX_SERIES", "3")).await;
    let p =
        |e: &str, ts: i64| json!({"metric": "lim", "entity": e, "timestamp_ms": ts, "value": 1.0});
    assert_eq!(
        s.post_json(
            "/ts/put/batch",
            &json!({"points": [p("a", 1), p("b", 1), p("c", 1)]})
        )
        .await
        .0,
        200
    );
    let (status, err) = s
        .post_json("/ts/put/batch", &json!({"points": [p("a", 2), p("d", 2)]}))
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["code"], "series_limit");
    // Nothing of the refused batch was written; existing series still accept points.
    assert_eq!(s.post_json("/ts/put", &p("a", 3)).await.0, 200);
    let series = query(
        &s,
        json!({"metric": "lim", "entity": "a", "from_ms": 0, "to_ms": 10}),
    )
    .await;
    assert_eq!(points_of(&series[0]), vec![(1, 1.0), (3, 1.0)]);
}

#[tokio::test]
async fn line_protocol_that_expands_too_far_is_refused() {
    let s = TestServer::start().await;
    // One line, 64 fat tags, many fields: under the body limit, far over the expansion bound.
    let tags: String = (0..64)
        .map(|i| format!(",k{i:03}={}", "v".repeat(250)))
        .collect();
    let fields: String = (0..4000)
        .map(|i| format!("f{i}=1"))
        .collect::<Vec<_>>()
        .join(",");
    let body = format!("m{tags} {fields} 1\n");
    assert!(body.len() < 1024 * 1024);
    let r = s
        .client
        .post(s.url("/write"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "too_large_expanded"
    );
}

/// A point without `timestamp_ms` is stamped with the server's receive time, on the direct,
/// batch and buffered routes alike.
#[tokio::test]
async fn points_without_a_timestamp_get_the_receive_time() {
    let s = TestServer::start().await;
    let before = sluice_server::now_ms();
    for (path, body) in [
        (
            "/ts/put",
            json!({"metric": "no_ts", "entity": "direct", "value": 1.0}),
        ),
        (
            "/ts/put/batch",
            json!({"points": [{"metric": "no_ts", "entity": "batch", "value": 2.0}]}),
        ),
        (
            "/ts/put/buffered",
            json!({"metric": "no_ts", "entity": "buffered", "value": 3.0}),
        ),
    ] {
        let (status, r) = s.post_json(path, &body).await;
        assert_eq!(status, 200, "{path}: {r}");
    }
    let after = sluice_server::now_ms();
    let series = query(
        &s,
        json!({"metric": "no_ts", "from_ms": 0, "to_ms": after + 1}),
    )
    .await;
    assert_eq!(series.len(), 3, "{series:?}");
    for s in &series {
        let pts = points_of(s);
        assert_eq!(pts.len(), 1, "{s}");
        assert!(
            (before..=after).contains(&pts[0].0),
            "{} not in [{before}, {after}]",
            pts[0].0
        );
    }
}

/// The race between a query and a flush that merges small chunks: the flush deletes the merged
/// chunks' inputs and inserts the merged chunk in one batch, and a query reading the store
/// while that batch was being applied missed points (they came back a moment later). Every
/// query right after an acknowledged write must see all of it.
#[tokio::test]
async fn queries_right_after_acknowledged_writes_see_them_while_flushes_merge_chunks() {
    let s = TestServer::start().await;
    let t0 = 1_700_000_000_000i64;
    let per_batch = 40_000i64;
    let mut total = 0usize;
    for b in 0..25 {
        let points: Vec<Value> = (0..per_batch)
            .map(|i| json!({"metric": "ryw", "entity": format!("h{}", i % 50), "timestamp_ms": t0 + b * per_batch + i, "value": i as f64}))
            .collect();
        let (status, r) = s
            .post_json("/ts/put/batch", &json!({"points": points}))
            .await;
        assert_eq!(status, 200, "{r}");
        total += per_batch as usize;
        // The write's count trigger has just nudged the flusher: this query races its commit.
        let series = query(&s, json!({"metric": "ryw", "from_ms": 0, "to_ms": t0 * 2})).await;
        let seen: usize = series.iter().map(|s| points_of(s).len()).sum();
        assert_eq!(
            seen, total,
            "round {b}: a query right after the write missed points"
        );
    }
}

/// A compressed export is the whole export: the compression layer polls the body once more
/// after it ends, which must not cut the stream.
#[tokio::test]
async fn a_compressed_export_holds_every_point() {
    use std::io::Read;
    let s = TestServer::start().await;
    let points: Vec<Value> = (0..5000)
        .map(|i| point("zexp", 1_000 + i, i as f64))
        .collect();
    let (status, _) = s
        .post_json("/ts/put/batch", &json!({"points": points}))
        .await;
    assert_eq!(status, 200);
    let body = json!({"metric": "zexp", "from_ms": 0, "to_ms": i64::MAX});
    let r = s
        .client
        .post(s.url("/ts/export"))
        .header("accept-encoding", "gzip")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let bytes = r.bytes().await.expect("the whole compressed body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .expect("a complete gzip stream");
    assert_eq!(text.lines().count(), 5000);
}

#[tokio::test]
async fn retention_rules_per_metric_hide_at_once_and_the_sweep_deletes() {
    let hour = 3_600_000i64;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let opts = || Options::default().env("SLUICE_TS_RETENTION_SWEEP_INTERVAL_MS", "100");
    let s = TestServer::start_in(&dir, opts()).await;
    let (st, body) = s
        .post_json(
            "/v1/databases",
            &json!({"name": "r", "retention_rules": [
                {"metric": "debug_*", "retention_ms": hour},
                {"metric": "audit", "retention_ms": 0}]}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(
        body["retention_rules"][0],
        json!({"metric": "debug_*", "retention_ms": hour})
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let batch = json!({"points": [
        point("debug_io", now - 2 * hour, 1.0), point("debug_io", now - 1000, 2.0),
        point("cpu", now - 2 * hour, 3.0)]});
    assert_eq!(
        s.post_json("/v1/databases/r/ts/put/batch", &batch).await.0,
        200
    );
    async fn visible(s: &TestServer, metric: &str, now: i64) -> Vec<Vec<(i64, f64)>> {
        let body = json!({"metric": metric, "from_ms": 0, "to_ms": now});
        let (st, r) = s.post_json("/v1/databases/r/ts/query", &body).await;
        assert_eq!(st, 200, "{r}");
        r["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(points_of)
            .collect()
    }
    // At once, buffered: debug_* keeps an hour, other metrics the database's (forever).
    assert_eq!(
        visible(&s, "debug_io", now).await,
        [vec![(now - 1000, 2.0)]]
    );
    assert_eq!(visible(&s, "cpu", now).await, [vec![(now - 2 * hour, 3.0)]]);
    // An old debug point alone in its chunk: the sweep deletes that chunk.
    let old = json!({"points": [point("debug_old", now - 3 * hour, 4.0)]});
    assert_eq!(
        s.post_json("/v1/databases/r/ts/put/batch", &old).await.0,
        200
    );
    assert_eq!(
        s.post_json("/v1/databases/r/ts/buffer/flush", &json!({}))
            .await
            .0,
        200
    );
    wait_until(
        "the sweep deletes the expired chunk",
        Duration::from_secs(30),
        || async {
            if s.stderr().contains("deleted chunks past retention") {
                Ok(())
            } else {
                Err("no sweep log yet")
            }
        },
    )
    .await;
    assert_eq!(
        visible(&s, "debug_io", now).await,
        [vec![(now - 1000, 2.0)]]
    );
    // Bad rules are refused with the field named.
    for (rules, field) in [
        (
            json!([{"metric": "", "retention_ms": 1}]),
            "retention_rules[0].metric",
        ),
        (
            json!(
                (0..65)
                    .map(|i| json!({"metric": format!("m{i}"), "retention_ms": 1}))
                    .collect::<Vec<_>>()
            ),
            "retention_rules",
        ),
    ] {
        let (st, body) = s
            .post_json(
                "/v1/databases",
                &json!({"name": "bad", "retention_rules": rules}),
            )
            .await;
        assert_eq!(st, 400, "{body}");
        assert_eq!(body["field"], field, "{body}");
    }
    // The rules are in the catalogue: after a restart they still hold.
    assert!(s.stop().success());
    let s = TestServer::start_in(&dir, opts()).await;
    assert_eq!(
        visible(&s, "debug_io", now).await,
        [vec![(now - 1000, 2.0)]]
    );
    assert_eq!(visible(&s, "cpu", now).await, [vec![(now - 2 * hour, 3.0)]]);
}
