/**
 * The auto-batching time-series writer: `client.timeseries.batchWriter({...})`.
 *
 * - a batch is sent when it holds `maxPoints` points or `maxBytes` encoded bytes, or when its
 *   oldest point is `flushIntervalMs` old;
 * - memory is bounded: at most `maxQueuePoints` points (and `maxQueueBytes` bytes) are queued;
 *   when the queue is full, `await writer.put()` waits until the sender frees room
 *   (`onFull: "block"`, at most `blockTimeoutMs`) or throws {@link QueueFull}
 *   (`onFull: "raise"`);
 * - `transport: "http"` (default) posts one batch at a time to `/ts/put/batch`;
 *   `transport: "wire"` sends each batch as one `TS_PUT_BUFFERED` frame (`TS_PUT` for
 *   `ack: "wal"` / `"fsync"`) over `/v1/ws`, points encoded straight to bytes, with
 *   `pipelineDepth` batches in flight; either way batches are written in the order of the
 *   writes (a refused wire batch is re-sent only where that keeps the order);
 * - refusals that mean "nothing done" (HTTP 429/503/507, wire `0x04`/`0x07`) are retried after
 *   `Retry-After` / `retry_after_sec` (else an exponential backoff); a batch whose answer was
 *   lost is re-sent only if every point has a timestamp (the default stamps points with the
 *   client's clock at `put()` time), so nothing is duplicated;
 * - a batch that still fails is reported to `onError(failure)`, and listed by `errors()`;
 *   `close()` sends everything still queued, waits for it, and throws {@link BatchWriteError}
 *   if a batch failed and no `onError` was given.
 */
import { BatchWriteError, QueueFull, SluiceError, type WriteFailure } from "./errors.js";
import type { HttpTransport } from "./http.js";
import { DEFAULT_WRITER_RETRY, type RetryPolicy } from "./retry.js";
import type { Ack, PointInput } from "./types.js";
import { pointJson } from "./points.js";
import {
  ByteWriter,
  FLAG_BATCH,
  HEADER_LEN,
  Opcode,
  TIMESTAMP_NOW,
  TsItemEncoder,
  beginFrame,
  decodeTsPut,
  endFrame,
} from "./wire.js";
import type { OrderedPipeline, Outcome, WireClient } from "./wire-client.js";

export interface BatchWriterOptions {
  /** `http` (default): `POST /ts/put/batch`; `wire`: pipelined frames over `/v1/ws` (database `default` only). */
  transport?: "http" | "wire";
  /** Points per batch (default 5000; the server accepts up to 100000). */
  maxPoints?: number;
  /** Encoded bytes per batch: JSON over HTTP, binary over the wire (default 1 MiB). */
  maxBytes?: number;
  /** Send a batch when its oldest point is this old (default 1000 ms). */
  flushIntervalMs?: number;
  /** Wire: batches in flight at once (default 4). */
  pipelineDepth?: number;
  /** Points held in memory at most: queued, sealed and in flight (default max((depth + 1) × maxPoints, 10000); depth is 3 over HTTP). */
  maxQueuePoints?: number;
  /** Encoded bytes held in memory at most (default (depth + 1) × maxBytes). */
  maxQueueBytes?: number;
  /** When the queue is full: `block` (default: `await put()` waits) or `raise` (QueueFull). */
  onFull?: "block" | "raise";
  /** With `block`, throw QueueFull after waiting this long (default: wait forever). */
  blockTimeoutMs?: number;
  /** Called with every batch that could not be written (then close() does not throw). */
  onError?: (failure: WriteFailure) => void;
  /** Acknowledgement: `buffer` (default); `wal`/`fsync` (over the wire both are `TS_PUT`, fsync'd). */
  ack?: Ack;
  /** Retry policy for refusals (default: 30 retries, 120 s of waiting at most). */
  retry?: RetryPolicy;
  /** `client` (default): points without a timestamp get `Date.now()` at put() (so batches are
   * idempotent); `server`: the server stamps them (a lost answer is then not re-sent). */
  timestamps?: "client" | "server";
  /** Timeout of each batch request (default: the client's). */
  timeoutMs?: number;
}

