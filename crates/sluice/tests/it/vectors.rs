//! The vector engine over HTTP against a real server: seed shapes, update and remove
//! semantics, recall against brute force (also filtered), bad input, collections, and
//! durability across kill -9, graceful stops and snapshot + replay.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::{Options, TestServer, wait_until};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

async fn delete_json(s: &TestServer, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = s.client.delete(s.url(path));
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn search(s: &TestServer, path: &str, body: Value) -> Vec<String> {
    let (status, r) = s.post_json(path, &body).await;
    assert_eq!(status, 200, "{body} → {r}");
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["pk"].as_str().unwrap().to_string())
        .collect()
}

async fn vstats(s: &TestServer) -> Value {
    let (status, v) = s.get_json("/vectors/buffer/stats").await;
    assert_eq!(status, 200);
    v
}

/// `n` vectors around 16 random centres (fixed seed).
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..16)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    (0..n)
        .map(|i| {
            centres[i % 16]
                .iter()
                .map(|x| x + rng.random_range(-0.25..0.25f32))
                .collect()
        })
        .collect()
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    1.0 - dot / (na * nb)
}

#[tokio::test]
async fn seed_bodies_stats_and_update_remove_semantics() {
    let s = TestServer::start().await;
    let v768 = |x: f32| -> Vec<f32> { (0..768).map(|i| ((i as f32) * x).sin()).collect() };
    let body = json!({"pk": "doc_12345", "vector": v768(0.1),
                      "metadata": {"title": "Sample Document", "category": "technology"}});
    let (status, r) = s.post_json("/vectors/add/buffered", &body).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r,
        json!({"success": true, "buffered": true, "buffer_size": 1})
    );
    let st = vstats(&s).await;
    assert_eq!(
        keys(&st),
        [
            "auto_flush_count",
            "compression_type",
            "current_buffer_memory",
            "current_buffer_size",
            "flush_count",
            "last_flush_time",
            "last_snapshot_lsn",
            "manual_flush_count",
            "snapshot_count",
            "vectors_buffered",
            "vectors_flushed",
        ]
    );
    assert_eq!(st["vectors_buffered"], 1);
    assert_eq!(st["current_buffer_size"], 1);
    assert!(st["current_buffer_memory"].as_u64().unwrap() >= 768 * 4);
    assert_eq!(st["compression_type"], "none");
    assert_eq!(st["last_flush_time"], Value::Null);

    // Read-your-writes: the buffered entity is found by get and search before any flush.
    let (status, got) = s.get_json("/vectors/doc_12345").await;
    assert_eq!(status, 200);
    assert_eq!(got["metadata"]["category"], "technology");
    assert_eq!(
        search(&s, "/vectors/search", json!({"vector": v768(0.1), "k": 1})).await,
        ["doc_12345"]
    );
    // A direct add next to it; then the buffered update moves doc_12345.
    let (status, r) = s
        .post_json("/vectors/add", &json!({"pk": "other", "vector": v768(0.2)}))
        .await;
    assert_eq!(status, 200, "{r}");
    assert!(r["lsn"].as_u64().unwrap() > 0);
    let (status, r) = s
        .post_json(
            "/vectors/update/buffered",
            &json!({"pk": "doc_12345", "vector": v768(0.3), "metadata": {"category": "art"}}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        search(&s, "/vectors/search", json!({"vector": v768(0.3), "k": 2})).await[0],
        "doc_12345"
    );
    assert_eq!(
        search(
            &s,
            "/vectors/search",
            json!({"vector": v768(0.1), "k": 5, "filter": {"category": "technology"}})
        )
        .await,
        Vec::<String>::new(),
        "the old version is gone from filtered search"
    );
    let (status, r) = s.post_json("/vectors/buffer/flush", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        r["vectors_flushed"], 1,
        "add and update of one pk coalesce: {r}"
    );
    let st = vstats(&s).await;
    assert_eq!(st["flush_count"], 1);
    assert_eq!(st["manual_flush_count"], 1);
    assert_eq!(st["current_buffer_size"], 0);
    assert!(st["last_flush_time"].as_str().unwrap().ends_with('Z'));
    let (_, got) = s.get_json("/vectors/doc_12345").await;
    assert_eq!(got["metadata"], json!({"category": "art"}));

    // Update of a missing pk: 404; remove: gone from get and search at once, and after flush.
    let (status, r) = s
        .post_json(
            "/vectors/update/buffered",
            &json!({"pk": "nope", "vector": v768(0.1)}),
        )
        .await;
    assert_eq!(
        (status, r["code"].as_str()),
        (404, Some("entity_not_found"))
    );
    let (status, r) = delete_json(
        &s,
        "/vectors/remove/buffered",
        Some(&json!({"pk": "doc_12345"})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["buffered"], true);
    assert_eq!(s.get_json("/vectors/doc_12345").await.0, 404);
    assert_eq!(
        search(&s, "/vectors/search", json!({"vector": v768(0.3), "k": 5})).await,
        ["other"]
    );
    assert_eq!(
        s.post_json("/vectors/buffer/flush", &json!({})).await.0,
        200
    );
    assert_eq!(
        search(&s, "/vectors/search", json!({"vector": v768(0.3), "k": 5})).await,
        ["other"]
    );
    let (status, _) = delete_json(
        &s,
        "/vectors/remove/buffered",
        Some(&json!({"pk": "doc_12345"})),
    )
    .await;
    assert_eq!(status, 404, "removing twice");
    // Direct delete.
    let (status, r) = delete_json(&s, "/vectors/other", None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(s.get_json("/vectors/other").await.0, 404);
    assert_eq!(
        s.metric("vector_auto_buffer_vectors_buffered_total{db=\"default\"}")
            .await,
        Some(3.0)
    );
    assert_eq!(
        s.metric("vector_auto_buffer_vectors_flushed_total{db=\"default\"}")
            .await,
        Some(2.0)
    );
    assert_eq!(
        s.metric("vector_auto_buffer_current_size{db=\"default\"}")
            .await,
        Some(0.0)
    );
}

#[tokio::test]
async fn recall_at_10_against_brute_force_with_filters_at_50_10_and_1_percent() {
    let s = TestServer::start().await;
    let dim = 24;
    let mut data = clustered(12_050, dim, 11);
    let queries = data.split_off(12_000);
    let (status, r) = s
        .post_json(
            "/v1/collections",
            &json!({"name": "recall", "dimension": dim, "distance": "cosine"}),
        )
        .await;
    assert_eq!(status, 201, "{r}");
    // Half through batches (indexed on return), half buffered (then flushed by count).
    for (c, chunk) in data[..6000].chunks(1000).enumerate() {
        let vectors: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let i = c * 1000 + j;
                json!({"pk": format!("p{i}"), "vector": v, "metadata": {"pct": i % 100, "half": i % 2}})
            })
            .collect();
        let (status, r) = s
            .post_json(
                "/vectors/add/batch?collection=recall",
                &json!({"vectors": vectors}),
            )
            .await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["vectors_written"], 1000);
    }
    for (i, v) in data.iter().enumerate().skip(6000) {
        let (status, r) = s
            .post_json(
                "/vectors/add/buffered?collection=recall",
                &json!({"pk": format!("p{i}"), "vector": v, "metadata": {"pct": i % 100, "half": i % 2}}),
            )
            .await;
        assert_eq!(status, 200, "{r}");
    }
    let (_, info) = s.get_json("/v1/collections/recall").await;
    assert_eq!(
        info["vectors"].as_u64().unwrap() + info["buffered"].as_u64().unwrap(),
        12_000,
        "{info}"
    );
    type Keep = fn(usize) -> bool;
    let cases: [(Option<Value>, Keep); 4] = [
        (None, |_| true),
        (Some(json!({"half": 1})), |i| i % 2 == 1),
        (Some(json!({"pct": {"$gte": 20, "$lt": 30}})), |i| {
            (20..30).contains(&(i % 100))
        }),
        (Some(json!({"pct": {"$in": [77]}})), |i| i % 100 == 77),
    ];
    for (filter, keep) in cases {
        let mut found = 0;
        for q in &queries {
            let mut truth: Vec<(f32, usize)> = (0..data.len())
                .filter(|i| keep(*i))
                .map(|i| (cosine_distance(q, &data[i]), i))
                .collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0));
            let truth: HashSet<String> = truth[..10].iter().map(|(_, i)| format!("p{i}")).collect();
            let mut body = json!({"vector": q, "k": 10, "ef": 100});
            if let Some(f) = &filter {
                body["filter"] = f.clone();
            }
            let hits = search(&s, "/vectors/search?collection=recall", body).await;
            assert_eq!(hits.len(), 10, "exactly k results for {filter:?}");
            for h in &hits {
                assert!(keep(h[1..].parse().unwrap()), "{h} fails {filter:?}");
            }
            found += hits.iter().filter(|h| truth.contains(*h)).count();
        }
        let recall = found as f64 / (10 * queries.len()) as f64;
        assert!(recall >= 0.95, "recall@10 = {recall} for {filter:?}");
    }
}

