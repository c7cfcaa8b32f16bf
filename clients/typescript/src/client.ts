import { ChangefeedError, DecodeError, SluiceError } from "./errors.js";
import { HttpTransport, readLines, type CallOptions, type Req } from "./http.js";
import type { RetryPolicy } from "./retry.js";
import { TimeSeriesBatchWriter, type BatchWriterOptions } from "./batch.js";
import { SSEParser } from "./sse.js";
import type * as T from "./types.js";
import { entityJson, pointJson, vectorList } from "./points.js";
import {
  Opcode,
  decodeJson,
  decodeSearchHits,
  decodeU64,
  encodeFrame,
  encodeTsPut,
  encodeVectorRemove,
  encodeVectorSearch,
  encodeVectorWrite,
} from "./wire.js";
import { WireClient, type WireCallOptions, type WireOptions } from "./wire-client.js";
export { pointJson };

const ACKS = ["buffer", "wal", "fsync"] as const;
/** The default end of a range: the largest integer a JavaScript number holds exactly (2^53 - 1). */
export const MAX_TS = Number.MAX_SAFE_INTEGER;

export interface ClientOptions {
  /** Bearer token (`Authorization: Bearer …`). */
  token?: string;
  /** Database for time series, vectors and collections; undefined = the flat routes (`default`). */
  database?: string;
  /** Per-request timeout in ms (default 30000; 0 = none). */
  timeoutMs?: number;
  /** Retry policy for refusals (default: 5 retries, 50 ms doubling, honouring Retry-After). */
  retry?: RetryPolicy;
  /** Extra headers sent with every request. */
  headers?: Record<string, string>;
  /** A fetch implementation (default: globalThis.fetch). */
  fetch?: typeof fetch;
  /**
   * Transport of the buffered methods, `vectors.search` and `timeseries.batchWriter`: `http`
   * (default) or `wire` (the binary protocol over the WebSocket `/v1/ws`; database `default`
   * only). Each of those methods also takes `transport` per call.
   */
  transport?: Transport;
  /** How to reach `/v1/ws` (URL, WebSocket implementation, how the token is sent). */
  wire?: WireOptions;
}

export type Transport = "http" | "wire";
export type AckOption = { ack?: T.Ack };
export type CollectionOption = { collection?: string };
/** `http` or `wire` for this call (default: the client's `transport`). */
export type TransportOption = { transport?: Transport };

const enc = encodeURIComponent;

function checkTransport(t: unknown): Transport {
  if (t !== "http" && t !== "wire") throw new TypeError(`transport must be 'http' or 'wire', not ${JSON.stringify(t)}`);
  return t;
}

/** The wire protocol acts on database `default`: refuses a client scoped to another one. */
function checkWireDatabase(database: string | undefined): void {
  if (database !== undefined && database !== "default") {
    throw new TypeError(`the wire protocol acts on database 'default' only (this client is for database ${JSON.stringify(database)}): use transport 'http'`);
  }
}

/** Vector writes over the wire act on collection `default`. */
function checkWireCollection(collection: string | undefined): void {
  if (collection !== undefined && collection !== "default") {
    throw new TypeError(`wire vector writes act on collection 'default' only, not ${JSON.stringify(collection)}: use transport 'http'`);
  }
}

/** The wire protocol carries no entity times, time ranges or decay. */
function checkHttpOnly(fields: Record<string, unknown>): void {
  const given = Object.keys(fields).filter((k) => fields[k] !== undefined);
  if (given.length) throw new TypeError(`the wire protocol does not carry ${given.join(", ")}: use transport 'http'`);
}

const wireCall = (o: CallOptions, idempotent = true): WireCallOptions => ({ signal: o.signal, timeoutMs: o.timeoutMs, retry: o.retry, idempotent });

function checkAck(ack: string | undefined): string | undefined {
  if (ack !== undefined && !(ACKS as readonly string[]).includes(ack)) {
    throw new TypeError(`ack must be one of ${ACKS.join(", ")}, not ${JSON.stringify(ack)}`);
  }
  return ack;
}

type VectorLike = T.VectorEntity["vector"];

/** @internal The client's wire sessions, as the namespaces reach them. */
export interface WireAccess {
  /** The client's default transport. */
  transport: Transport;
  database?: string;
  /** The client's shared session. */
  shared(): WireClient;
  /** A session of its own (a batch writer's). */
  fresh(): WireClient;
}

