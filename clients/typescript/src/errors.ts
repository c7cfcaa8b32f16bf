/**
 * The client's errors: one hierarchy under {@link SluiceError}.
 *
 * Every error answer of the server has the shape
 * `{"error", "code", "error_id", "field"?, "retry_after_sec"?, "success"?, "buffer_size"?}`;
 * the error carries those fields as properties. HTTP statuses map to subclasses
 * ({@link BadRequest} for 400, {@link Unauthorized} for 401, ...).
 */

export interface ErrorInit {
  status?: number;
  code?: string;
  errorId?: string;
  field?: string;
  retryAfter?: number;
  bufferSize?: number;
  body?: Record<string, unknown>;
  cause?: unknown;
}

/** Base of every error thrown by the client. */
export class SluiceError extends Error {
  /** The HTTP status; undefined when the server did not answer. */
  status?: number;
  /** The server's stable code (`invalid_field`, `buffer_overflow`, ...). */
  code?: string;
  /** The request id (`X-Request-Id`), to quote when reporting a problem. */
  errorId?: string;
  /** For validation errors, the offending field (`points[3].value`). */
  field?: string;
  /** Seconds the server asked to wait (`Retry-After` / `retry_after_sec`). */
  retryAfter?: number;
  /** On buffer overflow answers, the buffer's size. */
  bufferSize?: number;
  /** The whole decoded error body. */
  body: Record<string, unknown>;
  /** How many times the request was sent (> 1 when it was retried). */
  attempts = 1;

  constructor(message: string, init: ErrorInit = {}) {
    super(message, init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = new.target.name;
    this.status = init.status;
    this.code = init.code;
    this.errorId = init.errorId;
    this.field = init.field;
    this.retryAfter = init.retryAfter;
    this.bufferSize = init.bufferSize;
    this.body = init.body ?? {};
  }

  /** True for refusals that mean "nothing was done, retry later" (429, 503, 507). */
  get retryable(): boolean {
    return this.status === 429 || this.status === 503 || this.status === 507;
  }

  override toString(): string {
    const extra: string[] = [];
    if (this.status !== undefined) extra.push(`status=${this.status}`);
    if (this.code) extra.push(`code=${this.code}`);
    if (this.field) extra.push(`field=${this.field}`);
    if (this.errorId) extra.push(`error_id=${this.errorId}`);
    if (this.attempts > 1) extra.push(`attempts=${this.attempts}`);
    return `${this.name}: ${this.message}${extra.length ? ` (${extra.join(", ")})` : ""}`;
  }
}

/** The server answered with an error status. */
export class APIError extends SluiceError {}
/** 400: invalid input or parameter; nothing was written. */
export class BadRequest extends APIError {}
/** 401: missing or wrong credentials. */
export class Unauthorized extends APIError {}
/** 403: the actor's role or a policy refuses the operation. */
export class Forbidden extends APIError {}
/** 404: no such database, collection, entity or replica. */
export class NotFound extends APIError {}
/** 405: the path exists, the method does not. */
export class MethodNotAllowed extends APIError {}
/** 408: the request body was sent too slowly. */
export class RequestTimeout extends APIError {}
/** 409: it exists already, or the node is a read-only replica. */
export class Conflict extends APIError {}
/** 410: a changefeed position no longer retained (`lsn_gone`). */
export class Gone extends APIError {}
/** 413: body (or expanded line protocol) too large. */
export class PayloadTooLarge extends APIError {}
/** 415: unsupported `Content-Encoding`. */
export class UnsupportedMediaType extends APIError {}
/** 422: fits the schema but breaks a rule it cannot state, or a database limit. A BadRequest. */
export class Unprocessable extends BadRequest {}
/** 429: over the actor's rate limit or in-flight budget; retry after `retryAfter`. */
export class TooManyRequests extends APIError {}
/** 5xx other than 503/507. */
export class ServerError extends APIError {}
/** 503: buffer full, server overloaded or not ready; retry later. */
export class Unavailable extends ServerError {}
/** 503 `server_overloaded`. */
export class Overloaded extends Unavailable {}
/** 503 `buffer_overflow` (the seed's "Buffer overflow"): the auto-buffer is full. */
export class BufferOverflow extends Unavailable {}
/** 507: the server's disk is full; retried like a 503. */
export class InsufficientStorage extends Unavailable {}

/**
 * The connection failed, timed out or the answer was lost. `maybeApplied` is true when the
 * request may have reached the server: such requests are re-sent only when repeating them has
 * the same outcome.
 */
export class TransportError extends SluiceError {
  maybeApplied: boolean;
  constructor(message: string, maybeApplied: boolean, cause?: unknown) {
    super(message, { cause });
    this.maybeApplied = maybeApplied;
  }
}
/** The request took longer than `timeoutMs` (a {@link TransportError}, maybe applied). */
export class TimeoutError extends TransportError {}
/** The caller's AbortSignal aborted the request. Never retried. */
export class AbortedError extends TransportError {}
/** The answer did not have the expected shape. */
export class DecodeError extends SluiceError {}
/** A batch writer's bounded queue is full (`onFull: "raise"`). */
export class QueueFull extends SluiceError {}
/** A changefeed ended with an `error` event (e.g. `database_replaced`). */
export class ChangefeedError extends SluiceError {}

/** A batch the writer could not write. */
export interface WriteFailure {
  error: SluiceError;
  /** How many points it held. */
  count: number;
  /** The refused points. */
  points: unknown[];
}

/** Thrown by a batch writer's `close()` when some batches could not be written. */
export class BatchWriteError extends SluiceError {
  failures: WriteFailure[];
  constructor(message: string, failures: WriteFailure[]) {
    super(message);
    this.failures = failures;
  }
}

const STATUS_CLASSES: Record<number, typeof APIError> = {
  400: BadRequest,
  401: Unauthorized,
  403: Forbidden,
  404: NotFound,
  405: MethodNotAllowed,
  408: RequestTimeout,
  409: Conflict,
  410: Gone,
  413: PayloadTooLarge,
  415: UnsupportedMediaType,
  422: Unprocessable,
  429: TooManyRequests,
  503: Unavailable,
  507: InsufficientStorage,
};

/** The error for an HTTP error answer. `text` is the raw body. */
export function errorFromResponse(status: number, text: string, retryAfterHeader?: number): APIError {
  let body: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) body = parsed;
  } catch {
    /* not JSON */
  }
  const code = typeof body.code === "string" ? body.code : typeof body.errorType === "string" ? body.errorType : undefined;
  let cls: typeof APIError;
  if (status === 503 && code === "buffer_overflow") cls = BufferOverflow;
  else if (status === 503 && code === "server_overloaded") cls = Overloaded;
  else cls = STATUS_CLASSES[status] ?? (status >= 500 ? ServerError : APIError);
  const ra = typeof body.retry_after_sec === "number" ? body.retry_after_sec : undefined;
  const message =
    typeof body.error === "string" ? body.error : text ? text.slice(0, 200) : `HTTP ${status}`;
  return new cls(message, {
    status,
    code,
    errorId: typeof body.error_id === "string" ? body.error_id : undefined,
    field: typeof body.field === "string" ? body.field : undefined,
    retryAfter: retryAfterHeader ?? ra,
    bufferSize: typeof body.buffer_size === "number" ? body.buffer_size : undefined,
    body,
  });
}
