// Overview: the server (version, role, readiness), every database with its stats, the selected
// database's buffers and collections, and replication.
import { api, dbPath, labelValues } from "./api.js";
import { h, section, table, dl, showError, fmtNum, fmtBytes, fmtMs } from "./ui.js";
import { parseMetrics, sum } from "./prom.js";

export const title = "Overview";

const settle = (p) => p.then((v) => ({ ok: true, v }), (e) => ({ ok: false, e }));

export async function render(root, ctx) {
  const { db, signal } = ctx;
  const opts = { signal };
  root.append(h("h1", null, "Overview"));

  const [version, ready, repl, dbs, metricsText] = await Promise.all([
    settle(api("/version", opts)),
    settle(api("/readyz", opts)),
    settle(api("/api/v1/replication/stats", opts)),
    settle(api("/v1/databases", opts)),
    settle(api("/metrics", { ...opts, text: true })),
  ]);
  if (signal.aborted) return;
  const samples = metricsText.ok ? parseMetrics(metricsText.v) : [];

  // ---- server
  const role = repl.ok ? repl.v.role : null;
  const server = section(
    "Server",
    dl(
      [
        ["Version", version.ok ? `${version.v.name} ${version.v.version}` : "—"],
        ["API", version.ok ? version.v.api_version : "—"],
        ["Role", role ?? (repl.e && repl.e.status === 403 ? "— (needs admin)" : "—"), { "data-testid": "role" }],
        ["Node", repl.ok ? repl.v.node_id : "—"],
        ["Epoch", repl.ok ? String(repl.v.epoch) : "—"],
        ["Readiness", ready.ok ? ready.v.status : ready.e ? `${ready.e.code}` : "—"],
        ["Requests in flight", fmtNum(sum(samples, "http_requests_in_flight"))],
      ],
      { id: "server-info" },
    ),
  );
  for (const r of [version, ready]) if (!r.ok) showError(r.e, "Server");
  if (!repl.ok && repl.e.status !== 403) showError(repl.e, "Replication");

  // ---- databases
  const dbSection = section("Databases");
  root.append(h("div", { class: "grid two" }, server, replicationSection(repl)), dbSection);
  if (!dbs.ok) {
    showError(dbs.e, "Databases");
    dbSection.append(h("p", { class: "muted" }, "Cannot list the databases."));
  } else {
    const list = dbs.v.databases || [];
    const per = await Promise.all(
      list.slice(0, 100).map(async (d) => {
        const [ts, vec, cols, names] = await Promise.all([
          settle(api(dbPath(d.name, "/ts/buffer/stats"), opts)),
          settle(api(dbPath(d.name, "/vectors/buffer/stats"), opts)),
          settle(api(dbPath(d.name, "/v1/collections"), opts)),
          settle(labelValues(d.name, "__name__", null, opts)),
        ]);
        return { d, ts, vec, cols, names };
      }),
    );
    if (signal.aborted) return;
    const rows = per.map(({ d, ts, cols, names }) => {
      const m = (name) => sum(samples, name, { db: d.name });
      const collections = cols.ok ? cols.v.collections : [];
      const vectorsTotal = collections.reduce((a, c) => a + (c.vectors || 0), 0);
      const isSel = d.name === db;
      return [
        h(
          "button",
          { type: "button", class: `link${isSel ? " selected" : ""}`, "aria-pressed": String(isSel), onclick: () => ctx.selectDb(d.name) },
          d.name,
        ),
        d.retention_ms ? fmtMs(d.retention_ms) : "forever",
        d.has_policy ? "yes" : "no",
        names.ok ? fmtNum(names.v.length) : "—",
        ts.ok ? fmtNum(ts.v.points_buffered) : "—",
        ts.ok ? fmtNum(ts.v.current_buffer_size) : "—",
        ts.ok && ts.v.avg_compression_ratio ? `${ts.v.avg_compression_ratio.toFixed(1)}×` : "—",
        cols.ok ? fmtNum(collections.length) : "—",
        cols.ok ? fmtNum(vectorsTotal) : "—",
        fmtNum(m("wal_last_lsn")),
        fmtNum(m("wal_segments")),
        h(
          "span",
          { class: "actions" },
          h("button", { type: "button", onclick: () => ctx.go("explore", { db: d.name }) }, "Explore"),
          h("button", { type: "button", onclick: () => ctx.go("vectors", { db: d.name }) }, "Vectors"),
        ),
      ];
    });
    const t = table(
      [
        { label: "Name" },
        { label: "Retention" },
        { label: "Policy" },
        { label: "Metrics", cls: "num" },
        { label: "Points written", cls: "num" },
        { label: "Buffered now", cls: "num" },
        { label: "Compression", cls: "num" },
        { label: "Collections", cls: "num" },
        { label: "Vectors", cls: "num" },
        { label: "WAL LSN", cls: "num" },
        { label: "WAL segments", cls: "num" },
        { label: "Open" },
      ],
      rows,
      { caption: `${list.length} database${list.length === 1 ? "" : "s"} you have a role on (points since start)` },
    );
    t.id = "databases";
    dbSection.append(h("div", { class: "scroll" }, t));
    for (const { d, ts, vec, cols, names } of per) {
      for (const [r, what] of [[ts, "buffer stats"], [vec, "vector buffer stats"], [cols, "collections"], [names, "metrics"]]) {
        if (!r.ok) showError(r.e, `${d.name}: ${what}`);
      }
    }

    // ---- the selected database
    const sel = per.find((p) => p.d.name === db);
    if (sel) {
      const tsStats = sel.ts.ok ? sel.ts.v : null;
      const vecStats = sel.vec.ok ? sel.vec.v : null;
      const buffers = section(
        `Buffers of ${db}`,
        h(
          "div",
          { class: "grid two" },
          h(
            "div",
            null,
            h("h3", null, "Time series"),
            tsStats
              ? dl([
                  ["Points in buffer", fmtNum(tsStats.current_buffer_size)],
                  ["Buffer memory", fmtBytes(tsStats.current_buffer_memory)],
                  ["Points buffered", fmtNum(tsStats.points_buffered)],
                  ["Points flushed", fmtNum(tsStats.points_flushed)],
                  ["Flushes (auto / manual)", `${fmtNum(tsStats.auto_flush_count)} / ${fmtNum(tsStats.manual_flush_count)}`],
                  ["Compression", tsStats.avg_compression_ratio ? `${tsStats.avg_compression_ratio.toFixed(2)}×` : "—"],
                  ["Last flush", when(tsStats.last_flush_time)],
                ])
              : h("p", { class: "muted" }, "—"),
          ),
          h(
            "div",
            null,
            h("h3", null, "Vectors"),
            vecStats
              ? dl([
                  ["Operations in buffer", fmtNum(vecStats.current_buffer_size)],
                  ["Buffer memory", fmtBytes(vecStats.current_buffer_memory)],
                  ["Operations buffered", fmtNum(vecStats.vectors_buffered)],
                  ["Operations flushed", fmtNum(vecStats.vectors_flushed)],
                  ["Snapshots", fmtNum(vecStats.snapshot_count)],
                  ["Last flush", when(vecStats.last_flush_time)],
                ])
              : h("p", { class: "muted" }, "—"),
          ),
        ),
      );
      const cols = sel.cols.ok ? sel.cols.v.collections : [];
      const colSection = section(
        `Collections of ${db}`,
        cols.length
          ? h(
              "div",
              { class: "scroll" },
              table(
                [
                  { label: "Name" },
                  { label: "Dimension", cls: "num" },
                  { label: "Distance" },
                  { label: "Precision" },
                  { label: "Vectors", cls: "num" },
                  { label: "Buffered", cls: "num" },
                  { label: "Index memory", cls: "num" },
                ],
                cols.map((c) => [
                  h("button", { type: "button", class: "link", onclick: () => ctx.go("vectors", { collection: c.name }) }, c.name),
                  String(c.dimension),
                  c.distance,
                  c.precision,
                  fmtNum(c.vectors),
                  fmtNum(c.buffered),
                  fmtBytes(c.index_bytes),
                ]),
                { cls: "collections" },
              ),
            )
          : h("p", { class: "muted" }, "No collections."),
      );
      root.append(h("div", { class: "grid two" }, buffers, colSection));
    }
  }

}

