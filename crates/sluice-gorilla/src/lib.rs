//! Gorilla compression for (timestamp, value) series (Pelkonen et al., VLDB 2015), tuned for
//! millisecond timestamps.
//!
//! Layout of an encoded block: `count u32 LE`, then a bit stream (most significant bit first):
//! - point 0: timestamp (64 bits, raw), value (64 bits, raw);
//! - each later point: the timestamp's delta-of-delta, then the value's XOR with the previous.
//!
//! **Timestamps** (`dod = (t[i] - t[i-1]) - (t[i-1] - t[i-2])`, zigzag-encoded, wrapping
//! arithmetic so every `i64` round-trips). Buckets suit millisecond data: a steady scrape
//! interval gives `dod = 0`, jitter of a few ms fits the 7-bit bucket, an irregular gap of seconds
//! the 12- or 20-bit bucket.
//!
//! | prefix | payload  | zigzag(dod) range |
//! |--------|----------|-------------------|
//! | `0`    | —        | 0                 |
//! | `10`   | 7 bits   | < 2^7             |
//! | `110`  | 12 bits  | < 2^12            |
//! | `1110` | 20 bits  | < 2^20            |
//! | `1111` | 64 bits  | anything          |
//!
//! **Values** (`x = bits(v[i]) ^ bits(v[i-1])`): `0` if `x == 0`; `10` + the meaningful bits
//! if they fit the previous leading/trailing-zero window; else `11` + leading zeros (5 bits,
//! capped at 31) + meaningful length − 1 (6 bits) + the meaningful bits.
//!
//! Costs: a regular series with a constant value takes ~2 bits per point; a random walk with
//! two decimals takes 3–5 bytes per point, since decimal fractions have long binary mantissas
//! (the known weakness of XOR encoding).
//!
//! Decoding checks every read against the buffer and caps allocations by what the input can
//! hold, so arbitrary bytes give an error, never a panic or a huge allocation.

mod bits;
pub mod decimal;

use bits::{BitReader, BitWriter};

/// Why bytes are not a valid block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("block shorter than its header")]
    MissingHeader,
    #[error("block ends after {decoded} of {count} points")]
    Truncated { decoded: usize, count: usize },
}

/// Encodes points one at a time. An encoder can be kept open and its block taken as a
/// snapshot after each batch of pushes ([`Encoder::snapshot`]), so appending to a chunk costs
/// only the new points.
#[derive(Clone, Debug, Default)]
pub struct Encoder {
    out: BitWriter,
    count: u32,
    prev_ts: i64,
    prev_delta: i64,
    prev_bits: u64,
    /// Leading/trailing zeros of the previous meaningful XOR window; `None` before the first.
    window: Option<(u32, u32)>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Points pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a point. Timestamps may come in any order (sorted input compresses best).
    ///
    /// A block holds at most `u32::MAX` points; callers cut chunks far smaller.
    pub fn push(&mut self, timestamp: i64, value: f64) {
        debug_assert!(self.count < u32::MAX);
        let bits = value.to_bits();
        if self.count == 0 {
            self.out.write(timestamp as u64, 64);
            self.out.write(bits, 64);
        } else {
            let delta = timestamp.wrapping_sub(self.prev_ts);
            write_dod(&mut self.out, delta.wrapping_sub(self.prev_delta));
            self.prev_delta = delta;
            self.write_xor(bits ^ self.prev_bits);
        }
        self.prev_ts = timestamp;
        self.prev_bits = bits;
        self.count += 1;
    }

    fn write_xor(&mut self, x: u64) {
        if x == 0 {
            self.out.write(0b0, 1);
            return;
        }
        let leading = x.leading_zeros().min(31);
        let trailing = x.trailing_zeros();
        if let Some((pl, pt)) = self.window
            && leading >= pl
            && trailing >= pt
        {
            self.out.write(0b10, 2);
            let len = 64 - pl - pt;
            self.out.write(x >> pt, len);
            return;
        }
        let len = 64 - leading - trailing;
        self.out.write(0b11, 2);
        self.out.write(u64::from(leading), 5);
        self.out.write(u64::from(len - 1), 6);
        self.out.write(x >> trailing, len);
        self.window = Some((leading, trailing));
    }

    /// The encoded block.
    pub fn finish(self) -> Vec<u8> {
        let mut block = Vec::with_capacity(4 + self.out.byte_len());
        block.extend_from_slice(&self.count.to_le_bytes());
        block.extend_from_slice(&self.out.into_bytes());
        block
    }

    /// The block of the points pushed so far; the encoder stays open.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut block = Vec::with_capacity(4 + self.out.byte_len());
        block.extend_from_slice(&self.count.to_le_bytes());
        self.out.write_snapshot(&mut block);
        block
    }

    /// Size of the block [`Encoder::snapshot`] would return.
    pub fn block_len(&self) -> usize {
        4 + self.out.byte_len()
    }
}

/// Encodes `points` into one block.
pub fn encode(points: &[(i64, f64)]) -> Vec<u8> {
    let mut e = Encoder::new();
    for &(t, v) in points {
        e.push(t, v);
    }
    e.finish()
}

