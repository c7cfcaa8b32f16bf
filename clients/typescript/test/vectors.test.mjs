import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Client, ThemisVectorClient, SluiceVectorClient, VectorClient, NotFound, Conflict, Unprocessable } from "../dist/index.js";
import { startServer, uniq } from "./helpers.mjs";

let srv, client;
before(async () => {
  srv = await startServer();
  client = new Client(srv.url);
});
after(async () => srv && (await srv.stop()));

test("collections: create, list, get, delete", async () => {
  const name = uniq("Col");
  const info = await client.collections.create({ name, dimension: 4, distance: "l2", precision: "f32", hnsw: { m: 8, ef_construction: 64, ef_search: 32 } });
  assert.equal(info.name, name);
  assert.equal(info.dimension, 4);
  assert.equal(info.distance, "l2");
  assert.equal(info.hnsw.m, 8);
  assert.ok((await client.collections.list()).some((c) => c.name === name));
  assert.equal((await client.collections.get(name)).dimension, 4);
  await assert.rejects(() => client.collections.create({ name, dimension: 4 }), Conflict);
  const d = await client.collections.delete(name);
  assert.equal(d.success, true);
  await assert.rejects(() => client.collections.get(name), NotFound);
});

test("vectors: add, addBatch, get, search with filter, delete", async () => {
  const collection = uniq("v");
  await client.collections.create({ name: collection, dimension: 3 });
  const r = await client.vectors.add({ pk: "a", vector: [1, 0, 0], metadata: { year: 2021, cat: "tech" } }, { collection, ack: "fsync" });
  assert.equal(r.success, true);
  const b = await client.vectors.addBatch(
    [
      { pk: "b", vector: new Float32Array([0, 1, 0]), metadata: { year: 2019, cat: "art" } },
      { pk: "c/with slash", vector: [0.9, 0.1, 0], metadata: { year: 2022, cat: "art" } },
    ],
    { collection },
  );
  assert.equal(b.vectors_written, 2);
  const got = await client.vectors.get("c/with slash", { collection });
  assert.equal(got.pk, "c/with slash");
  assert.equal(got.metadata.year, 2022);
  const all = await client.vectors.search({ vector: [1, 0, 0], k: 3, collection });
  assert.deepEqual(all.map((x) => x.pk), ["a", "c/with slash", "b"]);
  const f = await client.vectors.search({ vector: [1, 0, 0], k: 3, collection, filter: { year: { $gte: 2020 }, cat: { $in: ["art"] } } });
  assert.deepEqual(f.map((x) => x.pk), ["c/with slash"]);
  const ef = await client.vectors.search({ vector: [1, 0, 0], k: 1, ef: 32, collection });
  assert.equal(ef[0].pk, "a");
  await assert.rejects(() => client.vectors.search({ vector: [1, 0], k: 1, collection }), Unprocessable);
  await assert.rejects(() => client.vectors.search({ vector: [1, 0, 0], k: 1, collection, filter: "year > 1" }), (e) => e.status === 422 && e.field === "filter");
  const del = await client.vectors.delete("a", { collection });
  assert.equal(del.success, true);
  await assert.rejects(() => client.vectors.get("a", { collection }), (e) => e instanceof NotFound && e.code === "entity_not_found");
});

test("seed names: addBuffered, updateBuffered, removeBuffered, getBufferStats, flushBuffer", async () => {
  assert.ok(client.vectors instanceof ThemisVectorClient);
  assert.equal(SluiceVectorClient, VectorClient);
  const collection = uniq("vb");
  await client.collections.create({ name: collection, dimension: 2 });
  const a = await client.vectors.addBuffered({ pk: "x", vector: [1, 0] }, { collection });
  assert.equal(a.buffered, true);
  await client.vectors.addBuffered({ pk: "y", vector: [0, 1] }, { collection });
  await client.vectors.updateBuffered({ pk: "x", vector: [1, 1], metadata: { v: 2 } }, { collection });
  await client.vectors.removeBuffered("y", { collection });
  const s = await client.vectors.getBufferStats();
  assert.ok(s.vectors_buffered >= 4);
  const f = await client.vectors.flushBuffer();
  assert.equal(f.success, true);
  const x = await client.vectors.get("x", { collection });
  assert.deepEqual(x.metadata, { v: 2 });
  assert.equal(x.vector[1], 1);
  await assert.rejects(() => client.vectors.get("y", { collection }), NotFound);
});

