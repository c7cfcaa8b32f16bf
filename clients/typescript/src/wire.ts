/**
 * The codec of the binary wire protocol (docs/wire-protocol.md): request frames
 * `[opcode u8][flags u8][length u32][payload]`, response frames
 * `[status u8][flags u8][length u32][payload]`, little-endian, and each opcode's items. Points
 * are written straight into bytes (no JSON per point); a series' name bytes are encoded once
 * and reused ({@link TsItemEncoder}).
 */
import { DecodeError } from "./errors.js";
import { checkEntity, checkPoint, hasTags, vectorF32 } from "./points.js";
import type * as T from "./types.js";

/** Request opcodes. */
export const Opcode = {
  AUTH: 0x01,
  TS_PUT_BUFFERED: 0x70,
  TS_BUFFER_STATS: 0x71,
  TS_BUFFER_FLUSH: 0x72,
  TS_PUT: 0x73,
  VECTOR_ADD_BUFFERED: 0x80,
  VECTOR_UPDATE_BUFFERED: 0x81,
  VECTOR_REMOVE_BUFFERED: 0x82,
  VECTOR_BUFFER_STATS: 0x83,
  VECTOR_BUFFER_FLUSH: 0x84,
  WAL_APPLY_COMPRESSED: 0x90,
  REPLICATION_STATS: 0x91,
  REPLICATION_CONFIG: 0x92,
  CHANGES_SUBSCRIBE: 0x93,
  VECTOR_SEARCH: 0xa0,
} as const;

/** Response statuses. */
export const Status = {
  OK: 0x00,
  INVALID_OPCODE: 0x01,
  MALFORMED_PAYLOAD: 0x02,
  PROCESSING_ERROR: 0x03,
  BUFFER_OVERFLOW: 0x04,
  UNAUTHORIZED: 0x05,
  FORBIDDEN: 0x06,
  TOO_MANY_REQUESTS: 0x07,
} as const;

/** Bytes of a frame header. */
export const HEADER_LEN = 6;
/** Flag: the payload is `count u32` then `count` items. */
export const FLAG_BATCH = 0x01;
/** Response flag: a changefeed event (not an answer). */
export const FLAG_EVENT = 0x02;
/** `timestamp_ms = i64::MIN` (-2^63): the server stamps the point with its receive time. */
export const TIMESTAMP_NOW = -9223372036854775808;
/** Frames of a session not authenticated at the WebSocket upgrade: messages of at most 64 KiB. */
export const PRE_AUTH_MAX_MESSAGE = 64 * 1024;

const te = new TextEncoder();
const td = new TextDecoder();
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const TWO_32 = 4294967296;

