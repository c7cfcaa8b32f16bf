// Live: the server's own metrics (`/metrics`, parsed here) every 2 s: ingest rates from counter
// deltas, buffer sizes, WAL fsync latency from its histogram, and replication lag.
import { api } from "./api.js";
import { h, section, table, showError, fmtNum, fmtMs } from "./ui.js";
import { parseMetrics, sum, labelSet, histogram, histogramDelta, quantile } from "./prom.js";
import { sparkline, color } from "./chart.js";

export const title = "Live";

const INTERVAL_MS = 2000;

const TILES = [
  { id: "ingest", title: "Time-series ingest", unit: "points/s", series: ["points/s"] },
  { id: "vector-ops", title: "Vector writes", unit: "ops/s", series: ["ops/s"] },
  { id: "http", title: "HTTP requests", unit: "req/s", series: ["req/s"], all: true },
  { id: "ts-buffer", title: "Time-series buffer", unit: "points", series: ["points"] },
  { id: "vec-buffer", title: "Vector buffer", unit: "ops", series: ["ops"] },
  { id: "wal-queue", title: "WAL queue", unit: "records", series: ["records"] },
  { id: "fsync", title: "WAL fsync latency", unit: "ms p99", series: ["p50 ms", "p99 ms"] },
  { id: "repl-lag", title: "Replication lag", unit: "ms (max)", series: ["lag ms"], all: true },
];

function rate(cur, prev, dt) {
  if (cur === null || prev === null || dt <= 0) return null;
  const d = cur - prev;
  return (d >= 0 ? d : cur) / dt; // a restart resets counters
}

/** Numbers of one database (or all) from one scrape. */
function snapshot(samples, db) {
  const f = db ? { db } : undefined;
  return {
    points: sum(samples, "ts_auto_buffer_points_buffered_total", f),
    vecOps: sum(samples, "vector_auto_buffer_vectors_buffered_total", f),
    walAppends: sum(samples, "wal_appends_total", f),
    tsBuffer: sum(samples, "ts_auto_buffer_current_size", f),
    vecBuffer: sum(samples, "vector_auto_buffer_current_size", f),
    walQueue: sum(samples, "wal_queue_depth", f),
    fsync: histogram(samples, "wal_fsync_seconds", f),
    lsn: sum(samples, "wal_last_lsn", f),
    segments: sum(samples, "wal_segments", f),
    storageFull: sum(samples, "wal_storage_full", f),
  };
}

