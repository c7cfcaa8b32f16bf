import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import {
  Client, NO_RETRY, SluiceError, APIError, BadRequest, Unauthorized, NotFound, MethodNotAllowed, Unprocessable,
  TooManyRequests, Unavailable, BufferOverflow, TransportError, TimeoutError, AbortedError, parseRetryAfter,
} from "../dist/index.js";
import { startServer, uniq, settle, TOKEN, FULL_ENV, pressure } from "./helpers.mjs";

describe("error mapping against a real server with a token", () => {
  let srv;
  before(async () => (srv = await startServer({ token: TOKEN })));
  after(async () => srv && (await srv.stop()));

  test("no token / wrong token: Unauthorized with the server's fields", async () => {
    for (const token of [undefined, "wrong-token-0123456789"]) {
      const c = new Client(srv.url, { token });
      const e = await c.timeseries.getBufferStats().then(() => null, (e) => e);
      assert.ok(e instanceof Unauthorized && e instanceof APIError && e instanceof SluiceError);
      assert.equal(e.status, 401);
      assert.equal(typeof e.code, "string");
      assert.match(e.errorId, /^[0-9a-f]+$/);
      assert.equal(e.attempts, 1);
    }
  });

  test("with the token every namespace works", async () => {
    const c = new Client(srv.url, { token: TOKEN });
    const metric = uniq("auth");
    await c.timeseries.putBuffered({ metric, entity: "e", value: 1, timestamp_ms: 1 });
    await c.timeseries.flushBuffer();
    const w = c.timeseries.batchWriter({ maxPoints: 10 });
    for (let i = 0; i < 25; i++) await w.put({ metric, entity: "w", value: i, timestamp_ms: 100 + i });
    await w.close();
    const r = await c.timeseries.query({ metric });
    assert.equal(r.series.reduce((a, s) => a + s.points.length, 0), 26);
    let n = 0;
    for await (const _ of c.changes({ fromLsn: 0 })) if (++n === 1) break;
    assert.equal(n, 1);
    let k = 0;
    for await (const _ of c.timeseries.export({ metric })) k++;
    assert.equal(k, 26);
    assert.ok((await c.databases.list()).length >= 1);
    assert.equal((await c.replication.getReplicationStats()).role, "primary");
  });

  test("400 with field, 404, 405, 422", async () => {
    const c = new Client(srv.url, { token: TOKEN });
    const metric = uniq("bad");
    const e400 = await c.timeseries
      .putBatch([{ metric, entity: "e", value: 1, timestamp_ms: 1 }, { metric: "", entity: "e", value: 1, timestamp_ms: 1 }])
      .then(() => null, (e) => e);
    assert.ok(e400 instanceof BadRequest, String(e400));
    assert.equal(e400.status, 400);
    assert.equal(e400.field, "points[1].metric");
    assert.ok(e400.code.startsWith("invalid_"));
    assert.equal(e400.body.error_id, e400.errorId);
    // nothing of a refused batch is written
    assert.deepEqual((await c.timeseries.query({ metric })).series, []);
    const e404 = await c.collections.get("nope").then(() => null, (e) => e);
    assert.ok(e404 instanceof NotFound);
    assert.equal(e404.code, "collection_not_found");
    const e405 = await c.http.json({ method: "PUT", path: "/ts/put" }).then(() => null, (e) => e);
    assert.ok(e405 instanceof MethodNotAllowed);
    assert.equal(e405.status, 405);
    const e422 = await c.timeseries.query({ metric, from_ms: 10, to_ms: 1 }).then(() => null, (e) => e);
    assert.ok(e422 instanceof Unprocessable && e422 instanceof BadRequest);
    assert.equal(e422.code, "invalid_value");
    assert.equal(e422.field, "to_ms");
    assert.match(String(e422), /status=422, code=invalid_value, field=to_ms/);
  });
});

