/** Friendly names for the request/answer types generated from openapi/openapi.json. */
import type { components } from "./generated/openapi.js";

type S = components["schemas"];

/** The seed's point. `timestamp_ms` is optional on writes (server's receive time). */
export interface DataPoint {
  metric: string;
  entity: string;
  timestamp_ms: number;
  value: number;
  tags?: Record<string, string>;
}
/** A point to write: a {@link DataPoint} whose timestamp may be left out. */
export type PointInput = Omit<DataPoint, "timestamp_ms"> & { timestamp_ms?: number | null };

/** A vector entity: a primary key, its vector, optional JSON metadata and optional times. */
export interface VectorEntity {
  pk: string;
  vector: number[] | Float32Array | Float64Array;
  metadata?: Record<string, unknown>;
  /** The entity's time (ms since the epoch): what a search's `time_range` and `decay` look at. */
  timestamp_ms?: number;
  /**
   * When the entity expires (ms since the epoch); overrides the collection's `ttl_ms`. An
   * expired entity is gone from search and get at once.
   */
  expires_at_ms?: number;
}

/** A search's window of entity times, inclusive (`from_ms <= timestamp_ms <= to_ms`); a missing bound is open. */
export type TimeRange = S["TimeRange"];
/**
 * Recency decay of a search: hits are ranked by `distance − weight · 2^(−age / half_life_ms)`,
 * `age` being now minus the entity's `timestamp_ms` (no bonus without one).
 */
export type Decay = S["Decay"];
/**
 * A search's `with_series`: for every hit whose metadata names a series (string fields `metric`
 * and `entity`), that series' `aggregation` over the `window_ms` ending now (1 ms to 100 years),
 * across every series of that metric and entity whatever their tags.
 */
export type WithSeries = S["WithSeries"];
/**
 * A hit's series aggregate (`SearchResult.series`, with `with_series`): `value` over
 * `from_ms <= timestamp_ms <= to_ms`, `null` when the window holds no point.
 */
export type HitSeries = S["HitSeries"];

export type Ack = S["Ack"];
export type Aggregation = S["Aggregation"];
export type Distance = S["Distance"];
export type Precision = S["Precision"];
export type TagMatcher = S["TagMatcher"];
export type HnswSpec = S["HnswSpec"];
export type BufferStats = S["BufferStats"];
export type VectorBufferStats = S["VectorBufferStats"];
export type PutResponse = S["PutResponse"];
export type BatchPutResponse = S["BatchPutResponse"];
export type BufferedPutResponse = S["BufferedPutResponse"];
export type BufferedVectorResponse = S["BufferedVectorResponse"];
export type FlushResponse = S["FlushResponse"];
export type TsDeleteResponse = S["TsDeleteResponse"];
export type CardinalityResponse = S["CardinalityResponse"];
export type VectorFlushResponse = S["VectorFlushResponse"];
export type QueryRequest = S["QueryRequest"];
export type QueryResponse = S["QueryResponse"];
export type SeriesData = S["SeriesData"];
export type ExportRequest = S["ExportRequest"];
export type AddResponse = S["AddResponse"];
export type BatchAddResponse = S["BatchAddResponse"];
export type DeleteResponse = S["DeleteResponse"];
export type SearchRequest = S["SearchRequest"];
export type SearchResponse = S["SearchResponse"];
export type SearchResult = S["SearchResult"];
export type CollectionInfo = S["CollectionInfo"];
export type CreateCollection = S["CreateCollection"];
export type DatabaseInfo = S["DatabaseInfo"];
export type DeleteDatabaseResponse = S["DeleteDatabaseResponse"];
export type ReplicaInfo = S["ReplicaInfo"];
export type ReplicationStats = S["ReplicationStats"];
export type ReplicationConfigResponse = S["ReplicationConfigResponse"];
export type PromoteResponse = S["PromoteResponse"];
export type RemoveReplicaResponse = S["RemoveReplicaResponse"];
export type Health = S["Health"];
export type Readiness = S["Readiness"];
export type Version = S["Version"];
export type ErrorBody = S["ErrorBody"];
export type { components, paths, operations } from "./generated/openapi.js";
