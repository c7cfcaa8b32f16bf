//! Replication benchmark, one run, each figure with its ratio to a reference measured in it:
//!
//! (a) Bandwidth: the same time-series ingest (1000 series with tags, two-decimal random
//!     walks, JSON batches of 1000 points, `ack=fsync`) shipped from a primary to a replica with
//!     compression `none` (the reference) and zstd levels 1, 3 and 9: bytes on the wire
//!     (`total_bytes_shipped`, request bodies as sent) over WAL record bytes, and the reduction
//!     against shipping the records uncompressed. Seed target: 80–90 % reduction.
//! (b) Lag: the primary's maximum ingest (4 clients, `ack=fsync` batches, replica attached),
//!     then a steady ingest at half of it while the primary's replication stats are sampled
//!     every 10 ms: `lag_ms` (age of the oldest record the replica has not confirmed) and
//!     `lag_bytes`, p50 and p99. Reference: the p50 latency of the primary's own `ack=fsync`
//!     batch writes in the same phase.
//!
//! Run: `cargo build --release -p sluice -p sluice-bench && target/release/repl_bench`.
//! Primary, replica and load generator share the machine's cores (no pinning: three processes
//! on two cores).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rand::{Rng, SeedableRng};
use sluice_bench::start_sluice;
use sluice_client::Client;
use sluice_client::api::ts::{Ack, DataPoint};

#[derive(Parser)]
struct Args {
    /// Points ingested per compression setting in (a).
    #[arg(long, default_value_t = 200_000)]
    points: usize,
    /// Seconds of the maximum-ingest and of the steady phase in (b).
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Path of the sluice binary (release build).
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    /// Scratch directory (on the disk under test).
    #[arg(long, default_value = "target/bench-scratch")]
    dir: PathBuf,
}

const BATCH: usize = 1000;

