//! Front-door benchmark: what one request costs, against references measured in the same run.
//!
//! With the server on CPU 0 and the load (`wrk -t1 -c32`) on CPU 1, alternating targets round
//! by round (`--rounds`, medians printed):
//! (a) `GET /healthz`: nginx (`return 200`, a config written here), bare axum (`bare_axum`,
//!     same axum version, no middleware) and Sluice — req/s, p50/p99, the server's context
//!     switches per request, and Sluice/nginx;
//! (b) `POST /ts/put/buffered` with the seed's point JSON: bare axum parsing it into a struct
//!     and answering a small JSON, Sluice with auth off, and Sluice with one bearer token
//!     configured (each request authenticated) — and Sluice/bare;
//! (c) one client, one request at a time on a keep-alive connection: direct `/ts/put`
//!     (`ack=fsync`) against buffered `/ts/put/buffered` (`ack=buffer`), and the bare axum
//!     echo's round trip on the same loopback (the floor any server has here).
//!
//! Run: `cargo build --release -p sluice -p sluice-bench && target/release/front_bench`
//! (needs `apt-get install nginx-light wrk`).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use sluice_bench::{Server, free_port, pinned, place_on_cpus, sequential, start_sluice};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    #[arg(long, default_value = "target/release/bare_axum")]
    bare: PathBuf,
    #[arg(long, default_value = "nginx")]
    nginx: PathBuf,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Alternating rounds; medians are printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Scratch directory.
    #[arg(long, default_value = "target/bench-scratch")]
    dir: PathBuf,
}

const POINT: &str =
    r#"{"metric":"cpu","entity":"e1","timestamp_ms":1700000000000,"value":1.5,"tags":{"dc":"eu"}}"#;
const TOKEN: &str = "front-bench-token-0123456789abcdef";

/// A process stopped when dropped: SIGTERM first (nginx's master then stops its workers; a
/// SIGKILL would orphan them), SIGKILL if it is still there after two seconds.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process by its pid.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn start_nginx(binary: &Path, dir: &Path, cpu: Option<usize>) -> anyhow::Result<(Proc, u16)> {
    let port = free_port()?;
    let dir = std::path::absolute(dir.join("nginx"))?;
    std::fs::create_dir_all(&dir)?;
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{ return 200 \"ok\"; }}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let mut cmd = pinned(binary, cpu);
    cmd.arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().context("starting nginx")?;
    let proc = Proc(child);
    wait_for_port(port)?;
    Ok((proc, port))
}

fn start_bare(binary: &Path, cpu: Option<usize>) -> anyhow::Result<(Proc, u16)> {
    let port = free_port()?;
    let mut cmd = pinned(binary, cpu);
    cmd.arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null());
    let proc = Proc(cmd.spawn().context("starting bare_axum")?);
    wait_for_port(port)?;
    Ok((proc, port))
}

/// Context switches (voluntary and not) of every thread of `pid` and of its children.
fn context_switches(pid: u32) -> u64 {
    let mut pids = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may hold spaces: split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid)
                && let Ok(child) = e.file_name().to_string_lossy().parse::<u32>()
            {
                pids.push(child);
            }
        }
    }
    let mut total = 0;
    for p in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
                continue;
            };
            for line in status.lines() {
                if let Some(v) = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    total += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    total
}

/// One wrk run's figures.
#[derive(Clone, Copy, Default)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    switches_per_request: f64,
}

fn latency_us(s: &str) -> Option<f64> {
    let (n, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    n.parse::<f64>().ok().map(|v| v * scale)
}

/// Runs wrk against `url` (a POST of `body` when given, with `headers`), pinned to the load
/// CPU, counting the context switches of the server process `pid`.
fn wrk(
    args: &Args,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
    pid: u32,
    load_cpu: Option<usize>,
) -> anyhow::Result<Run> {
    let script = args.dir.join(format!("wrk-{}.lua", std::process::id()));
    let mut lua = String::new();
    if let Some(body) = body {
        lua.push_str("wrk.method = \"POST\"\n");
        lua.push_str(&format!("wrk.body = [[{body}]]\n"));
        lua.push_str("wrk.headers[\"Content-Type\"] = \"application/json\"\n");
    }
    for (k, v) in headers {
        lua.push_str(&format!("wrk.headers[\"{k}\"] = \"{v}\"\n"));
    }
    std::fs::write(&script, lua)?;
    let mut cmd = pinned(Path::new("wrk"), load_cpu);
    cmd.args(["-t1", &format!("-c{}", args.connections)])
        .arg(format!("-d{}s", args.seconds))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(url);
    let before = context_switches(pid);
    let out = cmd.output().context("running wrk")?;
    let after = context_switches(pid);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") {
        bail!("wrk against {url} failed: {text}");
    }
    let mut run = Run::default();
    let mut requests = 0u64;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => run.rps = v.parse()?,
            ["50%", v] => run.p50_us = latency_us(v).unwrap_or(0.0),
            ["99%", v] => run.p99_us = latency_us(v).unwrap_or(0.0),
            [n, "requests", "in", ..] => requests = n.parse()?,
            _ => {}
        }
    }
    if requests == 0 {
        bail!("wrk against {url} made no request: {text}");
    }
    run.switches_per_request = (after - before) as f64 / requests as f64;
    Ok(run)
}