/** Shared by the namespaces: the transport and the database prefix. */
class Scoped {
  /** @internal */
  constructor(
    readonly http: HttpTransport,
    readonly prefix: string,
    /** @internal */
    readonly wireAccess?: WireAccess,
  ) {}
  /** @internal The wire session when this call goes over the wire, else undefined. */
  wireFor(o: TransportOption): WireClient | undefined {
    const t = checkTransport(o.transport ?? this.wireAccess?.transport ?? "http");
    if (t === "http") return undefined;
    if (!this.wireAccess) throw new TypeError("this namespace has no wire transport");
    checkWireDatabase(this.wireAccess.database);
    return this.wireAccess.shared();
  }
  /** @internal */
  p(path: string): string {
    return this.prefix + path;
  }
  /** @internal */
  send<R>(req: Req, opts?: CallOptions): Promise<R> {
    return this.http.json<R>(req, opts);
  }
}

export interface QueryOptions extends CallOptions {
  metric: string;
  /** Inclusive; default 0. Numbers are ms since the epoch; Dates are accepted. */
  from_ms?: number | Date;
  /** Inclusive; default the end of time. */
  to_ms?: number | Date;
  entity?: string;
  tags?: Record<string, string>;
  matchers?: T.TagMatcher[];
  aggregation?: T.Aggregation;
  step_ms?: number;
  group_by?: string[];
}

export type ExportOptions = Omit<QueryOptions, "aggregation" | "step_ms" | "group_by">;

/** A deletion's selection: the range is required (0 and `MAX_TS` for all time). */
export type DeleteOptions = ExportOptions & { from_ms: number | Date; to_ms: number | Date };

export interface WriteLinesOptions extends CallOptions, AckOption {
  /** Timestamp precision of the lines: ns (default), us, ms, s. */
  precision?: "ns" | "us" | "ms" | "s";
  /** `v1` (`POST /write`, default) or `v2` (`POST /api/v2/write`). */
  api?: "v1" | "v2";
  /** Say so when every line has a timestamp: a lost answer is then re-sent. Default false. */
  idempotent?: boolean;
}

const ms = (t: number | Date | undefined, dflt: number): number =>
  t === undefined ? dflt : t instanceof Date ? t.getTime() : t;

function rangeBody(o: ExportOptions): Record<string, unknown> {
  const body: Record<string, unknown> = { metric: o.metric, from_ms: ms(o.from_ms, 0), to_ms: ms(o.to_ms, MAX_TS) };
  if (o.entity !== undefined) body.entity = o.entity;
  if (o.tags && Object.keys(o.tags).length) body.tags = o.tags;
  if (o.matchers && o.matchers.length) body.matchers = o.matchers;
  return body;
}

/** Time series: `client.timeseries` (the seed's `ThemisTimeSeriesClient`). */
export class TimeSeriesClient extends Scoped {
  /** `POST /ts/put`: one point, acknowledged at `ack` (server default fsync). */
  async put(point: T.PointInput, opts: CallOptions & AckOption = {}): Promise<T.PutResponse> {
    const body = pointJson(point);
    return this.send(
      { method: "POST", path: this.p("/ts/put"), json: body, query: { ack: checkAck(opts.ack) }, idempotent: "timestamp_ms" in body },
      opts,
    );
  }

  /** `POST /ts/put/batch`: all points or none. */
  async putBatch(points: Iterable<T.PointInput>, opts: CallOptions & AckOption = {}): Promise<T.BatchPutResponse> {
    const pts = Array.from(points, pointJson);
    return this.send(
      {
        method: "POST",
        path: this.p("/ts/put/batch"),
        json: { points: pts },
        query: { ack: checkAck(opts.ack) },
        idempotent: pts.every((p) => "timestamp_ms" in p),
      },
      opts,
    );
  }

  /**
   * `POST /ts/put/buffered` (the seed's method), or `TS_PUT_BUFFERED` with `transport: "wire"`:
   * the point joins the server's auto-buffer. Resolves once it is buffered.
   */
  async putBuffered(point: T.PointInput, opts: CallOptions & AckOption & TransportOption = {}): Promise<void> {
    await this.putBufferedResult(point, opts);
  }

  /**
   * `POST /ts/put/buffered` (or `TS_PUT_BUFFERED`), returning the answer (`buffer_size`; over
   * the wire `{ success: true, buffered: true, buffer_size }`). The wire takes no `ack`.
   */
  async putBufferedResult(point: T.PointInput, opts: CallOptions & AckOption & TransportOption = {}): Promise<T.BufferedPutResponse> {
    const wire = this.wireFor(opts);
    if (wire) {
      if (opts.ack !== undefined && opts.ack !== "buffer") throw new TypeError("TS_PUT_BUFFERED takes no ack: use transport 'http'");
      const stamped = point?.timestamp_ms !== undefined && point?.timestamp_ms !== null;
      const size = decodeU64(await wire.call(encodeTsPut([point], { batch: false }), wireCall(opts, stamped)));
      return { success: true, buffered: true, buffer_size: size };
    }
    const body = pointJson(point);
    return this.send(
      {
        method: "POST",
        path: this.p("/ts/put/buffered"),
        json: body,
        query: { ack: checkAck(opts.ack) },
        idempotent: "timestamp_ms" in body,
      },
      opts,
    );
  }

