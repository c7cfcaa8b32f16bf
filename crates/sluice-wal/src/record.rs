//! The record frame: encoding and checked decoding.
//!
//! ```text
//! offset  size  field
//! 0       4     len         bytes after the first 8 (13 + payload length)
//! 4       4     crc         crc32c(len bytes ++ bytes 8..8+len)
//! 8       8     lsn
//! 16      4     sync_delta  lsn - durable LSN when the record was written (u32::MAX: unknown)
//! 20      1     kind        record type, owned by the layer above the log
//! 21      n     payload
//! ```
//! All integers little-endian. The log never interprets `kind` or `payload`.

use std::fmt;

/// Bytes of framing before the payload.
pub const HEADER_BYTES: usize = 21;
/// Bytes covered by `len` that are not payload.
const BODY_FIXED_BYTES: usize = HEADER_BYTES - 8;
/// Largest payload a record may carry. Larger appends are refused; a larger `len` on disk is
/// damage.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// Log sequence number: strictly increasing by one per record within a database, starting at 1.
/// `Lsn(0)` means "nothing": the LSN before the first record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The type of a record, chosen by the layer that appends it (engines, database catalog).
/// Kind 0 is reserved for the log's own sync markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordKind(pub u8);

/// A sync marker: written by the log after an fdatasync that left the log idle, and on close.
/// It repeats the last record's LSN (it does not advance the sequence) and says that LSN was
/// durable, so recovery can tell damage to synced records from a torn tail. Never replayed.
pub const SYNC_MARKER: RecordKind = RecordKind(0);

/// A decoded record borrowing its payload from the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub lsn: Lsn,
    pub kind: RecordKind,
    /// The LSN that was durable when this record was written.
    pub synced_lsn: Lsn,
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Bytes this record occupies in a segment.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES + self.payload.len()
    }
}

/// Appends the encoded record to `out`.
pub fn encode(out: &mut Vec<u8>, lsn: Lsn, synced_lsn: Lsn, kind: RecordKind, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD_BYTES);
    debug_assert!(synced_lsn < lsn || (kind == SYNC_MARKER && synced_lsn == lsn));
    let len = (BODY_FIXED_BYTES + payload.len()) as u32;
    let sync_delta = u32::try_from(lsn.0 - synced_lsn.0).unwrap_or(u32::MAX);
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.0.to_le_bytes());
    out.extend_from_slice(&sync_delta.to_le_bytes());
    out.push(kind.0);
    out.extend_from_slice(payload);
    let crc = checksum(&out[start..start + 4], &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len_bytes: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), body)
}

/// Why the bytes at a position are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer ends before the record does.
    Incomplete,
    /// The length field is impossible.
    BadLength(u32),
    /// The checksum does not match.
    BadChecksum,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Incomplete => write!(f, "record extends past the end of the file"),
            DecodeError::BadLength(len) => write!(f, "impossible record length {len}"),
            DecodeError::BadChecksum => write!(f, "record checksum mismatch"),
        }
    }
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<RecordRef<'_>, DecodeError> {
    if buf.len() < 8 {
        return Err(DecodeError::Incomplete);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let body_len = len as usize;
    if !(BODY_FIXED_BYTES..=BODY_FIXED_BYTES + MAX_PAYLOAD_BYTES).contains(&body_len) {
        return Err(DecodeError::BadLength(len));
    }
    let Some(body) = buf.get(8..8 + body_len) else {
        return Err(DecodeError::Incomplete);
    };
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if checksum(&buf[0..4], body) != crc {
        return Err(DecodeError::BadChecksum);
    }
    let lsn = Lsn(read_u64(&body[0..8]));
    let sync_delta = u32::from_le_bytes([body[8], body[9], body[10], body[11]]);
    Ok(RecordRef {
        lsn,
        kind: RecordKind(body[12]),
        // The saturated delta means "further back than we can say": assume nothing was synced,
        // which can only make recovery more willing to treat damage as a torn tail.
        synced_lsn: if sync_delta == u32::MAX {
            Lsn::ZERO
        } else {
            Lsn(lsn.0.saturating_sub(u64::from(sync_delta)))
        },
        payload: &body[BODY_FIXED_BYTES..],
    })
}

/// Reads the LSN field of a would-be record without checking anything else; used to filter
/// candidates cheaply when searching damaged regions.
pub fn peek_lsn(buf: &[u8]) -> Option<Lsn> {
    buf.get(8..16).map(|b| Lsn(read_u64(b)))
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(lsn in 1u64..u64::MAX / 2, back in 0u64..1_000_000_000_000, kind: u8,
                      payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let synced = Lsn(lsn.saturating_sub(back + 1));
            let mut buf = Vec::new();
            encode(&mut buf, Lsn(lsn), synced, RecordKind(kind), &payload);
            prop_assert_eq!(buf.len(), HEADER_BYTES + payload.len());
            let rec = decode(&buf).unwrap();
            prop_assert_eq!(rec.lsn, Lsn(lsn));
            prop_assert_eq!(rec.kind, RecordKind(kind));
            prop_assert_eq!(rec.payload, &payload[..]);
            // The delta saturates, so the decoded sync point is never later than the true one.
            prop_assert!(rec.synced_lsn <= synced);
            if lsn - synced.0 < u64::from(u32::MAX) {
                prop_assert_eq!(rec.synced_lsn, synced);
            }
        }

        #[test]
        fn any_single_bit_flip_is_detected(payload in proptest::collection::vec(any::<u8>(), 0..256),
                                           bit in 0usize..(8 * (HEADER_BYTES + 256))) {
            let mut buf = Vec::new();
            encode(&mut buf, Lsn(7), Lsn(3), RecordKind(1), &payload);
            let bit = bit % (8 * buf.len());
            buf[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&buf).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn truncated_record_is_incomplete() {
        let mut buf = Vec::new();
        encode(&mut buf, Lsn(1), Lsn(0), RecordKind(2), b"hello");
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut} decoded");
        }
    }
}
