//! Prometheus-API benchmark against VictoriaMetrics, one run, each figure with its ratio:
//!
//! (a) remote-write ingest: the same snappy-compressed `WriteRequest`s into Sluice
//!     (`/api/v1/write`, default ack=fsync) and VictoriaMetrics (`/api/v1/write`, acks not
//!     durable), `--clients` concurrent clients — samples/s and Sluice/VM;
//! (b) the queries a Grafana dashboard sends, through the same Prometheus API
//!     (`/api/v1/query_range`, 24 h at 1-minute steps), one client, alternating Sluice and VM
//!     query by query for `--rounds` rounds — queries/s, p50 and p99 of each, and Sluice/VM.
//!
//! Dataset: `--instances` × 10 paths × 10 status codes request counters plus a 10-bucket
//! latency histogram per instance and path (10,000 series at the default 50 instances), one
//! sample a minute for `--hours` hours ending an hour ago: 14.4 M samples by default. Both
//! servers hold the whole dataset when queried; Sluice's buffer is flushed to chunks first and
//! VictoriaMetrics' in-memory parts are flushed, and VictoriaMetrics runs with its response
//! cache off (`-search.disableCache`) so both compute every answer.
//!
//! Run: `cargo build --release -p sluice -p sluice-bench && target/release/prom_bench`
//! (needs `apt-get install victoria-metrics`). With two or more cores the servers run on CPU 0
//! and this load generator on CPU 1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use prost::Message;
use rand::{Rng, SeedableRng};
use sluice_bench::{Server, place_on_cpus, start_sluice, start_vm};
use sluice_server::core::prom::{Label, PromSample, TimeSeries, WriteRequest};

#[derive(Parser)]
struct Args {
    /// Path of the sluice binary (release build).
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    /// Path of the VictoriaMetrics binary.
    #[arg(long, default_value = "victoria-metrics")]
    vm: PathBuf,
    /// Instances (each has 100 counter and 100 histogram-bucket series).
    #[arg(long, default_value_t = 50)]
    instances: usize,
    /// Hours of data, one sample a minute.
    #[arg(long, default_value_t = 24)]
    hours: usize,
    /// Concurrent remote-write clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Samples per remote-write request.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Rounds of the dashboard queries (each query once per server per round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Scratch directory (on the disk under test).
    #[arg(long, default_value = "target/bench-scratch")]
    dir: PathBuf,
    /// Profiling aid: measure only the Sluice server already listening at this base URL
    /// (no VictoriaMetrics, so no ratios), e.g. while `perf record` watches it.
    #[arg(long)]
    target: Option<String>,
    /// With `--target`: skip the ingest (the server already holds the dataset).
    #[arg(long)]
    skip_ingest: bool,
}

const PATHS: usize = 10;
const CODES: [&str; 10] = [
    "200", "201", "204", "301", "304", "400", "401", "404", "500", "503",
];
const BUCKETS: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];

/// The dashboard queries (each a `query_range` over the whole dataset at 1-minute steps).
const QUERIES: [&str; 4] = [
    "sum by (path) (rate(http_requests_total[5m]))",
    r#"avg_over_time(http_requests_total{path="/p0",code="200"}[5m])"#,
    "topk(5, sum by (instance) (rate(http_requests_total[5m])))",
    "histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
];

fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
    TimeSeries::new(pairs, &[]).labels
}

/// Every series' label set and its per-minute increments' scale.
fn series_set(instances: usize) -> Vec<(Vec<Label>, f64)> {
    let mut out = Vec::new();
    for i in 0..instances {
        let instance = format!("host-{i}:9100");
        for p in 0..PATHS {
            let path = format!("/p{p}");
            for (c, code) in CODES.iter().enumerate() {
                out.push((
                    labels(&[
                        ("__name__", "http_requests_total"),
                        ("code", code),
                        ("instance", &instance),
                        ("job", "api"),
                        ("path", &path),
                    ]),
                    100.0 / (c + 1) as f64,
                ));
            }
            for (b, le) in BUCKETS.iter().enumerate() {
                out.push((
                    labels(&[
                        ("__name__", "request_duration_seconds_bucket"),
                        ("instance", &instance),
                        ("job", "api"),
                        ("le", le),
                        ("path", &path),
                    ]),
                    10.0 * (b + 1) as f64,
                ));
            }
        }
    }
    out
}

