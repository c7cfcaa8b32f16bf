#!/usr/bin/env node
// Points/s of the batch writer over HTTP.
// Usage: node bench/batch_writer.mjs http://127.0.0.1:8080 [points=500000] [maxPoints=5000] [series=100]
// Token from $SLUICE_TOKEN. Build first (npm run build).
import { Client } from "../dist/index.js";

const [url = "http://127.0.0.1:8080", nArg = "500000", bArg = "5000", sArg = "100"] = process.argv.slice(2);
const N = Number(nArg), maxPoints = Number(bArg), series = Number(sArg);
const client = new Client(url, { token: process.env.SLUICE_TOKEN });
const metric = `bench_${Date.now()}`;
const w = client.timeseries.batchWriter({ maxPoints, ack: "buffer" });
const t0 = performance.now();
const base = Date.now() - N;
for (let i = 0; i < N; i++) {
  const p = { metric, entity: `e${i % series}`, value: i, timestamp_ms: base + Math.floor(i / series) };
  // put() resolves at once unless the queue is full: skip the await when there is room
  if (w.pending < w.maxQueuePoints) w.putNowait(p);
  else await w.put(p);
}
await w.close();
const s = (performance.now() - t0) / 1000;
console.log(`${N} points in ${s.toFixed(2)} s: ${Math.round(N / s)} points/s ` +
  `(batches ${w.batchesWritten}, maxPoints ${maxPoints}, refusals ${w.refusals}, series ${series})`);
