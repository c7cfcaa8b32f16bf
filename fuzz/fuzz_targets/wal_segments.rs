//! A WAL segment on disk made from arbitrary bytes: raw, or (to reach deep into recovery)
//! valid records built from the input and then torn or bit-flipped where the input says.
//! Opening the log recovers (cutting a torn tail) or refuses with an error, never panics;
//! replay is in LSN order; once opened, a new write never reuses an LSN and the log reopens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_wal::{AckLevel, Lsn, RecordKind, Wal, WalOptions, record};

fn segment(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    let mut bytes = Vec::new();
    if mode & 1 == 1 {
        bytes.extend_from_slice(&sluice_wal::segment_header());
    }
    if mode & 2 == 0 {
        bytes.extend_from_slice(rest);
        return bytes;
    }
    // Structured: [cut u16][flip u16][len u8, payload]...
    if rest.len() < 4 {
        return bytes;
    }
    let cut = u16::from_le_bytes([rest[0], rest[1]]) as usize;
    let flip = u16::from_le_bytes([rest[2], rest[3]]) as usize;
    let mut body = &rest[4..];
    let mut lsn = 1u64;
    while let Some((&len, more)) = body.split_first() {
        let len = (len as usize).min(more.len());
        let kind = RecordKind(1 + (len % 3) as u8);
        record::encode(
            &mut bytes,
            Lsn(lsn),
            Lsn(lsn.saturating_sub(2)),
            kind,
            &more[..len],
        );
        lsn += 1;
        body = &more[len..];
    }
    if mode & 4 == 4 && !bytes.is_empty() {
        let at = flip % bytes.len();
        bytes[at] ^= 1 << (mode >> 5);
    }
    if mode & 8 == 8 {
        bytes.truncate(cut.min(bytes.len()));
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    // On tmpfs when there is one: every run creates, syncs and removes a log.
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    std::fs::write(
        dir.path().join(sluice_wal::segment_file_name(Lsn(1))),
        segment(data),
    )
    .unwrap();
    let mut last = 0u64;
    let opened = Wal::open(dir.path(), WalOptions::default(), |r| {
        assert!(r.lsn.0 > last, "records replay in LSN order");
        last = r.lsn.0;
        Ok(())
    });
    let Ok(wal) = opened else { return };
    if let Ok(t) = wal.append(RecordKind(1), b"after".to_vec(), AckLevel::Wal) {
        assert!(t.lsn().0 > last, "an LSN is never reused");
    }
    drop(wal);
    let again = Wal::open(dir.path(), WalOptions::default(), |_| Ok(()));
    assert!(
        again.is_ok(),
        "a log this process wrote reopens: {:?}",
        again.err()
    );
});
