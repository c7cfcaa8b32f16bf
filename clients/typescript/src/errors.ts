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
  wireStatus?: number;
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
  /** For errors answered over the wire protocol, the frame's status (`0x01`…`0x07`). */
  wireStatus?: number;
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
    this.wireStatus = init.wireStatus;
    this.body = init.body ?? {};
  }

  /** True for refusals that mean "nothing was done, retry later" (429, 503, 507). */
  get retryable(): boolean {
    return this.status === 429 || this.status === 503 || this.status === 507;
  }

  override toString(): string {
    const extra: string[] = [];
    if (this.status !== undefined) extra.push(`status=${this.status}`);
    if (this.wireStatus !== undefined) extra.push(`wire_status=0x0${this.wireStatus.toString(16)}`);
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

/** Codes of 503 answers (wire `0x04`) that a retry cannot fix. */
const PERMANENT_503 = new Set(["config_drift"]);

/** True for an answer that means "nothing was done, retry later" and that a retry may fix. */
export function isRefusal(e: unknown): e is APIError {
  return e instanceof APIError && e.retryable && !PERMANENT_503.has(e.code ?? "");
}

/** The HTTP status of each error code the wire protocol may answer (http/error.rs); others: 400. */
const CODE_STATUS: Record<string, number> = {};
for (const [status, codes] of [
  [401, "unauthenticated"],
  [403, "forbidden cross_origin"],
  [404, "not_found collection_not_found database_not_found entity_not_found replica_not_found"],
  [405, "method_not_allowed"],
  [408, "body_timeout request_timeout snapshot_stalled"],
  [409, "collection_exists database_exists database_protected already_primary conflicting_primary not_a_replica read_only_replica replica_exists stale_epoch wal_gap"],
  [410, "lsn_gone database_replaced"],
  [413, "payload_too_large too_large_expanded too_many_points frame_too_large"],
  [415, "unsupported_media_type"],
  [422, "unprocessable invalid_value collection_limit series_limit record_refused"],
  [426, "websocket_required"],
  [429, "rate_limited too_many_bytes_in_flight too_many_in_flight too_many_requests"],
  [500, "internal"],
  [503, "buffer_overflow flush_unavailable not_ready overloaded shutting_down unavailable server_overloaded too_many_sessions config_drift epoch_not_saved replication_busy"],
  [507, "insufficient_storage"],
] as const) {
  for (const code of codes.split(" ")) CODE_STATUS[code] = status;
}

/** The HTTP status a wire error frame stands for: its status, refined by the body's `code`. */
function wireHttpStatus(wireStatus: number, code: string | undefined): number {
  const byCode = code === undefined ? undefined : CODE_STATUS[code];
  switch (wireStatus) {
    case 0x04: // buffer overflow, load shed: a 503 (507 for a full disk)
      return byCode === 507 ? 507 : 503;
    case 0x05:
      return 401;
    case 0x06:
      return 403;
    case 0x07:
      return 429;
    case 0x03: // processing error: the code's own status
      return byCode ?? 400;
    default: // 0x01 invalid opcode, 0x02 malformed payload (413 for a frame over the limit)
      return byCode === 413 ? 413 : 400;
  }
}

/**
 * The error of a wire error frame (`status` 0x01…0x07, `payload` the error JSON): the same
 * class and fields as the HTTP answer of the same error, plus `wireStatus`.
 */
export function errorFromWire(wireStatus: number, payload: string): APIError {
  let code: string | undefined;
  try {
    const body = JSON.parse(payload);
    if (body && typeof body.code === "string") code = body.code;
  } catch {
    /* not JSON: errorFromResponse keeps the text as the message */
  }
  const e = errorFromResponse(wireHttpStatus(wireStatus, code), payload);
  e.wireStatus = wireStatus;
  return e;
}

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
