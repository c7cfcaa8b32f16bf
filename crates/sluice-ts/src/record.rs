//! The WAL record of a time-series write: one record per request, all its points.
//!
//! ```text
//! count u32
//! count × { metric_len u16, metric, entity_len u16, entity, timestamp_ms i64, value f64,
//!           tag_count u16, tag_count × { key_len u16, key, value_len u16, value } }
//! ```
//! Little-endian. A point of ~20 bytes of names and two short tags costs ~60 bytes here,
//! a third of its JSON. Decoding checks every length, so a damaged payload is an error, never
//! a panic or an over-read; the WAL's CRC makes damage here a bug, not an accident.

use sluice_wal::RecordKind;

use crate::point::Point;

/// Record kind of a time-series write.
pub const POINTS: RecordKind = RecordKind(1);

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

/// A payload that is not a valid points record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed time-series record at byte {offset}: {reason}")]
pub struct DecodeError {
    pub offset: usize,
    pub reason: &'static str,
}

/// Decodes a WAL payload written by [`encode`].
pub fn decode(payload: &[u8]) -> Result<Vec<Point>, DecodeError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
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
        let n = u16::from_le_bytes(r.array()?) as usize;
        let mut tags = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            tags.push((r.string()?, r.string()?));
        }
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

impl Reader<'_> {
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
    }
}
