//! Overload: a release server driven at twice its measured capacity, with large bodies, many
//! connections, 10,000 idle connections and slow senders, for minutes; then `kill -9` and a
//! count of what was acknowledged and is not there.
//!
//! Phases:
//! 1. **Capacity**: `--clients` clients post time-series batches (`--batch` points,
//!    `ack=fsync`) back to back for `--measure` seconds: requests/s the server sustains.
//! 2. **Overload** for `--seconds` (default 120): `--workers` connections issue requests at
//!    twice that rate (open loop: a request is due every `1 / (2 × capacity)` s whatever the
//!    answers), one in ten a large line-protocol body (`--large-mib`); meanwhile `--idle`
//!    connections are opened and left silent, and `--slow` connections send a request head and
//!    then one body byte a second. Every answer is counted by status; the latency of admitted
//!    (2xx) requests is recorded.
//! 3. The server's resident memory (`VmRSS`) is sampled every 250 ms: peak and final, against
//!    the bound the configured limits give (printed with its terms; docs/reliability.md).
//! 4. `kill -9`, restart, and count the acknowledged points that are missing (each point is
//!    unique: entity per worker, timestamp per request).
//!
//! The server runs with the limits the bound is computed from (set here, printed). Exits
//! non-zero if the server dies, answers 5xx other than 503/507, exceeds the bound, or loses an
//! acknowledged point.
//!
//! `cargo build --release -p sluice -p sluice-bench && target/release/overload`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tokio::io::AsyncWriteExt;

#[derive(Parser)]
struct Args {
    /// The sluice binary.
    #[arg(long, default_value = "target/release/sluice")]
    binary: PathBuf,
    /// Seconds of overload.
    #[arg(long, default_value_t = 120.0)]
    seconds: f64,
    /// Seconds of the capacity measurement.
    #[arg(long, default_value_t = 10.0)]
    measure: f64,
    /// Clients of the capacity measurement.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Points per time-series batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Connections issuing the overload (enough to keep twice the capacity in flight).
    #[arg(long, default_value_t = 512)]
    workers: usize,
    /// MiB of a large line-protocol body (one request in ten).
    #[arg(long, default_value_t = 2)]
    large_mib: usize,
    /// Idle connections opened during the overload.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Slow connections (a request head, then a body byte a second).
    #[arg(long, default_value_t = 200)]
    slow: usize,
}

/// The limits the server runs with, and the bound on its memory they give.
struct Limits {
    in_flight_per_actor: u64,
    in_flight_bytes_per_actor: u64,
    wal_queue_bytes: u64,
    ts_overflow_bytes: u64,
    ts_flush_bytes: u64,
    max_connections: u64,
}

const MIB: u64 = 1 << 20;
/// What one open connection may cost the server: its task, hyper's read and write buffers.
const PER_CONNECTION: u64 = 16 * 1024;
/// The chunk store's caches and memtables (fjall's defaults).
const STORE: u64 = 64 * MIB;
/// A body held in flight is held as bytes and once parsed (points or lines expand to at most
/// about three times their text).
const PARSE_FACTOR: u64 = 4;

