//! Time-series benchmark, one run, each figure with its ratio to a reference measured in it:
//!
//! (a) single client, sequential (one keep-alive connection, a minimal HTTP/1.1 client):
//!     buffered puts (`/ts/put/buffered`, ack=buffer) against direct puts (`/ts/put`,
//!     ack=fsync) — req/s and ratio (seed claim 10–50×);
//! (b) batched ingest with ack=fsync, JSON (`/ts/put/batch`) and line protocol (`/write`) —
//!     points/s, `--clients` concurrent clients;
//! (c) stored bytes per point after a flush, random-walk gauge with two decimals
//!     (`--series` × `--points` at 10 s intervals) — target ≤ 1.37 (Gorilla paper);
//! (d) the same line-protocol payload into VictoriaMetrics (Debian `victoria-metrics`, started
//!     here on loopback, acks not durable): points/s and bytes/point, and our ratios to it.
//!
//! Run: `cargo build --release -p sluice -p sluice-bench && target/release/ts_bench`.
//! With two or more cores the servers run on CPU 0 and this load generator on CPU 1.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::Parser;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sluice_bench::{concurrent, dir_bytes, place_on_cpus, sequential, start_sluice, start_vm};

#[derive(Parser)]
struct Args {
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Path of the sluice binary (release build).
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    /// Path of the VictoriaMetrics binary; `--no-vm` skips (d).
    #[arg(long, default_value = "victoria-metrics")]
    vm: PathBuf,
    #[arg(long)]
    no_vm: bool,
    /// Concurrent clients for batched ingest.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Points per batch request.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Series of the storage dataset.
    #[arg(long, default_value_t = 100)]
    series: usize,
    /// Points per series of the storage dataset.
    #[arg(long, default_value_t = 10_000)]
    points: usize,
    /// Scratch directory (on the disk under test).
    #[arg(long, default_value = "target/bench-scratch")]
    dir: PathBuf,
}

struct Sample {
    metric: String,
    host: String,
    ts_ms: i64,
    value: f64,
}

/// `series` random walks with two decimals, 10 s apart, ending now.
fn dataset(series: usize, points: usize, seed: u64) -> Vec<Sample> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let start = now - points as i64 * 10_000;
    let mut out = Vec::with_capacity(series * points);
    for s in 0..series {
        let mut v: f64 = rng.random_range(10.0..90.0);
        for i in 0..points {
            v = ((v + rng.random_range(-1.0..1.0)) * 100.0).round() / 100.0;
            out.push(Sample {
                metric: "cpu".into(),
                host: format!("host{s}"),
                ts_ms: start + i as i64 * 10_000,
                value: v,
            });
        }
    }
    // Interleave series by time, as scrapers send them.
    out.sort_by_key(|p| p.ts_ms);
    out
}

fn line_protocol(samples: &[Sample]) -> String {
    let mut s = String::with_capacity(samples.len() * 48);
    for p in samples {
        use std::fmt::Write;
        let _ = writeln!(
            s,
            "{},host={} usage={} {}",
            p.metric,
            p.host,
            p.value,
            p.ts_ms * 1_000_000
        );
    }
    s
}

fn json_batch(samples: &[Sample]) -> String {
    let points: Vec<Value> = samples
        .iter()
        .map(|p| json!({"metric": format!("{}_usage", p.metric), "entity": p.host, "timestamp_ms": p.ts_ms, "value": p.value}))
        .collect();
    json!({ "points": points }).to_string()
}

/// Ingests `lp_batches` into a server's line-protocol endpoint, one client, in order.
async fn ingest_all(url: &str, lp_batches: &[(String, usize)]) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for (body, _) in lp_batches {
        let r = client.post(url).body(body.clone()).send().await?;
        if !r.status().is_success() {
            bail!("{url} answered {}", r.status());
        }
    }
    Ok(())
}