  /** `GET /ts/buffer/stats` (or `TS_BUFFER_STATS`). */
  async getBufferStats(opts: CallOptions & TransportOption = {}): Promise<T.BufferStats> {
    const wire = this.wireFor(opts);
    if (wire) return decodeJson(await wire.call(encodeFrame(Opcode.TS_BUFFER_STATS), wireCall(opts)));
    return this.send({ method: "GET", path: this.p("/ts/buffer/stats") }, opts);
  }

  /** `POST /ts/buffer/flush` (the seed's method; or `TS_BUFFER_FLUSH`): resolves once the buffer is flushed. */
  async flushBuffer(opts: CallOptions & TransportOption = {}): Promise<void> {
    await this.flushBufferResult(opts);
  }

  /** `POST /ts/buffer/flush` (or `TS_BUFFER_FLUSH`), returning the answer (`points_flushed`). */
  async flushBufferResult(opts: CallOptions & TransportOption = {}): Promise<T.FlushResponse> {
    const wire = this.wireFor(opts);
    if (wire) return decodeJson(await wire.call(encodeFrame(Opcode.TS_BUFFER_FLUSH), wireCall(opts)));
    return this.send({ method: "POST", path: this.p("/ts/buffer/flush") }, opts);
  }

  /**
   * InfluxDB line protocol: `POST /write` (`api: "v1"`) or `POST /api/v2/write` (`api: "v2"`).
   * Each field becomes a point of metric `<measurement>_<field>` (`<measurement>` for `value`);
   * tag `entity` (else `host`) is the entity.
   */
  async writeLines(lines: string | string[] | Uint8Array, opts: WriteLinesOptions = {}): Promise<void> {
    const precision = opts.precision ?? "ns";
    if (!["ns", "us", "ms", "s"].includes(precision)) throw new TypeError("precision must be ns, us, ms or s");
    const api = opts.api ?? "v1";
    const path = api === "v1" ? "/write" : api === "v2" ? "/api/v2/write" : undefined;
    if (!path) throw new TypeError("api must be 'v1' or 'v2'");
    const body = Array.isArray(lines) ? lines.join("\n") : lines;
    await this.http.response(
      {
        method: "POST",
        path: this.p(path),
        body,
        contentType: "text/plain; charset=utf-8",
        query: { precision, ack: checkAck(opts.ack) },
        idempotent: opts.idempotent ?? false,
      },
      opts,
    );
  }

  /**
   * `POST /ts/query`: raw points, or aggregated (`min`, `max`, `sum`, `avg`, `count`, `first`,
   * `last`) per `step_ms` and `group_by`. The range is inclusive.
   */
  async query(o: QueryOptions): Promise<T.QueryResponse> {
    const body = rangeBody(o);
    if (o.aggregation !== undefined) body.aggregation = o.aggregation;
    if (o.step_ms !== undefined) body.step_ms = o.step_ms;
    if (o.group_by && o.group_by.length) body.group_by = o.group_by;
    return this.send({ method: "POST", path: this.p("/ts/query"), json: body }, o);
  }

  /**
   * `POST /ts/delete` (admin): deletes the points of the selected series in
   * `[from_ms, to_ms]` (inclusive). Durable, replicated and visible to queries when it
   * resolves; points written later are untouched. Never re-sent after a lost answer (it would
   * delete what was written meanwhile).
   */
  async delete(o: DeleteOptions): Promise<T.TsDeleteResponse> {
    if (o.from_ms === undefined || o.to_ms === undefined) {
      throw new TypeError("delete needs from_ms and to_ms (0 and MAX_TS for all time)");
    }
    return this.send({ method: "POST", path: this.p("/ts/delete"), json: rangeBody(o), idempotent: false }, o);
  }

  /**
   * `GET /ts/cardinality`: the database's series totals and limits, and the metrics, labels
   * and label values with the most series (`limit` of each, default 10), among every series or
   * those of `metric`.
   */
  async cardinality(o: CallOptions & { metric?: string; limit?: number } = {}): Promise<T.CardinalityResponse> {
    const query: Record<string, string> = {};
    if (o.metric !== undefined) query.metric = o.metric;
    if (o.limit !== undefined) query.limit = String(o.limit);
    return this.send({ method: "GET", path: this.p("/ts/cardinality"), query }, o);
  }