/// Number of points in a block, read from its header.
pub fn count(block: &[u8]) -> Result<usize, DecodeError> {
    let header: [u8; 4] = block
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::MissingHeader)?;
    Ok(u32::from_le_bytes(header) as usize)
}

/// Decodes a whole block.
pub fn decode(block: &[u8]) -> Result<Vec<(i64, f64)>, DecodeError> {
    let count = count(block)?;
    let body = &block[4..];
    // Every point after the first takes at least two bits: cap the allocation by the input.
    let mut out = Vec::with_capacity(count.min(body.len() * 4 + 1));
    let mut r = BitReader::new(body);
    let truncated = |decoded| DecodeError::Truncated { decoded, count };
    let mut prev_ts = 0i64;
    let mut prev_delta = 0i64;
    let mut prev_bits = 0u64;
    let mut window = (0u32, 0u32);
    for i in 0..count {
        if i == 0 {
            prev_ts = r.read(64).ok_or(truncated(i))? as i64;
            prev_bits = r.read(64).ok_or(truncated(i))?;
        } else {
            let dod = read_dod(&mut r).ok_or(truncated(i))?;
            prev_delta = prev_delta.wrapping_add(dod);
            prev_ts = prev_ts.wrapping_add(prev_delta);
            prev_bits ^= read_xor(&mut r, &mut window).ok_or(truncated(i))?;
        }
        out.push((prev_ts, f64::from_bits(prev_bits)));
    }
    Ok(out)
}

pub(crate) fn write_dod(out: &mut BitWriter, dod: i64) {
    let z = zigzag(dod);
    if z == 0 {
        out.write(0b0, 1);
    } else if z < 1 << 7 {
        out.write(0b10, 2);
        out.write(z, 7);
    } else if z < 1 << 12 {
        out.write(0b110, 3);
        out.write(z, 12);
    } else if z < 1 << 20 {
        out.write(0b1110, 4);
        out.write(z, 20);
    } else {
        out.write(0b1111, 4);
        out.write(z, 64);
    }
}

#[inline]
pub(crate) fn read_dod(r: &mut BitReader<'_>) -> Option<i64> {
    let z = if r.read(1)? == 0 {
        0
    } else if r.read(1)? == 0 {
        r.read(7)?
    } else if r.read(1)? == 0 {
        r.read(12)?
    } else if r.read(1)? == 0 {
        r.read(20)?
    } else {
        r.read(64)?
    };
    Some(unzigzag(z))
}

fn read_xor(r: &mut BitReader<'_>, window: &mut (u32, u32)) -> Option<u64> {
    if r.read(1)? == 0 {
        return Some(0);
    }
    if r.read(1)? == 0 {
        let (leading, trailing) = *window;
        let len = 64u32.checked_sub(leading + trailing).filter(|&l| l > 0)?;
        return Some(r.read(len)? << trailing);
    }
    let leading = r.read(5)? as u32;
    let len = r.read(6)? as u32 + 1;
    let trailing = 64u32.checked_sub(leading + len)?;
    *window = (leading, trailing);
    Some(r.read(len)? << trailing)
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// How a stored chunk is encoded: its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    Gorilla = 0,
    Decimal = 1,
}

/// An open chunk in the best codec for its values: decimal when the first points are exact
/// decimals (see [`decimal`]), else Gorilla. A later point that does not fit the decimal scale
/// converts the chunk to Gorilla once.
#[derive(Clone, Debug)]
pub enum ChunkEncoder {
    Gorilla(Encoder),
    Decimal(decimal::DecimalEncoder),
}

impl ChunkEncoder {
    /// Chooses the codec from the points the chunk starts with.
    pub fn for_points(points: &[(i64, f64)]) -> ChunkEncoder {
        match decimal::scale_of(points.iter().map(|p| p.1)) {
            Some(k) => ChunkEncoder::Decimal(decimal::DecimalEncoder::new(k)),
            None => ChunkEncoder::Gorilla(Encoder::new()),
        }
    }