test("vectors: ttl_ms, timestamp_ms, expires_at_ms, time_range, decay", async () => {
  const DAY = 86400000;
  const now = Date.now();
  const collection = uniq("vt");
  const info = await client.collections.create({ name: collection, dimension: 2, distance: "l2", ttl_ms: 3600000 });
  assert.equal(info.ttl_ms, 3600000);
  assert.equal((await client.collections.get(collection)).ttl_ms, 3600000);
  assert.deepEqual((await client.collections.list()).filter((c) => c.name === collection).map((c) => c.ttl_ms), [3600000]);
  const v = client.vectors;
  await v.add({ pk: "old", vector: [0, 0], metadata: { k: "old" }, timestamp_ms: now - 30 * DAY }, { collection });
  await v.addBatch(
    [
      { pk: "new", vector: [0.5, 0], timestamp_ms: now },
      { pk: "mid", vector: [0, 2], timestamp_ms: now - 2 * DAY, expires_at_ms: now + DAY },
      { pk: "gone", vector: [0.1, 0], timestamp_ms: now, expires_at_ms: now - 1000 }, // already expired
    ],
    { collection },
  );
  await v.addBuffered({ pk: "untimed", vector: [3, 0] }, { collection });
  await v.addBuffered({ pk: "buf", vector: [0, 3], timestamp_ms: now - 3 * DAY }, { collection });
  await v.updateBuffered({ pk: "buf", vector: [0, 3.5], timestamp_ms: now - 4 * DAY, expires_at_ms: now + 2 * DAY }, { collection });

  // the expired entity is gone from get and search at once
  await assert.rejects(() => v.get("gone", { collection }), (e) => e instanceof NotFound && e.code === "entity_not_found");
  const all = await v.search({ vector: [0, 0], k: 10, collection });
  assert.deepEqual(all.map((r) => r.pk), ["old", "new", "mid", "untimed", "buf"]);
  assert.equal(all[1].timestamp_ms, now);
  assert.equal(all[1].rank, undefined);
  assert.equal(all[2].expires_at_ms, now + DAY);
  assert.equal(all[3].timestamp_ms, undefined);

  const mid = await v.get("mid", { collection });
  assert.equal(mid.timestamp_ms, now - 2 * DAY);
  assert.equal(mid.expires_at_ms, now + DAY);
  const old = await v.get("old", { collection });
  assert.equal(old.timestamp_ms, now - 30 * DAY);
  assert.ok(old.expires_at_ms >= now + 3500000 && old.expires_at_ms <= now + 3700000, `ttl expiry ${old.expires_at_ms - now}`);
  const buf = await v.get("buf", { collection });
  assert.deepEqual([buf.timestamp_ms, buf.expires_at_ms], [now - 4 * DAY, now + 2 * DAY]);

  // time_range: inclusive, either bound open
  const pks = async (o) => (await v.search({ vector: [0, 0], k: 10, collection, ...o })).map((r) => r.pk);
  assert.deepEqual(await pks({ time_range: { from_ms: now - 5 * DAY, to_ms: now - DAY } }), ["mid", "buf"]);
  assert.deepEqual(await pks({ time_range: { from_ms: now - 2 * DAY } }), ["new", "mid"]);
  assert.deepEqual(await pks({ time_range: { to_ms: now - 30 * DAY } }), ["old"]);
  assert.deepEqual(await pks({ time_range: { from_ms: now, to_ms: now } }), ["new"]);
  await assert.rejects(() => pks({ time_range: { since: now } }), (e) => e.status === 400 && e.field === "time_range.since");

  // decay: the far but recent entity outranks the near but old one
  const d = await v.search({ vector: [0, 0], k: 2, collection, decay: { half_life_ms: DAY, weight: 0.3 } });
  assert.deepEqual(d.map((r) => r.pk), ["new", "old"]);
  assert.ok(Math.abs(d[0].distance - 0.25) < 1e-6);
  assert.ok(Math.abs(d[0].rank - (0.25 - 0.3)) < 1e-3, `rank ${d[0].rank}`);
  assert.ok(Math.abs(d[1].rank) < 1e-3, `rank ${d[1].rank}`);
  assert.deepEqual(
    await pks({ time_range: { from_ms: now - 40 * DAY }, decay: { half_life_ms: DAY, weight: 0.3 } }),
    ["new", "old", "mid", "buf"],
  );
  await assert.rejects(() => pks({ decay: { half_life_ms: 0, weight: 0.3 } }), (e) => e.status >= 400 && e.status < 500 && e.field.startsWith("decay"));
  // the wire protocol carries none of them
  await assert.rejects(() => v.search({ vector: [0, 0], k: 2, collection, transport: "wire", decay: { half_life_ms: DAY, weight: 0.3 } }), TypeError);
  await assert.rejects(() => v.addBuffered({ pk: "w", vector: [0, 0], timestamp_ms: now }, { transport: "wire" }), TypeError);
  await assert.rejects(() => v.add({ pk: "x", vector: [0, 0], timestamp_ms: 1.5 }, { collection }), TypeError);
  await client.collections.delete(collection);
});

