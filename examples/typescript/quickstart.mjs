import { Client } from "@sluice/client";
const client = new Client(process.env.SLUICE_URL ?? "http://127.0.0.1:8080", { token: process.env.SLUICE_TOKEN });
await client.timeseries.putBuffered({ metric: "cpu_usage", entity: "server01", timestamp_ms: Date.now(), value: 75.5 });
console.log(await client.timeseries.getBufferStats());
