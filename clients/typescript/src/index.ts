export {
  Client,
  TimeSeriesClient,
  VectorClient,
  CollectionsClient,
  DatabasesClient,
  ReplicationClient,
  MAX_TS,
  pointJson,
} from "./client.js";
export type {
  ClientOptions,
  QueryOptions,
  ExportOptions,
  WriteLinesOptions,
  SearchOptions,
  CreateCollectionOptions,
  ChangeEvent,
  ChangesOptions,
  AckOption,
  CollectionOption,
  Transport,
  TransportOption,
} from "./client.js";
export { TimeSeriesBatchWriter } from "./batch.js";
export type { BatchWriterOptions } from "./batch.js";
export * from "./errors.js";
export { HttpTransport, VERSION } from "./http.js";
export type { CallOptions, Req, Query } from "./http.js";
export { DEFAULT_RETRY, DEFAULT_WRITER_RETRY, NO_RETRY, backoffMs, parseRetryAfter } from "./retry.js";
export type { RetryPolicy } from "./retry.js";
export { SSEParser } from "./sse.js";
export { WireClient, wsUrl } from "./wire-client.js";
export type { WireOptions, WireCallOptions, Outcome } from "./wire-client.js";
export type { WebSocketClass } from "./websocket.js";
export {
  Opcode,
  Status,
  HEADER_LEN,
  FLAG_BATCH,
  FLAG_EVENT,
  TIMESTAMP_NOW,
  PRE_AUTH_MAX_MESSAGE,
  ByteWriter,
  TsItemEncoder,
  FrameReader,
  encodeFrame,
  encodeAuth,
  encodeTsPut,
  encodeVectorWrite,
  encodeVectorRemove,
  encodeVectorSearch,
  decodeU64,
  decodeJson,
  decodeSearchHits,
  decodeTsPut,
  allStamped,
} from "./wire.js";
export type { Frame, WireSearch, SeriesBytes } from "./wire.js";
export type * from "./types.js";

import { TimeSeriesClient, VectorClient } from "./client.js";
/** The seed's names for `client.timeseries` / `client.vectors`. */
export const ThemisTimeSeriesClient = TimeSeriesClient;
export type ThemisTimeSeriesClient = TimeSeriesClient;
export const ThemisVectorClient = VectorClient;
export type ThemisVectorClient = VectorClient;
export const SluiceTimeSeriesClient = TimeSeriesClient;
export type SluiceTimeSeriesClient = TimeSeriesClient;
export const SluiceVectorClient = VectorClient;
export type SluiceVectorClient = VectorClient;