/** A sealed batch: JSON texts (HTTP) or one request frame (wire). */
interface Batch {
  data: string[] | Uint8Array;
  count: number;
  bytes: number;
  idempotent: boolean;
  seq: number;
}

const ASCII = /^[\x00-\x7f]*$/;
const te = new TextEncoder();
const utf8Len = (s: string) => (ASCII.test(s) ? s.length : te.encode(s).length);
/** Bytes of a wire batch frame before its items: header and `count`. */
const FRAME_HEAD = HEADER_LEN + 4;

/** Where the HTTP writer sends its batches. @internal */
export interface HttpTarget {
  http: HttpTransport;
  path: string;
}

export class TimeSeriesBatchWriter {
  readonly transport: "http" | "wire";
  readonly maxPoints: number;
  readonly maxBytes: number;
  readonly flushIntervalMs: number;
  readonly pipelineDepth: number;
  readonly maxQueuePoints: number;
  readonly maxQueueBytes: number;
  /** Points acknowledged by the server. */
  pointsWritten = 0;
  /** Batches acknowledged by the server. */
  batchesWritten = 0;
  /** Refused attempts (HTTP 429/503, wire 0x04/0x07), later retried or reported. */
  refusals = 0;

  private readonly opts: BatchWriterOptions;
  private readonly retry: RetryPolicy;
  // the batch being filled
  private parts: string[] = [];
  private frame?: ByteWriter;
  private n = 0;
  private nb = 0;
  private nowInBatch = false;
  private ageTimer?: ReturnType<typeof setTimeout>;
  // accounting
  private queued = 0;
  private queuedBytes = 0;
  private seq = 0;
  private doneSeq = 0;
  private closed = false;
  private failures: WriteFailure[] = [];
  private waiters: Array<() => void> = [];
  // HTTP: batches waiting for the one in flight
  private httpQueue: Batch[] = [];
  private httpRunning = false;
  // wire
  private readonly items?: TsItemEncoder;
  private readonly pipeline?: OrderedPipeline;
  private readonly wireOp: number;
  private readonly maxItemBytes: number;
  private lastFrameBytes = 64 * 1024;

  /** @internal Use `client.timeseries.batchWriter()`. */
  constructor(
    private readonly target: HttpTarget | WireClient,
    opts: BatchWriterOptions = {},
  ) {
    this.opts = opts;
    this.transport = opts.transport ?? "http";
    if (this.transport !== "http" && this.transport !== "wire") throw new TypeError("transport must be 'http' or 'wire'");
    this.maxPoints = opts.maxPoints ?? 5000;
    this.maxBytes = opts.maxBytes ?? 1 << 20;
    this.flushIntervalMs = opts.flushIntervalMs ?? 1000;
    this.pipelineDepth = opts.pipelineDepth ?? 4;
    const depth = this.transport === "wire" ? this.pipelineDepth : 3;
    this.maxQueuePoints = opts.maxQueuePoints ?? Math.max((depth + 1) * this.maxPoints, 10_000);
    this.maxQueueBytes = opts.maxQueueBytes ?? (depth + 1) * this.maxBytes;
    this.retry = opts.retry ?? DEFAULT_WRITER_RETRY;
    if (!(this.maxPoints >= 1 && this.maxPoints <= 100_000)) throw new RangeError("maxPoints must be in 1..100000");
    if (!(this.maxBytes >= 64)) throw new RangeError("maxBytes must be >= 64");
    if (!(this.flushIntervalMs > 0)) throw new RangeError("flushIntervalMs must be > 0");
    if (!(Number.isInteger(this.pipelineDepth) && this.pipelineDepth >= 1)) throw new RangeError("pipelineDepth must be an integer >= 1");
    if (this.maxQueuePoints < this.maxPoints) throw new RangeError("maxQueuePoints must be >= maxPoints");
    if (this.maxQueueBytes < this.maxBytes) throw new RangeError("maxQueueBytes must be >= maxBytes");
    if (opts.onFull !== undefined && opts.onFull !== "block" && opts.onFull !== "raise") {
      throw new TypeError("onFull must be 'block' or 'raise'");
    }
    if (opts.ack !== undefined && !["buffer", "wal", "fsync"].includes(opts.ack)) {
      throw new TypeError("ack must be buffer, wal or fsync");
    }
    this.wireOp = (opts.ack ?? "buffer") === "buffer" ? Opcode.TS_PUT_BUFFERED : Opcode.TS_PUT;
    this.maxItemBytes = this.maxBytes;
    if (this.transport === "wire") {
      const wire = target as WireClient;
      this.items = new TsItemEncoder();
      // Each batch is one frame, and a frame must fit one message of the session.
      this.maxItemBytes = Math.min(this.maxBytes, wire.maxMessageBytes - FRAME_HEAD);
      this.pipeline = wire.orderedPipeline({
        depth: this.pipelineDepth,
        retry: this.retry,
        timeoutMs: opts.timeoutMs ?? wire.timeoutMs,
        stats: this,
      });
    }
  }

