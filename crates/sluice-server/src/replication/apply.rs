//! The replica side of WAL shipping: unpack and verify a batch completely, then apply it at
//! the primary's LSNs.
//!
//! Checks before anything is applied (a batch failing any of them changes nothing):
//! base64, the CRC32C of the compressed bytes, the declared size (at most the batch body
//! limit; zstd may not inflate beyond it), decompression, then every record's own CRC32C,
//! consecutive LSNs from `first_lsn` to `last_lsn`, the record count, a known kind and a
//! payload that decodes. Then, under the database's apply lock: records at or below the
//! replica's last LSN are skipped (idempotent re-sends), a first LSN beyond the next one is a
//! gap (refused), the rest are appended with `Wal::append_at` inside the engines' write locks
//! (as local writes are logged), the flusher is nudged as for local writes, and the log is
//! fsync'd before answering: the LSN answered is durable on the replica.
//!
//! Once appended, applied or stop: an engine that fails on a record after it is in the log
//! stops the process (as a failed fsync does; recovery replays the log into the engines).
//! Anything an engine would refuse is checked before the batch is logged and refused whole
//! (`record_refused`, 422), so a refused record is never skipped on a retry.

use std::ops::Range;
use std::time::Instant;

use base64::Engine as _;
use sluice_api::replication::WalApplyRequest;
use sluice_ts::WriteError;
use sluice_vector::VectorError;
use sluice_wal::{AckLevel, Lsn, RecordKind, WalError};

use crate::core::records::Kind;
use crate::db::Database;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("corrupt batch: {0}")]
    Corrupt(String),
    #[error("batch too large: {0}")]
    TooLarge(String),
    #[error("the batch starts at LSN {first} but this replica's log continues at {expected}")]
    Gap { first: Lsn, expected: Lsn },
    #[error("the buffers are full; retry")]
    Overloaded,
    /// A well-formed record this node cannot take (e.g. a collection over its
    /// `vector.max_dimension`): refused before anything of the batch is logged, never skipped.
    #[error("record refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Internal(String),
}

/// A batch that passed every check.
pub struct Unpacked {
    bytes: Vec<u8>,
    records: Vec<Record>,
    pub first_lsn: Lsn,
    pub compressed_len: usize,
    pub decompress_ms: f64,
}

struct Record {
    lsn: Lsn,
    kind: RecordKind,
    payload: Range<usize>,
    decoded: Decoded,
}

/// What a record holds, decoded when the batch is verified.
enum Decoded {
    Points(sluice_ts::Batch),
    TsDelete(sluice_ts::query::Query),
    /// Vector records: decoded (to verify them) again by the vector engine as it applies them.
    Vectors,
}

/// What applying did.
pub struct Applied {
    pub applied: u64,
    pub skipped: u64,
    /// The replica's durable last LSN of the database.
    pub last_lsn: Lsn,
}

/// Decodes and verifies `req` completely; `max_bytes` caps the uncompressed size.
pub fn unpack(
    req: &WalApplyRequest,
    max_bytes: usize,
    max_dimension: usize,
) -> Result<Unpacked, ApplyError> {
    if req.first_lsn == 0 || req.last_lsn == u64::MAX || req.first_lsn > req.last_lsn {
        return Err(ApplyError::Corrupt(format!(
            "LSNs {}..={} are not a valid range",
            req.first_lsn, req.last_lsn
        )));
    }
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(&req.entries_compressed)
        .map_err(|e| ApplyError::Corrupt(format!("entries_compressed is not base64: {e}")))?;
    let crc = crc32c::crc32c(&compressed);
    if crc != req.entries_crc32c {
        return Err(ApplyError::Corrupt(format!(
            "entries_crc32c is {:#010x} but the entries' CRC32C is {crc:#010x}",
            req.entries_crc32c
        )));
    }
    let declared = usize::try_from(req.uncompressed_bytes).unwrap_or(usize::MAX);
    if declared > max_bytes {
        return Err(ApplyError::TooLarge(format!(
            "uncompressed_bytes {declared} exceeds the limit of {max_bytes}"
        )));
    }
    let started = Instant::now();
    let bytes = match req.compression.as_str() {
        "zstd" => zstd::bulk::decompress(&compressed, declared)
            .map_err(|e| ApplyError::Corrupt(format!("zstd: {e}")))?,
        "none" => compressed.clone(),
        other => {
            return Err(ApplyError::Corrupt(format!(
                "compression must be zstd or none, not {other:?}"
            )));
        }
    };
    let decompress_ms = started.elapsed().as_secs_f64() * 1000.0;
    if bytes.len() != declared {
        return Err(ApplyError::Corrupt(format!(
            "entries are {} bytes uncompressed, uncompressed_bytes says {declared}",
            bytes.len()
        )));
    }
    let mut records = Vec::new();
    let mut offset = 0;
    let mut expected = Lsn(req.first_lsn);
    while offset < bytes.len() {
        let r = sluice_wal::record::decode(&bytes[offset..]).map_err(|e| {
            ApplyError::Corrupt(format!("record {} at byte {offset}: {e}", records.len()))
        })?;
        if r.lsn != expected {
            return Err(ApplyError::Corrupt(format!(
                "record {} has LSN {}, expected {expected}",
                records.len(),
                r.lsn
            )));
        }
        let start = offset + sluice_wal::record::HEADER_BYTES;
        let payload = start..start + r.payload.len();
        let decoded = match Kind::of(r.kind) {
            Some(Kind::Points | Kind::SeriesPoints) => Decoded::Points(
                sluice_ts::record::decode_any(r.kind, r.payload)
                    .map_err(|e| ApplyError::Corrupt(format!("record {}: {e}", r.lsn)))?,
            ),
            Some(Kind::TsDelete) => Decoded::TsDelete(
                sluice_ts::record::decode_delete(r.payload)
                    .map_err(|e| ApplyError::Corrupt(format!("record {}: {e}", r.lsn)))?,
            ),
            Some(Kind::VectorOps) => {
                sluice_vector::record::decode_ops(r.payload)
                    .map_err(|e| ApplyError::Corrupt(format!("record {}: {e}", r.lsn)))?;
                Decoded::Vectors
            }
            Some(Kind::Collection) => {
                let change = sluice_vector::record::decode_collection(r.payload)
                    .map_err(|e| ApplyError::Corrupt(format!("record {}: {e}", r.lsn)))?;
                // What the engine would refuse after the record is logged is refused here,
                // before anything of the batch is.
                if let sluice_vector::record::CollectionChange::Create(c) = &change {
                    c.validate(max_dimension).map_err(|e| {
                        ApplyError::Refused(format!(
                            "record {}: collection {:?}: {e}",
                            r.lsn, c.name
                        ))
                    })?;
                }
                Decoded::Vectors
            }
            None => {
                return Err(ApplyError::Corrupt(format!(
                    "record {} has kind {}, unknown to this node (a newer primary?)",
                    r.lsn, r.kind.0
                )));
            }
        };
        records.push(Record {
            lsn: r.lsn,
            kind: r.kind,
            payload,
            decoded,
        });
        offset += r.encoded_len();
        expected = expected.next();
    }
    if records.len() as u64 != req.entries || records.is_empty() {
        return Err(ApplyError::Corrupt(format!(
            "the batch holds {} records, entries says {}",
            records.len(),
            req.entries
        )));
    }
    if expected.0 - 1 != req.last_lsn {
        return Err(ApplyError::Corrupt(format!(
            "the records end at LSN {}, last_lsn says {}",
            expected.0 - 1,
            req.last_lsn
        )));
    }
    Ok(Unpacked {
        bytes,
        records,
        first_lsn: Lsn(req.first_lsn),
        compressed_len: compressed.len(),
        decompress_ms,
    })
}

