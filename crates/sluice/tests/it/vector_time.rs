//! Vectors and time on real processes: TTL (collection and entity) hides expired entities
//! from search and get at once, the sweep removes them from the index, the removal reaches a
//! replica and survives a restart; `time_range` and `decay` over HTTP; bad input is a 4xx
//! with an `error_id`. Recall against brute force is pinned by the engine's tests
//! (`cargo nextest run -p sluice-vector time_range decay`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Options, TestServer, now_ms, wait_until};

async fn search(node: &TestServer, collection: &str, body: Value) -> Vec<String> {
    let (s, out) = node
        .post_json(&format!("/vectors/search?collection={collection}"), &body)
        .await;
    assert_eq!(s, 200, "{out}");
    out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pk"].as_str().unwrap().to_string())
        .collect()
}

async fn info(node: &TestServer, collection: &str) -> Value {
    let (s, out) = node
        .get_json(&format!("/v1/collections/{collection}"))
        .await;
    assert_eq!(s, 200, "{out}");
    out
}

#[tokio::test]
async fn expired_vectors_vanish_at_once_are_swept_replicated_and_stay_gone_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fast_sweep = || Options::default().env("SLUICE_VECTOR_TTL_SWEEP_INTERVAL_MS", "200");
    let primary = TestServer::start_in(&dir, fast_sweep()).await;
    let replica = TestServer::start_with(Options {
        args: vec!["--role".into(), "replica".into()],
        ..fast_sweep()
    })
    .await;
    let (s, body) = primary
        .post_json(
            "/api/v1/replication/replicas",
            &json!({"replica_id": "r1", "endpoint": replica.base}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let (s, out) = primary
        .post_json(
            "/v1/collections",
            &json!({"name": "sess", "dimension": 2, "distance": "l2", "ttl_ms": 3000}),
        )
        .await;
    assert_eq!(s, 201, "{out}");
    assert_eq!(out["ttl_ms"], 3000);

    let t0 = now_ms();
    let far = t0 + 3_600_000;
    let (s, out) = primary
        .post_json(
            "/vectors/add/batch?collection=sess",
            &json!({"vectors": [
                {"pk": "a", "vector": [0.0, 0.0]},
                {"pk": "b", "vector": [0.1, 0.0], "expires_at_ms": far},
                {"pk": "c", "vector": [0.2, 0.0], "expires_at_ms": t0 + 3000}
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let (s, out) = primary
        .post_json(
            "/vectors/add/buffered?collection=sess",
            &json!({"pk": "d", "vector": [0.3, 0.0]}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let (s, a) = primary.get_json("/vectors/a?collection=sess").await;
    assert_eq!(s, 200, "{a}");
    let a_expiry = a["expires_at_ms"].as_i64().unwrap();
    assert!(
        (t0 + 3000..t0 + 10_000).contains(&a_expiry),
        "the collection's ttl is filled in at write: {a}"
    );
    let everything = json!({"vector": [0.0, 0.0], "k": 10});
    assert_eq!(
        search(&primary, "sess", everything.clone()).await,
        ["a", "b", "c", "d"]
    );
    wait_until(
        "the replica holds all four",
        Duration::from_secs(30),
        || async {
            let (s, out) = replica
                .post_json("/vectors/search?collection=sess", &everything)
                .await;
            match out["results"].as_array() {
                Some(r) if s == 200 && r.len() == 4 => Ok(()),
                _ => Err((s, out)),
            }
        },
    )
    .await;

    // Past every expiry but b's: hidden on both nodes, then removed from both indexes.
    let wait = (a_expiry.max(t0 + 3000) + 200 - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    for node in [&primary, &replica] {
        assert_eq!(search(node, "sess", everything.clone()).await, ["b"]);
        let (s, out) = node.get_json("/vectors/a?collection=sess").await;
        assert_eq!(s, 404, "{out}");
        assert!(out["error_id"].is_string());
    }
    for node in [&primary, &replica] {
        wait_until(
            "the sweep removes them",
            Duration::from_secs(30),
            || async {
                let (_, _) = node.post_json("/vectors/buffer/flush", &json!({})).await;
                let i = info(node, "sess").await;
                if i["vectors"] == 1 && i["buffered"] == 0 {
                    Ok(())
                } else {
                    Err(i)
                }
            },
        )
        .await;
    }
    // A restart replays the removals: b alone, with its expiry.
    assert!(primary.stop().success());
    let restarted = TestServer::start_in(&dir, fast_sweep()).await;
    assert_eq!(search(&restarted, "sess", everything.clone()).await, ["b"]);
    let (s, b) = restarted.get_json("/vectors/b?collection=sess").await;
    assert_eq!((s, b["expires_at_ms"].as_i64()), (200, Some(far)));
}

#[tokio::test]
async fn time_range_and_decay_over_http() {
    let node = TestServer::start().await;
    let (s, out) = node
        .post_json(
            "/v1/collections",
            &json!({"name": "news", "dimension": 2, "distance": "l2"}),
        )
        .await;
    assert_eq!(s, 201, "{out}");
    let now = now_ms();
    let day = 86_400_000i64;
    // old: the nearest, 30 days old; new: farther, written now; none: no time at all.
    let (s, out) = node
        .post_json(
            "/vectors/add/batch?collection=news",
            &json!({"vectors": [
                {"pk": "old", "vector": [0.0, 0.0], "timestamp_ms": now - 30 * day},
                {"pk": "mid", "vector": [0.2, 0.0], "timestamp_ms": now - 7 * day},
                {"pk": "new", "vector": [0.5, 0.0], "timestamp_ms": now},
                {"pk": "none", "vector": [0.05, 0.0]}
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let q = |extra: Value| {
        let mut body = json!({"vector": [0.0, 0.0], "k": 10});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    assert_eq!(
        search(&node, "news", q(json!({}))).await,
        ["old", "none", "mid", "new"]
    );
    // A window excludes entities without a time, and either bound may be open.
    assert_eq!(
        search(
            &node,
            "news",
            q(json!({"time_range": {"from_ms": now - 8 * day}}))
        )
        .await,
        ["mid", "new"]
    );
    assert_eq!(
        search(
            &node,
            "news",
            q(json!({"time_range": {"from_ms": now - 31 * day, "to_ms": now - 7 * day}}))
        )
        .await,
        ["old", "mid"]
    );
    // Decay: l2 distances 0, 0.0025, 0.04, 0.25; a weight of 0.3 with a one-day half-life gives
    // new (written now) a bonus of ~0.3, mid 0.3/128, old ~0: new ranks first.
    let (s, out) = node
        .post_json(
            "/vectors/search?collection=news",
            &q(json!({"decay": {"half_life_ms": day, "weight": 0.3}})),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let results = out["results"].as_array().unwrap();
    let order: Vec<&str> = results.iter().map(|r| r["pk"].as_str().unwrap()).collect();
    assert_eq!(order, ["new", "old", "none", "mid"]);
    let new = &results[0];
    let (d, rank) = (
        new["distance"].as_f64().unwrap(),
        new["rank"].as_f64().unwrap(),
    );
    assert!(
        (d - 0.25).abs() < 1e-6 && (rank - (0.25 - 0.3)).abs() < 1e-3,
        "{new}"
    );
    assert_eq!(new["timestamp_ms"], now);
    // A plain search has no rank field.
    let (_, plain) = node
        .post_json("/vectors/search?collection=news", &q(json!({})))
        .await;
    assert!(plain["results"][0].get("rank").is_none(), "{plain}");

    // Bad input: 4xx with an error_id, never a 5xx.
    for (body, status, field) in [
        (
            q(json!({"time_range": {"from_ms": 10, "to_ms": 5}})),
            422,
            "time_range",
        ),
        (q(json!({"time_range": {"from": 1}})), 400, ""),
        (
            q(json!({"decay": {"half_life_ms": 0, "weight": 0.1}})),
            400,
            "decay.half_life_ms",
        ),
        (
            q(json!({"decay": {"half_life_ms": 10, "weight": -1}})),
            400,
            "decay.weight",
        ),
        (q(json!({"decay": {"weight": 0.1}})), 400, ""),
    ] {
        let (s, out) = node
            .post_json("/vectors/search?collection=news", &body)
            .await;
        assert_eq!(s, status, "{body} -> {out}");
        assert!(out["error_id"].is_string(), "{out}");
        if !field.is_empty() {
            assert_eq!(out["field"], field, "{out}");
        }
    }
    for (body, field) in [
        (json!({"name": "t", "dimension": 2, "ttl_ms": 0}), "ttl_ms"),
        (json!({"name": "t", "dimension": 2, "ttl_ms": -5}), ""),
    ] {
        let (s, out) = node.post_json("/v1/collections", &body).await;
        assert_eq!(s, 400, "{body} -> {out}");
        if !field.is_empty() {
            assert_eq!(out["field"], field, "{out}");
        }
    }
}

#[tokio::test]
async fn a_search_returns_each_hits_series_aggregate_with_series() {
    let node = TestServer::start().await;
    let now = now_ms();
    // cpu/host1 has two series (tags differ): avg and last span both; cpu/host2 one series.
    let mut points = Vec::new();
    for i in 0..10 {
        let t = now - 60_000 + i * 1000;
        points.push(json!({"metric": "cpu", "entity": "host1", "timestamp_ms": t, "value": i as f64, "tags": {"core": "0"}}));
        points.push(json!({"metric": "cpu", "entity": "host1", "timestamp_ms": t, "value": 100.0 + i as f64, "tags": {"core": "1"}}));
        points.push(json!({"metric": "cpu", "entity": "host2", "timestamp_ms": t, "value": 7.0}));
    }
    // One more point in core 1: a mean of the two series' means would differ from the mean.
    points.push(json!({"metric": "cpu", "entity": "host1", "timestamp_ms": now - 500, "value": 200.0, "tags": {"core": "1"}}));
    // An old point outside a one-minute window.
    points.push(
        json!({"metric": "cpu", "entity": "host2", "timestamp_ms": now - 3_600_000, "value": 1e6}),
    );
    let (s, out) = node
        .post_json("/ts/put/batch", &json!({"points": points}))
        .await;
    assert_eq!(s, 200, "{out}");
    let (s, out) = node
        .post_json(
            "/vectors/add/batch",
            &json!({"vectors": [
                {"pk": "h1", "vector": [1.0, 0.0], "metadata": {"metric": "cpu", "entity": "host1"}},
                {"pk": "h2", "vector": [0.9, 0.1], "metadata": {"metric": "cpu", "entity": "host2"}},
                {"pk": "nodata", "vector": [0.8, 0.2], "metadata": {"metric": "disk", "entity": "host1"}},
                {"pk": "plain", "vector": [0.7, 0.3], "metadata": {"metric": 5}}
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let ask = |aggregation: &str, window_ms: i64| {
        json!({"vector": [1.0, 0.0], "k": 4,
               "with_series": {"aggregation": aggregation, "window_ms": window_ms}})
    };
    let (s, out) = node
        .post_json("/vectors/search", &ask("avg", 120_000))
        .await;
    assert_eq!(s, 200, "{out}");
    let r = out["results"].as_array().unwrap();
    let pks: Vec<&str> = r.iter().map(|h| h["pk"].as_str().unwrap()).collect();
    assert_eq!(pks, ["h1", "h2", "nodata", "plain"]);
    // The mean of every point of both series: (45 + 1045 + 200) / 21, not the mean of the
    // series' means (58.8…).
    let avg = r[0]["series"]["value"].as_f64().unwrap();
    assert!((avg - 1290.0 / 21.0).abs() < 1e-9, "{out}");
    assert_eq!(r[0]["series"]["metric"], "cpu");
    assert_eq!(r[0]["series"]["entity"], "host1");
    assert_eq!(
        r[1]["series"]["value"], 7.0,
        "the old point is outside the window: {out}"
    );
    assert!(r[2]["series"]["value"].is_null(), "{out}");
    assert!(
        r[3].get("series").is_none(),
        "a hit naming no series: {out}"
    );
    let (_, out) = node
        .post_json("/vectors/search", &ask("count", 120_000))
        .await;
    assert_eq!(out["results"][0]["series"]["value"], 21.0, "{out}");
    let (_, out) = node
        .post_json("/vectors/search", &ask("count", 7_200_000))
        .await;
    assert_eq!(out["results"][1]["series"]["value"], 11.0, "{out}");
    let (_, out) = node
        .post_json("/vectors/search", &ask("max", 120_000))
        .await;
    assert_eq!(out["results"][0]["series"]["value"], 200.0, "{out}");
    // Bad input: 4xx with an error_id.
    for body in [
        ask("avg", 0),
        ask("median", 1000),
        json!({"vector": [1.0, 0.0], "k": 1, "with_series": {"window_ms": 5}}),
    ] {
        let (s, out) = node.post_json("/vectors/search", &body).await;
        assert_eq!(s, 400, "{body} -> {out}");
        assert!(out["error_id"].is_string(), "{out}");
    }
}
