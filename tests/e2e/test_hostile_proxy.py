"""End-to-end tests of the proxy path against hostile clients and hostile
nodes (issue #14, items 1, 3, 9, 11, 12 and 14):

- request targets that do not normalise to themselves (dot segments, encoded
  separators, %3f, %23, %00) are refused with 400 before access control or a
  node sees them, so a key limited to `llama3.2*` and without admin cannot
  reach /api/copy, pull, create, push or blobs through the /v1/ catch-all;
- a request libcurl could not send is the request's fault (400), never a
  node's (no failover, no breaker);
- malformed header fields (space before the colon, bare CR, obs-fold, NUL)
  and unframeable bodies (unknown Transfer-Encoding, conflicting
  Content-Length) get 400/501 at once and never reach a node;
- a node's oversized header block is a node fault before the first byte
  (another node answers); fields named in its Connection header, cookies,
  auth challenges and off-daemon Location are not passed on;
- a node that trickles bytes without ever finishing a line is cut.

Requests are written on raw sockets: an HTTP library would normalise the
very paths under test. What the node received is read from ollama-sim's
request records (docs/simulator.md); the hostile nodes are small servers in
this file.

Run: python3 -B tests/e2e/test_hostile_proxy.py (SOLLOL_BUILD_DIR selects the build).
"""

import hashlib
import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"
PROBES = ["--probe-interval", "200ms", "--tags-interval", "500ms", "--probe-timeout", "500ms"]
USER_KEY = "user-secret-1"
KEYS = [{"name": "user", "sha256": hashlib.sha256(USER_KEY.encode()).hexdigest(),
         "models": ["llama3.2*"]}]


def raw(d, data, timeout=5.0):
    """Sends bytes to the daemon on a new connection; returns (status, headers
    dict with lower-case names, body bytes) of the first response, status 0
    when none came (closed or timed out)."""
    out = h.raw_exchange("127.0.0.1", d.port, data, timeout=h.scaled(timeout))
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1."):
        return 0, {}, out
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if "content-length" in hdrs:
        body = body[:int(hdrs["content-length"])]
    return status, hdrs, body


