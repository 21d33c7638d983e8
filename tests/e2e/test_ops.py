"""End-to-end tests of operating sollold (issue "operations"): readiness,
watchdog and status messages on a NOTIFY_SOCKET, SIGHUP reloads (nodes join,
leave while their streams finish, an invalid file changes nothing), graceful
SIGTERM (running streams finish, new work is refused with 503, exit 0, a
grace period that cuts what is left), and discovery of simulators on
127.0.0.x (a server that is not Ollama is ignored).

Run: python3 -B tests/e2e/test_ops.py (SOLLOL_BUILD_DIR selects the build).
Timing assertions are loose: CI is a busy 2-core machine.
"""

import http.server
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"
FAST_PROBES = {"probe_interval_ms": 200, "tags_interval_ms": 500, "probe_timeout_ms": 500}


def chat(n, content="hello"):
    return {"model": MODEL, "messages": [{"role": "user", "content": content}],
            "options": {"num_predict": n}}


def write_config(path, nodes, **extra):
    """nodes: [(name, url, max_concurrent)]"""
    cfg = {"listen": "127.0.0.1:0",
           "nodes": [{"name": n, "url": u, "max_concurrent": mc} for n, u, mc in nodes],
           "health": dict(FAST_PROBES)}
    for k, v in extra.items():
        cfg[k] = v
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cfg, f)
    os.replace(tmp, path)  # a reload never sees half a file


def node_names(d):
    return sorted(n["name"] for n in h.get_json(d.url + "/api/stats")["nodes"])


def up_names(d):
    return sorted(n["name"] for n in h.get_json(d.url + "/api/stats")["nodes"]
                  if n["state"] == "up")


