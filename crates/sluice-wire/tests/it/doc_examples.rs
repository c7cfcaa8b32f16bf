//! The hex examples of `docs/wire-protocol.md` are test vectors: each decodes to the request
//! below and that request encodes back to exactly the documented bytes.

use std::collections::BTreeMap;

use serde_json::json;
use sluice_wire::{
    Request, TsPoint, VectorEntity, VectorQuery, VectorRef, decode_request, split_frame,
};

const DOC: &str = include_str!("../../../../docs/wire-protocol.md");

/// `(name, bytes)` of every ```` ```hex NAME ```` block.
fn examples() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```hex ") else {
            continue;
        };
        let mut bytes = Vec::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            for tok in l.split_whitespace() {
                bytes.push(u8::from_str_radix(tok, 16).expect("hex byte"));
            }
        }
        out.push((name.trim().to_string(), bytes));
    }
    out
}

fn le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn point(metric: &str, entity: &str, t: i64, v: f64, tags: &[(&str, &str)]) -> TsPoint {
    TsPoint {
        metric: metric.into(),
        entity: entity.into(),
        timestamp_ms: t,
        value: v,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn every_documented_example_decodes_and_encodes_to_the_same_bytes() {
    let doc1 = le(&[0.5, -1.0, 2.0]);
    let doc1_update = le(&[1.0, 0.0]);
    let query = le(&[1.0, 0.0]);
    let expected: Vec<(&str, Request<'_>)> = vec![
        (
            "ts_put_buffered",
            Request::TsPutBuffered {
                points: vec![point(
                    "cpu_usage",
                    "server01",
                    1702645200000,
                    75.5,
                    &[("datacenter", "eu-west-1")],
                )],
                batch: false,
            },
        ),
        (
            "ts_put_buffered_batch",
            Request::TsPutBuffered {
                points: vec![
                    point("cpu", "a", 1000, 1.0, &[]),
                    point("cpu", "a", 2000, 2.5, &[]),
                ],
                batch: true,
            },
        ),
        (
            "ts_put",
            Request::TsPut {
                points: vec![
                    point("cpu", "a", 1000, 1.0, &[]),
                    point("cpu", "a", 2000, 2.5, &[]),
                ],
                batch: true,
            },
        ),
        ("ts_buffer_stats", Request::TsBufferStats),
        ("ts_buffer_flush", Request::TsBufferFlush),
        (
            "vector_add_buffered",
            Request::VectorAddBuffered {
                entities: vec![VectorEntity::new(
                    "doc1",
                    &doc1,
                    Some(json!({"category": "tech"}).as_object().unwrap().clone()),
                )],
                batch: false,
            },
        ),
        (
            "vector_update_buffered",
            Request::VectorUpdateBuffered {
                entities: vec![VectorEntity::new("doc1", &doc1_update, None)],
                batch: false,
            },
        ),
        (
            "vector_remove_buffered_batch",
            Request::VectorRemoveBuffered {
                pks: vec!["a", "bc"],
                batch: true,
            },
        ),
        ("vector_buffer_stats", Request::VectorBufferStats),
        ("vector_buffer_flush", Request::VectorBufferFlush),
        ("auth", Request::Auth { token: "s3cret" }),
        (
            "vector_search",
            Request::VectorSearch(VectorQuery {
                collection: "",
                k: 2,
                ef: 0,
                vector: VectorRef::new(&query),
                filter: br#"{"a":1}"#,
            }),
        ),
        (
            "changes_subscribe",
            Request::ChangesSubscribe(br#"{"from_lsn":41}"#),
        ),
    ];
    let examples = examples();
    assert_eq!(
        examples.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "every documented example has an expectation here, in order"
    );
    for ((name, bytes), (_, want)) in examples.iter().zip(&expected) {
        let (frame, used) = split_frame(bytes, 1 << 20)
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: incomplete frame"));
        assert_eq!(used, bytes.len(), "{name}: one whole frame");
        let got = decode_request(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&got, want, "{name}: decodes as documented");
        let mut out = Vec::new();
        want.encode(&mut out);
        assert_eq!(&out, bytes, "{name}: encodes to the documented bytes");
    }
    // The vector is readable in place.
    let Request::VectorAddBuffered { entities, .. } = &expected[5].1 else {
        unreachable!()
    };
    assert_eq!(entities[0].vector.to_vec(), [0.5, -1.0, 2.0]);
}

#[test]
fn the_documented_search_answer_is_what_the_encoder_writes() {
    let hit = sluice_wire::SearchHitRef {
        pk: "p1",
        distance: 0.0,
        score: 1.0,
        metadata: b"",
    };
    let mut payload = Vec::new();
    sluice_wire::encode_search_hits(&[hit], &mut payload).unwrap();
    let mut frame = Vec::new();
    sluice_wire::encode_frame(0, 0, &payload, &mut frame);
    let hex: Vec<String> = frame
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let block = format!("```text\n{}\n```", hex.join("\n"));
    assert!(
        DOC.contains(&block),
        "docs/wire-protocol.md shows:\n{block}"
    );
    assert_eq!(
        sluice_wire::decode_search_hits(&payload).unwrap(),
        vec![hit]
    );
}
