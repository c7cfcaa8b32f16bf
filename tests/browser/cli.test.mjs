// The `sluice` command line in a terminal: a server on free loopback ports, `sluice import` of a
// 300k-line line protocol file inside a pseudo-terminal (util-linux `script`, 100 columns) so
// the progress bar draws, then `sluice query` (a table and a sparkline), database and
// collection management, `sluice status`, and an import with a bad line (exit 1, the line
// named, --rejects). Each transcript is rendered as a dark terminal page in chromium and
// screenshotted: tests/browser/artifacts/cli-*.png, or docs/images/cli-*.png with
// UPDATE_SCREENSHOTS=1 (the images of docs/cli.md).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync, openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launch, sluiceBin, sleep, SHOT_DIR } from "./helpers.mjs";

const SCRIPT = "/usr/bin/script";
const COLS = 100;

let dir; // working directory of every command (so paths print short)
let server; // {url, wire, stop}
let browser;
let t0; // start of the imported hour (ms, a whole minute)
const children = new Set(); // `script` processes still running

/** A server with its own data directory; HTTP and wire on free ports. */
async function startServer() {
  const data = join(dir, "data");
  const logPath = join(dir, "server.log");
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SLUICE_")));
  const fd = openSync(logPath, "w");
  const proc = spawn(sluiceBin(), ["serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--wire-addr", "127.0.0.1:0"], {
    env,
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  let exited = null;
  proc.on("exit", (code, sig) => (exited = code ?? sig));
  const log = () => readFileSync(logPath, "utf8").slice(-3000);
  const stop = async () => {
    if (exited !== null) return;
    proc.kill("SIGTERM");
    const t = Date.now();
    while (exited === null && Date.now() - t < 15000) await sleep(20);
    if (exited === null) proc.kill("SIGKILL");
  };
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error(`sluice serve exited (${exited}): ${log()}`);
    try {
      const info = JSON.parse(readFileSync(join(data, "server.json"), "utf8"));
      if (info.pid === proc.pid) {
        const url = `http://${info.http_addr}`;
        const r = await fetch(`${url}/readyz`);
        if (r.status === 200) return { url, wire: info.wire_addr, stop };
      }
    } catch {
      /* not yet */
    }
    await sleep(50);
  }
  await stop();
  throw new Error(`server not ready in 30 s: ${log()}`);
}

/**
 * Runs `sluice <args>` in a pseudo-terminal of COLS columns (`script -qfec`), in `dir`, with
 * SLUICE_URL set to the server. Returns {out, code}: everything the terminal received
 * (stdout and stderr, as raw bytes decoded) and the exit code.
 */
function inTerminal(args, { timeout = 30000 } = {}) {
  const quoted = args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
  const cmd = `stty cols ${COLS} rows 40; exec '${sluiceBin()}' ${quoted}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SLUICE_") && k !== "RUST_BACKTRACE"));
  Object.assign(env, { SLUICE_URL: server.url, TERM: "xterm-256color", COLUMNS: String(COLS), LINES: "40", SHELL: "/bin/sh", LC_ALL: "C.UTF-8" });
  return new Promise((resolve, reject) => {
    const p = spawn(SCRIPT, ["-qfec", cmd, "/dev/null"], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
    children.add(p);
    const chunks = [];
    p.stdout.on("data", (c) => chunks.push(c));
    p.stderr.on("data", (c) => chunks.push(c));
    const timer = setTimeout(() => {
      p.kill("SIGKILL");
      reject(new Error(`sluice ${args.join(" ")}: no exit in ${timeout} ms:\n${Buffer.concat(chunks).toString("utf8")}`));
    }, timeout);
    p.on("error", (e) => {
      clearTimeout(timer);
      children.delete(p);
      reject(e);
    });
    p.on("close", (code) => {
      clearTimeout(timer);
      children.delete(p);
      resolve({ out: Buffer.concat(chunks).toString("utf8"), code });
    });
  });
}

/**
 * What a terminal shows of `raw` once it is done: control sequences stripped, and a line
 * rewritten in place with \r (the progress bar's frames, then the summary over them) kept as
 * its last two states: the bar's last frame, then what replaced it.
 */
export function screenLines(raw) {
  const s = raw
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "") // CSI: colours, cursor, erase
    .replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, "") // OSC
    .replace(/\x1b[()][0-9A-Za-z]|\x1b[=>78]/g, "")
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, (c) => (c === "\r" ? c : ""))
    .replace(/\r+\n/g, "\n");
  const out = [];
  for (const line of s.split("\n")) {
    const states = line.split("\r").filter((p) => p.trim() !== "");
    if (states.length <= 1) out.push((states[0] ?? "").trimEnd());
    else out.push(...states.slice(-2).map((p) => p.trimEnd()));
  }
  while (out.length && out[out.length - 1] === "") out.pop();
  return out;
}

const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * A dark terminal window holding `blocks` ({cmd, lines, code}) as a shell session would show
 * them: the prompt and command, the output, a dim note of a non-zero exit status.
 */
function terminalPage(title, blocks) {
  const body = blocks
    .map(({ cmd, lines, code }) => {
      let h = `<span class="ps">$</span> <span class="cmd">${esc(cmd)}</span>\n`;
      if (lines.length) h += esc(lines.join("\n")) + "\n";
      if (code) h += `<span class="exit">[exit ${code}]</span>\n`;
      return h;
    })
    .join("");
  return `<!doctype html><html><head><meta charset="utf-8"><style>
  html, body { margin: 0; background: #ffffff; }
  .win { display: inline-block; margin: 12px; border-radius: 8px; overflow: hidden;
         box-shadow: 0 4px 18px rgba(0,0,0,.35); background: #1d1f21; }
  .bar { height: 30px; background: #3a3d41; display: flex; align-items: center; padding: 0 12px;
         font: 13px "DejaVu Sans", sans-serif; color: #c5c8c6; }
  .dot { width: 12px; height: 12px; border-radius: 50%; margin-right: 7px; }
  .title { margin-left: 14px; }
  pre { margin: 0; padding: 14px 18px 16px; color: #d4d4d4; min-width: ${COLS}ch;
        font: 14px/1.42 "DejaVu Sans Mono", monospace; white-space: pre; }
  .ps { color: #8ae234; font-weight: bold; }
  .cmd { color: #ffffff; font-weight: bold; }
  .exit { color: #8a8f98; }
  </style></head><body><div class="win" id="win"><div class="bar">
  <span class="dot" style="background:#ff5f56"></span><span class="dot" style="background:#ffbd2e"></span>
  <span class="dot" style="background:#27c93f"></span><span class="title">${esc(title)}</span></div>
  <pre>${body}</pre></div></body></html>`;
}

/** Renders the session in chromium and saves cli-<name>.png; returns its path. */
async function shoot(name, title, blocks) {
  const page = await browser.newPage();
  try {
    await page.setViewport({ width: 1100, height: 300, deviceScaleFactor: 1 });
    await page.setContent(terminalPage(title, blocks), { waitUntil: "load" });
    await page.evaluate(() => document.fonts.ready);
    const win = await page.$("#win");
    const box = await win.boundingBox();
    mkdirSync(SHOT_DIR, { recursive: true });
    const path = join(SHOT_DIR, `cli-${name}.png`);
    // The window and its shadow.
    await page.screenshot({
      path,
      clip: { x: 0, y: 0, width: Math.ceil(box.x + box.width + 12), height: Math.ceil(box.y + box.height + 12) },
      captureBeyondViewport: true,
    });
    // The rendered text is what the terminal showed.
    const shown = await page.$eval("pre", (el) => el.textContent);
    for (const b of blocks) for (const l of b.lines) assert.ok(shown.includes(l), `rendered page lacks ${JSON.stringify(l)}`);
    return path;
  } finally {
    await page.close();
  }
}

/** The "sluice …" command as a user types it (the binary's path shortened). */
const typed = (args) => ["sluice", ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a}'`)).join(" ");

/** The line protocol file: 5 hosts × 60 000 points over one hour (every 60 ms), 300 000 lines. */
function writeMetrics(path) {
  const hosts = ["web1", "web2", "web3", "db1", "db2"];
  const lines = [];
  let seed = 42;
  const noise = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648 - 0.5;
  };
  for (let i = 0; i < 60000; i++) {
    const t = t0 + i * 60;
    hosts.forEach((h, k) => {
      const v = 45 + k * 4 + 22 * Math.sin((2 * Math.PI * (i * 60)) / 2_400_000 + k) + 6 * noise();
      lines.push(`cpu,host=${h},region=${k < 3 ? "eu" : "us"} usage=${v.toFixed(2)} ${t}000000`);
    });
  }
  writeFileSync(path, lines.join("\n") + "\n");
  return lines.length;
}

before(async () => {
  assert.ok(execFileSync(SCRIPT, ["--version"]).toString().includes("util-linux"), "util-linux script is needed");
  dir = mkdtempSync(join(tmpdir(), "sluice-cli-"));
  t0 = Math.floor(Date.now() / 60000) * 60000 - 3_600_000;
  server = await startServer();
  browser = await launch();
});

after(async () => {
  for (const p of children) p.kill("SIGKILL");
  if (browser) await browser.close();
  if (server) await server.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("sluice import: progress bar on a terminal, the summary, and a refused line named (exit 1)", async () => {
  const n = writeMetrics(join(dir, "metrics.lp"));
  assert.equal(n, 300000);
  const args = ["import", "metrics.lp", "--wire", server.wire];
  const run = await inTerminal(args, { timeout: 45000 });
  assert.equal(run.code, 0, run.out);
  // The bar: points, points/s and the ETA; redrawn in place.
  assert.match(run.out, /\r/);
  assert.match(run.out, /[\d.]+k? points, [\d.]+[kM]?\/s\s+ETA \d/, run.out.slice(0, 2000));
  const summary = /imported 300000 points from 300000 lines in [\d.]+ s \([\d.]+[kM]? points\/s\); 0 lines refused/;
  assert.match(run.out, summary);
  const lines = screenLines(run.out);
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(lines[0], /\d\d:\d\d:\d\d \[[=> ]+\] [\d.]+ (B|KiB|MiB)\/15\.\d+ MiB +[\d.]+k? points, [\d.]+k?\/s +ETA \d/, "the bar's last frame");
  assert.match(lines[1], summary);

  // A file with a line that is not line protocol: the rest is imported, the line is named.
  writeFileSync(
    join(dir, "readings.lp"),
    [
      "weather,entity=station-1 temp=21.5,humidity=40i 1714557600000000000",
      "weather,entity=station-1 temp=21.9,humidity=41i 1714557660000000000",
      "weather,entity=station-1 temp=twenty-two 1714557720000000000",
      "weather,entity=station-1 temp=22.4,humidity=43i 1714557780000000000",
    ].join("\n") + "\n",
  );
  // --quiet: no bar (on so small a file it would show only the bytes read, 0 points acknowledged).
  const badArgs = ["import", "readings.lp", "--wire", server.wire, "--rejects", "rejected.txt", "--quiet"];
  const bad = await inTerminal(badArgs);
  assert.equal(bad.code, 1, bad.out);
  const badLines = screenLines(bad.out);
  assert.doesNotMatch(bad.out, /ETA/);
  assert.match(badLines.join("\n"), /imported 6 points from 3 lines in [\d.]+ s \([\d.]+k? points\/s\); 1 lines refused/);
  assert.match(badLines.join("\n"), /^ {2}readings\.lp:3: column \d+: .*temp=twenty-two/m);
  assert.match(readFileSync(join(dir, "rejected.txt"), "utf8"), /^readings\.lp:3: .*temp=twenty-two/);

  await shoot("import", "sluice import", [
    { cmd: typed(args), lines, code: run.code },
    { cmd: typed(badArgs), lines: badLines, code: bad.code },
  ]);
});

test("sluice query: a table of one series and its sparkline", async () => {
  const args = [
    "query", "--metric", "cpu_usage", "--entity", "web1", "--aggregation", "max", "--step-ms", "180000",
    "--from-ms", String(t0), "--to-ms", String(t0 + 3_600_000 - 1),
  ];
  const run = await inTerminal(args);
  assert.equal(run.code, 0, run.out);
  const lines = screenLines(run.out);
  assert.match(lines[0], /^metric +entity +tags +time +value$/);
  assert.match(lines[1], /^-+ +-+ +-+ +-+ +-+$/);
  const rows = lines.filter((l) => l.startsWith("cpu_usage "));
  assert.equal(rows.length, 20, lines.join("\n"));
  for (const r of rows) assert.match(r, /^cpu_usage +web1 +host=web1,region=eu +\d{4}-\d\d-\d\dT\d\d:\d\d:00Z +[\d.]+$/);
  assert.ok(lines.includes("(1 series, 20 points)"), lines.join("\n"));
  assert.match(lines[lines.length - 1], /^[▁▂▃▄▅▆▇█]{20} {2}min [\d.]+ max [\d.]+$/);
  await shoot("query", "sluice query", [{ cmd: typed(args), lines, code: run.code }]);
});

/** Whether `sluice status` counts every point imported into `default` (flushed + buffered). */
function holdsAll(out) {
  const m = out.match(/^default +(\d+) +(\d+)/m);
  return m !== null && Number(m[1]) + Number(m[2]) === 300000 + 6;
}

test("sluice db / collection / status: management and the server on one screen", async () => {
  const blocks = [];
  for (const args of [
    ["db", "create", "iot", "--retention-ms", "604800000"],
    ["collection", "create", "articles", "--dimension", "384", "--distance", "cosine"],
    ["db", "list"],
    ["status"],
  ]) {
    let run = await inTerminal(args);
    // A flush in progress holds points that are in neither column for a moment: ask again.
    for (let i = 0; args[0] === "status" && i < 20 && !holdsAll(run.out); i++) {
      await sleep(100);
      run = await inTerminal(args);
    }
    assert.equal(run.code, 0, `${args.join(" ")}: ${run.out}`);
    blocks.push({ cmd: typed(args), lines: screenLines(run.out), code: run.code });
  }
  const [created, coll, list, status] = blocks.map((b) => b.lines.join("\n"));
  assert.equal(created, "created database iot");
  assert.equal(coll, "created collection articles in database default");
  assert.match(list, /^name +retention_ms +max_series +max_new_series_per_hour +has_policy\n-+ +-+ +-+ +-+ +-+\ndefault +0 +1000000 +0 +false\niot +604800000 +1000000 +0 +false$/);
  assert.match(status, new RegExp(`^sluice \\S+ at ${server.url.replace(/\./g, "\\.")} +role primary +epoch \\d+ +ready$`, "m"));
  assert.match(status, /^database +points flushed +ts buffer +collections +vectors +vector buffer$/m);
  assert.match(status, /^default +\d+ +\d+ +1 +0 +0$/m);
  assert.match(status, /^iot +0 +0 +0 +0 +0$/m);
  assert.match(status, /^replicas: none$/m);
  // What the server holds: every imported point of the default database is flushed or buffered.
  assert.ok(holdsAll(status), status);
  await shoot("status", "sluice db, collection and status", blocks);
});
