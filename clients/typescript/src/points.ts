/** Checks of the caller's points and entities, shared by the HTTP and the wire encoders. */
import type * as T from "./types.js";

/** Throws a TypeError when `p` is not a valid point (types only; the server checks the rest). */
export function checkPoint(p: T.PointInput): void {
  if (p === null || typeof p !== "object") throw new TypeError("a point must be an object");
  if (typeof p.metric !== "string" || typeof p.entity !== "string") {
    throw new TypeError("metric and entity must be strings");
  }
  if (typeof p.value !== "number" || !Number.isFinite(p.value)) {
    throw new TypeError(`value must be a finite number, not ${String(p.value)}`);
  }
  const t = p.timestamp_ms;
  if (t !== undefined && t !== null && !Number.isSafeInteger(t)) {
    throw new TypeError("timestamp_ms must be an integer (ms since the epoch)");
  }
  const tags = p.tags;
  if (tags !== undefined && tags !== null) {
    if (typeof tags !== "object") throw new TypeError("tags must be an object of strings");
    for (const k in tags) {
      if (typeof tags[k] !== "string") throw new TypeError(`tag ${k} must be a string`);
    }
  }
}

/** True when `tags` holds at least one tag. */
export function hasTags(tags: Record<string, string> | undefined | null): tags is Record<string, string> {
  if (!tags) return false;
  for (const _ in tags) return true;
  return false;
}

/** A point as the JSON the server expects (checks types; leaves out empty optional fields). */
export function pointJson(p: T.PointInput): Record<string, unknown> {
  checkPoint(p);
  const d: Record<string, unknown> = { metric: p.metric, entity: p.entity, value: p.value };
  if (p.timestamp_ms !== undefined && p.timestamp_ms !== null) d.timestamp_ms = p.timestamp_ms;
  if (hasTags(p.tags)) d.tags = p.tags;
  return d;
}

type VectorLike = T.VectorEntity["vector"];

/** A vector as a plain array (for JSON). */
export function vectorList(v: VectorLike): number[] {
  if (Array.isArray(v)) return v;
  if (v instanceof Float32Array || v instanceof Float64Array) return Array.from(v);
  throw new TypeError("vector must be an array of numbers or a Float32Array/Float64Array");
}

/** A vector as `f32` components (the wire's layout). */
export function vectorF32(v: VectorLike): Float32Array {
  if (v instanceof Float32Array) return v;
  if (Array.isArray(v) || v instanceof Float64Array) return Float32Array.from(v);
  throw new TypeError("vector must be an array of numbers or a Float32Array/Float64Array");
}

/** Throws a TypeError when `e` is not an entity `{ pk, vector, metadata?, timestamp_ms?, expires_at_ms? }`. */
export function checkEntity(e: T.VectorEntity): void {
  if (typeof e?.pk !== "string") throw new TypeError("pk must be a string");
  if (e.metadata !== undefined && (e.metadata === null || typeof e.metadata !== "object" || Array.isArray(e.metadata))) {
    throw new TypeError("metadata must be an object");
  }
  for (const k of ["timestamp_ms", "expires_at_ms"] as const) {
    const t = e[k];
    if (t !== undefined && !Number.isSafeInteger(t)) throw new TypeError(`${k} must be an integer (ms since the epoch)`);
  }
}

/** An entity as the JSON the server expects. */
export function entityJson(e: T.VectorEntity): Record<string, unknown> {
  checkEntity(e);
  const d: Record<string, unknown> = { pk: e.pk, vector: vectorList(e.vector) };
  if (e.metadata !== undefined) d.metadata = e.metadata;
  if (e.timestamp_ms !== undefined) d.timestamp_ms = e.timestamp_ms;
  if (e.expires_at_ms !== undefined) d.expires_at_ms = e.expires_at_ms;
  return d;
}