/// Remote-write bodies in time order, each about `batch` samples, with their sample counts.
fn bodies(
    instances: usize,
    hours: usize,
    batch: usize,
    end_ms: i64,
) -> (Vec<(Vec<u8>, usize)>, usize) {
    let set = series_set(instances);
    let minutes = hours * 60;
    let start_ms = end_ms - minutes as i64 * 60_000;
    let per_request = (batch / set.len()).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut values = vec![0.0f64; set.len()];
    let mut out = Vec::new();
    let mut total = 0;
    let mut minute = 0;
    while minute < minutes {
        let span = per_request.min(minutes - minute);
        let mut req = WriteRequest::default();
        for (k, (l, scale)) in set.iter().enumerate() {
            let mut samples = Vec::with_capacity(span);
            for m in minute..minute + span {
                values[k] += (scale * rng.random_range(0.5..1.5f64)).round();
                samples.push(PromSample {
                    value: values[k],
                    timestamp: start_ms + m as i64 * 60_000,
                });
            }
            req.timeseries.push(TimeSeries {
                labels: l.clone(),
                samples,
                histograms: Vec::new(),
            });
        }
        let n = set.len() * span;
        total += n;
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy");
        out.push((body, n));
        minute += span;
    }
    (out, total)
}

const REMOTE_WRITE_HEADERS: [(&str, &str); 3] = [
    ("content-encoding", "snappy"),
    ("content-type", "application/x-protobuf"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

/// Sends every body once, `clients` at a time; samples/s.
async fn ingest(
    url: &str,
    bodies: &Arc<Vec<(Vec<u8>, usize)>>,
    clients: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (bodies, next, url) = (bodies.clone(), next.clone(), url.to_string());
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            let mut samples = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((body, n)) = bodies.get(i) else {
                    return Ok::<usize, anyhow::Error>(samples);
                };
                let mut req = client.post(&url).body(body.clone());
                for (k, v) in REMOTE_WRITE_HEADERS {
                    req = req.header(k, v);
                }
                let r = req.send().await?;
                if !r.status().is_success() {
                    bail!(
                        "{url} answered {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                }
                samples += n;
            }
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// One `query_range`; its latency and the number of series it returned.
async fn query_range(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    start_ms: i64,
    end_ms: i64,
) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let r = client
        .post(format!("{base}/api/v1/query_range"))
        .form(&[
            ("query", query),
            ("start", &format!("{}", start_ms / 1000)),
            ("end", &format!("{}", end_ms / 1000)),
            ("step", "60"),
        ])
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await?;
    if !status.is_success() {
        bail!("{base}: {query} answered {status}: {body}");
    }
    let series = body["data"]["result"].as_array().map_or(0, Vec::len);
    Ok((started.elapsed(), series))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `--target`: the ingest (unless skipped) and the queries against one running server.
async fn measure_one(
    base: &str,
    args: &Args,
    bodies: &Arc<Vec<(Vec<u8>, usize)>>,
    start_ms: i64,
    end_ms: i64,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    if !args.skip_ingest {
        let rate = ingest(&format!("{base}/api/v1/write"), bodies, args.clients).await?;
        println!("remote-write ingest: {rate:.0} samples/s");
        client
            .post(format!("{base}/ts/buffer/flush"))
            .send()
            .await?;
    }
    for q in QUERIES {
        let mut times = Vec::new();
        for _ in 0..args.rounds {
            times.push(query_range(&client, base, q, start_ms, end_ms).await?.0);
        }
        times.sort();
        println!(
            "{q}: p50 {:.1} ms, min {:.1} ms",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3
        );
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let (server_cpu, _) = place_on_cpus();
    let end_ms = (sluice_server::now_ms() / 60_000 - 60) * 60_000;
    let start_ms = end_ms - args.hours as i64 * 3_600_000;
    let (bodies, total) = bodies(args.instances, args.hours, args.batch, end_ms);
    let bodies = Arc::new(bodies);
    println!(
        "prometheus benchmark: {} series, {total} samples ({} requests), {} remote-write clients, servers on cpu {server_cpu:?}",
        series_set(args.instances).len(),
        bodies.len(),
        args.clients
    );

    if let Some(base) = &args.target {
        return measure_one(base, &args, &bodies, start_ms, end_ms).await;
    }
    let sluice = start_sluice(&args.sluice, &args.dir, &[], server_cpu).await?;
    let vm = start_vm(&args.vm, &args.dir, server_cpu, &["-search.disableCache"]).await?;
    let ours = ingest(
        &format!("{}/api/v1/write", sluice.base),
        &bodies,
        args.clients,
    )
    .await?;
    let theirs = ingest(&format!("{}/api/v1/write", vm.base), &bodies, args.clients).await?;
    println!("(a) remote-write ingest, {} clients", args.clients);
    println!(
        "    sluice (ack=fsync)        {ours:>12.0} samples/s  {:>5.2}x",
        ours / theirs
    );
    println!("    victoria-metrics          {theirs:>12.0} samples/s   1.00x");

    // Everything searchable from storage: Sluice's buffer flushed into chunks, VM's parts.
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/ts/buffer/flush", sluice.base))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("flush answered {}", r.status());
    }
    client
        .get(format!("{}/internal/force_flush", vm.base))
        .send()
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!(
        "(b) dashboard queries, query_range over {} h at 60 s steps, one client, alternating, {} rounds",
        args.hours, args.rounds
    );
    let mut total_ours = Duration::ZERO;
    let mut total_theirs = Duration::ZERO;
    for q in QUERIES {
        let mut ours: Vec<Duration> = Vec::new();
        let mut theirs: Vec<Duration> = Vec::new();
        let (mut n_ours, mut n_theirs) = (0, 0);
        for _ in 0..args.rounds {
            let (d, n) = query_range(&client, &sluice.base, q, start_ms, end_ms).await?;
            ours.push(d);
            n_ours = n;
            let (d, n) = query_range(&client, &vm.base, q, start_ms, end_ms).await?;
            theirs.push(d);
            n_theirs = n;
        }
        ours.sort();
        theirs.sort();
        let sum = |v: &[Duration]| v.iter().sum::<Duration>();
        total_ours += sum(&ours);
        total_theirs += sum(&theirs);
        let qps = |v: &[Duration]| v.len() as f64 / sum(v).as_secs_f64();
        println!("    {q}");
        println!(
            "      sluice  {:>7.2} q/s  p50 {:>7.1} ms  p99 {:>7.1} ms  {n_ours} series  {:>5.2}x",
            qps(&ours),
            percentile(&ours, 0.5).as_secs_f64() * 1e3,
            percentile(&ours, 0.99).as_secs_f64() * 1e3,
            qps(&ours) / qps(&theirs)
        );
        println!(
            "      vm      {:>7.2} q/s  p50 {:>7.1} ms  p99 {:>7.1} ms  {n_theirs} series   1.00x",
            qps(&theirs),
            percentile(&theirs, 0.5).as_secs_f64() * 1e3,
            percentile(&theirs, 0.99).as_secs_f64() * 1e3,
        );
        if n_ours != n_theirs {
            println!("      WARNING: the two answered with different numbers of series");
        }
    }
    println!(
        "    all queries: sluice/vm throughput {:>5.2}x",
        total_theirs.as_secs_f64() / total_ours.as_secs_f64()
    );
    drop::<Server>(sluice);
    drop::<Server>(vm);
    Ok(())
}
