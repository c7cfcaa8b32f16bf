import {
  AbortedError,
  APIError,
  DecodeError,
  SluiceError,
  TimeoutError,
  TransportError,
  errorFromResponse,
  isRefusal,
} from "./errors.js";
import { backoffMs, DEFAULT_RETRY, parseRetryAfter, sleep, type RetryPolicy } from "./retry.js";

export const VERSION = "0.1.0";

export type Query = Record<string, string | number | boolean | undefined | null>;

/** One HTTP request. */
export interface Req {
  method: string;
  path: string;
  query?: Query;
  /** A JSON body (serialized) or raw text / bytes. */
  json?: unknown;
  body?: string | Uint8Array;
  contentType?: string;
  /** Whether sending it twice has the same outcome as once (default true). */
  idempotent?: boolean;
  headers?: Record<string, string>;
}

export interface CallOptions {
  /** Aborts the request (never retried once aborted). */
  signal?: AbortSignal;
  /** Overrides the client's timeout for this call (ms; 0 = none). */
  timeoutMs?: number;
  /** Overrides the client's retry policy for this call. */
  retry?: RetryPolicy;
}

export interface TransportOptions {
  token?: string;
  timeoutMs?: number;
  retry?: RetryPolicy;
  headers?: Record<string, string>;
  fetch?: typeof fetch;
}

/** Error codes of Node's fetch (undici) meaning "the connection was never opened". */
const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_CONNECT",
]);

function causeCode(e: unknown): string | undefined {
  let c: any = e;
  for (let i = 0; i < 4 && c; i++) {
    if (typeof c.code === "string") return c.code;
    c = c.cause;
  }
  return undefined;
}

/** `fetch` with the token, timeouts and the retry rules. */
export class HttpTransport {
  readonly baseUrl: string;
  readonly token?: string;
  readonly timeoutMs: number;
  readonly retry: RetryPolicy;
  /** 429/503/507 answers seen (retried or not). */
  refusals = 0;
  private readonly headers: Record<string, string>;
  private readonly fetchImpl: typeof fetch;

  constructor(url: string, opts: TransportOptions = {}) {
    this.baseUrl = url.replace(/\/+$/, "");
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.headers = { ...(opts.headers ?? {}) };
    if (opts.token) this.headers["authorization"] = `Bearer ${opts.token}`;
  }

  url(path: string, query?: Query): string {
    let u = this.baseUrl + path;
    if (query) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) qs.append(k, String(v));
      const s = qs.toString();
      if (s) u += (u.includes("?") ? "&" : "?") + s;
    }
    return u;
  }

  /** Sends `req` with retries; returns the decoded JSON answer (undefined for an empty body). */
  async json<T>(req: Req, opts: CallOptions = {}): Promise<T> {
    const resp = await this.response(req, opts);
    const text = await resp.text();
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new DecodeError(`answer is not JSON: ${text.slice(0, 200)}`, { status: resp.status, cause: e });
    }
  }

  async text(req: Req, opts: CallOptions = {}): Promise<string> {
    const resp = await this.response(req, opts);
    return resp.text();
  }

  /**
   * Sends `req` with retries; returns a successful response (its body unread). With
   * `stream`, the timeout covers only the wait for the headers.
   */
  async response(req: Req, opts: CallOptions & { stream?: boolean; stats?: { refusals: number } } = {}): Promise<Response> {
    const policy = opts.retry ?? this.retry;
    const maxRetries = policy.maxRetries ?? DEFAULT_RETRY.maxRetries;
    const idempotent = req.idempotent ?? true;
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const headers: Record<string, string> = { ...this.headers, ...(req.headers ?? {}) };
    let body: string | Uint8Array | undefined = req.body;
    if (req.json !== undefined) {
      body = JSON.stringify(req.json);
      headers["content-type"] = "application/json";
    } else if (req.contentType) {
      headers["content-type"] = req.contentType;
    }
    const url = this.url(req.path, req.query);
    let attempt = 0;
    let waited = 0;
    for (;;) {
      let err: SluiceError;
      let retryable: boolean;
      const ac = new AbortController();
      let timedOut = false;
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              timedOut = true;
              ac.abort(new Error(`timed out after ${timeoutMs} ms`));
            }, timeoutMs)
          : undefined;
      const onAbort = () => ac.abort(opts.signal?.reason);
      if (opts.signal) {
        if (opts.signal.aborted) {
          clearTimeout(timer);
          throw new AbortedError("aborted", false, opts.signal.reason);
        }
        opts.signal.addEventListener("abort", onAbort, { once: true });
      }
      const done = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
      };
      try {
        const resp = await this.fetchImpl(url, { method: req.method, headers, body: body as any, signal: ac.signal });
        if (opts.stream && resp.ok) {
          // The timeout bounded the wait for the headers; the caller's signal still applies.
          clearTimeout(timer);
          if (opts.signal) {
            const s = opts.signal;
            s.removeEventListener("abort", onAbort);
            s.addEventListener("abort", () => ac.abort(s.reason), { once: true });
          }
          return resp;
        }
        let text = "";
        try {
          text = await resp.text();
        } finally {
          done();
        }
        if (resp.ok) {
          return new Response(text === "" ? null : text, { status: resp.status, headers: resp.headers });
        }
        const apiErr: APIError = errorFromResponse(resp.status, text, parseRetryAfter(resp.headers.get("retry-after")));
        err = apiErr;
        retryable = isRefusal(apiErr);
        if (resp.status === 429 || resp.status === 503) {
          this.refusals++;
          if (opts.stats) opts.stats.refusals++;
        }
      } catch (e) {
        done();
        if (e instanceof SluiceError) throw e;
        if (opts.signal?.aborted) {
          throw new AbortedError("aborted by the caller's signal", true, opts.signal.reason);
        }
        if (timedOut) {
          err = new TimeoutError(`${req.method} ${req.path}: no answer in ${timeoutMs} ms`, true, e);
          retryable = idempotent;
        } else {
          const code = causeCode(e);
          if (code && CONNECT_CODES.has(code)) {
            err = new TransportError(`cannot connect to ${this.baseUrl}: ${code}`, false, e);
            retryable = true;
          } else {
            err = new TransportError(`${req.method} ${req.path}: the answer was lost: ${code ?? String(e)}`, true, e);
            retryable = idempotent;
          }
        }
      }
      err.attempts = attempt + 1;
      if (!retryable || attempt >= maxRetries) throw err;
      attempt++;
      const wait = backoffMs(policy, attempt, err.retryAfter);
      if (policy.maxElapsedMs !== undefined && waited + wait > policy.maxElapsedMs) throw err;
      waited += wait;
      await sleep(wait, opts.signal);
    }
  }
}

/** Reads a byte stream as lines (without their end of line), as they arrive. */
export async function* readLines(body: ReadableStream<Uint8Array> | null): AsyncGenerator<string> {
  if (!body) return;
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        let line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        yield line;
      }
    }
    buf += dec.decode();
    if (buf) yield buf.endsWith("\r") ? buf.slice(0, -1) : buf;
  } finally {
    try {
      await reader.cancel();
    } catch {
      /* already closed */
    }
    reader.releaseLock?.();
  }
}
