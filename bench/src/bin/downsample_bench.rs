//! Long-range queries with downsampling on vs off: `--series` series (default 1,000) of
//! `--days` days (default 90) at one point every 10 s, written through the time-series engine
//! into two databases side by side, one with downsampling rules (`--rules`, default the
//! documented example: after 7 days 1-minute buckets, after 30 days 1-hour), the other raw.
//! The downsampled one is then swept (the background sweep's steps, timed) until every point
//! past a rule's age is rolled up.
//!
//! Prints, for each query, the median latency raw and downsampled and their ratio (the raw
//! database is the reference, measured in the same run on the same data); the bytes on disk of
//! each and their ratio; the sweep's rate; and the largest relative difference between the two
//! answers (they must agree: `avg` from sum/count is exact up to float rounding).
//!
//! Queries: the fleet's daily average over the whole range (one output series, `group_by`
//! a tag no series has), and each series' hourly maximum over the whole range.
//!
//! Run: `cargo build --release -p sluice-bench && target/release/downsample_bench`
//! (about 780 million points: several minutes and ~2 GB of disk; `--series 100` for a quick
//! run).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use sluice_ts::query::{Aggregation, Query, SeriesResult};
use sluice_ts::series::SeriesKey;
use sluice_ts::{Batch, DownsampleRule, FlushTrigger, TsConfig, TsEngine, TsMetrics};
use sluice_wal::Lsn;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000)]
    series: u32,
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// Rules as `after:resolution,…` with units ms, s, m, h, d.
    #[arg(long, default_value = "7d:1m,30d:1h")]
    rules: String,
    /// Runs of each query (the median is printed).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value = "target/bench-scratch/downsample")]
    dir: PathBuf,
}

const INTERVAL_MS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;
/// Points are written (and flushed) six hours at a time.
const SLAB_MS: i64 = 6 * 3_600_000;

fn duration_ms(s: &str) -> anyhow::Result<u64> {
    let at = s
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("{s:?}: no unit"))?;
    let (n, unit) = s.split_at(at);
    let n: u64 = n.parse().with_context(|| format!("{s:?}"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => bail!("{s:?}: unknown unit {other:?}"),
    };
    Ok(n * scale)
}

fn parse_rules(s: &str) -> anyhow::Result<Vec<DownsampleRule>> {
    s.split(',')
        .map(|r| {
            let (after, res) = r.split_once(':').with_context(|| format!("{r:?}"))?;
            Ok(DownsampleRule {
                after_ms: duration_ms(after)?,
                resolution_ms: duration_ms(res)?,
            })
        })
        .collect()
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn query(from: i64, to: i64, agg: Aggregation, step: i64, group_by: &[&str]) -> Query {
    Query {
        metric: "cpu".into(),
        entity: None,
        tags: vec![],
        matchers: vec![],
        from_ms: from,
        to_ms: to,
        aggregation: Some(agg),
        step_ms: Some(step),
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
    }
}

fn median_ms(e: &TsEngine, q: &Query, runs: usize) -> anyhow::Result<(f64, Vec<SeriesResult>)> {
    let mut times = Vec::with_capacity(runs);
    let mut answer = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        answer = e.query(q).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], answer))
}

