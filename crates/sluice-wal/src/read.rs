//! Reading the log from an LSN, while it is being written: the replication shipper and the
//! changefeeds use it.
//!
//! A [`Cursor`] names the next LSN to read and, once it has read something, the segment and
//! byte offset where that LSN starts, so a reader that keeps up never rescans a segment.
//! [`Wal::read`] returns the records from the cursor up to the log's *durable* LSN (never
//! records that a power cut could still take back: a replica must not hold what its primary
//! may lose), as their on-disk bytes (header and CRC included), without sync markers.
//!
//! Segments are deleted once checkpointed and no longer retained ([`Wal::set_retain_from`]);
//! reading an LSN whose segment is gone answers [`ReadError::Gone`] with the oldest LSN still
//! readable (a replica then needs a snapshot; a changefeed subscriber must start over).
//! A segment deleted while a reader has it open stays readable through the open handle.
//!
//! Cost: one `readdir` when the cursor has no position or crosses into the next segment,
//! one `open` per call, and reads of 256 KiB (or one record, if larger).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::Wal;
use crate::error::{IoCtx, io_ctx};
use crate::record::{self, DecodeError, Lsn};
use crate::segment::{self, SegmentInfo};

const READ_CHUNK: usize = 256 * 1024;

/// Where a reader is in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    next: Lsn,
    pos: Option<Position>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Position {
    segment: Lsn,
    offset: u64,
}

impl Cursor {
    /// A cursor whose next record is `lsn` (LSN 0 is read as 1, the first record).
    pub fn at(lsn: Lsn) -> Cursor {
        Cursor {
            next: Lsn(lsn.0.max(1)),
            pos: None,
        }
    }

    /// The next LSN this cursor will read.
    pub fn next_lsn(&self) -> Lsn {
        self.next
    }
}

/// Records read from the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBatch {
    /// The records as they are on disk, in LSN order, one LSN after the other.
    pub bytes: Vec<u8>,
    pub records: u64,
    /// LSNs of the first and last record (both 0 when empty).
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
}

impl ReadBatch {
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The segment holding `requested` was deleted (checkpointed and not retained).
    #[error("WAL record {requested} is no longer retained; the oldest readable record is {oldest}")]
    Gone { requested: Lsn, oldest: Lsn },
    /// A record that the log says is durable does not decode: damage on disk.
    #[error("WAL segment {path} is damaged at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl From<IoCtx> for ReadError {
    fn from(e: IoCtx) -> ReadError {
        ReadError::Io {
            context: e.context,
            source: e.source,
        }
    }
}

impl Wal {
    /// Reads durable records from `cursor` on, about `max_bytes` of them (always at least one
    /// when one is durable), and advances the cursor past them.
    pub fn read(&self, cursor: &mut Cursor, max_bytes: usize) -> Result<ReadBatch, ReadError> {
        let limit = Lsn(self.shared.durable_lsn.load(Ordering::Acquire));
        let mut batch = ReadBatch::default();
        while cursor.next <= limit && (batch.bytes.len() < max_bytes || batch.records == 0) {
            let seg = match &cursor.pos {
                Some(p) => SegmentInfo {
                    first_lsn: p.segment,
                    path: self.shared.dir.join(segment::file_name(p.segment)),
                },
                None => self.locate(cursor.next)?,
            };
            let file = match File::open(&seg.path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if cursor.pos.take().is_some() {
                        continue; // Deleted under us: locate again (answers Gone if it must).
                    }
                    return Err(self.gone(cursor.next));
                }
                Err(e) => {
                    return Err(io_ctx::<ReadError>(format!(
                        "opening {}",
                        seg.path.display()
                    ))(e));
                }
            };
            let offset = cursor
                .pos
                .as_ref()
                .map_or(segment::HEADER_BYTES as u64, |p| p.offset);
            let end = read_segment(&file, &seg, offset, limit, max_bytes, cursor, &mut batch)?;
            match end {
                SegmentEnd::More => {}
                SegmentEnd::Eof => {
                    // Everything durable in this segment is read; the next LSN (if durable)
                    // starts the next segment.
                    if cursor.next <= limit {
                        let next = self.locate(cursor.next)?;
                        if next.first_lsn == seg.first_lsn {
                            return Err(ReadError::Corrupt {
                                path: seg.path.clone(),
                                offset,
                                reason: format!(
                                    "record {} is durable but the segment ends before it",
                                    cursor.next
                                ),
                            });
                        }
                        cursor.pos = Some(Position {
                            segment: next.first_lsn,
                            offset: segment::HEADER_BYTES as u64,
                        });
                    }
                }
            }
        }
        Ok(batch)
    }

    /// The oldest LSN still readable (the first LSN of the oldest segment).
    pub fn oldest_readable_lsn(&self) -> Result<Lsn, ReadError> {
        let segments = segment::list(&self.shared.dir)?;
        Ok(segments.first().map_or(
            Lsn(self.shared.durable_lsn.load(Ordering::Acquire) + 1),
            |s| s.first_lsn,
        ))
    }

    /// The segment that holds `lsn`: the last one starting at or before it.
    fn locate(&self, lsn: Lsn) -> Result<SegmentInfo, ReadError> {
        let segments = segment::list(&self.shared.dir)?;
        match segments.iter().rev().find(|s| s.first_lsn <= lsn) {
            Some(s) => Ok(s.clone()),
            None => Err(ReadError::Gone {
                requested: lsn,
                oldest: segments.first().map_or(lsn, |s| s.first_lsn),
            }),
        }
    }

    fn gone(&self, lsn: Lsn) -> ReadError {
        match self.oldest_readable_lsn() {
            Ok(oldest) => ReadError::Gone {
                requested: lsn,
                oldest,
            },
            Err(e) => e,
        }
    }
}