    pub fn push(&mut self, timestamp: i64, value: f64) {
        match self {
            ChunkEncoder::Gorilla(e) => e.push(timestamp, value),
            ChunkEncoder::Decimal(d) => {
                if !d.push(timestamp, value) {
                    let mut g = Encoder::new();
                    // The decimal block decodes by construction; an error here is a bug.
                    for (t, v) in decimal::decode(&d.snapshot()).unwrap_or_default() {
                        g.push(t, v);
                    }
                    g.push(timestamp, value);
                    *self = ChunkEncoder::Gorilla(g);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ChunkEncoder::Gorilla(e) => e.len(),
            ChunkEncoder::Decimal(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn codec(&self) -> Codec {
        match self {
            ChunkEncoder::Gorilla(_) => Codec::Gorilla,
            ChunkEncoder::Decimal(_) => Codec::Decimal,
        }
    }

    /// The stored form: the codec byte, then the block.
    pub fn snapshot(&self) -> Vec<u8> {
        let block = match self {
            ChunkEncoder::Gorilla(e) => e.snapshot(),
            ChunkEncoder::Decimal(d) => d.snapshot(),
        };
        let mut out = Vec::with_capacity(1 + block.len());
        out.push(self.codec() as u8);
        out.extend_from_slice(&block);
        out
    }
}

/// Number of points in a stored chunk (codec byte, then block), from its header: both codecs
/// start their block with the count.
pub fn chunk_count(bytes: &[u8]) -> Result<usize, DecodeError> {
    match bytes.split_first() {
        Some((0 | 1, block)) => count(block),
        _ => Err(DecodeError::MissingHeader),
    }
}

/// Decodes a stored chunk (codec byte, then block).
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<(i64, f64)>, DecodeError> {
    match bytes.split_first() {
        Some((0, block)) => decode(block),
        Some((1, block)) => decimal::decode(block),
        _ => Err(DecodeError::MissingHeader),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunk_encoder_picks_decimal_and_falls_back_to_gorilla() {
        let mut c = ChunkEncoder::for_points(&[(0, 1.25), (1, 2.5)]);
        assert_eq!(c.codec(), Codec::Decimal);
        let mut points = vec![];
        for (t, v) in [(0, 1.25), (1, 2.5), (2, 3.75)] {
            c.push(t, v);
            points.push((t, v));
        }
        assert_eq!(decode_chunk(&c.snapshot()).unwrap(), points);
        c.push(3, std::f64::consts::PI);
        points.push((3, std::f64::consts::PI));
        assert_eq!(c.codec(), Codec::Gorilla);
        assert_eq!(decode_chunk(&c.snapshot()).unwrap(), points);
        assert_eq!(
            ChunkEncoder::for_points(&[(0, f64::NAN)]).codec(),
            Codec::Gorilla
        );
        assert!(decode_chunk(&[7, 0, 0]).is_err());
        assert!(decode_chunk(&[]).is_err());
    }

    fn same(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    proptest! {
        #[test]
        fn round_trip_any_points(points in proptest::collection::vec((any::<i64>(), any::<f64>()), 0..300)) {
            let block = encode(&points);
            prop_assert!(same(&decode(&block).unwrap(), &points));
        }

        #[test]
        fn round_trip_regular_series(start in 0i64..4_000_000_000_000, step in 1i64..120_000,
                                     jitter in proptest::collection::vec(-50i64..50, 1..500),
                                     walk in proptest::collection::vec(-100i32..100, 1..500)) {
            let mut v = 50.0f64;
            let points: Vec<(i64, f64)> = jitter.iter().zip(walk.iter().cycle()).enumerate()
                .map(|(i, (j, w))| { v += f64::from(*w) / 100.0; (start + i as i64 * step + j, v) })
                .collect();
            prop_assert!(same(&decode(&encode(&points)).unwrap(), &points));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn truncation_is_an_error(points in proptest::collection::vec((any::<i64>(), any::<f64>()), 1..50), cut in 0usize..10_000) {
            let block = encode(&points);
            let cut = cut % block.len();
            // A cut inside the last byte may still hold every bit; anything shorter must fail.
            if cut < block.len() - 1 {
                prop_assert!(decode(&block[..cut]).is_err());
            }
        }
    }

    #[test]
    fn snapshots_of_an_open_encoder_decode_to_its_prefix() {
        let points: Vec<(i64, f64)> = (0..500)
            .map(|i| (i * 1000 + (i % 7), (i as f64 * 0.37).sin()))
            .collect();
        let mut e = Encoder::new();
        for (n, &(t, v)) in points.iter().enumerate() {
            e.push(t, v);
            if n % 37 == 0 {
                let snap = e.snapshot();
                assert_eq!(snap.len(), e.block_len());
                assert!(same(&decode(&snap).unwrap(), &points[..=n]));
            }
        }
        assert_eq!(e.snapshot(), e.clone().finish());
    }

    #[test]
    fn regular_constant_series_costs_about_two_bits_per_point() {
        let points: Vec<(i64, f64)> = (0..10_000)
            .map(|i| (1_700_000_000_000 + i * 10_000, 42.0))
            .collect();
        let block = encode(&points);
        assert!(
            block.len() < 4 + 16 + 10_000 * 2 / 8 + 8,
            "{} bytes",
            block.len()
        );
        assert!(same(&decode(&block).unwrap(), &points));
    }

    #[test]
    fn extremes_round_trip() {
        let points = vec![
            (i64::MIN, f64::MIN),
            (i64::MAX, f64::MAX),
            (0, f64::NAN),
            (-1, f64::NEG_INFINITY),
            (i64::MIN, -0.0),
            (5, 0.0),
        ];
        assert!(same(&decode(&encode(&points)).unwrap(), &points));
    }

    #[test]
    fn a_lying_count_is_an_error_not_an_allocation() {
        let mut block = encode(&[(1, 1.0), (2, 2.0)]);
        block[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&block), Err(DecodeError::Truncated { .. })));
    }
}
