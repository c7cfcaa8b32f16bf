/**
 * The wire protocol over the WebSocket at `/v1/ws`: one session per {@link WireClient},
 * pipelined (frames go out without waiting, several per message; answers are matched in
 * order, and may come split across messages), reopened after a failure.
 *
 * Retries follow docs/wire-protocol.md: `0x04` / `0x07` mean nothing was done and are re-sent
 * after `retry_after_sec`; a frame whose answer was lost is re-sent only when repeating it
 * changes nothing (`idempotent`). In a pipeline a refused frame is re-sent only where that
 * keeps the order of writes: a refused suffix, or (all of them idempotent) the refused frame
 * together with every later frame already applied, so the last write still wins. Otherwise the
 * refusal is reported.
 */
import { AbortedError, SluiceError, TimeoutError, TransportError, errorFromWire, isRefusal } from "./errors.js";
import { DEFAULT_RETRY, backoffMs, sleep, type RetryPolicy } from "./retry.js";
import {
  FLAG_EVENT,
  FrameReader,
  PRE_AUTH_MAX_MESSAGE,
  Status,
  decodeText,
  encodeAuth,
  type Frame,
} from "./wire.js";
import {
  hasNodeSockets,
  openGlobalWebSocket,
  openNodeWebSocket,
  type SocketEvents,
  type WebSocketClass,
  type WireSocket,
} from "./websocket.js";

/** How the client reaches `/v1/ws`. */
export interface WireOptions {
  /** The WebSocket URL (default: the client's URL as `ws(s)://…/v1/ws`). */
  url?: string;
  /**
   * The WebSocket implementation: `auto` (default: `globalThis.WebSocket` when there is one,
   * else `node`), `global`, `node` (RFC 6455 over `node:net`/`node:tls`), or a WebSocket class.
   */
  webSocket?: "auto" | "global" | "node" | WebSocketClass;
  /**
   * How the token is sent: `upgrade` (`Authorization` on the upgrade request; the `node`
   * implementation only) or `frame` (an `AUTH` frame; then every message is at most 64 KiB).
   * Default: `upgrade` with `node`, `frame` otherwise.
   */
  auth?: "upgrade" | "frame";
  /** Largest message of a session authenticated at the upgrade (default 32 MiB, the server's `wire.max_frame_bytes`). */
  maxMessageBytes?: number;
}

/** Per-call settings of the wire transport. */
export interface WireCallOptions {
  signal?: AbortSignal;
  /** No answer in this many ms drops the connection (0 = none). Default: the client's. */
  timeoutMs?: number;
  retry?: RetryPolicy;
  /** Whether sending the frame twice has the same outcome as once (default true). */
  idempotent?: boolean;
}

/** One frame's answer as the connection sees it. */
type Answer = { frame: Frame } | { lost: TransportError };

/** Messages gather small frames up to this size (a larger frame goes alone). */
const COALESCE_BYTES = 256 * 1024;

/** A FIFO queue whose `shift` is O(1). */
class Fifo<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }
  push(x: T): void {
    this.items.push(x);
  }
  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
  /** Empties the queue; returns what it held, in order. */
  drain(): T[] {
    const out = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return out;
  }
}

interface Slot {
  resolve(a: Answer): void;
  timer?: ReturnType<typeof setTimeout>;
}

/** One open session: frames out, answers in order. */
class Conn {
  closed?: TransportError;
  private readonly slots = new Fifo<Slot>();
  private out: Uint8Array[] = [];
  private outBytes = 0;
  private flushQueued = false;
  private readonly reader = new FrameReader();

  constructor(
    private readonly socket: WireSocket,
    readonly maxMessage: number,
    readonly url: string,
  ) {
    socket.ref(false);
  }

