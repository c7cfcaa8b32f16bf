import type * as T from "./types.js";

/** A point as the JSON the server expects (checks types; leaves out empty optional fields). */
export function pointJson(p: T.PointInput): Record<string, unknown> {
  if (p === null || typeof p !== "object") throw new TypeError("a point must be an object");
  if (typeof p.metric !== "string" || typeof p.entity !== "string") {
    throw new TypeError("metric and entity must be strings");
  }
  if (typeof p.value !== "number" || !Number.isFinite(p.value)) {
    throw new TypeError(`value must be a finite number, not ${String(p.value)}`);
  }
  const d: Record<string, unknown> = { metric: p.metric, entity: p.entity, value: p.value };
  if (p.timestamp_ms !== undefined && p.timestamp_ms !== null) {
    if (!Number.isInteger(p.timestamp_ms)) throw new TypeError("timestamp_ms must be an integer (ms since the epoch)");
    d.timestamp_ms = p.timestamp_ms;
  }
  if (p.tags && Object.keys(p.tags).length) {
    for (const [k, v] of Object.entries(p.tags)) {
      if (typeof v !== "string") throw new TypeError(`tag ${k} must be a string`);
    }
    d.tags = p.tags;
  }
  return d;
}

