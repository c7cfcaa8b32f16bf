//! Arbitrary bytes as a stored chunk: decoding never panics (nor allocates beyond what the
//! bytes can hold); and the bytes read as points encode to a chunk that decodes to exactly
//! them, in both codecs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice_gorilla::decode_chunk(data);
    let mut points: Vec<(i64, f64)> = data
        .chunks_exact(16)
        .map(|c| {
            let t = i64::from_le_bytes(c[..8].try_into().unwrap());
            let v = f64::from_le_bytes(c[8..].try_into().unwrap());
            (t, v)
        })
        .collect();
    points.sort_by_key(|p| p.0);
    points.dedup_by_key(|p| p.0);
    if points.is_empty() {
        return;
    }
    let mut enc = sluice_gorilla::ChunkEncoder::for_points(&points);
    for &(t, v) in &points {
        enc.push(t, v);
    }
    let back = sluice_gorilla::decode_chunk(&enc.snapshot()).expect("own chunk decodes");
    assert_eq!(back.len(), points.len());
    for (a, b) in back.iter().zip(&points) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1.to_bits(), b.1.to_bits());
    }
});