/// Batches of `BATCH` points: 1000 random walks with two decimals and two tags, 10 s apart.
fn batches(n: usize, start_ms: i64, seed: u64) -> Vec<Vec<DataPoint>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut values: Vec<f64> = (0..1000).map(|_| rng.random_range(10.0..90.0)).collect();
    let mut out = Vec::with_capacity(n / BATCH + 1);
    let mut cur = Vec::with_capacity(BATCH);
    for i in 0..n {
        let s = i % 1000;
        let v = &mut values[s];
        *v = ((*v + rng.random_range(-1.0..1.0)) * 100.0).round() / 100.0;
        cur.push(DataPoint {
            metric: "cpu_usage".into(),
            entity: format!("host{s}"),
            timestamp_ms: Some(start_ms + (i / 1000) as i64 * 10_000),
            value: *v,
            tags: [
                ("dc".to_string(), format!("dc{}", s % 4)),
                ("rack".to_string(), format!("r{}", s % 32)),
            ]
            .into_iter()
            .collect(),
        });
        if cur.len() == BATCH {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Waits until the replica has confirmed everything the primary holds durably.
async fn converged(primary: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = primary.get_replication_stats().await?;
        let r = s.replicas.first().context("no replica registered")?;
        if !r.databases.is_empty() && r.databases.iter().all(|d| d.confirmed_lsn == d.primary_lsn) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("replica did not catch up: {:?}", r);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let primary = start_sluice(&args.sluice, &args.dir, &[], None).await?;
    let replica =
        start_sluice(&args.sluice, &args.dir, &[("SLUICE_ROLE", "replica")], None).await?;
    let p = Client::new(primary.base.clone())?;
    p.add_replica("bench-replica", &replica.base).await?;

    println!(
        "(a) bandwidth: {} points per setting, JSON batches of {BATCH}, 1000 series",
        args.points
    );
    let mut reference = None;
    let mut start_ms = 1_700_000_000_000i64;
    for (kind, level) in [("none", 1), ("zstd", 1), ("zstd", 3), ("zstd", 9)] {
        p.configure_compression(kind, level).await?;
        converged(&p).await.ok();
        let before = p.get_replication_stats().await?.stats;
        let data = batches(args.points, start_ms, 11);
        start_ms += 1_000_000_000;
        // fsync: "converged" compares with the primary's durable LSN, so every record must be
        // durable before it is measured.
        for b in &data {
            p.put_batch(b, Some(Ack::Fsync)).await?;
        }
        converged(&p).await?;
        let after = p.get_replication_stats().await?.stats;
        let shipped = after.total_bytes_shipped - before.total_bytes_shipped;
        let raw = after.total_bytes_uncompressed - before.total_bytes_uncompressed;
        let batches = after.total_batches - before.total_batches;
        let name = if kind == "none" {
            "none".to_string()
        } else {
            format!("zstd-{level}")
        };
        let reference = *reference.get_or_insert(shipped as f64);
        println!(
            "  {name:>7}: {raw:>11} WAL bytes -> {shipped:>11} shipped in {batches:>4} batches; \
             ratio {:>5.2}x; reduction vs WAL bytes {:>5.1}%; vs shipping uncompressed (ref, same run) {:>5.1}%",
            raw as f64 / shipped as f64,
            100.0 * (1.0 - shipped as f64 / raw as f64),
            100.0 * (1.0 - shipped as f64 / reference),
        );
    }
    p.configure_compression("zstd", 3).await?;

    println!("(b) lag at half the primary's maximum ingest (ack=fsync batches of {BATCH}, zstd-3)");
    let phase = Duration::from_secs_f64(args.seconds);
    // Maximum: 4 clients as fast as they go.
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..4u64 {
        let client = p.clone();
        let (written, stop) = (written.clone(), stop.clone());
        let data = batches(
            200 * BATCH,
            1_800_000_000_000 + c as i64 * 1_000_000_000,
            20 + c,
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let b = &data[i % data.len()];
                if client.put_batch(b, Some(Ack::Fsync)).await.is_ok() {
                    written.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let max_rate = written.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    converged(&p).await?;
    let rate = max_rate / 2.0;
    println!(
        "  primary maximum with the replica attached: {max_rate:>10.0} points/s; steady phase at {rate:.0} points/s"
    );

    // Steady: one batch every BATCH / rate seconds (paced by a clock, not by the answers).
    let interval = Duration::from_secs_f64(BATCH as f64 / rate);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let client = p.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut ms = Vec::new();
            let mut bytes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = client.get_replication_stats().await
                    && let Some(r) = s.replicas.first()
                {
                    ms.push(r.lag_ms as f64);
                    bytes.push(r.lag_bytes as f64);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ms, bytes)
        })
    };
    let data = batches(400 * BATCH, 1_900_000_000_000, 99);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut latencies = Vec::new();
    let mut inflight = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < phase {
        ticker.tick().await;
        let client = p.clone();
        let b = data[i % data.len()].clone();
        i += 1;
        inflight.spawn(async move {
            let t = Instant::now();
            client
                .put_batch(&b, Some(Ack::Fsync))
                .await
                .map(|_| t.elapsed())
        });
        while let Some(done) = inflight.try_join_next() {
            latencies.push(done??.as_secs_f64() * 1000.0);
        }
    }
    while let Some(done) = inflight.join_next().await {
        latencies.push(done??.as_secs_f64() * 1000.0);
    }
    let steady_rate = (i * BATCH) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut ms, mut bytes) = sampler.await?;
    ms.sort_by(f64::total_cmp);
    bytes.sort_by(f64::total_cmp);
    latencies.sort_by(f64::total_cmp);
    let write_p50 = percentile(&latencies, 0.5);
    let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
    println!(
        "  steady ingest {steady_rate:.0} points/s; {} lag samples; write latency (ref, ack=fsync batch) p50 {write_p50:.2} ms, p99 {:.2} ms",
        ms.len(),
        percentile(&latencies, 0.99)
    );
    println!(
        "  replication lag p50 {p50:.1} ms ({:.2}x the write p50), p99 {p99:.1} ms ({:.2}x); lag bytes p50 {:.0}, p99 {:.0}",
        p50 / write_p50,
        p99 / write_p50,
        percentile(&bytes, 0.5),
        percentile(&bytes, 0.99)
    );
    converged(&p).await?;
    let s = p.get_replication_stats().await?;
    println!(
        "  totals: {} batches, {} entries, {} failed ships, avg compression {:.2}x",
        s.stats.total_batches,
        s.stats.total_entries_shipped,
        s.stats.failed_ships,
        s.stats.avg_compression_ratio
    );
    drop(replica);
    drop(primary);
    Ok(())
}
