//! Segment files: naming, the header, creation and listing.
//!
//! A segment is `<first_lsn, 20 digits>.wal` and starts with a 16-byte header:
//! `magic "SLUICEWL"`, `format version u32`, `crc32c of the previous 12 bytes u32`.
//! Creating a segment writes and fsyncs the header, then fsyncs the directory, so that a
//! segment that exists after a crash has a readable header unless the crash hit that very moment
//! (a header shorter than 16 bytes in the last segment, handled by recovery).

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{IoCtx, io_ctx};
use crate::record::Lsn;

pub const HEADER_BYTES: usize = 16;
const MAGIC: &[u8; 8] = b"SLUICEWL";
const FORMAT_VERSION: u32 = 1;
const EXTENSION: &str = "wal";

/// A segment on disk, as known to the writer and recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub first_lsn: Lsn,
    pub path: PathBuf,
}

pub fn file_name(first_lsn: Lsn) -> String {
    format!("{:020}.{EXTENSION}", first_lsn.0)
}

/// The header every segment starts with.
pub fn header() -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header; `Err` says what is wrong with it.
pub fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!(
            "segment header is {} bytes, expected {HEADER_BYTES}",
            bytes.len()
        ));
    }
    if &bytes[0..8] != MAGIC {
        return Err("not a Sluice WAL segment (bad magic)".to_string());
    }
    let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if crc32c::crc32c(&bytes[0..12]) != crc {
        return Err("segment header checksum mismatch".to_string());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported segment format version {version}"));
    }
    Ok(())
}

/// Lists the segments of `dir`, ordered by first LSN. Files that are not segments are ignored.
pub fn list(dir: &Path) -> Result<Vec<SegmentInfo>, IoCtx> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_ctx(format!("listing {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_ctx(format!("listing {}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(&format!(".{EXTENSION}")) else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        let Ok(first) = stem.parse::<u64>() else {
            continue;
        };
        out.push(SegmentInfo {
            first_lsn: Lsn(first),
            path: entry.path(),
        });
    }
    out.sort_by_key(|s| s.first_lsn);
    Ok(out)
}

/// Creates a new segment whose first record will be `first_lsn`, durably, and returns it open
/// for appending.
pub fn create(dir: &Path, first_lsn: Lsn) -> Result<(File, SegmentInfo), IoCtx> {
    let path = dir.join(file_name(first_lsn));
    let ctx = format!("creating WAL segment {}", path.display());
    let mut file = crate::faults::create(&path, || {
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(&path)
    })
    .map_err(io_ctx(ctx.clone()))?;
    crate::faults::write_all(&path, &mut file, &header()).map_err(io_ctx(ctx.clone()))?;
    crate::faults::sync_all(&path, &file).map_err(io_ctx(ctx))?;
    sync_dir(dir)?;
    Ok((file, SegmentInfo { first_lsn, path }))
}

/// Makes the directory entry changes (create, rename, delete) in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), IoCtx> {
    File::open(dir)
        .and_then(|d| crate::faults::sync_all(dir, &d))
        .map_err(io_ctx(format!("syncing directory {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_lsn() {
        let mut names = vec![file_name(Lsn(10)), file_name(Lsn(9)), file_name(Lsn(100))];
        names.sort();
        assert_eq!(
            names,
            vec![file_name(Lsn(9)), file_name(Lsn(10)), file_name(Lsn(100))]
        );
    }

    #[test]
    fn header_round_trips_and_damage_is_named() {
        let h = header();
        assert_eq!(check_header(&h), Ok(()));
        let mut bad = h;
        bad[3] ^= 0x20;
        assert!(check_header(&bad).unwrap_err().contains("magic"));
        let mut bad = h;
        bad[9] ^= 1;
        assert!(check_header(&bad).unwrap_err().contains("checksum"));
        assert!(check_header(&h[..7]).is_err());
    }
}