def post(path, body, headers=(), key=None, extra=b""):
    """A raw POST with the path exactly as given (bytes or str)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    if isinstance(path, str):
        path = path.encode("latin-1")
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: x", b"Connection: close",
             b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    if key:
        lines.append(b"Authorization: Bearer " + key.encode())
    lines += [x if isinstance(x, bytes) else x.encode() for x in headers]
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n" + body


def chat_body(model=MODEL, stream=False):
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream,
            "options": {"num_predict": 2}}


def start_daemon(test, nodes, *extra, keys=None):
    args = ["--listen", "127.0.0.1:0"] + PROBES
    for name, url in nodes:
        args += ["--node", name + "=" + url]
    if keys is not None:
        args += ["--auth-keys", json.dumps(keys)]
    d = h.start_process("sollold", args + [str(a) for a in extra], test=test)
    h.wait_until(lambda: h.request("GET", d.url + "/api/tags").status in (200, 401),
                 msg="daemon answers")
    return d


def wait_routable(d, model=MODEL, headers=None):
    def ok():
        r = h.request("GET", d.url + "/api/tags", headers=headers)
        return r.status == 200 and any(m["name"] == model for m in r.json()["models"])
    h.wait_until(ok, timeout=h.scaled(10), msg="model routable")


def assert_ollama_error(test, status, hdrs, body, want_status):
    test.assertEqual(status, want_status, body)
    test.assertTrue(hdrs.get("content-type", "").startswith("application/json"), hdrs)
    err = json.loads(body)
    test.assertEqual(list(err), ["error"])
    test.assertIsInstance(err["error"], str)


class KeyScopeBypassTest(unittest.TestCase):
    """Item 1: the /v1/ catch-all must not lead a restricted key to admin
    routes or other models, whatever the encoding of the path."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", "0",
                              models=(MODEL + ",loaded", "mistral:7b"), test=cls)
        cls.d = start_daemon(cls, [("a", cls.sim.url)], keys=KEYS)
        wait_routable(cls.d, headers={"Authorization": "Bearer " + USER_KEY})

    def node_paths_since(self, since):
        """What the node received since `since`, less the daemon's own health
        probes (they come on their own clock: on a slow run, inside the
        test's window)."""
        probes = ("/api/version", "/api/ps", "/api/tags")
        return [r["path"] for r in h.sim_stats(self.sim.url, since=since)["requests"]
                if r["path"] not in probes]

    def last_id(self):
        recs = h.sim_stats(self.sim.url)["requests"]
        return recs[-1]["id"] if recs else 0

    def test_encoded_paths_refused_and_never_forwarded(self):
        copy = {"source": "mistral:7b", "destination": "llama3.2-stolen", "model": MODEL}
        digest = "sha256:" + "0" * 64
        attacks = [
            "/v1/%2e%2e/api/copy", "/v1/%2E%2E/api/copy", "/v1/../api/copy",
            "/v1/./../api/copy", "/v1/.%2e/api/pull", "/v1/%2e./api/create",
            "/v1/%2e%2e/api/push", "/v1/%2e%2e/api/blobs/" + digest,
            "/v1/x/%2e%2e/%2e%2e/api/copy", "/v1/..%2fapi/copy", "/v1/x%2F..%2F..%2Fapi/copy",
            "/v1/x%3f/../../api/copy", "/v1/chat/completions%3fx=1", "/v1/x%23/../../api/copy",
            "/v1/x%00/../../api/copy", "/v1/x%5c..%5capi%5ccopy", "/v1//api/copy",
            "/v1/%252e%252e/api/copy", "/v1/x%", "/v1/x%zz", "/v1/x y", "/v1/x\x01y",
        ]
        since = self.last_id()
        for path in attacks:
            with self.subTest(path=path):
                st, hd, body = raw(self.d, post(path, copy, key=USER_KEY))
                assert_ollama_error(self, st, hd, body, 400)
                self.assertIn("invalid request path", json.loads(body)["error"])
        # Nothing reached the node; the copy did not happen.
        self.assertEqual(self.node_paths_since(since), [])
        names = [m["name"] for m in h.get_json(self.sim.url + "/api/tags")["models"]]
        self.assertNotIn("llama3.2-stolen:latest", names)

    def test_admin_routes_still_403_and_normal_paths_work(self):
        st, hd, body = raw(self.d, post("/api/copy", {"source": "mistral:7b",
                                                      "destination": "x"}, key=USER_KEY))
        self.assertEqual(st, 403, body)
        since = self.last_id()
        # An escape of a byte that needs none decodes to the same route.
        for path in ("/v1/chat/completions", "/v1/chat/complet%69ons", "/api/ch%61t"):
            with self.subTest(path=path):
                st, hd, body = raw(self.d, post(path, chat_body(), key=USER_KEY))
                self.assertEqual(st, 200, body)
        paths = self.node_paths_since(since)
        self.assertEqual(sorted(paths), ["/api/chat", "/v1/chat/completions",
                                         "/v1/chat/completions"])


class UnsendableRequestTest(unittest.TestCase):
    """Item 3: a path libcurl would refuse is a 400 of the request; no node
    is tried or blamed, so other traffic still flows."""

    def test_bad_path_never_opens_breakers(self):
        a = h.start_sim("--tokens-per-second", "0", models=(MODEL + ",loaded",), test=self)
        b = h.start_sim("--tokens-per-second", "0", models=(MODEL + ",loaded",), test=self)
        d = start_daemon(self, [("a", a.url), ("b", b.url)])
        wait_routable(d)
        for path in ("/v1/x%20y", "/v1/x y", "/v1/x%20y", "/v1/x%7Fy", "/v1/x%20y"):
            st, hd, body = raw(d, post(path, chat_body()))
            assert_ollama_error(self, st, hd, body, 400)
        r = h.post_json(d.url + "/api/chat", chat_body())
        self.assertEqual(r.status, 200, r)
        for n in h.get_json(d.url + "/api/stats")["nodes"]:
            self.assertEqual(n["breaker"]["consecutive_failures"], 0, n)
            self.assertEqual(n["breaker"]["opens_total"], 0, n)
        posts = [x["path"] for sim in (a, b) for x in h.sim_stats(sim.url)["requests"]
                 if x["method"] == "POST"]
        self.assertEqual(posts, ["/api/chat"])


