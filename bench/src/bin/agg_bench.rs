//! Aggregations over long ranges: `count`, `avg` and `max` over `--points` points of one
//! series (default 100 million, 20 times the default `ts.max_query_points`), with one bucket
//! and with 1,000 steps, answered through `POST /ts/query`.
//!
//! Prints each query's time, the points it covered per second, and that rate's ratio to the
//! bare codec decoding the same kind of chunks in this process on the server's core (the
//! reference: an aggregation cannot read faster than it decodes); the server's resident memory
//! after ingest and its peak during the queries (`VmHWM`, reset before them); and that a raw
//! query over the same range is refused (`query_too_large`) while the aggregations are not.
//!
//! Run: `cargo build --release -p sluice -p sluice-bench && target/release/agg_bench`
//! (ingest of 100M points takes about a minute; `--points` makes it smaller).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use sluice_bench::{pin_self, place_on_cpus, start_sluice};
use sluice_client::WireClient;
use sluice_wire::TsPoint;

#[derive(Parser)]
struct Args {
    /// Points of the one series.
    #[arg(long, default_value_t = 100_000_000)]
    points: u64,
    /// Points per wire frame.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    #[arg(long, default_value = "target/bench-scratch")]
    dir: PathBuf,
}

const START_MS: i64 = 1_000_000_000_000;
const INTERVAL_MS: i64 = 10_000;

/// Point `i`: every 10 s, a two-decimal value cycling through 0.00..9.99 (as metrics agents
/// send: the decimal codec applies).
fn point(i: u64) -> (i64, f64) {
    (START_MS + i as i64 * INTERVAL_MS, (i % 1000) as f64 / 100.0)
}

/// Memory figures of a process from `/proc/<pid>/status`, in MiB: (VmRSS, VmHWM).
fn memory(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name}"))?;
        let kb: f64 = line
            .split_whitespace()
            .nth(1)
            .context("no value")?
            .parse()?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Decoding rate of the bare codec on chunks like the server's (points/s), on `cpu`.
fn bare_decode_rate(cpu: Option<usize>, chunk_points: usize) -> f64 {
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(cpu) = cpu {
                pin_self(cpu);
            }
            let points: Vec<(i64, f64)> = (0..chunk_points as u64).map(point).collect();
            let mut enc = sluice_gorilla::ChunkEncoder::for_points(&points);
            for &(t, v) in &points {
                enc.push(t, v);
            }
            let block = enc.snapshot();
            let rounds = (20_000_000 / chunk_points).max(1);
            let t = Instant::now();
            let mut n = 0usize;
            for _ in 0..rounds {
                n += sluice_gorilla::decode_chunk(&block).map_or(0, |p| p.len());
            }
            n as f64 / t.elapsed().as_secs_f64()
        })
        .join()
        .unwrap_or(0.0)
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let (server_cpu, _) = place_on_cpus();
    let server = start_sluice(&args.sluice, &args.dir, &[], server_cpu).await?;
    let pid = server.child.id();
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let n = args.points;
    println!("aggregation benchmark: {n} points of one series, server on cpu {server_cpu:?}");

    // Ingest over the wire (TS_PUT, ack=fsync), a window of frames at a time.
    let mut wire = WireClient::connect(&server.wire_addr()?, None).await?;
    let t = Instant::now();
    let mut next = 0u64;
    while next < n {
        let mut frames = Vec::new();
        for _ in 0..64 {
            if next >= n {
                break;
            }
            let end = (next + args.batch as u64).min(n);
            let points: Vec<TsPoint> = (next..end)
                .map(|i| {
                    let (timestamp_ms, value) = point(i);
                    TsPoint {
                        metric: "agg".into(),
                        entity: "e".into(),
                        timestamp_ms,
                        value,
                        tags: Default::default(),
                    }
                })
                .collect();
            let mut frame = Vec::new();
            sluice_wire::try_encode_ts_put(&points, false, &mut frame)?;
            frames.push(frame);
            next = end;
        }
        for answer in wire.frames(frames).await? {
            answer?;
        }
    }
    let r = http.post(format!("{base}/ts/buffer/flush")).send().await?;
    if !r.status().is_success() {
        bail!("flush: {}", r.text().await?);
    }
    println!(
        "  ingest: {:.1} s ({:.2}M points/s), then a flush",
        t.elapsed().as_secs_f64(),
        n as f64 / t.elapsed().as_secs_f64() / 1e6
    );
    let (rss, _) = memory(pid)?;
    println!("  server resident memory after ingest: {rss:.0} MiB");

    let bare = bare_decode_rate(server_cpu, 8192);
    println!(
        "  reference: bare chunk decoding on the server's core: {:.0}M points/s",
        bare / 1e6
    );

    // Peak memory from here on.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").ok();
    let to = START_MS + n as i64 * INTERVAL_MS;
    let query = |agg: &str, step: Option<i64>| {
        let mut body =
            json!({"metric": "agg", "from_ms": START_MS, "to_ms": to, "aggregation": agg});
        if let Some(s) = step {
            body["step_ms"] = json!(s);
        }
        body
    };
    let range = to - START_MS;
    let step = range / 1000 + 1;
    for (name, body) in [
        ("count, one bucket", query("count", None)),
        ("avg, one bucket", query("avg", None)),
        ("max, one bucket", query("max", None)),
        ("count, 1000 steps", query("count", Some(step))),
    ] {
        let t = Instant::now();
        let r = http
            .post(format!("{base}/ts/query"))
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        let secs = t.elapsed().as_secs_f64();
        if !status.is_success() {
            bail!("{name}: {status} {v}");
        }
        let points = v["series"][0]["points"].as_array().map_or(0, Vec::len);
        let first = &v["series"][0]["points"][0];
        println!(
            "  {name:<18} {secs:>7.2} s  {:>7.1}M points/s  {:>5.2}x bare decode  ({points} buckets; first {first})",
            n as f64 / secs / 1e6,
            n as f64 / secs / bare
        );
    }
    let (_, peak) = memory(pid)?;
    println!(
        "  server peak resident memory during the aggregations: {peak:.0} MiB ({:+.0} MiB over its size after ingest)",
        peak - rss
    );
    let r = http
        .post(format!("{base}/ts/query"))
        .json(&json!({"metric": "agg", "from_ms": START_MS, "to_ms": to}))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    println!(
        "  raw query of the same range: {status} {} (raw answers keep the point limit)",
        v["code"]
    );
    drop(server);
    Ok(())
}
