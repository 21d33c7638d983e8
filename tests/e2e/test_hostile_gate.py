"""End-to-end regression tests of the security gate (issue #14, items 2, 4,
7, 8, 13 and the failed-authentication limit): input that froze the loop,
bodies that held memory or connections without end, keys and limits that a
reload did not change, an empty model list that allowed every model, a
FIFO that blocked a reload, and 401s that cost a key guesser nothing.

Each test talks to a real `sollold` in front of `ollama-sim` on loopback,
and asserts what a client sees (statuses, headers, closed connections,
timings with wide margins) and what /metrics reports.

Run: python3 -B tests/e2e/test_hostile_gate.py (SOLLOL_BUILD_DIR selects the build).
"""

import hashlib
import http.client
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
PROBES = ["--probe-interval", "200ms", "--tags-interval", "500ms", "--probe-timeout", "500ms"]
FAST_PROBES = {"probe_interval_ms": 200, "tags_interval_ms": 500, "probe_timeout_ms": 500}


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(key):
    return {"Authorization": "Bearer " + key}


def chat():
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"num_predict": 2}}


def answers(d, timeout=3.0):
    """The status of GET /api/version within timeout, or None."""
    try:
        return h.request("GET", d.url + "/api/version", timeout=timeout).status
    except (OSError, http.client.HTTPException):
        return None


def metric(d, name, reason):
    text = h.request("GET", d.url + "/metrics").text
    want = '%s{reason="%s"} ' % (name, reason)
    for line in text.splitlines():
        if line.startswith(want):
            return float(line[len(want):])
    return None


def closed_within(sock, seconds):
    """True when the daemon closes (or resets) sock within seconds; reads
    and drops whatever it sends first."""
    sock.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def start_daemon(test, sim, *extra):
    args = ["--listen", "127.0.0.1:0", "--node", "a=" + sim.url] + PROBES
    d = h.start_process("sollold", args + [str(a) for a in extra], test=test)
    h.wait_until(lambda: answers(d) in (200, 401), msg="daemon answers")
    return d


class ChunkLineFreezeTest(unittest.TestCase):
    """Item 2: a chunk-size line (or extension) longer than MHD's buffer
    made MHD ask to run again at once, forever; the glue re-armed a 0 ms
    timer that libuv 1.44 ran in the same pass: 100% CPU, nothing served,
    signals ignored for limits.client_idle_timeout_ms (5 min here)."""

    def attack(self, line):
        sim = h.start_sim(test=self)
        d = start_daemon(self, sim)
        s = h.raw_connect("127.0.0.1", d.port)
        self.addCleanup(s.close)
        s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + line)
        time.sleep(0.5)  # MHD has read it and is stuck on it
        t0 = time.monotonic()
        self.assertEqual(answers(d, timeout=5), 200, "a normal request is served meanwhile")
        self.assertLess(time.monotonic() - t0, 3.0)
        r = h.post_json(d.url + "/api/chat", chat(), timeout=10)
        self.assertEqual(r.status, 200)
        # The connection that keeps MHD busy without progress is cut.
        self.assertTrue(closed_within(s, 10), "the attacking connection is closed")
        h.wait_until(lambda: (metric(d, "sollol_connections_cut_total", "no_progress") or 0) >= 1,
                     timeout=5, msg="no_progress cut counted")
        # ... and SIGTERM is served promptly (it was ignored while spinning).
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        d.popen.wait(timeout=10)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(d.popen.returncode, 0)

    def test_long_chunk_size_line(self):
        self.attack(b"0" * 20000 + b"1")

    def test_long_chunk_extension(self):
        self.attack(b"5;ext=" + b"a" * 20000)

    def test_sigterm_during_attack(self):
        sim = h.start_sim(test=self)
        d = start_daemon(self, sim)
        s = h.raw_connect("127.0.0.1", d.port)
        self.addCleanup(s.close)
        s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                  b"0" * 20000)
        time.sleep(0.3)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        d.popen.wait(timeout=10)
        self.assertLess(time.monotonic() - t0, 5.0)


