// The WebSocket transport against a scripted server: the RFC 6455 client (handshake, masking,
// fragmented answers, ping), pipelining and its retry rules (refused suffix, redo, lost
// answers), timeouts, aborts and dropped connections.
import { test, describe, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  Client, WireClient, encodeTsPut, decodeTsPut, decodeU64, SluiceError, BufferOverflow, TransportError, TimeoutError,
  AbortedError, Unauthorized, BatchWriteError,
} from "../dist/index.js";
import { scriptedServer, answer, u64, overflow, wsFrame } from "./wsserver.mjs";

const FAST = { maxRetries: 5, initialBackoffMs: 1, maxBackoffMs: 5 };
const point = (value, timestamp_ms = 1000 + value) => ({ metric: "m", entity: "e", value, timestamp_ms });
const frameOf = (value, stamped = true) => encodeTsPut([stamped ? point(value) : { metric: "m", entity: "e", value }]);

/** The value of each TS put frame received, in order. */
function received(frames) {
  return frames.map((f) => {
    const head = Buffer.alloc(6);
    head[0] = f.op;
    head[1] = f.flags;
    head.writeUInt32LE(f.payload.length, 2);
    return decodeTsPut(Buffer.concat([head, f.payload]))[0].value;
  });
}

let srv;
afterEach(() => srv?.close());

const wireClient = (url, opts = {}) => new WireClient(url, { retry: FAST, timeoutMs: 5000, wire: { webSocket: "node" }, ...opts });

describe("handshake", () => {
  test("the upgrade carries the token; a refused upgrade is the server's error", async () => {
    srv = await scriptedServer({
      onUpgrade: (req, socket) => {
        if (req.headers.authorization === "Bearer good") return false;
        const body = JSON.stringify({ error: "invalid or expired credentials", code: "unauthenticated", error_id: "0a" });
        socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
        return true;
      },
      onMessage: (conn) => conn.send(answer(0, u64(3))),
    });
    const bad = wireClient(srv.url, { token: "bad" });
    const e = await bad.call(frameOf(1)).then(() => null, (e) => e);
    assert.ok(e instanceof Unauthorized, String(e));
    assert.equal(e.code, "unauthenticated");
    assert.equal(e.errorId, "0a");
    const good = wireClient(srv.url, { token: "good" });
    assert.equal(decodeU64(await good.call(frameOf(1))), 3);
    assert.equal(srv.upgrades.at(-1).authorization, "Bearer good");
    assert.equal(srv.upgrades.at(-1).origin, undefined, "no Origin: the server refuses other origins");
    await good.close();
  });

  test("a server that is not a WebSocket (no 101, bad accept) fails clearly", async () => {
    srv = await scriptedServer({
      onUpgrade: (req, socket) => {
        socket.end("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n");
        return true;
      },
    });
    const e = await wireClient(srv.url, { retry: { maxRetries: 0 } }).call(frameOf(1)).then(() => null, (e) => e);
    assert.ok(e instanceof TransportError, String(e));
    assert.match(e.message, /not a valid WebSocket handshake/);
  });
});

