//! The one test harness that starts a real `sluice` process on a loopback port with a
//! temporary data directory, and stops it by SIGTERM or SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const START_DEADLINE: Duration = Duration::from_secs(30);
const STOP_DEADLINE: Duration = Duration::from_secs(30);

pub struct TestServer {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub base: String,
    pub client: reqwest::Client,
    stderr_path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    tls: bool,
}

/// How to start a server.
#[derive(Clone, Default)]
pub struct Options {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// The server speaks TLS: wait for its runtime file only (plain-HTTP `/readyz` cannot
    /// answer); `base` is then `https://…`.
    pub tls: bool,
}

impl Options {
    pub fn env(mut self, k: &str, v: &str) -> Options {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
}

impl TestServer {
    /// Starts a server on a fresh temporary data directory and waits until it is ready.
    pub async fn start() -> TestServer {
        TestServer::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = TestServer::start_in(&dir, options).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `data_dir` (kept by the caller) and waits until it is ready.
    pub async fn start_in(data_dir: &Path, options: Options) -> TestServer {
        let child_stderr = spawn(data_dir, &options);
        let (child, stderr_path) = child_stderr;
        let mut server = TestServer {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            base: String::new(),
            client: reqwest::Client::new(),
            stderr_path,
            _tmp: None,
            tls: options.tls,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited during start ({status}):\n{}", self.stderr());
            }
            if let Some(addr) = read_runtime_addr(&self.data_dir) {
                if self.tls {
                    self.base = format!("https://{addr}");
                    return;
                }
                self.base = format!("http://{addr}");
                if let Ok(r) = self.client.get(self.url("/readyz")).send().await
                    && r.status() == 200
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in time:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn addr(&self) -> String {
        self.base
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until the server's log holds `text` (fails the test after `within`).
    pub async fn wait_for_log(&self, text: &str, within: Duration) {
        wait_until(&format!("{text:?} in the log"), within, || async {
            if self.stderr().contains(text) {
                Ok(())
            } else {
                Err("not yet")
            }
        })
        .await
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// The `/metrics` exposition.
    pub async fn metrics_text(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// The value of a metric line (name plus labels exactly as printed), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|v| v.trim().parse().unwrap())
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let status = wait_with_deadline(child, STOP_DEADLINE);
        self.child = None;
        status
    }

    /// SIGKILL, then waits for the exit.
    pub fn kill9(mut self) {
        let child = self.child.as_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        self.child = None;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(data_dir: &Path, options: &Options) -> (Child, PathBuf) {
    std::fs::create_dir_all(data_dir).unwrap();
    let _ = std::fs::remove_file(data_dir.join("server.json"));
    let stderr_path = data_dir.with_extension("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").arg("--data-dir").arg(data_dir);
    if !options.args.iter().any(|a| a == "--http-addr") {
        cmd.args(["--http-addr", "127.0.0.1:0"]);
    }
    cmd.args(&options.args)
        .env_remove("RUST_LOG")
        // Tests run in parallel: never the fixed default port (flags in `args` still win).
        .env("SLUICE_WIRE_ADDR", "127.0.0.1:0")
        .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    (cmd.spawn().unwrap(), stderr_path)
}

/// The wire protocol address from `server.json`.
pub fn read_wire_addr(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join("server.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["wire_addr"].as_str().map(str::to_string)
}

fn read_runtime_addr(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join("server.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["http_addr"].as_str().map(str::to_string)
}

pub fn wait_with_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("process did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `sluice` with `args` to completion (for commands that must fail fast).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(BIN);
    if args.first() == Some(&"serve") {
        // Tests run in parallel: never the fixed default wire port (the test's env still wins).
        cmd.env("SLUICE_WIRE_ADDR", "127.0.0.1:0");
    }
    let mut child = cmd
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, out, err)
}

/// The wall clock in Unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn point(metric: &str, ts: i64, value: f64) -> serde_json::Value {
    serde_json::json!({"metric": metric, "entity": "e1", "timestamp_ms": ts, "value": value, "tags": {"dc": "eu"}})
}

/// Polls `probe` every 20 ms until it answers `Ok`, and returns that. After `within` the test
/// fails naming `what` it waited for and the last state the probe reported (its `Err`). The
/// one way tests wait for a condition: never a fixed sleep.
pub async fn wait_until<T, S, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    S: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, S>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(state) => assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; last state: {state:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
