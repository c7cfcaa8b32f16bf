//! Wire protocol benchmark, one run, each figure with its ratio to a reference measured in it:
//!
//! (a) batched time-series ingest, acknowledged at `buffer` and then at `fsync` on every path:
//!     `TS_PUT_BUFFERED` (buffer) or `TS_PUT` (fsync) batch frames over the wire against JSON
//!     batches (`/ts/put/batch?ack=…`) and line protocol (`/write?ack=…`) over HTTP — points/s,
//!     `--clients` connections, the same
//!     points (1000 series, two-decimal random walks), all sent through the Rust client
//!     (`sluice-client`: its wire `put_buffered`, HTTP `put_batch` and `write_line_protocol`),
//!     so encoding costs are on the load generator's core. A full buffer (wire `0x04`, HTTP
//!     503) is backpressure: the client retries after 2 ms; only accepted points count.
//! (b) single-point buffered puts from one client, one request at a time: `TS_PUT_BUFFERED`
//!     over the wire against `/ts/put/buffered` over HTTP — req/s; and the wire with 64 requests
//!     pipelined on one connection.
//!
//! Run: `cargo build --release -p sluice -p sluice-bench && target/release/wire_bench`.
//! With two or more cores the server runs on CPU 0 and this load generator on CPU 1. The
//! wire target (≥ 3M points/s per core) is for `ack=fsync`, measured by the `TS_PUT` run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sluice_bench::{place_on_cpus, points_per_sec, random_walks, retry, start_sluice, wire_ingest};
use sluice_client::api::ts::{Ack, DataPoint};
use sluice_client::{Client, WireClient};
use sluice_wire::TsPoint;

#[derive(Parser)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent connections for batched ingest.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Points per batch.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Path of the sluice binary (release build).
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    /// Scratch directory (on the disk under test).
    #[arg(long, default_value = "target/bench-scratch")]
    dir: PathBuf,
}

/// How an HTTP batch is sent.
#[derive(Clone, Copy)]
enum HttpPath {
    Json,
    LineProtocol,
}