  /**
   * `POST /ts/export`: an async iterator over the points, read from the NDJSON answer as it
   * arrives (the whole answer is never held in memory). Breaking out of `for await` releases
   * the connection. The timeout covers the wait for the answer's start only.
   */
  async *export(o: ExportOptions): AsyncGenerator<T.DataPoint> {
    const resp = await this.http.response(
      {
        method: "POST",
        path: this.p("/ts/export"),
        json: rangeBody(o),
        // Uncompressed: the NDJSON is consumed as it streams.
        headers: { "accept-encoding": "identity", accept: "application/x-ndjson" },
      },
      { ...o, stream: true },
    );
    for await (const line of readLines(resp.body)) {
      if (!line) continue;
      try {
        yield JSON.parse(line) as T.DataPoint;
      } catch (e) {
        throw new DecodeError(`export line is not JSON: ${line.slice(0, 200)}`, { cause: e });
      }
    }
  }

  /**
   * An auto-batching writer: `await writer.put(point)` queues a point (waiting while the
   * bounded queue is full); batches of `maxPoints` / `maxBytes`, or every `flushIntervalMs`,
   * are sent in order to `/ts/put/batch?ack=…` (one at a time), or with `transport: "wire"`
   * as pipelined `TS_PUT_BUFFERED` frames over its own WebSocket session. `close()` sends the
   * rest.
   */
  batchWriter(opts: BatchWriterOptions = {}): TimeSeriesBatchWriter {
    const transport = checkTransport(opts.transport ?? this.wireAccess?.transport ?? "http");
    if (transport === "wire") {
      if (!this.wireAccess) throw new TypeError("this namespace has no wire transport");
      checkWireDatabase(this.wireAccess.database);
      return new TimeSeriesBatchWriter(this.wireAccess.fresh(), { ...opts, transport });
    }
    return new TimeSeriesBatchWriter({ http: this.http, path: this.p("/ts/put/batch") }, { ...opts, transport });
  }
}

export interface SearchOptions extends CallOptions, CollectionOption, TransportOption {
  vector: VectorLike;
  k: number;
  /** Metadata filter, e.g. `{ year: { $gte: 2020 }, category: { $in: ["a", "b"] } }`. */
  filter?: Record<string, unknown>;
  /** HNSW search breadth (defaults to the collection's `ef_search`). */
  ef?: number;
  /**
   * Only entities whose `timestamp_ms` is in this window, inclusive; a missing bound is open
   * (HTTP only).
   */
  time_range?: T.TimeRange;
  /**
   * Favour recent entities: rank by `distance − weight · 2^(−age / half_life_ms)`; each hit then
   * has `rank`, what the hits are ordered by (HTTP only).
   */
  decay?: T.Decay;
  /**
   * For every hit whose metadata names a series (string fields `metric` and `entity`): that
   * series' aggregate over the `window_ms` ending now, as the hit's `series` (HTTP only).
   */
  with_series?: T.WithSeries;
}

/** Vectors: `client.vectors` (the seed's `ThemisVectorClient`). */
export class VectorClient extends Scoped {
  private q(collection?: string, ack?: string) {
    return { collection, ack: checkAck(ack) };
  }

  /**
   * `POST /vectors/add`: inserts or replaces one entity. `timestamp_ms` is the entity's time (what
   * `time_range` and `decay` of {@link search} look at), `expires_at_ms` when it expires
   * (overriding the collection's `ttl_ms`).
   */
  async add(entity: T.VectorEntity, opts: CallOptions & CollectionOption & AckOption = {}): Promise<T.AddResponse> {
    return this.send(
      { method: "POST", path: this.p("/vectors/add"), json: entityJson(entity), query: this.q(opts.collection, opts.ack) },
      opts,
    );
  }

  /** `POST /vectors/add/batch`: all entities or none. */
  async addBatch(entities: Iterable<T.VectorEntity>, opts: CallOptions & CollectionOption & AckOption = {}): Promise<T.BatchAddResponse> {
    return this.send(
      {
        method: "POST",
        path: this.p("/vectors/add/batch"),
        json: { vectors: Array.from(entities, entityJson) },
        query: this.q(opts.collection, opts.ack),
      },
      opts,
    );
  }

  /** A buffered vector write over the wire (collection `default`): the answer as HTTP has it. */
  private async wireWrite(wire: WireClient, frame: Uint8Array, opts: CallOptions, idempotent: boolean): Promise<T.BufferedVectorResponse> {
    const size = decodeU64(await wire.call(frame, wireCall(opts, idempotent)));
    return { success: true, buffered: true, buffer_size: size };
  }

