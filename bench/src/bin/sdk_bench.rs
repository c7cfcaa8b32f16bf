//! The client SDKs' batch writers against one server, in one run, each over HTTP and over the
//! binary protocol, with the Rust client's wire rate measured against the same server just
//! before each SDK as the reference.
//!
//! - The server is a release `sluice serve` on CPU 0; the load (the Rust reference and each
//!   SDK's benchmark process) runs on CPU 1.
//! - Every writer sends the same data: 1000 series (`cpu_usage`, entity `host{s}`), random walks
//!   with two decimals, 10 s apart, interleaved by time, no tags, in batches of 5000 points,
//!   acknowledged at `buffer`, from one writer on one connection. A full server buffer (wire
//!   `0x04`, HTTP 503) is backpressure the writers retry; only acknowledged points count.
//! - The reference is the Rust client (`sluice-client`'s `WireClient`) encoding each batch as a
//!   `TS_PUT_BUFFERED` frame and keeping `--depth` batches in flight, as the SDK writers do.
//! - The SDKs' own programs do the measuring (`clients/go/bench`, `clients/typescript/bench`):
//!   this driver starts the server, measures the reference, runs them with `-reference` and
//!   prints their lines and a summary with the targets (Go ≥ 50%, TypeScript ≥ 25% of the Rust
//!   client over the binary protocol).
//!
//! Run (after `cargo build --release -p sluice -p sluice-bench`; Go and Node installed; the
//! TypeScript client built with `npm ci && npx tsc` in `clients/typescript`, which this
//! driver does when `dist/` is missing):
//! `target/release/sdk_bench [--sdk go|typescript|all] [--seconds 5]`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use sluice_bench::{pinned, place_on_cpus, random_walks, retry, start_sluice};
use sluice_client::WireClient;
use sluice_wire::TsPoint;

#[derive(Parser)]
struct Args {
    /// Which SDKs: go, typescript or all.
    #[arg(long, default_value = "all")]
    sdk: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Batches in flight for the Rust reference (the SDK writers' default pipeline depth).
    #[arg(long, default_value_t = 4)]
    depth: usize,
    /// Path of the sluice binary (release build).
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    /// Scratch directory.
    #[arg(long, default_value = "target/bench-scratch")]
    dir: PathBuf,
}

const BATCH: usize = 5000;

/// The Rust client over the wire: `depth` freshly encoded `TS_PUT_BUFFERED` batches per round
/// trip on one connection, for `seconds`; returns acknowledged points/s.
async fn rust_reference(
    addr: &str,
    data: &[TsPoint],
    depth: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let mut conn = WireClient::connect(addr, None).await?.with_retry(retry());
    let batches: Vec<&[TsPoint]> = data.chunks(BATCH).collect();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let (mut points, mut next) = (0usize, 0usize);
    while Instant::now() < deadline {
        let mut frames = Vec::with_capacity(depth);
        let mut n = 0;
        for _ in 0..depth {
            let batch = batches[next % batches.len()];
            next += 1;
            let mut frame = Vec::new();
            sluice_wire::try_encode_ts_put(batch, true, &mut frame)?;
            frames.push(frame);
            n += batch.len();
        }
        for answer in conn.frames(frames).await? {
            answer?;
        }
        points += n;
    }
    Ok(points as f64 / started.elapsed().as_secs_f64())
}

/// Runs one SDK's benchmark program, echoing its output; returns its wire rate.
fn run_sdk(mut cmd: Command, sdk: &str) -> anyhow::Result<(f64, f64)> {
    let out = cmd
        .output()
        .with_context(|| format!("running the {sdk} benchmark"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        println!("    {line}");
    }
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        bail!("the {sdk} benchmark failed: {}", out.status);
    }
    let rate = |transport: &str| -> anyhow::Result<f64> {
        let prefix = format!("{sdk} {transport} batch writer: ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no '{prefix}<N> points/s' line in the {sdk} output"))
    };
    Ok((rate("http")?, rate("wire")?))
}

