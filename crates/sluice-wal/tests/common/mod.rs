//! Helpers shared by the WAL integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sluice_wal::{AckLevel, Lsn, OpenError, RecordKind, Wal, WalConfig, WalOptions};

pub const KIND: RecordKind = RecordKind(3);

pub fn options(config: WalConfig) -> WalOptions {
    WalOptions {
        config,
        ..WalOptions::default()
    }
}

/// Records as (lsn, payload).
pub type Records = Vec<(u64, Vec<u8>)>;

/// Opens the log and returns it with every replayed record.
pub fn open_collect(dir: &Path, config: WalConfig) -> Result<(Wal, Records), OpenError> {
    let mut seen = Vec::new();
    let wal = Wal::open(dir, options(config), |r| {
        seen.push((r.lsn.get(), r.payload.to_vec()));
        Ok(())
    })?;
    Ok((wal, seen))
}

pub fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat((i % 37) as usize)).into_bytes()
}

/// Appends `n` records at `fsync`, one at a time, and returns their LSNs.
pub fn append_synced(wal: &Wal, from: u64, n: u64) -> Vec<Lsn> {
    (from..from + n)
        .map(|i| {
            wal.append(KIND, payload(i), AckLevel::Fsync)
                .unwrap()
                .wait_blocking()
                .unwrap()
        })
        .collect()
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
