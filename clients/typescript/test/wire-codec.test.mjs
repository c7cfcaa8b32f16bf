// The wire codec: the hex examples of docs/wire-protocol.md are test vectors (as in
// crates/sluice-wire/tests/doc_examples.rs), frames reassembled from any split, the error
// statuses mapped to the HTTP error classes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import {
  Opcode, Status, TIMESTAMP_NOW, FrameReader, TsItemEncoder, ByteWriter, encodeFrame, encodeAuth, encodeTsPut,
  encodeVectorWrite, encodeVectorRemove, encodeVectorSearch, decodeSearchHits, decodeTsPut, decodeU64, wsUrl,
  errorFromWire, isRefusal, BufferOverflow, TooManyRequests, Unauthorized, Forbidden, BadRequest, NotFound,
  Unprocessable, InsufficientStorage, Unavailable, PayloadTooLarge, ServerError,
} from "../dist/index.js";

const DOC = readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), "../../../docs/wire-protocol.md"), "utf8");

/** name → bytes of every ```hex NAME block. */
function examples() {
  const out = new Map();
  const lines = DOC.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^```hex (\S+)/.exec(lines[i]);
    if (!m) continue;
    const bytes = [];
    for (i++; !lines[i].startsWith("```"); i++) for (const t of lines[i].trim().split(/\s+/).filter(Boolean)) bytes.push(parseInt(t, 16));
    out.set(m[1], Uint8Array.from(bytes));
  }
  return out;
}

/** The bytes of the ```text block after `marker`. */
function textBlockAfter(marker) {
  const at = DOC.indexOf(marker);
  const start = DOC.indexOf("```text\n", at) + 8;
  const body = DOC.slice(start, DOC.indexOf("```", start));
  return Uint8Array.from(body.trim().split(/\s+/).map((t) => parseInt(t, 16)));
}

const utf8 = (s) => new TextEncoder().encode(s);

test("every documented example is produced byte for byte by the encoders", () => {
  const cpu = (timestamp_ms, value) => ({ metric: "cpu", entity: "a", timestamp_ms, value });
  const expected = {
    ts_put_buffered: encodeTsPut([{ metric: "cpu_usage", entity: "server01", timestamp_ms: 1702645200000, value: 75.5, tags: { datacenter: "eu-west-1" } }]),
    ts_put_buffered_batch: encodeTsPut([cpu(1000, 1.0), cpu(2000, 2.5)]),
    ts_put: encodeTsPut([cpu(1000, 1.0), cpu(2000, 2.5)], { buffered: false }),
    ts_buffer_stats: encodeFrame(Opcode.TS_BUFFER_STATS),
    ts_buffer_flush: encodeFrame(Opcode.TS_BUFFER_FLUSH),
    vector_add_buffered: encodeVectorWrite(Opcode.VECTOR_ADD_BUFFERED, [{ pk: "doc1", vector: [0.5, -1.0, 2.0], metadata: { category: "tech" } }]),
    vector_update_buffered: encodeVectorWrite(Opcode.VECTOR_UPDATE_BUFFERED, [{ pk: "doc1", vector: new Float32Array([1.0, 0.0]) }]),
    vector_remove_buffered_batch: encodeVectorRemove(["a", "bc"]),
    vector_buffer_stats: encodeFrame(Opcode.VECTOR_BUFFER_STATS),
    vector_buffer_flush: encodeFrame(Opcode.VECTOR_BUFFER_FLUSH),
    auth: encodeAuth("s3cret"),
    vector_search: encodeVectorSearch({ vector: [1.0, 0.0], k: 2, filter: { a: 1 } }),
    changes_subscribe: encodeFrame(Opcode.CHANGES_SUBSCRIBE, 0, utf8('{"from_lsn":41}')),
  };
  const docs = examples();
  assert.ok(docs.size >= 13, `only ${docs.size} examples found`);
  assert.deepEqual([...docs.keys()].filter((k) => !(k in expected)), [], "a documented example has no encoder check here");
  for (const [name, bytes] of docs) assert.deepEqual(expected[name], bytes, name);
  // and back: the points of the put examples
  assert.deepEqual(decodeTsPut(docs.get("ts_put_buffered_batch")), [cpu(1000, 1), cpu(2000, 2.5)]);
  assert.deepEqual(decodeTsPut(docs.get("ts_put_buffered"))[0].tags, { datacenter: "eu-west-1" });
});

test("the documented VECTOR_SEARCH answer decodes to the hit", () => {
  const answer = textBlockAfter("Its answer with one hit");
  const frames = [];
  new FrameReader().push(answer, (f) => frames.push(f));
  assert.equal(frames.length, 1);
  assert.equal(frames[0].status, Status.OK);
  assert.deepEqual(decodeSearchHits(frames[0].payload), [{ pk: "p1", score: 1, distance: 0, metadata: {} }]);
});