describe("answers", () => {
  test("pipelined calls share one message; answers split byte by byte, fragmented, after a ping", async () => {
    const pings = [];
    srv = await scriptedServer({
      onMessage: (conn, frames) => {
        const out = Buffer.concat(frames.map((f, i) => answer(0, u64(i + 10))));
        // a ping first, then the answers as a fragmented message of 1-byte pieces
        const ping = Buffer.from("are you there");
        pings.push(ping);
        conn.raw(wsFrame(0x9, ping));
        for (let i = 0; i < out.length; i++) conn.raw(wsFrame(i === 0 ? 0x2 : 0x0, out.subarray(i, i + 1), i === out.length - 1));
      },
    });
    const w = wireClient(srv.url);
    const got = await Promise.all([1, 2, 3, 4, 5].map((v) => w.call(frameOf(v)).then(decodeU64)));
    assert.deepEqual(got, [10, 11, 12, 13, 14]);
    assert.equal(srv.conns[0].messages, 1, "the five frames went in one message");
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(srv.pongs.map(String), pings.map(String));
    await w.close();
  });

  test("answers for several messages arriving in one TCP write, and one answer across messages", async () => {
    let held = [];
    srv = await scriptedServer({
      onMessage: (conn, frames) => {
        held.push(...frames.map(() => answer(0, u64(7))));
        if (held.length < 3) return;
        const all = Buffer.concat(held);
        held = [];
        // two WebSocket messages that cut an answer frame in two, written at once
        conn.raw(Buffer.concat([wsFrame(0x2, all.subarray(0, 20)), wsFrame(0x2, all.subarray(20))]));
      },
    });
    const w = wireClient(srv.url);
    const a = w.call(frameOf(1));
    await new Promise((r) => setTimeout(r, 20));
    const b = w.call(frameOf(2));
    await new Promise((r) => setTimeout(r, 20));
    const c = w.call(frameOf(3));
    assert.deepEqual((await Promise.all([a, b, c])).map(decodeU64), [7, 7, 7]);
    await w.close();
  });
});

describe("pipeline retries", () => {
  test("a refused suffix is re-sent, in order, after retry_after_sec", async () => {
    const seen = [];
    let round = 0;
    srv = await scriptedServer({
      onMessage: (conn, frames) => {
        seen.push(...frames);
        round++;
        conn.send(Buffer.concat(frames.map((f, i) => (round === 1 && i > 0 ? overflow() : answer(0, u64(1))))));
      },
    });
    const w = wireClient(srv.url);
    const out = await w.pipeline([frameOf(1), frameOf(2), frameOf(3)]);
    assert.ok(out.every((o) => o instanceof Uint8Array));
    assert.deepEqual(received(seen), [1, 2, 3, 2, 3]);
    assert.equal(w.refusals, 2);
    await w.close();
  });

  test("refused, then a later frame applied: idempotent frames are re-sent together (the later one still wins)", async () => {
    const seen = [];
    let round = 0;
    srv = await scriptedServer({
      onMessage: (conn, frames) => {
        seen.push(...frames);
        round++;
        conn.send(Buffer.concat(frames.map((f, i) => (round === 1 && i === 0 ? overflow() : answer(0, u64(1))))));
      },
    });
    const w = wireClient(srv.url);
    const out = await w.pipeline([frameOf(1), frameOf(2)]);
    assert.ok(out.every((o) => o instanceof Uint8Array), String(out));
    assert.deepEqual(received(seen), [1, 2, 1, 2]);
    await w.close();
  });

  test("refused, then a later frame applied, not idempotent: the refusal is reported, nothing re-sent", async () => {
    const seen = [];
    srv = await scriptedServer({
      onMessage: (conn, frames) => {
        seen.push(...frames);
        conn.send(Buffer.concat(frames.map((f, i) => (i === 0 ? overflow() : answer(0, u64(1))))));
      },
    });
    const w = wireClient(srv.url);
    const out = await w.pipeline([frameOf(1, false), frameOf(2, false)], { idempotent: false });
    assert.ok(out[0] instanceof BufferOverflow, String(out[0]));
    assert.match(out[0].message, /not re-sent/);
    assert.ok(out[1] instanceof Uint8Array);
    assert.equal(seen.length, 2);
    await w.close();
  });

  test("refusals until the retries run out: the refusal, with its attempts", async () => {
    srv = await scriptedServer({ onMessage: (conn, frames) => conn.send(Buffer.concat(frames.map(() => overflow()))) });
    const w = wireClient(srv.url, { retry: { maxRetries: 2, initialBackoffMs: 1 } });
    const e = await w.call(frameOf(1)).then(() => null, (e) => e);
    assert.ok(e instanceof BufferOverflow);
    assert.equal(e.attempts, 3);
    assert.equal(e.wireStatus, 4);
    assert.equal(e.bufferSize, 9);
    await w.close();
  });

  test("a lost answer: re-sent on a new connection when idempotent, else a TransportError (maybe applied)", async () => {
    let n = 0;
    srv = await scriptedServer({
      onMessage: (conn) => {
        if (n++ % 2 === 0) conn.socket.destroy();
        else conn.send(answer(0, u64(5)));
      },
    });
    const w = wireClient(srv.url);
    assert.equal(decodeU64(await w.call(frameOf(1))), 5);
    assert.equal(srv.conns.length, 2);
    const e = await w.call(frameOf(2, false), { idempotent: false }).then(() => null, (e) => e);
    assert.ok(e instanceof TransportError && !(e instanceof TimeoutError), String(e));
    assert.equal(e.maybeApplied, true);
    assert.equal(srv.conns.length, 2, "sent once on the open connection, not re-sent");
    await w.close();
  });
});

