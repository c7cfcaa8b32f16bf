//! Property tests of the codec: every request round-trips; arbitrary bytes never panic the
//! decoder; a stream of frames decodes the same however it is split into reads.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sluice_wire::{
    DecodeError, FLAG_BATCH, FrameError, Opcode, RawFrame, Request, SearchHitRef, Status, TsPoint,
    VectorEntity, VectorQuery, VectorRef, decode_request, decode_search_hits, decode_ts_series,
    encode_frame, encode_search_hits, split_frame,
};

const MAX: usize = 1 << 20;

/// An owned vector item: pk, little-endian components, metadata.
type Item = (String, Vec<u8>, Option<Map<String, Value>>);

/// Owned material for a request (vectors are borrowed by `Request`).
#[derive(Clone, Debug)]
enum Spec {
    Auth(String),
    Ts(Vec<TsPoint>, bool),
    Add(Vec<Item>, bool, bool),
    Remove(Vec<String>, bool),
    Empty(Opcode),
    Raw(Opcode, Vec<u8>),
    /// collection, k, ef, vector bytes, filter JSON.
    Search(String, u32, u32, Vec<u8>, Vec<u8>),
}

impl Spec {
    fn request(&self) -> Request<'_> {
        match self {
            Spec::Auth(t) => Request::Auth { token: t },
            Spec::Ts(points, batch) if points.len() % 2 == 0 => Request::TsPutBuffered {
                points: points.clone(),
                batch: *batch,
            },
            Spec::Ts(points, batch) => Request::TsPut {
                points: points.clone(),
                batch: *batch,
            },
            Spec::Add(items, update, batch) => {
                let entities = items
                    .iter()
                    .map(|(pk, v, m)| VectorEntity::new(pk, v, m.clone()))
                    .collect();
                if *update {
                    Request::VectorUpdateBuffered {
                        entities,
                        batch: *batch,
                    }
                } else {
                    Request::VectorAddBuffered {
                        entities,
                        batch: *batch,
                    }
                }
            }
            Spec::Remove(pks, batch) => Request::VectorRemoveBuffered {
                pks: pks.iter().map(String::as_str).collect(),
                batch: *batch,
            },
            Spec::Empty(op) => match op {
                Opcode::TsBufferStats => Request::TsBufferStats,
                Opcode::TsBufferFlush => Request::TsBufferFlush,
                Opcode::VectorBufferStats => Request::VectorBufferStats,
                Opcode::VectorBufferFlush => Request::VectorBufferFlush,
                _ => Request::ReplicationStats,
            },
            Spec::Search(collection, k, ef, v, filter) => Request::VectorSearch(VectorQuery {
                collection,
                k: *k,
                ef: *ef,
                vector: VectorRef::new(v),
                filter,
            }),
            Spec::Raw(op, b) => match op {
                Opcode::WalApplyCompressed => Request::WalApplyCompressed(b),
                Opcode::ChangesSubscribe => Request::ChangesSubscribe(b),
                _ => Request::ReplicationConfig(b),
            },
        }
    }
}

fn text() -> impl Strategy<Value = String> + Clone {
    "[a-zA-Z0-9_ é∑-]{0,12}"
}

fn ts_point() -> impl Strategy<Value = TsPoint> + Clone {
    (
        text(),
        text(),
        any::<i64>(),
        any::<f64>().prop_filter("NaN != NaN", |v| !v.is_nan()),
        proptest::collection::btree_map(text(), text(), 0..3),
    )
        .prop_map(|(metric, entity, timestamp_ms, value, tags)| TsPoint {
            metric,
            entity,
            timestamp_ms,
            value,
            tags: tags.into_iter().collect::<BTreeMap<_, _>>(),
        })
}

fn vector_item() -> impl Strategy<Value = Item> + Clone {
    (
        text(),
        proptest::collection::vec(-1e6f32..1e6, 0..16),
        proptest::option::of(proptest::collection::btree_map(
            "[a-z]{1,4}",
            any::<i32>(),
            0..3,
        )),
    )
        .prop_map(|(pk, v, m)| {
            let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            let meta = m.map(|m| m.into_iter().map(|(k, v)| (k, json!(v))).collect());
            (pk, bytes, meta)
        })
}