#[tokio::test]
async fn bad_input_gets_400_with_a_field_path_and_writes_nothing() {
    let s = TestServer::start().await;
    assert_eq!(
        s.post_json(
            "/vectors/add",
            &json!({"pk": "a", "vector": [1.0, 2.0, 3.0]})
        )
        .await
        .0,
        200
    );
    let cases = [
        (
            "/vectors/add",
            json!({"pk": "b", "vector": [1.0, 2.0]}),
            "vector",
            422,
        ),
        ("/vectors/add", json!({"pk": "b"}), "", 400),
        (
            "/vectors/add",
            json!({"pk": "b", "vector": [1.0, "x", 3.0]}),
            "vector[1]",
            400,
        ),
        (
            "/vectors/add",
            json!({"pk": "b", "vector": [1.0, 2.0, 1e39]}),
            "vector",
            400,
        ),
        (
            "/vectors/add",
            json!({"pk": "", "vector": [1.0, 2.0, 3.0]}),
            "pk",
            400,
        ),
        (
            "/vectors/add",
            json!({"pk": "b", "vector": [0.0, 0.0, 0.0]}),
            "vector",
            422,
        ),
        (
            "/vectors/add",
            json!({"pk": "b", "vector": [1.0, 2.0, 3.0], "metadata": [1]}),
            "metadata",
            400,
        ),
        (
            "/vectors/add/batch",
            json!({"vectors": [{"pk": "b", "vector": [1.0, 2.0, 3.0]}, {"pk": "c", "vector": [1.0]}]}),
            "vectors[1].vector",
            422,
        ),
        ("/vectors/add/batch", json!({"vectors": []}), "vectors", 400),
        (
            "/vectors/add/buffered",
            json!({"pk": "b", "vector": [1.0]}),
            "vector",
            422,
        ),
        (
            "/vectors/search",
            json!({"vector": [1.0, 2.0, 3.0], "k": 0}),
            "k",
            400,
        ),
        (
            "/vectors/search",
            json!({"vector": [1.0, 2.0, 3.0], "k": 1_000_000}),
            "k",
            400,
        ),
        (
            "/vectors/search",
            json!({"vector": [1.0, 2.0, 3.0], "k": -1}),
            "k",
            400,
        ),
        (
            "/vectors/search",
            json!({"vector": [1.0, 2.0], "k": 3}),
            "vector",
            422,
        ),
        ("/vectors/search", json!({"k": 3}), "", 400),
        (
            "/vectors/search",
            json!({"vector": [1.0, 2.0, 3.0], "k": 3, "filter": {"n": {"$near": 1}}}),
            "filter.n.$near",
            422,
        ),
        (
            "/vectors/search",
            json!({"vector": [1.0, 2.0, 3.0], "k": 3, "filter": {"n": {"$gt": "x"}}}),
            "filter.n.$gt",
            422,
        ),
        (
            "/vectors/search",
            json!({"vector": [1.0, 2.0, 3.0], "k": 3, "ef": 0}),
            "ef",
            400,
        ),
        (
            "/v1/collections",
            json!({"name": "bad name", "dimension": 3}),
            "name",
            400,
        ),
        (
            "/v1/collections",
            json!({"name": "ok", "dimension": 0}),
            "dimension",
            400,
        ),
        (
            "/v1/collections",
            json!({"name": "ok", "dimension": 3, "distance": "manhattan"}),
            "distance",
            400,
        ),
        (
            "/v1/collections",
            json!({"name": "ok", "dimension": 3, "hnsw": {"m": 1, "ef_construction": 10, "ef_search": 10}}),
            "hnsw.m",
            400,
        ),
    ];
    // 400: the body breaks the schema; 422: it fits, but not the collection or the filter
    // language.
    for (path, body, field, want) in cases {
        let (status, r) = s.post_json(path, &body).await;
        assert_eq!(status, want, "{path} {body} → {r}");
        assert!(
            r["error_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{r}"
        );
        if !field.is_empty() {
            assert_eq!(r["field"], field, "{path} {body} → {r}");
        }
    }
    let (status, r) = s
        .post_json(
            "/vectors/add?collection=missing",
            &json!({"pk": "a", "vector": [1.0]}),
        )
        .await;
    assert_eq!(
        (status, r["code"].as_str()),
        (404, Some("collection_not_found"))
    );
    let (status, r) = s
        .post_json(
            "/v1/collections",
            &json!({"name": "default", "dimension": 3}),
        )
        .await;
    assert_eq!(
        (status, r["code"].as_str()),
        (409, Some("collection_exists"))
    );
    // Nothing of the refused requests was written.
    let (_, info) = s.get_json("/v1/collections/default").await;
    assert_eq!(info["vectors"], 1);
    assert_eq!(info["buffered"], 0);
    assert_eq!(s.get_json("/vectors/b").await.0, 404);
}

#[tokio::test]
async fn concurrent_direct_and_buffered_writers_and_searchers_agree() {
    let s = TestServer::start_with(
        Options::default().env("SLUICE_VECTOR_AUTO_BUFFER_MAX_VECTORS", "50"),
    )
    .await;
    let data = clustered(1600, 8, 5);
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let client = s.client.clone();
        let base = s.base.clone();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..1600).step_by(8) {
                let route = if i % 3 == 0 {
                    "/vectors/add"
                } else {
                    "/vectors/add/buffered"
                };
                let r = client
                    .post(format!("{base}{route}"))
                    .json(&json!({"pk": format!("p{i}"), "vector": data[i], "metadata": {"i": i}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                if i % 10 == 0 {
                    let r = client
                        .post(format!("{base}/vectors/search"))
                        // The filter isolates this write (an exact scan of its matches), so
                        // the check is of visibility, not of the graph's recall.
                        .json(&json!({"vector": data[i], "k": 1, "filter": {"i": i}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    let v: Value = r.json().await.unwrap();
                    assert_eq!(
                        v["results"][0]["pk"],
                        format!("p{i}"),
                        "own write found: {v}"
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        s.post_json("/vectors/buffer/flush", &json!({})).await.0,
        200
    );
    let (_, info) = s.get_json("/v1/collections/default").await;
    assert_eq!(
        (info["vectors"].as_u64(), info["buffered"].as_u64()),
        (Some(1600), Some(0)),
        "{info}"
    );
    for i in (0..1600).step_by(97) {
        let hits = search(
            &s,
            "/vectors/search",
            json!({"vector": data[i], "k": 1, "ef": 200}),
        )
        .await;
        assert_eq!(hits, [format!("p{i}")]);
    }
}

/// Search answers for a fixed set of queries, to compare across restarts. Both kinds are
/// exact, so indexes rebuilt in another order must agree: unfiltered with `ef` beyond the
/// collection's size (an exact scan), and a selective filter (answered by an
/// exact scan of its matches).
async fn answers(s: &TestServer, data: &[Vec<f32>]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for q in data.iter().step_by(50) {
        for filter in [json!({}), json!({"i": {"$in": [3, 30, 300, 333, 500]}})] {
            out.push(
                search(
                    s,
                    "/vectors/search",
                    json!({"vector": q, "k": 5, "ef": 4096, "filter": filter}),
                )
                .await,
            );
        }
    }
    out
}

#[tokio::test]
async fn durability_kill9_graceful_stop_and_snapshot_plus_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let data = clustered(600, 16, 9);
    let add = |i: usize| json!({"pk": format!("p{i}"), "vector": data[i], "metadata": {"i": i}});

    // Direct adds (ack=fsync and ack=wal) survive kill -9: replayed from the WAL.
    let s = TestServer::start_in(&dir, Options::default()).await;
    for i in 0..200 {
        let ack = if i % 2 == 0 { "fsync" } else { "wal" };
        assert_eq!(
            s.post_json(&format!("/vectors/add?ack={ack}"), &add(i))
                .await
                .0,
            200
        );
    }
    let before = answers(&s, &data[..200]).await;
    s.kill9();
    let s = TestServer::start_in(&dir, Options::default()).await;
    assert_eq!(answers(&s, &data[..200]).await, before, "after kill -9");

    // Buffered adds survive a graceful stop, which also writes a snapshot: some applied to the
    // index by a flush but in no snapshot yet, the rest still buffered at the stop.
    for i in 200..380 {
        assert_eq!(s.post_json("/vectors/add/buffered", &add(i)).await.0, 200);
    }
    assert_eq!(
        s.post_json("/vectors/buffer/flush", &json!({})).await.0,
        200
    );
    for i in 380..400 {
        assert_eq!(s.post_json("/vectors/add/buffered", &add(i)).await.0, 200);
    }
    assert_eq!(vstats(&s).await["current_buffer_size"], 20);
    let before = answers(&s, &data[..400]).await;
    assert!(s.stop().success());
    let s = TestServer::start_in(&dir, Options::default()).await;
    assert_eq!(
        answers(&s, &data[..400]).await,
        before,
        "after a graceful stop"
    );
    let st = vstats(&s).await;
    assert!(st["last_snapshot_lsn"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["current_buffer_size"], 0, "nothing left to replay: {st}");

    // Snapshot + replay: more writes after the snapshot (adds, removes, a collection created
    // and deleted), acknowledged at fsync, then kill -9.
    for i in 400..600 {
        assert_eq!(s.post_json("/vectors/add?ack=fsync", &add(i)).await.0, 200);
    }
    for i in (0..600).step_by(9) {
        assert_eq!(
            delete_json(&s, &format!("/vectors/p{i}"), None).await.0,
            200
        );
    }
    assert_eq!(
        s.post_json("/v1/collections", &json!({"name": "tmp", "dimension": 2}))
            .await
            .0,
        201
    );
    assert_eq!(
        s.post_json(
            "/vectors/add?collection=tmp",
            &json!({"pk": "x", "vector": [1.0, 0.0]})
        )
        .await
        .0,
        200
    );
    assert_eq!(delete_json(&s, "/v1/collections/tmp", None).await.0, 200);
    let before = answers(&s, &data).await;
    s.kill9();
    let s = TestServer::start_in(&dir, Options::default()).await;
    assert_eq!(answers(&s, &data).await, before, "snapshot + WAL replay");
    assert_eq!(
        s.get_json("/v1/collections/tmp").await.0,
        404,
        "deleted collection stays deleted"
    );
    assert_eq!(s.get_json("/vectors/p9").await.0, 404);
    assert_eq!(s.get_json("/vectors/p10").await.0, 200);
    // And once more through a graceful stop: the deleted collection's files are gone.
    assert!(s.stop().success());
    let manifest = std::fs::read_to_string(dir.join("databases/default/vectors/MANIFEST")).unwrap();
    assert!(!manifest.contains("\"tmp\""), "{manifest}");
    let s = TestServer::start_in(&dir, Options::default()).await;
    assert_eq!(s.get_json("/v1/collections/tmp").await.0, 404);
    assert_eq!(answers(&s, &data).await, before);
}

#[tokio::test]
async fn disabled_buffer_applies_directly_and_count_trigger_flushes() {
    let s = TestServer::start_with(
        Options::default().env("SLUICE_VECTOR_AUTO_BUFFER_ENABLED", "false"),
    )
    .await;
    let (status, r) = s
        .post_json(
            "/vectors/add/buffered",
            &json!({"pk": "a", "vector": [1.0, 2.0]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        r,
        json!({"success": true, "buffered": false, "buffer_size": 0})
    );
    let (_, info) = s.get_json("/v1/collections/default").await;
    assert_eq!(info["vectors"], 1, "applied to the index: {info}");
    drop(s);

    let s = TestServer::start_with(
        Options::default().env("SLUICE_VECTOR_AUTO_BUFFER_MAX_VECTORS", "10"),
    )
    .await;
    for i in 0..10 {
        let (status, _) = s
            .post_json(
                "/vectors/add/buffered",
                &json!({"pk": format!("p{i}"), "vector": [1.0, i as f32]}),
            )
            .await;
        assert_eq!(status, 200);
    }
    wait_until(
        "a count-triggered flush",
        Duration::from_secs(20),
        || async {
            let st = vstats(&s).await;
            if st["auto_flush_count"] == 1 && st["vectors_flushed"] == 10 {
                Ok(())
            } else {
                Err(st)
            }
        },
    )
    .await;
}
