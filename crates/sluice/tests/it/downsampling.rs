//! Downsampling on a real server: rules through the API and the catalogue, rollups computed by
//! the background sweep and checked against values worked out here (avg across resolution
//! boundaries included), and kill -9 in the middle of a sweep without double counting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Options, TestServer, now_ms, wait_until};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

/// After 10 min, 10-s buckets; after 1 h, 1-min buckets.
fn rules() -> Value {
    json!([
        {"after_ms": 10 * MIN, "resolution_ms": 10_000},
        {"after_ms": HOUR, "resolution_ms": MIN}
    ])
}

fn options() -> Options {
    Options::default()
        .env("SLUICE_TS_RETENTION_SWEEP_INTERVAL_MS", "50")
        .env("SLUICE_TS_CHUNK_TARGET_POINTS", "128")
}

/// Points of series `host-<h>` the test keeps: timestamp → value.
type Model = BTreeMap<(String, i64), f64>;

/// Writes 3 hours of points every `every` ms for `hosts` series (values from a fixed generator, a few
/// timestamps written twice: the second write wins), and returns what the server must hold.
async fn write_history(
    s: &TestServer,
    db: &str,
    hosts: std::ops::Range<u32>,
    every: usize,
    now: i64,
) -> Model {
    let mut model = Model::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(hosts.start);
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 100_000) as f64 / 1000.0
    };
    let start = now - 3 * HOUR;
    let mut points = Vec::new();
    for h in hosts {
        let entity = format!("host-{h}");
        for (i, t) in (start..now).step_by(every).enumerate() {
            let v = next();
            points.push(json!({"metric": "cpu", "entity": entity, "timestamp_ms": t, "value": v}));
            model.insert((entity.clone(), t), v);
            if i % 101 == 0 {
                let v = next();
                points.push(
                    json!({"metric": "cpu", "entity": entity, "timestamp_ms": t, "value": v}),
                );
                model.insert((entity.clone(), t), v);
            }
        }
    }
    for batch in points.chunks(10_000) {
        let (st, body) = s
            .post_json(
                &format!("/v1/databases/{db}/ts/put/batch"),
                &json!({"points": batch}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
    }
    let (st, body) = s
        .post_json(&format!("/v1/databases/{db}/ts/buffer/flush"), &json!({}))
        .await;
    assert_eq!(st, 200, "{body}");
    model
}

/// `aggregation` of every point of `model` in `[from, to]` per bucket of `step` (from `from`),
/// over all series together.
fn expected(model: &Model, aggregation: &str, from: i64, to: i64, step: i64) -> Vec<(i64, f64)> {
    let mut buckets: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
    for ((_, t), v) in model {
        if (from..=to).contains(t) {
            buckets
                .entry(from + (t - from).div_euclid(step) * step)
                .or_default()
                .push((*t, *v));
        }
    }
    buckets
        .into_iter()
        .map(|(b, mut pts)| {
            pts.sort_by_key(|p| p.0);
            let vs: Vec<f64> = pts.iter().map(|p| p.1).collect();
            let sum: f64 = vs.iter().sum();
            let v = match aggregation {
                "sum" => sum,
                "count" => vs.len() as f64,
                "avg" => sum / vs.len() as f64,
                "min" => vs.iter().copied().fold(f64::INFINITY, f64::min),
                "max" => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                "last" => *vs.last().unwrap(),
                other => panic!("{other}"),
            };
            (b, v)
        })
        .collect()
}

async fn answer(
    s: &TestServer,
    db: &str,
    aggregation: &str,
    from: i64,
    to: i64,
    step: i64,
) -> Vec<(i64, f64)> {
    let body = json!({"metric": "cpu", "from_ms": from, "to_ms": to, "aggregation": aggregation,
        "step_ms": step, "group_by": ["none"]});
    let (st, r) = s
        .post_json(&format!("/v1/databases/{db}/ts/query"), &body)
        .await;
    assert_eq!(st, 200, "{r}");
    let series = r["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{r}");
    series[0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

fn close(got: &[(i64, f64)], want: &[(i64, f64)]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} buckets, want {}", got.len(), want.len()));
    }
    for (g, w) in got.iter().zip(want) {
        if g.0 != w.0 || (g.1 - w.1).abs() > 1e-9 * w.1.abs().max(1.0) {
            return Err(format!("{g:?} != {w:?}"));
        }
    }
    Ok(())
}

/// Every aggregation over the model, by the minute and over the whole range at once (across
/// the raw part and both resolutions: `avg` must be sum/count, not a mean of means).
async fn check(s: &TestServer, db: &str, model: &Model, now: i64) -> Result<(), String> {
    let from = (now - 3 * HOUR).div_euclid(MIN) * MIN;
    let to = now;
    for aggregation in ["sum", "count", "avg", "min", "max", "last"] {
        for step in [MIN, 10 * MIN, to - from + 1] {
            let got = answer(s, db, aggregation, from, to, step).await;
            close(&got, &expected(model, aggregation, from, to, step))
                .map_err(|e| format!("{aggregation} by {step} ms: {e}"))?;
        }
    }
    Ok(())
}

/// Raw points the server still holds for the metric (a downsampled bucket reads as one).
async fn raw_points(s: &TestServer, db: &str, now: i64) -> usize {
    let body = json!({"metric": "cpu", "from_ms": now - 4 * HOUR, "to_ms": now});
    let (st, r) = s
        .post_json(&format!("/v1/databases/{db}/ts/query"), &body)
        .await;
    assert_eq!(st, 200, "{r}");
    r["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["points"].as_array().unwrap().len())
        .sum()
}

#[tokio::test]
async fn rollups_match_the_points_they_replace_and_rules_are_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = TestServer::start_in(&dir, options()).await;
    let (st, body) = s
        .post_json(
            "/v1/databases",
            &json!({"name": "ds", "downsampling": rules()}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["downsampling"], rules());
    let now = now_ms();
    let model = write_history(&s, "ds", 0..3, 5_000, now).await;
    // The sweep runs every 50 ms: wait until it has rolled everything past 10 minutes up.
    // 3 series × 3 h at 5 s (6,480 points): raw, only the last 10 min stay (3 × 120
    // points), then one point per 10-s bucket to 1 h (3 × 300) and per minute beyond
    // (3 × 120): 1,620.
    let all = model.len();
    wait_until("the sweep rolls up", Duration::from_secs(60), || async {
        let n = raw_points(&s, "ds", now).await;
        if n <= 1_700 {
            Ok(())
        } else {
            let log = s.stderr();
            let sweep: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("sweep") || l.contains("panick"))
                .take(3)
                .collect();
            Err(format!("{n} of {all} points raw; {sweep:?}"))
        }
    })
    .await;
    check(&s, "ds", &model, now).await.unwrap();
    // PromQL reads a downsampled range as each bucket's last point: at a time 2 h back (1-min
    // buckets), the latest sample at or before it.
    for back in [2 * HOUR + 17_000, 30 * MIN + 4_000, 5 * MIN] {
        let at = now - back;
        let bucket = |res: i64| at.div_euclid(res) * res;
        let res = if back > HOUR {
            MIN
        } else if back > 10 * MIN {
            10_000
        } else {
            1
        };
        let points = |from: i64, to: i64| {
            model
                .range(("host-1".to_string(), from)..("host-1".to_string(), to))
                .map(|((_, t), v)| (*t, *v))
                .collect::<Vec<_>>()
        };
        let b = bucket(res);
        let want = match points(b, b + res).last() {
            Some(&(t, v)) if t <= at => v,
            _ => points(b - res, b).last().unwrap().1,
        };
        let r = s
            .client
            .post(s.url("/v1/databases/ds/api/v1/query"))
            .form(&[
                ("query", r#"cpu{entity="host-1"}"#.to_string()),
                ("time", format!("{}.{:03}", at / 1000, at % 1000)),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let got: f64 = v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .parse()
            .unwrap();
        assert_eq!(got, want, "{back} ms back: {v}");
    }
    // A late point in a range already rolled up joins its bucket.
    let mut model = model;
    let late = now - 2 * HOUR - 7_777;
    model.insert(("host-9".into(), late), 1e5);
    let (st, body) = s
        .post_json(
            "/v1/databases/ds/ts/put",
            &json!({"metric": "cpu", "entity": "host-9", "timestamp_ms": late, "value": 1e5}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    check(&s, "ds", &model, now).await.unwrap();
    // The rules are in the catalogue; the rollups are on disk.
    assert!(s.stop().success());
    let s = TestServer::start_in(&dir, options()).await;
    let (_, list) = s.get_json("/v1/databases").await;
    let ds = list["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "ds")
        .cloned()
        .unwrap();
    assert_eq!(ds["downsampling"], rules());
    check(&s, "ds", &model, now).await.unwrap();

    // Bad rules: a 400 out of range, a 422 out of order, naming the rule and field, with an
    // error_id.
    for (rules, status, field) in [
        (
            json!([{"after_ms": 0, "resolution_ms": 1000}]),
            400,
            "downsampling[0].after_ms",
        ),
        (
            json!([{"after_ms": 10, "resolution_ms": 0}]),
            400,
            "downsampling[0].resolution_ms",
        ),
        (
            json!([{"after_ms": 10, "resolution_ms": 1u64 << 41}]),
            400,
            "downsampling[0].resolution_ms",
        ),
        (
            json!([{"after_ms": 100, "resolution_ms": 1000}, {"after_ms": 50, "resolution_ms": 60000}]),
            422,
            "downsampling[1].after_ms",
        ),
        (
            json!([{"after_ms": 100, "resolution_ms": 60000}, {"after_ms": 500, "resolution_ms": 90000}]),
            422,
            "downsampling[1].resolution_ms",
        ),
    ] {
        let (st, body) = s
            .post_json(
                "/v1/databases",
                &json!({"name": "bad", "downsampling": rules}),
            )
            .await;
        assert_eq!(st, status, "{body}");
        assert_eq!(body["field"], field, "{body}");
        assert!(
            body["error_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{body}"
        );
    }
    let (st, body) = s
        .post_json(
            "/v1/databases",
            &json!({"name": "bad", "downsampling": [{"after_ms": "soon", "resolution_ms": 1}]}),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(s.stop().success());
}

#[tokio::test]
async fn rollups_survive_kill_9_mid_sweep_without_double_counting() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // Each sweep step (1024 series, one atomic batch) is logged at debug level.
    let opts = || options().env("SLUICE_LOG_LEVEL", "info,sluice_server::retention=debug");
    let s = TestServer::start_in(
        &dir,
        opts().env("SLUICE_TS_RETENTION_SWEEP_INTERVAL_MS", "3600000"),
    )
    .await;
    let (st, body) = s
        .post_json(
            "/v1/databases",
            &json!({"name": "ds", "downsampling": rules()}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let now = now_ms();
    // 2,100 series × 3 h at 60 s (378,000 points): a sweep takes three steps, three atomic
    // batches.
    let model = write_history(&s, "ds", 0..2_100, 60_000, now).await;
    s.kill9();
    // Each start sweeps at once: kill it as soon as its first step has committed, while the
    // second is rolling series 1024..2048 up.
    for _ in 0..3 {
        let s = TestServer::start_in(&dir, opts()).await;
        s.wait_for_log("sweep step committed", Duration::from_secs(60))
            .await;
        s.kill9();
    }
    let s = TestServer::start_in(&dir, opts()).await;
    // Mid-sweep or not, a query sees each point once.
    check(&s, "ds", &model, now).await.unwrap();
    s.wait_for_log("sweep finished", Duration::from_secs(120))
        .await;
    check(&s, "ds", &model, now).await.unwrap();
    // The kills came before the second step committed: this sweep still had its series to
    // roll up.
    let log = s.stderr();
    let second = log
        .lines()
        .find(|l| l.contains("sweep step committed") && l.contains("first=1024"))
        .unwrap_or_else(|| panic!("no second step in:\n{log}"))
        .to_string();
    assert!(!second.contains("rolled=0"), "{second}");
    assert!(s.stop().success());
}