/// Batch flag with n items, or a single item.
fn items<T: std::fmt::Debug + Clone>(
    item: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = (Vec<T>, bool)> {
    prop_oneof![
        item.clone().prop_map(|i| (vec![i], false)),
        proptest::collection::vec(item, 1..6).prop_map(|v| (v, true)),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        text().prop_map(Spec::Auth),
        items(ts_point()).prop_map(|(p, b)| Spec::Ts(p, b)),
        (items(vector_item()), any::<bool>()).prop_map(|((v, b), u)| Spec::Add(v, u, b)),
        items(text()).prop_map(|(p, b)| Spec::Remove(p, b)),
        prop::sample::select(vec![
            Opcode::TsBufferStats,
            Opcode::TsBufferFlush,
            Opcode::VectorBufferStats,
            Opcode::VectorBufferFlush,
            Opcode::ReplicationStats,
        ])
        .prop_map(Spec::Empty),
        (
            prop::sample::select(vec![
                Opcode::WalApplyCompressed,
                Opcode::ReplicationConfig,
                Opcode::ChangesSubscribe
            ]),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(o, b)| Spec::Raw(o, b)),
        (
            text(),
            any::<u32>(),
            any::<u32>(),
            vector_item(),
            proptest::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(c, k, ef, (_, v, _), f)| Spec::Search(c, k, ef, v, f)),
    ]
}

/// Decodes every frame of `stream` fed in pieces of the given sizes (cycled).
fn decode_stream(stream: &[u8], cuts: &[usize]) -> Vec<(u8, u8, Vec<u8>)> {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < stream.len() {
        let n = cuts[i % cuts.len()].max(1).min(stream.len() - pos);
        i += 1;
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        while let Some((f, used)) = split_frame(&buf, MAX).unwrap() {
            out.push((f.code, f.flags, f.payload.to_vec()));
            buf.drain(..used);
        }
    }
    assert!(buf.is_empty(), "no bytes left over");
    out
}

proptest! {
    #[test]
    fn search_answers_round_trip(
        hits in proptest::collection::vec(
            (text(), any::<f32>(), any::<f32>(), proptest::collection::vec(any::<u8>(), 0..24)),
            0..12,
        ),
    ) {
        let refs: Vec<SearchHitRef<'_>> = hits
            .iter()
            .map(|(pk, d, s, m)| SearchHitRef { pk, distance: *d, score: *s, metadata: m })
            .collect();
        let mut out = Vec::new();
        encode_search_hits(&refs, &mut out).unwrap();
        let back = decode_search_hits(&out).unwrap();
        prop_assert_eq!(back.len(), refs.len());
        for (a, b) in back.iter().zip(&refs) {
            prop_assert_eq!(a.pk, b.pk);
            prop_assert_eq!(a.distance.to_bits(), b.distance.to_bits());
            prop_assert_eq!(a.score.to_bits(), b.score.to_bits());
            prop_assert_eq!(a.metadata, b.metadata);
        }
        // Any cut of a valid answer is an error, not a panic or a short answer.
        for cut in 0..out.len() {
            prop_assert!(decode_search_hits(&out[..cut]).is_err());
        }
    }

    #[test]
    fn every_request_round_trips(spec in spec()) {
        let req = spec.request();
        let mut bytes = Vec::new();
        req.encode(&mut bytes);
        let (frame, used) = split_frame(&bytes, MAX).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(decode_request(&frame).unwrap(), req);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..1024) {
        let mut rest: &[u8] = &bytes;
        while let Ok(Some((frame, used))) = split_frame(rest, max) {
            let _ = decode_request(&frame);
            rest = &rest[used..];
        }
    }

    #[test]
    fn arbitrary_payloads_of_every_opcode_never_panic(
        code in any::<u8>(),
        flags in 0u8..4,
        payload in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let frame = RawFrame { code, flags, payload: &payload };
        let _ = decode_request(&frame);
        // The series-grouped decoder accepts and refuses exactly what decode_request does.
        match decode_ts_series(&frame) {
            Ok(Some(_)) => prop_assert!(decode_request(&frame).is_ok()),
            Ok(None) => {}
            Err(e) => prop_assert_eq!(decode_request(&frame).unwrap_err(), e),
        }
    }

    #[test]
    fn series_grouped_decoding_yields_the_same_points(
        pool in proptest::collection::vec(ts_point(), 1..4),
        picks in proptest::collection::vec((0usize..4, any::<i64>(), -1e9f64..1e9), 1..20),
    ) {
        // Points drawn from a few series, so series repeat.
        let points: Vec<TsPoint> = picks
            .iter()
            .map(|&(i, t, v)| TsPoint { timestamp_ms: t, value: v, ..pool[i % pool.len()].clone() })
            .collect();
        let req = Request::TsPut { points: points.clone(), batch: true };
        let mut bytes = Vec::new();
        req.encode(&mut bytes);
        let (frame, _) = split_frame(&bytes, MAX).unwrap().unwrap();
        let b = decode_ts_series(&frame).unwrap().unwrap();
        prop_assert!(b.series.len() <= pool.len());
        let back: Vec<TsPoint> = b
            .samples
            .iter()
            .map(|s| {
                let k = &b.series[s.series as usize];
                TsPoint {
                    metric: k.metric.to_string(),
                    entity: k.entity.to_string(),
                    timestamp_ms: s.timestamp_ms,
                    value: s.value,
                    tags: k.tags.clone(),
                }
            })
            .collect();
        prop_assert_eq!(back, points);
        for (i, k) in b.series.iter().enumerate() {
            prop_assert_eq!(b.samples[k.first].series as usize, i);
        }
    }

    #[test]
    fn split_and_coalesced_frames_decode_the_same(
        specs in proptest::collection::vec(spec(), 1..8),
        cuts in proptest::collection::vec(1usize..40, 1..6),
    ) {
        let mut stream = Vec::new();
        for s in &specs {
            s.request().encode(&mut stream);
        }
        let whole = decode_stream(&stream, &[stream.len()]);
        prop_assert_eq!(whole.len(), specs.len());
        prop_assert_eq!(decode_stream(&stream, &cuts), whole.clone());
        prop_assert_eq!(decode_stream(&stream, &[1]), whole);
    }
}

#[test]
fn unknown_opcodes_flags_and_trailing_bytes_are_errors_with_their_status() {
    let mut out = Vec::new();
    encode_frame(0x55, 0, b"", &mut out);
    let (f, _) = split_frame(&out, MAX).unwrap().unwrap();
    let e = decode_request(&f).unwrap_err();
    assert_eq!(e, DecodeError::UnknownOpcode(0x55));
    assert_eq!(e.status(), Status::InvalidOpcode);

    for (code, flags, payload) in [
        (Opcode::TsBufferStats as u8, 0u8, &b"x"[..]),
        (Opcode::TsBufferStats as u8, FLAG_BATCH, &b""[..]),
        (Opcode::Auth as u8, 0x02, &[0u8, 0][..]),
        // A batch whose count cannot fit in its payload.
        (
            Opcode::VectorRemoveBuffered as u8,
            FLAG_BATCH,
            &[0xff, 0xff, 0xff, 0xff, 1, 0, b'a'][..],
        ),
        // An empty batch.
        (
            Opcode::VectorRemoveBuffered as u8,
            FLAG_BATCH,
            &[0, 0, 0, 0][..],
        ),
        // A dimension beyond the payload.
        (
            Opcode::VectorAddBuffered as u8,
            0,
            &[1, 0, b'a', 0xff, 0xff, 0xff, 0x3f][..],
        ),
        // Tags that are not a JSON object of strings.
        (
            Opcode::TsPutBuffered as u8,
            0,
            &[
                1, 0, b'm', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, b'[', b'1',
                b']',
            ][..],
        ),
    ] {
        let e = decode_request(&RawFrame {
            code,
            flags,
            payload,
        })
        .unwrap_err();
        assert_eq!(
            e.status(),
            Status::MalformedPayload,
            "{code:#x} {flags} {payload:?}: {e}"
        );
    }
}

#[test]
fn an_oversized_length_is_refused_before_its_payload_arrives() {
    let header = [0x70, 0, 0x01, 0x00, 0x10, 0x00]; // 1 MiB + 1
    assert_eq!(
        split_frame(&header, 1 << 20),
        Err(FrameError::TooLarge {
            length: (1 << 20) + 1,
            max: 1 << 20
        })
    );
    assert_eq!(split_frame(&header[..5], 1 << 20), Ok(None));
}

#[test]
fn fields_too_long_for_their_prefix_are_refused_not_panicked() {
    use sluice_wire::{Request, TsPoint};
    let long = "m".repeat(70_000);
    let req = Request::TsPutBuffered {
        points: vec![TsPoint {
            metric: long.clone(),
            entity: String::new(),
            timestamp_ms: 1,
            value: 1.0,
            tags: Default::default(),
        }],
        batch: false,
    };
    let mut out = Vec::new();
    let err = req.try_encode(&mut out).unwrap_err();
    assert_eq!(err.field, "metric");
    assert!(out.is_empty(), "nothing written");
    assert!(Request::Auth { token: &long }.check().is_err());
    assert!(
        Request::VectorRemoveBuffered {
            pks: vec![&long],
            batch: false
        }
        .check()
        .is_err()
    );
    assert!(Request::Auth { token: "ok" }.try_encode(&mut out).is_ok());
    // Without the batch flag a frame holds exactly one item.
    assert!(
        Request::VectorRemoveBuffered {
            pks: vec!["a", "b"],
            batch: false
        }
        .check()
        .is_err()
    );
}