enum SegmentEnd {
    /// Stopped for the byte budget or the durable limit.
    More,
    /// Reached the end of the segment's bytes.
    Eof,
}

/// Reads records of one segment from `offset`, appending those at or after `cursor.next`.
fn read_segment(
    file: &File,
    seg: &SegmentInfo,
    mut offset: u64,
    limit: Lsn,
    max_bytes: usize,
    cursor: &mut Cursor,
    batch: &mut ReadBatch,
) -> Result<SegmentEnd, ReadError> {
    let ctx = || format!("reading {}", seg.path.display());
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0usize; // Where the undecoded bytes begin in `buf`.
    let mut file_pos = offset;
    let mut want = READ_CHUNK;
    loop {
        if cursor.next > limit || (batch.bytes.len() >= max_bytes && batch.records > 0) {
            cursor.pos = Some(Position {
                segment: seg.first_lsn,
                offset,
            });
            return Ok(SegmentEnd::More);
        }
        match record::decode(&buf[start..]) {
            Ok(r) => {
                let n = r.encoded_len();
                if r.lsn >= cursor.next && r.kind != record::SYNC_MARKER {
                    if r.lsn != cursor.next {
                        return Err(ReadError::Corrupt {
                            path: seg.path.clone(),
                            offset,
                            reason: format!("expected record {}, found {}", cursor.next, r.lsn),
                        });
                    }
                    if batch.records == 0 {
                        batch.first_lsn = r.lsn;
                    }
                    batch.bytes.extend_from_slice(&buf[start..start + n]);
                    batch.records += 1;
                    batch.last_lsn = r.lsn;
                    cursor.next = r.lsn.next();
                }
                start += n;
                offset += n as u64;
            }
            Err(DecodeError::Incomplete) => {
                // Keep the undecoded tail, read more after it.
                buf.drain(..start);
                start = 0;
                let have = buf.len();
                let header_len = if have >= 4 {
                    u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize + 8
                } else {
                    0
                };
                want = want.max(header_len.saturating_sub(have));
                buf.resize(have + want, 0);
                let got =
                    read_at_most(file, &mut buf[have..], file_pos)
                        .map_err(io_ctx::<ReadError>(ctx()))?;
                buf.truncate(have + got);
                file_pos += got as u64;
                if got == 0 {
                    if have == 0 {
                        cursor.pos = Some(Position {
                            segment: seg.first_lsn,
                            offset,
                        });
                        return Ok(SegmentEnd::Eof);
                    }
                    // A partial record at the end: bytes beyond the durable limit being
                    // written, or damage if the record it would be is durable.
                    return Err(ReadError::Corrupt {
                        path: seg.path.clone(),
                        offset,
                        reason: format!("record {} is durable but truncated", cursor.next),
                    });
                }
            }
            Err(e) => {
                return Err(ReadError::Corrupt {
                    path: seg.path.clone(),
                    offset,
                    reason: e.to_string(),
                });
            }
        }
    }
}