test("timestamps: TIMESTAMP_NOW is i64::MIN on the wire, and integers round-trip to ±2^53", () => {
  const f = encodeTsPut([{ metric: "m", entity: "e", value: 1 }]);
  assert.deepEqual([...f.subarray(6 + 2 + 1 + 2 + 1, 6 + 2 + 1 + 2 + 1 + 8)], [0, 0, 0, 0, 0, 0, 0, 0x80]);
  const ts = [0, 1, -1, 1702645200000, -1702645200000, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER];
  const pts = ts.map((t, i) => ({ metric: "m", entity: "e", value: i, timestamp_ms: t }));
  assert.deepEqual(decodeTsPut(encodeTsPut(pts)).map((p) => p.timestamp_ms), ts);
  assert.equal(decodeTsPut(f)[0].timestamp_ms, undefined);
  assert.equal(TIMESTAMP_NOW, -(2 ** 63));
  assert.throws(() => encodeTsPut([{ metric: "m", entity: "e", value: NaN }]), TypeError);
  assert.throws(() => encodeTsPut([{ metric: "m", entity: "e", value: 1, timestamp_ms: 1.5 }]), TypeError);
  assert.throws(() => encodeTsPut([{ metric: "m", entity: "e", value: 1, tags: { a: 1 } }]), TypeError);
  assert.throws(() => encodeTsPut([]), RangeError);
});

test("the series cache: tagged and untagged series, tag order, UTF-8", () => {
  const enc = new TsItemEncoder(2);
  const a = enc.series({ metric: "m", entity: "é", value: 1, tags: { b: "2", a: "1" } });
  const b = enc.series({ metric: "m", entity: "é", value: 2, tags: { a: "1", b: "2" } });
  assert.equal(a, b, "the same series whatever the key order");
  assert.equal(new TextDecoder().decode(a.tail.subarray(2)), '{"a":"1","b":"2"}');
  assert.equal(a.head.length, 2 + 1 + 2 + 2);
  enc.series({ metric: "m", entity: "x", value: 1 });
  enc.series({ metric: "m", entity: "y", value: 1 }); // over maxSeries: the cache starts over
  const w = new ByteWriter(4);
  TsItemEncoder.write(w, a, 5, 1.5);
  assert.equal(w.pos, TsItemEncoder.size(a));
});

test("FrameReader: answers split anywhere, several per chunk", () => {
  const frames = [
    Uint8Array.from([0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
    Uint8Array.from([0x04, 0, 2, 0, 0, 0, 0x7b, 0x7d]),
    Uint8Array.from([0, 0, 0, 0, 0, 0]),
  ];
  const all = Uint8Array.from(frames.flatMap((f) => [...f]));
  for (let cut1 = 0; cut1 <= all.length; cut1++) {
    for (let cut2 = cut1; cut2 <= all.length; cut2++) {
      const r = new FrameReader();
      const got = [];
      for (const part of [all.subarray(0, cut1), all.subarray(cut1, cut2), all.subarray(cut2)]) r.push(part, (f) => got.push(f));
      assert.equal(got.length, 3, `cuts ${cut1} ${cut2}`);
      assert.equal(r.pending, 0);
      assert.equal(decodeU64(got[0].payload), 1);
      assert.equal(got[1].status, 4);
      assert.equal(got[2].payload.length, 0);
    }
  }
  const r = new FrameReader();
  const got = [];
  for (const byte of all) r.push(Uint8Array.of(byte), (f) => got.push(f));
  assert.equal(got.length, 3);
});

test("wire statuses map to the HTTP error classes, with the body's fields", () => {
  const body = (code, extra = {}) => JSON.stringify({ error: "msg", code, error_id: "01ab", ...extra });
  const cases = [
    [0x04, body("buffer_overflow", { retry_after_sec: 2, buffer_size: 7 }), BufferOverflow, 503],
    [0x04, body("insufficient_storage", { retry_after_sec: 1 }), InsufficientStorage, 507],
    [0x04, body("not_ready"), Unavailable, 503],
    [0x07, body("rate_limited", { retry_after_sec: 1 }), TooManyRequests, 429],
    [0x05, body("unauthenticated"), Unauthorized, 401],
    [0x06, body("forbidden"), Forbidden, 403],
    [0x03, body("invalid_field", { field: "points[1].metric" }), BadRequest, 400],
    [0x03, body("invalid_value", { field: "vector" }), Unprocessable, 422],
    [0x03, body("collection_not_found"), NotFound, 404],
    [0x03, body("internal"), ServerError, 500],
    [0x02, body("frame_too_large"), PayloadTooLarge, 413],
    [0x02, body("malformed_payload"), BadRequest, 400],
    [0x01, body("invalid_opcode"), BadRequest, 400],
  ];
  for (const [status, text, cls, http] of cases) {
    const e = errorFromWire(status, text);
    assert.ok(e instanceof cls, `${status} ${text} → ${e.name}`);
    assert.equal(e.status, http);
    assert.equal(e.wireStatus, status);
    assert.equal(e.errorId, "01ab");
    assert.equal(e.message, "msg");
    assert.equal(isRefusal(e), status === 0x04 || status === 0x07, text);
  }
  const e = errorFromWire(0x04, body("buffer_overflow", { retry_after_sec: 2, buffer_size: 7 }));
  assert.equal(e.retryAfter, 2);
  assert.equal(e.bufferSize, 7);
  assert.equal(errorFromWire(0x03, body("invalid_field", { field: "k" })).field, "k");
  assert.equal(isRefusal(errorFromWire(0x04, body("config_drift"))), false, "config_drift is not retried");
  assert.match(String(e), /wire_status=0x04/);
});

test("wsUrl: the WebSocket URL of an HTTP base URL", () => {
  assert.equal(wsUrl("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/v1/ws");
  assert.equal(wsUrl("https://db.example/sluice/"), "wss://db.example/sluice/v1/ws");
  assert.throws(() => wsUrl("ftp://x"), TypeError);
});
