//! Self-monitoring: the server's own metrics written into `_monitoring`, queried with PromQL,
//! read-only to writers, reserved, kept across restarts, not shipped to replicas by default.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Options, TestServer, run_to_exit, wait_until};

const ADMIN: &str = "monitoring-admin-token-0123456789";
const WRITER: &str = "monitoring-writer-token-0123456789";
const READER: &str = "monitoring-reader-token-0123456789";

fn options() -> Options {
    let tokens = json!({
        "ops": ADMIN,
        "ingest": {"token": WRITER, "roles": {"*": "writer"}},
        "grafana": {"token": READER, "roles": {"*": "reader"}},
    });
    Options::default()
        .env("SLUICE_BEARER_TOKENS_JSON", &tokens.to_string())
        .env("SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS", "1000")
}

async fn send(
    s: &TestServer,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = s.client.request(method, s.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The result of an instant PromQL query over `_monitoring`, as `reader` (`Err`: the answer,
/// e.g. a 404 before the first scrape created the database).
async fn try_promql(s: &TestServer, query: &str) -> Result<Vec<Value>, String> {
    let r = s
        .client
        .get(s.url("/v1/databases/_monitoring/api/v1/query"))
        .query(&[("query", query)])
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    if status != 200 || v["status"] != "success" {
        return Err(format!("{status}: {v}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

async fn promql(s: &TestServer, query: &str) -> Vec<Value> {
    try_promql(s, query).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_servers_own_metrics_are_queryable_read_only_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = TestServer::start_in(&data, options()).await;
    let point = json!({"metric": "m", "entity": "e", "timestamp_ms": 1, "value": 1.0});
    let (st, _) = send(
        &s,
        WRITER,
        reqwest::Method::POST,
        "/ts/put/buffered",
        Some(point.clone()),
    )
    .await;
    assert_eq!(st, 200);

    // The seed's buffer metrics, per database, from the server's own scrapes.
    let series = wait_until(
        "the buffered point in _monitoring",
        Duration::from_secs(30),
        || async {
            let r = try_promql(&s, "ts_auto_buffer_points_buffered_total{db=\"default\"}").await?;
            match r.first().and_then(|v| v["value"][1].as_str()) {
                Some("1") => Ok(r),
                _ => Err(format!("{r:?}")),
            }
        },
    )
    .await;
    assert_eq!(series[0]["metric"]["db"], "default");
    // Rates over the scrapes work as against a Prometheus (several scrapes a second apart).
    wait_until(
        "two scrapes of the process CPU",
        Duration::from_secs(30),
        || async {
            let r = promql(&s, "rate(process_cpu_seconds_total[30s])").await;
            if r.len() == 1 { Ok(()) } else { Err(r) }
        },
    )
    .await;
    let r = promql(&s, "sum by (route) (http_requests_total)").await;
    assert!(!r.is_empty());
    let r = promql(&s, "monitoring_self_scrapes_total").await;
    assert!(r[0]["value"][1].as_str().unwrap().parse::<f64>().unwrap() >= 1.0);

    // Read-only to writers; admins may write; the name is reserved.
    let path = "/v1/databases/_monitoring/ts/put";
    let (st, body) = send(&s, WRITER, reqwest::Method::POST, path, Some(point.clone())).await;
    assert_eq!(st, 403, "{body}");
    assert!(body["error_id"].is_string());
    let (st, _) = send(&s, READER, reqwest::Method::POST, path, Some(point.clone())).await;
    assert_eq!(st, 403);
    let (st, body) = send(&s, ADMIN, reqwest::Method::POST, path, Some(point.clone())).await;
    assert_eq!(st, 200, "{body}");
    let (st, _) = send(&s, WRITER, reqwest::Method::POST, "/ts/put", Some(point)).await;
    assert_eq!(st, 200, "writers still write elsewhere");
    let (st, body) = send(
        &s,
        ADMIN,
        reqwest::Method::POST,
        "/v1/databases",
        Some(json!({"name": "_monitoring"})),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["code"], "invalid_field");
    let (st, body) = send(&s, ADMIN, reqwest::Method::GET, "/v1/databases", None).await;
    assert_eq!(st, 200);
    let db = body["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "_monitoring")
        .cloned()
        .expect("listed");
    assert_eq!(db["retention_ms"], 7 * 24 * 3600 * 1000u64);

    // Not shipped to replicas by default: no lag, no WAL held for them.
    let (st, _) = send(
        &s,
        ADMIN,
        reqwest::Method::POST,
        "/api/v1/replication/replicas",
        Some(json!({"replica_id": "r1", "endpoint": "http://127.0.0.1:9"})),
    )
    .await;
    assert!(st == 200 || st == 201, "{st}");
    let (_, stats) = send(
        &s,
        ADMIN,
        reqwest::Method::GET,
        "/api/v1/replication/stats",
        None,
    )
    .await;
    let names: Vec<&str> = stats["replicas"][0]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default"], "{stats}");

    // A restart reads the catalogue with the reserved name and goes on scraping.
    assert!(s.stop().success());
    let s = TestServer::start_in(&data, options()).await;
    let before = promql(&s, "monitoring_self_scrapes_total").await.len();
    assert_eq!(before, 1, "the scrapes before the restart are still there");
    wait_until(
        "a scrape after the restart",
        Duration::from_secs(30),
        || async {
            let r = promql(&s, "count_over_time(monitoring_self_scrapes_total[1h])").await;
            let n: f64 = r
                .first()
                .and_then(|v| v["value"][1].as_str())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            // At least 3 before the restart (the rate above needed 2) and 1 after.
            if n >= 4.0 { Ok(()) } else { Err(n) }
        },
    )
    .await;
}

#[test]
fn a_scrape_interval_under_a_second_is_refused_at_start() {
    let (status, _, err) = run_to_exit(
        &["serve", "--data-dir", "/nonexistent/never-created"],
        &[("SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS", "500")],
    );
    assert!(!status.success());
    assert!(err.contains("monitoring.self_scrape_interval_ms"), "{err}");
}