describe("429 rate limit: Retry-After honoured", () => {
  let srv;
  before(async () => (srv = await startServer({ env: { SLUICE_ADMISSION_RATE_LIMIT_PER_SEC: "2", SLUICE_ADMISSION_RATE_LIMIT_BURST: "2" } })));
  after(async () => srv && (await srv.stop()));

  test("without retries: TooManyRequests with retryAfter", async () => {
    const c = new Client(srv.url, { retry: NO_RETRY });
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => c.timeseries.getBufferStats()));
    const refused = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    assert.ok(refused.length >= 3, `refused ${refused.length}`);
    for (const e of refused) {
      assert.ok(e instanceof TooManyRequests, String(e));
      assert.equal(e.status, 429);
      assert.ok(e.retryAfter > 0);
      assert.ok(e.retryable);
    }
  });

  test("with retries: every call succeeds after waiting", async () => {
    await new Promise((r) => setTimeout(r, 1100));
    const c = new Client(srv.url);
    const metric = uniq("rl");
    const t0 = Date.now();
    // puts without a timestamp are not idempotent, but a 429 means nothing was done: retried
    for (let i = 0; i < 5; i++) await c.timeseries.put({ metric, entity: "e", value: i });
    assert.ok(c.http.refusals >= 1, `refusals ${c.http.refusals}`);
    assert.ok(Date.now() - t0 >= 500);
    await new Promise((r) => setTimeout(r, 1100));
    const r = await c.timeseries.query({ metric });
    assert.equal(r.series[0].points.length, 5);
  });
});

describe("503 buffer_overflow", () => {
  let srv;
  before(async () => (srv = await startServer({ env: FULL_ENV })));
  after(async () => srv && (await srv.stop()));

  test("without retries: BufferOverflow; with retries every point is written once", async () => {
    const state = { stop: false };
    const p = pressure(Client, NO_RETRY, srv.url, state);
    try {
      const c0 = new Client(srv.url, { retry: NO_RETRY });
      const metric = uniq("ovf");
      const pts = Array.from({ length: 500 }, (_, i) => ({ metric, entity: "e", value: i, timestamp_ms: i }));
      let err;
      const deadline = Date.now() + 20000;
      while (!err && Date.now() < deadline) {
        try {
          await c0.timeseries.putBatch(pts, { ack: "buffer" });
        } catch (e) {
          err = e;
        }
      }
      assert.ok(err instanceof BufferOverflow && err instanceof Unavailable, String(err));
      assert.equal(err.status, 503);
      assert.equal(err.code, "buffer_overflow");
      assert.ok(err.retryable);

      const c = new Client(srv.url, { retry: { maxRetries: 100, maxBackoffMs: 200 } });
      const m2 = uniq("ovf2");
      const N = 600;
      await Promise.all(
        Array.from({ length: 4 }, async (_, w) => {
          for (let i = w; i < N; i += 4) await c.timeseries.putBuffered({ metric: m2, entity: "e", value: i, timestamp_ms: i });
        }),
      );
      assert.ok(c.http.refusals > 0, "the burst was never refused");
      state.stop = true;
      await p;
      await c.timeseries.flushBuffer();
      const r = await settle(() => c.timeseries.query({ metric: m2 }), (r) => r.series[0]?.points.length === N);
      assert.equal(r.series[0].points.length, N);
      assert.deepEqual(r.series[0].points.map((x) => x[0]), Array.from({ length: N }, (_, i) => i));
    } finally {
      state.stop = true;
      await p;
    }
  });
});

