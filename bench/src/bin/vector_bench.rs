//! Vector benchmark, one run, each figure with its ratio to a reference measured in it. For
//! each dataset (default 100k × 128 and 20k × 768, clustered, fixed seed):
//!
//! (a) insert throughput: `--inserts` single-entity requests from `--clients` concurrent
//!     clients, direct (`/vectors/add`, ack=fsync, indexed before the answer) against buffered
//!     (`/vectors/add/buffered`, ack=buffer; timed until a final flush has indexed everything)
//!     — the seed claims up to 500×;
//! (b) index build: the whole dataset through `/vectors/add/batch` (ack=fsync) against the
//!     bare usearch index (same crate, same M / ef_construction, same one core) built in this
//!     process — vectors/s and our ratio (target ≥ 0.8×);
//! (c) search: QPS and recall@10 (against brute force) at several `ef`, over HTTP and with
//!     the wire protocol's `VECTOR_SEARCH` opcode, each with `--clients` concurrent clients,
//!     against the bare index searched in a loop on one core — and our QPS ratios (targets
//!     ≥ 0.8× over HTTP, ≥ 0.9× over the wire), medians of `--rounds` alternating rounds.
//!
//! Run: `cargo build --release -p sluice -p sluice-bench && target/release/vector_bench`.
//! With two or more cores the server (and the bare index) run on CPU 0, the clients on CPU 1;
//! the server applies with one thread so both sides have one core.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use sluice_bench::{clustered, pin_self, place_on_cpus, start_sluice};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

#[derive(Parser)]
struct Args {
    /// Datasets as `N x DIM`, comma separated.
    #[arg(long, default_value = "100000x128,20000x768")]
    datasets: String,
    /// Queries per `ef` (recall is measured against brute force over all of them).
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Times the query set is run per `ef` for the QPS figures (recall is from the first).
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// Alternating rounds of (c) (bare, HTTP, wire); medians are printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Single-entity requests of (a) from one sequential client.
    #[arg(long, default_value_t = 500)]
    sequential: usize,
    /// Single-entity requests of (a) from `--clients` clients.
    #[arg(long, default_value_t = 3000)]
    inserts: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// `ef` values of (c).
    #[arg(long, default_value = "16,32,64,128,256")]
    ef: String,
    #[arg(long, default_value_t = 16)]
    m: usize,
    #[arg(long, default_value_t = 128)]
    ef_construction: usize,
    /// Entities per batch request of (b).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Path of the sluice binary (release build).
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    /// Scratch directory (on the disk under test).
    #[arg(long, default_value = "target/bench-scratch")]
    dir: PathBuf,
}

const K: usize = 10;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    sluice_vector::Distance::Cosine.between(a, b)
}

/// The exact top-K of every query (by index into `data`).
fn brute_force(data: &[Vec<f32>], queries: &[Vec<f32>]) -> Vec<Vec<usize>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = queries.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .chunks(per.max(1))
            .map(|qs| {
                s.spawn(move || {
                    qs.iter()
                        .map(|q| {
                            let mut all: Vec<(f32, usize)> = data
                                .iter()
                                .enumerate()
                                .map(|(i, v)| (cosine(q, v), i))
                                .collect();
                            all.select_nth_unstable_by(K, |a, b| a.0.total_cmp(&b.0));
                            all.truncate(K);
                            all.sort_by(|a, b| a.0.total_cmp(&b.0));
                            all.into_iter().map(|(_, i)| i).collect()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn recall(found: &[Vec<usize>], truth: &[Vec<usize>]) -> f64 {
    let hits: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().filter(|i| t.contains(i)).count())
        .sum();
    hits as f64 / (K * truth.len()) as f64
}

/// Sends `bodies` to `url` from `clients` concurrent clients; returns seconds and answers.
async fn fire(
    url: &str,
    bodies: Arc<Vec<String>>,
    clients: usize,
) -> anyhow::Result<(f64, Vec<Value>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, bodies, next) = (url.to_string(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    return Ok::<_, anyhow::Error>(out);
                }
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await?;
                let status = r.status();
                let v: Value = r.json().await?;
                if !status.is_success() {
                    bail!("{url}: {status} {v}");
                }
                out.push((i, v));
            }
        }));
    }
    gather(tasks, started).await
}