  /** Sends one frame; resolves to its answer, or `lost` when the session ends first. */
  send(frame: Uint8Array, timeoutMs: number): Promise<Answer> {
    if (this.closed) return Promise.resolve({ lost: new TransportError(`wire connection ${this.url} is closed`, false) });
    return new Promise<Answer>((resolve) => {
      const slot: Slot = { resolve };
      if (timeoutMs > 0) {
        slot.timer = setTimeout(() => {
          this.drop(new TransportError(`wire connection ${this.url} dropped: a frame got no answer in ${timeoutMs} ms`, true), slot, timeoutMs);
        }, timeoutMs);
      }
      if (!this.slots.length) this.socket.ref(true);
      this.slots.push(slot);
      if (this.outBytes && this.outBytes + frame.length > Math.min(COALESCE_BYTES, this.maxMessage)) this.flush();
      this.out.push(frame);
      this.outBytes += frame.length;
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushQueued = false;
    if (!this.out.length || this.closed) return;
    const parts = this.out;
    const total = this.outBytes;
    this.out = [];
    this.outBytes = 0;
    this.socket.send(parts, total);
  }

  readonly events: SocketEvents = {
    message: (data) => {
      try {
        this.reader.push(data, (f) => this.answer(f));
      } catch (e) {
        this.drop(new TransportError(`wire connection ${this.url}: ${String(e)}`, true, e));
      }
    },
    close: (reason) => this.drop(reason),
  };

  private answer(f: Frame): void {
    if (f.flags & FLAG_EVENT) return; // changefeed events are not answers (never subscribed here)
    const slot = this.slots.shift();
    if (!slot) {
      this.drop(new TransportError(`wire connection ${this.url}: an answer to no request`, true));
      return;
    }
    if (!this.slots.length) this.socket.ref(false);
    clearTimeout(slot.timer);
    slot.resolve({ frame: f });
  }

  /** Ends the session: every unanswered frame is `lost` (`culprit`'s with a TimeoutError). */
  drop(reason: TransportError, culprit?: object, timeoutMs?: number): void {
    if (this.closed) return;
    this.closed = reason;
    this.socket.close();
    for (const s of this.slots.drain()) {
      clearTimeout(s.timer);
      const lost = s === culprit ? new TimeoutError(`no answer in ${timeoutMs} ms over ${this.url}`, true) : reason;
      s.resolve({ lost });
    }
  }
}

/** A frame's final outcome: its ok payload or its error. */
export type Outcome = Uint8Array | SluiceError;

interface Entry {
  frame: Uint8Array;
  idempotent: boolean;
  /** Times sent (or tried to). */
  sends: number;
  waitedMs: number;
  state: "queued" | "inflight" | "refused" | "lost" | "redo";
  error?: SluiceError;
  answer?: Promise<Answer>;
  resolve(o: Outcome): void;
}

export interface PipelineOptions {
  /** Frames in flight at most. */
  depth: number;
  retry: RetryPolicy;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Counts refused answers. */
  stats?: { refusals: number };
}

const ABORTED = Symbol("aborted");

/** A session that could not be opened, or whose upgrade was refused "retry later": retry. */
const retryableOpen = (e: SluiceError): boolean => (e instanceof TransportError && !e.maybeApplied) || isRefusal(e);

/**
 * Sends frames in order with up to `depth` in flight and settles each with its final outcome,
 * in order. Refusals and lost answers hold back newer frames until the older ones are settled
 * (see the module comment for what is re-sent). After a refusal the depth drops to 1 and
 * doubles with each success.
 */
export class OrderedPipeline {
  private readonly queue = new Fifo<Entry>();
  private window: Entry[] = [];
  private depth: number;
  private running = false;
  private conn?: Conn;
  private aborted?: Promise<typeof ABORTED>;

  constructor(
    private readonly client: WireClient,
    private readonly opts: PipelineOptions,
  ) {
    this.depth = opts.depth;
    const signal = opts.signal;
    if (signal) {
      this.aborted = new Promise((resolve) => {
        if (signal.aborted) resolve(ABORTED);
        else signal.addEventListener("abort", () => resolve(ABORTED), { once: true });
      });
    }
  }

  /** Queues a frame; resolves to its outcome (never rejects). */
  push(frame: Uint8Array, idempotent: boolean): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      this.queue.push({ frame, idempotent, sends: 0, waitedMs: 0, state: "queued", resolve });
      if (!this.running) {
        this.running = true;
        void this.run();
      }
    });
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        if (this.opts.signal?.aborted) return this.abort();
        const held = this.window.some((e) => e.state !== "inflight");
        if (!held && this.queue.length) {
          if ((!this.conn || this.conn.closed) && !this.window.length) {
            if (!(await this.connect())) continue;
          }
          let inflight = this.window.length;
          while (this.queue.length && inflight < this.depth && this.conn && !this.conn.closed) {
            const e = this.queue.shift()!;
            this.window.push(e);
            this.transmit(e);
            inflight++;
          }
        }
        const next = this.window.find((e) => e.state === "inflight");
        if (next) {
          const a = this.aborted ? await Promise.race([next.answer!, this.aborted]) : await next.answer!;
          if (a === ABORTED) return this.abort();
          this.settle(next, a);
          continue;
        }
        if (this.window.length) {
          await this.retryRound();
          continue;
        }
        if (!this.queue.length) return;
      }
    } catch (e) {
      // sleep() rejects when the signal aborts; anything else is a bug: report it per frame
      if (e instanceof AbortedError) return this.abort();
      const err = e instanceof SluiceError ? e : new SluiceError(`wire pipeline failed: ${String(e)}`, { cause: e });
      for (const x of [...this.window, ...this.queue.drain()]) x.resolve(err);
      this.window = [];
    } finally {
      this.running = false;
      if (this.queue.length && !this.opts.signal?.aborted) {
        this.running = true;
        void this.run();
      }
    }
  }

  /** Opens (or reuses) the client's session; a failure is counted against the oldest frame. */
  private async connect(): Promise<boolean> {
    try {
      this.conn = await this.client.connection(this.opts.timeoutMs);
      return true;
    } catch (e) {
      const err: SluiceError = e instanceof SluiceError ? e : new TransportError(String(e), false, e);
      const head = this.queue.shift()!;
      head.sends++;
      if (retryableOpen(err)) {
        head.state = "lost";
        head.error = err;
        this.window.push(head);
      } else {
        this.finish(head, err);
      }
      return false;
    }
  }

  private transmit(e: Entry): void {
    e.sends++;
    e.state = "inflight";
    e.answer = this.conn!.send(e.frame, this.opts.timeoutMs);
  }

  private finish(e: Entry, o: Outcome): void {
    const i = this.window.indexOf(e);
    if (i >= 0) this.window.splice(i, 1);
    if (o instanceof SluiceError) o.attempts = e.sends;
    e.resolve(o);
  }

  private settle(e: Entry, a: Answer): void {
    if ("lost" in a) {
      e.state = "lost";
      e.error = a.lost;
      return;
    }
    const { status, payload } = a.frame;
    if (status === Status.OK) {
      const before = this.window.slice(0, this.window.indexOf(e));
      if (!before.some((x) => x.state === "refused")) {
        for (const x of before) this.finish(x, new Uint8Array(0)); // redo entries: applied
        this.finish(e, payload);
        this.depth = Math.min(this.opts.depth, this.depth * 2);
        return;
      }
      if (e.idempotent && before.every((x) => x.idempotent)) {
        // Applied after an older frame was refused: re-send it after that one, so it still wins.
        e.state = "redo";
        e.error = undefined;
        return;
      }
      for (const x of before) {
        if (x.state === "refused") {
          x.error!.message += " (not re-sent: a later frame of the pipeline was applied, re-sending would reorder writes)";
          this.finish(x, x.error!);
        } else this.finish(x, new Uint8Array(0));
      }
      this.finish(e, payload);
      return;
    }
    const err = errorFromWire(status, decodeText(payload));
    if (isRefusal(err)) {
      e.state = "refused";
      e.error = err;
      this.depth = 1;
      this.client.refusals++;
      if (this.opts.stats) this.opts.stats.refusals++;
      return;
    }
    // Refused for good (nothing of it applied: a put is all or nothing).
    this.finish(e, err);
  }

  /** Every frame in the window is refused, lost or to redo: wait, then re-send what may be. */
  private async retryRound(): Promise<void> {
    // A frame that may have been applied and cannot be repeated: nothing before it may be re-sent.
    let k = -1;
    this.window.forEach((e, i) => {
      if (e.state === "lost" && !e.idempotent && (e.error as TransportError).maybeApplied) k = i;
    });
    for (const e of this.window.slice(0, k + 1)) this.finish(e, e.state === "redo" ? new Uint8Array(0) : e.error!);
    if (!this.window.length) return;
    const lead = this.window[0]!;
    const policy = this.opts.retry;
    const maxRetries = policy.maxRetries ?? DEFAULT_RETRY.maxRetries;
    const refused = this.window.find((e) => e.state === "refused");
    const wait = backoffMs(policy, lead.sends, refused?.error?.retryAfter);
    if (lead.sends > maxRetries || (policy.maxElapsedMs !== undefined && lead.waitedMs + wait > policy.maxElapsedMs)) {
      for (const e of [...this.window]) this.finish(e, e.state === "redo" ? new Uint8Array(0) : e.error!);
      return;
    }
    await sleep(wait, this.opts.signal);
    for (const e of this.window) e.waitedMs += wait;
    if (!this.conn || this.conn.closed) {
      try {
        this.conn = await this.client.connection(this.opts.timeoutMs);
      } catch (e) {
        const err: SluiceError = e instanceof SluiceError ? e : new TransportError(String(e), false, e);
        lead.sends++;
        if (retryableOpen(err)) {
          for (const x of this.window) if (x.state === "refused") x.error = err;
          return;
        }
        for (const x of [...this.window]) this.finish(x, x.state === "redo" ? new Uint8Array(0) : err);
        return;
      }
    }
    for (const e of this.window) this.transmit(e);
  }

  private abort(): void {
    for (const e of [...this.window, ...this.queue.drain()]) {
      const err = new AbortedError("aborted by the caller's signal", e.sends > 0, this.opts.signal?.reason);
      err.attempts = Math.max(1, e.sends);
      e.resolve(err);
    }
    this.window = [];
  }
}

