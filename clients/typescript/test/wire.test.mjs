// The wire transport (binary protocol over the WebSocket /v1/ws) against real servers: every
// wire method, with and without a token (at the upgrade, and in an AUTH frame, also through a
// real globalThis.WebSocket in a child process), error mapping, the batch writer through a
// full buffer, and a server that goes away.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  Client, NO_RETRY, Opcode, encodeFrame, decodeJson, NotFound, Unprocessable, BadRequest, Unauthorized, SluiceError,
  TransportError, BatchWriteError, TimeSeriesBatchWriter, PRE_AUTH_MAX_MESSAGE,
} from "../dist/index.js";
import { startServer, uniq, settle, TOKEN, FULL_ENV, pressure } from "./helpers.mjs";

const T0 = 1_760_000_000_000;
const total = (r) => r.series.reduce((a, s) => a + s.points.length, 0);

describe("wire transport against a server without credentials", () => {
  let srv, http, wire;
  before(async () => {
    srv = await startServer();
    http = new Client(srv.url);
    wire = new Client(srv.url, { transport: "wire" });
  });
  after(async () => {
    await wire?.close();
    await srv?.stop();
  });

  test("time series: putBuffered, putBufferedResult, getBufferStats, flushBuffer(Result)", async () => {
    const metric = uniq("wts");
    await wire.timeseries.putBuffered({ metric, entity: "server01", timestamp_ms: T0, value: 75.5, tags: { datacenter: "eu-west-1" } });
    const r = await wire.timeseries.putBufferedResult({ metric, entity: "server01", value: 1 }); // stamped by the server
    assert.equal(r.success, true);
    assert.equal(r.buffered, true);
    assert.ok(r.buffer_size >= 2);
    const stats = await wire.timeseries.getBufferStats();
    assert.deepEqual(Object.keys(stats).sort(), Object.keys(await http.timeseries.getBufferStats()).sort());
    assert.ok(stats.current_buffer_size >= 2);
    const f = await wire.timeseries.flushBufferResult();
    assert.equal(f.success, true);
    assert.ok(f.points_flushed >= 2);
    assert.equal(await wire.timeseries.flushBuffer(), undefined);
    assert.equal((await wire.timeseries.getBufferStats()).current_buffer_size, 0);
    const q = await http.timeseries.query({ metric });
    assert.equal(total(q), 2);
    assert.deepEqual(q.series.find((s) => s.tags.datacenter)?.points[0], [T0, 75.5]);
    // per call: http on a wire client, wire on an http client
    assert.equal((await wire.timeseries.putBufferedResult({ metric, entity: "x", value: 2, timestamp_ms: T0 }, { transport: "http" })).success, true);
    assert.equal((await http.timeseries.putBufferedResult({ metric, entity: "y", value: 3, timestamp_ms: T0 }, { transport: "wire" })).success, true);
    await assert.rejects(() => wire.timeseries.putBuffered({ metric, entity: "x", value: 1 }, { ack: "fsync" }), TypeError);
    await assert.rejects(() => wire.timeseries.putBuffered({ metric, entity: "x", value: 1 }, { transport: "udp" }), TypeError);
    await http.close();
  });

  test("vectors: addBuffered, updateBuffered, removeBuffered, getBufferStats, flushBuffer, search", async () => {
    const v = wire.vectors;
    const pk = uniq("doc");
    const a = await v.addBuffered({ pk, vector: [0.5, -1, 2], metadata: { category: "tech" } });
    assert.deepEqual(Object.keys(a).sort(), ["buffer_size", "buffered", "success"]);
    assert.ok(a.buffer_size >= 1);
    const hits = await v.search({ vector: [0.5, -1, 2], k: 1 });
    const httpHits = await http.vectors.search({ vector: [0.5, -1, 2], k: 1 });
    assert.equal(hits[0].pk, pk);
    assert.deepEqual(hits[0].metadata, { category: "tech" });
    assert.deepEqual(hits.map((h) => h.pk), httpHits.map((h) => h.pk));
    assert.ok(Math.abs(hits[0].score - httpHits[0].score) < 1e-6 && Math.abs(hits[0].distance - httpHits[0].distance) < 1e-6);
    await v.updateBuffered({ pk, vector: new Float32Array([0.5, -1, 2.5]), metadata: { category: "art" } });
    assert.deepEqual((await v.search({ vector: [0.5, -1, 2.5], k: 1, filter: { category: "art" } }))[0].pk, pk);
    const st = await v.getBufferStats();
    assert.ok(st.current_buffer_size >= 1, JSON.stringify(st));
    assert.equal((await v.flushBuffer()).success, true);
    assert.equal((await v.getBufferStats()).current_buffer_size, 0);
    await v.removeBuffered(pk);
    assert.ok(!(await v.search({ vector: [0.5, -1, 2.5], k: 5 })).some((h) => h.pk === pk));
    // search names its collection; writes act on collection default only
    const collection = uniq("wc");
    await http.collections.create({ name: collection, dimension: 2, distance: "l2" });
    await http.vectors.add({ pk: "p1", vector: [1, 0] }, { collection });
    const named = await v.search({ vector: [1, 0], k: 2, ef: 16, collection });
    assert.deepEqual(named, [{ pk: "p1", score: 0, distance: 0, metadata: {} }]);
    await assert.rejects(() => v.addBuffered({ pk: "x", vector: [1, 0] }, { collection }), TypeError);
    assert.equal((await v.addBuffered({ pk: "y", vector: [1, 0] }, { collection, transport: "http" })).success, true);
  });

  test("errors carry the HTTP classes and fields: unknown collection, wrong dimension, bad point, k", async () => {
    const e404 = await wire.vectors.search({ vector: [1, 0, 0], k: 1, collection: "no_such_collection" }).then(() => null, (e) => e);
    assert.ok(e404 instanceof NotFound, String(e404));
    assert.equal(e404.code, "collection_not_found");
    assert.equal(e404.wireStatus, 0x03);
    assert.match(e404.errorId, /^[0-9a-f]+$/);
    assert.equal(e404.status, 404);
    const e422 = await wire.vectors.search({ vector: [1, 0], k: 1 }).then(() => null, (e) => e);
    assert.ok(e422 instanceof Unprocessable, String(e422));
    assert.equal(e422.field, "vector");
    assert.equal(e422.code, "invalid_value");
    const ek = await wire.vectors.search({ vector: [1, 0, 0], k: 0 }).then(() => null, (e) => e);
    assert.ok(ek instanceof BadRequest);
    assert.equal(ek.field, "k");
    const ep = await wire.timeseries.putBuffered({ metric: "", entity: "e", value: 1, timestamp_ms: T0 }).then(() => null, (e) => e);
    assert.ok(ep instanceof BadRequest);
    assert.equal(ep.field, "metric");
    assert.equal(ep.attempts, 1);
    const eu = await wire.vectors.updateBuffered({ pk: uniq("absent"), vector: [1, 0, 0] }).then(() => null, (e) => e);
    assert.ok(eu instanceof NotFound, String(eu));
  });

  test("database default only: another database is refused clearly", async () => {
    const db = uniq("wdb").toLowerCase();
    assert.throws(() => new Client(srv.url, { database: db, transport: "wire" }), /database 'default' only/);
    const scoped = http.withDatabase(db);
    await assert.rejects(() => scoped.timeseries.putBuffered({ metric: "m", entity: "e", value: 1 }, { transport: "wire" }), TypeError);
    assert.throws(() => scoped.timeseries.batchWriter({ transport: "wire" }), TypeError);
    const dflt = new Client(srv.url, { database: "default", transport: "wire" });
    assert.ok((await dflt.timeseries.getBufferStats()).points_buffered >= 0);
    await dflt.close();
  });

  test("pipelining: concurrent calls on one session; thousands of answers arrive in several messages", async () => {
    const metric = uniq("pipe");
    const c = new Client(srv.url, { transport: "wire" });
    await Promise.all(Array.from({ length: 500 }, (_, i) => c.timeseries.putBuffered({ metric, entity: "e", value: i, timestamp_ms: T0 + i })));
    assert.equal(total(await http.timeseries.query({ metric })), 500);
    // ~200 bytes of JSON per 6-byte frame: the server sends the answers in ~1 MiB messages
    const frames = Array.from({ length: 8000 }, () => encodeFrame(Opcode.TS_BUFFER_STATS));
    const out = await c.wire.pipeline(frames);
    assert.equal(out.length, 8000);
    assert.ok(out.every((o) => o instanceof Uint8Array && typeof decodeJson(o).points_buffered === "number"));
    await c.close();
  });

  test("batch writer over the wire: close() sends everything, nothing lost or duplicated", async () => {
    const metric = uniq("wbw");
    const w = wire.timeseries.batchWriter({ maxPoints: 1000, flushIntervalMs: 60000 });
    assert.ok(w instanceof TimeSeriesBatchWriter);
    assert.equal(w.transport, "wire");
    const N = 12345;
    for (let i = 0; i < N; i++) await w.put({ metric, entity: `e${i % 3}`, value: i, timestamp_ms: T0 + i, tags: { k: String(i % 3) } });
    assert.ok(w.pending > 0);
    await w.close();
    assert.equal(w.pending, 0);
    assert.equal(w.pointsWritten, N);
    assert.equal(w.batchesWritten, 13);
    const values = [];
    for await (const p of http.timeseries.export({ metric })) values.push(p.value);
    assert.deepEqual(values.sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i));
    await assert.rejects(() => w.put({ metric, entity: "e", value: 1 }), SluiceError);
  });

  test("batch writer over the wire: ack fsync (TS_PUT), server timestamps, refused batches reported with their points", async () => {
    const metric = uniq("wfs");
    const w = http.timeseries.batchWriter({ transport: "wire", ack: "fsync", maxPoints: 2, timestamps: "server", flushIntervalMs: 60000 });
    const before = Date.now();
    await w.put({ metric, entity: "e", value: 1 });
    await w.put({ metric, entity: "e", value: 2, timestamp_ms: T0 });
    await w.put({ metric: "", entity: "e", value: 3, timestamp_ms: T0 + 1 });
    await w.put({ metric, entity: "e", value: 4, timestamp_ms: T0 + 2 });
    await w.flush();
    assert.equal(w.pointsWritten, 2);
    // fsync'd: visible at once, the server stamped the first point
    const r = await http.timeseries.query({ metric });
    assert.equal(total(r), 2);
    assert.ok(r.series[0].points.some(([t]) => t >= before - 1000 && t <= Date.now() + 1000));
    const e = await w.close().then(() => null, (e) => e);
    assert.ok(e instanceof BatchWriteError, String(e));
    assert.equal(e.failures[0].error.field, "points[0].metric");
    assert.deepEqual(e.failures[0].points, [{ metric: "", entity: "e", value: 3, timestamp_ms: T0 + 1 }, { metric, entity: "e", value: 4, timestamp_ms: T0 + 2 }]);
    const seen = [];
    const w2 = http.timeseries.batchWriter({ transport: "wire", maxPoints: 1, onError: (f) => seen.push(f) });
    await w2.put({ metric: "", entity: "e", value: 1, timestamp_ms: T0 });
    await w2.close();
    assert.equal(seen.length, 1);
    assert.deepEqual(w2.errors().length, 1);
  });
});