describe("retry rules against a scripted server", () => {
  let server, url, script, hits;
  before(async () => {
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        hits.push({ method: req.method, url: req.url, auth: req.headers.authorization, body });
        const step = script.shift() ?? { status: 200, body: { success: true } };
        if (step.destroy) return req.socket.destroy();
        if (step.hang) return;
        res.writeHead(step.status, { "content-type": "application/json", ...(step.headers ?? {}) });
        res.end(JSON.stringify(step.body ?? {}));
      });
    });
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${server.address().port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  const reset = (s) => {
    script = s;
    hits = [];
  };
  const overloaded = (h = {}) => ({ status: 503, headers: h, body: { error: "full", code: "buffer_overflow", error_id: "x1" } });

  test("503 with Retry-After: waits that long, then succeeds; sends the bearer token", async () => {
    reset([overloaded({ "retry-after": "1" }), overloaded({ "retry-after": "0" })]);
    const c = new Client(url, { token: "secret-token-1234567890" });
    const t0 = Date.now();
    await c.timeseries.putBuffered({ metric: "m", entity: "e", value: 1 });
    assert.ok(Date.now() - t0 >= 950, `waited ${Date.now() - t0} ms`);
    assert.equal(hits.length, 3);
    assert.equal(hits[0].auth, "Bearer secret-token-1234567890");
    assert.equal(c.http.refusals, 2);
  });

  test("gives up after maxRetries with attempts counted", async () => {
    reset([overloaded(), overloaded(), overloaded()]);
    const c = new Client(url, { retry: { maxRetries: 2, initialBackoffMs: 1 } });
    const e = await c.timeseries.getBufferStats().then(() => null, (e) => e);
    assert.ok(e instanceof BufferOverflow);
    assert.equal(e.attempts, 3);
    assert.equal(e.errorId, "x1");
  });

  test("503 config_drift and 4xx are not retried", async () => {
    reset([{ status: 503, body: { error: "drift", code: "config_drift", error_id: "y" } }]);
    const c = new Client(url, { retry: { initialBackoffMs: 1 } });
    await assert.rejects(() => c.version(), (e) => e instanceof Unavailable && e.attempts === 1);
    reset([{ status: 400, body: { error: "bad", code: "invalid_field", error_id: "z", field: "value" } }]);
    await assert.rejects(() => c.version(), (e) => e instanceof BadRequest && e.field === "value" && hits.length === 1);
  });

  test("a lost answer is re-sent only when repeating it is harmless", async () => {
    const c = new Client(url, { retry: { initialBackoffMs: 1 } });
    reset([{ destroy: true }]);
    const e = await c.timeseries.put({ metric: "m", entity: "e", value: 1 }).then(() => null, (e) => e);
    assert.ok(e instanceof TransportError, String(e));
    assert.equal(e.maybeApplied, true);
    assert.equal(hits.length, 1, "a point without timestamp is not re-sent");
    reset([{ destroy: true }]);
    await c.timeseries.put({ metric: "m", entity: "e", value: 1, timestamp_ms: 5 });
    assert.equal(hits.length, 2, "a point with a timestamp is re-sent");
    reset([{ destroy: true }]);
    await assert.rejects(() => c.vectors.delete("pk"), TransportError);
    assert.equal(hits.length, 1);
    reset([{ destroy: true }]);
    await c.vectors.add({ pk: "a", vector: [1] });
    assert.equal(hits.length, 2, "an add (upsert) is re-sent");
  });

  test("timeoutMs: TimeoutError; AbortSignal: AbortedError, never retried", async () => {
    const c = new Client(url, { timeoutMs: 200, retry: NO_RETRY });
    reset([{ hang: true }]);
    await assert.rejects(() => c.timeseries.getBufferStats(), (e) => e instanceof TimeoutError && e.maybeApplied);
    reset([{ hang: true }, { hang: true }]);
    const c2 = new Client(url, { timeoutMs: 150, retry: { maxRetries: 1, initialBackoffMs: 1 } });
    await assert.rejects(() => c2.timeseries.getBufferStats(), (e) => e instanceof TimeoutError && e.attempts === 2);
    reset([{ hang: true }]);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(() => new Client(url).timeseries.getBufferStats({ signal: ac.signal }), AbortedError);
    assert.equal(hits.length, 1);
  });

  test("connection refused is retried, then TransportError (not applied)", async () => {
    const tmp = http.createServer();
    await new Promise((r) => tmp.listen(0, "127.0.0.1", r));
    const port = tmp.address().port;
    await new Promise((r) => tmp.close(r));
    const c = new Client(`http://127.0.0.1:${port}`, { retry: { maxRetries: 2, initialBackoffMs: 1 } });
    const e = await c.timeseries.put({ metric: "m", entity: "e", value: 1 }).then(() => null, (e) => e);
    assert.ok(e instanceof TransportError);
    assert.equal(e.maybeApplied, false);
    assert.equal(e.attempts, 3);
  });

  test("parseRetryAfter: seconds and HTTP dates", () => {
    assert.equal(parseRetryAfter("3"), 3);
    assert.equal(parseRetryAfter(null), undefined);
    const d = parseRetryAfter(new Date(Date.now() + 5000).toUTCString());
    assert.ok(d > 3 && d <= 5);
  });
});
