//! Real failures in a child process (`--ignored` tests run by their parents).
//!
//! - A real full disk: the child lowers its file-size soft limit (`RLIMIT_FSIZE`, `SIGXFSZ`
//!   ignored), so segment writes fail in the kernel with `EFBIG`, as a full disk fails with
//!   `ENOSPC`. The log refuses appends with `StorageFull`, keeps its pending write, and resumes
//!   by itself when the child raises the limit again (space returns); everything acknowledged
//!   is recovered, LSNs consecutive.
//! - A failing device with the default fatal handler: the process dies by `SIGABRT` rather than
//!   go on (the failure is injected, `sluice_wal::faults`: no real device fails on demand).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_wal::faults::{self, Action, Fault, Injector, Op};
use sluice_wal::{AckLevel, Wal, WalConfig, WalError};

const CHILD_DIR_ENV: &str = "SLUICE_WAL_FATAL_CHILD_DIR";
const FILE_SIZE_LIMIT: u64 = 48 * 1024;

/// Sets the file-size soft limit (the hard limit stays unlimited, so it can be raised again);
/// writes past it fail with EFBIG instead of killing the process.
fn set_file_size_limit(bytes: u64) {
    // SAFETY: process-wide settings of this child process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

fn run_child(test: &str, dir: &std::path::Path) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
#[ignore = "child process of a_real_file_size_limit_refuses_writes_until_space_returns"]
fn storage_full_child() {
    let dir = std::env::var(CHILD_DIR_ENV).expect("run by its parent test");
    set_file_size_limit(FILE_SIZE_LIMIT);
    let wal = Arc::new(
        Wal::open(dir.as_ref(), common::options(WalConfig::default()), |_| {
            Ok(())
        })
        .unwrap(),
    );
    // Append until the log says the storage is full (the writer met the limit and stalls).
    let mut tickets = Vec::new();
    let mut i = 1u64;
    let started = Instant::now();
    loop {
        match wal.append(common::KIND, common::payload(i), AckLevel::Fsync) {
            Ok(t) => tickets.push(t),
            Err(WalError::StorageFull) => break,
            Err(e) => panic!("unexpected {e}"),
        }
        i += 1;
        assert!(started.elapsed() < Duration::from_secs(60), "never full");
        std::thread::sleep(Duration::from_micros(200));
    }
    println!("refused: storage full");
    std::thread::sleep(Duration::from_millis(200));
    let status = wal.status();
    assert!(
        status.durable_lsn < status.last_assigned_lsn,
        "a write must be pending while full: {status:?}"
    );
    // Space returns.
    set_file_size_limit(libc::RLIM_INFINITY);
    for t in tickets {
        println!("ack {}", t.wait_blocking().unwrap().get());
    }
    for j in i..i + 20 {
        let lsn = wal
            .append(common::KIND, common::payload(j), AckLevel::Fsync)
            .unwrap()
            .wait_blocking()
            .unwrap();
        println!("ack {}", lsn.get());
    }
    wal.close().unwrap();
    println!("closed");
}

#[test]
fn a_real_file_size_limit_refuses_writes_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("storage_full_child", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stdout
        .lines()
        .filter(|l| !l.starts_with("ack "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(out.status.success(), "child failed:\n{tail}\n{stderr}");
    assert!(stdout.contains("refused: storage full"), "{tail}");
    assert!(stdout.contains("closed"), "{tail}");
    let acked: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ack "))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        acked.len() > 100,
        "too few records before the limit: {}",
        acked.len()
    );
    // Every acknowledged record is recovered, in order, with consecutive LSNs and no torn tail
    // (the refused writes were cut back).
    let (wal, seen) = common::open_collect(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(wal.status().truncated_bytes_at_open, 0);
    let recovered: Vec<u64> = seen.iter().map(|(l, _)| *l).collect();
    assert_eq!(recovered, (1..=recovered.len() as u64).collect::<Vec<_>>());
    for lsn in &acked {
        assert!(recovered.contains(lsn), "acknowledged LSN {lsn} lost");
    }
    for (lsn, body) in &seen {
        assert_eq!(*body, common::payload(*lsn));
    }
}

/// Fails every fdatasync of a segment with EIO.
struct FailingDevice;

impl Injector for FailingDevice {
    fn before(&self, op: Op<'_>) -> Option<Fault> {
        (op.action == Action::Sync && op.path.extension().is_some_and(|e| e == "wal"))
            .then_some(Fault::Fail(libc::EIO))
    }
}

#[test]
fn the_default_fatal_handler_aborts_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("default_handler_child", dir.path());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "status {:?}",
        out.status
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fatal: write-ahead log I/O failed"),
        "{stderr}"
    );
}

#[test]
#[ignore = "child process of the_default_fatal_handler_aborts_the_process"]
fn default_handler_child() {
    let dir = std::env::var(CHILD_DIR_ENV).expect("run by its parent test");
    let wal = Wal::open(dir.as_ref(), common::options(WalConfig::default()), |_| {
        Ok(())
    })
    .unwrap();
    wal.append(common::KIND, common::payload(1), AckLevel::Fsync)
        .unwrap()
        .wait_blocking()
        .unwrap();
    faults::install(Some(Arc::new(FailingDevice) as Arc<dyn Injector>));
    let _ = wal
        .append(common::KIND, common::payload(2), AckLevel::Fsync)
        .and_then(|t| t.wait_blocking());
    // The handler runs before any waiter hears the error; give it time to abort us. Returning
    // normally fails the parent's assertion.
    std::thread::sleep(Duration::from_secs(5));
}
