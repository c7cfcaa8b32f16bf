//! The wire protocol over real TCP: each opcode's effect is visible over HTTP, stats frames
//! carry the HTTP JSON, errors keep the connection usable (or close it for an oversized
//! frame), pipelined requests are answered in order, backpressure answers `0x04`, `AUTH`
//! gates everything, and the same frames work as WebSocket binary messages at `/v1/ws`.

use crate::support::{Options, TestServer, read_wire_addr};
use serde_json::{Value, json};
use sluice_wire::{Request, Status, TsPoint, VectorEntity, le_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(s: &TestServer) -> TcpStream {
    let addr = read_wire_addr(&s.data_dir).expect("server.json names the wire address");
    TcpStream::connect(addr).await.unwrap()
}

async fn send(c: &mut TcpStream, req: &Request<'_>) {
    let mut out = Vec::new();
    req.encode(&mut out);
    c.write_all(&out).await.unwrap();
}

/// Reads one response frame: (status, payload).
async fn recv(c: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 6];
    c.read_exact(&mut header).await.unwrap();
    let len = u32::from_le_bytes(header[2..6].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    c.read_exact(&mut payload).await.unwrap();
    (header[0], payload)
}

async fn call(c: &mut TcpStream, req: &Request<'_>) -> (u8, Vec<u8>) {
    send(c, req).await;
    recv(c).await
}

fn point(t: i64, v: f64) -> TsPoint {
    TsPoint {
        metric: "wire_cpu".into(),
        entity: "e1".into(),
        timestamp_ms: t,
        value: v,
        tags: [("dc".to_string(), "eu".to_string())].into(),
    }
}

fn u64_of(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload.try_into().expect("8-byte buffer size"))
}

#[tokio::test]
async fn time_series_opcodes_act_like_their_http_routes() {
    let s = TestServer::start().await;
    let mut c = connect(&s).await;
    assert_eq!(call(&mut c, &Request::Auth { token: "dev" }).await.0, 0);
    let (status, payload) = call(
        &mut c,
        &Request::TsPutBuffered {
            points: vec![point(1000, 1.5)],
            batch: false,
        },
    )
    .await;
    assert_eq!(status, Status::Ok as u8);
    assert_eq!(u64_of(&payload), 1, "buffer size after the put");
    let (status, payload) = call(
        &mut c,
        &Request::TsPutBuffered {
            points: vec![point(2000, 2.5), point(3000, 3.5)],
            batch: true,
        },
    )
    .await;
    assert_eq!((status, u64_of(&payload)), (0, 3));
    // Visible over HTTP at once.
    let (status, r) = s
        .post_json(
            "/ts/query",
            &json!({"metric": "wire_cpu", "from_ms": 0, "to_ms": 10_000}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        r["series"][0]["points"],
        json!([[1000, 1.5], [2000, 2.5], [3000, 3.5]])
    );
    assert_eq!(r["series"][0]["tags"], json!({"dc": "eu"}));
    // Stats carry the HTTP JSON.
    let (status, payload) = call(&mut c, &Request::TsBufferStats).await;
    assert_eq!(status, 0);
    let wire: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(wire, s.get_json("/ts/buffer/stats").await.1);
    assert_eq!(wire["points_buffered"], 3);
    let (status, payload) = call(&mut c, &Request::TsBufferFlush).await;
    assert_eq!(status, 0);
    let flushed: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(flushed, json!({"success": true, "points_flushed": 3}));
    assert_eq!(
        s.get_json("/ts/buffer/stats").await.1["manual_flush_count"],
        1
    );
}

#[tokio::test]
async fn a_put_stamped_timestamp_now_gets_the_receive_time() {
    let s = TestServer::start().await;
    let mut c = connect(&s).await;
    let before = sluice_server::now_ms();
    let (status, _) = call(
        &mut c,
        &Request::TsPutBuffered {
            points: vec![point(sluice_wire::TIMESTAMP_NOW, 7.0)],
            batch: false,
        },
    )
    .await;
    assert_eq!(status, Status::Ok as u8);
    let after = sluice_server::now_ms();
    let (status, r) = s
        .post_json(
            "/ts/query",
            &json!({"metric": "wire_cpu", "from_ms": 0, "to_ms": after + 1}),
        )
        .await;
    assert_eq!(status, 200);
    let t = r["series"][0]["points"][0][0].as_i64().unwrap();
    assert!(
        (before..=after).contains(&t),
        "{t} not in [{before}, {after}]"
    );
}

#[tokio::test]
async fn vector_opcodes_act_like_their_http_routes() {
    let s = TestServer::start().await;
    let mut c = connect(&s).await;
    let v1 = le_bytes(&[1.0, 0.0, 0.0]);
    let v2 = le_bytes(&[0.0, 1.0, 0.0]);
    let meta = json!({"category": "tech"}).as_object().unwrap().clone();
    let (status, payload) = call(
        &mut c,
        &Request::VectorAddBuffered {
            entities: vec![
                VectorEntity::new("a", &v1, Some(meta.clone())),
                VectorEntity::new("b", &v2, None),
            ],
            batch: true,
        },
    )
    .await;
    assert_eq!((status, u64_of(&payload)), (0, 2));
    let (_, got) = s.get_json("/vectors/a").await;
    assert_eq!(got["vector"], json!([1.0, 0.0, 0.0]));
    assert_eq!(got["metadata"], json!({"category": "tech"}));
    let (status, _) = call(
        &mut c,
        &Request::VectorUpdateBuffered {
            entities: vec![VectorEntity::new("b", &v1, None)],
            batch: false,
        },
    )
    .await;
    assert_eq!(status, 0);
    assert_eq!(
        s.get_json("/vectors/b").await.1["vector"],
        json!([1.0, 0.0, 0.0])
    );
    let (status, _) = call(
        &mut c,
        &Request::VectorRemoveBuffered {
            pks: vec!["a"],
            batch: false,
        },
    )
    .await;
    assert_eq!(status, 0);
    assert_eq!(s.get_json("/vectors/a").await.0, 404);
    // Updating what does not exist is a processing error with the HTTP error body.
    let (status, payload) = call(
        &mut c,
        &Request::VectorUpdateBuffered {
            entities: vec![VectorEntity::new("nope", &v1, None)],
            batch: false,
        },
    )
    .await;
    assert_eq!(status, Status::ProcessingError as u8);
    let e: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(e["code"], "entity_not_found");
    let (status, payload) = call(&mut c, &Request::VectorBufferStats).await;
    assert_eq!(status, 0);
    let wire: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(wire, s.get_json("/vectors/buffer/stats").await.1);
    let (status, payload) = call(&mut c, &Request::VectorBufferFlush).await;
    assert_eq!(status, 0);
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).unwrap()["success"],
        true
    );
}

