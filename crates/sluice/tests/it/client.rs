//! The Rust client (`sluice-client`) against a real server: every seed method name over HTTP and
//! the wire protocol, typed answers, error bodies, database scoping, tokens, and retries that
//! turn refusals (503 + Retry-After, wire 0x04) into eventual success without losing or
//! duplicating writes.

use std::collections::BTreeMap;

use crate::support::{Options, TestServer, read_wire_addr};
use sluice_client::api::ErrorCode;
use sluice_client::api::ts::{Ack, Aggregation, DataPoint, QueryRequest};
use sluice_client::api::vector::{SearchRequest, VectorEntity};
use sluice_client::{Client, Error, RetryPolicy, WireClient};
use sluice_wire::{Request, TsPoint, le_bytes};

fn dp(metric: &str, ts: i64, value: f64) -> DataPoint {
    DataPoint {
        metric: metric.into(),
        entity: "e1".into(),
        timestamp_ms: Some(ts),
        value,
        tags: BTreeMap::from([("dc".to_string(), "eu".to_string())]),
    }
}

fn count_query(metric: &str, to_ms: i64) -> QueryRequest {
    QueryRequest {
        metric: metric.into(),
        entity: None,
        tags: BTreeMap::new(),
        matchers: Vec::new(),
        from_ms: 0,
        to_ms,
        aggregation: Some(Aggregation::Count),
        step_ms: None,
        group_by: Vec::new(),
    }
}

#[tokio::test]
async fn http_methods_with_the_seed_names() {
    let s = TestServer::start().await;
    let c = Client::new(&s.base).unwrap();
    assert_eq!(
        c.put(&dp("m", 1, 1.0), Some(Ack::Wal)).await.unwrap().lsn,
        1
    );
    let batch = c
        .put_batch(&[dp("m", 2, 2.0), dp("m", 3, 3.0)], None)
        .await
        .unwrap();
    assert_eq!(batch.points_written, 2);
    let r = c.put_buffered(&dp("m", 4, 4.0)).await.unwrap();
    assert!(r.success && r.buffered);
    // The head holds every write not yet in chunks, direct ones included.
    assert_eq!(c.get_buffer_stats().await.unwrap().current_buffer_size, 4);
    assert_eq!(c.flush_buffer().await.unwrap().points_flushed, 4);
    let q = c.query(&count_query("m", 10)).await.unwrap();
    assert_eq!(q.series[0].points, vec![(0, 4.0)]);
    c.write_line_protocol("lp value=9 5", "ms", Some(Ack::Wal))
        .await
        .unwrap();
    assert_eq!(
        c.query(&count_query("lp", 10)).await.unwrap().series.len(),
        1
    );

    let entity = |pk: &str, v: [f32; 2]| VectorEntity {
        pk: pk.into(),
        vector: v.to_vec(),
        metadata: None,
        timestamp_ms: None,
        expires_at_ms: None,
    };
    c.add_buffered(None, &entity("a", [1.0, 0.0]))
        .await
        .unwrap();
    c.add_buffered(None, &entity("b", [0.0, 1.0]))
        .await
        .unwrap();
    c.update_buffered(None, &entity("b", [0.9, 0.1]))
        .await
        .unwrap();
    assert_eq!(
        c.get_vector_buffer_stats()
            .await
            .unwrap()
            .current_buffer_size,
        2
    );
    c.flush_vector_buffer().await.unwrap();
    let found = c
        .search(
            None,
            &SearchRequest {
                vector: vec![1.0, 0.0],
                k: 2,
                filter: None,
                ef: None,
                time_range: None,
                decay: None,
                with_series: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(found.results.len(), 2);
    c.remove_buffered(None, "b").await.unwrap();
    let err = c.get_vector(None, "b").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::EntityNotFound));
    assert_eq!(
        c.get_vector(None, "a").await.unwrap().vector,
        vec![1.0, 0.0]
    );

    // Errors carry the server's body; bad input is not retried.
    let err = c.put(&dp("", 1, 1.0), None).await.unwrap_err();
    match &err {
        Error::Api { status, body } => {
            assert_eq!(*status, 400);
            assert_eq!(body.code, ErrorCode::InvalidField);
            assert!(!body.error_id.is_empty());
        }
        other => panic!("{other:?}"),
    }

    // Databases, and a client scoped to one.
    let created = c
        .create_database(&sluice_client::api::database::CreateDatabase {
            name: "other".into(),
            retention_ms: None,
            retention_rules: Vec::new(),
            downsampling: Vec::new(),
            max_series: None,
            max_new_series_per_hour: None,
            policy: None,
        })
        .await
        .unwrap();
    assert_eq!(created.name, "other");
    let other = c.database("other");
    other.put(&dp("m", 1, 1.0), None).await.unwrap();
    assert_eq!(
        other.query(&count_query("m", 10)).await.unwrap().series[0].points,
        vec![(0, 1.0)]
    );
    assert_eq!(c.list_databases().await.unwrap().databases.len(), 2);
    c.delete_database("other").await.unwrap();
    assert_eq!(
        other.put(&dp("m", 1, 1.0), None).await.unwrap_err().code(),
        Some(ErrorCode::DatabaseNotFound)
    );
}