  /** `POST /vectors/add/buffered` (the seed's method), or `VECTOR_ADD_BUFFERED` with `transport: "wire"` (collection `default`). */
  async addBuffered(entity: T.VectorEntity, opts: CallOptions & CollectionOption & TransportOption = {}): Promise<T.BufferedVectorResponse> {
    const wire = this.wireFor(opts);
    if (wire) {
      checkWireCollection(opts.collection);
      checkHttpOnly({ timestamp_ms: entity?.timestamp_ms, expires_at_ms: entity?.expires_at_ms });
      return this.wireWrite(wire, encodeVectorWrite(Opcode.VECTOR_ADD_BUFFERED, [entity], false), opts, true);
    }
    return this.send(
      { method: "POST", path: this.p("/vectors/add/buffered"), json: entityJson(entity), query: this.q(opts.collection) },
      opts,
    );
  }

  /** `POST /vectors/update/buffered` (the seed's method), or `VECTOR_UPDATE_BUFFERED` with `transport: "wire"`. */
  async updateBuffered(entity: T.VectorEntity, opts: CallOptions & CollectionOption & TransportOption = {}): Promise<T.BufferedVectorResponse> {
    const wire = this.wireFor(opts);
    if (wire) {
      checkWireCollection(opts.collection);
      checkHttpOnly({ timestamp_ms: entity?.timestamp_ms, expires_at_ms: entity?.expires_at_ms });
      return this.wireWrite(wire, encodeVectorWrite(Opcode.VECTOR_UPDATE_BUFFERED, [entity], false), opts, true);
    }
    return this.send(
      { method: "POST", path: this.p("/vectors/update/buffered"), json: entityJson(entity), query: this.q(opts.collection) },
      opts,
    );
  }

  /**
   * `DELETE /vectors/remove/buffered` (the seed's method), or `VECTOR_REMOVE_BUFFERED` with
   * `transport: "wire"`. Not re-sent after a lost answer.
   */
  async removeBuffered(pk: string, opts: CallOptions & CollectionOption & TransportOption = {}): Promise<T.BufferedVectorResponse> {
    if (typeof pk !== "string") throw new TypeError("pk must be a string");
    const wire = this.wireFor(opts);
    if (wire) {
      checkWireCollection(opts.collection);
      return this.wireWrite(wire, encodeVectorRemove([pk], false), opts, false);
    }
    return this.send(
      {
        method: "DELETE",
        path: this.p("/vectors/remove/buffered"),
        json: { pk },
        query: this.q(opts.collection),
        idempotent: false,
      },
      opts,
    );
  }

  /** `GET /vectors/buffer/stats` (the seed's method; or `VECTOR_BUFFER_STATS`). */
  async getBufferStats(opts: CallOptions & TransportOption = {}): Promise<T.VectorBufferStats> {
    const wire = this.wireFor(opts);
    if (wire) return decodeJson(await wire.call(encodeFrame(Opcode.VECTOR_BUFFER_STATS), wireCall(opts)));
    return this.send({ method: "GET", path: this.p("/vectors/buffer/stats") }, opts);
  }

  /** `POST /vectors/buffer/flush` (or `VECTOR_BUFFER_FLUSH`). */
  async flushBuffer(opts: CallOptions & TransportOption = {}): Promise<T.VectorFlushResponse> {
    const wire = this.wireFor(opts);
    if (wire) return decodeJson(await wire.call(encodeFrame(Opcode.VECTOR_BUFFER_FLUSH), wireCall(opts)));
    return this.send({ method: "POST", path: this.p("/vectors/buffer/flush") }, opts);
  }

  /**
   * `POST /vectors/search` (or `VECTOR_SEARCH` with `transport: "wire"`: the same hits, no
   * JSON for the vector and the hits): the `k` nearest entities, optionally filtered on metadata,
   * on a `time_range` of entity times, ranked with recency `decay`, and with each hit's series
   * aggregate (`with_series`; those three: HTTP only).
   */
  async search(o: SearchOptions): Promise<T.SearchResult[]> {
    const wire = this.wireFor(o);
    if (wire) {
      checkHttpOnly({ time_range: o.time_range, decay: o.decay, with_series: o.with_series });
      const frame = encodeVectorSearch({ collection: o.collection, vector: o.vector, k: o.k, ef: o.ef, filter: o.filter });
      return decodeSearchHits(await wire.call(frame, wireCall(o)));
    }
    const body: Record<string, unknown> = { vector: vectorList(o.vector), k: o.k };
    if (o.filter !== undefined) body.filter = o.filter;
    if (o.ef !== undefined) body.ef = o.ef;
    if (o.time_range !== undefined) body.time_range = o.time_range;
    if (o.decay !== undefined) body.decay = o.decay;
    if (o.with_series !== undefined) body.with_series = o.with_series;
    const r = await this.send<T.SearchResponse>(
      { method: "POST", path: this.p("/vectors/search"), json: body, query: this.q(o.collection) },
      o,
    );
    return r.results;
  }

