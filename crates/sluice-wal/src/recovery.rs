//! Opening a log: verify every segment, cut a torn tail, replay records after the checkpoint.
//!
//! Rules (see the crate doc for why they tell torn tails from corruption):
//! - segments must be contiguous in LSN, and the first must start at or before
//!   `checkpoint + 1`, else records are missing: corruption;
//! - every record in every segment but the last must decode with the expected LSN;
//! - in the last segment, the first bad record starts the tail that is cut, unless a valid
//!   record after it carries a sync point at or beyond the bad record's LSN: corruption;
//! - a last segment shorter than its header (a crash while creating it) is rewritten empty.
//!
//! Each segment is read whole into memory (at most `segment_size_bytes` plus one batch).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{OpenError, io_ctx};
use crate::record::{self, Lsn, RecordRef};
use crate::segment::{self, SegmentInfo};

/// What recovery found.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segments: Vec<SegmentInfo>,
    /// Bytes of valid data in the last segment, header included (0 if there is none).
    pub last_segment_len: u64,
    pub last_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    pub truncated_bytes: u64,
    /// The log ends below the checkpoint (its tail was cut): appends must start a new segment
    /// at `checkpoint + 1` so no LSN at or below the checkpoint is handed out again.
    pub ends_below_checkpoint: bool,
}

pub(crate) type Replay<'a> = dyn FnMut(RecordRef<'_>) -> Result<(), String> + 'a;

pub(crate) fn recover(dir: &Path, replay: &mut Replay<'_>) -> Result<Recovered, OpenError> {
    let checkpoint_lsn = crate::checkpoint::load(dir)?;
    let segments = segment::list(dir).map_err(OpenError::from)?;
    let mut expected = checkpoint_lsn.next();
    let mut last_segment_len = 0;
    let mut truncated_bytes = 0;

    if let Some(first) = segments.first() {
        if first.first_lsn > expected {
            return Err(OpenError::Corrupt {
                path: first.path.clone(),
                offset: 0,
                reason: format!(
                    "first segment starts at LSN {} but the checkpoint is {}: records are missing",
                    first.first_lsn, checkpoint_lsn
                ),
            });
        }
        expected = first.first_lsn;
    }

    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let corrupt = |offset: usize, reason: String| OpenError::Corrupt {
            path: seg.path.clone(),
            offset: offset as u64,
            reason,
        };
        if seg.first_lsn == Lsn::ZERO {
            return Err(corrupt(
                0,
                "segment named after LSN 0, which no record has".to_string(),
            ));
        }
        // A gap is harmless when everything in it is checkpointed (a tail cut below the
        // checkpoint is followed by a segment starting right after it).
        if seg.first_lsn > expected && seg.first_lsn.0 - 1 <= checkpoint_lsn.0 {
            expected = seg.first_lsn;
        }
        if seg.first_lsn != expected {
            return Err(corrupt(
                0,
                format!(
                    "segment starts at LSN {} but the previous one ends at {}: records are missing",
                    seg.first_lsn,
                    Lsn(expected.0 - 1)
                ),
            ));
        }
        let bytes = fs::read(&seg.path).map_err(io_ctx::<OpenError>(format!(
            "reading {}",
            seg.path.display()
        )))?;
        if bytes.len() < segment::HEADER_BYTES && is_last {
            tracing::warn!(path = %seg.path.display(), "WAL segment header was torn; rewriting it");
            rewrite_empty(&seg.path)?;
            last_segment_len = segment::HEADER_BYTES as u64;
            truncated_bytes += bytes.len() as u64;
            continue;
        }
        segment::check_header(&bytes).map_err(|reason| corrupt(0, reason))?;

        let mut pos = segment::HEADER_BYTES;
        while pos < bytes.len() {
            match record::decode(&bytes[pos..]) {
                Ok(rec) if rec.kind == record::SYNC_MARKER && rec.lsn.0 + 1 == expected.0 => {
                    pos += rec.encoded_len();
                }
                Ok(rec) if rec.lsn == expected => {
                    if rec.lsn > checkpoint_lsn {
                        replay(rec).map_err(|message| OpenError::Replay {
                            lsn: rec.lsn,
                            message,
                        })?;
                    }
                    expected = expected.next();
                    pos += rec.encoded_len();
                }
                Ok(rec) => {
                    return Err(corrupt(
                        pos,
                        format!("record has LSN {} where {} was expected", rec.lsn, expected),
                    ));
                }
                Err(e) if !is_last => return Err(corrupt(pos, e.to_string())),
                Err(e) => {
                    if let Some((at, lsn)) = later_synced_record(&bytes, pos, expected) {
                        return Err(corrupt(
                            pos,
                            format!(
                                "{e} at LSN {expected}, yet record {lsn} at offset {at} was written \
                                 after LSN {expected} had been synced"
                            ),
                        ));
                    }
                    let cut = (bytes.len() - pos) as u64;
                    tracing::warn!(
                        path = %seg.path.display(), offset = pos, bytes = cut, lsn = %expected,
                        "cutting torn tail of the write-ahead log ({e}); these records were never synced"
                    );
                    truncate(&seg.path, pos as u64)?;
                    truncated_bytes += cut;
                    break;
                }
            }
        }
        if is_last {
            last_segment_len = pos.min(bytes.len()) as u64;
        }
    }

    let last_in_log = Lsn(expected.0 - 1);
    Ok(Recovered {
        segments,
        last_segment_len,
        last_lsn: last_in_log.max(checkpoint_lsn),
        checkpoint_lsn,
        truncated_bytes,
        ends_below_checkpoint: last_in_log < checkpoint_lsn,
    })
}

/// Searches `bytes` after a bad record at `bad_pos` (expected LSN `bad_lsn`) for a valid record
/// or sync marker whose sync point shows `bad_lsn` was durable when it was written. Candidates are filtered by a
/// plausible LSN before their checksum is computed, so a damaged region costs one pass.
fn later_synced_record(bytes: &[u8], bad_pos: usize, bad_lsn: Lsn) -> Option<(usize, Lsn)> {
    const PLAUSIBLE_LSN_SPAN: u64 = 1 << 40;
    let mut pos = bad_pos + 1;
    while pos + record::HEADER_BYTES <= bytes.len() {
        let candidate = &bytes[pos..];
        let plausible = record::peek_lsn(candidate)
            .is_some_and(|lsn| lsn >= bad_lsn && lsn.0 - bad_lsn.0 < PLAUSIBLE_LSN_SPAN);
        if plausible && let Ok(rec) = record::decode(candidate) {
            if rec.synced_lsn >= bad_lsn {
                return Some((pos, rec.lsn));
            }
            pos += rec.encoded_len();
            continue;
        }
        pos += 1;
    }
    None
}

fn truncate(path: &Path, len: u64) -> Result<(), OpenError> {
    let ctx = format!("truncating {}", path.display());
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_ctx::<OpenError>(ctx.clone()))?;
    f.set_len(len).map_err(io_ctx::<OpenError>(ctx.clone()))?;
    f.sync_all().map_err(io_ctx::<OpenError>(ctx))
}

fn rewrite_empty(path: &Path) -> Result<(), OpenError> {
    let ctx = format!("rewriting {}", path.display());
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io_ctx::<OpenError>(ctx.clone()))?;
    f.write_all(&segment::header())
        .map_err(io_ctx::<OpenError>(ctx.clone()))?;
    f.sync_all().map_err(io_ctx::<OpenError>(ctx))
}
