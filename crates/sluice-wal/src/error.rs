//! Errors of the log. They know nothing of HTTP; the server maps them at its edge.

use std::io;
use std::path::PathBuf;

use crate::record::Lsn;

/// Errors of a running log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The append queue is full. Nothing was enqueued; the caller should retry later.
    #[error("write-ahead log queue is full ({queue_capacity} records); retry later")]
    Overloaded { queue_capacity: usize },
    /// The log was shut down.
    #[error("write-ahead log is closed")]
    Closed,
    /// The storage is full (no space, over quota or over the file size limit): nothing was
    /// enqueued. The log retries its pending write by itself and accepts appends again once
    /// it succeeds; retry later.
    #[error(
        "the disk holding the write-ahead log is full; writes resume by themselves once space returns"
    )]
    StorageFull,
    /// A write or fdatasync failed earlier; the log accepts nothing more.
    #[error("write-ahead log stopped after an I/O failure")]
    Poisoned,
    /// The payload is larger than one record may be.
    #[error("record payload of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    /// Record kind 0 belongs to the log itself.
    #[error("record kind 0 is reserved for the log's sync markers")]
    ReservedKind,
    /// [`crate::Wal::append_at`] asked for an LSN that is not the next one.
    #[error("record {requested} is out of sequence: the next LSN is {expected}")]
    OutOfSequence { requested: Lsn, expected: Lsn },
    /// A checkpoint beyond what was written.
    #[error("checkpoint {requested} is beyond the last written LSN {written}")]
    CheckpointBeyondLog { requested: Lsn, written: Lsn },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

/// Errors of [`crate::Wal::open`]: the log cannot be used and the server must not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "write-ahead log corrupt at {path}, byte offset {offset}: {reason}. \
         Data that was durable cannot be read; refusing to start rather than lose it silently. \
         Restore the directory from a backup or a replica."
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("write-ahead log directory {path} is locked by another process")]
    Locked { path: PathBuf },
    #[error("replaying record {lsn} failed: {message}")]
    Replay { lsn: Lsn, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_ctx<E: From<IoCtx>>(context: impl Into<String>) -> impl FnOnce(io::Error) -> E {
    let context = context.into();
    move |source| E::from(IoCtx { context, source })
}

/// An I/O error with the operation it happened in.
pub(crate) struct IoCtx {
    pub(crate) context: String,
    pub(crate) source: io::Error,
}

impl From<IoCtx> for WalError {
    fn from(e: IoCtx) -> Self {
        WalError::Io {
            context: e.context,
            source: e.source,
        }
    }
}

impl From<IoCtx> for OpenError {
    fn from(e: IoCtx) -> Self {
        OpenError::Io {
            context: e.context,
            source: e.source,
        }
    }
}
