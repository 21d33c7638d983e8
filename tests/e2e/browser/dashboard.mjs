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

  // The RPC panel, with what a coordinator puts under "rpc" in /api/stats
  // (injected here), including names that are HTML: they must stay text.
  const hostile = "<img src=x onerror=window.__pwned=1>";
  await page.route("**/api/stats", async (route) => {
    const resp = await route.fetch();
    const j = await resp.json();
    j.rpc = {
      enabled: true, reference_version: "3.0.0",
      backends: [
        { address: "10.0.0.5:50052", local: false, reachable: true, version: "3.0.0",
          devices: 1, free_bytes: 20e9, total_bytes: 24e9, excluded: false, in_use: true },
        { address: hostile, local: false, reachable: false, version: null, devices: 0,
          free_bytes: 0, total_bytes: 0, excluded: true,
          excluded_why: "<script>window.__pwned=1</script> unreachable", in_use: false }],
      coordinator: { state: "ready", model: "llama3.1:70b", gguf: "/m.gguf", reason: "",
        pid: 4242, port: 40001, restarts: 1, next_backoff_ms: 0, uptime_s: 3600,
        last_exit: "", last_log_lines: [] },
      local_rpc_servers: [{ port: 50052, pid: 4243, restarts: 0, cache: true }],
    };
    await route.fulfill({ response: resp, json: j });
  });
  await page.waitForFunction(
    () => document.getElementById("rpc").textContent.includes("10.0.0.5:50052"), null,
    { timeout: 10000, polling: 100 });
  const rpcText = await page.$eval("#rpc", (e) => e.textContent);
  const rpcMarkup = await page.$$eval("#rpc img, #rpc script", (els) => els.length);
  const pwned = await page.evaluate(() => window.__pwned === 1);
  await page.locator("#rpc").screenshot({ path: shot.replace(/\.png$/, "-rpc.png") });
  say({ event: "done", errors, screenshot: shot, decisions, rpcText, rpcMarkup, pwned, hostile });
} catch (e) {
  say({ event: "error", message: String(e && e.stack || e), errors });
  process.exitCode = 1;
} finally {
  await context.close();
  lines.close();
}
