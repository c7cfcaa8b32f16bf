//! Shared pieces of the benchmarks: starting a release `sluice` server (and reference servers),
//! CPU pinning, timing loops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A server process started by a benchmark; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// SIGINT, then waits (up to 60 s) for the process to exit, so it writes out what it holds.
    pub fn stop_gracefully(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Prefixes `cmd` with `taskset -c CPU` when `cpu` is given.
pub fn pinned(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Pins the calling process (all its future threads) to `cpu`.
pub fn pin_self(cpu: usize) {
    // SAFETY: plain libc calls on a zeroed cpu_set_t owned by this frame.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Starts `sluice serve` on a fresh directory under `scratch` and waits until it is ready.
pub async fn start_sluice(
    binary: &Path,
    scratch: &Path,
    env: &[(&str, &str)],
    cpu: Option<usize>,
) -> anyhow::Result<Server> {
    let data_dir = tempfile::tempdir_in(scratch)?.keep();
    let mut cmd = pinned(binary, cpu);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--http-addr", "127.0.0.1:0"])
        .env("SLUICE_LOG_LEVEL", "warn")
        .env("SLUICE_WIRE_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut server = Server {
        child,
        base: String::new(),
        data_dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = reqwest::Client::new();
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("sluice exited during start: {status}");
        }
        if let Ok(text) = std::fs::read_to_string(server.data_dir.join("server.json"))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(addr) = v["http_addr"].as_str()
        {
            server.base = format!("http://{addr}");
            if let Ok(r) = client.get(format!("{}/readyz", server.base)).send().await
                && r.status() == 200
            {
                return Ok(server);
            }
        }
        if Instant::now() > deadline {
            bail!("sluice not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port (for servers that cannot report theirs).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Bytes of all files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