/** A growable little-endian byte buffer. */
export class ByteWriter {
  buf: Uint8Array;
  view: DataView;
  pos = 0;

  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
  }

  /** Makes room for `n` more bytes. */
  reserve(n: number): void {
    if (this.pos + n > this.buf.length) this.grow(this.pos + n);
  }

  private grow(need: number): void {
    const b = new Uint8Array(Math.max(need, this.buf.length * 2));
    b.set(this.buf.subarray(0, this.pos));
    this.buf = b;
    this.view = new DataView(b.buffer);
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf[this.pos++] = v;
  }
  u16(v: number): void {
    this.reserve(2);
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }
  /** A signed 64-bit integer from a JavaScript integer (exact within ±2^53, and -2^63). */
  i64(v: number): void {
    this.reserve(8);
    writeI64(this.view, this.pos, v);
    this.pos += 8;
  }
  f64(v: number): void {
    this.reserve(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.pos, v, true);
    this.pos += 4;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  /** `len u16` + UTF-8. */
  str16(s: string, what: string): void {
    this.reserve(2 + 3 * s.length);
    const { written } = te.encodeInto(s, this.buf.subarray(this.pos + 2));
    if (written > 0xffff) throw new RangeError(`${what} is longer than 65535 bytes`);
    this.view.setUint16(this.pos, written, true);
    this.pos += 2 + written;
  }
  /** `len u32` + bytes. */
  bytes32(b: Uint8Array): void {
    this.u32(b.length);
    this.bytes(b);
  }
  /** The bytes written so far (a view, not a copy). */
  result(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

/** Writes `v` as a little-endian i64 (JavaScript integers: exact within ±2^53, and -2^63). */
function writeI64(view: DataView, at: number, v: number): void {
  view.setUint32(at, v >>> 0, true);
  view.setInt32(at + 4, Math.floor(v / TWO_32), true);
}

/** Starts a request frame in `w`; {@link endFrame} writes its length. Returns its start. */
export function beginFrame(w: ByteWriter, op: number, flags = 0): number {
  const start = w.pos;
  w.reserve(HEADER_LEN);
  w.buf[start] = op;
  w.buf[start + 1] = flags;
  w.pos += HEADER_LEN;
  return start;
}

/** Writes the length of the frame begun at `start` (its payload is everything after it). */
export function endFrame(w: ByteWriter, start: number): void {
  w.view.setUint32(start + 2, w.pos - start - HEADER_LEN, true);
}

/** A request frame with `payload` (empty by default: stats, flush). */
export function encodeFrame(op: number, flags = 0, payload?: Uint8Array): Uint8Array {
  const w = new ByteWriter(HEADER_LEN + (payload?.length ?? 0));
  const start = beginFrame(w, op, flags);
  if (payload) w.bytes(payload);
  endFrame(w, start);
  return w.result();
}

/** `AUTH` with a bearer token or JWT. */
export function encodeAuth(token: string): Uint8Array {
  const w = new ByteWriter(HEADER_LEN + 2 + token.length * 3);
  const start = beginFrame(w, Opcode.AUTH);
  w.str16(token, "the token");
  endFrame(w, start);
  return w.result();
}

/** A series' encoded bytes: `head` = metric and entity, `tail` = `tags_len` and tags. */
export interface SeriesBytes {
  head: Uint8Array;
  tail: Uint8Array;
}

const NO_TAGS = new Uint8Array(2);

/** The tags as the wire's JSON object, keys sorted. */
function tagsText(tags: Record<string, string>): string {
  const keys = Object.keys(tags).sort();
  let s = "{";
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    s += (i ? "," : "") + JSON.stringify(k) + ":" + JSON.stringify(tags[k]);
  }
  return s + "}";
}

/**
 * Encodes `TS_PUT_BUFFERED` / `TS_PUT` items. Each series' metric, entity and tags are encoded
 * once and cached (at most `maxSeries` series, then the cache starts over); a point then costs
 * two map lookups and three writes.
 */
export class TsItemEncoder {
  private untagged = new Map<string, Map<string, SeriesBytes>>();
  private tagged = new Map<string, SeriesBytes>();
  private cached = 0;

  constructor(private readonly maxSeries = 100_000) {}

  /** The bytes of `p`'s series (checks the point first). */
  series(p: T.PointInput): SeriesBytes {
    checkPoint(p);
    const tags = p.tags;
    if (!hasTags(tags)) {
      let byEntity = this.untagged.get(p.metric);
      if (byEntity === undefined) {
        byEntity = new Map();
        this.untagged.set(p.metric, byEntity);
      }
      let s = byEntity.get(p.entity);
      if (s === undefined) {
        s = { head: encodeHead(p.metric, p.entity), tail: NO_TAGS };
        byEntity.set(p.entity, s);
        this.count();
      }
      return s;
    }
    const text = tagsText(tags);
    const key = p.metric + "\u0000" + p.entity + "\u0000" + text;
    let s = this.tagged.get(key);
    if (s === undefined) {
      const w = new ByteWriter(2 + text.length * 3);
      w.str16(text, "tags");
      s = { head: encodeHead(p.metric, p.entity), tail: w.result() };
      this.tagged.set(key, s);
      this.count();
    }
    return s;
  }

  private count(): void {
    if (++this.cached > this.maxSeries) {
      this.untagged.clear();
      this.tagged.clear();
      this.cached = 0;
    }
  }

  /** Bytes of an item of series `s`. */
  static size(s: SeriesBytes): number {
    return s.head.length + 16 + s.tail.length;
  }

  /** Appends one item: series `s`, `timestampMs` ({@link TIMESTAMP_NOW}: the server's clock), `value`. */
  static write(w: ByteWriter, s: SeriesBytes, timestampMs: number, value: number): void {
    const h = s.head;
    const t = s.tail;
    w.reserve(h.length + 16 + t.length);
    const buf = w.buf;
    let at = w.pos;
    if (h.length < 48) for (let i = 0; i < h.length; i++) buf[at++] = h[i]!;
    else {
      buf.set(h, at);
      at += h.length;
    }
    writeI64(w.view, at, timestampMs);
    w.view.setFloat64(at + 8, value, true);
    at += 16;
    if (t.length === 2) {
      buf[at] = t[0]!;
      buf[at + 1] = t[1]!;
      at += 2;
    } else {
      buf.set(t, at);
      at += t.length;
    }
    w.pos = at;
  }
}

function encodeHead(metric: string, entity: string): Uint8Array {
  const w = new ByteWriter(4 + 3 * (metric.length + entity.length));
  w.str16(metric, "metric");
  w.str16(entity, "entity");
  return w.result().slice();
}

/** True when every point carries a timestamp (re-sending them changes nothing). */
export function allStamped(points: readonly T.PointInput[]): boolean {
  return points.every((p) => p.timestamp_ms !== undefined && p.timestamp_ms !== null);
}

/**
 * `TS_PUT_BUFFERED` (`buffered`, default) or `TS_PUT` of `points`, with the batch flag unless
 * `batch` is false (then exactly one point). A point without `timestamp_ms` is sent as
 * {@link TIMESTAMP_NOW}.
 */
export function encodeTsPut(points: readonly T.PointInput[], opts: { buffered?: boolean; batch?: boolean } = {}): Uint8Array {
  const batch = opts.batch ?? points.length !== 1;
  if (points.length === 0) throw new RangeError("a put needs at least one point");
  if (!batch && points.length !== 1) throw new RangeError("without the batch flag a frame holds one point");
  const enc = new TsItemEncoder();
  const w = new ByteWriter(HEADER_LEN + 4 + points.length * 40);
  const start = beginFrame(w, opts.buffered === false ? Opcode.TS_PUT : Opcode.TS_PUT_BUFFERED, batch ? FLAG_BATCH : 0);
  if (batch) w.u32(points.length);
  for (const p of points) {
    const s = enc.series(p);
    TsItemEncoder.write(w, s, p.timestamp_ms ?? TIMESTAMP_NOW, p.value);
  }
  endFrame(w, start);
  return w.result();
}

function writeF32s(w: ByteWriter, v: Float32Array): void {
  w.u32(v.length);
  if (LITTLE_ENDIAN) {
    w.bytes(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  } else {
    for (let i = 0; i < v.length; i++) w.f32(v[i]!);
  }
}

/** `VECTOR_ADD_BUFFERED` / `VECTOR_UPDATE_BUFFERED` of entities (collection `default`). */
export function encodeVectorWrite(op: number, entities: readonly T.VectorEntity[], batch = entities.length !== 1): Uint8Array {
  if (entities.length === 0) throw new RangeError("a write needs at least one entity");
  const w = new ByteWriter(HEADER_LEN + 4 + entities.length * 64);
  const start = beginFrame(w, op, batch ? FLAG_BATCH : 0);
  if (batch) w.u32(entities.length);
  for (const e of entities) {
    checkEntity(e);
    w.str16(e.pk, "pk");
    writeF32s(w, vectorF32(e.vector));
    w.bytes32(e.metadata === undefined ? new Uint8Array(0) : te.encode(JSON.stringify(e.metadata)));
  }
  endFrame(w, start);
  return w.result();
}

/** `VECTOR_REMOVE_BUFFERED` of pks (collection `default`). */
export function encodeVectorRemove(pks: readonly string[], batch = pks.length !== 1): Uint8Array {
  if (pks.length === 0) throw new RangeError("a remove needs at least one pk");
  const w = new ByteWriter(HEADER_LEN + 4 + pks.length * 16);
  const start = beginFrame(w, Opcode.VECTOR_REMOVE_BUFFERED, batch ? FLAG_BATCH : 0);
  if (batch) w.u32(pks.length);
  for (const pk of pks) {
    if (typeof pk !== "string") throw new TypeError("pk must be a string");
    w.str16(pk, "pk");
  }
  endFrame(w, start);
  return w.result();
}

/** The query of `VECTOR_SEARCH`. */
export interface WireSearch {
  /** Default `default` (sent as 0 bytes). */
  collection?: string;
  vector: T.VectorEntity["vector"];
  k: number;
  /** 0 or undefined: the collection's `ef_search`. */
  ef?: number;
  filter?: Record<string, unknown>;
}

/** `VECTOR_SEARCH`. */
export function encodeVectorSearch(q: WireSearch): Uint8Array {
  const vector = vectorF32(q.vector);
  if (!Number.isInteger(q.k) || q.k < 0 || q.k > 0xffffffff) throw new TypeError("k must be a non-negative integer");
  const ef = q.ef ?? 0;
  if (!Number.isInteger(ef) || ef < 0 || ef > 0xffffffff) throw new TypeError("ef must be a non-negative integer");
  const w = new ByteWriter(HEADER_LEN + 32 + vector.byteLength);
  const start = beginFrame(w, Opcode.VECTOR_SEARCH);
  const collection = q.collection === undefined || q.collection === "default" ? "" : q.collection;
  w.str16(collection, "collection");
  w.u32(q.k);
  w.u32(ef);
  writeF32s(w, vector);
  w.bytes32(q.filter === undefined ? new Uint8Array(0) : te.encode(JSON.stringify(q.filter)));
  endFrame(w, start);
  return w.result();
}

// -- decoding

/** One response frame. `payload` is a view into the received bytes. */
export interface Frame {
  status: number;
  flags: number;
  payload: Uint8Array;
}

/**
 * Reassembles response frames from a byte stream: answers may come split across messages, or
 * several per message. `push` each message's bytes; whole frames go to `emit`, in order.
 */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  private have = 0;
  private need = HEADER_LEN;

  /** Bytes held of an incomplete frame. */
  get pending(): number {
    return this.have;
  }

  push(chunk: Uint8Array, emit: (f: Frame) => void): void {
    let data = chunk;
    if (this.have) {
      this.chunks.push(chunk);
      this.have += chunk.length;
      if (this.have < this.need) return;
      data = concat(this.chunks, this.have);
      this.chunks = [];
      this.have = 0;
    }
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let at = 0;
    while (data.length - at >= HEADER_LEN) {
      const n = view.getUint32(at + 2, true);
      if (data.length - at - HEADER_LEN < n) break;
      emit({ status: data[at]!, flags: data[at + 1]!, payload: data.subarray(at + HEADER_LEN, at + HEADER_LEN + n) });
      at += HEADER_LEN + n;
    }
    if (at < data.length) {
      const rest = data.subarray(at);
      this.chunks = [rest];
      this.have = rest.length;
      this.need = rest.length < HEADER_LEN ? HEADER_LEN : HEADER_LEN + view.getUint32(at + 2, true);
    }
  }
}

/** The bytes of `chunks` (`total` long) in one array. */
export function concat(chunks: readonly Uint8Array[], total = chunks.reduce((a, c) => a + c.length, 0)): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Reads a payload; every read past its end throws {@link DecodeError}. */
class ByteReader {
  private view: DataView;
  pos = 0;
  constructor(private readonly b: Uint8Array) {
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  private need(n: number): number {
    if (this.pos + n > this.b.length) throw new DecodeError(`wire answer truncated: ${this.b.length} bytes`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  u16(): number {
    return this.view.getUint16(this.need(2), true);
  }
  u32(): number {
    return this.view.getUint32(this.need(4), true);
  }
  f32(): number {
    return this.view.getFloat32(this.need(4), true);
  }
  f64(): number {
    return this.view.getFloat64(this.need(8), true);
  }
  i64(): number {
    const at = this.need(8);
    return this.view.getInt32(at + 4, true) * TWO_32 + this.view.getUint32(at, true);
  }
  bytes(n: number): Uint8Array {
    const at = this.need(n);
    return this.b.subarray(at, at + n);
  }
  str(n: number): string {
    return td.decode(this.bytes(n));
  }
  get done(): boolean {
    return this.pos === this.b.length;
  }
}

/** A `u64` answer (buffer size, LSN) as a number. */
export function decodeU64(payload: Uint8Array): number {
  if (payload.length !== 8) throw new DecodeError(`wire answer of ${payload.length} bytes, expected 8`);
  const v = new DataView(payload.buffer, payload.byteOffset, 8);
  return v.getUint32(4, true) * TWO_32 + v.getUint32(0, true);
}

/** A JSON answer (stats, flush). */
export function decodeJson<R>(payload: Uint8Array): R {
  const text = td.decode(payload);
  try {
    return JSON.parse(text) as R;
  } catch (e) {
    throw new DecodeError(`wire answer is not JSON: ${text.slice(0, 200)}`, { cause: e });
  }
}

/** The text of a payload (error frames carry the error JSON). */
export function decodeText(payload: Uint8Array): string {
  return td.decode(payload);
}

/** The hits of a `VECTOR_SEARCH` answer, best first, shaped like `POST /vectors/search`'s. */
export function decodeSearchHits(payload: Uint8Array): T.SearchResult[] {
  const r = new ByteReader(payload);
  const n = r.u32();
  if (n > payload.length) throw new DecodeError(`wire search answer claims ${n} hits in ${payload.length} bytes`);
  const out: T.SearchResult[] = [];
  for (let i = 0; i < n; i++) {
    const pk = r.str(r.u16());
    const distance = r.f32();
    const score = r.f32();
    const m = r.u32();
    const metadata = m ? decodeJson<Record<string, never>>(r.bytes(m)) : {};
    out.push({ pk, score, distance, metadata });
  }
  if (!r.done) throw new DecodeError("wire search answer has trailing bytes");
  return out;
}

/** The points of a `TS_PUT_BUFFERED` / `TS_PUT` request frame (to report a refused batch). */
export function decodeTsPut(frame: Uint8Array): T.DataPoint[] {
  const r = new ByteReader(frame);
  r.bytes(1);
  const flags = r.bytes(1)[0]!;
  const len = r.u32();
  if (len !== frame.length - HEADER_LEN) throw new DecodeError("frame length mismatch");
  const count = flags & FLAG_BATCH ? r.u32() : 1;
  const out: T.DataPoint[] = [];
  for (let i = 0; i < count; i++) {
    const metric = r.str(r.u16());
    const entity = r.str(r.u16());
    const ts = r.i64();
    const value = r.f64();
    const tl = r.u16();
    const p: T.DataPoint = { metric, entity, timestamp_ms: ts, value };
    if (ts === TIMESTAMP_NOW) delete (p as Partial<T.DataPoint>).timestamp_ms;
    if (tl) p.tags = decodeJson<Record<string, string>>(r.bytes(tl));
    out.push(p);
  }
  return out;
}
