import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Client, MAX_TS, ThemisTimeSeriesClient, SluiceTimeSeriesClient, TimeSeriesClient } from "../dist/index.js";
import { startServer, uniq, settle } from "./helpers.mjs";

let srv, client;
before(async () => {
  srv = await startServer();
  client = new Client(srv.url, { timeoutMs: 10000 });
});
after(async () => srv && (await srv.stop()));

const count = async (c, metric) => {
  const r = await c.timeseries.query({ metric });
  return r.series.reduce((a, s) => a + s.points.length, 0);
};

test("seed names: putBuffered, getBufferStats, flushBuffer and the aliases", async () => {
  assert.ok(client.timeseries instanceof ThemisTimeSeriesClient);
  assert.equal(SluiceTimeSeriesClient, TimeSeriesClient);
  const metric = uniq("seed");
  const point = { metric, entity: "server01", timestamp_ms: 1702645200000, value: 75.5, tags: { dc: "eu" } };
  assert.equal(await client.timeseries.putBuffered(point), undefined);
  const stats = await client.timeseries.getBufferStats();
  assert.ok(stats.points_buffered >= 1);
  assert.equal(typeof stats.current_buffer_size, "number");
  assert.equal(await client.timeseries.flushBuffer(), undefined);
  const r = await client.timeseries.query({ metric, from_ms: 0, to_ms: 1702645200000 });
  assert.deepEqual(r.series, [{ metric, entity: "server01", tags: { dc: "eu" }, points: [[1702645200000, 75.5]] }]);
});

test("putBufferedResult and flushBufferResult return the answers", async () => {
  const metric = uniq("buf");
  const r = await client.timeseries.putBufferedResult({ metric, entity: "e", value: 1, timestamp_ms: 10 });
  assert.equal(r.success, true);
  assert.equal(r.buffered, true);
  const f = await client.timeseries.flushBufferResult();
  assert.equal(f.success, true);
  assert.equal(typeof f.points_flushed, "number");
});

test("put, with and without timestamp, with ack", async () => {
  const metric = uniq("put");
  const r = await client.timeseries.put({ metric, entity: "e", value: 2, timestamp_ms: 1000 }, { ack: "fsync" });
  assert.equal(r.success, true);
  assert.equal(typeof r.lsn, "number");
  await client.timeseries.put({ metric, entity: "e", value: 3 }, { ack: "wal" });
  assert.equal(await count(client, metric), 2);
  await assert.rejects(() => client.timeseries.put({ metric, entity: "e", value: 1 }, { ack: "nope" }), TypeError);
  await assert.rejects(() => client.timeseries.put({ metric, entity: "e", value: NaN }), TypeError);
});

test("putBatch writes all points", async () => {
  const metric = uniq("batch");
  const pts = Array.from({ length: 500 }, (_, i) => ({ metric, entity: `e${i % 5}`, value: i, timestamp_ms: 1000 + i }));
  const r = await client.timeseries.putBatch(pts, { ack: "wal" });
  assert.equal(r.points_written, 500);
  assert.equal(await count(client, metric), 500);
});

test("query: aggregation, step and group_by, tags and matchers", async () => {
  const metric = uniq("agg");
  await client.timeseries.putBatch(
    [
      { metric, entity: "a", value: 1, timestamp_ms: 0, tags: { dc: "x" } },
      { metric, entity: "a", value: 3, timestamp_ms: 500, tags: { dc: "x" } },
      { metric, entity: "b", value: 10, timestamp_ms: 1500, tags: { dc: "y" } },
    ],
    { ack: "fsync" },
  );
  const r = await client.timeseries.query({ metric, from_ms: 0, to_ms: 1999, aggregation: "sum", step_ms: 1000 });
  const pts = r.series.flatMap((s) => s.points);
  assert.deepEqual(pts.sort((a, b) => a[0] - b[0]), [[0, 4], [1000, 10]]);
  const g = await client.timeseries.query({ metric, from_ms: 0, to_ms: 1999, aggregation: "avg", step_ms: 2000, group_by: ["dc"] });
  assert.equal(g.series.length, 2);
  const t = await client.timeseries.query({ metric, tags: { dc: "y" } });
  assert.deepEqual(t.series.map((s) => s.entity), ["b"]);
  const m = await client.timeseries.query({ metric, matchers: [{ tag: "dc", op: "=~", value: "x|y" }] });
  assert.equal(m.series.length, 2);
  const e = await client.timeseries.query({ metric, entity: "a", from_ms: new Date(0), to_ms: new Date(600) });
  assert.equal(e.series[0].points.length, 2);
});