impl Limits {
    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "SLUICE_ADMISSION_MAX_IN_FLIGHT_PER_ACTOR".into(),
                self.in_flight_per_actor.to_string(),
            ),
            (
                "SLUICE_ADMISSION_MAX_IN_FLIGHT_BYTES_PER_ACTOR".into(),
                self.in_flight_bytes_per_actor.to_string(),
            ),
            (
                "SLUICE_WAL_QUEUE_CAPACITY_BYTES".into(),
                self.wal_queue_bytes.to_string(),
            ),
            (
                "SLUICE_FEATURES_TS_AUTO_BUFFER_OVERFLOW_BUFFER_BYTES".into(),
                self.ts_overflow_bytes.to_string(),
            ),
            (
                "SLUICE_FEATURES_TS_AUTO_BUFFER_MAX_BUFFER_BYTES".into(),
                self.ts_flush_bytes.to_string(),
            ),
            (
                "SLUICE_HTTP_MAX_CONNECTIONS".into(),
                self.max_connections.to_string(),
            ),
        ]
    }

    /// The terms of the bound on resident memory above the idle server's (docs/reliability.md).
    fn terms(&self) -> Vec<(&'static str, u64)> {
        vec![
            (
                "in-flight bodies, held and parsed (4 × admission bytes per actor, one actor)",
                PARSE_FACTOR * self.in_flight_bytes_per_actor,
            ),
            ("WAL queue (wal.queue_capacity_bytes)", self.wal_queue_bytes),
            (
                "time-series buffers (overflow_buffer_bytes)",
                self.ts_overflow_bytes,
            ),
            (
                "connections (max_connections × 16 KiB)",
                self.max_connections * PER_CONNECTION,
            ),
            ("chunk store caches and memtables", STORE),
        ]
    }
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        l.rlim_cur
    }
}

fn batch_body(metric: &str, entity: &str, first_ts: i64, n: usize) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(n * 110 + 16);
    s.push_str(r#"{"points":["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            r#"{{"metric":"{metric}","entity":"{entity}","timestamp_ms":{},"value":{},"tags":{{"dc":"eu","rack":"r{}"}}}}"#,
            first_ts + i as i64,
            i as f64 * 0.5,
            i % 8
        );
    }
    s.push_str("]}");
    s
}

/// The request bodies of the overload, built before it starts (building them as they are sent
/// would make the load generator, not the server, the bottleneck). Every point of the pool is
/// distinct, so what is acknowledged is counted per body: a body sent twice writes the same
/// points again.
struct Pool {
    batches: Vec<axum::body::Bytes>,
    large: Vec<(axum::body::Bytes, usize)>,
}

impl Pool {
    fn build(batches: usize, large: usize, batch: usize, large_bytes: usize) -> Pool {
        Pool {
            batches: (0..batches)
                .map(|i| batch_body("load", &format!("b{i}"), 0, batch).into())
                .collect(),
            large: (0..large)
                .map(|i| {
                    let (body, n) = large_body(i, 0, large_bytes);
                    (body.into(), n)
                })
                .collect(),
        }
    }
}

fn large_body(worker: usize, first_ts: i64, bytes: usize) -> (String, usize) {
    let mut s = String::with_capacity(bytes + 128);
    let mut n = 0;
    while s.len() < bytes {
        use std::fmt::Write;
        let _ = writeln!(
            s,
            "lp,entity=w{worker},dc=eu value={}.25 {}",
            n % 1000,
            first_ts + n as i64
        );
        n += 1;
    }
    (s, n)
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
    retry_after_missing: u64,
    /// Bodies of the pool acknowledged at least once: batches, large.
    acked_batches: std::collections::HashSet<usize>,
    acked_large: std::collections::HashSet<usize>,
}

