//! Decimal-aware encoding: the stronger codec for series whose values are decimals with a few
//! digits (prices, percentages, sensor readings with two decimals), where Gorilla's XOR step is
//! weak because decimal fractions have long binary mantissas.
//!
//! If every value `v` of a chunk equals `m / 10^k` exactly (bit for bit) for an integer `m` with
//! `|m| < 2^53` and one scale `k` in `0..=MAX_SCALE`, the chunk stores the integers instead:
//!
//! - header: `count u32`, `k u8`, first timestamp `i64`, first integer `i64` (little-endian);
//! - timestamps after the first: Gorilla's delta-of-delta bit stream (see the crate doc);
//! - integers after the first: zigzag deltas, bit-packed in blocks of [`BLOCK`] values, each
//!   block prefixed by its bit width (7 bits) — frame-of-reference packing, so a random walk
//!   with steps up to ±1.27 at two decimals costs one byte per value.
//!
//! Why the round trip is exact: a value parsed from a decimal string with at most `k` digits
//! after the point is the double nearest to `m / 10^k`; `m` and `10^k` are exact doubles, and IEEE
//! division is correctly rounded, so `m as f64 / 10^k` is that same nearest double. The encoder
//! checks it for every value anyway and refuses values that do not round-trip.
//!
//! The encoder is appendable like [`crate::Encoder`]: [`DecimalEncoder::push`] refuses a value
//! that does not fit the chunk's scale, and the caller falls back to Gorilla.

use crate::bits::{BitReader, BitWriter};
use crate::{DecodeError, read_dod, unzigzag, write_dod, zigzag};

/// Largest scale tried: up to nine digits after the decimal point.
pub const MAX_SCALE: u8 = 9;
/// Values per bit-packed block.
pub const BLOCK: usize = 128;
const HEADER_BYTES: usize = 4 + 1 + 8 + 8;
const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

fn pow10(k: u8) -> f64 {
    10f64.powi(i32::from(k))
}

/// The integer `m` with `m / 10^k == v` exactly, if there is one.
fn to_scaled(v: f64, k: u8) -> Option<i64> {
    let p = pow10(k);
    let m = (v * p).round();
    if !m.is_finite() || m.abs() >= MAX_EXACT {
        return None;
    }
    // Rebuild from the integer itself (this also refuses -0.0, which the integer loses).
    let m = m as i64;
    ((m as f64 / p).to_bits() == v.to_bits()).then_some(m)
}

/// The smallest scale at which every value is an exact decimal, if any.
pub fn scale_of(values: impl IntoIterator<Item = f64> + Clone) -> Option<u8> {
    (0..=MAX_SCALE).find(|&k| {
        values
            .clone()
            .into_iter()
            .all(|v| to_scaled(v, k).is_some())
    })
}

/// An open decimal chunk.
#[derive(Clone, Debug)]
pub struct DecimalEncoder {
    scale: u8,
    count: u32,
    first_ts: i64,
    first_m: i64,
    prev_ts: i64,
    prev_delta: i64,
    prev_m: i64,
    timestamps: BitWriter,
    values: BitWriter,
    /// Zigzag deltas of the block being filled.
    pending: Vec<u64>,
}

impl DecimalEncoder {
    pub fn new(scale: u8) -> DecimalEncoder {
        debug_assert!(scale <= MAX_SCALE);
        DecimalEncoder {
            scale,
            count: 0,
            first_ts: 0,
            first_m: 0,
            prev_ts: 0,
            prev_delta: 0,
            prev_m: 0,
            timestamps: BitWriter::default(),
            values: BitWriter::default(),
            pending: Vec::with_capacity(BLOCK),
        }
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a point; `false` (and nothing appended) if `value` is not exact at this scale.
    #[must_use]
    pub fn push(&mut self, timestamp: i64, value: f64) -> bool {
        let Some(m) = to_scaled(value, self.scale) else {
            return false;
        };
        if self.count == 0 {
            self.first_ts = timestamp;
            self.first_m = m;
        } else {
            let delta = timestamp.wrapping_sub(self.prev_ts);
            write_dod(&mut self.timestamps, delta.wrapping_sub(self.prev_delta));
            self.prev_delta = delta;
            self.pending.push(zigzag(m.wrapping_sub(self.prev_m)));
            if self.pending.len() == BLOCK {
                pack(&mut self.values, &self.pending);
                self.pending.clear();
            }
        }
        self.prev_ts = timestamp;
        self.prev_m = m;
        self.count += 1;
        true
    }

    /// The block of the points pushed so far; the encoder stays open.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.block_len());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.push(self.scale);
        out.extend_from_slice(&self.first_ts.to_le_bytes());
        out.extend_from_slice(&self.first_m.to_le_bytes());
        let mut bits = self.timestamps.clone();
        let mut values = self.values.clone();
        if !self.pending.is_empty() {
            pack(&mut values, &self.pending);
        }
        // Timestamps and values share one stream: timestamps first, then the value blocks.
        bits.append(&values);
        bits.write_snapshot(&mut out);
        out
    }

    /// Approximate size of [`DecimalEncoder::snapshot`].
    pub fn block_len(&self) -> usize {
        HEADER_BYTES
            + self.timestamps.byte_len()
            + self.values.byte_len()
            + self.pending.len() * 8
            + 1
    }
}

fn pack(out: &mut BitWriter, block: &[u64]) {
    let width = block
        .iter()
        .map(|z| 64 - z.leading_zeros())
        .max()
        .unwrap_or(0);
    out.write(u64::from(width), 7);
    for &z in block {
        out.write(z, width);
    }
}

