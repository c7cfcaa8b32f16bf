//! `sluice import` against the binary protocol it drives, in one run:
//!
//! - the reference: `wire_bench`'s batched ingest at `ack=fsync` (`TS_PUT` frames of 5000 points
//!   from 4 connections through the Rust client, points already in memory) for `--seconds`;
//! - then `sluice import` of a line-protocol file of `--points` points (default 10M) holding the
//!   same points (`cpu_usage,entity=hostN value=V T`, `--precision ms`: one point a line, the
//!   metric `cpu_usage`, entity `hostN`, no tags), acknowledged at `fsync`, over the wire, from
//!   4 connections — so the import pays for reading and parsing the file on top of what the
//!   reference does. It runs in a pseudo-terminal (`script`, when installed) so its progress bar
//!   is live, as a person would see it.
//!
//! Each against a fresh server on CPU 0, the load on CPU 1. Prints both rates and the ratio
//! (target: import ≥ 0.80 of the reference).
//!
//! Run: `cargo build --release -p sluice -p sluice-bench && target/release/import_bench`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use sluice_bench::{pinned, place_on_cpus, random_walks, start_sluice, wire_ingest};

#[derive(Parser)]
struct Args {
    /// Points in the line-protocol file.
    #[arg(long, default_value_t = 10_000_000)]
    points: usize,
    /// Seconds of the reference measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Connections (the reference's and the import's).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Points per batch (both).
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Path of the sluice binary (release build).
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    /// Scratch directory (on the disk under test); the file is written here.
    #[arg(long, default_value = "target/bench-scratch")]
    dir: PathBuf,
}

/// The summary line's rate: `imported N points from M lines in T s (X points/s); …`.
fn parse_summary(out: &str) -> anyhow::Result<(u64, f64)> {
    let line = out
        .lines()
        .flat_map(|l| l.split('\r'))
        .find(|l| l.contains("imported ") && l.contains(" points/s)"))
        .with_context(|| format!("no summary line in the import's output:\n{out}"))?;
    let line = &line[line.find("imported ").unwrap()..];
    let points: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unreadable summary: {line}"))?;
    // `(3.63M points/s)`, `(815k points/s)` or `(950 points/s)`.
    let rate = line
        .rsplit_once('(')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|r| {
            let (num, scale) = match r.as_bytes().last()? {
                b'M' => (&r[..r.len() - 1], 1e6),
                b'k' => (&r[..r.len() - 1], 1e3),
                _ => (r, 1.0),
            };
            num.parse::<f64>().ok().map(|n| n * scale)
        })
        .with_context(|| format!("unreadable summary: {line}"))?;
    Ok((points, rate))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (server_cpu, client_cpu) = place_on_cpus();
    std::fs::create_dir_all(&args.dir)?;
    let per_series = args.points.div_ceil(1000);
    let data = random_walks(per_series);

    // The file: the same points as line protocol (ms timestamps).
    let file = args.dir.join(format!("import-{}.lp", args.points));
    let started = Instant::now();
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&file)?);
        for p in data.iter().take(args.points) {
            writeln!(
                w,
                "{},entity={} value={} {}",
                p.metric, p.entity, p.value, p.timestamp_ms
            )?;
        }
        w.flush()?;
    }
    let bytes = std::fs::metadata(&file)?.len();
    println!(
        "file: {} points, {:.0} MiB of line protocol ({:.1} s to write)",
        args.points,
        bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );

    // The reference: wire_bench's TS_PUT batches from memory.
    let reference = {
        let server = start_sluice(&args.sluice, &args.dir, &[], server_cpu).await?;
        let batches: Arc<Vec<_>> = Arc::new(data.chunks(args.batch).map(<[_]>::to_vec).collect());
        let rate = wire_ingest(
            &server.wire_addr()?,
            batches,
            true,
            args.connections,
            args.seconds,
        )
        .await?;
        drop(server);
        rate
    };
    println!(
        "reference (wire_bench: TS_PUT ack=fsync, {} connections, {}-point batches): {:.0} points/s",
        args.connections, args.batch, reference
    );
    drop(data);

    // The import, in a pseudo-terminal when `script` is there (the bar is live).
    let server = start_sluice(&args.sluice, &args.dir, &[], server_cpu).await?;
    let sluice = std::fs::canonicalize(&args.sluice)?;
    let import = [
        sluice.to_string_lossy().into_owned(),
        "import".into(),
        file.to_string_lossy().into_owned(),
        "--precision".into(),
        "ms".into(),
        "--url".into(),
        server.base.clone(),
        "--wire".into(),
        server.wire_addr()?,
        "--transport".into(),
        "wire".into(),
        "--ack".into(),
        "fsync".into(),
        "--batch".into(),
        args.batch.to_string(),
        "--connections".into(),
        args.connections.to_string(),
    ];
    let has_script = Command::new("script").arg("--version").output().is_ok();
    let mut cmd = if has_script {
        let mut c = pinned(std::path::Path::new("script"), client_cpu);
        c.args(["-qfec", &import.join(" "), "/dev/null"]);
        c.env("COLUMNS", "120");
        c
    } else {
        let mut c = pinned(std::path::Path::new(&import[0]), client_cpu);
        c.args(&import[1..]);
        c
    };
    let out = cmd.output().context("running sluice import")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("sluice import failed ({}):\n{text}", out.status);
    }
    let (points, rate) = parse_summary(&text)?;
    if points != args.points as u64 {
        bail!(
            "sluice import wrote {points} points, not {}:\n{text}",
            args.points
        );
    }
    let bar = text.contains("ETA");
    drop(server);
    println!(
        "sluice import ({} points, TS_PUT ack=fsync, {}): {:.0} points/s  = {:.2}x of the reference (target >= 0.80)",
        points,
        if bar {
            "progress bar live in a pseudo-terminal"
        } else {
            "no terminal: no progress bar"
        },
        rate,
        rate / reference
    );
    std::fs::remove_file(&file).ok();
    Ok(())
}