/// Largest relative difference between two answers of the same shape.
fn max_rel_diff(a: &[SeriesResult], b: &[SeriesResult]) -> anyhow::Result<f64> {
    if a.len() != b.len() {
        bail!("{} series against {}", a.len(), b.len());
    }
    let mut worst: f64 = 0.0;
    for (x, y) in a.iter().zip(b) {
        if x.points.len() != y.points.len() {
            bail!(
                "series {}: {} buckets against {}",
                x.entity,
                x.points.len(),
                y.points.len()
            );
        }
        for (p, q) in x.points.iter().zip(&y.points) {
            if p.0 != q.0 {
                bail!("bucket {} against {}", p.0, q.0);
            }
            worst = worst.max((p.1 - q.1).abs() / p.1.abs().max(1e-12));
        }
    }
    Ok(worst)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rules = parse_rules(&args.rules)?;
    sluice_ts::rollup::validate(&rules)
        .map_err(|(i, f, e)| anyhow::anyhow!("rule {i}: {f} {e}"))?;
    let _ = std::fs::remove_dir_all(&args.dir);
    let open = |name: &str, downsampling: Vec<DownsampleRule>| {
        let config = TsConfig {
            downsampling,
            ..TsConfig::default()
        };
        TsEngine::open(&args.dir.join(name), config, TsMetrics::default())
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let raw = open("raw", Vec::new())?;
    let down = open("down", rules.clone())?;

    let now = sluice_ts::now_ms();
    let end = now - now.rem_euclid(INTERVAL_MS);
    let start = end - args.days * DAY_MS;
    // Queries start at a day boundary: every stored bucket (a minute, an hour) then lies in
    // one query bucket, and both databases answer from the same points.
    let from = start - start.rem_euclid(DAY_MS) + DAY_MS;
    let keys: Vec<SeriesKey> = (0..args.series)
        .map(|i| SeriesKey {
            metric: "cpu".into(),
            entity: format!("host-{i:04}"),
            tags: vec![("dc".into(), format!("dc{}", i % 4))],
        })
        .collect();
    // A random walk per series with two decimals (as agents send: the decimal codec applies).
    let mut level: Vec<i64> = (0..args.series as i64).map(|i| 2_000 + i % 500).collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let t0 = Instant::now();
    let mut points = 0u64;
    let mut lsn = 0u64;
    let mut slab = start;
    while slab < end {
        let slab_end = (slab + SLAB_MS).min(end);
        let per_series = ((slab_end - slab) / INTERVAL_MS) as usize;
        let mut batch = Batch::with_capacity(keys.len(), keys.len() * per_series);
        for (s, key) in keys.iter().enumerate() {
            let idx = batch.add_series(key.clone());
            for k in 0..per_series {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                level[s] = (level[s] + (rng % 21) as i64 - 10).clamp(0, 10_000);
                batch.push_sample(idx, slab + k as i64 * INTERVAL_MS, level[s] as f64 / 100.0);
            }
        }
        points += batch.len() as u64;
        lsn += 1;
        down.load_base(batch.clone(), Lsn(lsn));
        raw.load_base(batch, Lsn(lsn));
        for e in [&raw, &down] {
            e.flush(FlushTrigger::Manual, |_| Ok(()))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        slab = slab_end;
    }
    println!(
        "wrote {points} points ({} series × {} days at {} s) into each database in {:.1} s",
        args.series,
        args.days,
        INTERVAL_MS / 1000,
        t0.elapsed().as_secs_f64()
    );

    // The background sweep's work, done here in its steps.
    let t = Instant::now();
    let (mut rolled, mut merged) = (0usize, 0usize);
    for e in [&raw, &down] {
        let mut next = Some(0);
        while let Some(first) = next {
            let step = e.sweep(first, 1024).map_err(|e| anyhow::anyhow!("{e}"))?;
            rolled += step.rolled;
            merged += step.merged;
            next = step.next;
        }
    }
    let sweep_s = t.elapsed().as_secs_f64();
    println!(
        "sweep (both databases): {rolled} chunks rolled up, {merged} merged in {sweep_s:.1} s \
         ({:.1} M points/s)",
        points as f64 / sweep_s / 1e6
    );
    // Reopen both so each has settled on disk (journals flushed, the chunk directory cold).
    drop(raw);
    drop(down);
    let raw = open("raw", Vec::new())?;
    let down = open("down", rules.clone())?;
    let mib = |b: u64| b as f64 / 1048576.0;
    let live = |e: &TsEngine| e.live_bytes().map_err(|e| anyhow::anyhow!("{e}"));
    let (raw_live, down_live) = (live(&raw)?, live(&down)?);
    let (raw_disk, down_disk) = (
        dir_bytes(&args.dir.join("raw")),
        dir_bytes(&args.dir.join("down")),
    );
    println!(
        "rules {}: live data (chunks and rollups, keys and values) raw {:.1} MiB, downsampled \
         {:.1} MiB: {:.2}× smaller; files on disk before the LSM compacts what the sweep \
         deleted: raw {:.1} MiB, downsampled {:.1} MiB",
        args.rules,
        mib(raw_live),
        mib(down_live),
        raw_live as f64 / down_live.max(1) as f64,
        mib(raw_disk),
        mib(down_disk),
    );

    let queries = [
        (
            "fleet daily avg over the whole range",
            query(from, end, Aggregation::Avg, DAY_MS, &["none"]),
        ),
        (
            "hourly max per series over the whole range",
            query(from, end, Aggregation::Max, 3_600_000, &[]),
        ),
    ];
    for (name, q) in &queries {
        // One untimed run each first: the chunk directory loads on first read.
        let _ = raw.query(q);
        let _ = down.query(q);
        let (raw_ms, raw_answer) = median_ms(&raw, q, args.runs)?;
        let (down_ms, down_answer) = median_ms(&down, q, args.runs)?;
        // Resolutions up to the step: both answers cover the same points.
        let diff = max_rel_diff(&raw_answer, &down_answer)?;
        if diff > 1e-9 {
            bail!("{name}: the answers differ by {diff:e} relative");
        }
        println!(
            "{name}: raw {raw_ms:.1} ms, downsampled {down_ms:.1} ms: {:.1}× faster \
             (answers differ by at most {diff:.1e} relative)",
            raw_ms / down_ms
        );
    }
    drop(raw);
    drop(down);
    let _ = std::fs::remove_dir_all(&args.dir);
    Ok(())
}