/// A `VECTOR_SEARCH` frame.
fn search<'a>(
    collection: &'a str,
    vector: &'a [u8],
    k: u32,
    ef: u32,
    filter: &'a [u8],
) -> Request<'a> {
    Request::VectorSearch(sluice_wire::VectorQuery {
        collection,
        k,
        ef,
        vector: sluice_wire::VectorRef::new(vector),
        filter,
    })
}

#[tokio::test]
async fn the_search_opcode_answers_what_http_search_answers() {
    let s = TestServer::start().await;
    let (status, _) = s
        .post_json("/v1/collections", &json!({"name": "docs", "dimension": 3}))
        .await;
    assert_eq!(status, 201);
    let entities: Vec<Value> = (0..40)
        .map(|i| {
            let x = i as f32 / 40.0;
            json!({"pk": format!("p{i}"), "vector": [1.0, x, 1.0 - x],
                   "metadata": {"i": i, "even": i % 2 == 0}})
        })
        .collect();
    let (status, _) = s
        .post_json(
            "/vectors/add/batch?collection=docs",
            &json!({"vectors": entities}),
        )
        .await;
    assert_eq!(status, 200);
    // One more buffered: searches see the buffer too.
    let (status, _) = s
        .post_json(
            "/vectors/add/buffered?collection=docs",
            &json!({"pk": "late", "vector": [1.0, 0.5, 0.5]}),
        )
        .await;
    assert_eq!(status, 200);
    let mut c = connect(&s).await;
    let q = [1.0f32, 0.45, 0.55];
    let qb = le_bytes(&q);
    for (ef, filter) in [
        (0u32, None),
        (64, Some(json!({"even": true}))),
        (16, Some(json!({"i": {"$gte": 30}}))),
    ] {
        let filter_bytes = filter
            .as_ref()
            .map(|f| serde_json::to_vec(f).unwrap())
            .unwrap_or_default();
        let (status, payload) = call(&mut c, &search("docs", &qb, 5, ef, &filter_bytes)).await;
        assert_eq!(status, 0, "{}", String::from_utf8_lossy(&payload));
        let hits = sluice_wire::decode_search_hits(&payload).unwrap();
        let mut body = json!({"vector": q, "k": 5});
        if ef != 0 {
            body["ef"] = json!(ef);
        }
        if let Some(f) = &filter {
            body["filter"] = f.clone();
        }
        let (status, http) = s.post_json("/vectors/search?collection=docs", &body).await;
        assert_eq!(status, 200);
        let http = http["results"].as_array().unwrap();
        assert_eq!(hits.len(), 5);
        assert_eq!(hits.len(), http.len(), "ef {ef}, filter {filter:?}");
        for (w, h) in hits.iter().zip(http) {
            assert_eq!(w.pk, h["pk"], "ef {ef}, filter {filter:?}");
            // HTTP prints the f32s' shortest decimal: it parses back to the same f32.
            assert_eq!(w.score, h["score"].as_f64().unwrap() as f32);
            assert_eq!(w.distance, h["distance"].as_f64().unwrap() as f32);
            let metadata: Value = if w.metadata.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(w.metadata).unwrap()
            };
            assert_eq!(metadata, h["metadata"]);
        }
    }
    // The buffered entity is found.
    let (status, payload) = call(
        &mut c,
        &search("docs", &le_bytes(&[1.0, 0.5, 0.5]), 1, 0, b""),
    )
    .await;
    assert_eq!(status, 0);
    assert_eq!(
        sluice_wire::decode_search_hits(&payload).unwrap()[0].pk,
        "late"
    );
    // Errors name their field, as over HTTP, and the connection stays usable.
    let short = le_bytes(&[1.0]);
    let bad: [(Request<'_>, &str, &str); 6] = [
        (search("nope", &qb, 5, 0, b""), "collection_not_found", ""),
        (search("docs", &short, 5, 0, b""), "invalid_value", "vector"),
        (search("docs", &qb, 0, 0, b""), "invalid_field", "k"),
        (search("docs", &qb, 5, 5000, b""), "invalid_field", "ef"),
        (
            search("docs", &qb, 5, 0, b"{not json"),
            "invalid_field",
            "filter",
        ),
        (
            search("docs", &qb, 5, 0, br#"{"i": {"$near": 1}}"#),
            "invalid_value",
            "filter.i",
        ),
    ];
    for (req, code, field) in bad {
        let (status, payload) = call(&mut c, &req).await;
        assert_eq!(status, Status::ProcessingError as u8);
        let e: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(e["code"], code, "{e}");
        if !field.is_empty() {
            assert!(e["field"].as_str().unwrap().starts_with(field), "{e}");
        }
        assert!(e["error_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    // A truncated payload is malformed (0x02), not a panic; the next frame is answered.
    let mut frame = Vec::new();
    search("docs", &qb, 5, 0, b"").encode(&mut frame);
    let cut = frame.len() - 6;
    frame[2..6].copy_from_slice(&((cut - 6) as u32).to_le_bytes());
    frame.truncate(cut);
    c.write_all(&frame).await.unwrap();
    assert_eq!(recv(&mut c).await.0, Status::MalformedPayload as u8);
    assert_eq!(call(&mut c, &search("docs", &qb, 1, 0, b"")).await.0, 0);
}

#[tokio::test]
async fn errors_answer_an_error_frame_and_the_connection_stays_usable() {
    let s = TestServer::start().await;
    let mut c = connect(&s).await;
    // Unknown opcode.
    c.write_all(&[0x55, 0, 0, 0, 0, 0]).await.unwrap();
    let (status, payload) = recv(&mut c).await;
    assert_eq!(status, Status::InvalidOpcode as u8);
    let e: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(e["code"], "invalid_opcode");
    assert!(e["error_id"].as_str().is_some_and(|id| !id.is_empty()));
    // Malformed payload: a put cut short.
    c.write_all(&[0x70, 0, 3, 0, 0, 0, 9, 0, b'c'])
        .await
        .unwrap();
    let (status, _) = recv(&mut c).await;
    assert_eq!(status, Status::MalformedPayload as u8);
    // A well-formed frame with an invalid value names the field.
    let (status, payload) = call(
        &mut c,
        &Request::TsPutBuffered {
            points: vec![TsPoint {
                metric: String::new(),
                ..point(1, 1.0)
            }],
            batch: false,
        },
    )
    .await;
    assert_eq!(status, Status::ProcessingError as u8);
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).unwrap()["field"],
        "metric"
    );
    // Replication opcodes carry the HTTP routes' JSON.
    let (status, payload) = call(&mut c, &Request::ReplicationStats).await;
    assert_eq!(status, Status::Ok as u8);
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).unwrap()["role"],
        "primary"
    );
    let (status, payload) = call(&mut c, &Request::WalApplyCompressed(b"{not json")).await;
    assert_eq!(status, Status::ProcessingError as u8);
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).unwrap()["field"],
        "payload"
    );
    let (status, payload) = call(
        &mut c,
        &Request::ReplicationConfig(br#"{"compression_type":"zstd","level":5}"#),
    )
    .await;
    assert_eq!(status, Status::Ok as u8);
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).unwrap()["level"],
        5
    );
    // Still usable.
    assert_eq!(call(&mut c, &Request::TsBufferStats).await.0, 0);
}

