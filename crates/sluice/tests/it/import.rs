//! `sluice import`, `export` and the management commands against a real server: a million
//! lines with a bad one, resuming, CSV mapping, NDJSON round trips over HTTP, gzip, refusals
//! found line by line, the progress bar in a pseudo-terminal (and Ctrl-C with its resume
//! position), completions.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{BIN, TestServer, read_wire_addr};

/// Runs `sluice` with `args` (stdin `input`), returning (exit code, stdout, stderr).
fn sluice<S: AsRef<std::ffi::OsStr>>(args: &[S], input: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("SLUICE_URL")
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_TOKEN")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Points stored for `metric` (all series) in database `db`.
async fn count(s: &TestServer, db: &str, metric: &str) -> u64 {
    let path = if db == "default" {
        "/ts/query".to_string()
    } else {
        format!("/v1/databases/{db}/ts/query")
    };
    let (status, v) = s
        .post_json(
            &path,
            &serde_json::json!({"metric": metric, "from_ms": 0, "to_ms": 4_000_000_000_000i64,
                "aggregation": "count", "step_ms": 4_000_000_000_000i64}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    v["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["points"].as_array().unwrap().iter())
        .map(|p| p[1].as_f64().unwrap() as u64)
        .sum()
}

/// `n` lines of `cpu,host=h{i%50} usage=…,idle=… <ns>` (two points each), line `bad` (1-based)
/// broken.
fn lp_file(path: &Path, n: usize, bad: Option<usize>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 1..=n {
        if Some(i) == bad {
            writeln!(f, "cpu,host=h1 usage=oops 1700000000000000000").unwrap();
        } else {
            writeln!(
                f,
                "cpu,host=h{},dc=eu usage={}.5,idle=0.{} {}",
                i % 50,
                i % 100,
                i % 10,
                1_700_000_000_000_000_000i64 + i as i64 * 1_000_000
            )
            .unwrap();
        }
    }
}

fn args(s: &TestServer, wire: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec!["import", "--url", &s.base, "--wire", wire];
    v.extend_from_slice(rest);
    v.into_iter().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_million_lines_with_one_bad_line_import_everything_else_and_name_it() {
    let s = TestServer::start().await;
    let wire = read_wire_addr(&s.data_dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.lp");
    lp_file(&file, 1_000_000, Some(654_321));
    let rejects = tmp.path().join("rejects.txt");
    let (f, r) = (file.to_str().unwrap(), rejects.to_str().unwrap());
    let a = args(&s, &wire, &[f, "--rejects", r]);
    let (code, _, err) = tokio::task::spawn_blocking(move || sluice(&a, None))
        .await
        .unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("imported 1999998 points from 999999 lines"),
        "{err}"
    );
    assert!(err.contains("big.lp:654321: column"), "{err}");
    assert!(err.contains("usage=oops"), "{err}");
    let listed = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert_eq!(count(&s, "default", "cpu_usage").await, 999_999);
    assert_eq!(count(&s, "default", "cpu_idle").await, 999_999);
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_skips_what_was_imported_and_gzip_and_stdin_are_read() {
    let s = TestServer::start().await;
    let wire = read_wire_addr(&s.data_dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("a.lp");
    lp_file(&plain, 10_000, None);
    // The first 4000 lines, as an interrupted run would have left them.
    let head: String = std::fs::read_to_string(&plain)
        .unwrap()
        .lines()
        .take(4000)
        .map(|l| format!("{l}\n"))
        .collect();
    let a = args(&s, &wire, &["-", "--format", "lp"]);
    let (code, _, err) = tokio::task::spawn_blocking(move || sluice(&a, Some(head.as_bytes())))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(count(&s, "default", "cpu_usage").await, 4000);

    // Gzip, found by its magic bytes whatever the name.
    let gz = tmp.path().join("a.data");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    enc.finish().unwrap();
    let g = gz.to_str().unwrap().to_string();
    let resume = format!("{g}:4000");
    let a = args(&s, &wire, &[&g, "--resume", &resume]);
    let (code, _, err) = tokio::task::spawn_blocking(move || sluice(&a, None))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("from 6000 lines"), "{err}");
    assert_eq!(count(&s, "default", "cpu_usage").await, 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_columns_map_to_points_and_bad_rows_are_named() {
    let s = TestServer::start().await;
    let wire = read_wire_addr(&s.data_dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("weather.csv");
    std::fs::write(
        &file,
        "when,station,region,temp,humidity\n\
         2024-01-01T00:00:00Z,s1,north,1.5,80\n\
         2024-01-01T00:01:00Z,s1,north,2.5,81\n\
         2024-01-01T00:00:00Z,s2,south,not-a-number,70\n\
         2024-01-01T00:01:00Z,s2,south,7.0,\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let a = args(
        &s,
        &wire,
        &[
            f,
            "--metric",
            "weather",
            "--entity-column",
            "station",
            "--time-column",
            "when",
            "--time-format",
            "rfc3339",
            "--value-column",
            "temp",
            "--value-column",
            "humidity",
            "--tag-column",
            "region",
        ],
    );
    let (code, _, err) = tokio::task::spawn_blocking(move || sluice(&a, None))
        .await
        .unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("weather.csv:4: \"not-a-number\" is not a finite number"),
        "{err}"
    );
    assert_eq!(count(&s, "default", "weather_temp").await, 3);
    assert_eq!(count(&s, "default", "weather_humidity").await, 2);
    let (_, v) = s
        .post_json(
            "/ts/query",
            &serde_json::json!({"metric": "weather_temp", "entity": "s1", "from_ms": 0, "to_ms": 4_000_000_000_000i64}),
        )
        .await;
    assert_eq!(
        v["series"][0]["tags"],
        serde_json::json!({"region": "north"})
    );
    assert_eq!(
        v["series"][0]["points"],
        serde_json::json!([[1704067200000i64, 1.5], [1704067260000i64, 2.5]])
    );
}

/// `(timestamp_ms, value bits)` of every row of a Parquet export.
fn parquet_points(path: &str) -> Vec<(i64, u64)> {
    use arrow_array::{Array, Float64Array, TimestampMillisecondArray};
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let ts = batch
            .column_by_name("timestamp")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap()
            .clone();
        let values = batch
            .column_by_name("value")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone();
        assert_eq!(ts.len(), values.len());
        out.extend((0..ts.len()).map(|i| (ts.value(i), values.value(i).to_bits())));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_import_over_http_into_another_database_round_trips() {
    let s = TestServer::start().await;
    let wire = read_wire_addr(&s.data_dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.lp");
    lp_file(&file, 3000, None);
    let f = file.to_str().unwrap().to_string();
    let base = s.base.clone();
    let out = tmp.path().join("out.ndjson");
    let csv_out = tmp.path().join("out.csv");
    let pq_out = tmp.path().join("out.parquet");
    let (o, c, p) = (
        out.to_str().unwrap().to_string(),
        csv_out.to_str().unwrap().to_string(),
        pq_out.to_str().unwrap().to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let (code, _, err) = sluice(&["import", "--url", &base, "--wire", &wire, &f], None);
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = sluice(&["db", "create", "--url", &base, "copy"], None);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("created database copy"), "{out}");
        let (code, _, err) = sluice(
            &["export", "--url", &base, "--metric", "cpu_usage", "-o", &o],
            None,
        );
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("exported 3000 points"), "{err}");
        let (code, _, err) = sluice(
            &[
                "export", "--url", &base, "--metric", "cpu_idle", "--format", "csv", "-o", &c,
            ],
            None,
        );
        assert_eq!(code, 0, "{err}");
        // Parquet: the same points as the NDJSON export, read back with the parquet crate.
        let (code, _, err) = sluice(
            &[
                "export",
                "--url",
                &base,
                "--metric",
                "cpu_usage",
                "--format",
                "parquet",
                "-o",
                &p,
            ],
            None,
        );
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("bytes of parquet"), "{err}");
        let mut from_parquet = parquet_points(&p);
        let mut from_ndjson: Vec<(i64, u64)> = std::fs::read_to_string(&o)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["timestamp_ms"].as_i64().unwrap(),
                    v["value"].as_f64().unwrap().to_bits(),
                )
            })
            .collect();
        from_parquet.sort_unstable();
        from_ndjson.sort_unstable();
        assert_eq!(from_parquet.len(), 3000);
        assert_eq!(from_parquet, from_ndjson);
        // The binary protocol writes to `default` only: refused with the way out named.
        let (code, _, err) = sluice(
            &[
                "import",
                "--url",
                &base,
                "--db",
                "copy",
                "--transport",
                "wire",
                &o,
            ],
            None,
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--transport http"), "{err}");
        for file in [&o, &c] {
            let (code, _, err) = sluice(&["import", "--url", &base, "--db", "copy", file], None);
            assert_eq!(code, 0, "{err}");
        }
        let (code, out, err) = sluice(&["db", "list", "--url", &base, "-o", "csv"], None);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("copy,"), "{out}");
    })
    .await
    .unwrap();
    assert_eq!(count(&s, "copy", "cpu_usage").await, 3000);
    assert_eq!(count(&s, "copy", "cpu_idle").await, 3000);
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_the_server_refuses_are_found_one_by_one_and_the_rest_is_written() {
    // Names of at most 20 characters here: the server refuses a longer metric, all or
    // nothing per batch; the importer finds the line and writes the others.
    let s = TestServer::start_with(
        crate::support::Options::default().env("SLUICE_LIMITS_MAX_NAME_CHARS", "20"),
    )
    .await;
    let wire = read_wire_addr(&s.data_dir).unwrap();
    let mut body = String::new();
    for i in 1..=100 {
        if i == 37 {
            body.push_str("a_measurement_name_far_too_long value=1 1000\n");
        } else {
            body.push_str(&format!("m value={i} {}\n", i * 1000));
        }
    }
    let base = s.base.clone();
    for transport in ["wire", "http"] {
        let (b, w, body) = (base.clone(), wire.clone(), body.clone());
        let (code, _, err) = tokio::task::spawn_blocking(move || {
            sluice(
                &[
                    "import",
                    "--url",
                    &b,
                    "--wire",
                    &w,
                    "--transport",
                    transport,
                    "--precision",
                    "ms",
                    "-",
                ],
                Some(body.as_bytes()),
            )
        })
        .await
        .unwrap();
        assert_eq!(code, 1, "{transport}: {err}");
        assert!(err.contains("-:37:"), "{transport}: {err}");
        assert!(
            err.contains("99 lines") || err.contains("from 100 lines"),
            "{err}"
        );
        assert!(err.contains("1 lines refused"), "{transport}: {err}");
    }
    assert_eq!(count(&s, "default", "m").await, 99);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_progress_bar_shows_on_a_terminal_and_ctrl_c_names_where_to_resume() {
    let s = TestServer::start().await;
    let wire = read_wire_addr(&s.data_dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.lp");
    lp_file(&file, 3_000_000, None);
    let f = file.to_str().unwrap().to_string();
    let base = s.base.clone();
    let resume_at = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        // One connection and small batches: slow enough to be interrupted midway.
        cmd.args([
            "import",
            "--url",
            &base,
            "--wire",
            &wire,
            "--connections",
            "1",
            "--batch",
            "500",
            &f,
        ]);
        let mut p = rexpect::session::spawn_command(cmd, Some(60_000)).unwrap();
        // The bar: bytes of the total, points, points/s, ETA.
        p.exp_regex(r"MiB/\d+\.\d+ MiB\s+[\d.]+[kM]? points, [\d.]+[kM]?/s\s+ETA")
            .unwrap();
        p.send_control('c').unwrap();
        let (_, m) = p.exp_regex(r"resume with: --resume [^\r\n]+:\d+").unwrap();
        p.exp_eof().unwrap();
        m.rsplit_once("--resume ").unwrap().1.trim().to_string()
    })
    .await
    .unwrap();
    let line: u64 = resume_at.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(line > 0 && line < 3_000_000, "{resume_at}");
    // Everything through the named line is stored; resuming completes the file exactly.
    assert!(count(&s, "default", "cpu_usage").await >= line);
    let wire = read_wire_addr(&s.data_dir).unwrap();
    let base = s.base.clone();
    let f = file.to_str().unwrap().to_string();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        sluice(
            &[
                "import", "--url", &base, "--wire", &wire, &f, "--resume", &resume_at,
            ],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(count(&s, "default", "cpu_usage").await, 3_000_000);
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = sluice(&["completions", shell], None);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("import") && out.contains("resume"),
            "{shell}: {out}"
        );
    }
    let (code, out, _) = sluice(
        &["token", "create", "--name", "ingest", "--role", "writer"],
        None,
    );
    assert_eq!(code, 0);
    let mut lines = out.lines();
    let token = lines.next().unwrap();
    assert!(token.len() >= 32, "{token}");
    let entry: serde_json::Value =
        serde_json::from_str(&format!("{{{}}}", lines.next().unwrap())).unwrap();
    assert!(
        entry["ingest"]["token"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(entry["ingest"]["roles"]["*"], "writer");
}

#[tokio::test(flavor = "multi_thread")]
async fn management_commands_report_server_errors_with_code_and_error_id() {
    let s = TestServer::start().await;
    let base = s.base.clone();
    tokio::task::spawn_blocking(move || {
        let (code, _, err) = sluice(&["collection", "delete", "--url", &base, "nope"], None);
        assert_eq!(code, 1);
        assert!(
            err.contains("code collection_not_found, error_id "),
            "{err}"
        );
        let (code, _, err) = sluice(
            &[
                "collection",
                "create",
                "--url",
                &base,
                "docs",
                "--dimension",
                "3",
            ],
            None,
        );
        assert_eq!(code, 0, "{err}");
        let (code, out, _) = sluice(&["collection", "list", "--url", &base], None);
        assert_eq!(code, 0);
        assert!(out.lines().nth(2).unwrap().starts_with("docs"), "{out}");
        let (code, out, err) = sluice(&["status", "--url", &base], None);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("role primary") && out.contains("default"),
            "{out}"
        );
        let (code, _, err) = sluice(&["db", "delete", "--url", &base, "nope"], None);
        assert_eq!(code, 1);
        assert!(err.contains("error_id"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn status_with_a_readers_token_shows_what_a_reader_may_see() {
    let tokens = r#"{"ops":"an-admin-token-of-enough-length","viewer":{"token":"a-reader-token-of-enough-length","roles":{"*":"reader"}}}"#;
    let s = TestServer::start_with(
        crate::support::Options::default().env("SLUICE_BEARER_TOKENS_JSON", tokens),
    )
    .await;
    let base = s.base.clone();
    tokio::task::spawn_blocking(move || {
        let (code, _, err) = sluice(&["status", "--url", &base], None);
        assert_eq!(code, 1);
        assert!(err.contains("code unauthenticated, error_id "), "{err}");
        let (code, out, err) = sluice(
            &[
                "status",
                "--url",
                &base,
                "--token",
                "a-reader-token-of-enough-length",
            ],
            None,
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("replication needs admin"), "{out}");
        assert!(out.contains("\ndefault "), "{out}");
        let (code, out, err) = sluice(
            &[
                "status",
                "--url",
                &base,
                "--token",
                "an-admin-token-of-enough-length",
            ],
            None,
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("role primary") && out.contains("replicas: none"),
            "{out}"
        );
    })
    .await
    .unwrap();
}

#[test]
fn mistakes_are_found_before_anything_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.lp");
    std::fs::write(&file, "m v=1 1\n").unwrap();
    let f = file.to_str().unwrap();
    // The binary protocol has no TLS: not chosen, or refused, for an https URL.
    let (code, _, err) = sluice(
        &[
            "import",
            "--url",
            "https://127.0.0.1:1",
            "--transport",
            "wire",
            f,
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("no TLS"), "{err}");
    let (code, _, err) = sluice(
        &[
            "import",
            "--url",
            "http://127.0.0.1:1",
            "--rejects",
            "/nonexistent/dir/r.txt",
            f,
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("--rejects /nonexistent/dir/r.txt"), "{err}");
    let (code, _, err) = sluice(
        &["import", "--url", "http://127.0.0.1:1", f, "missing.lp"],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("input missing.lp"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_server_is_reached_with_its_certificate_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut opts = crate::support::Options::default()
        .env("SLUICE_HTTP_TLS_CERT_FILE", cert_path.to_str().unwrap())
        .env("SLUICE_HTTP_TLS_KEY_FILE", key_path.to_str().unwrap());
    opts.tls = true;
    let s = TestServer::start_with(opts).await;
    let url = s.base.replace("127.0.0.1", "localhost");
    let ca = cert_path.to_str().unwrap().to_string();
    let lp = dir.path().join("a.lp");
    std::fs::write(&lp, "tls,host=h1 v=1 1700000000000000000\n").unwrap();
    let lp = lp.to_str().unwrap().to_string();
    tokio::task::spawn_blocking(move || {
        // Untrusted: refused, not retried for long.
        let (code, _, err) = sluice(&["db", "list", "--url", &url], None);
        assert_eq!(code, 1, "{err}");
        let (code, out, err) = sluice(&["db", "list", "--url", &url, "--ca-cert", &ca], None);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("default"), "{out}");
        // `auto` picks HTTP for an https URL (the binary protocol has no TLS).
        let (code, _, err) = sluice(&["import", "--url", &url, "--ca-cert", &ca, &lp], None);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("imported 1 points"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_cut_by_size_as_well_as_by_points() {
    // 90,000 points of ~500 bytes in JSON: one batch of --batch 100000 would be ~45 MB, over
    // the server's 32 MiB body limit; cut at 8 MiB it is six requests.
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("wide.lp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let pad = "x".repeat(200);
    for i in 0..90_000i64 {
        writeln!(
            f,
            "wide,host=h{},a={pad}{},b={pad} v={i} {}",
            i % 10,
            i % 7,
            i + 1
        )
        .unwrap();
    }
    drop(f);
    let (base, f) = (s.base.clone(), file.to_str().unwrap().to_string());
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        sluice(
            &[
                "import",
                "--url",
                &base,
                "--transport",
                "http",
                "--batch",
                "100000",
                "--precision",
                "ms",
                "--connections",
                "1",
                &f,
            ],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(count(&s, "default", "wide_v").await, 90_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn query_csv_is_read_back_by_import() {
    let s = TestServer::start().await;
    let (st, _) = s
        .post_json("/ts/put", &crate::support::point("room", 1000, 20.5))
        .await;
    assert_eq!(st, 200);
    let tmp = tempfile::tempdir().unwrap();
    let csv_path = tmp.path().join("room.csv");
    let (base, c) = (s.base.clone(), csv_path.to_str().unwrap().to_string());
    tokio::task::spawn_blocking(move || {
        let (code, out, err) = sluice(
            &["query", "--url", &base, "--metric", "room", "-o", "csv"],
            None,
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out.lines().nth(1),
            Some(r#"room,e1,"{""dc"":""eu""}",1000,20.5"#),
            "{out}"
        );
        std::fs::write(&c, out).unwrap();
        let (code, _, err) = sluice(&["db", "create", "--url", &base, "copy"], None);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = sluice(&["import", "--url", &base, "--db", "copy", &c], None);
        assert_eq!(code, 0, "{err}");
    })
    .await
    .unwrap();
    assert_eq!(count(&s, "copy", "room").await, 1);
}
