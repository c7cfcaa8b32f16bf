//! Wire protocol benchmark, one run, each figure with its ratio to a reference measured in it:
//!
//! (a) batched time-series ingest, acknowledged at `buffer` on every path: `TS_PUT_BUFFERED`
//!     batch frames over the wire against JSON batches (`/ts/put/batch?ack=buffer`) and line
//!     protocol (`/write?ack=buffer`) over HTTP — points/s, `--clients` connections, the same
//!     points (1000 series, two-decimal random walks). A full buffer (wire `0x04`, HTTP 503) is
//!     backpressure: the client waits 2 ms and resends; only accepted points count.
//! (b) single-point buffered puts from one client, one request at a time: `TS_PUT_BUFFERED`
//!     over the wire against `/ts/put/buffered` over HTTP — req/s; and the wire with 64 requests
//!     pipelined on one connection.
//!
//! Run: `cargo build --release -p sluice -p sluice-bench && target/release/wire_bench`.
//! With two or more cores the server runs on CPU 0 and this load generator on CPU 1. SPEC §12's
//! wire target (≥ 3M points/s per core) is for `ack=fsync`; the wire's buffered opcode acks at
//! `buffer`, so all three paths here do too.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sluice_bench::{Server, pin_self, start_sluice};
use sluice_wire::{Request, TsPoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// 1000 random walks with two decimals, 10 s apart, interleaved by time.
fn dataset(points_per_series: usize) -> Vec<TsPoint> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut out = Vec::with_capacity(1000 * points_per_series);
    let mut values: Vec<f64> = (0..1000).map(|_| rng.random_range(10.0..90.0)).collect();
    for i in 0..points_per_series {
        for (s, v) in values.iter_mut().enumerate() {
            *v = ((*v + rng.random_range(-1.0..1.0)) * 100.0).round() / 100.0;
            out.push(TsPoint {
                metric: "cpu_usage".into(),
                entity: format!("host{s}"),
                timestamp_ms: 1_700_000_000_000 + i as i64 * 10_000,
                value: *v,
                tags: Default::default(),
            });
        }
    }
    out
}

fn wire_addr(server: &Server) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(server.data_dir.join("server.json"))?;
    let v: Value = serde_json::from_str(&text)?;
    v["wire_addr"]
        .as_str()
        .map(str::to_string)
        .context("server.json has no wire_addr")
}

/// A client connection reading responses through a buffer (one read for many frames).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

impl Conn {
    async fn connect(addr: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            chunk: vec![0u8; 64 * 1024],
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        Ok(self.stream.write_all(bytes).await?)
    }