/**
 * A wire protocol session over `/v1/ws`, opened on first use and again after a failure (with
 * `AUTH` first when the token is not sent with the upgrade). Usually reached through the
 * namespaces' `transport: "wire"`; `call` and `pipeline` send encoded frames (see `wire.ts`).
 * Acts on database `default` only.
 */
export class WireClient {
  /** The WebSocket URL. */
  readonly url: string;
  /** Largest message this client sends (64 KiB when authenticating with an `AUTH` frame). */
  readonly maxMessageBytes: number;
  /** Refused answers (`0x04`, `0x07`) seen, retried or not. */
  refusals = 0;
  readonly timeoutMs: number;
  readonly retry: RetryPolicy;
  private readonly token?: string;
  private readonly impl: "global" | "node" | WebSocketClass;
  private readonly authFrame: boolean;
  private conn?: Conn;
  private opening?: Promise<Conn>;
  private closed = false;

  constructor(httpUrl: string, opts: { token?: string; timeoutMs?: number; retry?: RetryPolicy; wire?: WireOptions } = {}) {
    const w = opts.wire ?? {};
    this.url = w.url ?? wsUrl(httpUrl);
    this.token = opts.token || undefined;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.retry = opts.retry ?? DEFAULT_RETRY;
    const choice = w.webSocket ?? "auto";
    if (choice === "auto") {
      const G = (globalThis as { WebSocket?: WebSocketClass }).WebSocket;
      this.impl = typeof G === "function" ? "global" : "node";
    } else if (choice === "global" || choice === "node" || typeof choice === "function") {
      this.impl = choice;
    } else {
      throw new TypeError(`wire.webSocket must be auto, global, node or a WebSocket class, not ${JSON.stringify(choice)}`);
    }
    if (w.auth !== undefined && w.auth !== "upgrade" && w.auth !== "frame") throw new TypeError("wire.auth must be 'upgrade' or 'frame'");
    if (w.auth === "upgrade" && this.impl !== "node") {
      throw new TypeError("wire.auth 'upgrade' needs the node WebSocket implementation (a browser WebSocket cannot send headers)");
    }
    this.authFrame = this.token !== undefined && (w.auth === "frame" || this.impl !== "node");
    // A session not authenticated at the upgrade takes messages of at most 64 KiB for its life.
    this.maxMessageBytes = this.authFrame ? PRE_AUTH_MAX_MESSAGE : (w.maxMessageBytes ?? 32 * 1024 * 1024);
  }