test("vectors: with_series", async () => {
  const now = Date.now();
  const r = await client.timeseries.putBatch([1, 2, 3].map((value, i) => ({ metric: "cpu", entity: "h1", value, timestamp_ms: now - 3000 + 1000 * i })));
  assert.equal(r.points_written, 3);
  const collection = uniq("vs");
  await client.collections.create({ name: collection, dimension: 2, distance: "l2" });
  const v = client.vectors;
  await v.add({ pk: "host", vector: [0, 0], metadata: { metric: "cpu", entity: "h1" } }, { collection });
  await v.add({ pk: "plain", vector: [1, 0] }, { collection });

  const hits = await v.search({ vector: [0, 0], k: 10, collection, with_series: { aggregation: "avg", window_ms: 600000 } });
  assert.deepEqual(hits.map((h) => h.pk), ["host", "plain"]);
  const s = hits[0].series;
  assert.ok(s, "the first hit has a series");
  assert.deepEqual([s.metric, s.entity], ["cpu", "h1"]);
  assert.ok(Math.abs(s.value - 2) < 1e-9, `value ${s.value}`);
  assert.equal(s.to_ms - s.from_ms, 600000);
  assert.ok(Math.abs(s.to_ms - now) < 60000, `to_ms ${s.to_ms - now}`);
  assert.equal(hits[1].series, undefined);
  // a window holding no point: a null value, not a missing series
  const empty = await v.search({ vector: [0, 0], k: 1, collection, with_series: { aggregation: "count", window_ms: 1 } });
  assert.equal(empty[0].series.value, null);
  // without with_series, no series
  assert.ok((await v.search({ vector: [0, 0], k: 10, collection })).every((h) => h.series === undefined));
  await assert.rejects(
    () => v.search({ vector: [0, 0], k: 1, collection, with_series: { aggregation: "avg", window_ms: 0 } }),
    (e) => e.status === 400 && e.field === "with_series.window_ms",
  );
  await assert.rejects(() => v.search({ vector: [0, 0], k: 1, transport: "wire", with_series: { aggregation: "avg", window_ms: 600000 } }), TypeError);
  await client.collections.delete(collection);
});

test("collections: export streams the entities as NDJSON, in pk order", async () => {
  const collection = uniq("exp");
  await client.collections.create({ name: collection, dimension: 2 });
  await client.vectors.addBatch(
    [
      { pk: "c", vector: [0, 1], metadata: { n: 3 } },
      { pk: "a", vector: [1, 0], metadata: { n: 1, tag: "x" }, timestamp_ms: 1700000000000 },
      { pk: "b", vector: [0.5, 0.5] },
    ],
    { collection },
  );
  const got = [];
  for await (const e of client.collections.export(collection)) got.push(e);
  assert.deepEqual(got.map((e) => e.pk), ["a", "b", "c"]);
  assert.deepEqual(got[0].vector, [1, 0]);
  assert.deepEqual(got[0].metadata, { n: 1, tag: "x" });
  assert.equal(got[0].timestamp_ms, 1700000000000);
  await assert.rejects(
    async () => {
      for await (const _ of client.collections.export(uniq("missing"))) void _;
    },
    (e) => e instanceof NotFound && e.code === "collection_not_found" && !!e.errorId,
  );
  await client.collections.delete(collection);
});

test("vectors in another database", async () => {
  const db = uniq("vdb").toLowerCase();
  await client.databases.create(db, { retention_ms: 86400000 });
  const scoped = client.withDatabase(db);
  await scoped.collections.create({ name: "docs", dimension: 2 });
  await scoped.vectors.add({ pk: "p", vector: [1, 0] }, { collection: "docs" });
  assert.equal((await scoped.vectors.search({ vector: [1, 0], k: 1, collection: "docs" }))[0].pk, "p");
  assert.equal((await scoped.collections.list()).length, 1);
  await assert.rejects(() => client.vectors.get("p", { collection: "docs" }), NotFound);
});

