"""End-to-end tests of the dashboard: GET /dashboard (the page compiled into
the daemon) and GET /api/sollol/dashboard (the live data it polls).

DashboardData checks the JSON after known traffic with plain HTTP: counts
per second equal what was sent, the routing decisions name the nodes, the
page is self-contained (no address outside the daemon) and served with a
Content-Security-Policy that forbids loading anything else.

DashboardBrowser opens the page in Debian's chromium (headless, fresh
profile) driven by playwright-core from npm (installed into the build
directory from tests/e2e/browser/package.json, versions pinned): the page
loads without console errors, lists the simulated nodes (a node name with
HTML in it shows as text), shows a killed node as down within seconds,
renders a coordinator's `rpc` status (injected into /api/stats; HTML in its
names stays text), and a screenshot is saved in the build directory (its
path is printed). It is
skipped, with the reason, only where chromium or node/npm cannot be
installed.

Run: python3 -B tests/e2e/test_dashboard.py (SOLLOL_BUILD_DIR selects the build).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"
FAST_PROBES = ["--probe-interval", "200ms", "--tags-interval", "500ms", "--probe-timeout", "500ms"]
BROWSER_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "browser")
CHROMIUM = "/usr/bin/chromium"
# A node name the config allows that is also HTML: it must show as text.
HTML_NODE = "<b>cpu</b>"


def start_daemon(test, nodes):
    args = ["--listen", "127.0.0.1:0"] + FAST_PROBES
    for name, url in nodes:
        args += ["--node", "%s=%s" % (name, url)]
    return h.start_process("sollold", args, test=test)


def chat(n, stream, text="hello"):
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": stream,
            "options": {"num_predict": n}}


class DashboardData(unittest.TestCase):
    def test_json_after_known_traffic(self):
        sims = [h.start_sim("--tokens-per-second", "0", test=self) for _ in range(2)]
        d = start_daemon(self, [("gpu-a", sims[0].url), ("gpu-b", sims[1].url)])

        empty = h.get_json(d.url + "/api/sollol/dashboard")
        self.assertEqual(empty["decisions"], [])
        self.assertEqual(sum(empty["series"]["requests"]), 0)
        self.assertEqual(empty["window_s"], 300)
        for k in ("requests", "errors", "retries", "tokens", "queue", "in_flight", "p50_ms", "p95_ms",
                  "ttft_p50_ms", "ttft_p95_ms"):
            self.assertEqual(len(empty["series"][k]), 300, k)

        eval_total = 0
        for i in range(6):
            r = h.post_json(d.url + "/api/chat", chat(2 + i, stream=i % 2 == 0, text="q%d" % i))
            self.assertEqual(r.status, 200, r.body)
            eval_total += json.loads(r.body.decode().strip().split("\n")[-1])["eval_count"]
        r = h.post_json(d.url + "/api/chat", {"model": "nope:1b", "messages": []})
        self.assertEqual(r.status, 404)

        def settled():
            j = h.get_json(d.url + "/api/sollol/dashboard")
            return j if sum(j["series"]["requests"]) >= 7 else None
        j = h.wait_until(settled, msg="7 requests recorded")
        s = j["series"]
        self.assertEqual(sum(s["requests"]), 7)
        self.assertEqual(sum(s["errors"]), 0, "a 404 is the client's error, not the cluster's")
        self.assertEqual(sum(s["retries"]), 0)
        self.assertEqual(sum(s["tokens"]), eval_total)
        self.assertEqual(j["last_minute"]["requests"], 7)
        self.assertIsNotNone(j["last_minute"]["p50_ms"])
        self.assertIsNotNone(j["last_minute"]["ttft_p50_ms"], "3 of the chats were streamed")
        self.assertTrue(any(v is not None for v in s["p95_ms"]))
        # Seconds without requests have no percentiles (null, drawn as gaps).
        self.assertIn(None, s["p50_ms"])

        dec = j["decisions"]
        self.assertEqual(j["decisions_total"], 6, "one decision per dispatched attempt")
        self.assertEqual(len(dec), 6)
        ages = [x["age_ms"] for x in dec]
        self.assertEqual(ages, sorted(ages), "newest first")
        for x in dec:
            self.assertIn(x["node"], ("gpu-a", "gpu-b"))
            self.assertEqual(x["model"], MODEL)
            self.assertEqual(x["how"], "cost")
            self.assertEqual(x["candidates"], 2)
            self.assertIn(x["runner"], ("gpu-a", "gpu-b"))
            self.assertNotEqual(x["runner"], x["node"])
            self.assertLessEqual(x["cost_s"], x["runner_cost_s"])
            self.assertIn("lowest expected time", x["reason"])

        short = h.get_json(d.url + "/api/sollol/dashboard?seconds=10")
        self.assertEqual(len(short["series"]["requests"]), 10)
        for bad in ("0", "301", "x", ""):
            r = h.request("GET", d.url + "/api/sollol/dashboard?seconds=" + bad)
            self.assertEqual(r.status, 400, bad)
            self.assertIn("error", r.json())

        # The page: self-contained, with a policy that forbids anything else.
        page = h.request("GET", d.url + "/dashboard")
        self.assertEqual(page.status, 200)
        self.assertTrue(page.headers["content-type"].startswith("text/html"))
        csp = page.headers["content-security-policy"]
        self.assertIn("default-src 'none'", csp)
        self.assertIn("connect-src 'self'", csp)
        self.assertIn("x-sollol-request-id", page.headers)
        text = page.text
        self.assertIn("<script>", text)
        self.assertNotIn("@DASHBOARD_", text, "assets were inlined at build time")
        for ext in ("http://", "https://", "src=\"//", "<link rel=\"stylesheet\""):
            self.assertFalse(ext in text, "the page refers to " + ext)
        self.assertFalse("innerHTML" in text or "insertAdjacentHTML" in text
                         or "document.write" in text, "data is rendered with textContent only")
        head = h.request("HEAD", d.url + "/dashboard")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(h.request("POST", d.url + "/dashboard", b"").status, 405)


def install_browser():
    """Returns the folder holding node_modules/playwright-core, or raises SkipTest."""
    if not os.path.exists(CHROMIUM):
        apt = shutil.which("apt-get")
        cmd = None
        if apt and os.geteuid() == 0:
            cmd = [apt]
        elif apt and shutil.which("sudo"):
            cmd = ["sudo", "-n", apt]
        if cmd:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(cmd + ["install", "-y", "-qq", "--no-install-recommends", "chromium"],
                           capture_output=True, timeout=400, env=env)
        if not os.path.exists(CHROMIUM):
            raise unittest.SkipTest("chromium is not installed and cannot be installed here "
                                    "(apt-get install chromium): browser test skipped")
    return h.npm_install(BROWSER_SRC, ("package.json", "dashboard.mjs"), "dashboard-browser",
                         "dashboard browser test (playwright-core)")


class DashboardBrowser(unittest.TestCase):
    def read_event(self, proc, deadline_s):
        """The next JSON line from the driver (bounded in time)."""
        import select
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                ev = json.loads(line)
                if ev.get("event") == "error":
                    self.fail("browser driver: %s\nerrors: %s" % (ev["message"], ev["errors"]))
                return ev
        proc.kill()
        self.fail("browser driver said nothing within %.0fs; stderr:\n%s"
                  % (deadline_s, proc.stderr.read()[-3000:]))

    def test_page_in_chromium(self):
        dest = install_browser()
        sims = [h.start_sim("--tokens-per-second", "50", test=self),
                h.start_sim("--tokens-per-second", "80",
                            models=(MODEL + ",loaded", "qwen2.5:7b"), test=self),
                h.start_sim("--tokens-per-second", "20", test=self, check_exit=False)]
        names = ["gpu-a", "gpu-b", HTML_NODE]
        d = start_daemon(self, list(zip(names, [s.url for s in sims])))
        for i in range(8):
            r = h.post_json(d.url + "/api/chat", chat(3 + i % 4, stream=i % 2 == 0,
                                                       text="conv%d" % i))
            self.assertEqual(r.status, 200, r.body)

        shot = os.path.join(h.build_dir(), "dashboard-screenshot.png")
        if os.path.exists(shot):
            os.unlink(shot)
        profile = tempfile.mkdtemp(prefix="sollol-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        proc = subprocess.Popen(["node", "dashboard.mjs", d.url + "/dashboard", shot, profile],
                                cwd=dest, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

        def finish():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()
        self.addCleanup(finish)

        ev = self.read_event(proc, 90)
        self.assertEqual(ev["event"], "nodes", ev)
        self.assertEqual(ev["status"], 200)
        self.assertEqual(ev["title"], "sollol dashboard")
        listed = {n["name"]: n for n in ev["nodes"]}
        self.assertEqual(set(listed), set(names), ev["nodes"])
        for n in names:
            self.assertEqual(listed[n]["state"], "up", listed[n])
        # The HTML in the name is text on the page, not markup.
        self.assertIn(HTML_NODE, listed[HTML_NODE]["text"])
        self.assertIn(MODEL, listed["gpu-b"]["text"])
        self.assertIn("qwen2.5:7b", listed["gpu-b"]["text"])
        self.assertIn("no sharded models configured", ev["rpc"])
        self.assertTrue(any("Nodes up3/3" in k for k in ev["kpis"]), ev["kpis"])

        # A node going down shows within a few seconds (probes every 200 ms,
        # the page polls every second).
        sims[2].stop()
        t0 = time.monotonic()
        proc.stdin.write(HTML_NODE + "\n")
        proc.stdin.flush()
        ev = self.read_event(proc, 40)
        self.assertEqual(ev["event"], "down", ev)
        print("\nnode shown down %.1fs after it was killed" % (time.monotonic() - t0),
              file=sys.stderr)
        self.assertLess(time.monotonic() - t0, 20)

        for i in range(4):  # traffic after the failure, for the picture
            h.post_json(d.url + "/api/chat", chat(3, stream=True, text="after%d" % i))
        proc.stdin.write("shot\n")
        proc.stdin.flush()
        ev = self.read_event(proc, 40)
        self.assertEqual(ev["event"], "done", ev)
        self.assertEqual(ev["errors"], [], "the page logged errors")
        self.assertTrue(any("gpu-" in row for row in ev["decisions"]), ev["decisions"])
        # The RPC panel renders a coordinator's status; HTML in it stays text.
        for text in ("coordinator", "ready", "llama3.1:70b", "10.0.0.5:50052", "in use",
                     ev["hostile"], "excluded", "<script>window.__pwned=1</script> unreachable"):
            self.assertIn(text, ev["rpcText"])
        self.assertEqual(ev["rpcMarkup"], 0, "a name became markup")
        self.assertFalse(ev["pwned"])
        self.assertTrue(os.path.getsize(shot) > 20000, "screenshot too small")
        print("dashboard screenshot: %s" % shot, file=sys.stderr)
        proc.wait(timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr.read()[-2000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