#[tokio::test]
async fn tokens_on_both_transports() {
    let tokens = serde_json::json!({"ops": "client-admin-token-0123456789"}).to_string();
    let s =
        TestServer::start_with(Options::default().env("SLUICE_BEARER_TOKENS_JSON", &tokens)).await;
    let anonymous = Client::new(&s.base).unwrap();
    let err = anonymous.get_buffer_stats().await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 401, .. }), "{err:?}");
    let c = Client::builder(&s.base)
        .token("client-admin-token-0123456789")
        .build()
        .unwrap();
    c.get_buffer_stats().await.unwrap();

    let addr = read_wire_addr(&s.data_dir).unwrap();
    let mut w = WireClient::connect(&addr, None).await.unwrap();
    assert!(matches!(
        w.get_buffer_stats().await.unwrap_err(),
        Error::Api { status: 5, .. }
    ));
    let mut w = WireClient::connect(&addr, Some("client-admin-token-0123456789"))
        .await
        .unwrap();
    w.get_buffer_stats().await.unwrap();
    assert!(
        WireClient::connect(&addr, Some("wrong-token-0123456789"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn wire_methods_with_the_seed_names() {
    let s = TestServer::start().await;
    let addr = read_wire_addr(&s.data_dir).unwrap();
    let mut w = WireClient::connect(&addr, None).await.unwrap();
    let p = |ts: i64, v: f64| TsPoint {
        metric: "w".into(),
        entity: "e".into(),
        timestamp_ms: ts,
        value: v,
        tags: Default::default(),
    };
    assert_eq!(w.put_buffered(&[p(1, 1.0)]).await.unwrap(), 1);
    assert_eq!(w.put_buffered(&[p(2, 2.0), p(3, 3.0)]).await.unwrap(), 3);
    assert_eq!(w.get_buffer_stats().await.unwrap().current_buffer_size, 3);
    assert_eq!(w.flush_buffer().await.unwrap().points_flushed, 3);
    // TS_PUT: written directly and fsync'd, answered with the LSN; all or nothing.
    let lsn = w.put(&[p(50, 5.0), p(51, 5.0)]).await.unwrap();
    assert!(lsn > 0);
    let err = w
        .put(&[
            p(52, 5.0),
            TsPoint {
                metric: String::new(),
                ..p(53, 5.0)
            },
        ])
        .await
        .unwrap_err();
    match err {
        Error::Api { status, body } => {
            assert_eq!(status, 3);
            assert_eq!(body.field.as_deref(), Some("points[1].metric"));
        }
        other => panic!("{other:?}"),
    }
    let (a, b) = (le_bytes(&[1.0, 0.0]), le_bytes(&[0.0, 1.0]));
    w.add_buffered(&[
        sluice_wire::VectorEntity::new("a", &a, None),
        sluice_wire::VectorEntity::new("b", &b, None),
    ])
    .await
    .unwrap();
    w.update_buffered(&[sluice_wire::VectorEntity::new("b", &a, None)])
        .await
        .unwrap();
    w.remove_buffered(&["a"]).await.unwrap();
    assert_eq!(
        w.get_vector_buffer_stats()
            .await
            .unwrap()
            .current_buffer_size,
        2
    );
    w.flush_vector_buffer().await.unwrap();
    // Pipelining: 500 puts in one round trip, answered in order.
    let reqs: Vec<Request<'_>> = (0..500)
        .map(|i| Request::TsPutBuffered {
            points: vec![p(100 + i, 1.0)],
            batch: false,
        })
        .collect();
    let answers = w.pipeline(&reqs).await.unwrap();
    assert_eq!(answers.len(), 500);
    assert!(answers.iter().all(Result::is_ok));
    // A field too long for the protocol is refused by the client, not sent.
    let long = "x".repeat(70_000);
    let err = w
        .put_buffered(&[TsPoint {
            metric: long,
            ..p(1, 1.0)
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    w.get_buffer_stats().await.unwrap();
    let c = Client::new(&s.base).unwrap();
    let q = c.query(&count_query("w", 1000)).await.unwrap();
    assert_eq!(
        q.series[0].points,
        vec![(0, 505.0)],
        "the refused batch wrote nothing"
    );
}

#[tokio::test]
async fn retries_turn_refusals_into_success_without_duplicates() {
    // A one-record WAL queue refuses most concurrent writes with 503 + Retry-After (HTTP) or
    // 0x04 (wire); with retries every write lands exactly once.
    let s = TestServer::start_with(Options::default().env("SLUICE_WAL_QUEUE_CAPACITY", "1")).await;
    let retry = RetryPolicy {
        max_retries: 200,
        initial_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(20),
    };
    let c = Client::builder(&s.base)
        .retry(retry.clone())
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                c.put(&dp("r", t * 100 + i, 1.0), Some(Ack::Buffer))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let q = c.query(&count_query("r", 10_000)).await.unwrap();
    assert_eq!(q.series[0].points, vec![(0, 320.0)]);

    // Wire: 8 connections of single-frame calls, each retried until it lands.
    let addr = read_wire_addr(&s.data_dir).unwrap();
    let p = |i: i64| TsPoint {
        metric: "rw".into(),
        entity: "e".into(),
        timestamp_ms: i,
        value: 1.0,
        tags: Default::default(),
    };
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let (addr, retry) = (addr.clone(), retry.clone());
        tasks.push(tokio::spawn(async move {
            let mut w = WireClient::connect(&addr, None)
                .await
                .unwrap()
                .with_retry(retry);
            for i in 0..100 {
                w.put_buffered(&[p(t * 1000 + i)]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let q = c.query(&count_query("rw", 10_000)).await.unwrap();
    assert_eq!(q.series[0].points, vec![(0, 800.0)]);

    // A pipeline is retried only as a refused suffix (writes are never reordered): what it
    // reports as written is exactly what the database holds.
    let mut w = WireClient::connect(&addr, None)
        .await
        .unwrap()
        .with_retry(retry);
    let reqs: Vec<Request<'_>> = (0..3000)
        .map(|i| Request::TsPutBuffered {
            points: vec![TsPoint {
                metric: "rp".into(),
                ..p(i)
            }],
            batch: false,
        })
        .collect();
    let answers = w.pipeline(&reqs).await.unwrap();
    let written = answers.iter().filter(|a| a.is_ok()).count();
    assert!(answers.iter().all(|a| match a {
        Ok(_) => true,
        Err(e) => matches!(
            e.code(),
            Some(ErrorCode::Overloaded | ErrorCode::BufferOverflow)
        ),
    }));
    let q = c.query(&count_query("rp", 10_000)).await.unwrap();
    assert_eq!(q.series[0].points, vec![(0, written as f64)]);

    // Without retries, refusals come back as errors carrying the seed's body.
    let mut w = w.with_retry(RetryPolicy::none());
    let answers = w.pipeline(&reqs).await.unwrap();
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Err(Error::Api { status: 4, .. })))
        .count();
    assert!(
        refused > 0,
        "a one-record queue must refuse some of 3000 pipelined writes"
    );
}