/// The command that runs `sdk`'s benchmark (built first, so compiling is not measured).
fn sdk_command(
    sdk: &str,
    repo: &Path,
    scratch: &Path,
    cpu: Option<usize>,
) -> anyhow::Result<Command> {
    match sdk {
        "go" => {
            let exe = scratch.join("go-sdk-bench");
            let status = Command::new("go")
                .args(["build", "-o"])
                .arg(&exe)
                .arg("./bench")
                .current_dir(repo.join("clients/go"))
                .env("GOFLAGS", "-mod=mod")
                .env("GOPROXY", "off")
                .status()
                .context("go build (is golang-go installed?)")?;
            if !status.success() {
                bail!("go build ./bench failed");
            }
            Ok(pinned(&exe, cpu))
        }
        "typescript" => {
            let dir = repo.join("clients/typescript");
            if !dir.join("dist/index.js").exists() {
                let status = Command::new("bash")
                    .args([
                        "-c",
                        "npm ci --no-audit --no-fund --loglevel=error && npx tsc -p tsconfig.json",
                    ])
                    .current_dir(&dir)
                    .status()
                    .context("building the TypeScript client (are node and npm installed?)")?;
                if !status.success() {
                    bail!("building the TypeScript client failed");
                }
            }
            let mut cmd = pinned(Path::new("node"), cpu);
            cmd.arg(dir.join("bench/batch_writer.mjs"));
            Ok(cmd)
        }
        other => bail!("unknown SDK {other:?}: go or typescript"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sdks: Vec<&str> = match args.sdk.as_str() {
        "all" => vec!["go", "typescript"],
        one => vec![one],
    };
    std::fs::create_dir_all(&args.dir)?;
    let scratch = std::fs::canonicalize(&args.dir)?;
    let repo = std::env::current_dir()?;
    let (server_cpu, load_cpu) = place_on_cpus();
    let data = random_walks(100);
    let mut commands = Vec::new();
    for sdk in &sdks {
        commands.push(sdk_command(sdk, &repo, &scratch, load_cpu)?);
    }
    let server = start_sluice(&args.sluice, &scratch, &[], server_cpu).await?;
    let wire = server.wire_addr()?;
    println!(
        "SDK batch writers: one server (cpu {server_cpu:?}), load on cpu {load_cpu:?}, {:.1} s per run, {BATCH}-point batches, one writer, ack=buffer",
        args.seconds
    );
    let mut summary = Vec::new();
    for (sdk, mut cmd) in sdks.iter().zip(commands) {
        let reference = rust_reference(&wire, &data, args.depth, args.seconds).await?;
        println!(
            "  rust wire client (reference, {} batches in flight): {reference:.0} points/s",
            args.depth
        );
        let flag = if *sdk == "go" { "-" } else { "--" };
        cmd.arg(format!("{flag}url"))
            .arg(&server.base)
            .arg(format!("{flag}seconds"))
            .arg(args.seconds.to_string())
            .arg(format!("{flag}reference"))
            .arg(format!("{reference:.0}"));
        if *sdk == "go" {
            cmd.arg("-wire").arg(&wire);
        }
        println!("  {sdk}:");
        let (http, wire_rate) = run_sdk(cmd, sdk)?;
        summary.push((sdk, reference, http, wire_rate));
    }
    drop(server);
    println!(
        "summary (points/s; ratio over the binary protocol to the Rust client measured just before):"
    );
    for (sdk, reference, http, wire_rate) in summary {
        let target = if *sdk == "go" { 0.50 } else { 0.25 };
        let ratio = wire_rate / reference;
        println!(
            "  {sdk:<10} http {http:>10.0}   wire {wire_rate:>10.0}   rust wire {reference:>10.0}   wire/rust = {ratio:.2}x (target >= {target:.2}) {}",
            if ratio >= target { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