#[tokio::test]
async fn an_oversized_frame_gets_an_error_frame_and_the_connection_closes() {
    let s =
        TestServer::start_with(Options::default().env("SLUICE_WIRE_MAX_FRAME_BYTES", "1024")).await;
    let mut c = connect(&s).await;
    c.write_all(&[0x70, 0, 0x00, 0x08, 0, 0]).await.unwrap(); // 2048 bytes announced
    let (status, payload) = recv(&mut c).await;
    assert_eq!(status, Status::MalformedPayload as u8);
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).unwrap()["code"],
        "frame_too_large"
    );
    let mut rest = Vec::new();
    assert_eq!(
        c.read_to_end(&mut rest).await.unwrap(),
        0,
        "closed after the error frame"
    );
    // The server is fine.
    let mut c = connect(&s).await;
    assert_eq!(call(&mut c, &Request::TsBufferStats).await.0, 0);
}

#[tokio::test]
async fn a_thousand_pipelined_requests_are_answered_in_order() {
    let s = TestServer::start_with(
        Options::default().env("SLUICE_TS_AUTO_BUFFER_MAX_POINTS", "100000"),
    )
    .await;
    let mut c = connect(&s).await;
    let mut out = Vec::new();
    for i in 0..1000 {
        Request::TsPutBuffered {
            points: vec![point(i, i as f64)],
            batch: false,
        }
        .encode(&mut out);
    }
    let (mut rd, mut wr) = c.split();
    let writer = async {
        wr.write_all(&out).await.unwrap();
    };
    let reader = async {
        let mut sizes = Vec::new();
        for _ in 0..1000 {
            let mut header = [0u8; 6];
            rd.read_exact(&mut header).await.unwrap();
            let mut p = vec![0u8; u32::from_le_bytes(header[2..6].try_into().unwrap()) as usize];
            rd.read_exact(&mut p).await.unwrap();
            assert_eq!(header[0], 0);
            sizes.push(u64_of(&p));
        }
        sizes
    };
    let ((), sizes) = tokio::join!(writer, reader);
    assert_eq!(
        sizes,
        (1..=1000).collect::<Vec<u64>>(),
        "answers in request order"
    );
}

