// The console's only way to the server: the public HTTP API, with the user's own token.
// The token lives in this tab's sessionStorage (or only in memory) and is sent as
// `Authorization: Bearer`; it is never put in a URL.

const TOKEN_KEY = "sluice.token";
let memoryToken = null;
const unauthorizedListeners = new Set();

export function getToken() {
  if (memoryToken) return memoryToken;
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Keeps `token` for this tab: in memory, and in sessionStorage when `persist` (survives reloads). */
export function setToken(token, persist = true) {
  memoryToken = token || null;
  try {
    if (token && persist) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage refused: memory only */
  }
}

export function clearToken() {
  setToken(null);
}

/** Called with the ApiError of every 401 answer to a request made with the stored token. */
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

/** An error answer: `ErrorBody` (`error`, `code`, `error_id`) or Prometheus's shape. */
export class ApiError extends Error {
  constructor(status, body, requestId, path) {
    const b = body && typeof body === "object" ? body : {};
    super(b.error || (status ? `HTTP ${status}` : "request failed"));
    this.name = "ApiError";
    this.status = status;
    this.code = b.code || b.errorType || (status ? `http_${status}` : "network_error");
    this.errorId = b.error_id || requestId || null;
    this.field = b.field || null;
    this.path = path;
    this.body = b;
  }
}

/**
 * Calls the API. `body` is sent as JSON; the answer is parsed as JSON unless `text` is set.
 * Throws ApiError for non-2xx answers and network failures (status 0).
 */
export async function api(path, { method = "GET", body, token, text = false, signal } = {}) {
  const headers = { Accept: text ? "text/plain, */*" : "application/json" };
  const useToken = token !== undefined ? token : getToken();
  if (useToken) headers.Authorization = `Bearer ${useToken}`;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, signal, cache: "no-store", credentials: "omit" });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(0, { error: `cannot reach the server: ${e.message}`, code: "network_error" }, null, path);
  }
  if (!res.ok) {
    let errBody = null;
    try {
      errBody = await res.json();
    } catch {
      errBody = { error: `${res.status} ${res.statusText}` };
    }
    const err = new ApiError(res.status, errBody, res.headers.get("x-request-id"), path);
    if (res.status === 401 && token === undefined) {
      for (const fn of unauthorizedListeners) fn(err);
    }
    throw err;
  }
  return text ? res.text() : res.json();
}

/** `/v1/databases/{db}` + `rest`. */
export function dbPath(db, rest) {
  return `/v1/databases/${encodeURIComponent(db)}${rest}`;
}

/** A PromQL selector for exactly this metric name (any characters). */
export function metricSelector(metric) {
  const v = String(metric).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
  return `{__name__="${v}"}`;
}

/** Sorted values of one label of the series of `metric` (or of all series). */
export async function labelValues(db, label, metric, opts = {}) {
  const q = metric ? `?match[]=${encodeURIComponent(metricSelector(metric))}` : "";
  const r = await api(dbPath(db, `/api/v1/label/${encodeURIComponent(label)}/values${q}`), opts);
  return Array.isArray(r.data) ? r.data : [];
}

/** Label names of the series of `metric`. */
export async function labelNames(db, metric, opts = {}) {
  const q = metric ? `?match[]=${encodeURIComponent(metricSelector(metric))}` : "";
  const r = await api(dbPath(db, `/api/v1/labels${q}`), opts);
  return Array.isArray(r.data) ? r.data : [];
}
