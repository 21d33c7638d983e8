// Drives Debian's chromium (headless) against sollold's /dashboard for
// tests/e2e/test_dashboard.py. Protocol on stdout, one JSON object a line:
//   {"event":"nodes", ...}     the page listed the nodes (names and states)
//   {"event":"down", ...}      the node named on stdin shows as down
//   {"event":"done", ...}      console errors, screenshot path
// The Python side writes the name of the node it killed on stdin, then
// waits for "down". Usage: node dashboard.mjs URL SCREENSHOT USER_DATA_DIR
import { chromium } from "playwright-core";
import readline from "node:readline";

const [url, shot, userDataDir] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1440, height: 1000 },
});
const errors = [];
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });
  page.on("pageerror", (e) => errors.push("pageerror: " + e.message));
  page.on("requestfailed", (r) => errors.push("requestfailed: " + r.url()));
  const t0 = Date.now();
  const resp = await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector(".node[data-node]", { timeout: 15000 });
  const nodes = await page.$$eval(".node[data-node]", (els) =>
    els.map((e) => ({ name: e.getAttribute("data-node"), state: e.getAttribute("data-state"),
      text: e.textContent })));
  const title = await page.title();
  const kpis = await page.$$eval(".kpi", (els) => els.map((e) => e.textContent));
  const rpc = await page.$eval("#rpc", (e) => e.textContent);
  say({ event: "nodes", status: resp.status(), title, nodes, kpis, rpc, ms: Date.now() - t0 });

  const victim = (await nextLine()).trim();
  const t1 = Date.now();
  await page.waitForFunction(
    (name) => [...document.querySelectorAll(".node[data-node]")].some(
      (e) => e.getAttribute("data-node") === name && e.getAttribute("data-state") === "down"),
    victim, { timeout: 20000, polling: 100 });
  say({ event: "down", node: victim, ms: Date.now() - t1 });

  // Let a poll or two render charts with the traffic, then keep a picture.
  const more = (await nextLine()).trim();
  if (more === "shot") {
    await page.waitForTimeout(1500);
    await page.screenshot({ path: shot, fullPage: true });
  }
  const decisions = await page.$$eval("#decisions tr", (els) => els.map((e) => e.textContent));
  say({ event: "done", errors, screenshot: shot, decisions });
} catch (e) {
  say({ event: "error", message: String(e && e.stack || e), errors });
  process.exitCode = 1;
} finally {
  await context.close();
  lines.close();
}