#[tokio::test]
async fn a_full_write_queue_answers_0x04_and_refused_writes_are_not_applied() {
    let s = TestServer::start_with(Options::default().env("SLUICE_WAL_QUEUE_CAPACITY", "1")).await;
    let mut c = connect(&s).await;
    let n = 3000;
    let mut out = Vec::new();
    for i in 0..n {
        Request::TsPutBuffered {
            points: vec![point(i, 1.0)],
            batch: false,
        }
        .encode(&mut out);
    }
    c.write_all(&out).await.unwrap();
    let (mut ok, mut full) = (0, 0);
    for _ in 0..n {
        match recv(&mut c).await.0 {
            0x00 => ok += 1,
            0x04 => full += 1,
            other => panic!("status {other:#x}"),
        }
    }
    assert!(
        full > 0,
        "a one-record queue must overflow under 3000 pipelined writes"
    );
    let (_, r) = s
        .post_json(
            "/ts/query",
            &json!({"metric": "wire_cpu", "from_ms": 0, "to_ms": n, "aggregation": "count"}),
        )
        .await;
    assert_eq!(
        r["series"][0]["points"][0][1], ok as f64,
        "only acknowledged writes exist"
    );
}

#[tokio::test]
async fn auth_frames_gate_every_operation() {
    let tokens = json!({
        "ops": "wire-admin-token-0123456789",
        "ro": {"token": "wire-reader-token-0123456789", "roles": {"*": "reader"}},
    })
    .to_string();
    let s =
        TestServer::start_with(Options::default().env("SLUICE_BEARER_TOKENS_JSON", &tokens)).await;
    let mut c = connect(&s).await;
    let put = Request::TsPutBuffered {
        points: vec![point(1_700_000_000_000, 1.0)],
        batch: false,
    };
    // Before AUTH: 0x05, payload not decoded, connection usable.
    let (status, payload) = call(&mut c, &put).await;
    assert_eq!(status, Status::Unauthorized as u8);
    let body: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(body["code"], "unauthenticated");
    assert_eq!(
        call(&mut c, &Request::TsBufferStats).await.0,
        Status::Unauthorized as u8
    );
    // A bad token: 0x05, still unauthenticated.
    let (status, _) = call(
        &mut c,
        &Request::Auth {
            token: "wrong-token-0123456789",
        },
    )
    .await;
    assert_eq!(status, Status::Unauthorized as u8);
    assert_eq!(call(&mut c, &put).await.0, Status::Unauthorized as u8);
    // A reader may read but not write.
    assert_eq!(
        call(
            &mut c,
            &Request::Auth {
                token: "wire-reader-token-0123456789"
            }
        )
        .await
        .0,
        0
    );
    assert_eq!(call(&mut c, &Request::TsBufferStats).await.0, 0);
    assert_eq!(call(&mut c, &put).await.0, Status::Forbidden as u8);
    assert_eq!(
        call(&mut c, &Request::TsBufferFlush).await.0,
        Status::Forbidden as u8
    );
    // Re-authenticating as admin on the same connection.
    assert_eq!(
        call(
            &mut c,
            &Request::Auth {
                token: "wire-admin-token-0123456789"
            }
        )
        .await
        .0,
        0
    );
    assert_eq!(call(&mut c, &put).await.0, 0);
    assert_eq!(call(&mut c, &Request::TsBufferFlush).await.0, 0);

    // Before AUTH, a frame larger than 64 KiB is refused and the connection closed.
    let mut c = connect(&s).await;
    let mut header = vec![0x70u8, 0];
    header.extend_from_slice(&(1u32 << 20).to_le_bytes());
    c.write_all(&header).await.unwrap();
    let (status, _) = recv(&mut c).await;
    assert_eq!(status, Status::MalformedPayload as u8);
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).await.unwrap(), 0, "closed");
}