/// A client task: its answers, each with the index of its request.
type ClientTask<T> = tokio::task::JoinHandle<anyhow::Result<Vec<(usize, T)>>>;

/// Waits for the client tasks; returns the seconds since `started` and their answers in
/// request order.
async fn gather<T>(tasks: Vec<ClientTask<T>>, started: Instant) -> anyhow::Result<(f64, Vec<T>)> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_by_key(|(i, _)| *i);
    Ok((secs, all.into_iter().map(|(_, v)| v).collect()))
}

/// The index of pk `p<i>`.
fn pk_index(pk: &str) -> Option<usize> {
    pk.strip_prefix('p')?.parse().ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Searches `queries` (`passes` times) with the `VECTOR_SEARCH` opcode from `clients`
/// connections, one request at a time each; returns seconds and the first pass's answers.
async fn fire_wire(
    addr: &str,
    queries: Arc<Vec<Vec<f32>>>,
    passes: usize,
    ef: usize,
    clients: usize,
) -> anyhow::Result<(f64, Vec<Vec<usize>>)> {
    let total = passes * queries.len();
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(sluice_client::WireClient::connect(addr, None).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (queries, next) = (queries.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(out);
                }
                let q = &queries[i % queries.len()];
                let hits = conn
                    .search("bench", q, K as u32, Some(ef as u32), None)
                    .await?;
                if i < queries.len() {
                    out.push((i, hits.iter().filter_map(|h| pk_index(&h.pk)).collect()));
                }
            }
        }));
    }
    gather(tasks, started).await
}

fn entity(i: usize, v: &[f32]) -> Value {
    json!({"pk": format!("p{i}"), "vector": v, "metadata": {"i": i}})
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    let r = client.post(url).json(body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("{url}: {status} {v}");
    }
    Ok(v)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let (server_cpu, _) = place_on_cpus();
    let efs: Vec<usize> = args
        .ef
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("--ef")?;
    println!(
        "vector benchmark: cosine, f32, M={} ef_construction={}, {} clients, server and bare index on cpu {server_cpu:?}, one core each",
        args.m, args.ef_construction, args.clients
    );
    for spec in args.datasets.split(',') {
        let (n, dim) = spec
            .split_once('x')
            .and_then(|(n, d)| Some((n.trim().parse().ok()?, d.trim().parse().ok()?)))
            .with_context(|| format!("dataset {spec:?} is not N x DIM"))?;
        run_dataset(&args, n, dim, server_cpu, &efs).await?;
    }
    Ok(())
}

