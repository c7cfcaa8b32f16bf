//! What self-monitoring costs: a server writing its own metrics into `_monitoring` every
//! second against the same server with it off (the reference, measured in the same run), both
//! holding a few databases, series and collections so the registry has a realistic size.
//!
//! Prints the time each scrape takes (`monitoring_self_scrape_seconds_total` over
//! `monitoring_self_scrapes_total`: render, parse, write) and the process's CPU over the idle
//! window with and without it (`process_cpu_seconds_total`), each scaled to the default 10 s
//! interval as a share of one core (target < 1 %).
//!
//! Run: `cargo build --release -p sluice -p sluice-bench && target/release/monitoring_bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sluice_bench::{place_on_cpus, start_sluice};

#[derive(Parser)]
struct Args {
    /// Seconds of each idle window.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Path of the sluice binary (release build).
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    /// Scratch directory.
    #[arg(long, default_value = "target/bench-scratch")]
    dir: PathBuf,
}

/// The value of an unlabelled sample in a `/metrics` text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Databases, series, buffers and a collection, so every per-database family has members.
async fn populate(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for db in ["metrics", "iot", "logs", "app"] {
        http.post(format!("{base}/v1/databases"))
            .json(&serde_json::json!({"name": db}))
            .send()
            .await?
            .error_for_status()?;
        let lines: String = (0..2000)
            .map(|i| {
                format!(
                    "cpu,host=h{},dc=d{} usage={}.5 {}\n",
                    i % 200,
                    i % 3,
                    i % 97,
                    1_700_000_000_000_000_000i64 + i * 1_000_000_000
                )
            })
            .collect();
        http.post(format!("{base}/v1/databases/{db}/write"))
            .body(lines)
            .send()
            .await?
            .error_for_status()?;
        http.post(format!("{base}/v1/databases/{db}/vectors/add"))
            .json(&serde_json::json!({"pk": "a", "vector": [0.1, 0.2, 0.3]}))
            .send()
            .await?
            .error_for_status()?;
    }
    Ok(())
}

/// Starts a server (self-scrape every second or off), populates it, waits `seconds` idle and
/// returns (`/metrics` before, after).
async fn window(args: &Args, cpu: Option<usize>, scrape: bool) -> anyhow::Result<(String, String)> {
    let env: &[(&str, &str)] = if scrape {
        &[("SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS", "1000")]
    } else {
        &[]
    };
    let server = start_sluice(&args.sluice, &args.dir, env, cpu).await?;
    let http = reqwest::Client::new();
    populate(&http, &server.base).await?;
    let metrics = || async {
        http.get(format!("{}/metrics", server.base))
            .send()
            .await?
            .text()
            .await
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = metrics().await?;
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    let after = metrics().await?;
    Ok((before, after))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let (server_cpu, _) = place_on_cpus();
    let cpu = |b: &str, a: &str| {
        (sample(a, "process_cpu_seconds_total") - sample(b, "process_cpu_seconds_total"))
            / args.seconds
    };
    let (b0, a0) = window(&args, server_cpu, false).await?;
    let (b1, a1) = window(&args, server_cpu, true).await?;
    let (off, on) = (cpu(&b0, &a0), cpu(&b1, &a1));
    let scrapes = sample(&a1, "monitoring_self_scrapes_total");
    let secs = sample(&a1, "monitoring_self_scrape_seconds_total");
    let samples = sample(&a1, "monitoring_self_scrape_samples");
    let per = secs / scrapes.max(1.0);
    println!(
        "idle server, self-monitoring off (reference): {:.3} % of one core",
        off * 100.0
    );
    println!(
        "idle server, self-monitoring every 1 s: {:.3} % of one core ({:.0} scrapes)",
        on * 100.0,
        scrapes
    );
    println!(
        "per scrape: {:.2} ms for {samples:.0} samples (render, parse, buffered write)",
        per * 1000.0
    );
    println!(
        "at the default 10 s interval: {:.3} % of one core by the scrape's own time, {:.3} % by the process's extra CPU (target < 1 %)",
        per / 10.0 * 100.0,
        (on - off).max(0.0) / 10.0 * 100.0
    );
    Ok(())
}