  /** Points queued, sealed or in flight (not yet written or reported). */
  get pending(): number {
    return this.queued;
  }

  /** The batches that could not be written so far. */
  errors(): WriteFailure[] {
    return [...this.failures];
  }

  /**
   * Queues one point, waiting while the queue is full. Resolves when the point is queued (not
   * written: `flush()` or `close()` wait for that). Throws on an invalid point.
   */
  async put(point: PointInput): Promise<void> {
    if (this.closed) throw new SluiceError("the batch writer is closed");
    if (this.full()) await this.waitSpace();
    this.add(point);
  }

  /** Queues one point without waiting; throws {@link QueueFull} when the queue is full. */
  putNowait(point: PointInput): void {
    if (this.closed) throw new SluiceError("the batch writer is closed");
    if (this.full()) throw new QueueFull(`batch writer queue full (${this.queued} points)`);
    this.add(point);
  }

  /** Queues many points, in order. */
  async putMany(points: Iterable<PointInput>): Promise<void> {
    for (const p of points) await this.put(p);
  }

  /** Sends everything queued so far and waits until it is written (or reported). */
  async flush(): Promise<void> {
    this.seal();
    const target = this.seq;
    while (this.doneSeq < target) await this.waitChange();
  }

  /**
   * Sends everything still queued, waits, stops the sender (and closes its wire connection);
   * throws {@link BatchWriteError} if some batch failed and no `onError` was given. Calling it
   * again does nothing.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.seal();
      this.notify(); // put()s waiting for room give up
    }
    while (this.doneSeq < this.seq) await this.waitChange();
    if (this.transport === "wire") await (this.target as WireClient).close();
    if (this.failures.length && !this.opts.onError) {
      const n = this.failures.reduce((a, f) => a + f.count, 0);
      throw new BatchWriteError(
        `${this.failures.length} batches (${n} points) could not be written; first: ${this.failures[0]!.error.message}`,
        [...this.failures],
      );
    }
  }

  /** `await using w = client.timeseries.batchWriter()` closes it at the end of the scope. */
  async [(Symbol as any).asyncDispose ?? Symbol.for("Symbol.asyncDispose")](): Promise<void> {
    await this.close();
  }

  // -- internals

  private full(): boolean {
    return this.queued >= this.maxQueuePoints || this.queuedBytes >= this.maxQueueBytes;
  }

  private add(point: PointInput): void {
    const size = this.items ? this.addWire(point) : this.addJson(point);
    this.queued++;
    this.queuedBytes += size;
    if (this.n === 1) this.ageTimer = setTimeout(() => this.seal(), this.flushIntervalMs);
    if (this.n >= this.maxPoints || this.nb >= this.maxBytes) this.seal();
  }

  private timestamp(point: PointInput): number | undefined {
    const t = point.timestamp_ms;
    if (t !== undefined && t !== null) return t;
    if (this.opts.timestamps === "server") {
      this.nowInBatch = true;
      return undefined;
    }
    return Date.now();
  }

  private addJson(point: PointInput): number {
    const d = pointJson(point);
    const t = this.timestamp(point);
    if (t !== undefined) d.timestamp_ms = t;
    const text = JSON.stringify(d);
    const size = utf8Len(text) + 1;
    this.parts.push(text);
    this.nb += size;
    this.n++;
    return size;
  }