test("databases: create, list, delete", async () => {
  const name = uniq("d").toLowerCase();
  const info = await client.databases.create(name, { retention_ms: 3600000 });
  assert.deepEqual(info, { name, retention_ms: 3600000, retention_rules: [], downsampling: [], max_series: 1000000, max_new_series_per_hour: 0, has_policy: false });
  assert.ok((await client.databases.list()).some((d) => d.name === name));
  const rules = [{ after_ms: 7 * 86400000, resolution_ms: 60000 }, { after_ms: 30 * 86400000, resolution_ms: 3600000 }];
  const rolled = await client.databases.create(uniq("d").toLowerCase(), { downsampling: rules });
  assert.deepEqual(rolled.downsampling, rules);
  await assert.rejects(
    () => client.databases.create(uniq("d").toLowerCase(), { downsampling: [{ after_ms: 0, resolution_ms: 1000 }] }),
    (e) => e.status === 400 && e.field === "downsampling[0].after_ms",
  );
  await assert.rejects(() => client.databases.create(name), Conflict);
  await assert.rejects(() => client.databases.create("Bad Name"), (e) => e.status === 400);
  assert.equal(await client.databases.delete(name), true);
  assert.ok(!(await client.databases.list()).some((d) => d.name === name));
});

test("replication: stats, replicas, compression", async () => {
  const st = await client.replication.getReplicationStats();
  assert.equal(st.role, "primary");
  assert.ok(Array.isArray(st.replicas));
  const cfg = await client.replication.configureCompression("zstd", 5);
  assert.equal(cfg.compression_type ?? "zstd", "zstd");
  const rep = await client.replication.addReplica("r1", "http://127.0.0.1:9");
  assert.equal(rep.replica_id, "r1");
  assert.ok((await client.replication.listReplicas()).some((r) => r.replica_id === "r1"));
  assert.equal(await client.replication.removeReplica("r1"), true);
  assert.equal((await client.replication.listReplicas()).length, 0);
});

test("server info: health, ready, version, metrics, openapi", async () => {
  assert.equal((await client.health()).status, "ok");
  assert.equal((await client.ready()).status, "ready");
  assert.equal((await client.version()).name, "sluice");
  assert.match(await client.metrics(), /# (HELP|TYPE)/);
  assert.ok((await client.openapi()).paths["/ts/put"]);
});

test("changes: async iterator over SSE, resumes by LSN", async () => {
  const db = uniq("feed").toLowerCase();
  await client.databases.create(db);
  const c = client.withDatabase(db);
  const metric = uniq("cf");
  for (let i = 0; i < 5; i++) await c.timeseries.put({ metric, entity: "e", value: i, timestamp_ms: i });
  const seen = [];
  for await (const ev of c.changes({ fromLsn: 0 })) {
    seen.push(ev);
    if (seen.length === 3) break;
  }
  assert.deepEqual(seen.map((e) => e.event), ["points", "points", "points"]);
  assert.deepEqual(seen.map((e) => e.data.points[0].value), [0, 1, 2]);
  const rest = [];
  for await (const ev of c.changes({ fromLsn: seen[2].lsn, idleTimeoutMs: 500 })) rest.push(ev);
  assert.deepEqual(rest.map((e) => e.data.points[0].value), [3, 4]);
  // live events arrive while iterating
  const ac = new AbortController();
  const got = [];
  const reader = (async () => {
    for await (const ev of client.changes({ database: db, fromLsn: rest[1].lsn, signal: ac.signal })) {
      got.push(ev);
      if (got.length === 2) ac.abort();
    }
  })();
  await new Promise((r) => setTimeout(r, 200));
  await c.collections.create({ name: "live", dimension: 2 });
  await c.vectors.add({ pk: "k", vector: [1, 0] }, { collection: "live" });
  await reader;
  assert.deepEqual(got.map((e) => e.event), ["collection", "vectors"]);
  assert.equal(got[1].data.ops[0].pk, "k");
  await assert.rejects(async () => {
    for await (const _ of client.changes({ database: "no-such-db", fromLsn: 0 })) {
    }
  }, NotFound);
});
