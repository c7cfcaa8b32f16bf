// Real `sluice serve` processes on free ports with temporary data directories.
// The binary is $SLUICE_BIN, else <repo>/target/release/sluice, else target/debug/sluice.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, accessSync, constants, openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const TOKEN = "ts-client-test-token-0123456789";

export function sluiceBin() {
  const env = process.env.SLUICE_BIN;
  const candidates = env ? [env] : [join(REPO, "target/release/sluice"), join(REPO, "target/debug/sluice")];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {}
  }
  throw new Error(`no sluice binary (SLUICE_BIN=${env ?? ""}); tried ${candidates.join(", ")}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts a server; `env` adds SLUICE_* settings. Returns {url, wireAddr, stop(), log()}. */
export async function startServer({ env = {}, token } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "sluice-ts-"));
  const data = join(dir, "data");
  const logPath = join(dir, "server.log");
  const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SLUICE_")));
  Object.assign(childEnv, { SLUICE_WIRE_ADDR: "127.0.0.1:0", ...env });
  if (token) childEnv.SLUICE_AUTH_BEARER_TOKEN = token;
  const fd = openSync(logPath, "w");
  const proc = spawn(sluiceBin(), ["serve", "--http-addr", "127.0.0.1:0", "--data-dir", data], {
    env: childEnv,
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  let exited = null;
  proc.on("exit", (code, sig) => (exited = code ?? sig));
  const log = () => {
    try {
      return readFileSync(logPath, "utf8").slice(-3000);
    } catch {
      return "";
    }
  };
  const stop = async () => {
    if (exited === null) {
      proc.kill("SIGTERM");
      const t = Date.now();
      while (exited === null && Date.now() - t < 15000) await sleep(20);
      if (exited === null) proc.kill("SIGKILL");
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60000;
  let info;
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error(`sluice serve exited (${exited}): ${log()}`);
    try {
      const d = JSON.parse(readFileSync(join(data, "server.json"), "utf8"));
      if (d.pid === proc.pid) {
        info = d;
        break;
      }
    } catch {}
    await sleep(50);
  }
  if (!info) {
    await stop();
    throw new Error(`no server.json in 60 s: ${log()}`);
  }
  const url = `http://${info.http_addr}`;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url + "/readyz");
      if (r.status === 200) return { url, wireAddr: info.wire_addr, stop, log, pid: proc.pid };
    } catch {}
    await sleep(50);
  }
  await stop();
  throw new Error(`server not ready: ${log()}`);
}

/** A name no other test uses. */
export const uniq = (prefix = "m") => `${prefix}_${randomBytes(5).toString("hex")}`;

/** Calls fn until ok(result) or timeout ms; returns the last result. */
export async function settle(fn, ok, timeout = 5000) {
  const deadline = Date.now() + timeout;
  let r = await fn();
  while (!ok(r) && Date.now() < deadline) {
    await sleep(100);
    r = await fn();
  }
  return r;
}

export const FULL_ENV = {
  SLUICE_FEATURES_TS_AUTO_BUFFER_MAX_POINTS_PER_BUFFER: "10000000",
  SLUICE_FEATURES_TS_AUTO_BUFFER_MAX_BUFFER_BYTES: "20000",
  SLUICE_FEATURES_TS_AUTO_BUFFER_OVERFLOW_BUFFER_BYTES: "40000",
  SLUICE_FEATURES_TS_AUTO_BUFFER_FLUSH_INTERVAL_MS: "400",
};

/** Other writers filling a FULL_ENV server's buffer until `state.stop` (bounded in time). */
export async function pressure(Client, NO_RETRY, url, state, workers = 2) {
  const c = new Client(url, { retry: NO_RETRY });
  const pts = Array.from({ length: 2000 }, (_, i) => ({ metric: "pressure", entity: "p", value: i, timestamp_ms: 1_700_000_000_000 + i }));
  const deadline = Date.now() + 60000;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (!state.stop && Date.now() < deadline) {
        try {
          await c.timeseries.putBatch(pts, { ack: "buffer" });
        } catch {
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    }),
  );
}
