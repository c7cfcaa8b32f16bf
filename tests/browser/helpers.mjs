// Real `sluice serve` processes on free ports, seeded through the HTTP API, and a headless
// Debian chromium driven by puppeteer-core. The binary is $SLUICE_BIN, else
// <repo>/target/debug/sluice; the browser is $CHROMIUM_BIN, else /usr/bin/chromium.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, accessSync, constants, openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const TOKEN = "browser-test-token-0123456789abcdef";

/** Where screenshots go: docs/images with UPDATE_SCREENSHOTS=1, else tests/browser/artifacts. */
export const SHOT_DIR = process.env.UPDATE_SCREENSHOTS === "1" ? join(REPO, "docs/images") : join(REPO, "tests/browser/artifacts");

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function sluiceBin() {
  const bin = process.env.SLUICE_BIN || join(REPO, "target/debug/sluice");
  accessSync(bin, constants.X_OK);
  return bin;
}

/** Starts a server; `token` turns authentication on. Returns {url, stop(), log()}. */
export async function startServer({ token } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "sluice-browser-"));
  const data = join(dir, "data");
  const logPath = join(dir, "server.log");
  // Only settings the server knows: it refuses unknown SLUICE_* variables.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SLUICE_")));
  env.SLUICE_WIRE_ADDR = "127.0.0.1:0";
  if (token) env.SLUICE_AUTH_BEARER_TOKEN = token;
  const fd = openSync(logPath, "w");
  const proc = spawn(sluiceBin(), ["serve", "--http-addr", "127.0.0.1:0", "--data-dir", data], { env, stdio: ["ignore", fd, fd] });
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
  while (Date.now() < deadline && !info) {
    if (exited !== null) throw new Error(`sluice serve exited (${exited}): ${log()}`);
    try {
      const d = JSON.parse(readFileSync(join(data, "server.json"), "utf8"));
      if (d.pid === proc.pid) info = d;
    } catch {
      /* not yet */
    }
    if (!info) await sleep(50);
  }
  if (!info) {
    await stop();
    throw new Error(`no server.json in 60 s: ${log()}`);
  }
  const url = `http://${info.http_addr}`;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.status === 200) return { url, stop, log };
    } catch {
      /* not yet */
    }
    await sleep(50);
  }
  await stop();
  throw new Error(`server not ready: ${log()}`);
}

/** JSON call to the API; throws on a non-2xx answer. */
export async function call(base, path, { method = "GET", body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// What the tests write: timestamps from a minute ago to now, every 5 s (13 points a series).
export const HOSTS = [
  { entity: "web1", region: "eu" },
  { entity: "web2", region: "eu" },
  { entity: "db1", region: "us" },
];
export const POINTS_PER_SERIES = 13;

/**
 * Seeds database `default`: cpu_usage (3 hosts × 2 cores = 6 series, tags region/core/env),
 * mem_used_bytes (3 series) and disk_io_ops (2 series); a second database `iot` with one metric;
 * collection `articles` (8-d cosine, 30 vectors with metadata topic/year).
 */
export async function seed(base, token) {
  const now = Date.now();
  const points = [];
  for (let i = 0; i < POINTS_PER_SERIES; i++) {
    const t = now - 60_000 + i * 5_000;
    HOSTS.forEach((hst, hi) => {
      for (const core of ["0", "1"]) {
        const v = 20 + hi * 15 + Number(core) * 6 + 10 * Math.sin(i / 2 + hi) + i * 0.8;
        points.push({ metric: "cpu_usage", entity: hst.entity, timestamp_ms: t, value: Number(v.toFixed(2)), tags: { region: hst.region, core, env: "prod" } });
      }
      points.push({ metric: "mem_used_bytes", entity: hst.entity, timestamp_ms: t, value: 2e9 + hi * 5e8 + i * 1.2e7, tags: { region: hst.region } });
    });
    for (const dev of ["sda", "sdb"]) {
      points.push({ metric: "disk_io_ops", entity: "db1", timestamp_ms: t, value: 300 + (dev === "sda" ? 80 : 0) + 40 * Math.cos(i), tags: { device: dev } });
    }
  }
  await call(base, "/v1/databases/default/ts/put/batch", { method: "POST", body: { points }, token });
  await call(base, "/v1/databases", { method: "POST", body: { name: "iot" }, token });
  await call(base, "/v1/databases/iot/ts/put/batch", {
    method: "POST",
    token,
    body: {
      points: Array.from({ length: POINTS_PER_SERIES }, (_, i) => ({
        metric: "temperature_c",
        entity: "sensor-7",
        timestamp_ms: now - 60_000 + i * 5_000,
        value: 21 + i * 0.1,
        tags: { room: "lab" },
      })),
    },
  });
  await call(base, "/v1/databases/default/v1/collections", { method: "POST", token, body: { name: "articles", dimension: 8, distance: "cosine" } });
  const topics = ["databases", "ml", "ops"];
  const vectors = Array.from({ length: 30 }, (_, i) => ({
    pk: `doc-${i}`,
    vector: Array.from({ length: 8 }, (_, j) => Number((Math.sin(i * 1.7 + j * 0.9) + (j === i % 8 ? 1.5 : 0)).toFixed(4))),
    metadata: { topic: topics[i % 3], year: 2019 + (i % 6), title: `Article ${i}` },
  }));
  await call(base, "/v1/databases/default/vectors/add/batch?collection=articles", { method: "POST", token, body: { vectors } });
  return { now, points: points.length };
}

export function chromiumPath() {
  return process.env.CHROMIUM_BIN || "/usr/bin/chromium";
}

export async function launch() {
  return puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--lang=en-US"],
    defaultViewport: { width: 1280, height: 800 },
    protocolTimeout: 60000,
  });
}

