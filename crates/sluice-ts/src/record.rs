//! The WAL record of a time-series write: one record per request, all its points.
//!
//! Kind [`SERIES_POINTS`] (4), written since series-grouped batches ([`Batch`]):
//! ```text
//! series_count u32
//! series_count × { metric_len u16, metric, entity_len u16, entity,
//!                  tag_count u16, tag_count × { key_len u16, key, value_len u16, value } }
//! sample_count u32
//! sample_count × { series u32, timestamp_ms i64, value f64 }
//! ```
//! Kind [`POINTS`] (1), point by point (older logs; still read):
//! ```text
//! count u32
//! count × { metric_len u16, metric, entity_len u16, entity, timestamp_ms i64, value f64,
//!           tag_count u16, tag_count × { key_len u16, key, value_len u16, value } }
//! ```
//! Kind [`DELETE`] (5), a deletion: the selection of `/ts/delete`, resolved against the series
//! a node holds when it applies the record (replay and replicas resolve it the same way: a
//! series first written after the record cannot hold points it deletes):
//! ```text
//! version u8 (1), from_ms i64, to_ms i64, metric_len u32, metric,
//! has_entity u8, [entity_len u32, entity],
//! tag_count u32 × { key_len u32, key, value_len u32, value },
//! matcher_count u32 × { tag_len u32, tag, op u8 (0 =, 1 !=, 2 =~, 3 !~), value_len u32, value }
//! ```
//! Little-endian. A sample costs 20 bytes plus its series' names once per record (five points
//! of 1,000 series: ~24 bytes a point, against ~60 point by point and ~100 in JSON). Decoding
//! checks every length, index, tag order and value, so a damaged or forged payload is an
//! error, never a panic, an over-read or an invalid series; the WAL's CRC makes damage here a
//! bug, not an accident.

use sluice_wal::RecordKind;

use crate::batch::{Batch, Sample};
use crate::names::{NamedBatch, NamedSeries};
use crate::point::Point;
use crate::query::{MatchOp, Matcher, Query};
use crate::series::SeriesKey;

/// Record kind of a time-series write, point by point (read only; see the module doc).
pub const POINTS: RecordKind = RecordKind(1);
/// Record kind of a time-series write as series and samples.
pub const SERIES_POINTS: RecordKind = RecordKind(4);
/// Record kind of a deletion of points (a selection and a time range).
pub const DELETE: RecordKind = RecordKind(5);

/// Whether records of `kind` hold time-series points.
pub fn is_points(kind: RecordKind) -> bool {
    kind == POINTS || kind == SERIES_POINTS
}

/// Encodes a batch as a [`SERIES_POINTS`] payload.
pub fn encode_batch(batch: &Batch) -> Vec<u8> {
    let names: usize = batch.series.iter().map(SeriesKey::encoded_len).sum();
    encode_series_points(batch.series.len(), names, &batch.samples, |out| {
        for k in &batch.series {
            k.encode_into(out);
        }
    })
}

/// Encodes a named batch as the [`SERIES_POINTS`] payload of the same keys and samples (a
/// known series' stored encoding is copied as it is).
pub fn encode_named(batch: &NamedBatch) -> Vec<u8> {
    let names: usize = batch
        .series
        .iter()
        .map(|s| match s {
            NamedSeries::Known(k) => k.encoded.len(),
            NamedSeries::New(key, _) => key.encoded_len(),
        })
        .sum();
    encode_series_points(batch.series.len(), names, &batch.samples, |out| {
        for s in &batch.series {
            match s {
                NamedSeries::Known(k) => out.extend_from_slice(&k.encoded),
                NamedSeries::New(key, _) => key.encode_into(out),
            }
        }
    })
}