class NotifySocket:
    """A service manager's end of the sd_notify protocol."""

    def __init__(self, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "sollol-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.path = "@" + name
        else:
            self.dir = tempfile.TemporaryDirectory(prefix="sollol-notify-")
            self.path = os.path.join(self.dir.name, "notify")
            self.sock.bind(self.path)
        self.messages = []  # (time, dict of assignments)

    def recv_until(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in self.messages:
                if pred(m):
                    return t, m
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append((time.monotonic(), fields))
        for t, m in self.messages:
            if pred(m):
                return t, m
        raise AssertionError("no such notify message within %.1fs; got %r"
                             % (timeout, [m for _, m in self.messages]))

    def pump(self, seconds):
        """Receives whatever arrives during `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def count(self, key, value="1"):
        return sum(1 for _, m in self.messages if m.get(key) == value)

    def close(self):
        self.sock.close()
        if hasattr(self, "dir"):
            self.dir.cleanup()


class NotifyTest(unittest.TestCase):
    def run_with(self, abstract):
        sim = h.start_sim("--name", "a", test=self)
        ns = NotifySocket(abstract=abstract)
        self.addCleanup(ns.close)
        d = h.start_process("sollold", ["--listen", "127.0.0.1:0", "--node", "a=" + sim.url,
                                        "--probe-interval", "200ms"],
                            env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "400000"}, test=self)
        t_ready, ready = ns.recv_until(lambda m: m.get("READY") == "1")
        # READY comes once the listener answers: right now it does.
        self.assertEqual(h.request("GET", d.url + "/api/version").status, 200)
        self.assertEqual(ready.get("MAINPID"), str(d.popen.pid))
        _, st = ns.recv_until(lambda m: "STATUS" in m)
        self.assertIn("1 of 1 node(s) up", st["STATUS"])
        # Watchdog keep-alives every ~200 ms (half of WATCHDOG_USEC).
        n0 = ns.count("WATCHDOG")
        h.wait_until(lambda: ns.pump(0.2) or ns.count("WATCHDOG") >= n0 + 3,
                     timeout=10, msg="three WATCHDOG=1 pings")
        # The node goes down: a STATUS line says so.
        sim.stop()
        ns.recv_until(lambda m: m.get("STATUS", "").startswith("0 of 1"), timeout=10)
        # Reload: RELOADING=1, then READY=1 again.
        n_ready = ns.count("READY")
        d.signal(signal.SIGHUP)
        ns.recv_until(lambda m: m.get("RELOADING") == "1")
        h.wait_until(lambda: ns.pump(0.2) or ns.count("READY") > n_ready, timeout=10,
                     msg="READY=1 after the reload")
        t_reloading = [t for t, m in ns.messages if m.get("RELOADING") == "1"][-1]
        t_ready2 = [t for t, m in ns.messages if m.get("READY") == "1"][-1]
        self.assertLessEqual(t_reloading, t_ready2)
        self.assertGreater(t_reloading, t_ready)
        self.assertEqual(d.stop(), 0)
        ns.recv_until(lambda m: m.get("STOPPING") == "1")

    def test_notify_path_socket(self):
        self.run_with(abstract=False)

    def test_notify_abstract_socket(self):
        self.run_with(abstract=True)

    def test_unread_socket_never_blocks(self):
        # Pings every 10 ms fill the socket's queue (10 datagrams) at once;
        # the daemon must drop them, not wait in send.
        sim = h.start_sim("--name", "a", test=self)
        ns = NotifySocket()
        self.addCleanup(ns.close)
        d = h.start_process("sollold", ["--listen", "127.0.0.1:0", "--node", "a=" + sim.url],
                            env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "20000"}, test=self)
        time.sleep(1.0)
        for _ in range(5):
            self.assertEqual(h.request("GET", d.url + "/api/version", timeout=5).status, 200)
        t0 = time.monotonic()
        self.assertEqual(d.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - t0, 5)

    def test_no_notify_socket_is_fine(self):
        sim = h.start_sim("--name", "a", test=self)
        env = {"NOTIFY_SOCKET": "", "WATCHDOG_USEC": ""}
        d = h.start_process("sollold", ["--listen", "127.0.0.1:0", "--node", "a=" + sim.url],
                            env=env, test=self)
        self.assertEqual(h.request("GET", d.url + "/api/version").status, 200)


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="sollol-reload-")
        self.addCleanup(self.dir.cleanup)
        self.path = os.path.join(self.dir.name, "sollol.json")
        self.a = h.start_sim("--name", "a", "--tokens-per-second", "40", "--ttft-ms", "0",
                             test=self)
        self.b = h.start_sim("--name", "b", "--tokens-per-second", "40", "--ttft-ms", "0",
                             test=self)

    def start(self, nodes):
        write_config(self.path, nodes)
        d = h.start_process("sollold", ["--config", self.path], test=self)
        h.wait_until(lambda: len(up_names(d)) == len(nodes), timeout=10, msg="nodes up")
        return d

    def reload(self, d, nodes, expect_names):
        write_config(self.path, nodes)
        d.signal(signal.SIGHUP)
        h.wait_until(lambda: node_names(d) == sorted(expect_names), timeout=10,
                     msg="node table %s" % expect_names)

    def test_added_node_receives_traffic(self):
        d = self.start([("a", self.a.url, 4)])
        self.reload(d, [("a", self.a.url, 4), ("b", self.b.url, 4)], ["a", "b"])
        h.wait_until(lambda: up_names(d) == ["a", "b"], timeout=10, msg="b up")
        served = set()
        # Round robin over both would be too strict for the cost router; b
        # must take some of many concurrent requests.
        for _ in range(4):
            res = h.run_parallel([lambda: h.post_json(d.url + "/api/generate",
                                                      {"model": MODEL, "prompt": "x",
                                                       "stream": False,
                                                       "options": {"num_predict": 20}})
                                  for _ in range(8)])
            for r in res:
                served.add(r.headers.get("x-sollol-node"))
            if "b" in served:
                break
        self.assertIn("b", served)
        self.assertGreater(len(h.sim_stats(self.b.url)["requests"]), 0)

    def test_removed_node_finishes_its_stream(self):
        d = self.start([("a", self.a.url, 4)])
        n = 120  # ~3 s at 40 tokens/s
        with h.open_stream("POST", d.url + "/api/chat", chat(n)) as s:
            self.assertEqual(s.status, 200)
            self.assertEqual(s.headers.get("x-sollol-node"), "a")
            it = s.lines()
            first = next(it)
            self.assertIsNotNone(first.json)
            # a leaves, b comes: the stream through a must go on intact.
            self.reload(d, [("b", self.b.url, 4)], ["b"])
            rest = list(it)
            self.assertFalse(s.incomplete)
        events = [first] + rest
        self.assertEqual(len(events), n + 1)
        self.assertTrue(events[-1].json["done"])
        self.assertNotIn("error", events[-1].json)
        self.assertEqual(events[-1].json["eval_count"], n)
        # New work goes to b only; a is not even probed any more.
        h.wait_until(lambda: up_names(d) == ["b"], timeout=10, msg="only b")
        r = h.post_json(d.url + "/api/generate", {"model": MODEL, "prompt": "x", "stream": False,
                                                  "options": {"num_predict": 3}})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("x-sollol-node"), "b")
        h.wait_until(lambda: "node a has left" in d.stderr_text(), timeout=10, msg="a left")
        # a comes back under its old identity: same slot, routable again.
        self.reload(d, [("a", self.a.url, 4), ("b", self.b.url, 4)], ["a", "b"])
        h.wait_until(lambda: up_names(d) == ["a", "b"], timeout=10, msg="a back")

    def test_changed_limits_apply(self):
        d = self.start([("a", self.a.url, 4)])
        self.reload(d, [("a", self.a.url, 2)], ["a"])
        h.wait_until(lambda: h.get_json(d.url + "/api/stats")["nodes"][0]["max_concurrent"] == 2,
                     timeout=10, msg="max_concurrent 2")
        # A URL change is a new node under the same name.
        self.reload(d, [("a", self.b.url, 2)], ["a"])
        h.wait_until(lambda: h.get_json(d.url + "/api/stats")["nodes"][0]["url"] == self.b.url,
                     timeout=10, msg="a now at b's address")
        h.wait_until(lambda: up_names(d) == ["a"], timeout=10, msg="the new a up")
        # Up comes from /api/version; its models from the next /api/tags probe,
        # which a loaded machine may answer a little later.
        h.wait_until(lambda: MODEL in [m["name"] for m in
                                       h.get_json(d.url + "/api/tags")["models"]],
                     timeout=10, msg="the new a's models known")
        # The node that left is not shown: one series per name.
        metrics = h.request("GET", d.url + "/metrics").body.decode()
        self.assertEqual(metrics.count('sollol_node_up{node="a"}'), 1, metrics)
        r = h.post_json(d.url + "/api/generate", {"model": MODEL, "prompt": "x", "stream": False,
                                                  "options": {"num_predict": 2}})
        self.assertEqual(r.status, 200)

    def test_invalid_reload_keeps_the_old_config(self):
        d = self.start([("a", self.a.url, 4)])
        with open(self.path, "w") as f:
            f.write('{"nodes": [{"url": "http://127.0.0.1:99999"}], "listen": "127.0.0.1:0"}')
        d.signal(signal.SIGHUP)
        h.wait_until(lambda: "reload rejected" in d.stderr_text(), timeout=10, msg="rejection")
        err = d.stderr_text()
        self.assertIn("nodes[0].url", err)
        self.assertIn(self.path, err)
        self.assertEqual(node_names(d), ["a"])
        r = h.post_json(d.url + "/api/generate", {"model": MODEL, "prompt": "x", "stream": False,
                                                  "options": {"num_predict": 2}})
        self.assertEqual(r.status, 200)
        # Not JSON at all: the same.
        with open(self.path, "w") as f:
            f.write("{nodes")
        d.signal(signal.SIGHUP)
        h.wait_until(lambda: d.stderr_text().count("reload rejected") == 2, timeout=10,
                     msg="second rejection")
        self.assertEqual(up_names(d), ["a"])


class ShutdownTest(unittest.TestCase):
    def start(self, grace, rate="20"):
        self.sim = h.start_sim("--name", "a", "--tokens-per-second", rate, "--ttft-ms", "0",
                               test=self)
        return h.start_process("sollold", ["--listen", "127.0.0.1:0",
                                           "--node", "a=" + self.sim.url,
                                           "--shutdown-grace", grace,
                                           "--probe-interval", "200ms"], test=self,
                               check_exit=False)

    def test_sigterm_lets_20_streams_finish(self):
        # Through a config file: 20 slots on the one node.
        tmp = tempfile.TemporaryDirectory(prefix="sollol-shutdown-")
        self.addCleanup(tmp.cleanup)
        path = os.path.join(tmp.name, "c.json")
        self.sim = h.start_sim("--name", "a", "--tokens-per-second", "20", "--ttft-ms", "0",
                               test=self)
        write_config(path, [("a", self.sim.url, 32)], shutdown={"grace_ms": 30000})
        d = h.start_process("sollold", ["--config", path], test=self, check_exit=False)
        n = 40  # ~2 s per stream
        streams = [h.open_stream("POST", d.url + "/api/chat", chat(n, "s%d" % i))
                   for i in range(20)]
        iters = [s.lines() for s in streams]
        firsts = [next(it) for it in iters]  # every stream is running
        t_term = time.monotonic()
        d.signal(signal.SIGTERM)
        # New work is refused meanwhile, with Ollama's error shape.
        time.sleep(0.2)
        r = h.post_json(d.url + "/api/chat", chat(2))
        self.assertEqual(r.status, 503)
        self.assertIn("shutting down", r.json()["error"])
        self.assertEqual(r.headers.get("connection", "").lower(), "close")
        results = h.run_parallel([lambda it=it: list(it) for it in iters], timeout=60)
        for s, first, rest in zip(streams, firsts, results):
            self.assertFalse(s.incomplete)
            events = [first] + rest
            self.assertEqual(len(events), n + 1)
            self.assertTrue(events[-1].json["done"])
            self.assertNotIn("error", events[-1].json)
            s.close()
        code = d.popen.wait(timeout=30)
        self.assertEqual(code, 0)
        self.assertLess(time.monotonic() - t_term, 30)
        self.assertIn("every request has finished", d.stderr_text())

    def test_grace_period_cuts_the_rest(self):
        d = self.start("1s", rate="10")
        with h.open_stream("POST", d.url + "/api/chat", chat(600)) as s:  # a minute
            it = s.lines()
            next(it)
            t0 = time.monotonic()
            d.signal(signal.SIGTERM)
            rest = list(it)
            elapsed = time.monotonic() - t0
        self.assertIn("error", rest[-1].json)
        self.assertIn("shutting down", rest[-1].json["error"])
        self.assertLess(elapsed, 20)
        self.assertEqual(d.popen.wait(timeout=20), 0)

    def test_second_signal_stops_at_once(self):
        d = self.start("60s", rate="10")
        with h.open_stream("POST", d.url + "/api/chat", chat(600)) as s:
            it = s.lines()
            next(it)
            d.signal(signal.SIGTERM)
            h.wait_until(lambda: "shutting down:" in d.stderr_text(), timeout=10, msg="draining")
            t0 = time.monotonic()
            d.signal(signal.SIGINT)
            rest = list(it)
            self.assertLess(time.monotonic() - t0, 20)
        self.assertIn("error", rest[-1].json)
        self.assertEqual(d.popen.wait(timeout=20), 0)

    def test_idle_daemon_stops_at_once(self):
        d = self.start("30s")
        t0 = time.monotonic()
        self.assertEqual(d.stop(), 0)
        self.assertLess(time.monotonic() - t0, 10)


class NotOllama(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"name":"some other service","status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class DiscoveryTest(unittest.TestCase):
    def test_finds_simulators_and_ignores_others(self):
        # Each simulator on its own loopback address; the ranges name the
        # port each listens on, so a scan of 127.0.0.0/29 finds exactly it.
        s2 = h.start_sim("--name", "two", listen="127.0.0.2:0", test=self)
        s3 = h.start_sim("--name", "three", listen="127.0.0.3:0", test=self)
        other = http.server.ThreadingHTTPServer(("127.0.0.4", 0), NotOllama)
        threading.Thread(target=other.serve_forever, daemon=True).start()
        self.addCleanup(other.server_close)
        self.addCleanup(other.shutdown)
        oport = other.server_address[1]
        cidrs = ["127.0.0.0/29:%d" % s2.port, "127.0.0.0/29:%d" % s3.port,
                 "127.0.0.4:%d" % oport]
        d = h.start_process("sollold", ["--listen", "127.0.0.1:0",
                                        "--discover", ",".join(cidrs),
                                        "--discovery-interval", "300ms",
                                        "--discovery-timeout", "500ms",
                                        "--discovery-max-missed", "2",
                                        "--probe-interval", "200ms"], test=self)
        want = sorted(["127.0.0.2:%d" % s2.port, "127.0.0.3:%d" % s3.port])
        h.wait_until(lambda: up_names(d) == want, timeout=15, msg="both simulators found")
        self.assertEqual(node_names(d), want)  # the other server is not a node
        r = h.post_json(d.url + "/api/generate", {"model": MODEL, "prompt": "x", "stream": False,
                                                  "options": {"num_predict": 2}})
        self.assertEqual(r.status, 200)
        self.assertIn(r.headers.get("x-sollol-node"), want)
        # One vanishes: it ages out after the missed scans.
        s3.stop()
        h.wait_until(lambda: node_names(d) == ["127.0.0.2:%d" % s2.port], timeout=15,
                     msg="the vanished one left")

    def test_discovered_node_becomes_configured(self):
        s2 = h.start_sim("--name", "two", listen="127.0.0.2:0", test=self)
        tmp = tempfile.TemporaryDirectory(prefix="sollol-disc-")
        self.addCleanup(tmp.cleanup)
        path = os.path.join(tmp.name, "c.json")
        disc = {"cidrs": ["127.0.0.2:%d" % s2.port], "interval_ms": 300, "max_missed": 1,
                "timeout_ms": 500}
        write_config(path, [], discovery=disc)
        d = h.start_process("sollold", ["--config", path], test=self)
        name = "127.0.0.2:%d" % s2.port
        h.wait_until(lambda: up_names(d) == [name], timeout=15, msg="found")
        # Configured now, under the same (default) name: no gap in service.
        write_config(path, [(name, s2.url, 4)], discovery=disc)
        d.signal(signal.SIGHUP)
        h.wait_until(lambda: "now a configured node" in d.stderr_text(), timeout=10,
                     msg="taken over")
        self.assertEqual(up_names(d), [name])
        self.assertNotIn("has left", d.stderr_text())
        # A configured node does not age out when scans miss it.
        s2.stop()
        h.wait_until(lambda: up_names(d) == [], timeout=10, msg="down")
        time.sleep(1.5)  # several scans
        self.assertEqual(node_names(d), [name])


if __name__ == "__main__":
    unittest.main(verbosity=2)