  /** `GET /vectors/{pk}`. Throws {@link NotFound} (`entity_not_found`) when absent. */
  async get(pk: string, opts: CallOptions & CollectionOption = {}): Promise<T.VectorEntity> {
    return this.send({ method: "GET", path: this.p("/vectors/" + enc(pk)), query: this.q(opts.collection) }, opts);
  }

  /** `DELETE /vectors/{pk}`. Not re-sent after a lost answer. */
  async delete(pk: string, opts: CallOptions & CollectionOption & AckOption = {}): Promise<T.DeleteResponse> {
    return this.send(
      { method: "DELETE", path: this.p("/vectors/" + enc(pk)), query: this.q(opts.collection, opts.ack), idempotent: false },
      opts,
    );
  }
}

export interface CreateCollectionOptions {
  name: string;
  dimension: number;
  distance?: T.Distance;
  precision?: T.Precision;
  hnsw?: T.HnswSpec;
  /**
   * Entities written without `expires_at_ms` expire this long after they are written (1 ms to
   * 100 years); none when absent.
   */
  ttl_ms?: number;
}

/** Vector collections: `client.collections`. */
export class CollectionsClient extends Scoped {
  /** `POST /v1/collections`. Throws {@link Conflict} if it exists. */
  async create(spec: CreateCollectionOptions, opts: CallOptions = {}): Promise<T.CollectionInfo> {
    const body: Record<string, unknown> = { name: spec.name, dimension: spec.dimension };
    if (spec.distance !== undefined) body.distance = spec.distance;
    if (spec.precision !== undefined) body.precision = spec.precision;
    if (spec.hnsw !== undefined) body.hnsw = spec.hnsw;
    if (spec.ttl_ms !== undefined) body.ttl_ms = spec.ttl_ms;
    return this.send({ method: "POST", path: this.p("/v1/collections"), json: body, idempotent: false }, opts);
  }
  /** `GET /v1/collections`. */
  async list(opts: CallOptions = {}): Promise<T.CollectionInfo[]> {
    const r = await this.send<{ collections: T.CollectionInfo[] }>({ method: "GET", path: this.p("/v1/collections") }, opts);
    return r.collections;
  }
  /** `GET /v1/collections/{name}`. */
  async get(name: string, opts: CallOptions = {}): Promise<T.CollectionInfo> {
    return this.send({ method: "GET", path: this.p("/v1/collections/" + enc(name)) }, opts);
  }
  /** `DELETE /v1/collections/{name}`. */
  async delete(name: string, opts: CallOptions = {}): Promise<T.DeleteResponse> {
    return this.send({ method: "DELETE", path: this.p("/v1/collections/" + enc(name)), idempotent: false }, opts);
  }
  /**
   * `GET /v1/collections/{name}/export`: an async iterator over the collection's entities in pk
   * order (buffered ones included, expired ones not), read from the NDJSON answer as it arrives.
   * Breaking out of `for await` releases the connection. Throws {@link NotFound}
   * (`collection_not_found`) for an unknown collection.
   */
  async *export(name: string, opts: CallOptions = {}): AsyncGenerator<T.VectorEntity> {
    const resp = await this.http.response(
      {
        method: "GET",
        path: this.p("/v1/collections/" + enc(name) + "/export"),
        // Uncompressed: the NDJSON is consumed as it streams.
        headers: { "accept-encoding": "identity", accept: "application/x-ndjson" },
      },
      { ...opts, stream: true },
    );
    for await (const line of readLines(resp.body)) {
      if (!line) continue;
      try {
        yield JSON.parse(line) as T.VectorEntity;
      } catch (e) {
        throw new DecodeError(`export line is not JSON: ${line.slice(0, 200)}`, { cause: e });
      }
    }
  }
}

/** Databases (server-wide): `client.databases`. */
export class DatabasesClient extends Scoped {
  /** `POST /v1/databases`. Throws {@link Conflict} if it exists. */
  async create(
    name: string,
    opts: CallOptions & { retention_ms?: number; policy?: string; downsampling?: { after_ms: number; resolution_ms: number }[] } = {},
  ): Promise<T.DatabaseInfo> {
    const body: Record<string, unknown> = { name };
    if (opts.retention_ms !== undefined) body.retention_ms = opts.retention_ms;
    if (opts.downsampling !== undefined) body.downsampling = opts.downsampling;
    if (opts.policy !== undefined) body.policy = opts.policy;
    return this.send({ method: "POST", path: "/v1/databases", json: body, idempotent: false }, opts);
  }
  /** `GET /v1/databases`. */
  async list(opts: CallOptions = {}): Promise<T.DatabaseInfo[]> {
    const r = await this.send<{ databases: T.DatabaseInfo[] }>({ method: "GET", path: "/v1/databases" }, opts);
    return r.databases;
  }
  /** `DELETE /v1/databases/{db}`: resolves to the answer's `success`. */
  async delete(name: string, opts: CallOptions = {}): Promise<boolean> {
    const r = await this.send<T.DeleteDatabaseResponse>(
      { method: "DELETE", path: "/v1/databases/" + enc(name), idempotent: false },
      opts,
    );
    return r?.success ?? true;
  }
}

