// The console on a server with a bearer token: the sign-in dialog appears on the first 401,
// Escape closes it, a wrong token shows the error with its error_id, the right one loads the
// overview; the token stays out of every URL and lives in sessionStorage. And /docs' "Try it
// out" with the token.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, seed, launch, newPage, screenshot, unlabelledControls, text, TOKEN } from "./helpers.mjs";

let server;
let browser;
let tab;

// The browser logs every 401 answer itself ("Failed to load resource: … 401"): expected here.
const ALLOW_401 = [/status of 401/, /^http 401: /];

before(async () => {
  server = await startServer({ token: TOKEN });
  await seed(server.url, TOKEN);
  browser = await launch();
  tab = await newPage(browser);
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

test("the sign-in dialog: shown on 401, Escape closes it, a wrong token shows error_id, the right one signs in", async () => {
  const { page } = tab;
  await page.goto(`${server.url}/`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector("dialog#sign-in[open]");
  // Why it opened: the server's 401, with its error_id.
  await page.waitForSelector("#sign-in-reason .err-id");
  assert.match(await text(page, "#sign-in-reason"), /401 unauthenticated/);
  assert.equal(await page.evaluate(() => document.activeElement.id), "token");
  assert.deepEqual(await unlabelledControls(page), []);

  // Escape closes it; the header's button opens it again.
  await page.keyboard.press("Escape");
  await page.waitForSelector("dialog#sign-in:not([open])");
  assert.match(await text(page, "#auth-state"), /Not signed in/);
  await page.click("#sign-in-btn");
  await page.waitForSelector("dialog#sign-in[open]");

  // A wrong token: the server's error, code and error_id, in the dialog.
  await page.type("#token", "wrong-token-0123456789-abcdef");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#sign-in-error .alert .err-id");
  assert.equal(await text(page, "#sign-in-error .err-code"), "unauthenticated");
  assert.match(await text(page, "#sign-in-error .err-id"), /^[0-9a-z]{10,}$/i);
  assert.equal(await page.$eval("dialog#sign-in", (d) => d.open), true);
  await screenshot(page, "sign-in");

  // The right token.
  await page.click("#token", { clickCount: 3 });
  await page.type("#token", TOKEN);
  await page.keyboard.press("Enter");
  await page.waitForSelector("dialog#sign-in:not([open])");
  await page.waitForSelector("#databases tbody tr");
  const names = await page.$$eval("#databases tbody tr td:first-child", (tds) => tds.map((td) => td.textContent.trim()));
  assert.deepEqual(names.sort(), ["default", "iot"]);
  assert.match(await text(page, "#auth-state"), /Signed in/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("sluice.token")), TOKEN);
  assert.equal(await page.evaluate(() => localStorage.length), 0);

  // A reload keeps the tab signed in; the explorer reads with the token.
  await page.goto(`${server.url}/#/explore`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#chart canvas");
  assert.equal(await page.$eval("dialog#sign-in", (d) => d.open), false);
  assert.equal(await page.$eval("#chart", (el) => el.dataset.series), "6");

  // Sign out forgets the token; the next call asks again.
  await page.click("#sign-in-btn");
  await page.waitForFunction(() => sessionStorage.getItem("sluice.token") === null);
  await page.waitForSelector("dialog#sign-in[open]");
  await page.keyboard.press("Escape");

  // The token never appeared in a URL.
  for (const u of tab.urls) assert.ok(!u.includes(TOKEN), `token in ${u}`);
  const problems = tab.problems({ allow: ALLOW_401 });
  assert.deepEqual(problems, [], problems.join("\n"));
});

test("/docs/: Authorize with the token, then Try it out answers 200", async () => {
  const { page } = tab;
  tab.clear();
  await page.goto(`${server.url}/docs/`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector(".opblock");
  await page.click(".btn.authorize");
  const input = await page.waitForSelector(".auth-container input");
  await input.type(TOKEN);
  await page.click(".auth-btn-wrapper .btn.modal-btn.auth.authorize");
  await page.waitForSelector(".auth-btn-wrapper .btn-done");
  await page.click(".auth-btn-wrapper .btn-done");
  // GET /v1/databases: open it, (Try it out is on), Execute.
  const op = await page.waitForSelector("xpath/.//div[contains(@class,'opblock-get')][.//*[contains(@class,'opblock-summary-path') and @data-path='/v1/databases']]");
  await (await op.$(".opblock-summary")).click();
  const tryOut = await op.$(".try-out__btn");
  if (tryOut && /try it out/i.test(await tryOut.evaluate((b) => b.textContent))) await tryOut.click();
  await (await op.waitForSelector(".execute")).click();
  const status = await op.waitForSelector(".live-responses-table tr.response .response-col_status");
  assert.equal((await status.evaluate((el) => el.textContent)).trim(), "200");
  assert.match(await op.$eval(".live-responses-table tr.response .response-col_description pre, .live-responses-table tr.response .microlight", (el) => el.textContent), /"iot"/);
  const problems = tab.problems({ allow: ALLOW_401 });
  assert.deepEqual(problems, [], problems.join("\n"));
});
