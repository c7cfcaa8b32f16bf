//! `POST /ts/delete` on real processes: a deletion is visible at once (buffered and stored
//! points alike), leaves points outside its selection and later writes alone, survives
//! `kill -9` and restart, reaches a replica (which refuses deletes of its own), appears in the
//! changefeed, and bad requests get a 4xx with an `error_id`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Options, TestServer, wait_until};

const T0: i64 = 1_700_000_000_000;

/// Every point of `metric` as `entity/dc -> [(ts, value)]`.
async fn points(node: &TestServer, metric: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    let (s, body) = node
        .post_json(
            "/ts/query",
            &json!({"metric": metric, "from_ms": 0, "to_ms": T0 * 2}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let key = format!(
                "{}/{}",
                s["entity"].as_str().unwrap(),
                s["tags"]["dc"].as_str().unwrap_or("")
            );
            let pts = s["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            (key, pts)
        })
        .collect()
}

/// 200 points a series, `ts = T0 + i * 1000`, for hosts a, b (dc eu-1) and c (dc us-1).
async fn write_series(node: &TestServer, range: std::ops::Range<i64>) {
    let mut batch = Vec::new();
    for (entity, dc) in [("a", "eu-1"), ("b", "eu-1"), ("c", "us-1")] {
        for i in range.clone() {
            batch.push(
                json!({"metric": "temp", "entity": entity, "timestamp_ms": T0 + i * 1000,
                              "value": i as f64, "tags": {"dc": dc}}),
            );
        }
    }
    let (s, body) = node
        .post_json("/ts/put/batch", &json!({"points": batch}))
        .await;
    assert_eq!(s, 200, "{body}");
}

async fn delete(node: &TestServer, body: Value) -> (u16, Value) {
    node.post_json("/ts/delete", &body).await
}

#[tokio::test]
async fn a_deletion_is_visible_at_once_durable_and_replicated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let primary = TestServer::start_in(&dir, Options::default()).await;
    let replica = TestServer::start_with(Options {
        args: vec!["--role".into(), "replica".into()],
        ..Options::default()
    })
    .await;
    let (s, body) = primary
        .post_json(
            "/api/v1/replication/replicas",
            &json!({"replica_id": "r1", "endpoint": replica.base}),
        )
        .await;
    assert_eq!(s, 201, "{body}");

    // Half of each series in chunks, half buffered.
    write_series(&primary, 0..100).await;
    let (s, _) = primary.post_json("/ts/buffer/flush", &json!({})).await;
    assert_eq!(s, 200);
    write_series(&primary, 100..200).await;

    // Entity a, across the chunk/buffer boundary: [50, 149].
    let (s, out) = delete(
        &primary,
        json!({"metric": "temp", "entity": "a", "from_ms": T0 + 50_000, "to_ms": T0 + 149_000}),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["success"], true);
    assert_eq!(out["series"], 1);
    assert_eq!(out["points_deleted"], 100);
    let mut want = points(&primary, "temp").await;
    assert_eq!(want["a/eu-1"].len(), 100, "visible at once");
    assert!(
        want["a/eu-1"]
            .iter()
            .all(|(t, _)| *t < T0 + 50_000 || *t > T0 + 149_000)
    );
    assert_eq!(want["b/eu-1"].len(), 200);
    assert_eq!(want["c/us-1"].len(), 200);

    // By matcher, every entity of dc eu-*, the last 20 points (all buffered).
    let (s, out) = delete(
        &primary,
        json!({"metric": "temp", "matchers": [{"tag": "dc", "op": "=~", "value": "eu-.*"}],
               "from_ms": T0 + 180_000, "to_ms": T0 + 10_000_000}),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(
        (out["series"].as_u64(), out["points_deleted"].as_u64()),
        (Some(2), Some(40))
    );
    // A write after the deletion, into its range, stays.
    let (s, body) = primary
        .post_json(
            "/ts/put",
            &json!({"metric": "temp", "entity": "a", "timestamp_ms": T0 + 100_000, "value": -1.0,
                    "tags": {"dc": "eu-1"}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    // And a deletion that matches nothing is a success that deleted nothing.
    let (s, out) = delete(
        &primary,
        json!({"metric": "nothing", "from_ms": 0, "to_ms": 1}),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(
        (out["series"].as_u64(), out["points_deleted"].as_u64()),
        (Some(0), Some(0))
    );

    for (k, pts) in want.iter_mut() {
        if k.ends_with("eu-1") {
            pts.retain(|(t, _)| *t < T0 + 180_000);
        }
    }
    let a = want.get_mut("a/eu-1").unwrap();
    a.push((T0 + 100_000, -1.0));
    a.sort_by_key(|p| p.0);
    assert_eq!(points(&primary, "temp").await, want);

    // The replica converges to the same answer, and refuses deletes of its own.
    let p = &primary;
    wait_until(
        "the replica holds the deletions",
        Duration::from_secs(60),
        || async {
            let got = points(&replica, "temp").await;
            if got == points(p, "temp").await {
                Ok(())
            } else {
                Err(got
                    .into_iter()
                    .map(|(k, v)| (k, v.len()))
                    .collect::<Vec<_>>())
            }
        },
    )
    .await;
    let (s, body) = delete(
        &replica,
        json!({"metric": "temp", "from_ms": 0, "to_ms": T0 * 2}),
    )
    .await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["code"], "read_only_replica");

    // The changefeed carries the deletion.
    let text = primary
        .client
        .get(primary.url("/v1/databases/default/changes?from_lsn=0"))
        .send()
        .await
        .unwrap();
    let body = read_some(text).await;
    assert!(body.contains("event: delete"), "{body}");
    assert!(body.contains("\"entity\":\"a\""), "{body}");

    // kill -9 and restart: the deletions hold (from the WAL and the rewritten chunks).
    primary.kill9();
    let restarted = TestServer::start_in(&dir, Options::default()).await;
    assert_eq!(points(&restarted, "temp").await, want, "after kill -9");
    // A flush and a second restart: now everything is in chunks.
    let (s, _) = restarted.post_json("/ts/buffer/flush", &json!({})).await;
    assert_eq!(s, 200);
    assert!(restarted.stop().success());
    let again = TestServer::start_in(&dir, Options::default()).await;
    assert_eq!(
        points(&again, "temp").await,
        want,
        "after flush and restart"
    );
}

/// Reads what an SSE answer sends within a second.
async fn read_some(mut r: reqwest::Response) -> String {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, r.chunk()).await {
        out.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn bad_deletions_are_refused_with_an_error_id_and_delete_nothing() {
    let node = TestServer::start().await;
    write_series(&node, 0..10).await;
    let before = points(&node, "temp").await;
    let cases = [
        (json!({"metric": "temp", "from_ms": 10, "to_ms": 5}), 422),
        (json!({"metric": "", "from_ms": 0, "to_ms": 5}), 400),
        (json!({"from_ms": 0, "to_ms": 5}), 400),
        (json!({"metric": "temp", "from_ms": 0}), 400),
        (json!({"metric": "temp", "from_ms": "x", "to_ms": 5}), 400),
        (
            json!({"metric": "temp", "from_ms": 0, "to_ms": 5, "step_ms": 1}),
            400,
        ),
        (
            json!({"metric": "temp", "from_ms": 0, "to_ms": T0 * 2,
                "matchers": [{"tag": "dc", "op": "=~", "value": "("}]}),
            422,
        ),
        (
            json!({"metric": "temp", "from_ms": 0, "to_ms": T0 * 2,
                "matchers": [{"tag": "dc", "op": "<>", "value": "x"}]}),
            400,
        ),
    ];
    for (body, want) in cases {
        let (s, answer) = delete(&node, body.clone()).await;
        assert_eq!(s, want, "{body} -> {answer}");
        assert!(answer["error_id"].is_string(), "{answer}");
    }
    let r = node
        .client
        .post(node.url("/ts/delete"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(points(&node, "temp").await, before);
}