fn read_at_most(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AckLevel, RecordKind, WalConfig, WalOptions};

    const KIND: RecordKind = RecordKind(7);

    fn open(dir: &std::path::Path, segment_size_bytes: u64) -> Wal {
        let options = WalOptions {
            config: WalConfig {
                segment_size_bytes,
                ..WalConfig::default()
            },
            ..WalOptions::default()
        };
        Wal::open(dir, options, |_| Ok(())).unwrap()
    }

    fn put(wal: &Wal, n: u64) {
        for i in 0..n {
            let payload = format!("record-{i}").into_bytes();
            // One batch per record, so small segments rotate.
            wal.append(KIND, payload, AckLevel::Wal)
                .unwrap()
                .wait_blocking()
                .unwrap();
        }
        wal.sync().unwrap().wait_blocking().unwrap();
    }

    fn lsns(batch: &ReadBatch) -> Vec<u64> {
        let mut out = Vec::new();
        let mut rest = &batch.bytes[..];
        while !rest.is_empty() {
            let r = record::decode(rest).unwrap();
            assert_eq!(r.kind, KIND);
            out.push(r.lsn.0);
            rest = &rest[r.encoded_len()..];
        }
        out
    }

    #[test]
    fn reads_everything_durable_in_order_across_segments_in_small_batches() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), 512);
        put(&wal, 100);
        assert!(segment::list(dir.path()).ok().unwrap().len() > 3);
        let mut cursor = Cursor::at(Lsn::ZERO);
        let mut seen = Vec::new();
        loop {
            let b = wal.read(&mut cursor, 200).unwrap();
            if b.is_empty() {
                break;
            }
            let l = lsns(&b);
            assert_eq!(b.records as usize, l.len());
            assert_eq!((b.first_lsn.0, b.last_lsn.0), (l[0], *l.last().unwrap()));
            seen.extend(l);
        }
        assert_eq!(seen, (1..=100).collect::<Vec<_>>());
        // Later writes continue where the cursor stands; sync markers are never returned.
        put(&wal, 5);
        let b = wal.read(&mut cursor, usize::MAX).unwrap();
        assert_eq!(lsns(&b), (101..=105).collect::<Vec<_>>());
        // A cursor placed anywhere starts at that record.
        let b = wal.read(&mut Cursor::at(Lsn(42)), 1).unwrap();
        assert_eq!(lsns(&b), vec![42]);
    }

    #[test]
    fn checkpointed_segments_are_gone_unless_retained() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), 512);
        wal.set_retain_from(Some(Lsn(30)));
        put(&wal, 100);
        wal.checkpoint(Lsn(90)).unwrap().wait_blocking().unwrap();
        let oldest = wal.oldest_readable_lsn().unwrap();
        assert!(oldest <= Lsn(30) && oldest > Lsn(1), "{oldest}");
        let b = wal.read(&mut Cursor::at(Lsn(30)), usize::MAX).unwrap();
        assert_eq!(lsns(&b), (30..=100).collect::<Vec<_>>());
        match wal.read(&mut Cursor::at(Lsn(1)), usize::MAX) {
            Err(ReadError::Gone {
                requested,
                oldest: o,
            }) => {
                assert_eq!((requested, o), (Lsn(1), oldest));
            }
            other => panic!("{other:?}"),
        }
        // Releasing the floor lets the next checkpoint delete up to it.
        wal.set_retain_from(None);
        wal.checkpoint(Lsn(95)).unwrap().wait_blocking().unwrap();
        assert!(wal.oldest_readable_lsn().unwrap() > Lsn(30));
    }

    #[test]
    fn a_cursor_survives_the_deletion_of_its_segment_by_answering_gone() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), 512);
        put(&wal, 50);
        let mut cursor = Cursor::at(Lsn(1));
        let b = wal.read(&mut cursor, 1).unwrap();
        assert_eq!(lsns(&b), vec![1]);
        wal.checkpoint(Lsn(50)).unwrap().wait_blocking().unwrap();
        assert!(matches!(
            wal.read(&mut cursor, usize::MAX),
            Err(ReadError::Gone {
                requested: Lsn(2),
                ..
            })
        ));
    }

    #[test]
    fn append_at_keeps_a_given_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), 1 << 20);
        wal.append_at(Lsn(1), KIND, b"a".to_vec(), AckLevel::Wal)
            .unwrap()
            .wait_blocking()
            .unwrap();
        match wal.append_at(Lsn(3), KIND, b"c".to_vec(), AckLevel::Wal) {
            Err(crate::WalError::OutOfSequence {
                requested,
                expected,
            }) => {
                assert_eq!((requested, expected), (Lsn(3), Lsn(2)));
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted a gap"),
        }
        assert!(
            wal.append_at(Lsn(1), KIND, b"a".to_vec(), AckLevel::Wal)
                .is_err()
        );
        let t = wal
            .append_at(Lsn(2), KIND, b"b".to_vec(), AckLevel::Fsync)
            .unwrap();
        assert_eq!(t.wait_blocking().unwrap(), Lsn(2));
    }

    #[test]
    fn lag_is_measured_from_write_marks() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), 1 << 20);
        assert_eq!(wal.lag(Lsn::ZERO), None);
        put(&wal, 10);
        let (bytes, _ms) = wal.lag(Lsn::ZERO).unwrap();
        assert_eq!(
            bytes,
            wal.read(&mut Cursor::at(Lsn(1)), usize::MAX)
                .unwrap()
                .bytes
                .len() as u64
        );
        assert_eq!(wal.lag(Lsn(10)), Some((0, 0)));
    }
}