test("export streams every point as an async iterator", async () => {
  const metric = uniq("exp");
  const N = 20000;
  const pts = Array.from({ length: N }, (_, i) => ({ metric, entity: "e", value: i, timestamp_ms: i, tags: { k: "v" } }));
  await client.timeseries.putBatch(pts, { ack: "fsync" });
  let n = 0;
  let sum = 0;
  for await (const p of client.timeseries.export({ metric })) {
    assert.equal(p.metric, metric);
    assert.deepEqual(p.tags, { k: "v" });
    n++;
    sum += p.value;
  }
  assert.equal(n, N);
  assert.equal(sum, (N * (N - 1)) / 2);
  // breaking early releases the stream
  let k = 0;
  for await (const _ of client.timeseries.export({ metric, from_ms: 0, to_ms: 100 })) if (++k === 3) break;
  assert.equal(k, 3);
  // a refused export throws before the first point
  await assert.rejects(
    async () => {
      for await (const _ of client.timeseries.export({ metric, from_ms: 10, to_ms: 5 })) {
      }
    },
    (e) => e.status === 422 && e.field === "to_ms",
  );
});

test("writeLines: v1 and v2, precision", async () => {
  const m = uniq("lp");
  await client.timeseries.writeLines([`${m},host=h1 value=1 1000`, `${m},host=h1 value=2 2000`], { precision: "ms", ack: "fsync" });
  await client.timeseries.writeLines(`${m},entity=h2 temp=5 3`, { precision: "s", api: "v2", ack: "fsync" });
  const r1 = await client.timeseries.query({ metric: m });
  assert.equal(r1.series[0].entity, "h1");
  assert.deepEqual(r1.series[0].points, [[1000, 1], [2000, 2]]);
  const r2 = await client.timeseries.query({ metric: `${m}_temp` });
  assert.deepEqual(r2.series[0].points, [[3000, 5]]);
  await assert.rejects(() => client.timeseries.writeLines("not line protocol at all", { precision: "ms" }), (e) => e.status === 400);
});

test("the database option routes to /v1/databases/{db}", async () => {
  const db = uniq("db").toLowerCase();
  await client.databases.create(db);
  const scoped = new Client(srv.url, { database: db });
  const metric = uniq("dbm");
  await scoped.timeseries.put({ metric, entity: "e", value: 1, timestamp_ms: 1 });
  await scoped.timeseries.putBuffered({ metric, entity: "e", value: 2, timestamp_ms: 2 });
  await scoped.timeseries.flushBuffer();
  assert.equal(await count(scoped, metric), 2);
  assert.equal(await count(client, metric), 0);
  assert.equal(await count(client.withDatabase(db), metric), 2);
  assert.ok((await scoped.timeseries.getBufferStats()).points_flushed >= 1);
  await assert.rejects(() => new Client(srv.url, { database: "nope-db" }).timeseries.query({ metric }), (e) => e.status === 404);
  assert.equal(await client.databases.delete(db), true);
});

test("delete removes the selected points in the range, durable and at once", async () => {
  const metric = uniq("del");
  const pts = [];
  for (const [entity, dc] of [["a", "eu"], ["b", "us"]]) {
    for (let i = 0; i < 10; i++) pts.push({ metric, entity, value: i, timestamp_ms: 1000 + i, tags: { dc } });
  }
  await client.timeseries.putBatch(pts);
  await client.timeseries.flushBuffer();
  const r = await client.timeseries.delete({ metric, entity: "a", from_ms: 1005, to_ms: 2000 });
  assert.equal(r.success, true);
  assert.deepEqual([r.series, r.points_deleted], [1, 5]);
  assert.equal(await count(client, metric), 15);
  const m = await client.timeseries.delete({ metric, from_ms: 0, to_ms: MAX_TS, matchers: [{ tag: "dc", op: "=", value: "us" }] });
  assert.deepEqual([m.series, m.points_deleted], [1, 10]);
  assert.equal(await count(client, metric), 5);
  await assert.rejects(() => client.timeseries.delete({ metric }), TypeError);
  await assert.rejects(() => client.timeseries.delete({ metric, from_ms: 10, to_ms: 5 }), (e) => e.status === 422 && !!e.errorId);
});

test("cardinality counts the series of a metric", async () => {
  const metric = uniq("card");
  await client.timeseries.putBatch([0, 1, 2].map((i) => ({ metric, entity: `h${i}`, value: 1, timestamp_ms: 1000, tags: { dc: i < 2 ? "eu" : "us" } })));
  const c = await client.timeseries.cardinality({ metric, limit: 5 });
  assert.equal(c.series, 3);
  assert.deepEqual(c.series_count_by_metric, [{ metric, series: 3 }]);
  assert.deepEqual(c.series_count_by_label_value[0], { label: "dc", value: "eu", series: 2 });
  await assert.rejects(() => client.timeseries.cardinality({ limit: 0 }), (e) => e.status === 400);
});