fn batches(
    samples: &[Sample],
    size: usize,
    encode: fn(&[Sample]) -> String,
) -> Vec<(String, usize)> {
    samples.chunks(size).map(|c| (encode(c), c.len())).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let (server_cpu, _) = place_on_cpus();
    println!(
        "time-series benchmark: {:.1} s per run, {} clients, {}-point batches, servers on cpu {server_cpu:?}",
        args.seconds, args.clients, args.batch
    );

    // (a) sequential single-point puts.
    let s = start_sluice(&args.sluice, &args.dir, &[], server_cpu).await?;
    let client = reqwest::Client::new();
    let one = r#"{"metric":"seq","entity":"e1","timestamp_ms":0,"value":1.5,"tags":{"dc":"eu"}}"#;
    let direct = sequential(&s.base, "/ts/put", one, args.seconds)?;
    let buffered = sequential(&s.base, "/ts/put/buffered", one, args.seconds)?;
    println!("(a) single client, sequential");
    println!("    direct   /ts/put          ack=fsync  {direct:>10.0} req/s   1.00x");
    println!(
        "    buffered /ts/put/buffered ack=buffer {buffered:>10.0} req/s  {:>5.2}x  (seed: 10-50x)",
        buffered / direct
    );
    drop(s);

    // (b) batched ingest with ack=fsync.
    let load = dataset(1000, 200, 7);
    let json_batches = Arc::new(batches(&load, args.batch, json_batch));
    let lp_batches = Arc::new(batches(&load, args.batch, line_protocol));
    let s = start_sluice(&args.sluice, &args.dir, &[], server_cpu).await?;
    let json_rate = concurrent(
        &format!("{}/ts/put/batch?ack=fsync", s.base),
        json_batches,
        args.clients,
        args.seconds,
    )
    .await?;
    drop(s);
    let s = start_sluice(&args.sluice, &args.dir, &[], server_cpu).await?;
    let lp_rate = concurrent(
        &format!("{}/write?ack=fsync", s.base),
        lp_batches.clone(),
        args.clients,
        args.seconds,
    )
    .await?;
    drop(s);
    println!("(b) batched ingest, ack=fsync, {} clients", args.clients);
    println!("    JSON /ts/put/batch   {json_rate:>12.0} points/s");
    println!("    line protocol /write {lp_rate:>12.0} points/s");

    // (c) bytes per point after a flush.
    let walk = dataset(args.series, args.points, 42);
    let walk_lp = batches(&walk, args.batch, line_protocol);
    let s = start_sluice(&args.sluice, &args.dir, &[], server_cpu).await?;
    ingest_all(&format!("{}/write", s.base), &walk_lp).await?;
    let r = client
        .post(format!("{}/ts/buffer/flush", s.base))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("flush answered {}", r.status());
    }
    let stats: Value = client
        .get(format!("{}/ts/buffer/stats", s.base))
        .send()
        .await?
        .json()
        .await?;
    let ratio = stats["avg_compression_ratio"].as_f64().unwrap_or(0.0);
    let ours_bpp = if ratio > 0.0 { 16.0 / ratio } else { f64::NAN };
    let ts_dir = s.data_dir.join("databases/default/ts");
    let disk_bpp = dir_bytes(&ts_dir) as f64 / walk.len() as f64;
    drop(s);
    println!(
        "(c) storage, {} series x {} points, 2-decimal random walk, 10 s interval",
        args.series, args.points
    );
    println!(
        "    sluice chunks        {ours_bpp:>8.3} bytes/point   (target <= 1.37; chunk blocks + keys)"
    );
    println!(
        "    sluice ts dir on disk {disk_bpp:>7.3} bytes/point   (includes fjall's preallocated journal; not a storage figure)"
    );

    // (d) VictoriaMetrics on the same payloads.
    if args.no_vm {
        println!("(d) skipped (--no-vm)");
        return Ok(());
    }
    let vm = match start_vm(&args.vm, &args.dir, server_cpu, &[]).await {
        Ok(vm) => vm,
        Err(e) => {
            println!("(d) skipped: {e:#} (apt-get install victoria-metrics)");
            return Ok(());
        }
    };
    let vm_rate = concurrent(
        &format!("{}/write", vm.base),
        lp_batches,
        args.clients,
        args.seconds,
    )
    .await?;
    drop(vm);
    let mut vm = start_vm(&args.vm, &args.dir, server_cpu, &[]).await?;
    ingest_all(&format!("{}/write", vm.base), &walk_lp).await?;
    // A graceful stop makes VictoriaMetrics write every in-memory part to disk.
    vm.stop_gracefully();
    let vm_bpp = dir_bytes(&vm.data_dir.join("data")) as f64 / walk.len() as f64;
    drop(vm);
    println!("(d) VictoriaMetrics (acks not durable), same line-protocol payloads");
    println!(
        "    ingest {vm_rate:>12.0} points/s   sluice line protocol / VM = {:.2}x  (target >= 1.0)",
        lp_rate / vm_rate
    );
    println!(
        "    storage {vm_bpp:>7.3} bytes/point   (data parts after a graceful stop)   sluice chunks / VM = {:.2}x  (lower is better)",
        ours_bpp / vm_bpp
    );
    Ok(())
}
