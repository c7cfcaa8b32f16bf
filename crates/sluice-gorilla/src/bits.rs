//! Big-endian bit streams: the writer packs bits most-significant first; the reader returns
//! `None` instead of reading past the end.

#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Bits not yet flushed, left-aligned in the low `pending_bits` of `acc`.
    acc: u64,
    pending_bits: u32,
}

impl BitWriter {
    /// Writes the low `n` bits of `value` (`n` ≤ 64), most significant first.
    pub fn write(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let value = if n == 64 {
            value
        } else {
            value & ((1u64 << n) - 1)
        };
        let mut remaining = n;
        while remaining > 0 {
            let space = 64 - self.pending_bits;
            let take = remaining.min(space);
            let shift = remaining - take;
            let chunk = if take == 64 {
                value
            } else {
                (value >> shift) & ((1u64 << take) - 1)
            };
            self.acc = if take == 64 {
                chunk
            } else {
                (self.acc << take) | chunk
            };
            self.pending_bits += take;
            remaining -= take;
            if self.pending_bits == 64 {
                self.bytes.extend_from_slice(&self.acc.to_be_bytes());
                self.acc = 0;
                self.pending_bits = 0;
            }
        }
    }

    pub fn byte_len(&self) -> usize {
        self.bytes.len() + self.pending_bits.div_ceil(8) as usize
    }

    /// Appends every bit written to `other`.
    pub fn append(&mut self, other: &BitWriter) {
        for &b in &other.bytes {
            self.write(u64::from(b), 8);
        }
        if other.pending_bits > 0 {
            self.write(other.acc, other.pending_bits);
        }
    }

    /// Appends the bytes written so far (the last one zero-padded) to `out`.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        if self.pending_bits > 0 {
            let aligned = self.acc << (64 - self.pending_bits);
            let n = self.pending_bits.div_ceil(8) as usize;
            out.extend_from_slice(&aligned.to_be_bytes()[..n]);
        }
    }

    pub fn into_bytes(mut self) -> Vec<u8> {
        if self.pending_bits > 0 {
            let aligned = self.acc << (64 - self.pending_bits);
            let n = self.pending_bits.div_ceil(8) as usize;
            self.bytes.extend_from_slice(&aligned.to_be_bytes()[..n]);
        }
        self.bytes
    }
}

pub struct BitReader<'a> {
    bytes: &'a [u8],
    bit_pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader { bytes, bit_pos: 0 }
    }

    /// Consumes the run of zero bits that starts here, at most `max` of them; returns how many
    /// (a run of zero delta-of-deltas is a run of regularly spaced timestamps). Looks at most
    /// 57 bits ahead, and none when fewer than 8 bytes remain: the caller reads on bit by bit.
    #[inline]
    pub fn skip_zeros(&mut self, max: usize) -> usize {
        let first = self.bit_pos / 8;
        let Some(word) = self.bytes.get(first..first + 8) else {
            return 0;
        };
        let word = u64::from_be_bytes(word.try_into().unwrap_or_default());
        let offset = self.bit_pos % 8;
        let zeros = ((word << offset).leading_zeros() as usize)
            .min(64 - offset)
            .min(max);
        self.bit_pos += zeros;
        zeros
    }

    /// Reads `n` bits (`n` ≤ 64), or `None` if fewer remain.
    #[inline]
    pub fn read(&mut self, n: u32) -> Option<u64> {
        debug_assert!(n <= 64);
        let end = self.bit_pos.checked_add(n as usize)?;
        if end > self.bytes.len() * 8 {
            return None;
        }
        // Fast path: one unaligned big-endian load holds the `n` bits when 8 bytes remain
        // from the current byte (`offset` ≤ 7 leaves at least 57 bits of the word).
        let first = self.bit_pos / 8;
        if n <= 57
            && let Some(word) = self.bytes.get(first..first + 8)
        {
            let word = u64::from_be_bytes(word.try_into().unwrap_or_default());
            let offset = (self.bit_pos % 8) as u32;
            self.bit_pos = end;
            return Some(if n == 0 {
                0
            } else {
                (word << offset) >> (64 - n)
            });
        }
        let mut value = 0u64;
        let mut remaining = n;
        while remaining > 0 {
            let byte = self.bytes[self.bit_pos / 8];
            let offset = (self.bit_pos % 8) as u32;
            let available = 8 - offset;
            let take = remaining.min(available);
            let bits = (u64::from(byte) >> (available - take)) & ((1u64 << take) - 1);
            value = if take == 64 {
                bits
            } else {
                (value << take) | bits
            };
            self.bit_pos += take as usize;
            remaining -= take;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn writes_read_back(items in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut w = BitWriter::default();
            for &(v, n) in &items {
                w.write(v, n);
            }
            let bytes = w.into_bytes();
            let mut r = BitReader::new(&bytes);
            for &(v, n) in &items {
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read(n), Some(v & mask));
            }
        }

        #[test]
        fn zero_runs_are_skipped_exactly(bits in proptest::collection::vec(proptest::bool::weighted(0.1), 0..400), max in 0usize..100) {
            let mut w = BitWriter::default();
            for &b in &bits {
                w.write(u64::from(b), 1);
            }
            let bytes = w.into_bytes();
            let mut r = BitReader::new(&bytes);
            let mut at = 0;
            while at < bits.len() {
                let n = r.skip_zeros(max);
                prop_assert!(n <= max);
                prop_assert!(bits[at..at + n.min(bits.len() - at)].iter().all(|b| !b));
                at += n;
                if at >= bits.len() {
                    break;
                }
                prop_assert_eq!(r.read(1), Some(u64::from(bits[at])));
                at += 1;
            }
        }
    }
}
