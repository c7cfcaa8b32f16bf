//! A writer process killed with SIGKILL at random moments loses no record it acknowledged at
//! `fsync`, and recovery always yields a contiguous log.
//!
//! The test re-runs its own binary as the child (`crash_child_writer`, ignored unless asked
//! for): the child appends from several threads and prints `ack <lsn> <thread> <seq>` after each
//! acknowledgement; the parent kills it mid-stream, reopens the log and checks every printed LSN.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use sluice_wal::{AckLevel, Wal, WalConfig};

const CHILD_DIR_ENV: &str = "SLUICE_WAL_CRASH_CHILD_DIR";
const ROUNDS: usize = 24;

fn config() -> WalConfig {
    // Small segments so that kills also land around segment rotation.
    WalConfig {
        segment_size_bytes: 32 * 1024,
        ..WalConfig::default()
    }
}

fn body(thread: u64, seq: u64) -> Vec<u8> {
    format!("t{thread}-s{seq}-{}", "p".repeat((seq % 50) as usize)).into_bytes()
}

#[test]
#[ignore = "child process of sigkill_at_random_moments_loses_no_fsync_acknowledged_record"]
fn crash_child_writer() {
    let dir = std::env::var(CHILD_DIR_ENV).expect("run by the crash test");
    let wal = Arc::new(Wal::open(dir.as_ref(), common::options(config()), |_| Ok(())).unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let wal = wal.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                for seq in 0.. {
                    let lsn = wal
                        .append(common::KIND, body(t, seq), AckLevel::Fsync)
                        .unwrap()
                        .wait_blocking()
                        .unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {} {t} {seq}", lsn.get()).unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_fsync_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut acked: HashMap<u64, Vec<u8>> = HashMap::new();

    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let ["ack", lsn, t, seq] = parts[..] {
                    let _ = tx.send((
                        lsn.parse::<u64>().unwrap(),
                        t.parse().unwrap(),
                        seq.parse().unwrap(),
                    ));
                }
            }
        });
        // Wait for the first acknowledgement, then kill at a random moment.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child acknowledged nothing");
        let mut round_acks = vec![first];
        let kill_at = Instant::now() + Duration::from_millis(rng.random_range(1..120));
        while Instant::now() < kill_at {
            if let Ok(a) = rx.recv_timeout(Duration::from_millis(1)) {
                round_acks.push(a);
            }
        }
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
        child.wait().unwrap();
        reader.join().unwrap();
        round_acks.extend(rx.try_iter());
        for (lsn, t, seq) in round_acks {
            acked.insert(lsn, body(t, seq));
        }

        let (wal, seen) = common::open_collect(dir.path(), config())
            .unwrap_or_else(|e| panic!("round {round}: recovery failed: {e}"));
        let lsns: Vec<u64> = seen.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            lsns,
            (1..=lsns.len() as u64).collect::<Vec<_>>(),
            "round {round}: gap"
        );
        let recovered: HashMap<u64, Vec<u8>> = seen.into_iter().collect();
        for (lsn, body) in &acked {
            assert_eq!(
                recovered.get(lsn),
                Some(body),
                "round {round}: acknowledged LSN {lsn} lost or changed"
            );
        }
        wal.close().unwrap();
    }
    assert!(
        acked.len() > ROUNDS,
        "too few acknowledgements to mean anything"
    );
}