/** Replication (server-wide, admin): `client.replication`. */
export class ReplicationClient extends Scoped {
  /** `POST /api/v1/replication/replicas`: registering the same id and endpoint again is safe. */
  async addReplica(replica_id: string, endpoint: string, opts: CallOptions = {}): Promise<T.ReplicaInfo> {
    return this.send({ method: "POST", path: "/api/v1/replication/replicas", json: { replica_id, endpoint } }, opts);
  }
  /** `DELETE /api/v1/replication/replicas/{replica_id}`. */
  async removeReplica(replica_id: string, opts: CallOptions = {}): Promise<boolean> {
    const r = await this.send<T.RemoveReplicaResponse>(
      { method: "DELETE", path: "/api/v1/replication/replicas/" + enc(replica_id), idempotent: false },
      opts,
    );
    return r.success;
  }
  /** `GET /api/v1/replication/replicas`. */
  async listReplicas(opts: CallOptions = {}): Promise<T.ReplicaInfo[]> {
    const r = await this.send<{ replicas: T.ReplicaInfo[] }>({ method: "GET", path: "/api/v1/replication/replicas" }, opts);
    return r.replicas;
  }
  /** `GET /api/v1/replication/stats`. */
  async getReplicationStats(opts: CallOptions = {}): Promise<T.ReplicationStats> {
    return this.send({ method: "GET", path: "/api/v1/replication/stats" }, opts);
  }
  /** `POST /api/v1/replication/config`: `none`, `lz4` or `zstd` (with `level`). */
  async configureCompression(compression_type: string = "zstd", level?: number, opts: CallOptions = {}): Promise<T.ReplicationConfigResponse> {
    const body: Record<string, unknown> = { compression_type };
    if (level !== undefined) body.level = level;
    return this.send({ method: "POST", path: "/api/v1/replication/config", json: body }, opts);
  }
  /** `POST /api/v1/replication/promote`: makes this replica a primary. */
  async promote(opts: CallOptions = {}): Promise<T.PromoteResponse> {
    return this.send({ method: "POST", path: "/api/v1/replication/promote", idempotent: false }, opts);
  }
}

/** One change of a database, from the changefeed. */
export interface ChangeEvent {
  /** The record's LSN (the SSE event id): resume with `fromLsn: lsn`. */
  lsn: number;
  /** `points`, `vectors`, `collection`, ... */
  event: string;
  /** The event's JSON payload. */
  data: Record<string, any>;
}

export interface ChangesOptions {
  /** Database (default: the client's `database`, else `default`). */
  database?: string;
  /** The last LSN the subscriber has: events start after it (0 = from the first record). */
  fromLsn?: number;
  /** Reconnect from the last LSN when the stream ends or drops (default true). */
  reconnect?: boolean;
  /** At most this many reconnects (default unlimited). */
  maxReconnects?: number;
  /** Stop iterating after this many ms without an event. */
  idleTimeoutMs?: number;
  /** Stops the feed. */
  signal?: AbortSignal;
}

/** The Sluice client. */
export class Client {
  readonly http: HttpTransport;
  readonly url: string;
  readonly database?: string;
  readonly timeseries: TimeSeriesClient;
  readonly vectors: VectorClient;
  readonly collections: CollectionsClient;
  readonly databases: DatabasesClient;
  readonly replication: ReplicationClient;
  /** The default transport of the buffered methods, `vectors.search` and batch writers. */
  readonly transport: Transport;
  private readonly options: ClientOptions;
  private session?: WireClient;

  constructor(url: string = "http://127.0.0.1:8080", options: ClientOptions = {}) {
    this.url = url;
    this.options = options;
    this.database = options.database;
    this.transport = checkTransport(options.transport ?? "http");
    if (this.transport === "wire") checkWireDatabase(options.database);
    this.http = new HttpTransport(url, options);
    const prefix = options.database === undefined ? "" : "/v1/databases/" + enc(options.database);
    const wire: WireAccess = {
      transport: this.transport,
      database: options.database,
      shared: () => this.wire,
      fresh: () => this.newWire(),
    };
    this.timeseries = new TimeSeriesClient(this.http, prefix, wire);
    this.vectors = new VectorClient(this.http, prefix, wire);
    this.collections = new CollectionsClient(this.http, prefix);
    this.databases = new DatabasesClient(this.http, "");
    this.replication = new ReplicationClient(this.http, "");
  }