export async function render(root, ctx) {
  const { db, signal } = ctx;
  const status = h("span", { id: "live-status", class: "muted" }, "Reading /metrics…");
  const pause = h("button", { type: "button", "aria-pressed": "false" }, "Pause");
  root.append(
    h(
      "div",
      { class: "view-head" },
      h("h1", null, "Live"),
      h("p", { class: "muted" }, `Database `, h("strong", null, db), ` · from the server's /metrics, every ${INTERVAL_MS / 1000} s`),
      h("div", { class: "toolbar" }, pause, status),
    ),
  );
  const grid = h("div", { class: "tiles" });
  root.append(grid);
  const tiles = {};
  for (const t of TILES) {
    const val = h("span", { class: "val", "data-value": "" }, "—");
    const sub = h("div", { class: "sub" });
    const spark = h("div", { class: "spark", "aria-hidden": "true" });
    const el = h(
      "section",
      { class: "tile", id: `live-${t.id}`, "aria-label": t.title },
      h("h2", null, t.title, t.all ? "" : h("span", { class: "muted" }, ` · ${db}`)),
      h("div", { class: "big" }, val, " ", h("span", { class: "unit" }, t.unit)),
      sub,
      spark,
    );
    grid.append(el);
    tiles[t.id] = { el, val, sub, spark, def: t, chart: null };
  }
  const perDb = section("Per database");
  root.append(perDb);

  // Sparklines are made once the tiles have their width.
  requestAnimationFrame(() => {
    if (signal.aborted) return;
    for (const t of Object.values(tiles)) {
      t.chart = sparkline(t.spark, { labels: t.def.series, colors: t.def.series.map((_, i) => color(i)) });
    }
  });
  ctx.onCleanup(() => {
    for (const t of Object.values(tiles)) if (t.chart) t.chart.destroy();
  });

  const set = (id, value, text, sub) => {
    const t = tiles[id];
    t.val.textContent = text ?? fmtNum(value);
    t.val.dataset.value = value === null || value === undefined ? "" : String(value);
    if (sub !== undefined) t.sub.textContent = sub;
  };
  const push = (id, tSec, ...vals) => {
    if (tiles[id].chart) tiles[id].chart.push(tSec, ...vals);
  };

  let prev = null;
  let samplesTaken = 0;
  let paused = false;
  let timer = null;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) tick();
    else clearTimeout(timer);
  });
  ctx.onCleanup(() => clearTimeout(timer));

  async function tick() {
    clearTimeout(timer);
    if (signal.aborted) return;
    const now = Date.now();
    let text;
    let repl = null;
    try {
      [text, repl] = await Promise.all([
        api("/metrics", { text: true, signal }),
        api("/api/v1/replication/stats", { signal }).catch((e) => (e.name === "AbortError" ? Promise.reject(e) : { error: e })),
      ]);
    } catch (e) {
      if (signal.aborted) return;
      showError(e, "Live: /metrics");
      status.textContent = `Failed at ${new Date(now).toLocaleTimeString()}; retrying`;
      timer = setTimeout(tick, INTERVAL_MS * 2);
      return;
    }
    if (signal.aborted) return;
    const samples = parseMetrics(text);
    const dbs = labelSet(samples, "wal_appends_total", "db");
    const cur = { t: now, sel: snapshot(samples, db), http: sum(samples, "http_requests_total"), per: {} };
    for (const d of dbs) cur.per[d] = snapshot(samples, d);
    const tSec = now / 1000;
    const dt = prev ? (now - prev.t) / 1000 : 0;
    const s = cur.sel;
    const p = prev ? prev.sel : null;

    const ingest = p ? rate(s.points, p.points, dt) : null;
    const vecRate = p ? rate(s.vecOps, p.vecOps, dt) : null;
    const httpRate = prev ? rate(cur.http, prev.http, dt) : null;
    set("ingest", ingest, ingest === null ? "—" : fmtNum(ingest, 1), `${fmtNum(s.points)} points since start`);
    set("vector-ops", vecRate, vecRate === null ? "—" : fmtNum(vecRate, 1), `${fmtNum(s.vecOps)} operations since start`);
    set("http", httpRate, httpRate === null ? "—" : fmtNum(httpRate, 1), `${fmtNum(cur.http)} requests since start`);
    set("ts-buffer", s.tsBuffer, undefined, "points waiting to be compressed");
    set("vec-buffer", s.vecBuffer, undefined, "operations waiting for the index");
    set("wal-queue", s.walQueue, undefined, s.storageFull ? "DISK FULL: writes refused" : `WAL at LSN ${fmtNum(s.lsn)}, ${fmtNum(s.segments)} segment(s)`);

    // fsync latency over the last interval (from the histogram's deltas), else since start.
    const dh = p ? histogramDelta(p.fsync, s.fsync) : null;
    let p50 = null;
    let p99 = null;
    let fsub;
    if (dh && dh.count > 0) {
      p50 = quantile(0.5, dh) * 1000;
      p99 = quantile(0.99, dh) * 1000;
      fsub = `p50 ${fmtMs(p50)} · mean ${fmtMs((dh.sum / dh.count) * 1000)} · ${fmtNum(dh.count)} fsyncs in ${fmtNum(dt, 1)} s`;
    } else if (s.fsync && s.fsync.count > 0) {
      fsub = `no fsync in the last interval · mean since start ${fmtMs((s.fsync.sum / s.fsync.count) * 1000)}`;
    } else {
      fsub = "no fsync yet";
    }
    set("fsync", p99, p99 === null ? "—" : fmtNum(p99, 2), fsub);

    // Replication lag: the primary's view of its replicas.
    let lag = null;
    let lagText = "—";
    let lagSub = "";
    if (repl && repl.error) {
      lagSub = repl.error.status === 403 ? "needs the admin role on the server" : `unavailable (${repl.error.code})`;
    } else if (repl) {
      if (repl.replicas.length) {
        lag = Math.max(...repl.replicas.map((r) => r.lag_ms));
        lagText = fmtNum(lag);
        const unhealthy = repl.replicas.filter((r) => !r.is_healthy).length;
        lagSub = `${repl.replicas.length} replica(s)${unhealthy ? `, ${unhealthy} unhealthy` : ""}, ${fmtNum(
          Math.max(...repl.replicas.map((r) => r.lag_bytes)),
        )} bytes behind`;
      } else if (repl.role === "replica") {
        lagSub = `replica: ${fmtNum(repl.replica ? repl.replica.batches_applied : 0)} batches applied`;
      } else {
        lag = 0;
        lagText = "—";
        lagSub = "no replicas registered";
      }
    }
    set("repl-lag", lag, lagText, lagSub);

    push("ingest", tSec, ingest);
    push("vector-ops", tSec, vecRate);
    push("http", tSec, httpRate);
    push("ts-buffer", tSec, s.tsBuffer);
    push("vec-buffer", tSec, s.vecBuffer);
    push("wal-queue", tSec, s.walQueue);
    push("fsync", tSec, p50, p99);
    push("repl-lag", tSec, lag);

    // Per-database table.
    const rows = dbs.map((d) => {
      const c = cur.per[d];
      const pp = prev && prev.per[d];
      const r = pp ? rate(c.points, pp.points, dt) : null;
      const vr = pp ? rate(c.vecOps, pp.vecOps, dt) : null;
      const fh = pp ? histogramDelta(pp.fsync, c.fsync) : null;
      const q = fh && fh.count ? quantile(0.99, fh) * 1000 : null;
      return [
        d === db ? h("strong", null, d) : d,
        r === null ? "—" : fmtNum(r, 1),
        vr === null ? "—" : fmtNum(vr, 1),
        fmtNum(c.tsBuffer),
        fmtNum(c.vecBuffer),
        fmtNum(c.walQueue),
        q === null ? "—" : fmtMs(q),
        fmtNum(c.lsn),
      ];
    });
    perDb.replaceChildren(
      perDb.firstChild,
      h(
        "div",
        { class: "scroll" },
        table(
          [
            { label: "Database" },
            { label: "Points/s", cls: "num" },
            { label: "Vector ops/s", cls: "num" },
            { label: "TS buffer", cls: "num" },
            { label: "Vector buffer", cls: "num" },
            { label: "WAL queue", cls: "num" },
            { label: "fsync p99", cls: "num" },
            { label: "WAL LSN", cls: "num" },
          ],
          rows,
          { cls: "per-db" },
        ),
      ),
    );

    prev = cur;
    samplesTaken += 1;
    root.dataset.samples = String(samplesTaken);
    status.textContent = `Updated ${new Date(now).toLocaleTimeString()}`;
    if (!paused) timer = setTimeout(tick, INTERVAL_MS);
  }
  await tick();
}