fn median(runs: &[Run]) -> Run {
    let pick = |f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Run {
        rps: pick(|r| r.rps),
        p50_us: pick(|r| r.p50_us),
        p99_us: pick(|r| r.p99_us),
        switches_per_request: pick(|r| r.switches_per_request),
    }
}

fn print(name: &str, r: &Run, ratio: Option<(f64, &str)>) {
    let ratio = ratio.map_or(String::new(), |(x, of)| format!("  {x:>5.2}x {of}"));
    println!(
        "    {name:<26} {:>9.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  {:>5.2} ctx/req{ratio}",
        r.rps, r.p50_us, r.p99_us, r.switches_per_request
    );
}

/// A target of a section: its URL, server pid, body and headers.
struct Target<'a> {
    url: String,
    pid: u32,
    body: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
}

/// Runs every target once per round, alternating; medians per target.
fn section(args: &Args, targets: &[Target], load_cpu: Option<usize>) -> anyhow::Result<Vec<Run>> {
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    for _ in 0..args.rounds {
        for (t, runs) in targets.iter().zip(runs.iter_mut()) {
            runs.push(wrk(args, &t.url, t.body, &t.headers, t.pid, load_cpu)?);
        }
    }
    Ok(runs.iter().map(|r| median(r)).collect())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let (server_cpu, load_cpu) = place_on_cpus();
    println!(
        "front-door benchmark: wrk -t1 -c{} -d{}s, {} alternating rounds (medians), servers on cpu {server_cpu:?}, load on cpu {load_cpu:?}",
        args.connections, args.seconds, args.rounds
    );
    let (nginx, nginx_port) = start_nginx(&args.nginx, &args.dir, server_cpu)?;
    let (bare, bare_port) = start_bare(&args.bare, server_cpu)?;
    let open: Server = start_sluice(&args.sluice, &args.dir, &[], server_cpu).await?;
    let secured: Server = start_sluice(
        &args.sluice,
        &args.dir,
        &[("SLUICE_BEARER_TOKEN", TOKEN)],
        server_cpu,
    )
    .await?;
    let bearer = format!("Bearer {TOKEN}");

    println!("(a) GET /healthz");
    let health = section(
        &args,
        &[
            Target {
                url: format!("http://127.0.0.1:{nginx_port}/healthz"),
                pid: nginx.0.id(),
                body: None,
                headers: vec![],
            },
            Target {
                url: format!("http://127.0.0.1:{bare_port}/healthz"),
                pid: bare.0.id(),
                body: None,
                headers: vec![],
            },
            Target {
                url: format!("{}/healthz", open.base),
                pid: open.child.id(),
                body: None,
                headers: vec![],
            },
        ],
        load_cpu,
    )?;
    print("nginx return 200", &health[0], Some((1.0, "")));
    print(
        "bare axum",
        &health[1],
        Some((health[1].rps / health[0].rps, "of nginx")),
    );
    print(
        "sluice",
        &health[2],
        Some((health[2].rps / health[0].rps, "of nginx (target >= 0.95)")),
    );

    println!("(b) POST /ts/put/buffered, the seed's point JSON");
    let put = section(
        &args,
        &[
            Target {
                url: format!("http://127.0.0.1:{bare_port}/ts/put/buffered"),
                pid: bare.0.id(),
                body: Some(POINT),
                headers: vec![],
            },
            Target {
                url: format!("{}/ts/put/buffered", open.base),
                pid: open.child.id(),
                body: Some(POINT),
                headers: vec![],
            },
            Target {
                url: format!("{}/ts/put/buffered", secured.base),
                pid: secured.child.id(),
                body: Some(POINT),
                headers: vec![("Authorization", &bearer)],
            },
        ],
        load_cpu,
    )?;
    print("bare axum echo", &put[0], Some((1.0, "")));
    print(
        "sluice, auth off",
        &put[1],
        Some((put[1].rps / put[0].rps, "of bare (target >= 0.9)")),
    );
    print(
        "sluice, bearer token",
        &put[2],
        Some((put[2].rps / put[0].rps, "of bare (target >= 0.8)")),
    );

    println!("(c) one client, one request at a time (keep-alive)");
    let (mut direct, mut buffered, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let half = args.seconds as f64 / 2.0;
    let one = POINT.replace("1700000000000", "0");
    for _ in 0..args.rounds {
        direct.push(sequential(&open.base, "/ts/put", &one, half)?);
        buffered.push(sequential(&open.base, "/ts/put/buffered", &one, half)?);
        floor.push(sequential(
            &format!("http://127.0.0.1:{bare_port}"),
            "/ts/put/buffered",
            &one,
            half,
        )?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, b, f) = (median(direct), median(buffered), median(floor));
    println!(
        "    direct   /ts/put ack=fsync        {d:>9.0} req/s  {:>7.1} µs a round trip",
        1e6 / d
    );
    println!(
        "    buffered /ts/put/buffered        {b:>9.0} req/s  {:>7.1} µs a round trip  {:>5.2}x direct (target >= 10)",
        1e6 / b,
        b / d
    );
    println!(
        "    bare axum echo (the floor)       {f:>9.0} req/s  {:>7.1} µs a round trip  {:>5.2}x direct; buffered = {:.2}x of it",
        1e6 / f,
        f / d,
        b / f
    );
    Ok(())
}