describe("wire transport with a token", () => {
  let srv;
  before(async () => (srv = await startServer({ token: TOKEN })));
  after(async () => srv && (await srv.stop()));

  test("the token at the upgrade (node): every call works, and frames over 64 KiB pass", async () => {
    const c = new Client(srv.url, { token: TOKEN, transport: "wire" });
    assert.ok(c.wire.maxMessageBytes > PRE_AUTH_MAX_MESSAGE);
    const metric = uniq("tok");
    await c.timeseries.putBuffered({ metric, entity: "e", value: 1, timestamp_ms: T0 });
    assert.ok((await c.timeseries.getBufferStats()).current_buffer_size >= 1);
    await c.timeseries.flushBuffer();
    await c.vectors.addBuffered({ pk: "t1", vector: [1, 2, 3] });
    assert.ok((await c.vectors.getBufferStats()).vectors_buffered >= 1);
    await c.vectors.flushBuffer();
    assert.equal((await c.vectors.search({ vector: [1, 2, 3], k: 1 }))[0].pk, "t1");
    const w = c.timeseries.batchWriter({ maxPoints: 5000 });
    for (let i = 0; i < 10000; i++) w.putNowait({ metric, entity: `host${i % 100}`, value: i, timestamp_ms: T0 + i });
    await w.close();
    assert.equal(w.batchesWritten, 2, "5000-point frames (> 64 KiB) in one message each");
    assert.equal(total(await c.timeseries.query({ metric })), 10001);
    await c.close();
  });

  test("no token: 0x05 Unauthorized with the server's fields; a wrong token: 401 at the upgrade", async () => {
    const none = new Client(srv.url, { transport: "wire" });
    const e = await none.timeseries.getBufferStats().then(() => null, (e) => e);
    assert.ok(e instanceof Unauthorized, String(e));
    assert.equal(e.wireStatus, 0x05);
    assert.equal(e.code, "unauthenticated");
    assert.match(e.errorId, /^[0-9a-f]+$/);
    await none.close();
    const wrong = new Client(srv.url, { token: "wrong-token-0123456789", transport: "wire" });
    const e2 = await wrong.timeseries.getBufferStats().then(() => null, (e) => e);
    assert.ok(e2 instanceof Unauthorized, String(e2));
    assert.equal(e2.status, 401);
    assert.equal(e2.wireStatus, undefined, "refused at the upgrade, not by a frame");
    assert.equal(e2.attempts, 1);
  });

  test("the token in an AUTH frame: messages of at most 64 KiB, batches split to fit", async () => {
    const c = new Client(srv.url, { token: TOKEN, transport: "wire", wire: { webSocket: "node", auth: "frame" } });
    assert.equal(c.wire.maxMessageBytes, PRE_AUTH_MAX_MESSAGE);
    const metric = uniq("authf");
    await c.timeseries.putBuffered({ metric, entity: "e", value: 1, timestamp_ms: T0 });
    assert.ok((await c.timeseries.getBufferStats()).current_buffer_size >= 1);
    const w = c.timeseries.batchWriter({ maxPoints: 5000 });
    const N = 12000;
    for (let i = 0; i < N; i++) await w.put({ metric, entity: `host${i % 100}`, value: i, timestamp_ms: T0 + 1 + i });
    await w.close();
    assert.equal(w.pointsWritten, N);
    assert.ok(w.batchesWritten >= 6, `${w.batchesWritten} batches: a 5000-point frame does not fit 64 KiB`);
    assert.equal(total(await c.timeseries.query({ metric })), N + 1);
    // a single frame over 64 KiB is refused before sending
    const big = { pk: "big", vector: new Float32Array(20000) };
    await assert.rejects(() => c.vectors.addBuffered(big), /64 KiB/);
    await c.close();
    const wrong = new Client(srv.url, { token: "wrong-token-0123456789", transport: "wire", wire: { webSocket: "node", auth: "frame" } });
    const e = await wrong.timeseries.getBufferStats().then(() => null, (e) => e);
    assert.ok(e instanceof Unauthorized && e.wireStatus === 0x05, String(e));
    await wrong.close();
  });

  test("globalThis.WebSocket (node --experimental-websocket): AUTH frame, 64 KiB messages", async (t) => {
    const probe = await run(["--experimental-websocket", "-e", "process.stdout.write(typeof WebSocket)"]).catch(() => "");
    if (probe.trim() !== "function") return t.skip("this Node has no --experimental-websocket");
    const dist = new URL("../dist/index.js", import.meta.url).href;
    const script = `
      import { Client } from ${JSON.stringify(dist)};
      const url = process.argv[1], token = process.argv[2], metric = process.argv[3];
      const out = {};
      const c = new Client(url, { token, transport: "wire" });
      out.max = c.wire.maxMessageBytes;
      // Points through the buffer (counted since start: the buffer may flush meanwhile).
      const before = (await c.timeseries.getBufferStats()).points_buffered;
      await c.timeseries.putBuffered({ metric, entity: "e", value: 1, timestamp_ms: ${T0} });
      out.buffered = (await c.timeseries.getBufferStats()).points_buffered - before;
      const w = c.timeseries.batchWriter({ maxPoints: 5000 });
      for (let i = 0; i < 12000; i++) await w.put({ metric, entity: "host" + (i % 100), value: i, timestamp_ms: ${T0} + 1 + i });
      await w.close();
      out.written = w.pointsWritten; out.batches = w.batchesWritten;
      out.hits = (await c.vectors.search({ vector: [1, 2, 3], k: 1 })).length;
      await c.close();
      const none = new Client(url, { transport: "wire" });
      out.noToken = await none.timeseries.getBufferStats().then(() => "ok", (e) => e.name + " " + e.wireStatus);
      await none.close();
      console.log(JSON.stringify(out));`;
    const metric = uniq("gws");
    const text = await run(["--experimental-websocket", "--no-warnings", "--input-type=module", "-e", script, srv.url, TOKEN, metric]);
    const out = JSON.parse(text.trim().split("\n").pop());
    assert.equal(out.max, PRE_AUTH_MAX_MESSAGE);
    assert.ok(out.buffered >= 1);
    assert.equal(out.written, 12000);
    assert.ok(out.batches >= 6);
    assert.equal(out.hits, 1);
    assert.equal(out.noToken, "Unauthorized 5");
    const c = new Client(srv.url, { token: TOKEN });
    assert.equal(total(await c.timeseries.query({ metric })), 12001);
  });
});