  /** A client for another database (same URL, token and settings). */
  withDatabase(database: string): Client {
    return new Client(this.url, { ...this.options, database });
  }

  /**
   * The client's wire protocol session (`/v1/ws`, database `default`), opened on first use:
   * `call(frame)` / `pipeline(frames)` send frames encoded with the `wire` codec. The
   * namespaces' `transport: "wire"` methods use it.
   */
  get wire(): WireClient {
    return (this.session ??= this.newWire());
  }

  private newWire(): WireClient {
    const o = this.options;
    return new WireClient(this.url, { token: o.token, timeoutMs: o.timeoutMs, retry: o.retry, wire: o.wire });
  }

  /**
   * Closes the wire session if one is open (HTTP needs no closing). A later wire call opens a
   * new one. In Node an idle session does not keep the process alive; a browser's or Node 22's
   * `WebSocket` does until closed.
   */
  async close(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    await s?.close();
  }

  /** `GET /healthz`. */
  async health(opts: CallOptions = {}): Promise<T.Health> {
    return this.http.json({ method: "GET", path: "/healthz" }, opts);
  }
  /** `GET /readyz` (503 `not_ready` while databases recover). */
  async ready(opts: CallOptions = {}): Promise<T.Readiness> {
    return this.http.json({ method: "GET", path: "/readyz" }, opts);
  }
  /** `GET /version`. */
  async version(opts: CallOptions = {}): Promise<T.Version> {
    return this.http.json({ method: "GET", path: "/version" }, opts);
  }
  /** `GET /metrics`: Prometheus text. */
  async metrics(opts: CallOptions = {}): Promise<string> {
    return this.http.text({ method: "GET", path: "/metrics" }, opts);
  }
  /** `GET /openapi.json`: the server's contract (with its configured limits). */
  async openapi(opts: CallOptions = {}): Promise<Record<string, any>> {
    return this.http.json({ method: "GET", path: "/openapi.json" }, opts);
  }

  /**
   * `GET /v1/databases/{db}/changes`: an async iterator over a database's changes (SSE). It
   * remembers the last LSN and, when the stream ends or drops, reconnects with `from_lsn` = that
   * LSN: nothing is missed or repeated. An `error` event throws {@link ChangefeedError}; a
   * position no longer retained throws {@link Gone}. Break out of `for await` (or abort the
   * signal) to stop.
   */
  async *changes(o: ChangesOptions = {}): AsyncGenerator<ChangeEvent> {
    const db = o.database ?? this.database ?? "default";
    let last: number | undefined = o.fromLsn;
    const reconnect = o.reconnect ?? true;
    let reconnects = 0;
    for (;;) {
      const ac = new AbortController();
      const onAbort = () => ac.abort(o.signal?.reason);
      o.signal?.addEventListener("abort", onAbort, { once: true });
      let idle: ReturnType<typeof setTimeout> | undefined;
      let idledOut = false;
      const arm = () => {
        if (o.idleTimeoutMs === undefined) return;
        clearTimeout(idle);
        idle = setTimeout(() => {
          idledOut = true;
          ac.abort(new Error("idle"));
        }, o.idleTimeoutMs);
      };
      try {
        arm();
        let resp: Response;
        try {
          resp = await this.http.response(
            {
              method: "GET",
              path: `/v1/databases/${enc(db)}/changes`,
              query: { from_lsn: last },
              headers: { accept: "text/event-stream", "accept-encoding": "identity" },
            },
            { signal: ac.signal, stream: true },
          );
        } catch (e) {
          if (idledOut || o.signal?.aborted) return;
          throw e;
        }
        const parser = new SSEParser();
        try {
          for await (const line of readLines(resp.body)) {
            const ev = parser.feed(line);
            if (!ev) continue;
            arm();
            let data: any = {};
            try {
              data = ev.data ? JSON.parse(ev.data) : {};
            } catch (e) {
              throw new DecodeError(`changefeed event data is not JSON: ${ev.data.slice(0, 200)}`, { cause: e });
            }
            if (ev.event === "error") {
              throw new ChangefeedError(String(data.error ?? "changefeed error"), {
                code: data.code,
                errorId: data.error_id,
                body: data,
              });
            }
            const lsn = ev.id !== undefined ? Number(ev.id) : Number(data.lsn ?? 0);
            last = lsn;
            yield { lsn, event: ev.event, data };
          }
        } catch (e) {
          if (idledOut || o.signal?.aborted) return;
          if (e instanceof SluiceError) throw e;
          // a dropped connection: reconnect below
        }
      } finally {
        clearTimeout(idle);
        o.signal?.removeEventListener("abort", onAbort);
        ac.abort();
      }
      if (!reconnect || (o.maxReconnects !== undefined && reconnects >= o.maxReconnects)) return;
      reconnects++;
    }
  }
}