    /// The next response's status.
    async fn recv(&mut self) -> anyhow::Result<u8> {
        loop {
            if let Some((frame, used)) = sluice_wire::split_frame(&self.buf, usize::MAX)? {
                let status = frame.code;
                self.buf.drain(..used);
                return Ok(status);
            }
            let n = self.stream.read(&mut self.chunk).await?;
            if n == 0 {
                bail!("connection closed");
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
    }
}

/// Batches over the wire from `clients` connections for `seconds`; returns points/s.
async fn wire_ingest(
    addr: &str,
    frames: Arc<Vec<(Vec<u8>, usize)>>,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (frames, addr) = (frames.clone(), addr.to_string());
        tasks.spawn(async move {
            let mut conn = Conn::connect(&addr).await?;
            let (mut points, mut i) = (0usize, c);
            while Instant::now() < deadline {
                let (frame, n) = &frames[i % frames.len()];
                conn.send(frame).await?;
                match conn.recv().await? {
                    0x00 => {
                        points += n;
                        i += clients;
                    }
                    0x04 => tokio::time::sleep(Duration::from_millis(2)).await,
                    s => bail!("wire status {s:#x}"),
                }
            }
            Ok::<usize, anyhow::Error>(points)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// HTTP batches from `clients` clients for `seconds`; returns points/s.
async fn http_ingest(
    url: &str,
    bodies: Arc<Vec<(String, usize)>>,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (bodies, url) = (bodies.clone(), url.to_string());
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            let (mut points, mut i) = (0usize, c);
            while Instant::now() < deadline {
                let (body, n) = &bodies[i % bodies.len()];
                let r = client.post(&url).body(body.clone()).send().await?;
                let status = r.status();
                r.bytes().await?;
                if status.is_success() {
                    points += n;
                    i += clients;
                } else if status == 503 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                } else {
                    bail!("{url} answered {status}");
                }
            }
            Ok::<usize, anyhow::Error>(points)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = (cores >= 2).then_some(0);
    if cores >= 2 {
        pin_self(1);
    }
    println!(
        "wire benchmark: {:.1} s per run, {} clients, {}-point batches, server on cpu {cpu:?}",
        args.seconds, args.clients, args.batch
    );
    let points = dataset(200);
    let frames: Arc<Vec<(Vec<u8>, usize)>> = Arc::new(
        points
            .chunks(args.batch)
            .map(|c| {
                let mut f = Vec::new();
                Request::TsPutBuffered {
                    points: c.to_vec(),
                    batch: true,
                }
                .encode(&mut f);
                (f, c.len())
            })
            .collect(),
    );
    let json_bodies: Arc<Vec<(String, usize)>> = Arc::new(
        points
            .chunks(args.batch)
            .map(|c| {
                let ps: Vec<Value> = c
                    .iter()
                    .map(|p| json!({"metric": p.metric, "entity": p.entity, "timestamp_ms": p.timestamp_ms, "value": p.value}))
                    .collect();
                (json!({ "points": ps }).to_string(), c.len())
            })
            .collect(),
    );
    let lp_bodies: Arc<Vec<(String, usize)>> = Arc::new(
        points
            .chunks(args.batch)
            .map(|c| {
                let mut s = String::new();
                for p in c {
                    use std::fmt::Write;
                    let _ = writeln!(
                        s,
                        "cpu,host={} usage={} {}",
                        p.entity, p.value, p.timestamp_ms
                    );
                }
                (s, c.len())
            })
            .collect(),
    );

    // (a) batched ingest, ack=buffer.
    let s = start_sluice(&args.sluice, &args.dir, &[], cpu).await?;
    let wire = wire_ingest(&wire_addr(&s)?, frames, args.clients, args.seconds).await?;
    drop(s);
    let s = start_sluice(&args.sluice, &args.dir, &[], cpu).await?;
    let json_rate = http_ingest(
        &format!("{}/ts/put/batch?ack=buffer", s.base),
        json_bodies,
        args.clients,
        args.seconds,
    )
    .await?;
    drop(s);
    let s = start_sluice(&args.sluice, &args.dir, &[], cpu).await?;
    let lp_rate = http_ingest(
        &format!("{}/write?ack=buffer&precision=ms", s.base),
        lp_bodies,
        args.clients,
        args.seconds,
    )
    .await?;
    drop(s);
    println!("(a) batched ingest, ack=buffer, {} clients", args.clients);
    println!("    wire TS_PUT_BUFFERED batches {wire:>12.0} points/s   1.00x");
    println!(
        "    HTTP JSON /ts/put/batch      {json_rate:>12.0} points/s   wire/JSON = {:.2}x  (target >= 2x)",
        wire / json_rate
    );
    println!(
        "    HTTP line protocol /write    {lp_rate:>12.0} points/s   wire/LP = {:.2}x  (target >= 2x)",
        wire / lp_rate
    );

    // (b) single-point buffered puts, one client.
    let s = start_sluice(&args.sluice, &args.dir, &[], cpu).await?;
    let one = &points[0];
    let mut frame = Vec::new();
    Request::TsPutBuffered {
        points: vec![one.clone()],
        batch: false,
    }
    .encode(&mut frame);
    let mut conn = Conn::connect(&wire_addr(&s)?).await?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        conn.send(&frame).await?;
        if conn.recv().await? != 0 {
            bail!("wire put refused");
        }
        n += 1;
    }
    let wire_seq = n as f64 / started.elapsed().as_secs_f64();
    // Pipelined: 64 in flight.
    let batch64: Vec<u8> = frame.repeat(64);
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        conn.send(&batch64).await?;
        for _ in 0..64 {
            if conn.recv().await? != 0 {
                bail!("wire put refused");
            }
        }
        n += 64;
    }
    let wire_pipe = n as f64 / started.elapsed().as_secs_f64();
    let client = reqwest::Client::new();
    let url = format!("{}/ts/put/buffered", s.base);
    let body = json!({"metric": one.metric, "entity": one.entity, "timestamp_ms": one.timestamp_ms, "value": one.value}).to_string();
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("{url}: {}", r.status());
        }
        r.bytes().await?;
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
