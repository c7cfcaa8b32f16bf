/**
 * The auto-batching time-series writer: `client.timeseries.batchWriter({...})`.
 *
 * - a batch is sent when it holds `maxPoints` points or `maxBytes` encoded bytes, or when its
 *   oldest point is `flushIntervalMs` old;
 * - memory is bounded: at most `maxQueuePoints` points (and `maxQueueBytes` bytes) are queued;
 *   when the queue is full, `await writer.put()` waits until the sender frees room
 *   (`onFull: "block"`, at most `blockTimeoutMs`) or throws {@link QueueFull}
 *   (`onFull: "raise"`);
 * - exactly one batch is in flight per writer, so batches reach the server in the order of the
 *   writes;
 * - refusals that mean "nothing done" (HTTP 429/503/507) are retried after `Retry-After` (else
 *   an exponential backoff); a batch whose answer was lost is re-sent only if every point has a
 *   timestamp (the default stamps points with the client's clock at `put()` time), so nothing
 *   is duplicated;
 * - a batch that still fails is reported to `onError(failure)`, and listed by `errors()`;
 *   `close()` sends everything still queued, waits for it, and throws {@link BatchWriteError}
 *   if a batch failed and no `onError` was given.
 */
import { BatchWriteError, QueueFull, SluiceError, type WriteFailure } from "./errors.js";
import type { HttpTransport } from "./http.js";
import { DEFAULT_WRITER_RETRY, type RetryPolicy } from "./retry.js";
import type { Ack, PointInput } from "./types.js";
import { pointJson } from "./points.js";

export interface BatchWriterOptions {
  /** Points per batch (default 5000; the server accepts up to 100000). */
  maxPoints?: number;
  /** Encoded JSON bytes per batch (default 1 MiB). */
  maxBytes?: number;
  /** Send a batch when its oldest point is this old (default 1000 ms). */
  flushIntervalMs?: number;
  /** Points held in memory at most: queued, sealed and in flight (default max(4 × maxPoints, 10000)). */
  maxQueuePoints?: number;
  /** Encoded bytes held in memory at most (default 4 × maxBytes). */
  maxQueueBytes?: number;
  /** When the queue is full: `block` (default: `await put()` waits) or `raise` (QueueFull). */
  onFull?: "block" | "raise";
  /** With `block`, throw QueueFull after waiting this long (default: wait forever). */
  blockTimeoutMs?: number;
  /** Called with every batch that could not be written (then close() does not throw). */
  onError?: (failure: WriteFailure) => void;
  /** Acknowledgement level of `/ts/put/batch` (default `buffer`). */
  ack?: Ack;
  /** Retry policy for refusals (default: 30 retries, 120 s of waiting at most). */
  retry?: RetryPolicy;
  /** `client` (default): points without a timestamp get `Date.now()` at put() (so batches are
   * idempotent); `server`: the server stamps them (a lost answer is then not re-sent). */
  timestamps?: "client" | "server";
  /** Timeout of each batch request (default: the client's). */
  timeoutMs?: number;
}

interface Batch {
  parts: string[];
  count: number;
  bytes: number;
  idempotent: boolean;
  seq: number;
}

const ASCII = /^[\x00-\x7f]*$/;
const te = new TextEncoder();
const utf8Len = (s: string) => (ASCII.test(s) ? s.length : te.encode(s).length);

export class TimeSeriesBatchWriter {
  readonly maxPoints: number;
  readonly maxBytes: number;
  readonly flushIntervalMs: number;
  readonly maxQueuePoints: number;
  readonly maxQueueBytes: number;
  /** Points acknowledged by the server. */
  pointsWritten = 0;
  /** Batches acknowledged by the server. */
  batchesWritten = 0;
  /** Refused attempts (HTTP 429/503), later retried or reported. */
  refusals = 0;

  private readonly opts: BatchWriterOptions;
  private readonly retry: RetryPolicy;
  private parts: string[] = [];
  private n = 0;
  private nb = 0;
  private t0 = 0;
  private nowInBatch = false;
  private sealed: Batch[] = [];
  private queued = 0;
  private queuedBytes = 0;
  private seq = 0;
  private doneSeq = 0;
  private closed = false;
  private failures: WriteFailure[] = [];
  private running?: Promise<void>;
  private wakeFlag = false;
  private wakeResolve?: () => void;
  private waiters: Array<() => void> = [];

