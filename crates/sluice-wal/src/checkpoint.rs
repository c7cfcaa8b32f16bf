//! The checkpoint file: the LSN up to which every record's effect is in immutable storage.
//!
//! `CHECKPOINT` holds `magic "SLCKPT01"`, `lsn u64`, `crc32c u32` (20 bytes). It is replaced
//! atomically (`durable::write_atomically`: `CHECKPOINT.tmp`, fsync, rename over, fsync the directory). A reader sees the
//! old or the new value, never a mix. A missing file means LSN 0; a damaged one is corruption.

use std::fs;
use std::io;
use std::path::Path;

use crate::error::{IoCtx, OpenError, io_ctx};
use crate::record::Lsn;

const FILE: &str = "CHECKPOINT";
const MAGIC: &[u8; 8] = b"SLCKPT01";
const LEN: usize = 20;

pub fn load(dir: &Path) -> Result<Lsn, OpenError> {
    let path = dir.join(FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lsn::ZERO),
        Err(e) => {
            return Err(io_ctx::<OpenError>(format!("reading {}", path.display()))(
                e,
            ));
        }
    };
    let corrupt = |reason: &str| OpenError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: reason.to_string(),
    };
    if bytes.len() != LEN || &bytes[0..8] != MAGIC {
        return Err(corrupt("checkpoint file has a bad size or magic"));
    }
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc32c::crc32c(&bytes[0..16]) != crc {
        return Err(corrupt("checkpoint file checksum mismatch"));
    }
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&bytes[8..16]);
    Ok(Lsn(u64::from_le_bytes(lsn)))
}

pub fn store(dir: &Path, lsn: Lsn) -> Result<(), IoCtx> {
    let mut bytes = [0u8; LEN];
    bytes[0..8].copy_from_slice(MAGIC);
    bytes[8..16].copy_from_slice(&lsn.0.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[0..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());

    let path = dir.join(FILE);
    crate::durable::write_atomically(&path, &bytes)
        .map_err(io_ctx(format!("replacing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_zero_and_store_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Lsn::ZERO);
        store(dir.path(), Lsn(42)).ok().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Lsn(42));
        store(dir.path(), Lsn(43)).ok().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Lsn(43));
    }

    #[test]
    fn damage_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), Lsn(42)).ok().unwrap();
        let path = dir.path().join(FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 4;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(load(dir.path()), Err(OpenError::Corrupt { .. })));
    }
}
