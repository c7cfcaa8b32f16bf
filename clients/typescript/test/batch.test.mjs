import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { Client, NO_RETRY, QueueFull, BatchWriteError, SluiceError, TimeSeriesBatchWriter, TransportError } from "../dist/index.js";
import { startServer, uniq, settle, FULL_ENV, pressure } from "./helpers.mjs";

const T0 = 1_750_000_000_000;

async function exported(c, metric) {
  const out = [];
  for await (const p of c.timeseries.export({ metric })) out.push(p);
  return out;
}

describe("batch writer against a server", () => {
  let srv, client;
  before(async () => {
    srv = await startServer();
    client = new Client(srv.url);
  });
  after(async () => srv && (await srv.stop()));

  test("close() sends everything: nothing lost, nothing duplicated", async () => {
    const metric = uniq("bw");
    const N = 12345;
    const w = client.timeseries.batchWriter({ maxPoints: 1000, flushIntervalMs: 60000, ack: "fsync" });
    assert.ok(w instanceof TimeSeriesBatchWriter);
    for (let i = 0; i < N; i++) await w.put({ metric, entity: `e${i % 3}`, value: i, timestamp_ms: T0 + i, tags: { k: String(i % 3) } });
    assert.ok(w.pending > 0);
    await w.close();
    assert.equal(w.pending, 0);
    assert.equal(w.pointsWritten, N);
    assert.equal(w.batchesWritten, 13);
    assert.deepEqual(w.errors(), []);
    const pts = await exported(client, metric);
    assert.equal(pts.length, N);
    assert.deepEqual(pts.map((p) => p.value).sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i));
    await w.close(); // again: nothing
    await assert.rejects(() => w.put({ metric, entity: "e", value: 1 }), SluiceError);
  });

  test("maxBytes seals batches; putMany; flush() waits until written", async () => {
    const metric = uniq("bytes");
    const w = client.timeseries.batchWriter({ maxPoints: 100000, maxBytes: 4096, flushIntervalMs: 60000, ack: "fsync" });
    await w.putMany(Array.from({ length: 1000 }, (_, i) => ({ metric, entity: "e", value: i, timestamp_ms: T0 + i })));
    await w.flush();
    assert.equal(w.pending, 0);
    assert.equal(w.pointsWritten, 1000);
    assert.ok(w.batchesWritten >= 15, `batches ${w.batchesWritten}`);
    assert.equal((await exported(client, metric)).length, 1000);
    await w.close();
  });

  test("flushIntervalMs sends a partial batch by itself; default timestamps are the client's clock", async () => {
    const metric = uniq("age");
    const w = client.timeseries.batchWriter({ flushIntervalMs: 100, ack: "fsync" });
    const before = Date.now();
    await w.put({ metric, entity: "e", value: 1 });
    await w.put({ metric, entity: "e", value: 2, timestamp_ms: T0 });
    const r = await settle(() => client.timeseries.query({ metric }), (r) => r.series[0]?.points.length === 2, 3000);
    assert.equal(r.series[0].points.length, 2);
    assert.ok(r.series[0].points.some(([t]) => t >= before && t <= Date.now()));
    await w.close();
  });

  test("bounded memory: put() waits while the queue is full; putNowait / onFull raise throw QueueFull", async () => {
    const metric = uniq("bp");
    const w = client.timeseries.batchWriter({ maxPoints: 100, maxQueuePoints: 300, flushIntervalMs: 60000 });
    let maxPending = 0;
    for (let i = 0; i < 5000; i++) {
      await w.put({ metric, entity: "e", value: i, timestamp_ms: T0 + i });
      maxPending = Math.max(maxPending, w.pending);
    }
    assert.ok(maxPending <= 300, `pending reached ${maxPending}`);
    await w.close();
    assert.equal(w.pointsWritten, 5000);

    const r = client.timeseries.batchWriter({ maxPoints: 10, maxQueuePoints: 20, onFull: "raise" });
    for (let i = 0; i < 20; i++) r.putNowait({ metric, entity: "r", value: i, timestamp_ms: T0 + i });
    assert.throws(() => r.putNowait({ metric, entity: "r", value: 0, timestamp_ms: T0 }), QueueFull);
    await assert.rejects(() => r.put({ metric, entity: "r", value: 0, timestamp_ms: T0 }), QueueFull);
    await r.close();
    assert.equal(r.pointsWritten, 20);
    assert.throws(() => client.timeseries.batchWriter({ maxPoints: 0 }), RangeError);
  });

  test("a refused batch: close() throws BatchWriteError with the points; onError gets it instead", async () => {
    const metric = uniq("ref");
    const w = client.timeseries.batchWriter({ maxPoints: 2, flushIntervalMs: 60000 });
    await w.put({ metric, entity: "e", value: 1, timestamp_ms: T0 });
    await w.put({ metric, entity: "e", value: 2, timestamp_ms: T0 + 1 });
    await w.put({ metric: "", entity: "e", value: 3, timestamp_ms: T0 + 2 });
    await w.put({ metric, entity: "e", value: 4, timestamp_ms: T0 + 3 });
    const e = await w.close().then(() => null, (e) => e);
    assert.ok(e instanceof BatchWriteError, String(e));
    assert.equal(e.failures.length, 1);
    assert.equal(e.failures[0].count, 2);
    assert.equal(e.failures[0].error.status, 400);
    assert.deepEqual(e.failures[0].points.map((p) => p.value), [3, 4]);
    assert.equal(w.pointsWritten, 2);

    const seen = [];
    const w2 = client.timeseries.batchWriter({ maxPoints: 1, onError: (f) => seen.push(f) });
    await w2.put({ metric: "", entity: "e", value: 1, timestamp_ms: T0 });
    await w2.close();
    assert.equal(seen.length, 1);
    assert.equal(w2.errors().length, 1);
  });

  test("writes to the client's database", async () => {
    const db = uniq("bwdb").toLowerCase();
    await client.databases.create(db);
    const scoped = client.withDatabase(db);
    const metric = uniq("dbw");
    const w = scoped.timeseries.batchWriter({ ack: "fsync" });
    for (let i = 0; i < 100; i++) await w.put({ metric, entity: "e", value: i, timestamp_ms: T0 + i });
    await w.close();
    assert.equal((await exported(scoped, metric)).length, 100);
    assert.equal((await exported(client, metric)).length, 0);
  });
});