/// Opens `/v1/ws`, optionally with a bearer token on the upgrade.
async fn ws_connect(
    s: &TestServer,
    token: Option<&str>,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/v1/ws", s.addr())
        .into_client_request()
        .unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// Sends one binary message of frames; returns the (status, payload) frames of the answer.
async fn ws_call<S>(ws: &mut S, frames: &[Request<'_>]) -> Vec<(u8, Vec<u8>)>
where
    S: futures_util::Sink<tokio_tungstenite::tungstenite::Message>
        + futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
    S::Error: std::fmt::Debug,
{
    use futures_util::{SinkExt, StreamExt};
    let mut bytes = Vec::new();
    for f in frames {
        f.encode(&mut bytes);
    }
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        bytes.into(),
    ))
    .await
    .unwrap();
    let answer = loop {
        match ws.next().await.unwrap().unwrap() {
            tokio_tungstenite::tungstenite::Message::Binary(b) => break b,
            _ => continue,
        }
    };
    let mut out = Vec::new();
    let mut rest: &[u8] = &answer;
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[2..6].try_into().unwrap()) as usize;
        out.push((rest[0], rest[6..6 + len].to_vec()));
        rest = &rest[6 + len..];
    }
    out
}

#[tokio::test]
async fn the_same_frames_over_websocket() {
    let tokens = json!({"ops": "ws-admin-token-0123456789"}).to_string();
    let s =
        TestServer::start_with(Options::default().env("SLUICE_BEARER_TOKENS_JSON", &tokens)).await;
    // Not an upgrade: 426 in the error shape.
    let r = s.client.get(s.url("/v1/ws")).send().await.unwrap();
    assert_eq!(r.status(), 426);
    // Wrong credentials on the upgrade: refused before upgrading.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/v1/ws", s.addr()),
    )
    .unwrap();
    req.headers_mut().insert(
        "authorization",
        "Bearer wrong-token-0123456789".parse().unwrap(),
    );
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    // A page of another origin may not open a session (browsers do not preflight upgrades).
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/v1/ws", s.addr()),
    )
    .unwrap();
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/v1/ws", s.addr()),
    )
    .unwrap();
    let same = format!("http://{}", s.addr());
    req.headers_mut().insert("origin", same.parse().unwrap());
    assert!(
        tokio_tungstenite::connect_async(req).await.is_ok(),
        "same origin"
    );

    // Unauthenticated session: 0x05 until AUTH, then the ops act like HTTP.
    let mut ws = ws_connect(&s, None).await;
    let put = Request::TsPutBuffered {
        points: vec![point(5_000, 2.5)],
        batch: false,
    };
    let answers = ws_call(&mut ws, std::slice::from_ref(&put)).await;
    assert_eq!(answers[0].0, Status::Unauthorized as u8);
    // Several frames in one message are answered in order in one message.
    let answers = ws_call(
        &mut ws,
        &[
            Request::Auth {
                token: "wrong-token-0123456789",
            },
            Request::Auth {
                token: "ws-admin-token-0123456789",
            },
            put.clone(),
            Request::TsBufferStats,
            Request::VectorBufferStats,
        ],
    )
    .await;
    let statuses: Vec<u8> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [Status::Unauthorized as u8, 0, 0, 0, 0]);
    assert_eq!(u64_of(&answers[2].1), 1);
    let stats: Value = serde_json::from_slice(&answers[3].1).unwrap();
    let r = s
        .client
        .get(s.url("/ts/buffer/stats"))
        .bearer_auth("ws-admin-token-0123456789")
        .send()
        .await
        .unwrap();
    let http: Value = r.json().await.unwrap();
    assert_eq!(stats["buffer_size"], http["buffer_size"]);
    let r = s
        .client
        .post(s.url("/ts/query"))
        .bearer_auth("ws-admin-token-0123456789")
        .json(&json!({"metric": "wire_cpu", "from_ms": 0, "to_ms": 10_000}))
        .send()
        .await
        .unwrap();
    let q: Value = r.json().await.unwrap();
    assert_eq!(q["series"][0]["points"], json!([[5000, 2.5]]));
    // Unknown opcode and malformed payload keep the session.
    let mut bad = vec![0x7f, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&[0x70, 0, 2, 0, 0, 0, 0xff, 0xff]);
    {
        use futures_util::{SinkExt, StreamExt};
        ws.send(tokio_tungstenite::tungstenite::Message::Binary(bad.into()))
            .await
            .unwrap();
        let answer = ws.next().await.unwrap().unwrap().into_data();
        assert_eq!(answer[0], Status::InvalidOpcode as u8);
        let len = u32::from_le_bytes(answer[2..6].try_into().unwrap()) as usize;
        assert_eq!(answer[6 + len], Status::MalformedPayload as u8);
    }
    assert_eq!(ws_call(&mut ws, &[Request::TsBufferStats]).await[0].0, 0);

    // Authenticated at the upgrade: no AUTH frame needed.
    let mut ws = ws_connect(&s, Some("ws-admin-token-0123456789")).await;
    assert_eq!(ws_call(&mut ws, &[put]).await[0].0, 0);
}