/// The [`SERIES_POINTS`] layout: `series` entries (`names` bytes, written by `write_series`),
/// then the samples.
fn encode_series_points(
    series: usize,
    names: usize,
    samples: &[Sample],
    write_series: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let size = 8 + names + 20 * samples.len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(series as u32).to_le_bytes());
    write_series(&mut out);
    out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.series.to_le_bytes());
        out.extend_from_slice(&s.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&s.value.to_le_bytes());
    }
    debug_assert_eq!(out.len(), size);
    out
}

/// Decodes a payload of either points kind into a batch.
pub fn decode_any(kind: RecordKind, payload: &[u8]) -> Result<Batch, DecodeError> {
    if kind == SERIES_POINTS {
        decode_batch(payload)
    } else if kind == POINTS {
        decode(payload).map(Batch::from_points)
    } else {
        Err(DecodeError {
            offset: 0,
            reason: "not a time-series record kind",
        })
    }
}

/// Decodes a [`SERIES_POINTS`] payload written by [`encode_batch`].
pub fn decode_batch(payload: &[u8]) -> Result<Batch, DecodeError> {
    let mut r = Reader::new(payload);
    let series_count = r.u32()? as usize;
    // A series takes at least 6 bytes, a sample 20: refuse counts the payload cannot hold
    // before allocating for them.
    if series_count > payload.len() / 6 {
        return Err(r.err("series count exceeds payload"));
    }
    let mut series = Vec::with_capacity(series_count);
    for _ in 0..series_count {
        let metric = r.string()?;
        let entity = r.string()?;
        let tags = r.tags()?;
        if metric.is_empty() || tags.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(r.err("series key is not canonical"));
        }
        series.push(SeriesKey {
            metric,
            entity,
            tags,
        });
    }
    let sample_count = r.u32()? as usize;
    if sample_count > payload.len() / 20 {
        return Err(r.err("sample count exceeds payload"));
    }
    let mut samples = Vec::with_capacity(sample_count);
    for _ in 0..sample_count {
        let s = r.u32()?;
        let timestamp_ms = i64::from_le_bytes(r.array()?);
        let value = f64::from_le_bytes(r.array()?);
        if s as usize >= series.len() {
            return Err(r.err("sample names a series the record lacks"));
        }
        samples.push(Sample {
            series: s,
            timestamp_ms,
            value,
        });
    }
    if r.pos != payload.len() {
        return Err(r.err("trailing bytes"));
    }
    Ok(Batch { series, samples })
}

/// Encodes points into a WAL payload.
pub fn encode(points: &[Point]) -> Vec<u8> {
    let size: usize = 4 + points.iter().map(encoded_len).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(points.len() as u32).to_le_bytes());
    for p in points {
        put_str(&mut out, &p.metric);
        put_str(&mut out, &p.entity);
        out.extend_from_slice(&p.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&p.value.to_le_bytes());
        out.extend_from_slice(&(p.tags.len() as u16).to_le_bytes());
        for (k, v) in &p.tags {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
    }
    debug_assert_eq!(out.len(), size);
    out
}