/**
 * A new page (1280×800, light scheme) that records what went wrong: console errors, uncaught
 * exceptions, failed requests (aborted fetches excepted: leaving a view cancels its requests)
 * and HTTP error answers. `problems({allow})` returns them, minus those matching `allow`.
 */
export async function newPage(browser) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "light" }]);
  page.setDefaultTimeout(15000);
  const seen = [];
  const urls = [];
  page.on("console", (m) => {
    if (m.type() === "error") seen.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => seen.push(`pageerror: ${e.message}`));
  page.on("request", (r) => urls.push(r.url()));
  page.on("requestfailed", (r) => {
    const why = r.failure() ? r.failure().errorText : "";
    if (why !== "net::ERR_ABORTED") seen.push(`requestfailed: ${r.url()} ${why}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) seen.push(`http ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  return {
    page,
    urls,
    problems({ allow = [] } = {}) {
      return seen.filter((p) => !allow.some((re) => re.test(p)));
    },
    clear() {
      seen.length = 0;
    },
  };
}

export async function screenshot(page, name) {
  mkdirSync(SHOT_DIR, { recursive: true });
  const path = join(SHOT_DIR, `console-${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** Every form control of the page has an accessible label (a <label>, aria-label or -labelledby). */
export async function unlabelledControls(page) {
  return page.$$eval("input, select, textarea", (els) =>
    els
      .filter((el) => el.type !== "hidden" && !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
      .map((el) => el.outerHTML.slice(0, 120)),
  );
}

/** Text content of one element. */
export const text = (page, sel) => page.$eval(sel, (el) => el.textContent.trim());

/** An attribute, waited for until `pred(value)` holds (default: present and not empty). */
/**
 * `page.waitForSelector(sel)`, failing with what the page shows instead (its main view's text
 * and the console's errors), so a timeout says why the element never came.
 */
export async function waitShown(page, sel, timeout = 30000) {
  try {
    return await page.waitForSelector(sel, { timeout });
  } catch (e) {
    const shown = await page
      .$eval("main", (m) => `${m.dataset.view || "?"} (aria-busy=${m.getAttribute("aria-busy")}): ${m.innerText.slice(0, 1500)}`)
      .catch((err) => `(no main: ${err.message})`);
    throw new Error(`${sel} not shown after ${timeout} ms at ${page.url()}; the page shows: ${shown}`, { cause: e });
  }
}

export async function waitAttr(page, sel, attr, pred = (v) => v !== null && v !== "", timeout = 15000) {
  const deadline = Date.now() + timeout;
  let last = null;
  while (Date.now() < deadline) {
    last = await page.$eval(sel, (el, a) => el.getAttribute(a), attr).catch(() => null);
    if (pred(last)) return last;
    await sleep(50);
  }
  throw new Error(`${sel}[${attr}] is ${JSON.stringify(last)} after ${timeout} ms`);
}