#[tokio::test]
async fn websocket_pipelining_backpressure_and_oversized_frames() {
    let s = TestServer::start_with(Options::default().env("SLUICE_WAL_QUEUE_CAPACITY", "1")).await;
    let mut ws = ws_connect(&s, None).await;
    // 1000 frames in one message: 1000 answers, in order.
    let reqs: Vec<Request<'_>> = (0..1000)
        .map(|i| Request::TsPutBuffered {
            points: vec![point(i, 1.0)],
            batch: false,
        })
        .collect();
    let answers = ws_call(&mut ws, &reqs).await;
    assert_eq!(answers.len(), 1000);
    let ok: Vec<u64> = answers
        .iter()
        .filter(|a| a.0 == 0)
        .map(|a| u64_of(&a.1))
        .collect();
    assert!(ok.windows(2).all(|w| w[0] < w[1]), "answered in order");
    // A one-record WAL queue under 3000 pipelined frames: backpressure is 0x04.
    let reqs: Vec<Request<'_>> = (0..3000)
        .map(|i| Request::TsPutBuffered {
            points: vec![point(10_000 + i, 1.0)],
            batch: false,
        })
        .collect();
    let answers = ws_call(&mut ws, &reqs).await;
    assert!(
        answers
            .iter()
            .all(|a| a.0 == 0 || a.0 == Status::BufferOverflow as u8)
    );
    assert!(answers.iter().any(|a| a.0 == Status::BufferOverflow as u8));
    // A frame header announcing more than fits: an error frame, then the session closes.
    use futures_util::{SinkExt, StreamExt};
    let mut bad = vec![0x70u8, 0];
    bad.extend_from_slice(&(64u32 << 20).to_le_bytes());
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(bad.into()))
        .await
        .unwrap();
    let answer = ws.next().await.unwrap().unwrap().into_data();
    assert_eq!(answer[0], Status::MalformedPayload as u8);
    loop {
        match ws.next().await {
            None | Some(Err(_)) => break,
            Some(Ok(m)) if m.is_close() => break,
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn wire_frames_pass_the_same_admission_as_http() {
    let tokens = json!({
        "a": "wire-actor-a-token-0123456789",
        "b": "wire-actor-b-token-0123456789",
    })
    .to_string();
    let s = TestServer::start_with(
        Options::default()
            .env("SLUICE_BEARER_TOKENS_JSON", &tokens)
            .env("SLUICE_ADMISSION_RATE_LIMIT_PER_SEC", "1")
            .env("SLUICE_ADMISSION_RATE_LIMIT_BURST", "3"),
    )
    .await;
    let mut a = connect(&s).await;
    assert_eq!(
        call(
            &mut a,
            &Request::Auth {
                token: "wire-actor-a-token-0123456789"
            }
        )
        .await
        .0,
        0
    );
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(call(&mut a, &Request::TsBufferStats).await.0);
    }
    let limited = Status::TooManyRequests as u8;
    assert_eq!(statuses, [0, 0, 0, limited, limited]);
    let (_, payload) = call(&mut a, &Request::TsBufferStats).await;
    let body: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(body["code"], "rate_limited");
    // Another actor has its own bucket; HTTP and wire share the actor's.
    let mut b = connect(&s).await;
    assert_eq!(
        call(
            &mut b,
            &Request::Auth {
                token: "wire-actor-b-token-0123456789"
            }
        )
        .await
        .0,
        0
    );
    assert_eq!(call(&mut b, &Request::TsBufferStats).await.0, 0);
    let r = s
        .client
        .get(s.url("/ts/buffer/stats"))
        .bearer_auth("wire-actor-a-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

/// The frames of one WebSocket message: (status, flags, payload).
fn frames_of(message: &[u8]) -> Vec<(u8, u8, Value)> {
    let mut out = Vec::new();
    let mut rest = message;
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[2..6].try_into().unwrap()) as usize;
        out.push((
            rest[0],
            rest[1],
            serde_json::from_slice(&rest[6..6 + len]).unwrap(),
        ));
        rest = &rest[6 + len..];
    }
    out
}

#[tokio::test]
async fn a_websocket_session_subscribes_to_a_changefeed_and_resumes_by_lsn() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let tokens = json!({
        "ops": "ws-admin-token-0123456789",
        "other": {"token": "ws-other-token-0123456789", "roles": {"elsewhere": "reader"}}
    })
    .to_string();
    let s =
        TestServer::start_with(Options::default().env("SLUICE_BEARER_TOKENS_JSON", &tokens)).await;
    let put = |v: f64| {
        let c = s.client.clone();
        let url = s.url("/ts/put");
        async move {
            let r = c
                .post(url)
                .bearer_auth("ws-admin-token-0123456789")
                .json(&json!({"metric": "ws", "entity": "e", "timestamp_ms": v as i64, "value": v}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    for i in 0..5 {
        put(i as f64).await;
    }
    let subscribe = |body: Value| {
        Request::ChangesSubscribe(Box::leak(body.to_string().into_boxed_str()).as_bytes())
    };
    // Unauthenticated, unknown database, no role on it: refused, the session stays usable.
    let mut ws = ws_connect(&s, None).await;
    let a = ws_call(&mut ws, &[subscribe(json!({"from_lsn": 0}))]).await;
    assert_eq!(a[0].0, Status::Unauthorized as u8);
    let mut ws = ws_connect(&s, Some("ws-other-token-0123456789")).await;
    let a = ws_call(&mut ws, &[subscribe(json!({"from_lsn": 0}))]).await;
    assert_eq!(a[0].0, Status::Forbidden as u8);
    let mut ws = ws_connect(&s, Some("ws-admin-token-0123456789")).await;
    let a = ws_call(&mut ws, &[subscribe(json!({"database": "nope"}))]).await;
    assert_eq!(a[0].0, Status::ProcessingError as u8);
    let a = ws_call(&mut ws, &[subscribe(json!({"bogus": 1}))]).await;
    assert_eq!(a[0].0, Status::ProcessingError as u8);

    // From LSN 2: records 3.. then live ones, one event frame each.
    let a = ws_call(&mut ws, &[subscribe(json!({"from_lsn": 2}))]).await;
    assert_eq!(a[0].0, Status::Ok as u8);
    let mut events: Vec<(u8, u8, Value)> = Vec::new();
    let mut live_sent = false;
    while events.len() < 5 {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("events in time")
            .unwrap()
            .unwrap();
        if let Message::Binary(b) = m {
            events.extend(frames_of(&b));
        }
        if events.len() >= 3 && !live_sent {
            put(5.0).await;
            put(6.0).await;
            live_sent = true;
        }
    }
    let ids: Vec<u64> = events.iter().map(|e| e.2["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![3, 4, 5, 6, 7]);
    for (status, flags, e) in &events {
        assert_eq!((*status, *flags), (0, sluice_wire::FLAG_EVENT));
        assert_eq!(e["event"], "points");
        assert_eq!(e["data"]["points"][0]["metric"], "ws");
    }
    assert_eq!(events[4].2["data"]["points"][0]["value"], 6.0);
    ws.send(Message::Close(None)).await.unwrap();

    // Over the TCP listener a subscription is refused (it is served over /v1/ws and SSE).
    let mut c = connect(&s).await;
    let (status, _) = call(
        &mut c,
        &Request::Auth {
            token: "ws-admin-token-0123456789",
        },
    )
    .await;
    assert_eq!(status, 0);
    let (status, payload) = call(&mut c, &subscribe(json!({}))).await;
    assert_eq!(status, Status::ProcessingError as u8);
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).unwrap()["code"],
        "subscription_transport"
    );
}

/// One case of the transport-equality table: the same input over HTTP and over the wire.
struct LimitCase {
    name: &'static str,
    http_path: &'static str,
    http_body: Value,
    wire: Request<'static>,
    /// The code and field both transports must answer with.
    code: &'static str,
    field: Option<&'static str>,
}

fn ts_point(metric: &str, entity: &str, tags: &[(&str, &str)]) -> TsPoint {
    TsPoint {
        metric: metric.into(),
        entity: entity.into(),
        timestamp_ms: 1000,
        value: 1.0,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Every limit a write can hit is checked once, in the core, so HTTP and the wire protocol
/// refuse the same input with the same code and field path, and write nothing.
#[tokio::test]
async fn every_limit_is_the_same_on_both_transports() {
    let s = TestServer::start_with(
        Options::default()
            .env("SLUICE_LIMITS_MAX_POINTS_PER_BATCH", "3")
            .env("SLUICE_LIMITS_MAX_NAME_CHARS", "8")
            .env("SLUICE_LIMITS_MAX_TAGS_PER_POINT", "1")
            .env("SLUICE_LIMITS_MAX_TAG_CHARS", "4")
            .env("SLUICE_VECTOR_MAX_VECTORS_PER_BATCH", "2"),
    )
    .await;
    let (status, _) = s
        .post_json(
            "/v1/collections",
            &json!({"name": "default", "dimension": 3, "distance": "l2"}),
        )
        .await;
    assert_eq!(status, 201);
    let ok = || ts_point("m", "e", &[]);
    let v3: &'static [u8] = Box::leak(le_bytes(&[1.0, 0.0, 0.0]).into_boxed_slice());
    let v2: &'static [u8] = Box::leak(le_bytes(&[1.0, 0.0]).into_boxed_slice());
    let jp = |metric: &str, tags: Value| json!({"metric": metric, "entity": "e", "timestamp_ms": 1000, "value": 1.0, "tags": tags});
    let jv = |pk: &str, v: Vec<f32>| json!({"pk": pk, "vector": v});
    let cases = vec![
        LimitCase {
            name: "time-series batch over max_points_per_batch",
            http_path: "/ts/put/batch",
            http_body: json!({"points": [jp("m", json!({})), jp("m", json!({})), jp("m", json!({})), jp("m", json!({}))]}),
            wire: Request::TsPutBuffered {
                points: vec![ok(), ok(), ok(), ok()],
                batch: true,
            },
            code: "invalid_field",
            field: Some("points"),
        },
        LimitCase {
            name: "metric over max_name_chars in a batch",
            http_path: "/ts/put/batch",
            http_body: json!({"points": [jp("m", json!({})), jp("much_too_long", json!({}))]}),
            wire: Request::TsPutBuffered {
                points: vec![ok(), ts_point("much_too_long", "e", &[])],
                batch: true,
            },
            code: "invalid_field",
            field: Some("points[1].metric"),
        },
        LimitCase {
            name: "more tags than max_tags_per_point",
            http_path: "/ts/put/buffered",
            http_body: jp("m", json!({"a": "1", "b": "2"})),
            wire: Request::TsPutBuffered {
                points: vec![ts_point("m", "e", &[("a", "1"), ("b", "2")])],
                batch: false,
            },
            code: "invalid_field",
            field: Some("tags"),
        },
        LimitCase {
            name: "tag value over max_tag_chars",
            http_path: "/ts/put/buffered",
            http_body: jp("m", json!({"a": "12345"})),
            wire: Request::TsPutBuffered {
                points: vec![ts_point("m", "e", &[("a", "12345")])],
                batch: false,
            },
            code: "invalid_field",
            field: Some("tags.a"),
        },
        LimitCase {
            name: "vector batch over max_vectors_per_batch",
            http_path: "/vectors/add/batch",
            http_body: json!({"vectors": [jv("a", vec![1.0, 0.0, 0.0]), jv("b", vec![1.0, 0.0, 0.0]), jv("c", vec![1.0, 0.0, 0.0])]}),
            wire: Request::VectorAddBuffered {
                entities: vec![
                    VectorEntity::new("a", v3, None),
                    VectorEntity::new("b", v3, None),
                    VectorEntity::new("c", v3, None),
                ],
                batch: true,
            },
            code: "invalid_field",
            field: Some("vectors"),
        },
        LimitCase {
            name: "wrong dimension in a vector batch",
            http_path: "/vectors/add/batch",
            http_body: json!({"vectors": [jv("a", vec![1.0, 0.0, 0.0]), jv("b", vec![1.0, 0.0])]}),
            wire: Request::VectorAddBuffered {
                entities: vec![
                    VectorEntity::new("a", v3, None),
                    VectorEntity::new("b", v2, None),
                ],
                batch: true,
            },
            code: "invalid_value",
            field: Some("vectors[1].vector"),
        },
    ];
    let mut c = connect(&s).await;
    for case in &cases {
        let (status, http) = s.post_json(case.http_path, &case.http_body).await;
        // A value that fits the schema but not the collection is 422 (`invalid_value`).
        let want = if case.code == "invalid_value" {
            422
        } else {
            400
        };
        assert_eq!(status, want, "{}: HTTP {http}", case.name);
        let (wire_status, payload) = call(&mut c, &case.wire).await;
        let wire: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            wire_status,
            Status::ProcessingError as u8,
            "{}: wire {wire}",
            case.name
        );
        for (transport, body) in [("HTTP", &http), ("wire", &wire)] {
            assert_eq!(
                body["code"], case.code,
                "{} over {transport}: {body}",
                case.name
            );
            assert_eq!(
                body["field"].as_str(),
                case.field,
                "{} over {transport}: {body}",
                case.name
            );
        }
    }
    // Nothing of any refused write landed.
    let (_, r) = s
        .post_json(
            "/ts/query",
            &json!({"metric": "m", "from_ms": 0, "to_ms": 10_000}),
        )
        .await;
    assert_eq!(r["series"], json!([]));
    let (_, stats) = s.get_json("/vectors/buffer/stats").await;
    assert_eq!(stats["vectors_buffered"], 0, "{stats}");
}