  /** Encodes the point's item into the batch frame (a batch is one frame: at most a message). */
  private addWire(point: PointInput): number {
    const s = this.items!.series(point);
    const size = TsItemEncoder.size(s);
    if (size > this.maxItemBytes) throw new RangeError(`a point of ${size} bytes does not fit a wire frame of ${this.maxItemBytes} bytes`);
    if (this.n && this.nb + size > this.maxItemBytes) this.seal();
    const t = this.timestamp(point) ?? TIMESTAMP_NOW;
    if (!this.frame) {
      // Sized like the last batch, so it rarely grows.
      this.frame = new ByteWriter(Math.min(this.maxItemBytes, this.lastFrameBytes + (this.lastFrameBytes >> 3)) + FRAME_HEAD + 64);
      beginFrame(this.frame, this.wireOp, FLAG_BATCH);
      this.frame.pos += 4; // count, written when sealed
    }
    TsItemEncoder.write(this.frame, s, t, point.value);
    this.nb += size;
    this.n++;
    return size;
  }

  private seal(): void {
    clearTimeout(this.ageTimer);
    this.ageTimer = undefined;
    if (this.n === 0) return;
    let data: string[] | Uint8Array;
    if (this.frame) {
      const w = this.frame;
      w.view.setUint32(HEADER_LEN, this.n, true);
      endFrame(w, 0);
      data = w.result();
      this.lastFrameBytes = this.nb;
      this.frame = undefined;
    } else {
      data = this.parts;
      this.parts = [];
    }
    const b: Batch = { data, count: this.n, bytes: this.nb, idempotent: !this.nowInBatch, seq: ++this.seq };
    this.n = 0;
    this.nb = 0;
    this.nowInBatch = false;
    if (this.pipeline) {
      void this.pipeline.push(data as Uint8Array, b.idempotent).then((o) => this.done(b, o));
    } else {
      this.httpQueue.push(b);
      if (!this.httpRunning) void this.runHttp();
    }
  }

  private async runHttp(): Promise<void> {
    this.httpRunning = true;
    try {
      while (this.httpQueue.length) {
        const b = this.httpQueue.shift()!;
        this.done(b, await this.sendHttp(b));
      }
    } finally {
      this.httpRunning = false;
    }
  }

  private async sendHttp(b: Batch): Promise<Outcome> {
    const { http, path } = this.target as HttpTarget;
    try {
      await http.response(
        {
          method: "POST",
          path,
          query: { ack: this.opts.ack ?? "buffer" },
          body: '{"points":[' + (b.data as string[]).join(",") + "]}",
          contentType: "application/json",
          idempotent: b.idempotent,
        },
        { retry: this.retry, stats: this, timeoutMs: this.opts.timeoutMs },
      );
      return new Uint8Array(0);
    } catch (e) {
      return e instanceof SluiceError ? e : new SluiceError(`unexpected error: ${String(e)}`, { cause: e });
    }
  }

  /** A batch's outcome (batches settle in order). */
  private done(b: Batch, o: Outcome): void {
    if (o instanceof SluiceError) {
      const points = Array.isArray(b.data) ? b.data.map((s) => JSON.parse(s)) : decodeTsPut(b.data);
      const failure: WriteFailure = { error: o, count: b.count, points };
      this.failures.push(failure);
      if (this.opts.onError) {
        try {
          this.opts.onError(failure);
        } catch {
          /* the callback's own error is not the writer's */
        }
      }
    } else {
      this.pointsWritten += b.count;
      this.batchesWritten++;
    }
    this.queued -= b.count;
    this.queuedBytes -= b.bytes;
    this.doneSeq = b.seq;
    this.notify();
  }

  private waitChange(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async waitSpace(): Promise<void> {
    if (this.opts.onFull === "raise") throw new QueueFull(`batch writer queue full (${this.queued} points)`);
    const deadline = this.opts.blockTimeoutMs === undefined ? undefined : Date.now() + this.opts.blockTimeoutMs;
    while (this.full()) {
      if (this.closed) throw new SluiceError("the batch writer is closed");
      if (deadline === undefined) {
        await this.waitChange();
      } else {
        const left = deadline - Date.now();
        if (left <= 0) throw new QueueFull(`batch writer queue still full after ${this.opts.blockTimeoutMs} ms`);
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([this.waitChange(), new Promise<void>((r) => (timer = setTimeout(r, left)))]);
        clearTimeout(timer);
      }
    }
  }
}
