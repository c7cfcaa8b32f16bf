// The binary wire protocol over the WebSocket /v1/ws (database default): buffered writes and
// stats without JSON, and a batch writer that pipelines its batches.
import { Client } from "@sluice/client";
const client = new Client(process.env.SLUICE_URL ?? "http://127.0.0.1:8080", { token: process.env.SLUICE_TOKEN, transport: "wire" });
await client.timeseries.putBuffered({ metric: "cpu_usage", entity: "server01", timestamp_ms: Date.now(), value: 75.5 });
console.log(await client.timeseries.getBufferStats());
const w = client.timeseries.batchWriter({ maxPoints: 5000 }); // transport: the client's ("wire")
for (let i = 0; i < 100_000; i++) await w.put({ metric: "cpu_usage", entity: `host${i % 100}`, value: Math.round(Math.random() * 10000) / 100 });
await w.close();
console.log(`${w.pointsWritten} points in ${w.batchesWritten} batches`);
await client.close();
