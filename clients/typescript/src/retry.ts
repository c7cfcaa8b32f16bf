import { AbortedError } from "./errors.js";

/**
 * Backoff for answers that mean "refused, nothing done, retry later": HTTP 429, 503 and 507
 * (honouring `Retry-After`) are retried with exponential backoff and jitter, up to
 * `maxRetries`. A connection that could not be opened is retried for every request; a timeout
 * or reset after sending (the request may have been applied) is retried only for requests whose
 * repetition has the same outcome.
 */
export interface RetryPolicy {
  /** Retries after the first attempt (0 = never retry). Default 5. */
  maxRetries?: number;
  /** First wait in ms when the server gives no Retry-After; doubles per attempt, ±25 % jitter. Default 50. */
  initialBackoffMs?: number;
  /** Upper bound of any single wait, including a server's Retry-After. Default 10000. */
  maxBackoffMs?: number;
  /** Give up once this many ms were spent waiting (undefined = only maxRetries bounds it). */
  maxElapsedMs?: number;
}

export const DEFAULT_RETRY: Required<Omit<RetryPolicy, "maxElapsedMs">> & { maxElapsedMs?: number } = {
  maxRetries: 5,
  initialBackoffMs: 50,
  maxBackoffMs: 10_000,
};

/** Batch writers retry refusals longer than single calls: up to 30 times / 120 s of waiting. */
export const DEFAULT_WRITER_RETRY: RetryPolicy = {
  maxRetries: 30,
  initialBackoffMs: 50,
  maxBackoffMs: 5_000,
  maxElapsedMs: 120_000,
};

/** A policy that never retries. */
export const NO_RETRY: RetryPolicy = { maxRetries: 0 };

/** Milliseconds to wait before retry number `attempt` (1-based). */
export function backoffMs(policy: RetryPolicy, attempt: number, retryAfterSec?: number): number {
  const max = policy.maxBackoffMs ?? DEFAULT_RETRY.maxBackoffMs;
  let base: number;
  if (retryAfterSec !== undefined && retryAfterSec > 0) {
    base = retryAfterSec * 1000;
  } else {
    const init = policy.initialBackoffMs ?? DEFAULT_RETRY.initialBackoffMs;
    base = init * 2 ** Math.min(Math.max(attempt - 1, 0), 16) * (0.75 + Math.random() * 0.5);
  }
  return Math.min(base, max);
}

/** `Retry-After` as seconds: an integer, or an HTTP date. */
export function parseRetryAfter(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  const n = Number(v);
  if (v !== "" && Number.isFinite(n)) return Math.max(0, n);
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, (t - Date.now()) / 1000);
}

/** Resolves after `ms`; rejects with {@link AbortedError} when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError("aborted", false, signal.reason));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new AbortedError("aborted", false, signal?.reason));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
