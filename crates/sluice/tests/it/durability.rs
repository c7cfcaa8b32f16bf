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
