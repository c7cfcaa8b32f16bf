//! WAL benchmark: appends/s and fsyncs/s with `ack=fsync` for 1, 16 and 256 concurrent
//! writers, group commit against one-fsync-per-record measured in the same run.
//!
//! The reference is the same WAL with `max_batch_records = 1`: every record is its own batch,
//! so every `fsync` acknowledgement costs one fdatasync — what a log without group commit does.
//! Each writer is an OS thread appending 100-byte records and waiting for each
//! acknowledgement, so `writers` is also the number of records that can wait for one sync.
//!
//! Run: `cargo run --release -p sluice-bench --bin wal_bench -- [--seconds 3] [--dir DIR]`.
//! The directory must be on the disk under test (not tmpfs: fsync there is free); by default a
//! scratch directory is made under `./target`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use sluice_wal::{AckLevel, RecordKind, Wal, WalConfig, WalMetrics, WalOptions};

#[derive(Parser)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent writers to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    writers: Vec<usize>,
    /// Directory for the scratch logs (on the disk under test).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
}

struct Figures {
    appends_per_sec: f64,
    fsyncs_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn measure(
    dir: &std::path::Path,
    config: WalConfig,
    writers: usize,
    seconds: f64,
    record_bytes: usize,
) -> anyhow::Result<Figures> {
    let scratch = tempfile::tempdir_in(dir)?;
    let metrics = WalMetrics::default();
    let options = WalOptions {
        config,
        metrics: metrics.clone(),
        ..WalOptions::default()
    };
    let wal = Arc::new(Wal::open(scratch.path(), options, |_| Ok(()))?);
    let stop = Arc::new(AtomicBool::new(false));
    let fsyncs_before = metrics.fsyncs.get();
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let wal = wal.clone();
            let stop = stop.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<u32>> {
                let mut latencies_us = Vec::with_capacity(4096);
                let payload = vec![0x5a; record_bytes];
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    wal.append(RecordKind(1), payload.clone(), AckLevel::Fsync)?
                        .wait_blocking()?;
                    latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                Ok(latencies_us)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in threads {
        latencies.extend(t.join().map_err(|_| anyhow::anyhow!("writer panicked"))??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let fsyncs = metrics.fsyncs.get() - fsyncs_before;
    wal.close()?;
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
    };
    Ok(Figures {
        appends_per_sec: latencies.len() as f64 / elapsed,
        fsyncs_per_sec: fsyncs as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => PathBuf::from("target/bench-scratch"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!(
        "WAL benchmark: ack=fsync, {}-byte records, {:.1} s per run, dir {}",
        args.record_bytes,
        args.seconds,
        dir.display()
    );
    println!(
        "{:>8}  {:<22} {:>12} {:>10} {:>12} {:>10} {:>10}  {:>7}",
        "writers", "mode", "appends/s", "fsyncs/s", "recs/fsync", "p50 µs", "p99 µs", "ratio"
    );
    for &writers in &args.writers {
        let reference = measure(
            &dir,
            WalConfig {
                max_batch_records: 1,
                ..WalConfig::default()
            },
            writers,
            args.seconds,
            args.record_bytes,
        )?;
        let group = measure(
            &dir,
            WalConfig::default(),
            writers,
            args.seconds,
            args.record_bytes,
        )?;
        for (mode, f) in [
            ("one-fsync-per-record", &reference),
            ("group commit", &group),
        ] {
            println!(
                "{:>8}  {:<22} {:>12.0} {:>10.0} {:>12.1} {:>10.0} {:>10.0}  {:>6.2}x",
                writers,
                mode,
                f.appends_per_sec,
                f.fsyncs_per_sec,
                f.appends_per_sec / f.fsyncs_per_sec.max(1e-9),
                f.p50_us,
                f.p99_us,
                f.appends_per_sec / reference.appends_per_sec
            );
        }
    }
    Ok(())
}
