//! Recovery: torn tails are cut, corruption refuses to open, positions survive restarts.

mod common;

use common::{KIND, append_synced, copy_dir, open_collect, payload, segments};
use sluice_wal::{AckLevel, Lsn, OpenError, WalConfig, record};

#[test]
fn records_round_trip_through_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, seen) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert!(seen.is_empty());
    append_synced(&wal, 1, 50);
    wal.close().unwrap();
    drop(wal);
    let (wal, seen) = open_collect(dir.path(), WalConfig::default()).unwrap();
    let expected: Vec<(u64, Vec<u8>)> = (1..=50).map(|i| (i, payload(i))).collect();
    assert_eq!(seen, expected);
    // LSNs continue where they stopped.
    assert_eq!(append_synced(&wal, 51, 1), vec![Lsn(51)]);
}

#[test]
fn torn_tail_cut_at_every_byte_of_the_last_record_recovers_exactly_the_preceding_records() {
    let src = tempfile::tempdir().unwrap();
    let n = 12;
    {
        let (wal, _) = open_collect(src.path(), WalConfig::default()).unwrap();
        append_synced(&wal, 1, n);
        wal.close().unwrap();
    }
    let seg = segments(src.path()).pop().unwrap();
    let full = std::fs::read(&seg).unwrap();
    // The file ends with the last record, then the sync marker written on close.
    let marker_len = record::HEADER_BYTES;
    let last_len = record::HEADER_BYTES + payload(n).len();
    let last_end = full.len() - marker_len;
    let last_start = last_end - last_len;

    for cut in last_start..full.len() {
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(src.path(), scratch.path());
        let name = seg.file_name().unwrap();
        std::fs::write(scratch.path().join(name), &full[..cut]).unwrap();

        let (wal, seen) = open_collect(scratch.path(), WalConfig::default())
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let lsns: Vec<u64> = seen.iter().map(|(l, _)| *l).collect();
        let survivors = if cut < last_end { n - 1 } else { n };
        assert_eq!(lsns, (1..=survivors).collect::<Vec<_>>(), "cut at {cut}");
        let torn = if cut < last_end {
            cut - last_start
        } else {
            cut - last_end
        };
        assert_eq!(
            wal.status().truncated_bytes_at_open,
            torn as u64,
            "cut at {cut}"
        );
        // The next append takes the next LSN, and the log reads back clean.
        assert_eq!(
            append_synced(&wal, survivors + 1, 1),
            vec![Lsn(survivors + 1)]
        );
        wal.close().unwrap();
        drop(wal);
        let (_, seen) = open_collect(scratch.path(), WalConfig::default()).unwrap();
        assert_eq!(
            seen.len() as u64,
            survivors + 1,
            "cut at {cut}: reopen after repair"
        );
    }
}

#[test]
fn garbage_after_the_last_synced_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open_collect(dir.path(), WalConfig::default()).unwrap();
        append_synced(&wal, 1, 5);
        wal.close().unwrap();
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend(std::iter::repeat_n(0u8, 4096));
    bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    std::fs::write(&seg, bytes).unwrap();
    let (_, seen) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(seen.len(), 5);
}

#[test]
fn flipped_byte_before_the_tail_refuses_to_open_and_names_the_place() {
    let src = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open_collect(src.path(), WalConfig::default()).unwrap();
        append_synced(&wal, 1, 20);
        wal.close().unwrap();
    }
    let seg = segments(src.path()).pop().unwrap();
    let full = std::fs::read(&seg).unwrap();
    // Every byte of records 1..=10 (each later record was written after they were synced).
    let header = 16;
    let end_of_tenth: usize = header
        + (1..=10)
            .map(|i| record::HEADER_BYTES + payload(i).len())
            .sum::<usize>();
    for pos in header..end_of_tenth {
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(src.path(), scratch.path());
        let mut bytes = full.clone();
        bytes[pos] ^= 0x40;
        let path = scratch.path().join(seg.file_name().unwrap());
        std::fs::write(&path, &bytes).unwrap();
        match open_collect(scratch.path(), WalConfig::default()) {
            Err(OpenError::Corrupt {
                path: p, reason, ..
            }) => {
                assert_eq!(p, path);
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("flip at {pos}: unexpected error {other}"),
            Ok(_) => panic!("flip at {pos}: opened a corrupt log"),
        }
        // Refusing to open must not have modified the file.
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "flip at {pos} changed the file"
        );
    }
}

#[test]
fn damage_in_an_older_segment_or_a_missing_segment_is_corruption() {
    let config = WalConfig {
        segment_size_bytes: 1024,
        ..WalConfig::default()
    };
    let src = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open_collect(src.path(), config.clone()).unwrap();
        append_synced(&wal, 1, 200);
        wal.close().unwrap();
    }
    let segs = segments(src.path());
    assert!(
        segs.len() >= 4,
        "expected rotation, got {} segments",
        segs.len()
    );

    // A flipped byte in the last record of a non-final segment.
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(src.path(), scratch.path());
    let victim = scratch.path().join(segs[1].file_name().unwrap());
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    assert!(matches!(
        open_collect(scratch.path(), config.clone()),
        Err(OpenError::Corrupt { .. })
    ));

    // A segment deleted by hand.
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(src.path(), scratch.path());
    std::fs::remove_file(scratch.path().join(segs[2].file_name().unwrap())).unwrap();
    let err = open_collect(scratch.path(), config.clone()).err().unwrap();
    assert!(err.to_string().contains("missing"), "{err}");

    // A cut in a non-final segment.
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(src.path(), scratch.path());
    let victim = scratch.path().join(segs[0].file_name().unwrap());
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() - 5]).unwrap();
    assert!(matches!(
        open_collect(scratch.path(), config),
        Err(OpenError::Corrupt { .. })
    ));
}