  /** The open session, opening one if needed. @internal */
  connection(timeoutMs = this.timeoutMs): Promise<Conn> {
    if (this.closed) return Promise.reject(new SluiceError("the wire client is closed"));
    if (this.conn && !this.conn.closed) return Promise.resolve(this.conn);
    return (this.opening ??= this.open(timeoutMs).finally(() => (this.opening = undefined)));
  }

  private async open(timeoutMs: number): Promise<Conn> {
    let conn: Conn | undefined;
    let early: TransportError | undefined;
    const events: SocketEvents = {
      message: (d) => conn?.events.message(d),
      close: (r) => (conn ? conn.events.close(r) : (early = r)),
    };
    let socket: WireSocket;
    if (this.impl === "node") {
      if (!hasNodeSockets()) {
        throw new TypeError("no WebSocket implementation: this runtime has neither globalThis.WebSocket nor node:net");
      }
      const headers: Record<string, string> = this.token && !this.authFrame ? { authorization: `Bearer ${this.token}` } : {};
      socket = await openNodeWebSocket(this.url, headers, events, timeoutMs);
    } else {
      const G = this.impl === "global" ? (globalThis as { WebSocket?: WebSocketClass }).WebSocket : this.impl;
      if (typeof G !== "function") throw new TypeError("no globalThis.WebSocket in this runtime: use wire.webSocket 'node'");
      socket = await openGlobalWebSocket(G, this.url, events, timeoutMs);
    }
    conn = new Conn(socket, this.maxMessageBytes, this.url);
    if (early) conn.drop(early);
    if (this.authFrame) {
      const a = await conn.send(encodeAuth(this.token!), timeoutMs);
      if ("lost" in a) throw a.lost;
      if (a.frame.status !== Status.OK) {
        conn.drop(new TransportError("AUTH refused", false));
        throw errorFromWire(a.frame.status, decodeText(a.frame.payload));
      }
    }
    if (this.closed) {
      conn.drop(new TransportError("the wire client was closed", false));
      throw new SluiceError("the wire client is closed");
    }
    this.conn = conn;
    return conn;
  }