describe("timeouts, aborts, drops", () => {
  test("no answer in timeoutMs: TimeoutError; the next call reconnects", async () => {
    let answerNow = false;
    srv = await scriptedServer({ onMessage: (conn) => answerNow && conn.send(answer(0, u64(1))) });
    const w = wireClient(srv.url, { retry: { maxRetries: 0 } });
    const t0 = Date.now();
    const e = await w.call(frameOf(1), { timeoutMs: 150 }).then(() => null, (e) => e);
    assert.ok(e instanceof TimeoutError, String(e));
    assert.ok(Date.now() - t0 < 2000);
    answerNow = true;
    assert.equal(decodeU64(await w.call(frameOf(2))), 1);
    assert.equal(srv.conns.length, 2);
    await w.close();
  });

  test("an AbortSignal ends the call at once with AbortedError", async () => {
    srv = await scriptedServer({ onMessage: () => {} });
    const w = wireClient(srv.url);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(() => w.call(frameOf(1), { signal: ac.signal }), AbortedError);
    await w.close();
  });

  test("the server drops the connection with calls pending: they fail, nothing hangs", async () => {
    srv = await scriptedServer({ onMessage: (conn) => setTimeout(() => conn.socket.destroy(), 20) });
    const w = wireClient(srv.url, { retry: { maxRetries: 1, initialBackoffMs: 1 } });
    const calls = [1, 2, 3].map((v) => w.call(frameOf(v, false), { idempotent: false }).then(() => null, (e) => e));
    for (const e of await Promise.all(calls)) {
      assert.ok(e instanceof TransportError, String(e));
      assert.equal(e.maybeApplied, true);
    }
    await w.close();
    await assert.rejects(() => w.call(frameOf(1)), SluiceError);
  });
});

describe("batch writer over the wire (scripted)", () => {
  test("client timestamps: a batch whose answer was lost is re-sent identically", async () => {
    const seen = [];
    let n = 0;
    srv = await scriptedServer({
      onMessage: (conn, frames, raw) => {
        seen.push(Buffer.from(raw));
        if (n++ === 0) conn.socket.destroy();
        else conn.send(answer(0, u64(1)));
      },
    });
    const w = new Client(srv.url, { wire: { webSocket: "node" } }).timeseries.batchWriter({ transport: "wire", retry: FAST });
    await w.put({ metric: "m", entity: "e", value: 1 });
    await w.close();
    assert.equal(seen.length, 2);
    assert.deepEqual(seen[0], seen[1]);
    assert.equal(w.pointsWritten, 1);
  });

  test("server timestamps: not re-sent, reported as maybe applied with the points", async () => {
    const seen = [];
    srv = await scriptedServer({
      onMessage: (conn, frames) => {
        seen.push(...frames);
        conn.socket.destroy();
      },
    });
    const w = new Client(srv.url, { wire: { webSocket: "node" } }).timeseries.batchWriter({ transport: "wire", timestamps: "server", retry: FAST });
    await w.put({ metric: "m", entity: "e", value: 1, tags: { k: "v" } });
    const e = await w.close().then(() => null, (e) => e);
    assert.ok(e instanceof BatchWriteError, String(e));
    assert.ok(e.failures[0].error instanceof TransportError);
    assert.equal(e.failures[0].error.maybeApplied, true);
    assert.deepEqual(e.failures[0].points, [{ metric: "m", entity: "e", value: 1, tags: { k: "v" } }]);
    assert.equal(seen.length, 1);
  });
});