fn encoded_len(p: &Point) -> usize {
    2 + p.metric.len()
        + 2
        + p.entity.len()
        + 16
        + 2
        + p.tags
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum::<usize>()
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(
        s.len() <= u16::MAX as usize,
        "point limits keep strings short"
    );
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes the selection of a deletion as a [`DELETE`] payload (aggregation fields of `q` are
/// not part of a deletion and are not written).
pub fn encode_delete(q: &Query) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::with_capacity(64 + q.metric.len());
    out.push(1);
    out.extend_from_slice(&q.from_ms.to_le_bytes());
    out.extend_from_slice(&q.to_ms.to_le_bytes());
    put(&mut out, &q.metric);
    match &q.entity {
        Some(e) => {
            out.push(1);
            put(&mut out, e);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(q.tags.len() as u32).to_le_bytes());
    for (k, v) in &q.tags {
        put(&mut out, k);
        put(&mut out, v);
    }
    out.extend_from_slice(&(q.matchers.len() as u32).to_le_bytes());
    for m in &q.matchers {
        put(&mut out, &m.tag);
        out.push(match m.op {
            MatchOp::Eq => 0,
            MatchOp::Ne => 1,
            MatchOp::Re => 2,
            MatchOp::NotRe => 3,
        });
        put(&mut out, &m.value);
    }
    out
}

/// Decodes a [`DELETE`] payload into the selection it names (a raw query: no aggregation).
pub fn decode_delete(payload: &[u8]) -> Result<Query, DecodeError> {
    let mut r = Reader::new(payload);
    if r.array::<1>()?[0] != 1 {
        return Err(r.err("unknown deletion record version"));
    }
    let from_ms = i64::from_le_bytes(r.array()?);
    let to_ms = i64::from_le_bytes(r.array()?);
    let metric = r.long_string()?;
    let entity = match r.array::<1>()?[0] {
        0 => None,
        1 => Some(r.long_string()?),
        _ => return Err(r.err("entity flag is not 0 or 1")),
    };
    // Each entry takes at least 8 (tag) or 9 (matcher) bytes: refuse counts the payload cannot
    // hold before allocating for them.
    let n = r.u32()? as usize;
    if n > payload.len() / 8 {
        return Err(r.err("tag count exceeds payload"));
    }
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        tags.push((r.long_string()?, r.long_string()?));
    }
    let n = r.u32()? as usize;
    if n > payload.len() / 9 {
        return Err(r.err("matcher count exceeds payload"));
    }
    let mut matchers = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = r.long_string()?;
        let op = match r.array::<1>()?[0] {
            0 => MatchOp::Eq,
            1 => MatchOp::Ne,
            2 => MatchOp::Re,
            3 => MatchOp::NotRe,
            _ => return Err(r.err("unknown matcher op")),
        };
        let value = r.long_string()?;
        matchers.push(
            Matcher::new(tag, op, value).map_err(|_| r.err("matcher regex does not compile"))?,
        );
    }
    if r.pos != payload.len() {
        return Err(r.err("trailing bytes"));
    }
    if to_ms < from_ms || metric.is_empty() {
        return Err(r.err("empty metric or range"));
    }
    Ok(Query {
        metric,
        entity,
        tags,
        matchers,
        from_ms,
        to_ms,
        aggregation: None,
        step_ms: None,
        group_by: Vec::new(),
    })
}

/// A payload that is not a valid points record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed time-series record at byte {offset}: {reason}")]
pub struct DecodeError {
    pub offset: usize,
    pub reason: &'static str,
}