  /** A pipeline of frames on this client's session (see {@link OrderedPipeline}). @internal */
  orderedPipeline(opts: Partial<PipelineOptions> = {}): OrderedPipeline {
    return new OrderedPipeline(this, { depth: 1, retry: this.retry, timeoutMs: this.timeoutMs, ...opts });
  }

  /**
   * Sends one encoded request frame (retried while refused, and after a lost answer when
   * `idempotent`); resolves to its ok payload, or throws its error.
   */
  async call(frame: Uint8Array, opts: WireCallOptions = {}): Promise<Uint8Array> {
    this.check(frame);
    const p = this.orderedPipeline({ ...this.callOpts(opts), depth: 1 });
    const o = await p.push(frame, opts.idempotent ?? true);
    if (o instanceof SluiceError) throw o;
    return o;
  }

  /**
   * Sends encoded frames without waiting for each answer (`depth` in flight, default 64);
   * resolves to each frame's ok payload or error, in order. Refused frames are re-sent where
   * that keeps the order of writes (see the module comment); errors are returned, not thrown.
   */
  async pipeline(frames: readonly Uint8Array[], opts: WireCallOptions & { depth?: number } = {}): Promise<Outcome[]> {
    for (const f of frames) this.check(f);
    const p = this.orderedPipeline({ ...this.callOpts(opts), depth: opts.depth ?? 64 });
    return Promise.all(frames.map((f) => p.push(f, opts.idempotent ?? true)));
  }

  private callOpts(opts: WireCallOptions): Partial<PipelineOptions> {
    return { signal: opts.signal, timeoutMs: opts.timeoutMs ?? this.timeoutMs, retry: opts.retry ?? this.retry };
  }

  /** Throws when `frame` cannot fit a message of this session. */
  check(frame: Uint8Array): void {
    if (frame.length > this.maxMessageBytes) {
      throw new SluiceError(
        `a wire frame of ${frame.length} bytes exceeds this session's ${this.maxMessageBytes}-byte messages` +
          (this.authFrame ? " (a session authenticated by an AUTH frame is limited to 64 KiB: send less, or use HTTP)" : ""),
        { code: "frame_too_large" },
      );
    }
  }

  /** Closes the session; later calls throw. Pending calls fail with a TransportError. */
  async close(): Promise<void> {
    this.closed = true;
    this.conn?.drop(new TransportError("the wire client was closed", true));
    this.conn = undefined;
  }
}

/** `http(s)://host/prefix` → `ws(s)://host/prefix/v1/ws`. */
export function wsUrl(httpUrl: string): string {
  const u = new URL(httpUrl.replace(/\/+$/, "") + "/v1/ws");
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  else if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new TypeError(`cannot derive a WebSocket URL from ${httpUrl}`);
  return u.toString();
}