  /** @internal Use `client.timeseries.batchWriter()`. */
  constructor(
    private readonly http: HttpTransport,
    private readonly path: string,
    opts: BatchWriterOptions = {},
  ) {
    this.opts = opts;
    this.maxPoints = opts.maxPoints ?? 5000;
    this.maxBytes = opts.maxBytes ?? 1 << 20;
    this.flushIntervalMs = opts.flushIntervalMs ?? 1000;
    this.maxQueuePoints = opts.maxQueuePoints ?? Math.max(4 * this.maxPoints, 10_000);
    this.maxQueueBytes = opts.maxQueueBytes ?? 4 * this.maxBytes;
    this.retry = opts.retry ?? DEFAULT_WRITER_RETRY;
    if (!(this.maxPoints >= 1 && this.maxPoints <= 100_000)) throw new RangeError("maxPoints must be in 1..100000");
    if (!(this.maxBytes >= 64)) throw new RangeError("maxBytes must be >= 64");
    if (!(this.flushIntervalMs > 0)) throw new RangeError("flushIntervalMs must be > 0");
    if (this.maxQueuePoints < this.maxPoints) throw new RangeError("maxQueuePoints must be >= maxPoints");
    if (this.maxQueueBytes < this.maxBytes) throw new RangeError("maxQueueBytes must be >= maxBytes");
    if (opts.onFull !== undefined && opts.onFull !== "block" && opts.onFull !== "raise") {
      throw new TypeError("onFull must be 'block' or 'raise'");
    }
    if (opts.ack !== undefined && !["buffer", "wal", "fsync"].includes(opts.ack)) {
      throw new TypeError("ack must be buffer, wal or fsync");
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
    this.start();
    this.wake();
    while (this.doneSeq < target) await this.waitChange();
  }

  /**
   * Sends everything still queued, waits, stops the sender; throws {@link BatchWriteError} if
   * some batch failed and no `onError` was given. Calling it again does nothing.
   */
  async close(): Promise<void> {
    if (this.closed) {
      await this.running;
      return;
    }
    this.closed = true;
    this.seal();
    this.start();
    this.wake();
    await this.running;
    this.notify();
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
    const d = pointJson(point);
    if (d.timestamp_ms === undefined) {
      if (this.opts.timestamps === "server") this.nowInBatch = true;
      else d.timestamp_ms = Date.now();
    }
    const text = JSON.stringify(d);
    const size = utf8Len(text) + 1;
    this.parts.push(text);
    this.nb += size;
    this.queued++;
    this.queuedBytes += size;
    this.n++;
    if (this.n === 1) {
      this.t0 = Date.now();
      this.start();
      this.wake();
    }
    if (this.n >= this.maxPoints || this.nb >= this.maxBytes) {
      this.seal();
      this.wake();
    }
  }

  private seal(): void {
    if (this.n === 0) return;
    this.seq++;
    this.sealed.push({ parts: this.parts, count: this.n, bytes: this.nb, idempotent: !this.nowInBatch, seq: this.seq });
    this.parts = [];
    this.n = 0;
    this.nb = 0;
    this.nowInBatch = false;
  }

  private start(): void {
    if (!this.running) {
      this.running = this.run().catch((e) => {
        // run() reports every error itself; this is a safety net
        this.failures.push({ error: e instanceof SluiceError ? e : new SluiceError(String(e)), count: 0, points: [] });
      });
    }
  }

  private wake(): void {
    this.wakeFlag = true;
    this.wakeResolve?.();
  }

  private async waitWake(ms?: number): Promise<void> {
    if (this.wakeFlag) {
      this.wakeFlag = false;
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.wakeResolve = resolve;
      if (ms !== undefined) timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    this.wakeResolve = undefined;
    this.wakeFlag = false;
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
      this.start();
      this.wake();
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

  private async run(): Promise<void> {
    for (;;) {
      while (!this.sealed.length) {
        if (this.n && (this.closed || Date.now() - this.t0 >= this.flushIntervalMs)) {
          this.seal();
          continue;
        }
        if (this.closed) return;
        await this.waitWake(this.n ? Math.max(0, this.flushIntervalMs - (Date.now() - this.t0)) : undefined);
      }
      const b = this.sealed.shift()!;
      await this.send(b);
      this.queued -= b.count;
      this.queuedBytes -= b.bytes;
      this.doneSeq = b.seq;
      this.notify();
    }
  }

  private async send(b: Batch): Promise<void> {
    const body = '{"points":[' + b.parts.join(",") + "]}";
    try {
      await this.http.response(
        {
          method: "POST",
          path: this.path,
          query: { ack: this.opts.ack ?? "buffer" },
          body,
          contentType: "application/json",
          idempotent: b.idempotent,
        },
        { retry: this.retry, stats: this, timeoutMs: this.opts.timeoutMs },
      );
      this.pointsWritten += b.count;
      this.batchesWritten++;
    } catch (e) {
      const error = e instanceof SluiceError ? e : new SluiceError(`unexpected error: ${String(e)}`, { cause: e });
      const failure: WriteFailure = { error, count: b.count, points: b.parts.map((s) => JSON.parse(s)) };
      this.failures.push(failure);
      if (this.opts.onError) {
        try {
          this.opts.onError(failure);
        } catch {
          /* the callback's own error is not the writer's */
        }
      }
    }
  }
}