/// Decodes a WAL payload written by [`encode`].
pub fn decode(payload: &[u8]) -> Result<Vec<Point>, DecodeError> {
    let mut r = Reader::new(payload);
    let count = r.u32()? as usize;
    // Each point takes at least 22 bytes: refuse counts the payload cannot hold before
    // allocating for them.
    if count > payload.len() / 22 {
        return Err(r.err("point count exceeds payload"));
    }
    let mut points = Vec::with_capacity(count);
    for _ in 0..count {
        let metric = r.string()?;
        let entity = r.string()?;
        let timestamp_ms = i64::from_le_bytes(r.array()?);
        let value = f64::from_le_bytes(r.array()?);
        let tags = r.tags()?;
        points.push(Point {
            metric,
            entity,
            timestamp_ms,
            value,
            tags,
        });
    }
    if r.pos != payload.len() {
        return Err(r.err("trailing bytes"));
    }
    Ok(points)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// A tag count (u16) and as many key, value strings.
    fn tags(&mut self) -> Result<Vec<(String, String)>, DecodeError> {
        let n = u16::from_le_bytes(self.array()?) as usize;
        let mut tags = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            tags.push((self.string()?, self.string()?));
        }
        Ok(tags)
    }

    fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(self.err("truncated"));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        self.utf8(len)
    }

    /// A string with a u32 length (deletion records).
    fn long_string(&mut self) -> Result<String, DecodeError> {
        let len = self.u32()? as usize;
        self.utf8(len)
    }

    fn utf8(&mut self, len: usize) -> Result<String, DecodeError> {
        let at = self.pos;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError {
            offset: at,
            reason: "string is not UTF-8",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::PointLimits;
    use proptest::prelude::*;

    fn arb_point() -> impl Strategy<Value = Point> {
        (
            "[a-z_]{1,20}",
            "[a-zA-Z0-9]{0,12}",
            any::<i64>(),
            -1e12f64..1e12,
            proptest::collection::btree_map("[a-z]{1,8}", "\\PC{0,10}", 0..5),
        )
            .prop_map(|(m, e, t, v, tags)| {
                Point::new(m, e, t, v, tags, &PointLimits::default()).unwrap()
            })
    }

    proptest! {
        #[test]
        fn batch_round_trip(points in proptest::collection::vec(arb_point(), 0..20)) {
            let batch = Batch::from_points(points.clone());
            let bytes = encode_batch(&batch);
            let back = decode_any(SERIES_POINTS, &bytes).unwrap();
            prop_assert_eq!(&back, &batch);
            prop_assert_eq!(back.to_points(), points.clone());
            prop_assert_eq!(&decode_any(POINTS, &encode(&points)).unwrap(), &batch);
            // The same series named, some known (stored encoding), some new: same bytes.
            let named = NamedBatch {
                series: batch
                    .series
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        if i % 2 == 0 {
                            NamedSeries::Known(crate::KnownSeries {
                                id: i as u32,
                                encoded: k.encode().into(),
                            })
                        } else {
                            NamedSeries::New(k.clone(), None)
                        }
                    })
                    .collect(),
                samples: batch.samples.clone(),
            };
            prop_assert_eq!(encode_named(&named), bytes);
        }

        #[test]
        fn arbitrary_batch_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_batch(&bytes);
        }

        #[test]
        fn batch_truncation_is_an_error(points in proptest::collection::vec(arb_point(), 1..5), cut in 0usize..1000) {
            let bytes = encode_batch(&Batch::from_points(points));
            let cut = cut % bytes.len();
            prop_assert!(decode_batch(&bytes[..cut]).is_err());
        }

        #[test]
        fn round_trip(points in proptest::collection::vec(arb_point(), 0..20)) {
            let bytes = encode(&points);
            prop_assert_eq!(decode(&bytes).unwrap(), points);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn truncation_is_an_error(points in proptest::collection::vec(arb_point(), 1..5), cut in 0usize..1000) {
            let bytes = encode(&points);
            let cut = cut % bytes.len();
            prop_assert!(decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn deletion_round_trips_and_truncation_is_an_error(
            metric in "[a-z_]{1,20}",
            entity in proptest::option::of("[a-z0-9]{0,8}"),
            tags in proptest::collection::vec(("[a-z]{1,4}", "[a-z]{0,4}"), 0..3),
            from in any::<i64>(),
            span in 0i64..1_000_000,
            cut in 0usize..1000,
        ) {
            let q = Query {
                metric,
                entity,
                tags,
                matchers: vec![
                    Matcher::new("host".into(), MatchOp::Re, "web-[0-9]+".into()).unwrap(),
                    Matcher::new("dc".into(), MatchOp::Ne, "eu".into()).unwrap(),
                ],
                from_ms: from,
                to_ms: from.saturating_add(span),
                aggregation: None,
                step_ms: None,
                group_by: Vec::new(),
            };
            let bytes = encode_delete(&q);
            let back = decode_delete(&bytes).unwrap();
            prop_assert_eq!(encode_delete(&back), bytes.clone());
            prop_assert_eq!((&back.metric, &back.entity, &back.tags), (&q.metric, &q.entity, &q.tags));
            prop_assert_eq!((back.from_ms, back.to_ms), (q.from_ms, q.to_ms));
            prop_assert!(decode_delete(&bytes[..cut % bytes.len()]).is_err());
        }

        #[test]
        fn arbitrary_deletion_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_delete(&bytes);
        }
    }
}