function run(args) {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, args, { timeout: 60000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
  );
}

describe("wire batch writer through a full buffer (0x04 buffer_overflow)", () => {
  let srv;
  before(async () => (srv = await startServer({ env: FULL_ENV })));
  after(async () => srv && (await srv.stop()));

  test("refused batches are retried with batches in flight: nothing lost, duplicated or reordered", async () => {
    const c = new Client(srv.url);
    const metric = uniq("wfull");
    const state = { stop: false };
    const p = pressure(Client, NO_RETRY, srv.url, state);
    const nSeries = 4;
    const nTs = 3000;
    let w;
    try {
      await new Promise((r) => setTimeout(r, 200));
      w = c.timeseries.batchWriter({ transport: "wire", maxPoints: 500, retry: { maxRetries: 500, initialBackoffMs: 5, maxBackoffMs: 100 } });
      assert.equal(w.pipelineDepth, 4);
      const put = (i, s, value) => w.put({ metric, entity: `e${s}`, value, timestamp_ms: T0 + i, tags: { s: String(s) } });
      for (let i = 0; i < nTs; i++) {
        for (let s = 0; s < nSeries; s++) await put(i, s, -1);
        // overwrites the -1 written 50 timestamps ago (an earlier batch): the later write must win
        if (i >= 50) for (let s = 0; s < nSeries; s++) await put(i - 50, s, i - 50);
      }
      for (let i = nTs - 50; i < nTs; i++) for (let s = 0; s < nSeries; s++) await put(i, s, i);
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

describe("a server that goes away", () => {
  test("killed with a session open: calls and the batch writer fail with a TransportError, nothing hangs", async () => {
    const srv = await startServer();
    try {
      const retry = { maxRetries: 2, initialBackoffMs: 20, maxBackoffMs: 50 };
      const c = new Client(srv.url, { transport: "wire", retry, timeoutMs: 5000 });
      await c.timeseries.putBuffered({ metric: "gone", entity: "e", value: 1, timestamp_ms: T0 });
      const w = c.timeseries.batchWriter({ retry, flushIntervalMs: 60000 });
      await w.put({ metric: "gone", entity: "e", value: 2, timestamp_ms: T0 + 1 });
      await w.flush();
      assert.equal(w.pointsWritten, 1);
      process.kill(srv.pid, "SIGKILL");
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      const e = await c.timeseries.getBufferStats().then(() => null, (e) => e);
      assert.ok(e instanceof TransportError, String(e));
      await w.put({ metric: "gone", entity: "e", value: 3, timestamp_ms: T0 + 2 });
      const ew = await w.close().then(() => null, (e) => e);
      assert.ok(ew instanceof BatchWriteError, String(ew));
      assert.ok(ew.failures[0].error instanceof TransportError);
      assert.deepEqual(ew.failures[0].points.map((p) => p.value), [3]);
      assert.ok(Date.now() - t0 < 10000, "failed promptly");
      await c.close();
    } finally {
      await srv.stop();
    }
  });
});