class RequestHeaderHygieneTest(unittest.TestCase):
    """Items 11 and 12: malformed fields and unframeable bodies get 400/501
    on the first handler call and are never forwarded."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", "0", models=(MODEL + ",loaded",), test=cls)
        cls.d = start_daemon(cls, [("a", cls.sim.url)])
        wait_routable(cls.d)

    def requests_total(self):
        return len([x for x in h.sim_stats(self.sim.url)["requests"] if x["method"] == "POST"])

    def test_malformed_fields(self):
        cases = {
            "space before colon": [b"Authorization : Bearer k"],
            "tab before colon": [b"X-Thing\t: v"],
            "bare CR": [b"X-A: a\rb"],
            "control byte": [b"X-A: a\x01b"],
            "DEL": [b"X-A: a\x7fb"],
            "obs-fold": [b"X-A: a", b"  folded"],
            "obs-fold tab": [b"X-A: a", b"\tfolded"],
            "NUL in value": [b"X-A: a\x00b", b"X-B: c"],
            "bad name": [b"X(A): v"],
        }
        before = self.requests_total()
        for name, fields in cases.items():
            with self.subTest(name):
                st, hd, body = raw(self.d, post("/api/chat", chat_body(), headers=fields))
                assert_ollama_error(self, st, hd, body, 400)
        self.assertEqual(self.requests_total(), before)
        # The same request, well formed, is served.
        st, hd, body = raw(self.d, post("/api/chat", chat_body(), headers=[b"X-A: a b\tc"]))
        self.assertEqual(st, 200, body)

    def framing(self, te_fields, body=b"", cl=None):
        lines = [b"POST /api/chat HTTP/1.1", b"Host: x", b"Content-Type: application/json"]
        lines += [b"Transfer-Encoding: " + v for v in te_fields]
        lines += [b"Content-Length: " + v for v in (cl or [])]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def test_transfer_encodings_answered_at_once(self):
        chunk = json.dumps(chat_body()).encode()
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk)
        cases = [([b"identity"], 400), ([b"chunked, identity"], 400), ([b"xchunked"], 400),
                 ([b"chunked", b"identity"], 400), ([b"chunked, chunked"], 400),
                 ([b""], 400), ([b"gzip, chunked"], 501), ([b"identity, chunked"], 501)]
        before = self.requests_total()
        for te, want in cases:
            with self.subTest(te=te):
                t0 = time.monotonic()
                # The connection stays open: the answer must not wait for EOF.
                s = h.raw_connect("127.0.0.1", self.d.port)
                try:
                    s.sendall(self.framing(te, chunked))
                    s.settimeout(h.scaled(3))
                    data = b""
                    while b"\r\n\r\n" not in data:
                        c = s.recv(65536)
                        if not c:
                            break
                        data += c
                finally:
                    s.close()
                self.assertTrue(data.startswith(b"HTTP/1.1 %d" % want), data[:200])
                self.assertLess(time.monotonic() - t0, h.scaled(2.5))
        self.assertEqual(self.requests_total(), before)
        # Plain chunked, any case, still works.
        for te in (b"chunked", b"Chunked"):
            st, hd, body = raw(self.d, self.framing([te], chunked) .replace(
                b"Host: x", b"Host: x\r\nConnection: close"))
            self.assertEqual(st, 200, body)

    def test_content_length_conflicts(self):
        body = json.dumps(chat_body()).encode()
        n = b"%d" % len(body)
        before = self.requests_total()
        st, hd, out = raw(self.d, self.framing([], body + b"xxxxx", cl=[n, b"%d" % (len(body) + 5)]))
        assert_ollama_error(self, st, hd, out, 400)
        self.assertEqual(self.requests_total(), before)
        st, hd, out = raw(self.d, self.framing([], body, cl=[n, n]).replace(
            b"Host: x", b"Host: x\r\nConnection: close"))
        self.assertEqual(st, 200, out)


class HostileNode:
    """An HTTP/1.1 'node' on loopback: answers the daemon's probes like the
    simulator it copies them from, and /api/chat as `mode` says."""

    def __init__(self, sim, mode):
        self.mode = mode
        self.probes = {p: h.request("GET", sim.url + p).body
                       for p in ("/api/version", "/api/tags", "/api/ps")}
        self.chats = 0
        self.trickle_ended = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def close(self):
        self.stop = True
        self.sock.close()

    def accept_loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                n = 0
                for ln in lines[1:]:
                    if ln.lower().startswith("content-length:"):
                        n = int(ln.split(":")[1])
                while len(buf) < n:
                    buf += c.recv(65536)
                buf = buf[n:]
                if method == "GET" and path in self.probes:
                    body = self.probes[path]
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8"
                              b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                self.chats += 1
                self.answer(c)
                return
        except OSError:
            return
        finally:
            c.close()

    def answer(self, c):
        line = json.dumps({"model": MODEL, "message": {"role": "assistant", "content": "x"},
                           "done": True, "done_reason": "stop"}).encode() + b"\n"
        if self.mode == "bigheaders":
            pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 200) for i in range(100))
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + pad +
                      b"Content-Length: %d\r\n\r\n%s" % (len(line), line))
        elif self.mode == "headers":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"X-Secret: node-internal\r\nConnection: X-Secret, close\r\n"
                      b"Set-Cookie: session=node; Path=/\r\nWWW-Authenticate: Basic realm=node\r\n"
                      b"Location: http://10.9.9.9:11434/api/pull\r\nX-Fine: yes\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(line), line))
        elif self.mode == "location":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Location: /api/tags\r\nContent-Length: %d\r\n\r\n%s" % (len(line), line))
        elif self.mode == "trickle":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(600):  # at most 60 s
                    c.sendall(b"1\r\n{\r\n")
                    time.sleep(0.1)
            except OSError:
                self.trickle_ended.set()


class HostileNodeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", "0", models=(MODEL + ",loaded",), test=cls)

    def node(self, mode):
        n = HostileNode(self.sim, mode)
        self.addCleanup(n.close)
        return n

    def test_oversized_headers_fail_over(self):
        """Item 9: another node answers, and the hostile one is blamed."""
        bad = self.node("bigheaders")
        d = start_daemon(self, [("bad", bad.url), ("good", self.sim.url)],
                         "--routing", "round_robin")
        wait_routable(d)
        for _ in range(4):
            r = h.post_json(d.url + "/api/chat", chat_body())
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.headers.get("x-sollol-node"), "good", r.headers)
            self.assertEqual(r.json()["message"]["role"], "assistant")
        self.assertGreaterEqual(bad.chats, 1)
        stats = {n["name"]: n for n in h.get_json(d.url + "/api/stats")["nodes"]}
        self.assertGreaterEqual(stats["bad"]["failures_total"], 1, stats["bad"])
        self.assertEqual(stats["good"]["failures_total"], 0, stats["good"])
        self.assertIn("response headers too large", d.stderr_text())

    def test_node_headers_filtered(self):
        """Item 11: what the node's Connection names, its cookies, auth
        challenges and a Location off the daemon never reach the client."""
        d = start_daemon(self, [("n", self.node("headers").url)])
        wait_routable(d)
        r = h.post_json(d.url + "/api/chat", chat_body())
        self.assertEqual(r.status, 200, r)
        for name in ("x-secret", "set-cookie", "www-authenticate", "location"):
            self.assertNotIn(name, r.headers, r.header_list)
        self.assertEqual(r.headers.get("x-fine"), "yes")
        d2 = start_daemon(self, [("n", self.node("location").url)])
        wait_routable(d2)
        r = h.post_json(d2.url + "/api/chat", chat_body())
        self.assertEqual(r.headers.get("location"), "/api/tags", r.header_list)

    def test_trickling_node_is_cut(self):
        """Item 14: a byte every 100 ms, never a newline: with idle_ms 1 s
        the line bound ends it (each gap alone would never reach it)."""
        node = self.node("trickle")
        d = start_daemon(self, [("t", node.url)], "--idle-timeout", "1s")
        wait_routable(d)
        t0 = time.monotonic()
        with h.open_stream("POST", d.url + "/api/chat", chat_body(stream=True),
                           timeout=20) as s:
            body = s.read_all()
        took = time.monotonic() - t0
        self.assertLess(took, h.scaled(6), "stream held %.1f s" % took)
        self.assertIn(b'"error"', body)
        self.assertTrue(node.trickle_ended.wait(h.scaled(5)), "node connection not closed")
        stats = {n["name"]: n for n in h.get_json(d.url + "/api/stats")["nodes"]}
        self.assertGreaterEqual(stats["t"]["failures_total"], 1, stats["t"])


if __name__ == "__main__":
    unittest.main()