#[test]
fn unsynced_batches_torn_by_a_power_cut_are_not_mistaken_for_corruption() {
    // Records written at `wal` level are not synced; a power cut may persist a later page of
    // them but not an earlier one. Recovery must cut, not refuse.
    let dir = tempfile::tempdir().unwrap();
    let synced = 5;
    {
        let (wal, _) = open_collect(
            dir.path(),
            WalConfig {
                flush_interval_ms: 60_000,
                ..WalConfig::default()
            },
        )
        .unwrap();
        append_synced(&wal, 1, synced);
        for i in synced + 1..=synced + 10 {
            wal.append(KIND, payload(i), AckLevel::Wal)
                .unwrap()
                .wait_blocking()
                .unwrap();
        }
        wal.close().unwrap();
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // A crash before the close could sync and mark the log: drop the sync marker.
    bytes.truncate(bytes.len() - record::HEADER_BYTES);
    let start_of_seventh: usize = 16
        + (1..=6)
            .map(|i| record::HEADER_BYTES + payload(i).len())
            .sum::<usize>();
    bytes[start_of_seventh + 10] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let (_, seen) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(seen.len(), 6);
}

#[test]
fn checkpoint_deletes_covered_segments_and_replay_starts_after_it() {
    let config = WalConfig {
        segment_size_bytes: 2048,
        ..WalConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_collect(dir.path(), config.clone()).unwrap();
    append_synced(&wal, 1, 300);
    let before = segments(dir.path()).len();
    assert!(before > 5);
    wal.checkpoint(Lsn(250)).unwrap().wait_blocking().unwrap();
    let after = segments(dir.path());
    assert!(after.len() < before);
    // Every remaining segment but the active one ends above the checkpoint.
    let firsts: Vec<u64> = after
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        firsts[1] - 1 > 250,
        "segment ending at {} was kept",
        firsts[1] - 1
    );
    assert!(firsts[0] <= 251);
    assert_eq!(wal.status().checkpoint_lsn, Lsn(250));
    // A checkpoint beyond the log is refused.
    assert!(
        wal.checkpoint(Lsn(10_000))
            .unwrap()
            .wait_blocking()
            .is_err()
    );
    wal.close().unwrap();
    drop(wal);

    let (wal, seen) = open_collect(dir.path(), config).unwrap();
    let lsns: Vec<u64> = seen.iter().map(|(l, _)| *l).collect();
    assert_eq!(lsns, (251..=300).collect::<Vec<_>>());
    assert_eq!(wal.status().checkpoint_lsn, Lsn(250));
    assert_eq!(append_synced(&wal, 301, 1), vec![Lsn(301)]);
}

#[test]
fn checkpoint_of_everything_keeps_lsns_increasing_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open_collect(
            dir.path(),
            WalConfig {
                segment_size_bytes: 256,
                ..WalConfig::default()
            },
        )
        .unwrap();
        append_synced(&wal, 1, 40);
        wal.checkpoint(Lsn(40)).unwrap().wait_blocking().unwrap();
        wal.close().unwrap();
    }
    let (wal, seen) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert!(seen.is_empty());
    assert_eq!(append_synced(&wal, 41, 1), vec![Lsn(41)]);
}

#[test]
fn concurrent_appenders_get_unique_contiguous_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_collect(dir.path(), WalConfig::default()).unwrap();
    let wal = std::sync::Arc::new(wal);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        let body = format!("{t}:{i}").into_bytes();
                        let lsn = wal
                            .append(KIND, body.clone(), AckLevel::Fsync)
                            .unwrap()
                            .wait_blocking()
                            .unwrap();
                        (lsn.get(), body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(u64, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    acked.sort();
    assert_eq!(
        acked.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        (1..=1600).collect::<Vec<_>>()
    );
    wal.close().unwrap();
    drop(wal);
    let (_, seen) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(seen, acked);
}

#[test]
fn damage_to_the_last_synced_batch_is_caught_by_the_close_marker() {
    let src = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open_collect(src.path(), WalConfig::default()).unwrap();
        append_synced(&wal, 1, 5);
        wal.close().unwrap();
    }
    let seg = segments(src.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // A flipped byte in the last record, which only the marker vouches for.
    let at = bytes.len() - record::HEADER_BYTES - 3;
    bytes[at] ^= 0x10;
    std::fs::write(&seg, bytes).unwrap();
    assert!(matches!(
        open_collect(src.path(), WalConfig::default()),
        Err(OpenError::Corrupt { .. })
    ));
}

#[test]
fn a_tail_cut_below_the_checkpoint_never_reuses_an_lsn() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open_collect(dir.path(), WalConfig::default()).unwrap();
        append_synced(&wal, 1, 10);
        wal.checkpoint(Lsn(10)).unwrap().wait_blocking().unwrap();
        wal.close().unwrap();
    }
    // Lose the marker and the last three records (damage the checkpointed tail).
    let seg = segments(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let keep = 16
        + (1..=7)
            .map(|i| record::HEADER_BYTES + payload(i).len())
            .sum::<usize>();
    std::fs::write(&seg, &bytes[..keep + 5]).unwrap();

    let (wal, seen) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert!(
        seen.is_empty(),
        "records at or below the checkpoint are not replayed"
    );
    assert_eq!(append_synced(&wal, 11, 1), vec![Lsn(11)]);
    wal.close().unwrap();
    drop(wal);
    let (_, seen) = open_collect(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(seen.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![11]);
}