async fn count_points(base: &str, metric: &str) -> anyhow::Result<u64> {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/ts/query"))
        .json(
            &serde_json::json!({"metric": metric, "from_ms": 0, "to_ms": i64::MAX / 2,
            "aggregation": "count"}),
        )
        .send()
        .await?
        .json()
        .await?;
    let series = r["series"]
        .as_array()
        .with_context(|| format!("query answer: {r}"))?;
    Ok(series
        .iter()
        .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
        .map(|p| p[1].as_f64().unwrap_or(0.0) as u64)
        .sum())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fds = raise_fd_limit();
    let (server_cpu, _) = sluice_bench::place_on_cpus();
    let limits = Limits {
        in_flight_per_actor: 128,
        in_flight_bytes_per_actor: 64 * MIB,
        wal_queue_bytes: 64 * MIB,
        ts_overflow_bytes: 128 * MIB,
        ts_flush_bytes: 32 * MIB,
        // Room for the idle connections and the workers: 10,000 idle ones alone would hold
        // every slot of the default.
        max_connections: (args.idle + args.workers + args.slow + 1_000) as u64,
    };
    let env = limits.env();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let scratch = tempfile::tempdir()?;
    let mut server =
        sluice_bench::start_sluice(&args.binary, scratch.path(), &env_refs, server_cpu).await?;
    let base = server.base.clone();
    let pid = server.child.id();
    println!(
        "overload: server pid {pid}, open-file limit {fds}; limits: {}",
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    // 1. Capacity.
    let bodies: Vec<(String, usize)> = (0..64)
        .map(|i| {
            (
                batch_body("capacity", "c", (i * args.batch) as i64, args.batch),
                args.batch,
            )
        })
        .collect();
    let url = format!("{base}/ts/put/batch?ack=fsync");
    let points_per_s =
        sluice_bench::concurrent(&url, Arc::new(bodies), args.clients, args.measure).await?;
    let capacity = points_per_s / args.batch as f64;
    let rate = 2.0 * capacity;
    let base_rss = rss_bytes(pid);
    println!(
        "capacity: {capacity:.0} requests/s ({points_per_s:.0} points/s) with {} clients; overload at {rate:.0} requests/s for {} s",
        args.clients, args.seconds
    );

    // 2. Overload.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(base_rss));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse()?;
    let idle = {
        let stop = stop.clone();
        let n = args.idle;
        tokio::spawn(async move {
            let mut held = Vec::with_capacity(n);
            let mut refused = 0u64;
            for _ in 0..n {
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                {
                    Ok(Ok(s)) => held.push(s),
                    _ => refused += 1,
                }
            }
            let opened = held.len();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (opened, refused)
        })
    };
    let slow = {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.slow {
            let stop = stop.clone();
            tasks.spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    return "connect refused".to_string();
                };
                let head = "POST /ts/put?ack=fsync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return "closed during the head".to_string();
                }
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) && sent < 100_000 {
                    if s.write_all(b" ").await.is_err() {
                        return "closed by the server".to_string();
                    }
                    sent += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                "still open at the end".to_string()
            });
        }
        tasks
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    let pool = Pool::build(1000, 40, args.batch, args.large_mib << 20);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let next_slot = Arc::new(Mutex::new(started));
    let pool = Arc::new(pool);
    let request_no = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.workers {
        let (tally, next_slot, base) = (tally.clone(), next_slot.clone(), base.clone());
        let (pool, request_no) = (pool.clone(), request_no.clone());
        workers.spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            loop {
                let slot = {
                    let mut next = next_slot.lock().unwrap();
                    let slot = *next;
                    *next += interval;
                    slot
                };
                // Slots keep their schedule; a worker that fell behind sends at once, and nothing
                // is sent after the deadline.
                if slot >= deadline || Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep_until(slot.into()).await;
                let n = request_no.fetch_add(1, Ordering::Relaxed) as usize;
                // One request in ten is a large line-protocol body.
                let (url, body, large, index) = if n % 10 == 9 {
                    let i = (n / 10) % pool.large.len();
                    let url = format!("{base}/write?ack=fsync&precision=ms");
                    (url, pool.large[i].0.clone(), true, i)
                } else {
                    let i = n % pool.batches.len();
                    let url = format!("{base}/ts/put/batch?ack=fsync");
                    (url, pool.batches[i].clone(), false, i)
                };
                let sent = Instant::now();
                let answer = client.post(&url).body(body).send().await;
                let mut t = tally.lock().unwrap();
                match answer {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        *t.statuses.entry(status.to_string()).or_default() += 1;
                        if status < 300 {
                            t.latencies_us.push(sent.elapsed().as_micros() as u64);
                            if large {
                                t.acked_large.insert(index);
                            } else {
                                t.acked_batches.insert(index);
                            }
                        } else if matches!(status, 429 | 503 | 507)
                            && r.headers().get("retry-after").is_none()
                        {
                            t.retry_after_missing += 1;
                        }
                    }
                    Err(e) if e.is_timeout() => {
                        *t.statuses.entry("timeout".into()).or_default() += 1
                    }
                    Err(_) => *t.statuses.entry("connection error".into()).or_default() += 1,
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let (idle_opened, idle_refused) = idle.await?;
    let mut slow_outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut slow = slow;
    while let Some(r) = slow.join_next().await {
        *slow_outcomes.entry(r?).or_default() += 1;
    }
    let final_rss = rss_bytes(pid);
    let alive = server.child.try_wait()?.is_none();

    // 3. Report.
    let t = std::mem::take(&mut *tally.lock().unwrap());
    let total: u64 = t.statuses.values().sum();
    let mut lat = t.latencies_us.clone();
    lat.sort_unstable();
    let p = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    println!(
        "overload: {total} requests in {elapsed:.0} s ({:.0}/s sent; target {rate:.0}/s)",
        total as f64 / elapsed
    );
    for (status, n) in &t.statuses {
        println!("  {status}: {n}");
    }
    println!(
        "admitted latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} admitted)",
        p(0.5),
        p(0.99),
        p(1.0),
        lat.len()
    );
    println!("refusals without Retry-After: {}", t.retry_after_missing);
    println!("idle connections: {idle_opened} opened, {idle_refused} not accepted within 2 s");
    println!("slow connections: {slow_outcomes:?}");
    let bound_extra: u64 = limits.terms().iter().map(|(_, b)| b).sum();
    let bound = base_rss + bound_extra;
    let peak = peak.load(Ordering::Relaxed).max(final_rss);
    println!(
        "RSS: idle {:.0} MiB, peak {:.0} MiB, final {:.0} MiB; bound {:.0} MiB = idle +",
        base_rss as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        final_rss as f64 / MIB as f64,
        bound as f64 / MIB as f64
    );
    for (term, bytes) in limits.terms() {
        println!("    {:>5.0} MiB  {term}", bytes as f64 / MIB as f64);
    }
    println!(
        "RSS peak / bound: {:.2}x; server {}",
        peak as f64 / bound as f64,
        if alive { "alive" } else { "DEAD" }
    );

    // 4. kill -9, restart, count.
    server.child.kill()?;
    server.child.wait()?;
    // Recover from the same directory (the first server's drop would remove it: forget it).
    let data_dir = server.data_dir.clone();
    std::mem::forget(server);
    let restarted =
        sluice_bench::start_sluice_in(&args.binary, data_dir, &env_refs, server_cpu).await?;
    let restarted_base = restarted.base.clone();
    let acked = [
        ("load", t.acked_batches.len() as u64 * args.batch as u64),
        (
            "lp",
            t.acked_large.iter().map(|i| pool.large[*i].1 as u64).sum(),
        ),
    ];
    let mut lost = 0;
    for (metric, acked) in &acked {
        let found = count_points(&restarted_base, metric).await?;
        let missing = acked.saturating_sub(found);
        lost += missing;
        println!(
            "after kill -9: {metric}: {acked} points acknowledged, {found} found, {missing} missing"
        );
    }
    println!("acknowledged-write loss after kill -9: {lost}");
    drop(restarted);

    let bad_5xx: u64 = t
        .statuses
        .iter()
        .filter(|(s, _)| s.starts_with('5') && !matches!(s.as_str(), "503" | "507"))
        .map(|(_, n)| n)
        .sum();
    if !alive || bad_5xx > 0 || peak > bound || lost > 0 || t.retry_after_missing > 0 {
        bail!(
            "overload failed: alive {alive}, other 5xx {bad_5xx}, peak {peak} > bound {bound}: {}, lost {lost}, refusals without Retry-After {}",
            peak > bound,
            t.retry_after_missing
        );
    }
    Ok(())
}
