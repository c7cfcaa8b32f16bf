//! The Prometheus API and remote write over a real server: what a Prometheus or Grafana sees
//! at the edges (durability of remote-written samples, refusals, error shapes, the line
//! protocol's labels). PromQL semantics are checked against a real Prometheus by
//! `tests/prometheus`.

use prost::Message;
use serde_json::{Value, json};
use sluice_server::core::prom::{TimeSeries, WriteRequest};

use crate::support::{TestServer, wait_until};

const STALE: u64 = 0x7ff0_0000_0000_0002;

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries::new(labels, samples)
}

async fn remote_write(s: &TestServer, path: &str, req: &WriteRequest) -> (u16, String) {
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    send_raw(s, path, body).await
}

async fn send_raw(s: &TestServer, path: &str, body: Vec<u8>) -> (u16, String) {
    let r = s
        .client
        .post(s.url(path))
        .header("content-encoding", "snappy")
        .header("content-type", "application/x-protobuf")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn query(s: &TestServer, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = s
        .client
        .post(s.url(path))
        .form(params)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// `(labels, value)` of an instant vector answer.
fn vector(v: &Value) -> Vec<(Value, String)> {
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["data"]["resultType"], "vector", "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"].clone(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn remote_written_samples_survive_kill9_with_their_bits_and_staleness() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = TestServer::start_in(&dir, Default::default()).await;
    let t0 = 1_700_000_000_000i64;
    let req = WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "up"), ("job", "api"), ("instance", "h1:9100")],
                &[
                    (t0, 1.0),
                    (t0 + 15_000, 1.0),
                    (t0 + 30_000, f64::from_bits(STALE)),
                ],
            ),
            series(
                &[("__name__", "odd"), ("kind", "inf")],
                &[(t0, f64::INFINITY), (t0 + 15_000, f64::NEG_INFINITY)],
            ),
            series(
                &[("__name__", "odd"), ("kind", "nan")],
                &[(t0 + 15_000, f64::NAN)],
            ),
        ],
    };
    assert_eq!(remote_write(&s, "/api/v1/write", &req).await.0, 204);
    // The same to another database, under its nested route.
    assert_eq!(
        s.post_json("/v1/databases", &json!({"name": "prom"}))
            .await
            .0,
        201
    );
    assert_eq!(
        remote_write(&s, "/v1/databases/prom/api/v1/write?ack=wal", &req)
            .await
            .0,
        204
    );
    s.kill9();
    let s = TestServer::start_in(&dir, Default::default()).await;
    for prefix in ["", "/v1/databases/prom"] {
        let at = |t: i64| format!("{}", t / 1000);
        let (status, v) = query(
            &s,
            &format!("{prefix}/api/v1/query"),
            &[("query", "up"), ("time", &at(t0 + 20_000))],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            vector(&v),
            vec![(
                json!({"__name__": "up", "instance": "h1:9100", "job": "api"}),
                "1".to_string()
            )],
            "label for label, as written"
        );
        // After the staleness marker the series is gone at once (no 5-minute lookback).
        let (_, v) = query(
            &s,
            &format!("{prefix}/api/v1/query"),
            &[("query", "up"), ("time", &at(t0 + 31_000))],
        )
        .await;
        assert!(vector(&v).is_empty(), "{v}");
        let (_, v) = query(
            &s,
            &format!("{prefix}/api/v1/query"),
            &[("query", "sort(odd)"), ("time", &at(t0 + 15_000))],
        )
        .await;
        let values: Vec<String> = vector(&v).into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, ["-Inf", "NaN"]);
    }
    // Sluice's JSON query carries finite values only: the non-finite samples are skipped, the
    // finite ones answered.
    let (status, v) = s
        .post_json(
            "/ts/query",
            &json!({"metric": "up", "from_ms": 0, "to_ms": i64::MAX}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["series"][0]["points"].as_array().map(Vec::len),
        Some(2),
        "{v}"
    );
    let (status, v) = s
        .post_json(
            "/ts/query",
            &json!({"metric": "odd", "from_ms": 0, "to_ms": i64::MAX}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(!v.to_string().contains("null"), "{v}");
}

#[tokio::test]
async fn bad_remote_writes_and_bad_queries_get_4xx_with_error_ids_and_write_nothing() {
    let s = TestServer::start().await;
    // Not snappy; snappy around garbage; a series without a name next to a good one.
    let (status, body) = send_raw(&s, "/api/v1/write", b"definitely not snappy".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"error_id\""), "{body}");
    let garbage = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
    assert_eq!(send_raw(&s, "/api/v1/write", garbage).await.0, 400);
    let req = WriteRequest {
        timeseries: vec![
            series(&[("__name__", "good")], &[(1000, 1.0)]),
            series(&[("job", "x")], &[(1000, 1.0)]),
        ],
    };
    let (status, body) = remote_write(&s, "/api/v1/write", &req).await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["field"], "timeseries[1].labels", "{body}");
    let (_, v) = query(&s, "/api/v1/query", &[("query", "good"), ("time", "1")]).await;
    assert!(
        vector(&v).is_empty(),
        "nothing of a refused request is written: {v}"
    );

    // Query errors: Prometheus's shape and status, with our error_id.
    for (params, status, error_type) in [
        (vec![("query", "sum(")], 400, "bad_data"),
        (
            vec![("query", "up"), ("time", "yesterday")],
            400,
            "bad_data",
        ),
        (vec![("query", "rate(up)")], 400, "bad_data"),
    ] {
        let (got, v) = query(&s, "/api/v1/query", &params).await;
        assert_eq!(got, status, "{params:?}: {v}");
        assert_eq!(v["status"], "error");
        assert_eq!(v["errorType"], error_type, "{v}");
        assert!(
            v["error_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{v}"
        );
    }
    for (params, error_type) in [
        (
            vec![
                ("query", "up"),
                ("start", "10"),
                ("end", "5"),
                ("step", "1"),
            ],
            "bad_data",
        ),
        (
            vec![
                ("query", "up"),
                ("start", "0"),
                ("end", "100000"),
                ("step", "1"),
            ],
            "bad_data",
        ),
        (
            vec![
                ("query", "up"),
                ("start", "0"),
                ("end", "10"),
                ("step", "0"),
            ],
            "bad_data",
        ),
    ] {
        let (got, v) = query(&s, "/api/v1/query_range", &params).await;
        assert_eq!(
            (got, v["errorType"].as_str()),
            (400, Some(error_type)),
            "{params:?}: {v}"
        );
    }
    let (got, v) = query(&s, "/api/v1/series", &[]).await;
    assert_eq!(
        (got, v["errorType"].as_str()),
        (400, Some("bad_data")),
        "{v}"
    );
    let r = s
        .client
        .get(s.url("/api/v1/label/not-a-name/values"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_query_past_its_sample_limit_fails_cleanly() {
    let s = TestServer::start_with(
        crate::support::Options::default().env("SLUICE_TS_PROMQL_MAX_SAMPLES", "30"),
    )
    .await;
    let samples: Vec<(i64, f64)> = (0..50).map(|i| (i * 1000, i as f64)).collect();
    let req = WriteRequest {
        timeseries: vec![series(&[("__name__", "c")], &samples)],
    };
    assert_eq!(remote_write(&s, "/api/v1/write", &req).await.0, 204);
    let (status, v) = query(
        &s,
        "/api/v1/query",
        &[("query", "sum_over_time(c[1m])"), ("time", "50")],
    )
    .await;
    assert_eq!(
        (status, v["errorType"].as_str()),
        (422, Some("execution")),
        "{v}"
    );
    // `c` at 10 s reads the 11 samples of its lookback window.
    let (status, v) = query(&s, "/api/v1/query", &[("query", "c"), ("time", "10")]).await;
    assert_eq!(status, 200, "a query within the limit still answers: {v}");
}

#[tokio::test]
async fn line_protocol_series_are_selected_by_host_and_entity_labels() {
    let s = TestServer::start().await;
    let r = s
        .client
        .post(s.url("/write?precision=s"))
        .body("cpu,host=h1,dc=eu usage=0.5 1700000000\nm,entity=e1 value=2 1700000000\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for (q, labels) in [
        (
            r#"cpu_usage{host="h1"}"#,
            json!({"__name__": "cpu_usage", "dc": "eu", "entity": "h1", "host": "h1"}),
        ),
        (
            r#"{entity="h1"}"#,
            json!({"__name__": "cpu_usage", "dc": "eu", "entity": "h1", "host": "h1"}),
        ),
        (
            r#"m{entity="e1"}"#,
            json!({"__name__": "m", "entity": "e1"}),
        ),
    ] {
        let v = wait_until(
            "the point is queryable",
            std::time::Duration::from_secs(5),
            || async {
                let (_, v) =
                    query(&s, "/api/v1/query", &[("query", q), ("time", "1700000010")]).await;
                if vector(&v).is_empty() { Err(v) } else { Ok(v) }
            },
        )
        .await;
        assert_eq!(vector(&v)[0].0, labels, "{q}");
    }
    let v: Value = s
        .client
        .get(s.url("/api/v1/label/host/values"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"], json!(["h1"]));
}

#[tokio::test]
async fn hostile_queries_are_refused_and_the_server_stays_up() {
    let s = TestServer::start().await;
    let req = WriteRequest {
        timeseries: vec![series(&[("__name__", "x")], &[(1000, 1.0), (2000, 2.0)])],
    };
    assert_eq!(remote_write(&s, "/api/v1/write", &req).await.0, 204);
    let deep_parens = format!("{}x{}", "(".repeat(20_000), ")".repeat(20_000));
    let long_chain = vec!["x"; 8_000].join(" + ");
    let too_long = "x + ".repeat(20_000) + "x";
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        // (params, route, status, errorType) — deep nesting must not overflow a stack.
        (
            vec![("query", &deep_parens), ("time", "2")],
            "/api/v1/query",
            200,
            "",
        ),
        (
            vec![("query", &long_chain), ("time", "2")],
            "/api/v1/query",
            200,
            "",
        ),
        (
            vec![("query", &too_long), ("time", "2")],
            "/api/v1/query",
            400,
            "bad_data",
        ),
        // Durations the parser cannot represent.
        (
            vec![("query", "x offset 1e20"), ("time", "2")],
            "/api/v1/query",
            400,
            "bad_data",
        ),
        // A subquery of billions of steps is refused before it allocates them.
        (
            vec![("query", "max_over_time(vector(1)[1y:1ms])"), ("time", "2")],
            "/api/v1/query",
            422,
            "execution",
        ),
        // Times at the ends of the range: no overflow, no endless loop.
        (
            vec![
                ("query", "x"),
                ("start", "-9.1e15"),
                ("end", "9.1e15"),
                ("step", "1"),
            ],
            "/api/v1/query_range",
            400,
            "bad_data",
        ),
        (
            vec![("query", "x @ 9e15 offset -290000000y"), ("time", "2")],
            "/api/v1/query",
            200,
            "",
        ),
        (
            vec![("query", "rate(x[290000000y])"), ("time", "9e15")],
            "/api/v1/query",
            200,
            "",
        ),
    ];
    for (params, route, status, error_type) in cases {
        let (got, v) = query(&s, route, &params).await;
        let shown: Vec<(&str, String)> = params
            .iter()
            .map(|(k, v)| (*k, v.chars().take(60).collect()))
            .collect();
        assert_eq!(
            got,
            status,
            "{shown:?}: {}",
            v.to_string().chars().take(300).collect::<String>()
        );
        if !error_type.is_empty() {
            assert_eq!(v["errorType"], error_type, "{shown:?}");
        }
    }
    // Still serving.
    let (status, v) = query(&s, "/api/v1/query", &[("query", "x"), ("time", "2")]).await;
    assert_eq!((status, vector(&v).len()), (200, 1));
}