describe("batch writer through a full buffer (503 buffer_overflow)", () => {
  let srv;
  before(async () => (srv = await startServer({ env: FULL_ENV })));
  after(async () => srv && (await srv.stop()));

  test("every refused batch is retried: nothing lost, duplicated or reordered", async () => {
    const c = new Client(srv.url);
    const metric = uniq("full");
    const state = { stop: false };
    const p = pressure(Client, NO_RETRY, srv.url, state);
    const nSeries = 4;
    const nTs = 3000;
    let w;
    try {
      await new Promise((r) => setTimeout(r, 200));
      w = c.timeseries.batchWriter({ maxPoints: 1500, retry: { maxRetries: 200, initialBackoffMs: 10, maxBackoffMs: 200 } });
      for (let i = 0; i < nTs; i++) {
        for (let s = 0; s < nSeries; s++) await w.put({ metric, entity: `e${s}`, value: -1, timestamp_ms: T0 + i, tags: { s: String(s) } });
        if (i >= 50) {
          // overwrites the -1 written 50 timestamps ago: the later write must win
          for (let s = 0; s < nSeries; s++) await w.put({ metric, entity: `e${s}`, value: i - 50, timestamp_ms: T0 + i - 50, tags: { s: String(s) } });
        }
      }
      for (let i = nTs - 50; i < nTs; i++) {
        for (let s = 0; s < nSeries; s++) await w.put({ metric, entity: `e${s}`, value: i, timestamp_ms: T0 + i, tags: { s: String(s) } });
      }
      await w.close();
    } finally {
      state.stop = true;
      await p;
    }
    assert.deepEqual(w.errors(), []);
    assert.ok(w.refusals > 0, "the server never refused: the test did not exercise a full buffer");
    await c.timeseries.flushBuffer();
    const want = Array.from({ length: nTs }, (_, i) => T0 + i);
    const r = await settle(
      () => c.timeseries.query({ metric }),
      (r) => r.series.length === nSeries && r.series.every((s) => s.points.length === nTs),
    );
    assert.equal(r.series.length, nSeries);
    for (const s of r.series) {
      assert.deepEqual(s.points.map((x) => x[0]), want);
      assert.deepEqual(s.points.map((x) => x[1]), Array.from({ length: nTs }, (_, i) => i));
    }
  });
});

describe("batch writer and lost answers (scripted server)", () => {
  let server, url, script, hits;
  before(async () => {
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        hits.push(JSON.parse(body));
        if (script.shift() === "destroy") return req.socket.destroy();
        res.writeHead(200, { "content-type": "application/json" });
        res.end('{"success":true,"points_written":1}');
      });
    });
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${server.address().port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  test("client timestamps: a batch whose answer was lost is re-sent identically", async () => {
    script = ["destroy"];
    hits = [];
    const w = new Client(url).timeseries.batchWriter({ retry: { maxRetries: 3, initialBackoffMs: 1 } });
    await w.put({ metric: "m", entity: "e", value: 1 });
    await w.close();
    assert.equal(hits.length, 2);
    assert.deepEqual(hits[0], hits[1]);
    assert.equal(typeof hits[0].points[0].timestamp_ms, "number");
  });

  test("server timestamps: not re-sent, reported as maybe applied", async () => {
    script = ["destroy"];
    hits = [];
    const w = new Client(url).timeseries.batchWriter({ timestamps: "server", retry: { maxRetries: 3, initialBackoffMs: 1 } });
    await w.put({ metric: "m", entity: "e", value: 1 });
    const e = await w.close().then(() => null, (e) => e);
    assert.ok(e instanceof BatchWriteError);
    assert.ok(e.failures[0].error instanceof TransportError);
    assert.equal(e.failures[0].error.maybeApplied, true);
    assert.equal(hits.length, 1);
    assert.equal(hits[0].points[0].timestamp_ms, undefined);
  });
});
