//! The Sluice write-ahead log: one per database.
//!
//! Every mutation the server accepts becomes a [`record`] in this log before it is acknowledged
//! (at `wal` or `fsync` level) or within `flush_interval_ms` (at `buffer` level). The engines keep
//! their unflushed state in memory and rebuild it on start by replaying the log after the
//! checkpoint; replication ships this log to replicas.
//!
//! # Shape
//! - **Records** ([`record`]): `[len u32][crc32c u32][lsn u64][sync_delta u32][kind u8][payload]`,
//!   little-endian. The CRC covers the length and everything after the CRC. LSNs start at 1 and
//!   increase by exactly one per record, so a gap is always detectable.
//! - **Segments** (`segment.rs`): files `NNNNNNNNNNNNNNNNNNNN.wal` named by the LSN of their first
//!   record, each starting with a 16-byte header. The writer rolls to a new segment once the
//!   active one passes `segment_size_bytes`, after an fdatasync of the old one: only the last
//!   segment can ever hold unsynced bytes.
//! - **Recovery** (`recovery.rs`): every segment is read and verified on open. A damaged record in
//!   the last segment is a *torn tail* (cut off, logged) unless a later valid record proves that
//!   the damaged one had already been fsync'd when it was written over — that, or damage in any
//!   older segment, a missing segment or a bad header, is *corruption*: the log refuses to open and
//!   names file and offset. No silent loss of data that was durable.
//! - **Group commit** (`writer.rs`): one writer thread per log drains a bounded queue and issues
//!   one `write` and at most one `fdatasync` per drained batch. A full queue is an immediate
//!   [`WalError::Overloaded`]; memory is bounded by `queue_capacity` records and
//!   `queue_capacity_bytes` of payload.
//! - **Checkpoint** (`checkpoint.rs`): the engines report the LSN up to which their state is in
//!   immutable storage; segments wholly at or below it are deleted, unless they hold an LSN at
//!   or above the retention floor ([`Wal::set_retain_from`]) that replicas still need.
//! - **Reading** (`read.rs`): [`Wal::read`] returns durable records from a [`Cursor`] while
//!   the log is written, for replication and changefeeds; [`Wal::append_at`] appends a
//!   record at a given LSN (a replica keeps its primary's LSNs).
//!
//! # How torn tails are told from corruption
//! Each record carries `sync_delta = lsn - durable_lsn_when_written` (saturating): the LSN that
//! was known to be on disk when the record's batch was written. After a bad record with expected
//! LSN `L`, recovery looks for valid records further on. If one of them says `L` was already
//! durable, the bad record was once good and on disk: corruption. If none does, the bad region
//! was never synced, so a power cut may have torn it: the tail from the bad record on is cut.
//! The last synced batch has no later record to vouch for it, so the writer adds one: after an
//! fdatasync that leaves the log idle, and on close, it writes and syncs a *sync marker* (kind
//! 0, repeating the last LSN, never replayed) whose sync point covers everything before it.
//! What remains indistinguishable from a torn write is damage to a batch whose fsync had
//! completed but whose marker (or successor) had not yet been written: a window of one fsync
//! before a crash. If a cut ever leaves the log below its checkpoint, appends resume at
//! `checkpoint + 1`, so no LSN is handed out twice.
//!
//! # Back of the envelope
//! A record costs 21 bytes of framing. At 100k single-point records/s (~80 bytes each) the log
//! grows 8 MB/s; a 64 MiB segment lasts ~8 s. One fdatasync on these VMs costs 0.5–3 ms, so
//! one-fsync-per-record caps near 1k records/s while group commit amortises it over every
//! record that queued during the previous sync.
//!
//! # Failure policy
//! A failed `write` or `fdatasync` poisons the log: the outcome of the write is unknowable and
//! retrying an fsync is unsafe (the kernel may have dropped the dirty pages). Every waiter gets
//! [`WalError::Poisoned`] and the configured fatal handler runs; the default one aborts the
//! process so that recovery starts from what is really on disk.

mod checkpoint;
pub mod durable;
pub mod error;
pub mod faults;
pub mod metrics;
mod read;
pub mod record;
mod recovery;
mod segment;
mod writer;

pub use error::{OpenError, WalError};

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it). The one clock
/// every layer stamps times with: receive times of points, lag, buffer ages.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
pub use metrics::WalMetrics;
pub use read::{Cursor, ReadBatch, ReadError};

/// Prepares an empty log in `dir` whose next record will be `lsn + 1`: a replica about to
/// load a snapshot taken at `lsn`. `dir` must hold no segments.
pub fn reset_to(dir: &std::path::Path, lsn: Lsn) -> Result<(), OpenError> {
    std::fs::create_dir_all(dir).map_err(error::io_ctx::<OpenError>(format!(
        "creating {}",
        dir.display()
    )))?;
    if !segment::list(dir).map_err(OpenError::from)?.is_empty() {
        return Err(OpenError::Corrupt {
            path: dir.to_path_buf(),
            offset: 0,
            reason: "a log being reset for a snapshot still has segments".into(),
        });
    }
    checkpoint::store(dir, lsn).map_err(OpenError::from)
}
pub use record::{Lsn, RecordKind, RecordRef};
/// A segment file's name and header, for tools and fuzz targets that write a segment.
pub use segment::{file_name as segment_file_name, header as segment_header};
pub use writer::{
    AckLevel, Appended, CLOSE_GRACE, DurableHook, FatalHandler, Ticket, Wal, WalConfig, WalOptions,
    WalStatus, WriteMark,
};
