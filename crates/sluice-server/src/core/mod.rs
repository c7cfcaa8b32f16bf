//! The database operations, transport-neutral: what HTTP, the wire protocol (TCP and
//! WebSocket) and the SDKs all reach. Each operation validates its input and checks its limits
//! here, once, so every transport behaves the same (the same caps, the same error codes and
//! field paths); the adapters parse, authorize, call these functions and encode the answer.
//! Errors are [`crate::error::ApiError`]: a typed code and details, no transport status.

pub mod feed;
pub mod prom;
pub mod records;
pub mod replication;
pub mod ts;
pub mod vectors;

use sluice_wal::Lsn;

/// Stops the process: a record is in the WAL but an engine failed to apply it, so memory and
/// log disagree. Like a failed fsync, this is never retried or answered as an error (a retry
/// would find the record logged and skip it); recovery replays the log into the engines.
/// `lsn` 0 means the LSN is not known at the call site.
pub fn stop_logged_but_not_applied(database: &str, lsn: Lsn, detail: &str) -> ! {
    tracing::error!(
        database,
        lsn = lsn.0,
        detail,
        "a logged record could not be applied; stopping the process so recovery starts from the WAL"
    );
    eprintln!(
        "sluice: fatal: database {database:?}: the record at LSN {} is logged but could not be applied: {detail}; aborting",
        lsn.0
    );
    std::process::abort();
}