/// HTTP batches (the Rust client's `put_batch` or `write_line_protocol`, `ack=buffer`) from
/// `clients` clients for `seconds`; returns points/s.
async fn http_ingest(
    base: &str,
    path: HttpPath,
    ack: Ack,
    batches: Arc<Vec<(Vec<DataPoint>, String)>>,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let batches = batches.clone();
        let client = Client::builder(base).retry(retry()).build()?;
        tasks.push(async move {
            let (mut points, mut i) = (0usize, c);
            while Instant::now() < deadline {
                let (batch, lines) = &batches[i % batches.len()];
                match path {
                    HttpPath::Json => {
                        client.put_batch(batch, Some(ack)).await?;
                    }
                    HttpPath::LineProtocol => {
                        client.write_line_protocol(lines, "ms", Some(ack)).await?;
                    }
                }
                points += batch.len();
                i += clients;
            }
            Ok(points)
        });
    }
    points_per_sec(started, tasks.into_iter()).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let (cpu, _) = place_on_cpus();
    println!(
        "wire benchmark: {:.1} s per run, {} clients, {}-point batches, server on cpu {cpu:?}",
        args.seconds, args.clients, args.batch
    );
    let points = random_walks(200);
    let wire_batches: Arc<Vec<Vec<TsPoint>>> =
        Arc::new(points.chunks(args.batch).map(<[TsPoint]>::to_vec).collect());
    let http_batches: Arc<Vec<(Vec<DataPoint>, String)>> = Arc::new(
        points
            .chunks(args.batch)
            .map(|c| {
                let mut lines = String::new();
                for p in c {
                    use std::fmt::Write;
                    let _ = writeln!(
                        lines,
                        "cpu,host={} usage={} {}",
                        p.entity, p.value, p.timestamp_ms
                    );
                }
                let dps = c
                    .iter()
                    .map(|p| DataPoint {
                        metric: p.metric.clone(),
                        entity: p.entity.clone(),
                        timestamp_ms: Some(p.timestamp_ms),
                        value: p.value,
                        tags: Default::default(),
                    })
                    .collect();
                (dps, lines)
            })
            .collect(),
    );

    // (a) batched ingest at ack=buffer, then at ack=fsync (wire TS_PUT).
    for (ack, label) in [(Ack::Buffer, "buffer"), (Ack::Fsync, "fsync")] {
        let fsync = ack == Ack::Fsync;
        let s = start_sluice(&args.sluice, &args.dir, &[], cpu).await?;
        let wire = wire_ingest(
            &s.wire_addr()?,
            wire_batches.clone(),
            fsync,
            args.clients,
            args.seconds,
        )
        .await?;
        drop(s);
        let mut rates = Vec::new();
        for path in [HttpPath::Json, HttpPath::LineProtocol] {
            let s = start_sluice(&args.sluice, &args.dir, &[], cpu).await?;
            rates.push(
                http_ingest(
                    &s.base,
                    path,
                    ack,
                    http_batches.clone(),
                    args.clients,
                    args.seconds,
                )
                .await?,
            );
            drop(s);
        }
        let (json_rate, lp_rate) = (rates[0], rates[1]);
        let opcode = if fsync {
            "TS_PUT         "
        } else {
            "TS_PUT_BUFFERED"
        };
        println!("(a) batched ingest, ack={label}, {} clients", args.clients);
        println!("    wire {opcode} batches {wire:>12.0} points/s   1.00x");
        println!(
            "    HTTP JSON /ts/put/batch      {json_rate:>12.0} points/s   wire/JSON = {:.2}x  (target >= 2x)",
            wire / json_rate
        );
        println!(
            "    HTTP line protocol /write    {lp_rate:>12.0} points/s   wire/LP = {:.2}x  (target >= 2x)",
            wire / lp_rate
        );
        if fsync {
            println!(
                "    wire at fsync per server core: {:.2}M points/s (target >= 3M)",
                wire / 1e6
            );
        }
    }

    // (b) single-point buffered puts, one client. Pipelined puts pass admission's default
    // 100k requests/s per actor here: this measures throughput, not the rate limit.
    let s = start_sluice(
        &args.sluice,
        &args.dir,
        &[("SLUICE_ADMISSION_RATE_LIMIT_PER_SEC", "0")],
        cpu,
    )
    .await?;
    let one = &points[0];
    let mut conn = WireClient::connect(&s.wire_addr()?, None).await?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        conn.put_buffered(std::slice::from_ref(one)).await?;
        n += 1;
    }
    let wire_seq = n as f64 / started.elapsed().as_secs_f64();
    // Pipelined: 64 in flight.
    let mut frame = Vec::new();
    sluice_wire::try_encode_ts_put(std::slice::from_ref(one), true, &mut frame)?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        for answer in conn.frames(vec![frame.clone(); 64]).await? {
            answer?;
        }
        n += 64;
    }
    let wire_pipe = n as f64 / started.elapsed().as_secs_f64();
    let client = Client::new(&s.base)?;
    let dp = DataPoint {
        metric: one.metric.clone(),
        entity: one.entity.clone(),
        timestamp_ms: Some(one.timestamp_ms),
        value: one.value,
        tags: Default::default(),
    };
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        client.put_buffered(&dp).await?;
        n += 1;
    }
    let http_seq = n as f64 / started.elapsed().as_secs_f64();
    drop(s);
    println!("(b) single-point buffered puts, one client");
    println!("    HTTP /ts/put/buffered, sequential  {http_seq:>10.0} req/s   1.00x");
    println!(
        "    wire TS_PUT_BUFFERED, sequential   {wire_seq:>10.0} req/s  {:>5.2}x",
        wire_seq / http_seq
    );
    println!(
        "    wire TS_PUT_BUFFERED, 64 pipelined {wire_pipe:>10.0} req/s  {:>5.2}x",
        wire_pipe / http_seq
    );
    Ok(())
}
