#!/usr/bin/env node
// Points/s of the batch writer over HTTP, then over the wire protocol (WebSocket /v1/ws).
//
// Usage: node bench/batch_writer.mjs --url http://127.0.0.1:8080 [--token T] [--seconds 5]
//          [--reference <points/s of the Rust wire client>]
// Build first (npm ci && npx tsc). target/release/sdk_bench runs it with --reference.
//
// The data (as bench/src/bin/sdk_bench.rs has it): 1000 series (metric cpu_usage, entity
// host{s}, no tags), values random walks with two decimals, point i of each series at
// 1_700_000_000_000 + i * 10_000 ms, interleaved by time; one writer, 5000-point batches,
// ack buffer. Each transport puts points for --seconds, then close(); the rate is the points
// the server acknowledged over the time including close().
import { Client, QueueFull } from "../dist/index.js";

function args() {
  const out = { url: "http://127.0.0.1:8080", token: undefined, seconds: 5, reference: undefined };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i].split("=", 2);
    const v = inline ?? argv[++i];
    if (k === "--url") out.url = v;
    else if (k === "--token") out.token = v;
    else if (k === "--seconds") out.seconds = Number(v);
    else if (k === "--reference") out.reference = Number(v);
    else {
      console.error(`unknown argument ${argv[i]}\nusage: node bench/batch_writer.mjs --url URL [--token T] [--seconds 5] [--reference N]`);
      process.exit(2);
    }
  }
  if (!(out.seconds > 0)) throw new Error("--seconds must be > 0");
  return out;
}

const SERIES = 1000;
const T0 = 1_700_000_000_000;
const entities = Array.from({ length: SERIES }, (_, s) => `host${s}`);

/** Puts the dataset for `seconds` through a writer of `transport`; returns acknowledged points/s. */
async function run(client, transport, seconds) {
  const w = client.timeseries.batchWriter({ transport, maxPoints: 5000, ack: "buffer" });
  const values = Array.from({ length: SERIES }, () => 10 + Math.random() * 80);
  const started = performance.now();
  const deadline = started + seconds * 1000;
  for (let i = 0; performance.now() < deadline; i++) {
    const timestamp_ms = T0 + i * 10_000;
    for (let s = 0; s < SERIES; s++) {
      const value = Math.round((values[s] + (Math.random() * 2 - 1)) * 100) / 100;
      values[s] = value;
      const p = { metric: "cpu_usage", entity: entities[s], timestamp_ms, value };
      // put() resolves at once unless the queue is full: wait only then
      try {
        w.putNowait(p);
      } catch (e) {
        if (!(e instanceof QueueFull)) throw e;
        await w.put(p);
      }
    }
  }
  await w.close();
  const elapsed = (performance.now() - started) / 1000;
  return { rate: w.pointsWritten / elapsed, w, elapsed };
}

const a = args();
const client = new Client(a.url, { token: a.token });
try {
  for (const transport of ["http", "wire"]) {
    const { rate, w, elapsed } = await run(client, transport, a.seconds);
    let line = `typescript ${transport} batch writer: ${Math.round(rate)} points/s`;
    if (transport === "wire" && a.reference) line += `  = ${(rate / a.reference).toFixed(2)}x of the Rust wire client (target >= 0.25)`;
    console.log(line);
    console.error(`  (${w.pointsWritten} points, ${w.batchesWritten} batches, ${w.refusals} refusals, ${elapsed.toFixed(2)} s)`);
  }
} finally {
  await client.close();
}
