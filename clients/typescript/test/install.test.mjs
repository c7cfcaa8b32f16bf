// "Done when": the package installs from this folder into an empty project (a packed copy,
// offline: it has no runtime dependencies) and the seed's five lines run against a server
// started on default settings.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync, lstatSync, existsSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { startServer } from "./helpers.mjs";

const PKG = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const EXAMPLES = resolve(PKG, "../../examples/typescript");

const SEED = `import { Client } from "@sluice/client";
const client = new Client(process.argv[2]);
await client.timeseries.putBuffered({ metric: "cpu_usage", entity: "server01", timestamp_ms: 1702645200000, value: 75.5, tags: { datacenter: "eu-west-1" } });
const stats = await client.timeseries.getBufferStats();
console.log(JSON.stringify(stats));
`;

function run(cmd, args, cwd, env = process.env) {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { cwd, env, timeout: 120000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(" ")}: ${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

let srv, dir;
before(async () => {
  srv = await startServer();
  dir = mkdtempSync(join(tmpdir(), "sluice-ts-install-"));
});
after(async () => {
  await srv?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("npm install <repo>/clients/typescript into an empty folder, then the seed's five lines", async () => {
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "seed-check", private: true, type: "module" }));
  // --install-links: a packed copy (what `files` ships), not a symlink to this folder
  await run("npm", ["install", PKG, "--install-links", "--no-audit", "--no-fund", "--offline", "--loglevel=error"], dir);
  const installed = join(dir, "node_modules/@sluice/client");
  assert.ok(!lstatSync(installed).isSymbolicLink(), "installed as a copy");
  assert.ok(existsSync(join(installed, "dist/index.js")) && existsSync(join(installed, "dist/index.d.ts")), "dist/ is shipped");
  assert.ok(!existsSync(join(installed, "node_modules")), "no runtime dependencies");

  assert.equal(SEED.trim().split("\n").length, 5);
  writeFileSync(join(dir, "seed.mjs"), SEED);
  const stats = JSON.parse(await run(process.execPath, ["seed.mjs", srv.url], dir));
  assert.equal(stats.points_buffered, 1);
  assert.equal(stats.current_buffer_size, 1);
  assert.equal(typeof stats.flush_count, "number");

  // the same lines over the wire protocol (the installed copy loads node:net itself)
  writeFileSync(join(dir, "seed-wire.mjs"), SEED.replace("new Client(process.argv[2])", 'new Client(process.argv[2], { transport: "wire" })'));
  const wire = JSON.parse(await run(process.execPath, ["seed-wire.mjs", srv.url], dir));
  assert.equal(wire.points_buffered, 2);

  // examples/typescript run against the installed copy
  const env = { ...process.env, SLUICE_URL: srv.url };
  for (const name of ["quickstart.mjs", "wire.mjs"]) copyFileSync(join(EXAMPLES, name), join(dir, name));
  assert.match(await run(process.execPath, ["quickstart.mjs"], dir, env), /points_buffered: 3/);
  assert.match(await run(process.execPath, ["wire.mjs"], dir, env), /100000 points in 20 batches/);
});