class BodyLimitsTest(unittest.TestCase):
    """Item 7: a total body budget and a minimum body rate."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim(test=cls)
        cls.d = start_daemon(cls, cls.sim, "--max-body-total", "1MiB", "--max-body-per-client",
                             "1MiB", "--min-body-rate", "1KiB", "--body-grace", "1s")

    def test_declared_body_over_the_budget_gets_503_at_once(self):
        a = h.raw_connect("127.0.0.1", self.d.port)
        self.addCleanup(a.close)
        a.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 700000\r\n\r\n{")
        time.sleep(0.3)
        r = h.request("POST", self.d.url + "/api/chat",
                      body=b"{" + b" " * 600000 + b"}", timeout=10)
        self.assertEqual(r.status, 503)
        self.assertEqual(r.headers.get("retry-after"), "1")
        self.assertIn("memory for request bodies", r.json()["error"])
        a.close()
        # Once the first body is gone, its memory is free again.
        h.wait_until(lambda: h.post_json(self.d.url + "/api/chat", chat()).status == 200,
                     timeout=5, msg="served once the budget is free")
        self.assertGreaterEqual(metric(self.d, "sollol_refused_requests_total", "body_budget"), 1)

    def test_declared_body_larger_than_the_whole_budget_gets_413(self):
        # Answered at once, before any body byte (as for max_body_bytes).
        data = h.raw_exchange("127.0.0.1", self.d.port,
                              b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                              b"\r\n" % (1 << 20 | 1))
        self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:200])
        self.assertIn(b"memory for request bodies", data)

    def test_chunked_body_over_the_budget_gets_503(self):
        a = h.raw_connect("127.0.0.1", self.d.port)
        self.addCleanup(a.close)
        a.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 700000\r\n\r\n{")
        time.sleep(0.3)
        s = h.raw_connect("127.0.0.1", self.d.port)
        self.addCleanup(s.close)
        s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n")
        piece = b" " * 65536
        for _ in range(8):
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        s.sendall(b"0\r\n\r\n")
        s.settimeout(10)
        data = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
        self.assertTrue(data.startswith(b"HTTP/1.1 503"), data[:200])
        self.assertIn(b"Retry-After: 1", data)

    def test_slow_body_is_cut(self):
        before = metric(self.d, "sollol_connections_cut_total", "slow_body") or 0
        s = h.raw_connect("127.0.0.1", self.d.port)
        self.addCleanup(s.close)
        s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{")
        t0 = time.monotonic()
        closed = False
        for _ in range(40):  # one byte every 0.25 s: far below 1 KiB/s
            try:
                s.sendall(b" ")
            except OSError:
                closed = True
                break
            if closed_within(s, 0.25):
                closed = True
                break
        self.assertTrue(closed, "a body at 4 bytes/s is cut")
        self.assertLess(time.monotonic() - t0, 8.0)
        self.assertEqual(metric(self.d, "sollol_connections_cut_total", "slow_body"), before + 1)
        self.assertEqual(answers(self.d), 200)


class AuthFailureLimitTest(unittest.TestCase):
    """401s used to be free: a guesser could try keys as fast as it liked."""

    def test_failures_per_address_get_429(self):
        sim = h.start_sim(test=self)
        keys = [{"name": "u", "sha256": sha("good-key-123")}]
        d = start_daemon(self, sim, "--auth-keys", json.dumps(keys),
                         "--auth-failures-per-client", "3/m", "--auth-public",
                         '["/api/version", "/metrics"]')
        for _ in range(3):
            self.assertEqual(h.post_json(d.url + "/api/chat", chat(),
                                         headers=bearer("wrong-key-000")).status, 401)
        r = h.post_json(d.url + "/api/chat", chat(), headers=bearer("wrong-key-000"))
        self.assertEqual(r.status, 429)
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
        self.assertIn("failed authentications", r.json()["error"])
        # A valid key is refused too, or the answer would tell the guess.
        self.assertEqual(h.post_json(d.url + "/api/chat", chat(),
                                     headers=bearer("good-key-123")).status, 429)
        r = h.request("POST", d.url + "/v1/chat/completions", body={"model": MODEL},
                      headers=bearer("x" * 12))
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json()["error"]["type"], "rate_limit_error")
        self.assertEqual(answers(d), 200, "public paths stay open")
        self.assertGreaterEqual(metric(d, "sollol_refused_requests_total", "auth_failures"), 2)


def write_config(path, sim, **sections):
    cfg = {"listen": "127.0.0.1:0", "nodes": [{"name": "a", "url": sim.url}],
           "health": dict(FAST_PROBES)}
    cfg.update(sections)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cfg, f)
    os.replace(tmp, path)


class ReloadTest(unittest.TestCase):
    """Item 4: SIGHUP reloads auth.* and limits.*; item 13: a FIFO never
    blocks a reload; item 8: an empty model list is a config error."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="sollol-gate-")
        self.addCleanup(self.dir.cleanup)
        self.path = os.path.join(self.dir.name, "sollol.json")
        self.sim = h.start_sim(test=self)

    def start(self, **sections):
        write_config(self.path, self.sim, **sections)
        d = h.start_process("sollold", ["--config", self.path], test=self)
        h.wait_until(lambda: answers(d) in (200, 401), msg="daemon answers")
        return d

    def reload(self, d, expect):
        n = d.stderr_text().count(expect)
        d.signal(signal.SIGHUP)
        h.wait_until(lambda: d.stderr_text().count(expect) > n, timeout=10,
                     msg="log line %r" % expect)

    def status(self, d, key):
        return h.post_json(d.url + "/api/chat", chat(), headers=bearer(key)).status

    def test_keys_and_rates_are_reloaded(self):
        old = {"name": "old", "sha256": sha("old-key-123")}
        limited = {"name": "lim", "sha256": sha("lim-key-123"), "rate": "1/h"}
        d = self.start(auth={"keys": [old, limited]})
        self.assertEqual(self.status(d, "old-key-123"), 200)
        self.assertEqual(self.status(d, "lim-key-123"), 200)
        self.assertEqual(self.status(d, "lim-key-123"), 429)
        new = {"name": "new", "sha256": sha("new-key-123")}
        write_config(self.path, self.sim, auth={"keys": [new, limited]})
        self.reload(d, "configuration reloaded")
        self.assertEqual(self.status(d, "old-key-123"), 401, "a revoked key stops working")
        self.assertEqual(self.status(d, "new-key-123"), 200, "a new key works")
        self.assertEqual(self.status(d, "lim-key-123"), 429, "a reload does not refill a bucket")
        self.assertIn("1 added, 1 removed, 1 kept", d.stderr_text())
        # A new rate for a kept key applies.
        limited["rate"] = "100/s"
        write_config(self.path, self.sim, auth={"keys": [new, limited]})
        self.reload(d, "configuration reloaded")
        h.wait_until(lambda: self.status(d, "lim-key-123") == 200, timeout=3,
                     msg="the new rate refills the bucket")

    def test_limits_are_reloaded_or_named(self):
        d = self.start()
        r = h.request("GET", d.url + "/api/tags?q=" + "x" * 1000)
        self.assertEqual(r.status, 200)
        write_config(self.path, self.sim,
                     limits={"max_url_bytes": 512, "client_idle_timeout_ms": 60000,
                             "max_connections": 100})
        self.reload(d, "configuration reloaded")
        r = h.request("GET", d.url + "/api/tags?q=" + "x" * 1000)
        self.assertEqual(r.status, 414, "the lower URL limit applies")
        err = d.stderr_text()
        self.assertIn("limits.client_idle_timeout_ms: needs a restart", err)
        self.assertIn("limits.max_connections: needs a restart", err)

    def test_fifo_keys_file_does_not_block_reload(self):
        keys_file = os.path.join(self.dir.name, "keys.json")
        with open(keys_file, "w") as f:
            json.dump({"keys": [{"name": "k", "key": "plain-key-123"}]}, f)
        os.chmod(keys_file, 0o600)
        d = self.start(auth={"keys_file": keys_file})
        self.assertEqual(self.status(d, "plain-key-123"), 200)
        os.unlink(keys_file)
        os.mkfifo(keys_file, 0o600)
        self.reload(d, "reload rejected")
        self.assertIn("is not a regular file", d.stderr_text())
        self.assertEqual(self.status(d, "plain-key-123"), 200, "the running keys stay")

    def test_fifo_config_does_not_block_reload(self):
        d = self.start()
        os.unlink(self.path)
        os.mkfifo(self.path, 0o600)
        self.reload(d, "reload rejected")
        self.assertIn("is not a regular file", d.stderr_text())
        self.assertEqual(answers(d), 200)

    def test_empty_model_list_is_a_config_error(self):
        keys = [{"name": "k", "sha256": sha("some-key-123"), "models": []}]
        write_config(self.path, self.sim, auth={"keys": keys})
        with self.assertRaises(h.ProcError) as cm:
            h.start_process("sollold", ["--config", self.path], test=self, check_exit=False)
        self.assertIn("[0].models: an empty list is not allowed", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
