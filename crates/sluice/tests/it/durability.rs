//! Durability with a real process: SIGTERM drains and exits 0, acknowledged writes survive
//! `kill -9`, and a corrupt WAL keeps the server from starting.

use crate::support::{Options, TestServer, point, run_to_exit};

const LAST_LSN: &str = r#"wal_last_lsn{db="default"}"#;

#[tokio::test]
async fn sigterm_drains_and_exits_zero_and_buffered_writes_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = TestServer::start_in(&dir, Options::default()).await;
    for i in 0..20 {
        let (status, _) = s
            .post_json("/ts/put?ack=buffer", &point("m", i, i as f64))
            .await;
        assert_eq!(status, 200);
    }
    let status = s.stop();
    assert!(status.success(), "exit status {status}");
    assert!(
        !dir.join("server.json").exists(),
        "runtime file left behind"
    );

    let s = TestServer::start_in(&dir, Options::default()).await;
    assert_eq!(s.metric(LAST_LSN).await, Some(20.0));
}

#[tokio::test]
async fn writes_acknowledged_at_wal_or_fsync_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut expected = 0;
    for round in 0..3 {
        let s = TestServer::start_in(&dir, Options::default()).await;
        assert_eq!(
            s.metric(LAST_LSN).await,
            Some(expected as f64),
            "round {round}"
        );
        for i in 0..10 {
            let ack = if i % 2 == 0 { "wal" } else { "fsync" };
            let (status, body) = s
                .post_json(&format!("/ts/put?ack={ack}"), &point("m", i, 1.0))
                .await;
            assert_eq!(status, 200, "{body}");
            expected += 1;
            assert_eq!(body["lsn"], expected);
        }
        s.kill9();
    }
    let s = TestServer::start_in(&dir, Options::default()).await;
    assert_eq!(s.metric(LAST_LSN).await, Some(expected as f64));
}

#[tokio::test]
async fn a_corrupt_wal_refuses_to_start_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = TestServer::start_in(&dir, Options::default()).await;
    for i in 0..10 {
        assert_eq!(s.post_json("/ts/put", &point("m", i, 1.0)).await.0, 200);
    }
    assert!(s.stop().success());

    let wal_dir = dir.join("databases/default/wal");
    let seg = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[16 + 30] ^= 0x01; // inside the first record
    std::fs::write(&seg, &bytes).unwrap();

    let data_dir = dir.to_str().unwrap();
    let (status, _, stderr) = run_to_exit(
        &[
            "serve",
            "--data-dir",
            data_dir,
            "--http-addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert!(
        stderr.contains(seg.file_name().unwrap().to_str().unwrap()),
        "{stderr}"
    );
    // Nothing was repaired behind the operator's back.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let s = TestServer::start().await;
    let data_dir = s.data_dir.to_str().unwrap().to_string();
    let (status, _, stderr) = run_to_exit(
        &[
            "serve",
            "--data-dir",
            &data_dir,
            "--http-addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("in use"), "{stderr}");
}

/// Sets the file-size soft limit of process `pid` (the hard limit stays unlimited).
fn set_file_size_limit(pid: u32, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit on our own child process, with a valid limit and no old-value pointer.
    let r = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// The size of the largest WAL segment under `dir`.
fn largest_segment(dir: &std::path::Path) -> u64 {
    let mut max = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            max = max.max(largest_segment(&entry.path()));
        } else if entry.path().extension().is_some_and(|e| e == "wal") {
            max = max.max(meta.len());
        }
    }
    max
}

/// A real full disk: the server's file-size limit is lowered (writes fail in the kernel with
/// EFBIG, as a full disk fails with ENOSPC). Writes are refused with 507 and Retry-After, reads
/// are served, nothing acknowledged is lost, and writes resume by themselves once the limit is
/// raised (space returns), also after a restart.
#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_serves_reads_and_recovers_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = TestServer::start_in(&dir, Options::default()).await;
    for i in 0..10 {
        let (status, body) = s
            .post_json("/ts/put?ack=fsync", &point("m", i, i as f64))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // Every file stops growing 16 KiB past the WAL's active segment (the chunk store's journal,
    // preallocated, fails its writes beyond that offset too).
    let segment = largest_segment(&dir);
    assert!(segment > 0);
    set_file_size_limit(s.pid(), segment + 16 * 1024);
    let mut acked = 10;
    let mut refused = None;
    for i in 10..5_000 {
        let r = s
            .client
            .post(s.url("/ts/put?ack=fsync"))
            .json(&point("m", i, i as f64))
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => acked = i + 1,
            Ok(r) if r.status() == 507 => {
                let retry = r.headers().get("retry-after").cloned();
                let body: serde_json::Value = r.json().await.unwrap();
                refused = Some((retry, body));
                break;
            }
            // The write that met the full disk waits for space; the client gives up on it.
            Err(e) if e.is_timeout() => {}
            Ok(r) => panic!("unexpected {}: {}", r.status(), r.text().await.unwrap()),
            Err(e) => panic!("{e}"),
        }
    }
    let (retry, body) = refused.expect("the server never said its disk is full");
    assert_eq!(body["code"], "insufficient_storage", "{body}");
    assert!(retry.is_some(), "507 without Retry-After");
    // Reads are served while the disk is full, with every acknowledged point.
    let (status, q) = s
        .post_json(
            "/ts/query",
            &serde_json::json!({"metric": "m", "from_ms": 0, "to_ms": 1_000_000}),
        )
        .await;
    assert_eq!(status, 200, "{q}");
    let points = q["series"][0]["points"].as_array().unwrap().len();
    assert!(points >= acked as usize, "{points} < {acked}");
    let (status, _) = s.get_json("/readyz").await;
    assert_eq!(status, 200);
    // A manual flush cannot make the buffered points durable now: it says so.
    let r = s
        .client
        .post(s.url("/ts/buffer/flush"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507, "{}", r.text().await.unwrap());
    // Space returns: writes succeed again without a restart.
    set_file_size_limit(s.pid(), libc::RLIM_INFINITY);
    let mut resumed = false;
    for _ in 0..100 {
        let (status, _) = s
            .post_json("/ts/put?ack=fsync", &point("m", 900_000, 1.0))
            .await;
        if status == 200 {
            resumed = true;
            break;
        }
        assert_eq!(status, 507);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(resumed, "writes did not resume once space returned");
    let status = s.stop();
    assert!(status.success(), "exit status {status}");
    // After a restart every acknowledged point is there.
    let s = TestServer::start_in(&dir, Options::default()).await;
    let (_, q) = s
        .post_json(
            "/ts/query",
            &serde_json::json!({"metric": "m", "from_ms": 0, "to_ms": 1_000_000}),
        )
        .await;
    let recovered: Vec<i64> = q["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_i64().unwrap())
        .collect();
    for i in 0..acked {
        assert!(recovered.contains(&i), "acknowledged point {i} lost");
    }
    assert!(recovered.contains(&900_000));
}