function when(rfc3339) {
  if (!rfc3339) return "never";
  const t = Date.parse(rfc3339);
  return Number.isNaN(t) ? rfc3339 : `${new Date(t).toLocaleString()} (${fmtMs(Date.now() - t)} ago)`;
}

function replicationSection(repl) {
  if (!repl.ok) {
    return section(
      "Replication",
      h("p", { class: "muted" }, repl.e.status === 403 ? "Replication status needs the admin role on the server." : "Unavailable."),
    );
  }
  const r = repl.v;
  const parts = [];
  if (r.role === "replica" && r.replica) {
    parts.push(
      dl([
        ["Primary", r.replica.primary_id ? `${r.replica.primary_id} ${r.replica.primary_endpoint || ""}` : "none yet"],
        ["Primary epoch", String(r.replica.primary_epoch)],
        ["Batches applied", fmtNum(r.replica.batches_applied)],
        ["Batches refused", fmtNum(r.replica.batches_refused)],
        ["Received", fmtBytes(r.replica.bytes_received)],
      ]),
    );
  }
  if (r.replicas.length) {
    parts.push(
      h(
        "div",
        { class: "scroll" },
        table(
          [
            { label: "Replica" },
            { label: "Endpoint" },
            { label: "Healthy" },
            { label: "Lag", cls: "num" },
            { label: "Lag bytes", cls: "num" },
            { label: "Confirmed LSN" },
            { label: "Last error" },
          ],
          r.replicas.map((x) => [
            x.replica_id,
            x.endpoint,
            x.fenced ? "fenced" : x.is_healthy ? "yes" : "no",
            fmtMs(x.lag_ms),
            fmtBytes(x.lag_bytes),
            x.last_confirmed_lsn,
            x.last_error || "",
          ]),
          { cls: "replicas" },
        ),
      ),
    );
  } else if (r.role === "primary") {
    parts.push(h("p", { class: "muted" }, "No replicas registered."));
  }
  parts.push(
    dl([
      ["Shipped", `${fmtNum(r.stats.total_entries_shipped)} records in ${fmtNum(r.stats.total_batches)} batches`],
      ["Bytes shipped", `${fmtBytes(r.stats.total_bytes_shipped)} (${r.stats.avg_compression_ratio ? r.stats.avg_compression_ratio.toFixed(1) : "—"}× ${r.compression_type})`],
      ["Failed ships", fmtNum(r.stats.failed_ships)],
    ]),
  );
  return section(`Replication (${r.role})`, ...parts);
}
