//! The command line: configuration printing and start-up refusals.

use crate::support::run_to_exit;

#[test]
fn config_print_shows_defaults_overridden_by_env_and_flags() {
    let (status, out, err) = run_to_exit(&["config", "print"], &[]);
    assert!(status.success(), "{err}");
    let config: toml::Value = toml::from_str(&out).unwrap();
    assert_eq!(config["data_dir"].as_str(), Some("./sluice-data"));
    assert_eq!(config["http"]["addr"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(config["wire"]["addr"].as_str(), Some("127.0.0.1:18765"));

    let (status, out, err) = run_to_exit(
        &["config", "print", "--wire-addr", "127.0.0.1:19999"],
        &[
            ("SLUICE_WAL_QUEUE_CAPACITY", "77"),
            ("SLUICE_DATA_DIR", "/tmp/elsewhere"),
        ],
    );
    assert!(status.success(), "{err}");
    let config: toml::Value = toml::from_str(&out).unwrap();
    assert_eq!(config["wal"]["queue_capacity"].as_integer(), Some(77));
    assert_eq!(config["data_dir"].as_str(), Some("/tmp/elsewhere"));
    assert_eq!(config["wire"]["addr"].as_str(), Some("127.0.0.1:19999"));
}

#[test]
fn config_file_is_read_and_its_mistakes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("sluice.toml");
    std::fs::write(&file, "[http]\nmax_body_bytes = 4096\n").unwrap();
    let (status, out, err) = run_to_exit(
        &["config", "print", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(status.success(), "{err}");
    assert!(out.contains("max_body_bytes = 4096"), "{out}");

    std::fs::write(&file, "[http]\nmax_body_byte = 4096\n").unwrap();
    let (status, _, err) = run_to_exit(
        &["config", "print", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(!status.success());
    assert!(err.contains("max_body_byte"), "{err}");
}

#[test]
fn binding_a_public_address_without_auth_needs_unauthenticated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (status, _, err) = run_to_exit(
        &[
            "serve",
            "--data-dir",
            dir.to_str().unwrap(),
            "--http-addr",
            "0.0.0.0:0",
        ],
        &[],
    );
    assert!(!status.success());
    assert!(err.contains("--unauthenticated"), "{err}");
}

#[tokio::test]
async fn put_and_query_talk_to_a_running_server() {
    let s = crate::support::TestServer::start().await;
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        for (ts, v) in [("1000", "1.5"), ("2000", "2.5")] {
            let (status, out, err) = run_to_exit(
                &[
                    "put",
                    "--server",
                    &base,
                    "--metric",
                    "cli",
                    "--entity",
                    "e1",
                    "--value",
                    v,
                    "--timestamp-ms",
                    ts,
                    "--tag",
                    "dc=eu",
                    "--ack",
                    "wal",
                ],
                &[],
            );
            assert!(status.success(), "{err}");
            assert!(out.contains("\"success\": true"), "{out}");
        }
        let (status, out, err) = run_to_exit(
            &[
                "query",
                "--server",
                &base,
                "--metric",
                "cli",
                "--tag",
                "dc=eu",
                "--from-ms",
                "0",
                "--to-ms",
                "5000",
                "--aggregation",
                "sum",
                "-o",
                "json",
            ],
            &[],
        );
        assert!(status.success(), "{err}");
        let (status, _, err) = run_to_exit(
            &["put", "--server", &base, "--metric", "", "--value", "1"],
            &[],
        );
        assert!(!status.success());
        assert!(err.contains("invalid_field"), "{err}");
        out
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["series"][0]["points"], serde_json::json!([[0, 4.0]]));
}
