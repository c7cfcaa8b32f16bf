//! Shared pieces of the benchmarks: starting a release `sluice` server (and reference servers),
//! CPU pinning, timing loops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};
use sluice_client::{RetryPolicy, WireClient};
use sluice_wire::TsPoint;

/// A server process started by a benchmark; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// The wire listener's address, from the `server.json` the server wrote.
    pub fn wire_addr(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(self.data_dir.join("server.json"))?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        v["wire_addr"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("server.json has no wire_addr"))
    }

    /// SIGINT, then waits (up to 60 s) for the process to exit, so it writes out what it holds.
    pub fn stop_gracefully(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Prefixes `cmd` with `taskset -c CPU` when `cpu` is given.
pub fn pinned(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Pins the calling process (all its future threads) to `cpu`.
pub fn pin_self(cpu: usize) {
    // SAFETY: plain libc calls on a zeroed cpu_set_t owned by this frame.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Where a benchmark runs: with two or more cores, the servers on CPU 0 and this process (the
/// load) pinned to CPU 1; with one core, nothing pinned. Returns `(server CPU, load CPU)`.
pub fn place_on_cpus() -> (Option<usize>, Option<usize>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores >= 2 {
        pin_self(1);
        (Some(0), Some(1))
    } else {
        (None, None)
    }
}

/// Starts `sluice serve` on a fresh directory under `scratch` and waits until it is ready.
pub async fn start_sluice(
    binary: &Path,
    scratch: &Path,
    env: &[(&str, &str)],
    cpu: Option<usize>,
) -> anyhow::Result<Server> {
    let data_dir = tempfile::tempdir_in(scratch)?.keep();
    start_sluice_in(binary, data_dir, env, cpu).await
}

/// Starts `sluice serve` on `data_dir` (a fresh one, or one a killed server left to recover)
/// and waits until it is ready (recovery included, up to 120 s).
pub async fn start_sluice_in(
    binary: &Path,
    data_dir: PathBuf,
    env: &[(&str, &str)],
    cpu: Option<usize>,
) -> anyhow::Result<Server> {
    let _ = std::fs::remove_file(data_dir.join("server.json"));
    let mut cmd = pinned(binary, cpu);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--http-addr", "127.0.0.1:0"])
        .env("SLUICE_LOG_LEVEL", "warn")
        .env("SLUICE_WIRE_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut server = Server {
        child,
        base: String::new(),
        data_dir,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let client = reqwest::Client::new();
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("sluice exited during start: {status}");
        }
        if let Ok(text) = std::fs::read_to_string(server.data_dir.join("server.json"))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(addr) = v["http_addr"].as_str()
        {
            server.base = format!("http://{addr}");
            if let Ok(r) = client.get(format!("{}/readyz", server.base)).send().await
                && r.status() == 200
            {
                return Ok(server);
            }
        }
        if Instant::now() > deadline {
            bail!("sluice not ready within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port (for servers that cannot report theirs).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Bytes of all files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `clients` concurrent clients POSTing `bodies` (each with the count of points it carries) in
/// turn for `seconds`; returns points/s. Any non-2xx answer fails the run.
pub async fn concurrent<B: Clone + Into<reqwest::Body> + Send + Sync + 'static>(
    url: &str,
    bodies: std::sync::Arc<Vec<(B, usize)>>,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let bodies = bodies.clone();
        let url = url.to_string();
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            let mut points = 0usize;
            let mut i = c;
            while Instant::now() < deadline {
                let (body, n) = &bodies[i % bodies.len()];
                i += clients;
                let r = client.post(&url).body(body.clone()).send().await?;
                if !r.status().is_success() {
                    let status = r.status();
                    bail!(
                        "{url} answered {status}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                r.bytes().await?;
                points += n;
            }
            Ok::<usize, anyhow::Error>(points)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Starts VictoriaMetrics (Debian's `victoria-metrics`) on a fresh directory under `scratch`,
/// with `extra` flags, and waits until it is healthy.
pub async fn start_vm(
    binary: &Path,
    scratch: &Path,
    cpu: Option<usize>,
    extra: &[&str],
) -> anyhow::Result<Server> {
    let data_dir = tempfile::tempdir_in(scratch)?.keep();
    let port = free_port()?;
    let mut cmd = pinned(binary, cpu);
    cmd.arg(format!("-storageDataPath={}", data_dir.display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-loggerLevel=ERROR")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        data_dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{}/health", server.base)).send().await
            && r.status() == 200
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("victoria-metrics not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One client, one request at a time, for `seconds`; returns requests/s. A minimal HTTP/1.1
/// client on one keep-alive connection (pre-formatted request, `Content-Length` answer), so
/// the figure is the server's and the loopback's, not a client library's (reqwest added
/// ~100 µs a request on this VM, more than a buffered put costs the server).
pub fn sequential(base: &str, path: &str, body: &str, seconds: f64) -> anyhow::Result<f64> {
    use std::io::{BufRead, BufReader, Read, Write};
    let addr = base.trim_start_matches("http://");
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    let mut request = Vec::with_capacity(512);
    let mut line = String::new();
    let mut answer = Vec::new();
    while Instant::now() < deadline {
        let body = body.replace("\"timestamp_ms\":0", &format!("\"timestamp_ms\":{}", n + 1));
        request.clear();
        write!(
            request,
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        writer.write_all(&request)?;
        line.clear();
        reader.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 2") {
            bail!("{path} answered {line:?}");
        }
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        answer.resize(length, 0);
        reader.read_exact(&mut answer)?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The ingest benchmarks' data: 1000 random walks with two decimals (`cpu_usage`, entities
/// `host0`…`host999`, no tags), 10 s apart, interleaved by time; the same on every run (seed 7).
pub fn random_walks(points_per_series: usize) -> Vec<TsPoint> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut out = Vec::with_capacity(1000 * points_per_series);
    let mut values: Vec<f64> = (0..1000).map(|_| rng.random_range(10.0..90.0)).collect();
    for i in 0..points_per_series {
        for (s, v) in values.iter_mut().enumerate() {
            *v = ((*v + rng.random_range(-1.0..1.0)) * 100.0).round() / 100.0;
            out.push(TsPoint {
                metric: "cpu_usage".into(),
                entity: format!("host{s}"),
                timestamp_ms: 1_700_000_000_000 + i as i64 * 10_000,
                value: *v,
                tags: Default::default(),
            });
        }
    }
    out
}

/// Backpressure (wire `0x04`, HTTP 503) is retried by the client after 2 ms.
pub fn retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 10_000,
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(2),
    }
}

/// Batches over the wire (the Rust client's `put_buffered`) from `clients` connections for
/// `seconds`; returns points/s.
pub async fn wire_ingest(
    addr: &str,
    batches: Arc<Vec<Vec<TsPoint>>>,
    fsync: bool,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks = (0..clients).map(|c| {
        let (batches, addr) = (batches.clone(), addr.to_string());
        async move {
            let mut conn = WireClient::connect(&addr, None).await?.with_retry(retry());
            let (mut points, mut i) = (0usize, c);
            while Instant::now() < deadline {
                let batch = &batches[i % batches.len()];
                if fsync {
                    conn.put(batch).await?;
                } else {
                    conn.put_buffered(batch).await?;
                }
                points += batch.len();
                i += clients;
            }
            Ok(points)
        }
    });
    points_per_sec(started, tasks).await
}

/// Runs one task per client (each returns the points it got accepted) and returns the total
/// rate since `started`.
pub async fn points_per_sec<F>(
    started: Instant,
    tasks: impl Iterator<Item = F>,
) -> anyhow::Result<f64>
where
    F: Future<Output = anyhow::Result<usize>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for t in tasks {
        set.spawn(t);
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// `n` vectors around 100 random centres (uniform noise), fixed seed.
pub fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..100)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..centres.len())];
            c.iter()
                .map(|x| x + rng.random_range(-0.35..0.35f32))
                .collect()
        })
        .collect()
}