/// Decodes a decimal block.
pub fn decode(block: &[u8]) -> Result<Vec<(i64, f64)>, DecodeError> {
    if block.len() < HEADER_BYTES {
        return Err(DecodeError::MissingHeader);
    }
    let count = u32::from_le_bytes([block[0], block[1], block[2], block[3]]) as usize;
    let scale = block[4];
    if scale > MAX_SCALE {
        return Err(DecodeError::MissingHeader);
    }
    let first_ts = i64::from_le_bytes(
        block[5..13]
            .try_into()
            .map_err(|_| DecodeError::MissingHeader)?,
    );
    let first_m = i64::from_le_bytes(
        block[13..21]
            .try_into()
            .map_err(|_| DecodeError::MissingHeader)?,
    );
    let body = &block[HEADER_BYTES..];
    let truncated = |decoded| DecodeError::Truncated { decoded, count };
    if count == 0 {
        return Ok(Vec::new());
    }
    let p = pow10(scale);
    let mut out = Vec::with_capacity(count.min(body.len() * 8 + 1));
    let mut r = BitReader::new(body);
    // Timestamps first.
    let mut ts = Vec::with_capacity(count.min(body.len() * 8 + 1));
    ts.push(first_ts);
    let (mut prev_ts, mut prev_delta) = (first_ts, 0i64);
    let mut i = 1;
    while i < count {
        // Regularly spaced timestamps are a run of zero bits (delta-of-delta 0): take the run
        // at once.
        let run = r.skip_zeros(count - i);
        for _ in 0..run {
            prev_ts = prev_ts.wrapping_add(prev_delta);
            ts.push(prev_ts);
        }
        i += run;
        if i == count {
            break;
        }
        let dod = read_dod(&mut r).ok_or(truncated(i))?;
        prev_delta = prev_delta.wrapping_add(dod);
        prev_ts = prev_ts.wrapping_add(prev_delta);
        ts.push(prev_ts);
        i += 1;
    }
    // Integers (counters) need no division: `m / 1` is `m`.
    let value = |m: i64| if scale == 0 { m as f64 } else { m as f64 / p };
    out.push((first_ts, value(first_m)));
    let mut m = first_m;
    let mut i = 1;
    while i < count {
        let width = r.read(7).ok_or(truncated(i))? as u32;
        if width > 64 {
            return Err(truncated(i));
        }
        let n = BLOCK.min(count - i);
        for _ in 0..n {
            let z = r.read(width).ok_or(truncated(i))?;
            m = m.wrapping_add(unzigzag(z));
            out.push((ts[i], value(m)));
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(points: &[(i64, f64)]) -> Option<Vec<u8>> {
        let k = scale_of(points.iter().map(|p| p.1))?;
        let mut e = DecimalEncoder::new(k);
        for &(t, v) in points {
            assert!(e.push(t, v));
        }
        Some(e.snapshot())
    }

    fn same(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    proptest! {
        #[test]
        fn decimal_walks_round_trip(start in 0i64..4_000_000_000_000, steps in proptest::collection::vec(-100i64..=100, 1..700),
                                    scale in 0u8..=4, jitter in 0i64..3) {
            let p = 10f64.powi(i32::from(scale));
            let mut m = 5_000i64;
            let points: Vec<(i64, f64)> = steps.iter().enumerate().map(|(i, s)| {
                m += s;
                // Parse from text, as values arrive.
                let v: f64 = format!("{:.*}", scale as usize, m as f64 / p).parse().unwrap();
                (start + i as i64 * 10_000 + (i as i64 % 3) * jitter, v)
            }).collect();
            let block = encode(&points).expect("decimal values have a scale");
            prop_assert!(same(&decode(&block).unwrap(), &points));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn non_decimal_values_are_refused(v in any::<f64>()) {
            let mut e = DecimalEncoder::new(2);
            if e.push(0, v) {
                prop_assert_eq!(decode(&e.snapshot()).unwrap()[0].1.to_bits(), v.to_bits());
            }
        }
    }

    #[test]
    fn two_decimal_random_walk_costs_about_a_byte_per_point() {
        let mut m = 4_000i64;
        let mut x = 12345u64;
        let points: Vec<(i64, f64)> = (0..10_000)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                m += ((x >> 33) % 201) as i64 - 100;
                (1_700_000_000_000 + i * 10_000, m as f64 / 100.0)
            })
            .collect();
        let block = encode(&points).unwrap();
        let per_point = block.len() as f64 / points.len() as f64;
        assert!(per_point < 1.2, "{per_point} bytes/point");
        assert!(same(&decode(&block).unwrap(), &points));
        assert_eq!(scale_of([0.1, 0.25, 3.0]), Some(2));
        assert_eq!(scale_of([f64::NAN]), None);
        assert_eq!(scale_of([1e300]), None);
    }

    #[test]
    fn snapshots_decode_to_the_prefix_and_refusals_append_nothing() {
        let mut e = DecimalEncoder::new(1);
        let mut points = Vec::new();
        for i in 0..300 {
            let v = f64::from(i % 17) / 10.0;
            assert!(e.push(i64::from(i) * 5, v));
            points.push((i64::from(i) * 5, v));
            if i % 50 == 0 {
                assert!(same(&decode(&e.snapshot()).unwrap(), &points));
            }
        }
        assert!(!e.push(9999, 0.123));
        assert!(same(&decode(&e.snapshot()).unwrap(), &points));
    }
}
