//! Index snapshots: every collection's usearch index and catalogue as of one LSN.
//!
//! Layout of the engine's directory:
//! ```text
//! MANIFEST                     JSON: format, lsn, collections
//! c{id}-{lsn}.usearch          usearch's own index file
//! c{id}-{lsn}.catalog          JSON catalogue (next key; key, pk, metadata per entity)
//! ```
//! A snapshot is written file by file (each fsynced), then the MANIFEST is replaced atomically
//! (temporary file, fsync, rename, directory fsync); only then are files of older snapshots
//! deleted. A crash at any point leaves the previous MANIFEST and its files intact. Each file's
//! CRC32C is recorded in the MANIFEST and checked at load: a damaged snapshot refuses to load
//! with a message naming the file, like a damaged WAL.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::collection::CollectionConfig;

pub const MANIFEST: &str = "MANIFEST";
const FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Every operation at or below this LSN is in the snapshot.
    pub lsn: u64,
    pub collections: Vec<SavedCollection>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedCollection {
    pub id: u64,
    pub config: CollectionConfig,
    pub index_file: String,
    pub index_crc: u32,
    pub catalog_file: String,
    pub catalog_crc: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn index_file(id: u64, lsn: u64) -> String {
    format!("c{id}-{lsn}.usearch")
}

pub fn catalog_file(id: u64, lsn: u64) -> String {
    format!("c{id}-{lsn}.catalog")
}

/// Reads the MANIFEST, if there is one.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, SnapshotError> {
    let path = dir.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| SnapshotError::Damaged {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if m.format != FORMAT {
        return Err(SnapshotError::Damaged {
            path,
            reason: format!(
                "format {} is not {FORMAT}: written by another Sluice?",
                m.format
            ),
        });
    }
    Ok(Some(m))
}

/// Syncs a file written by someone else (usearch) and returns its CRC32C.
pub fn sync_and_crc(path: &Path) -> Result<u32, SnapshotError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    sluice_wal::faults::sync_all(path, &f).map_err(io_err(path))?;
    let mut crc = 0u32;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
}

/// Writes `bytes` to `path`, synced, and returns their CRC32C.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<u32, SnapshotError> {
    let mut f = sluice_wal::faults::create(path, || File::create(path)).map_err(io_err(path))?;
    sluice_wal::faults::write_all(path, &mut f, bytes).map_err(io_err(path))?;
    sluice_wal::faults::sync_all(path, &f).map_err(io_err(path))?;
    Ok(crc32c::crc32c(bytes))
}

/// Checks a file against its recorded CRC32C.
pub fn verify(path: &Path, want: u32) -> Result<(), SnapshotError> {
    let got = sync_and_crc(path)?;
    if got != want {
        return Err(SnapshotError::Damaged {
            path: path.to_path_buf(),
            reason: format!("CRC32C {got:08x}, the MANIFEST recorded {want:08x}"),
        });
    }
    Ok(())
}

/// Atomically replaces the MANIFEST, then deletes files no longer referenced.
pub fn commit(dir: &Path, manifest: &Manifest) -> Result<(), SnapshotError> {
    let bytes = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    let path = dir.join(MANIFEST);
    sluice_wal::durable::write_atomically(&path, &bytes).map_err(io_err(&path))?;
    let keep: std::collections::HashSet<&str> = manifest
        .collections
        .iter()
        .flat_map(|c| [c.index_file.as_str(), c.catalog_file.as_str()])
        .collect();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.ends_with(".usearch") || name.ends_with(".catalog");
        if ours && !keep.contains(name) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

pub fn new_manifest(lsn: u64) -> Manifest {
    Manifest {
        format: FORMAT,
        lsn,
        collections: Vec::new(),
    }
}
