//! The cardinality guard on a real server: per-database limits on series and on new series an
//! hour (set at creation, kept across a restart), the 422 and 429 answers naming them, and
//! `GET /ts/cardinality` against counts worked out here.

use serde_json::{Value, json};

use crate::support::{Options, TestServer};

fn points(db_metric: &str, hosts: std::ops::Range<u32>, dc: &str) -> Value {
    let points: Vec<Value> = hosts
        .map(|h| json!({"metric": db_metric, "entity": format!("h{h}"), "timestamp_ms": 1_700_000_000_000i64,
                        "value": 1.0, "tags": {"dc": dc}}))
        .collect();
    json!({ "points": points })
}

#[tokio::test]
async fn series_limits_per_database_are_enforced_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = TestServer::start_in(&dir, Options::default()).await;
    let (s, body) = node
        .post_json(
            "/v1/databases",
            &json!({"name": "tight", "max_series": 8, "max_new_series_per_hour": 5}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(
        (
            body["max_series"].as_u64(),
            body["max_new_series_per_hour"].as_u64()
        ),
        (Some(8), Some(5))
    );
    let put = "/v1/databases/tight/ts/put/batch";

    let (s, body) = node.post_json(put, &points("cpu", 0..4, "eu")).await;
    assert_eq!(s, 200, "{body}");
    // 4 + 2 > 5 new series in the hour: 429 with Retry-After, nothing written.
    let r = node
        .client
        .post(node.url(put))
        .json(&points("cpu", 4..6, "eu"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "new_series_limit", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("5 new series an hour"),
        "{body}"
    );
    assert!(body["error_id"].is_string());
    // Known series still write; one more new one fits.
    let (s, body) = node.post_json(put, &points("cpu", 0..5, "eu")).await;
    assert_eq!(s, 200, "{body}");
    // A write that alone adds more than the hourly limit never fits: 422.
    let (s, body) = node.post_json(put, &points("mem", 0..6, "us")).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (422, Some("series_limit")),
        "{body}"
    );
    // Other databases are not limited.
    let (s, body) = node
        .post_json("/ts/put/batch", &points("cpu", 0..50, "eu"))
        .await;
    assert_eq!(s, 200, "{body}");

    let (s, c) = node.get_json("/v1/databases/tight/ts/cardinality").await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["total_series"], 5);
    assert_eq!(c["new_series_last_hour"], 5);
    assert_eq!(
        (
            c["max_series"].as_u64(),
            c["max_new_series_per_hour"].as_u64()
        ),
        (Some(8), Some(5))
    );
    assert_eq!(
        c["series_count_by_metric"],
        json!([{"metric": "cpu", "series": 5}])
    );
    assert_eq!(
        c["series_count_by_label"],
        json!([{"label": "dc", "series": 5, "values": 1}, {"label": "entity", "series": 5, "values": 5}])
    );

    // The limits are in the catalogue: after a restart the total limit holds (8 series).
    assert!(node.stop().success());
    let node = TestServer::start_in(&dir, Options::default()).await;
    let (s, list) = node.get_json("/v1/databases").await;
    assert_eq!(s, 200);
    let tight = list["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "tight")
        .unwrap()
        .clone();
    assert_eq!(
        (
            tight["max_series"].as_u64(),
            tight["max_new_series_per_hour"].as_u64()
        ),
        (Some(8), Some(5))
    );
    let (s, body) = node.post_json(put, &points("mem", 0..4, "us")).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (422, Some("series_limit")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("holds 8 series"),
        "{body}"
    );
}

#[tokio::test]
async fn cardinality_lists_the_largest_metrics_labels_and_values() {
    let node = TestServer::start().await;
    for (metric, hosts, dc) in [
        ("cpu", 0..6, "eu"),
        ("cpu", 6..10, "us"),
        ("mem", 0..3, "eu"),
    ] {
        let (s, body) = node
            .post_json("/ts/put/batch", &points(metric, hosts, dc))
            .await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, c) = node.get_json("/ts/cardinality?limit=2").await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        (c["total_series"].as_u64(), c["series"].as_u64()),
        (Some(13), Some(13))
    );
    assert_eq!(
        c["series_count_by_metric"],
        json!([{"metric": "cpu", "series": 10}, {"metric": "mem", "series": 3}])
    );
    assert_eq!(
        c["series_count_by_label_value"],
        json!([{"label": "dc", "value": "eu", "series": 9}, {"label": "dc", "value": "us", "series": 4}])
    );
    let (s, c) = node.get_json("/ts/cardinality?metric=cpu&limit=1").await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["series"], 10);
    assert_eq!(
        c["series_count_by_label"],
        json!([{"label": "dc", "series": 10, "values": 2}])
    );
    assert_eq!(c["max_new_series_per_hour"], 0);
    for bad in [
        "/ts/cardinality?limit=0",
        "/ts/cardinality?limit=1001",
        "/ts/cardinality?limit=x",
    ] {
        let (s, body) = node.get_json(bad).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(body["error_id"].is_string(), "{body}");
    }
    let (s, body) = node
        .post_json("/v1/databases", &json!({"name": "zero", "max_series": 0}))
        .await;
    assert_eq!(s, 400, "{body}");
}
