// The web console on a dev-mode server (no authentication) with data written a minute ago:
// overview, explorer (metric, tag filter, aggregation, zoom, table), vectors (get, more like
// this, filter, an error with its error_id), live (ingest rate after writes), keyboard, and
// Swagger UI at /docs/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, seed, call, launch, newPage, screenshot, unlabelledControls, text, waitAttr, waitShown,
  HOSTS, POINTS_PER_SERIES, sleep,
} from "./helpers.mjs";

let server;
let browser;
let tab; // {page, problems, clear}

before(async () => {
  server = await startServer();
  await seed(server.url);
  browser = await launch();
  tab = await newPage(browser);
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

function assertClean(what) {
  const p = tab.problems();
  assert.deepEqual(p, [], `${what}: the page reported problems:\n${p.join("\n")}`);
}

async function go(hash) {
  await tab.page.goto(`${server.url}/${hash}`, { waitUntil: "domcontentloaded" });
}

test("/ serves the console; the overview lists the databases and the server", async () => {
  const { page } = tab;
  await go("");
  await page.waitForSelector("#databases tbody tr");
  const names = await page.$$eval("#databases tbody tr td:first-child", (tds) => tds.map((td) => td.textContent.trim()));
  assert.deepEqual(names.sort(), ["default", "iot"]);
  await page.waitForSelector("#server-info");
  const info = await text(page, "#server-info");
  assert.match(info, /primary/);
  assert.match(info, /sluice 0\./);
  assert.match(await text(page, "#auth-state"), /Open server/);
  // The selected database's collections.
  await page.waitForSelector("table.collections");
  assert.match(await text(page, "table.collections"), /articles/);
  // The shared database selector lists both.
  const options = await page.$$eval("#db-select option", (os) => os.map((o) => o.value));
  assert.deepEqual(options.sort(), ["default", "iot"]);
  assert.deepEqual(await unlabelledControls(page), []);
  await screenshot(page, "overview");
  assertClean("overview");
});

test("/ui/ serves the same console", async () => {
  const { page } = tab;
  await page.goto(`${server.url}/ui/#/overview`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#databases tbody tr");
  assertClean("/ui/");
});

test("explorer: a metric written a minute ago, its series and points, table, zoom", async () => {
  const { page } = tab;
  await go("#/explore");
  // The first metric is chosen and charted without any input.
  await page.waitForSelector("#chart canvas");
  const first = await page.$eval("#metric", (s) => s.value);
  assert.equal(first, "cpu_usage");
  const metrics = await page.$$eval("#metric option", (os) => os.map((o) => o.value));
  assert.deepEqual(metrics, ["cpu_usage", "disk_io_ops", "mem_used_bytes"]);
  await waitAttr(page, "#chart", "data-series", (v) => v === String(HOSTS.length * 2));
  assert.equal(await page.$eval("#chart", (el) => el.dataset.points), String(HOSTS.length * 2 * POINTS_PER_SERIES));
  assert.equal(await page.$$eval("#chart .legend li", (lis) => lis.length), HOSTS.length * 2);
  assert.deepEqual(await unlabelledControls(page), []);
  await screenshot(page, "explorer");

  // Another metric.
  await page.select("#metric", "mem_used_bytes");
  await waitAttr(page, "#chart", "data-series", (v) => v === String(HOSTS.length));
  assert.equal(await page.$eval("#chart", (el) => el.dataset.points), String(HOSTS.length * POINTS_PER_SERIES));
  // The entity picker offers the metric's entities.
  const ents = await page.$$eval("#entity option", (os) => os.map((o) => o.value).filter(Boolean));
  assert.deepEqual(ents, ["db1", "web1", "web2"]);
  await page.select("#entity", "web2");
  await waitAttr(page, "#chart", "data-series", (v) => v === "1");
  assert.equal(await page.$eval("#chart", (el) => el.dataset.points), String(POINTS_PER_SERIES));
  await page.select("#entity", "");
  await waitAttr(page, "#chart", "data-series", (v) => v === String(HOSTS.length));

  // The table view counts the same points.
  await page.select("#metric", "cpu_usage");
  await waitAttr(page, "#chart", "data-series", (v) => v === "6");
  await page.click("#table-toggle");
  await page.waitForSelector("#ts-table table.points caption");
  assert.match(await text(page, "#ts-table caption"), new RegExp(`^${6 * POINTS_PER_SERIES} points in 6 series`));
  assert.equal(await page.$$eval("#ts-table tbody tr", (rows) => rows.length), 6 * POINTS_PER_SERIES);

  // A tag filter from the pickers: region = eu (web1 and web2, two cores each).
  await page.click("#add-filter");
  await page.waitForSelector("#filters li.filter .f-key option[value=region]");
  await page.select("#filters li.filter .f-key", "region");
  await page.waitForSelector("#filters li.filter[data-values]");
  const values = await page.$$eval("#filters li.filter datalist option", (os) => os.map((o) => o.value));
  assert.deepEqual(values, ["eu", "us"]);
  await page.type("#filters li.filter .f-value", "eu");
  await page.keyboard.press("Enter");
  await waitAttr(page, "#chart", "data-series", (v) => v === "4");
  assert.equal(await page.$eval("#chart", (el) => el.dataset.points), String(4 * POINTS_PER_SERIES));
  assert.equal(await page.$$eval("#ts-table tbody tr", (rows) => rows.length), 4 * POINTS_PER_SERIES);

  // An aggregation: max per 30 s, grouped by region -> one series; the same query through the
  // API answers the same number of points.
  await page.select("#agg", "max");
  await page.select("#step", "30000");
  await page.click("#group-by input[value=region]");
  await waitAttr(page, "#chart", "data-series", (v) => v === "1");
  const q = JSON.parse(await page.$eval("#chart", (el) => el.dataset.query));
  assert.equal(q.aggregation, "max");
  assert.equal(q.step_ms, 30000);
  assert.deepEqual(q.group_by, ["region"]);
  assert.deepEqual(q.matchers, [{ tag: "region", op: "=", value: "eu" }]);
  const direct = await call(server.url, "/v1/databases/default/ts/query", { method: "POST", body: q });
  assert.equal(direct.series.length, 1);
  assert.equal(direct.series[0].tags.region, "eu");
  const directPoints = direct.series[0].points.length;
  assert.ok(directPoints >= 2 && directPoints <= 4, `buckets: ${directPoints}`);
  assert.equal(await page.$eval("#chart", (el) => el.dataset.points), String(directPoints));
  const maxShown = await page.$$eval("#ts-table tbody tr td.num", (tds) => Math.max(...tds.map((td) => Number(td.textContent))));
  assert.equal(maxShown, Math.max(...direct.series[0].points.map((p) => p[1])));

  // Back to raw points of all series; then drag to zoom and double-click to reset.
  await page.select("#agg", "");
  await page.click("#filters li.filter .f-remove");
  await waitAttr(page, "#chart", "data-series", (v) => v === "6");
  const over = await page.waitForSelector("#chart .u-over");
  const box = await over.boundingBox();
  const y = box.y + box.height / 2;
  assert.equal(await page.$eval("#zoom-query", (b) => b.disabled), true);
  await page.mouse.move(box.x + box.width * 0.2, y);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, y, { steps: 5 });
  await page.mouse.move(box.x + box.width * 0.6, y, { steps: 5 });
  await page.mouse.up();
  await page.waitForSelector("#zoom-query:not([disabled])");
  await page.mouse.click(box.x + box.width / 2, y, { count: 2 });
  await page.waitForSelector("#zoom-query[disabled]");
  // The keyboard's way: Zoom in, then Reset zoom.
  await page.click("#zoom-in");
  await page.waitForSelector("#zoom-query:not([disabled])");
  await page.click("#zoom-reset");
  await page.waitForSelector("#zoom-query[disabled]");

  // The database selector is shared: iot has its own metric.
  await page.select("#db-select", "iot");
  await page.waitForFunction(() => location.hash.includes("db=iot"));
  await waitAttr(page, "#chart", "data-points", (v) => v === String(POINTS_PER_SERIES));
  assert.equal(await page.$eval("#metric", (s) => s.value), "temperature_c");
  await page.select("#db-select", "default");
  await page.waitForFunction(() => location.hash.includes("db=default"));
  assertClean("explorer");
});

test("vectors: collections, get by pk, more like this, a filter, and an error with its error_id", async () => {
  const { page } = tab;
  await go("#/vectors?db=default");
  await waitShown(page, "#collection option[value=articles]");
  assert.match(await text(page, "table.collections"), /articles\s*8\s*cosine\s*f32\s*30/);
  // Opening a collection shows a sample of what it holds.
  await waitAttr(page, "#results", "data-kind", (v) => v === "sample");
  assert.equal(await page.$eval("#results", (el) => el.dataset.count), "10");

  await page.type("#pk", "doc-7");
  await page.click("#get");
  await page.waitForSelector(".entity-pk");
  assert.equal(await text(page, ".entity-pk"), "doc-7");
  const meta = JSON.parse(await text(page, ".entity-metadata"));
  assert.deepEqual(meta, { topic: "ml", year: 2020, title: "Article 7" });
  assert.match(await text(page, "#entity"), /Vector \(8\)/);

  await page.click("#k", { clickCount: 3 });
  await page.type("#k", "5");
  await page.click("#more-like-this");
  await waitAttr(page, "#results", "data-kind", (v) => v === "more-like-this:doc-7");
  assert.equal(await page.$eval("#results", (el) => el.dataset.count), "5");
  const pks = await page.$$eval("#results .result-pk", (bs) => bs.map((b) => b.dataset.pk));
  assert.equal(pks.length, 5);
  assert.equal(pks[0], "doc-7");
  assert.equal(new Set(pks).size, 5);
  await screenshot(page, "vectors");

  // A filter: only topic "ops".
  await page.type("#filter", '{"topic": "ops"}');
  await page.click("#search");
  await page.waitForFunction(() => document.querySelector("#results")?.dataset.kind === "search");
  const metas = await page.$$eval("#results code.meta", (cs) => cs.map((c) => JSON.parse(c.textContent)));
  assert.equal(metas.length, 5);
  for (const m of metas) assert.equal(m.topic, "ops");

  // A result's pk opens that entity.
  const other = await page.$eval("#results .result-pk", (b) => b.dataset.pk);
  await page.click("#results .result-pk");
  await page.waitForFunction((pk) => document.querySelector(".entity-pk")?.textContent === pk, {}, other);

  // An error answer is shown with its code and error_id.
  tab.clear();
  await page.click("#pk", { clickCount: 3 });
  await page.type("#pk", "no-such-pk");
  await page.keyboard.press("Enter");
  const alert = await page.waitForSelector('#alerts .alert[role=alert][data-code="entity_not_found"]');
  const errorId = await alert.$eval(".err-id", (c) => c.textContent);
  assert.match(errorId, /^[0-9a-z]{10,}$/i);
  assert.match(await alert.evaluate((el) => el.textContent), /no entity with pk/);
  // The browser logs the 404 itself; nothing else went wrong.
  assert.deepEqual(tab.problems().filter((p) => !/404/.test(p)), []);
  await alert.$eval("button.dismiss", (b) => b.click());
  await page.waitForSelector("#alerts .alert", { hidden: true });
  tab.clear();

  // A filter that is not JSON is refused in the page, with the field named.
  await page.$eval("#filter", (t) => (t.value = "{topic: ops"));
  await page.click("#search");
  await page.waitForSelector('#alerts .alert[data-code="invalid_input"]');
  assert.deepEqual(await unlabelledControls(page), []);
  assertClean("vectors");
});

test("live: an ingest rate above zero after writes", async () => {
  const { page } = tab;
  await go("#/live?db=default");
  await waitAttr(page, "#main", "data-samples", (v) => Number(v) >= 1);
  // Write for a few seconds (bounded), then the rate from the counter's deltas is > 0.
  const deadline = Date.now() + 20000;
  let rate = 0;
  let i = 0;
  while (Date.now() < deadline) {
    const t = Date.now();
    const points = Array.from({ length: 200 }, (_, j) => ({ metric: "live_test", entity: `e${j % 4}`, timestamp_ms: t - j, value: j + i }));
    await call(server.url, "/v1/databases/default/ts/put/batch?ack=buffer", { method: "POST", body: { points } });
    i += 1;
    rate = Number(await page.$eval("#live-ingest .val", (el) => el.dataset.value || "0"));
    const samples = Number(await page.$eval("#main", (el) => el.dataset.samples || "0"));
    if (rate > 0 && samples >= 4) break;
    await sleep(250); // pace the writer (the page polls every 2 s by itself)
  }
  assert.ok(rate > 0, `ingest rate ${rate}`);
  assert.match(await text(page, "#live-ingest .val"), /^[\d,.]+$/);
  const http = Number(await page.$eval("#live-http .val", (el) => el.dataset.value || "0"));
  assert.ok(http > 0, `http rate ${http}`);
  assert.match(await text(page, "#live-fsync"), /p99|fsync/);
  assert.match(await text(page, "#live-repl-lag"), /no replicas/);
  assert.match(await text(page, "table.per-db"), /default/);
  await screenshot(page, "live");
  await page.click("main .toolbar button[aria-pressed]");
  await page.waitForSelector("main .toolbar button[aria-pressed=true]");
  assertClean("live");
});

test("keyboard: Tab reaches the views and Enter opens them", async () => {
  const { page } = tab;
  await go("#/overview");
  await page.waitForSelector("#databases");
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  let reached = false;
  for (let i = 0; i < 20 && !reached; i++) {
    await page.keyboard.press("Tab");
    reached = await page.evaluate(() => document.activeElement?.dataset?.view === "explore");
  }
  assert.ok(reached, "Tab did not reach the Explorer link");
  // The focused element shows a focus ring.
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, "none");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#chart canvas");
  assert.equal(await page.evaluate(() => document.querySelector("nav a[aria-current=page]").dataset.view), "explore");
  assertClean("keyboard");
});

test("/docs/ loads Swagger UI with the API's operations", async () => {
  const { page } = tab;
  await page.goto(`${server.url}/docs/`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector(".opblock");
  const paths = await page.$$eval(".opblock-summary-path", (els) => els.map((e) => e.textContent.trim().replace(/\u200b/g, "")));
  assert.ok(paths.length > 50, `${paths.length} operations`);
  assert.ok(paths.includes("/v1/databases/{db}/ts/query"), paths.slice(0, 10).join(", "));
  assertClean("/docs/");
});