async fn run_dataset(
    args: &Args,
    n: usize,
    dim: usize,
    server_cpu: Option<usize>,
    efs: &[usize],
) -> anyhow::Result<()> {
    let mut data = clustered(n + args.queries, dim, 42 + dim as u64);
    let queries = data.split_off(n);
    println!("\ndataset {n} x {dim} ({} queries)", queries.len());
    let t = Instant::now();
    let truth = brute_force(&data, &queries);
    println!(
        "  ground truth by brute force in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // One apply thread: the server gets one core, like the bare index. The collections below
    // set their own HNSW parameters.
    let env = [
        ("SLUICE_VECTOR_APPLY_THREADS", "1"),
        ("SLUICE_HTTP_MAX_BATCH_BODY_BYTES", "268435456"),
        ("SLUICE_VECTOR_MAX_VECTORS_PER_BATCH", "100000"),
    ];
    let server = start_sluice(&args.sluice, &args.dir, &env, server_cpu).await?;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let create = |name: &str| {
        json!({"name": name, "dimension": dim, "distance": "cosine",
               "hnsw": {"m": args.m, "ef_construction": args.ef_construction, "ef_search": 64}})
    };

    // (a) single-entity inserts, direct vs buffered: one sequential client, then many.
    let seq = args.sequential.min(n);
    for name in ["seq_direct", "seq_buffered"] {
        post(&client, &format!("{base}/v1/collections"), &create(name)).await?;
    }
    let seq_bodies: Arc<Vec<String>> =
        Arc::new((0..seq).map(|i| entity(i, &data[i]).to_string()).collect());
    let (seq_direct_s, _) = fire(
        &format!("{base}/vectors/add?collection=seq_direct"),
        seq_bodies.clone(),
        1,
    )
    .await?;
    let (seq_buffered_s, _) = fire(
        &format!("{base}/vectors/add/buffered?collection=seq_buffered"),
        seq_bodies,
        1,
    )
    .await?;
    println!("  (a) single-entity inserts");
    println!(
        "      1 client, sequential, {seq} inserts: direct {:.0} vectors/s, buffered {:.0} vectors/s: {:.1}x  (seed claim: up to 500x)",
        seq as f64 / seq_direct_s,
        seq as f64 / seq_buffered_s,
        seq_direct_s / seq_buffered_s
    );
    let m = args.inserts.min(n);
    for name in ["direct", "buffered"] {
        post(&client, &format!("{base}/v1/collections"), &create(name)).await?;
    }
    let bodies: Arc<Vec<String>> =
        Arc::new((0..m).map(|i| entity(i, &data[i]).to_string()).collect());
    let (direct_s, _) = fire(
        &format!("{base}/vectors/add?collection=direct"),
        bodies.clone(),
        args.clients,
    )
    .await?;
    let started = Instant::now();
    let (ack_s, _) = fire(
        &format!("{base}/vectors/add/buffered?collection=buffered"),
        bodies,
        args.clients,
    )
    .await?;
    post(&client, &format!("{base}/vectors/buffer/flush"), &json!({})).await?;
    let buffered_s = started.elapsed().as_secs_f64();
    let direct_rate = m as f64 / direct_s;
    println!("      {} clients, {m} inserts:", args.clients);
    println!(
        "      direct   /vectors/add          ack=fsync  {direct_rate:>9.0} vectors/s   1.00x"
    );
    println!(
        "      buffered /vectors/add/buffered ack=buffer {:>9.0} vectors/s  {:>5.1}x  (acknowledged; {:.0}/s = {:.1}x counting the flush that indexes them; seed claim: up to 500x)",
        m as f64 / ack_s,
        direct_s / ack_s,
        m as f64 / buffered_s,
        direct_s / buffered_s,
    );
    // The same vectors into a bare index on one core: buffered ingest against the library.
    let small = bare_index(dim, args)?;
    small.reserve(m)?;
    let small_s = on_server_cpu(server_cpu, || {
        let t = Instant::now();
        for (i, v) in data[..m].iter().enumerate() {
            small.add(i as u64, v).expect("add");
        }
        t.elapsed().as_secs_f64()
    });
    println!(
        "      bare usearch build of the same {m} vectors {:>9.0} vectors/s; buffered ingest incl. flush = {:.2}x of it (target >= 0.8x)",
        m as f64 / small_s,
        small_s / buffered_s
    );

    // (b) build: batches over HTTP vs the bare index in this process.
    post(&client, &format!("{base}/v1/collections"), &create("bench")).await?;
    let batch_bodies: Arc<Vec<String>> = Arc::new(
        data.chunks(args.batch)
            .enumerate()
            .map(|(c, chunk)| {
                let vectors: Vec<Value> = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, v)| entity(c * args.batch + j, v))
                    .collect();
                json!({"vectors": vectors}).to_string()
            })
            .collect(),
    );
    let (ours_build_s, _) = fire(
        &format!("{base}/vectors/add/batch?collection=bench"),
        batch_bodies,
        2,
    )
    .await?;
    let bare = bare_index(dim, args)?;
    bare.reserve(n)?;
    let bare_build_s = on_server_cpu(server_cpu, || {
        let t = Instant::now();
        for (i, v) in data.iter().enumerate() {
            bare.add(i as u64, v).expect("add");
        }
        t.elapsed().as_secs_f64()
    });
    println!("  (b) build the index of {n} vectors");
    println!(
        "      bare usearch, in process           {:>9.0} vectors/s   1.00x",
        n as f64 / bare_build_s
    );
    println!(
        "      sluice /vectors/add/batch ack=fsync {:>9.0} vectors/s  {:>5.2}x  (target >= 0.8x; includes JSON, WAL and HTTP)",
        n as f64 / ours_build_s,
        bare_build_s / ours_build_s
    );

    // (c) search QPS and recall at each ef: the bare index, HTTP and the wire opcode in
    // alternating rounds (the machine's speed drifts; medians are printed).
    let wire = server.wire_addr()?;
    let rounds = args.rounds.max(1);
    let passes = args.passes.max(1);
    println!(
        "  (c) search, k={K}, {} queries x {passes} passes per ef, {rounds} alternating rounds (medians)",
        queries.len(),
    );
    println!(
        "      {:>5}  {:>9} {:>6}  {:>9} {:>6} {:>6}  {:>9} {:>6} {:>6}",
        "ef", "bare q/s", "recall", "http q/s", "recall", "ratio", "wire q/s", "recall", "ratio"
    );
    let queries = Arc::new(queries);
    for &ef in efs {
        let bodies: Arc<Vec<String>> = Arc::new(
            (0..passes)
                .flat_map(|_| queries.iter())
                .map(|q| json!({"vector": q, "k": K, "ef": ef}).to_string())
                .collect(),
        );
        let (mut bare_qps, mut http_qps, mut wire_qps) = (Vec::new(), Vec::new(), Vec::new());
        let (mut bare_recall, mut http_recall, mut wire_recall) = (0.0, 0.0, 0.0);
        for round in 0..rounds {
            let (bare_s, bare_found) = on_server_cpu(server_cpu, || {
                let t = Instant::now();
                let mut found = Vec::new();
                for _ in 0..passes {
                    found = queries
                        .iter()
                        .map(|q| {
                            let m = bare.search(q, K.max(ef)).expect("search");
                            m.keys
                                .iter()
                                .take(K)
                                .map(|k| *k as usize)
                                .collect::<Vec<_>>()
                        })
                        .collect();
                }
                (t.elapsed().as_secs_f64(), found)
            });
            let (http_s, answers) = fire(
                &format!("{base}/vectors/search?collection=bench"),
                bodies.clone(),
                args.clients,
            )
            .await?;
            let http_found: Vec<Vec<usize>> = answers[..queries.len()]
                .iter()
                .map(|a| {
                    a["results"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .filter_map(|h| pk_index(h["pk"].as_str()?))
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect();
            let (wire_s, wire_found) =
                fire_wire(&wire, queries.clone(), passes, ef, args.clients).await?;
            if round == 0 {
                bare_recall = recall(&bare_found, &truth);
                http_recall = recall(&http_found, &truth);
                wire_recall = recall(&wire_found, &truth);
            }
            let total = (passes * queries.len()) as f64;
            bare_qps.push(total / bare_s);
            http_qps.push(total / http_s);
            wire_qps.push(total / wire_s);
        }
        let (bare, http, wire) = (median(bare_qps), median(http_qps), median(wire_qps));
        println!(
            "      {ef:>5}  {bare:>9.0} {bare_recall:>6.3}  {http:>9.0} {http_recall:>6.3} {:>5.2}x  {wire:>9.0} {wire_recall:>6.3} {:>5.2}x",
            http / bare,
            wire / bare,
        );
    }
    drop(server);
    Ok(())
}

/// A bare usearch index with the benchmark's parameters (searches pass `count = max(k, ef)`).
fn bare_index(dim: usize, args: &Args) -> anyhow::Result<Index> {
    Ok(Index::new(&IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: args.m,
        expansion_add: args.ef_construction,
        expansion_search: 1,
        multi: false,
    })?)
}

/// Runs `f` on a thread pinned to the server's CPU (the bare index gets what the server got).
fn on_server_cpu<T: Send>(cpu: Option<usize>, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(cpu) = cpu {
                pin_self(cpu);
            }
            f()
        })
        .join()
        .expect("bench thread")
    })
}
