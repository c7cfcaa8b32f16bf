//! The HTTP contract against a real server on loopback: routes, the error shape, limits,
//! timeouts, protocols.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{Options, TestServer, point};
use serde_json::json;

fn assert_error_shape(body: &serde_json::Value, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(
        body["error_id"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn operational_routes_answer() {
    let s = TestServer::start().await;
    assert_eq!(s.get_json("/healthz").await, (200, json!({"status": "ok"})));
    let (status, ready) = s.get_json("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready, json!({"status": "ready", "databases": ["default"]}));
    let (status, version) = s.get_json("/version").await;
    assert_eq!(status, 200);
    assert_eq!(version["name"], "sluice");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let (status, api) = s.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        api["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        api["openapi"]
    );

    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/healthz",status="200"} 1"#),
        "{text}"
    );
    for name in [
        "wal_appends_total",
        "wal_batches_total",
        "wal_fsyncs_total",
        "wal_fsync_seconds_bucket",
        "wal_queue_depth",
    ] {
        assert!(
            text.contains(&format!("{name}{{")),
            "missing {name}:\n{text}"
        );
    }
}

#[tokio::test]
async fn unknown_route_is_404_in_the_error_shape_with_error_id_equal_to_request_id() {
    let s = TestServer::start().await;
    let r = s.client.get(s.url("/no/such/route")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_error_shape(&body, "not_found");
    assert_eq!(body["error_id"], id);

    // A client's own request id is echoed and used.
    let r = s
        .client
        .get(s.url("/no/such/route"))
        .header("x-request-id", "client-req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-req-42");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error_id"], "client-req-42");
}

#[tokio::test]
async fn wrong_method_is_405_in_the_error_shape() {
    let s = TestServer::start().await;
    let r = s.client.delete(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("allow"));
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_error_shape(&body, "method_not_allowed");
    assert_eq!(body["error_id"], id);
}

#[tokio::test]
async fn writes_are_acknowledged_with_increasing_lsns_at_every_level() {
    let s = TestServer::start().await;
    let mut last = 0;
    for ack in ["fsync", "wal", "buffer"] {
        let (status, body) = s
            .post_json(&format!("/ts/put?ack={ack}"), &point("cpu", 1, 0.5))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], true);
        let lsn = body["lsn"].as_u64().unwrap();
        assert!(lsn > last);
        last = lsn;
    }
    let batch =
        json!({"points": [point("cpu", 2, 1.0), point("mem", 2, 2.0), point("cpu", 3, 1.5)]});
    let (status, body) = s.post_json("/ts/put/batch", &batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["points_written"], 3);
    assert_eq!(body["lsn"], last + 1);
}

#[tokio::test]
async fn malformed_json_and_bad_fields_are_400_with_a_field_path() {
    let s = TestServer::start().await;
    let r = s
        .client
        .post(s.url("/ts/put"))
        .body("{\"metric\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_error_shape(&r.json().await.unwrap(), "invalid_json");

    let r = s
        .client
        .post(s.url("/ts/put"))
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_error_shape(&r.json().await.unwrap(), "invalid_json");

    let cases = [
        (
            json!({"metric": 5, "entity": "e", "timestamp_ms": 1, "value": 1.0}),
            "metric",
        ),
        (
            json!({"metric": "m", "entity": "e", "timestamp_ms": "now", "value": 1.0}),
            "timestamp_ms",
        ),
        (
            json!({"metric": "m", "entity": "e", "timestamp_ms": 1.5, "value": 1.0}),
            "timestamp_ms",
        ),
        (
            json!({"metric": "m", "entity": "e", "timestamp_ms": 1, "value": "high"}),
            "value",
        ),
        (
            json!({"metric": "m", "entity": "e", "timestamp_ms": 1, "value": 1.0, "tags": {"a": 1}}),
            "tags.a",
        ),
        (
            json!({"metric": "m", "entity": "e", "timestamp_ms": 1, "value": 1.0, "tags": []}),
            "tags",
        ),
        (
            json!({"metric": "", "entity": "e", "timestamp_ms": 1, "value": 1.0}),
            "metric",
        ),
        (
            json!({"metric": "m", "entity": "e", "timestamp_ms": 1, "value": 1.0, "extra": true}),
            ".",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = s.post_json("/ts/put", &body).await;
        assert_eq!(status, 400, "{body} → {err}");
        if field == "." {
            assert!(err["error"].as_str().unwrap().contains("extra"), "{err}");
        } else {
            assert_eq!(err["field"], field, "{body} → {err}");
        }
    }

    let (status, err) = s
        .post_json(
            "/ts/put/batch",
            &json!({"points": [point("a", 1, 1.0), {"metric": "b"}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        err["error"].as_str().unwrap().contains("points[1]"),
        "{err}"
    );

    // A JSON array never stands for an object (serde would read it as the fields in order).
    let (status, err) = s.post_json("/ts/put", &json!(["m", "e", 1, 1.0, {}])).await;
    assert_eq!(status, 400);
    assert_error_shape(&err, "invalid_json");

    let deep = format!("{{\"tags\": {}{}}}", "[".repeat(200), "]".repeat(200));
    let r = s
        .client
        .post(s.url("/ts/put"))
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_error_shape(&r.json().await.unwrap(), "json_too_deep");

    let r = s
        .client
        .post(s.url("/ts/put?ack=sometimes"))
        .json(&point("m", 1, 1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = r.json().await.unwrap();
    assert_eq!(err["field"], "ack");
}

#[tokio::test]
async fn a_batch_with_one_bad_point_writes_nothing() {
    let s = TestServer::start().await;
    let (_, first) = s.post_json("/ts/put", &point("m", 1, 1.0)).await;
    let lsn = first["lsn"].as_u64().unwrap();
    let batch = json!({"points": [point("m", 2, 1.0), point("m", 3, 2.0), {"metric": "m", "entity": "e", "timestamp_ms": 4, "value": 1.0, "tags": {"": "x"}}]});
    let (status, err) = s.post_json("/ts/put/batch", &batch).await;
    assert_eq!(status, 400);
    assert_eq!(err["field"], "points[2].tags");
    // Nothing was logged: the next write takes the very next LSN.
    let (_, next) = s.post_json("/ts/put", &point("m", 5, 1.0)).await;
    assert_eq!(next["lsn"].as_u64().unwrap(), lsn + 1);
    assert_eq!(
        s.metric(r#"wal_appends_total{db="default"}"#).await,
        Some(2.0)
    );
}

#[tokio::test]
async fn oversized_bodies_are_413_whether_declared_or_streamed() {
    let s =
        TestServer::start_with(Options::default().env("SLUICE_HTTP_MAX_BODY_BYTES", "1000")).await;
    let big = json!({"metric": "m".repeat(2000), "entity": "e", "timestamp_ms": 1, "value": 1.0});
    let r = s
        .client
        .post(s.url("/ts/put"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_error_shape(&r.json().await.unwrap(), "payload_too_large");

    // Chunked, no Content-Length: counted as read.
    let mut conn = TcpStream::connect(s.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let chunk = "x".repeat(600);
    write!(
        conn,
        "POST /ts/put HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    )
    .unwrap();
    let response = read_response_head(&mut conn);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    // The batch route has its own, larger limit.
    let (status, _) = s
        .post_json("/ts/put/batch", &json!({"points": [point("m", 1, 1.0)]}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_slow_body_gets_408_within_the_body_deadline() {
    let s =
        TestServer::start_with(Options::default().env("SLUICE_HTTP_BODY_READ_TIMEOUT_MS", "300"))
            .await;
    let mut conn = TcpStream::connect(s.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        conn,
        "POST /ts/put HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{{\"metric\""
    )
    .unwrap();
    let response = read_response_head(&mut conn);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
}

#[tokio::test]
async fn an_incomplete_request_head_is_cut_after_the_header_timeout() {
    let s =
        TestServer::start_with(Options::default().env("SLUICE_HTTP_HEADER_READ_TIMEOUT_MS", "300"))
            .await;
    let mut conn = TcpStream::connect(s.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(conn, "GET /healthz HTTP/1.1\r\nHost: t\r\n").unwrap();
    let mut buf = Vec::new();
    // The server closes the connection (possibly after a 408); a read timeout would fail here.
    let n = conn
        .read_to_end(&mut buf)
        .expect("server kept a half-sent request open");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    // Normal requests on a new connection still work (the pooled ones were idle longer than
    // the header timeout, which also bounds keep-alive idleness, and are closed too).
    let fresh = reqwest::Client::new();
    assert_eq!(
        fresh.get(s.url("/healthz")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let s = TestServer::start().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_full_wal_queue_answers_503_with_retry_after_and_logs_nothing_it_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let options = Options::default().env("SLUICE_WAL_QUEUE_CAPACITY", "1");
    let s = TestServer::start_in(&dir, options.clone()).await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for round in 0..50 {
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..64 {
            let c = s.client.clone();
            let url = s.url("/ts/put?ack=fsync");
            let body = point("load", round * 100 + i, 1.0);
            requests.spawn(async move { c.post(url).json(&body).send().await.unwrap() });
        }
        while let Some(r) = requests.join_next().await {
            let r = r.unwrap();
            match r.status().as_u16() {
                200 => accepted.push(
                    r.json::<serde_json::Value>().await.unwrap()["lsn"]
                        .as_u64()
                        .unwrap(),
                ),
                503 => {
                    assert_eq!(r.headers()["retry-after"], "1");
                    let body: serde_json::Value = r.json().await.unwrap();
                    assert_error_shape(&body, "overloaded");
                    refused += 1;
                }
                other => panic!("unexpected status {other}"),
            }
        }
        if refused > 0 && round >= 2 {
            break;
        }
    }
    assert!(
        refused > 0,
        "a queue of one never overflowed under 64 concurrent writers"
    );
    accepted.sort();
    let n = accepted.len() as u64;
    assert_eq!(
        accepted,
        (1..=n).collect::<Vec<_>>(),
        "accepted writes must have contiguous LSNs"
    );
    assert!(s.stop().success());

    // After a restart the log holds exactly the accepted writes.
    let s = TestServer::start_in(&dir, options).await;
    assert_eq!(
        s.metric(r#"wal_last_lsn{db="default"}"#).await,
        Some(n as f64)
    );
}

/// Reads until the end of the response head.
fn read_response_head(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => buf.push(byte[0]),
            Err(e) => panic!(
                "reading response: {e}; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    String::from_utf8_lossy(&buf).to_string()
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let s =
        TestServer::start_with(Options::default().env("SLUICE_HTTP_HEADER_READ_TIMEOUT_MS", "300"))
            .await;
    for opening in [&b""[..], b"P", b"PRI * HTTP/2.0\r\n"] {
        let mut conn = TcpStream::connect(s.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        conn.write_all(opening).unwrap();
        let mut buf = Vec::new();
        // Closed means EOF or a reset (unread bytes); a read timeout means it was kept open.
        if let Err(e) = conn.read_to_end(&mut buf) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset,
                "connection opened with {opening:?} was kept open: {e}"
            );
        }
    }
}

#[tokio::test]
async fn unknown_methods_share_one_metrics_label() {
    let s = TestServer::start().await;
    for i in 0..3 {
        let m = reqwest::Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        let r = s.client.request(m, s.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 405);
    }
    let text = s.metrics_text().await;
    assert!(
        text.contains(r#"http_requests_total{method="OTHER",route="/healthz",status="405"} 3"#),
        "{text}"
    );
    assert!(!text.contains("FOO"), "{text}");
}

#[tokio::test]
async fn seed_routes_say_success_false_on_every_error_and_others_do_not() {
    let s = TestServer::start().await;
    // A seed route (its success answer carries `success`): a validation error, a missing
    // database and a body that is not JSON all say `success: false`.
    let (status, err) = s
        .post_json("/ts/put/buffered", &json!({"metric": ""}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["success"], false, "{err}");
    let (status, err) = s
        .post_json("/v1/databases/nope/ts/put", &point("m", 1, 1.0))
        .await;
    assert_eq!(status, 404);
    assert_eq!(err["success"], false, "{err}");
    let r = s
        .client
        .post(s.url("/vectors/add/buffered"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = r.json().await.unwrap();
    assert_eq!(err["success"], false, "{err}");
    // Not a seed route: no `success` field.
    let (status, err) = s
        .post_json("/v1/collections", &json!({"name": "", "dimension": 3}))
        .await;
    assert_eq!(status, 400);
    assert!(err.get("success").is_none(), "{err}");
}

#[tokio::test]
async fn limits_count_characters_and_integers_may_be_written_as_floats() {
    let s =
        TestServer::start_with(Options::default().env("SLUICE_LIMITS_MAX_NAME_CHARS", "4")).await;
    // Four characters of four bytes each: within a limit of four characters.
    let (status, body) = s.post_json("/ts/put", &point("𝄞𝄞𝄞𝄞", 1, 1.0)).await;
    assert_eq!(status, 200, "{body}");
    let (status, err) = s.post_json("/ts/put", &point("abcde", 1, 1.0)).await;
    assert_eq!(status, 400);
    assert_eq!(err["field"], "metric");
    // JSON Schema's integers: 2000.0 is 2000; 2000.5 is not an integer.
    let (status, body) = s
        .post_json(
            "/ts/put",
            &json!({"metric": "m", "entity": "e", "timestamp_ms": 2000.0, "value": 1.0}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, q) = s
        .post_json(
            "/ts/query",
            &json!({"metric": "m", "from_ms": 0, "to_ms": 5000.0}),
        )
        .await;
    assert_eq!(q["series"][0]["points"][0][0], 2000, "{q}");
    let (status, err) = s
        .post_json(
            "/ts/put",
            &json!({"metric": "m", "entity": "e", "timestamp_ms": 2000.5, "value": 1.0}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["field"], "timestamp_ms");
}

/// A request refused before its body was read (here by admission: one request in flight per
/// actor) still gets its answer: the server reads and discards the body first, so a client
/// that sends the whole body reads the 429 and its Retry-After instead of a reset connection,
/// and the connection serves the next request.
#[tokio::test]
async fn a_refusal_before_the_body_is_read_is_still_readable_by_a_client_sending_it() {
    let s = TestServer::start_with(
        Options::default().env("SLUICE_ADMISSION_MAX_IN_FLIGHT_PER_ACTOR", "1"),
    )
    .await;
    let addr = s.addr();
    // Hold the one slot: a request whose body never finishes.
    let mut holder = TcpStream::connect(&addr).unwrap();
    holder
        .write_all(
            b"POST /ts/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let body = format!(
        "{{\"points\": [{}]}}",
        vec![r#"{"metric":"m","entity":"e","timestamp_ms":1,"value":1}"#; 20_000].join(",")
    );
    let head = format!(
        "POST /ts/put/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body.as_bytes())
        .expect("the server reset the connection mid-body");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n{") || !answer.ends_with(b"}") {
        let n = conn.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before the answer: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(text.starts_with("http/1.1 429"), "{text}");
    assert!(text.contains("retry-after:"), "{text}");
    // The connection is still good (the refused body was read to its end).
    drop(holder);
    std::thread::sleep(Duration::from_millis(200));
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let n = conn.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}