/// Applies a verified batch to `db` (blocking; the caller holds the database's apply lock).
pub fn apply(db: &Database, batch: Unpacked) -> Result<Applied, ApplyError> {
    let next = db.wal.status().last_assigned_lsn.next();
    if batch.first_lsn > next {
        return Err(ApplyError::Gap {
            first: batch.first_lsn,
            expected: next,
        });
    }
    let mut applied = 0u64;
    let mut skipped = 0u64;
    let mut failure = None;
    for rec in batch.records {
        if rec.lsn < next {
            skipped += 1;
            continue;
        }
        let payload = &batch.bytes[rec.payload.clone()];
        let (lsn, kind) = (rec.lsn, rec.kind);
        let appended = std::cell::Cell::new(false);
        let append = || {
            let r = db
                .wal
                .append_at(lsn, kind, payload.to_vec(), AckLevel::Buffer)
                .map(|_| lsn);
            appended.set(r.is_ok());
            r
        };
        let result = match rec.decoded {
            Decoded::TsDelete(q) => {
                // Synced now: the chunks are rewritten only once the record is durable.
                let durable = |_| {
                    db.wal
                        .sync()
                        .and_then(|t| t.wait_blocking())
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                };
                match db.ts.apply_replicated_delete(&q, append, durable) {
                    Ok(_) => Ok(()),
                    Err(sluice_ts::DeleteError::Append(e)) => Err(wal_error(e, lsn)),
                    Err(e) => Err(ApplyError::Internal(e.to_string())),
                }
            }
            Decoded::Points(points) => match db.ts.apply_replicated(points, append) {
                Ok(outcome) => {
                    if let Some(t) = outcome.flush_due {
                        db.flusher.nudge(t);
                    }
                    Ok(())
                }
                Err(WriteError::Append(e)) => Err(wal_error(e, lsn)),
                Err(WriteError::Overflow { .. }) => Err(ApplyError::Overloaded),
                Err(e) => Err(ApplyError::Internal(e.to_string())),
            },
            Decoded::Vectors => match db.vectors.apply_replicated(kind, payload, append) {
                Ok(due) => {
                    if let Some(t) = due {
                        db.flusher.nudge_vectors(t);
                    }
                    Ok(())
                }
                Err(VectorError::Append(e)) => Err(wal_error(e, lsn)),
                Err(VectorError::Overflow { .. }) => Err(ApplyError::Overloaded),
                Err(e) => Err(ApplyError::Internal(e.to_string())),
            },
        };
        if let Err(e) = result {
            // Once a record is in the log, the engines hold it or the process stops: a replica
            // answering an error here would skip the record as held on the primary's retry.
            if appended.get() {
                crate::core::stop_logged_but_not_applied(&db.name, lsn, &e.to_string());
            }
            failure = Some(e);
            break;
        }
        applied += 1;
    }
    // What was applied is made durable either way: a retry skips it.
    db.wal
        .sync()
        .and_then(|t| t.wait_blocking())
        .map_err(|e| ApplyError::Internal(e.to_string()))?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Applied {
        applied,
        skipped,
        last_lsn: db.wal.status().durable_lsn,
    })
}

fn wal_error(e: WalError, lsn: Lsn) -> ApplyError {
    match e {
        WalError::OutOfSequence { expected, .. } => ApplyError::Gap {
            first: lsn,
            expected,
        },
        WalError::Overloaded { .. } | WalError::Closed | WalError::StorageFull => {
            ApplyError::Overloaded
        }
        other => ApplyError::Internal(other.to_string()),
    }
}
