// The SDK against the contract: generated types in sync with openapi/openapi.json, and every
// operation covered by an SDK method or a written reason.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { Client } from "../dist/index.js";

const PKG = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SPEC = resolve(PKG, "../../openapi/openapi.json");
const spec = JSON.parse(readFileSync(SPEC, "utf8"));

test("checked-in generated types match openapi/openapi.json (run `npm run gen` to update)", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-ts-gen-"));
  try {
    const out = join(dir, "openapi.ts");
    execFileSync(process.execPath, [join(PKG, "node_modules/openapi-typescript/bin/cli.js"), SPEC, "-o", out], { stdio: "pipe" });
    const fresh = readFileSync(out, "utf8");
    const committed = readFileSync(join(PKG, "src/generated/openapi.ts"), "utf8");
    assert.ok(fresh === committed, "src/generated/openapi.ts drifted from openapi/openapi.json: run `npm run gen`");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const PROM = "Prometheus HTTP API (for Grafana / PromQL tools): use a Prometheus client; not part of this SDK";
/** operationId → SDK method (path on a Client) or { reason }. */
const COVERAGE = {
  put: "timeseries.put",
  put_batch: "timeseries.putBatch",
  put_buffered: "timeseries.putBuffered",
  ts_buffer_stats: "timeseries.getBufferStats",
  ts_buffer_flush: "timeseries.flushBuffer",
  ts_query: "timeseries.query",
  export: "timeseries.export",
  ts_delete: "timeseries.delete",
  ts_cardinality: "timeseries.cardinality",
  write_v1: "timeseries.writeLines",
  write_v2: "timeseries.writeLines",
  add: "vectors.add",
  add_batch: "vectors.addBatch",
  add_buffered: "vectors.addBuffered",
  update_buffered: "vectors.updateBuffered",
  remove_buffered: "vectors.removeBuffered",
  vector_buffer_stats: "vectors.getBufferStats",
  vector_buffer_flush: "vectors.flushBuffer",
  search: "vectors.search",
  get: "vectors.get",
  delete_vector: "vectors.delete",
  list_collections: "collections.list",
  create_collection: "collections.create",
  get_collection: "collections.get",
  delete_collection: "collections.delete",
  collection_export: "collections.export",
  list: "databases.list",
  create: "databases.create",
  delete_database: "databases.delete",
  db_changes: "changes",
  stats: "replication.getReplicationStats",
  list_replicas: "replication.listReplicas",
  add_replica: "replication.addReplica",
  remove_replica: "replication.removeReplica",
  config: "replication.configureCompression",
  promote: "replication.promote",
  healthz: "health",
  readyz: "ready",
  version: "version",
  metrics: "metrics",
  openapi: "openapi",
  snapshot: { reason: "replication-internal: a primary installs a snapshot on its replica (binary body)" },
  wal_apply: { reason: "replication-internal: a primary ships WAL records to its replica" },
  remote_write: { reason: "Prometheus remote write (snappy-compressed protobuf) is for Prometheus servers, not applications" },
  websocket: "wire.call", // and transport: "wire" on the buffered methods, search and batchWriter
  label_values: { reason: PROM },
  labels: { reason: PROM },
  labels_post: { reason: PROM },
  metadata: { reason: PROM },
  query: { reason: PROM },
  query_post: { reason: PROM },
  query_range: { reason: PROM },
  query_range_post: { reason: PROM },
  series: { reason: PROM },
  series_post: { reason: PROM },
  buildinfo: { reason: PROM },
};

const DB_PREFIX = "/v1/databases/{db}";

function operations() {
  const ops = [];
  const methods = ["get", "post", "put", "delete", "patch"];
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const m of methods) {
      if (!item[m]) continue;
      // /v1/databases/{db}/... copies of flat routes map to the client's `database` option
      if (path.startsWith(DB_PREFIX + "/")) {
        const flat = path.slice(DB_PREFIX.length);
        if (spec.paths[flat]?.[m]) continue;
      }
      ops.push({ id: item[m].operationId, method: m.toUpperCase(), path });
    }
  }
  return ops;
}

test("every OpenAPI operation has an SDK method or a written reason", () => {
  const client = new Client("http://127.0.0.1:1");
  const missing = [];
  const ops = operations();
  assert.ok(ops.length > 40);
  for (const op of ops) {
    const entry = COVERAGE[op.id];
    if (entry === undefined) {
      missing.push(`${op.method} ${op.path} (${op.id}): no SDK method and no reason`);
    } else if (typeof entry === "string") {
      const owner = entry.includes(".") ? entry.split(".").slice(0, -1).reduce((o, k) => o[k], client) : client;
      const fn = owner[entry.split(".").pop()];
      if (typeof fn !== "function") missing.push(`${op.id}: ${entry} is not a method of Client`);
    } else if (!entry.reason || entry.reason.length < 10) {
      missing.push(`${op.id}: empty reason`);
    }
  }
  const ids = new Set(ops.map((o) => o.id));
  const stale = Object.keys(COVERAGE).filter((k) => !ids.has(k));
  assert.deepEqual(missing, []);
  assert.deepEqual(stale, [], "COVERAGE lists operations the contract no longer has");
});

test("the database-scoped copies exist for every database-scoped SDK namespace", () => {
  for (const flat of ["/ts/put", "/ts/put/batch", "/ts/export", "/vectors/search", "/v1/collections", "/write"]) {
    assert.ok(spec.paths[DB_PREFIX + flat], `${DB_PREFIX}${flat} missing: the database option would not work`);
  }
});
