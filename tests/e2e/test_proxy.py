"""End-to-end tests of the daemon core (issue "daemon core"): what a client
of sollold sees when one request is proxied to one node.

Streaming as the node emits, byte-identical answers, errors that pass
through or are made by the daemon, limits, client disconnects that cancel
the node's work, header rewriting, OpenAI routes, backpressure against a
slow reader, keep-alive and shutdown.

Run: python3 -B tests/e2e/test_proxy.py (SOLLOL_BUILD_DIR selects the build).
Timing assertions are loose and relative: CI is a busy 2-core machine.
"""

import http.client
import json
import os
import re
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

JSON_UTF8 = "application/json; charset=utf-8"
MODEL = "llama3.2:3b"
# Probe fast so node state changes are seen within a second.
FAST_PROBES = ("--probe-interval", "200ms", "--tags-interval", "500ms", "--probe-timeout", "500ms",
               "--breaker-cooldown-min", "300ms")


def chat_body(content="hello there", model=MODEL, **kw):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    body.update(kw)
    return body


def start_daemon(test, nodes, *extra, probes=FAST_PROBES, check_exit=True):
    """sollold on an ephemeral port routing to ``nodes`` [(name, url)]."""
    args = ["--listen", "127.0.0.1:0"]
    for name, url in nodes:
        args += ["--node", "%s=%s" % (name, url)]
    args += list(probes) + [str(a) for a in extra]
    return h.start_process("sollold", args, test=test, check_exit=check_exit)


_VOLATILE = [
    (re.compile(rb'"created_at":"[^"]*"'), b'"created_at":"X"'),
    (re.compile(rb'"([a-z_]*duration)":\d+'), rb'"\1":0'),
    (re.compile(rb'"created":\d+'), b'"created":0'),
]


def normalize(body):
    """The body with what changes from run to run (wall clock, measured
    durations) blanked; everything else, including key order and spacing,
    is kept byte for byte."""
    for rx, rep in _VOLATILE:
        body = rx.sub(rep, body)
    return body


def records(url, path):
    return [r for r in h.sim_stats(url)["requests"] if r["path"] == path]


def check_ndjson(test, events, min_chunks):
    """Every line is a JSON object; only the last has done:true, with the
    final metrics. Returns the decoded objects."""
    objs = []
    for e in events:
        test.assertIsNotNone(e.json, "not JSON: %r" % e.raw)
        test.assertIsInstance(e.json, dict)
        objs.append(e.json)
    test.assertGreaterEqual(len(objs), min_chunks, objs)
    for o in objs[:-1]:
        test.assertIs(o.get("done"), False, o)
    last = objs[-1]
    test.assertIs(last.get("done"), True, last)
    for k in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
              "eval_count", "eval_duration"):
        test.assertIsInstance(last.get(k), int, (k, last))
    return objs


def assert_paced(test, times, rate, what):
    """Chunks arrived one by one as a node emitting ``rate`` per second
    produced them, not in one burst at the end."""
    expected = (len(times) - 1) / rate
    spread = times[-1] - times[0]
    test.assertGreaterEqual(spread, 0.6 * expected,
                            "%s: %d chunks arrived within %.3fs, expected ~%.3fs"
                            % (what, len(times), spread, expected))
    gaps = [b - a for a, b in zip(times, times[1:])]
    spaced = sum(1 for g in gaps if g > 0.3 / rate)
    test.assertGreaterEqual(spaced, len(gaps) // 2,
                            "%s: chunks came in bursts: gaps %s" % (what, gaps))


class StreamingTest(unittest.TestCase):
    """One node at 10 tokens/s behind one daemon."""

    RATE = 10.0

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", str(cls.RATE), "--ttft-ms", "0",
                              "--prompt-tps", "0", "--name", "a",
                              models=(MODEL + ",loaded", "all-minilm:22m,embed,loaded"), test=cls)
        # The breaker is tested in test_routing; here it must not turn the
        # node's deliberate errors into the daemon's own 503s.
        cls.d = start_daemon(cls, [("a", cls.sim.url)], "--breaker-failures", "100",
                             "--breaker-min-requests", "100000")

    def setUp(self):
        h.sim_fault(self.sim.url, "none")

    def tearDown(self):
        h.sim_fault(self.sim.url, "none")

    def direct_then_proxied(self, path, body):
        """The same request to the node and through the daemon."""
        direct = h.post_json(self.sim.url + path, body)
        proxied = h.post_json(self.d.url + path, body)
        return direct, proxied

    def test_chat_stream_arrives_as_emitted(self):
        n = 8
        t0 = time.monotonic()
        with h.open_stream("POST", self.d.url + "/api/chat",
                           chat_body(options={"num_predict": n})) as s:
            self.assertEqual(s.status, 200)
            self.assertEqual(s.headers["content-type"], "application/x-ndjson")
            self.assertEqual(s.headers.get("x-sollol-node"), "a")
            events = list(s.lines())
            self.assertFalse(s.incomplete)
        objs = check_ndjson(self, events, n + 1)
        self.assertEqual(objs[-1]["eval_count"], n)
        token_times = [e.t for e in events[:n]]
        assert_paced(self, token_times, self.RATE, "/api/chat")
        # the first token came long before the stream ended
        self.assertLess(events[0].t - t0, (events[-1].t - t0) / 2)
        # same text as the node gives directly
        text = "".join(o["message"]["content"] for o in objs)
        direct = h.post_json(self.sim.url + "/api/chat",
                             chat_body(stream=False, options={"num_predict": n})).json()
        self.assertEqual(text, direct["message"]["content"])

    def test_generate_stream_arrives_as_emitted(self):
        n = 8
        with h.open_stream("POST", self.d.url + "/api/generate",
                           {"model": MODEL, "prompt": "why is the sky blue",
                            "options": {"num_predict": n}}) as s:
            self.assertEqual(s.status, 200)
            self.assertEqual(s.headers["content-type"], "application/x-ndjson")
            events = list(s.lines())
            self.assertFalse(s.incomplete)
        objs = check_ndjson(self, events, n + 1)
        self.assertIn("context", objs[-1])
        assert_paced(self, [e.t for e in events[:n]], self.RATE, "/api/generate")

    def test_openai_sse_stream(self):
        n = 6
        with h.open_stream("POST", self.d.url + "/v1/chat/completions",
                           chat_body(stream=True, max_tokens=n)) as s:
            self.assertEqual(s.status, 200)
            self.assertTrue(s.headers["content-type"].startswith("text/event-stream"))
            events = list(s.sse())
            self.assertFalse(s.incomplete)
        self.assertEqual(events[-1].raw, b"[DONE]")
        chunks = [e for e in events[:-1]]
        for e in chunks:
            self.assertIsNotNone(e.json, e.raw)
            self.assertEqual(e.json["object"], "chat.completion.chunk")
        content = [e for e in chunks if e.json["choices"] and
                   e.json["choices"][0]["delta"].get("content")]
        self.assertGreaterEqual(len(content), n - 1)
        assert_paced(self, [e.t for e in content], self.RATE, "/v1/chat/completions")

    def test_non_streamed_identical_to_node(self):
        cases = [
            ("/api/generate", {"model": MODEL, "prompt": "hi", "stream": False,
                               "options": {"num_predict": 5}}),
            ("/api/chat", chat_body(stream=False, options={"num_predict": 5})),
            ("/api/embed", {"model": "all-minilm:22m", "input": ["one", "two"]}),
            ("/api/show", {"model": MODEL}),
            ("/v1/chat/completions", chat_body(max_tokens=5)),
            ("/v1/embeddings", {"model": "all-minilm:22m", "input": "x"}),
        ]
        for path, body in cases:
            with self.subTest(path=path):
                direct, proxied = self.direct_then_proxied(path, body)
                self.assertEqual(direct.status, 200, direct)
                self.assertEqual(proxied.status, direct.status)
                self.assertEqual(proxied.headers["content-type"], direct.headers["content-type"])
                self.assertEqual(normalize(proxied.body), normalize(direct.body))
                self.assertEqual(proxied.headers.get("content-length"), str(len(proxied.body)))
                self.assertEqual(proxied.headers.get("x-sollol-node"), "a")

    def test_node_errors_pass_through(self):
        """One node, so no retry is possible: the node's own answer comes back."""
        cases = [("500", None), ("429", 7), ("503", None), ("404", None)]
        for mode, arg in cases:
            with self.subTest(fault=mode):
                h.sim_fault(self.sim.url, mode, arg=arg, count=1)
                direct = h.post_json(self.sim.url + "/api/chat", chat_body(stream=False))
                h.sim_fault(self.sim.url, mode, arg=arg, count=1)
                before = h.sim_stats(self.sim.url)["faults_injected"]
                r = h.post_json(self.d.url + "/api/chat", chat_body(stream=False))
                self.assertEqual(h.sim_stats(self.sim.url)["faults_injected"], before + 1)
                self.assertEqual(r.status, direct.status)
                self.assertEqual(r.body, direct.body)
                self.assertEqual(r.headers["content-type"], direct.headers["content-type"])
                if mode == "429":
                    self.assertEqual(r.headers.get("retry-after"), "7")
                self.assertEqual(r.headers.get("x-sollol-node"), "a")
                # the node is routable again soon (404 makes the daemon re-read its tags)
                h.wait_until(lambda: h.post_json(self.d.url + "/api/chat", chat_body(
                    stream=False, options={"num_predict": 1})).status == 200,
                    timeout=5, interval=0.1, msg="node routable again after %s" % mode)
        r = h.post_json(self.d.url + "/v1/chat/completions", chat_body())
        self.assertEqual(r.status, 200)
        h.sim_fault(self.sim.url, "500", count=1)
        r = h.post_json(self.d.url + "/v1/chat/completions", chat_body())
        self.assertEqual(r.status, 500)
        self.assertEqual(r.json()["error"]["type"], "api_error")

    def test_unknown_openai_route_is_proxied(self):
        """A /v1/ route the daemon does not know goes to the node; the node's
        404 comes back as it is, and says nothing about the model."""
        body = {"model": MODEL, "input": "hello"}
        direct = h.post_json(self.sim.url + "/v1/responses", body)
        self.assertEqual(direct.status, 404)
        for _ in range(2):
            r = h.post_json(self.d.url + "/v1/responses", body)
            self.assertEqual((r.status, r.body), (direct.status, direct.body))
            self.assertEqual(r.headers["content-type"], direct.headers["content-type"])
            self.assertEqual(r.headers.get("x-sollol-node"), "a")
        self.assertEqual(records(self.sim.url, "/v1/responses")[-1]["model"], MODEL)
        # an unknown route is not "model not found": the model stays routable
        r = h.post_json(self.d.url + "/api/chat", chat_body(stream=False,
                                                            options={"num_predict": 1}))
        self.assertEqual(r.status, 200, r.body)
        st = h.get_json(self.d.url + "/api/stats")
        m = [m for m in st["nodes"][0]["models"] if m["name"] == MODEL][0]
        self.assertFalse(m["gone"], m)

    def test_headers_rewritten_and_forwarded(self):
        r = h.post_json(self.d.url + "/api/chat", chat_body(stream=False),
                        headers={"User-Agent": "e2e-client/1.0", "Authorization": "Bearer s3cret",
                                 "X-Request-Id": "e2e-req-42", "Accept": "application/json"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("x-sollol-request-id"), "e2e-req-42")
        rec = records(self.sim.url, "/api/chat")[-1]
        self.assertEqual(rec["host"], "%s:%d" % (self.sim.host, self.sim.port))
        self.assertNotEqual(rec["host"], "%s:%d" % (self.d.host, self.d.port))
        self.assertEqual(rec["user_agent"], "e2e-client/1.0")
        self.assertEqual(rec["content_type"], "application/json")
        self.assertEqual(rec["accept"], "application/json")
        self.assertFalse(rec["authorization_present"])
        self.assertEqual(rec["x_request_id"], "e2e-req-42")
        # the body the node got is the client's, byte for byte (a
        # non-streamed chat that may be continued is asked of the node as a
        # stream: test_continue.py; X-Sollol-Continue: 0 leaves it alone)
        body = json.dumps(chat_body(stream=False, options={"num_predict": 2})).encode()
        r = h.request("POST", self.d.url + "/api/chat", body=body,
                      headers={"Content-Type": "application/json", "X-Sollol-Continue": "0"})
        rec = records(self.sim.url, "/api/chat")[-1]
        self.assertEqual((rec["body_len"], rec["body_fnv1a64"]), (len(body), h.fnv1a64(body)))
        # a large prompt too (the body is kept whole for retries)
        body = json.dumps(chat_body(content="lorem ipsum " * 50000, stream=False,
                                    options={"num_predict": 1})).encode()
        r = h.request("POST", self.d.url + "/api/chat", body=body,
                      headers={"Content-Type": "application/json", "X-Sollol-Continue": "0"})
        self.assertEqual(r.status, 200)
        rec = records(self.sim.url, "/api/chat")[-1]
        self.assertEqual((rec["body_len"], rec["body_fnv1a64"]), (len(body), h.fnv1a64(body)))

    def test_request_id_generated(self):
        for given in (None, "bad id with spaces"):
            hdrs = {"X-Request-Id": given} if given else {}
            r = h.post_json(self.d.url + "/api/chat", chat_body(stream=False), headers=hdrs)
            rid = r.headers.get("x-sollol-request-id")
            self.assertTrue(rid and re.match(r"^[A-Za-z0-9._-]{1,64}$", rid), rid)
            self.assertNotEqual(rid, given)
            self.assertEqual(records(self.sim.url, "/api/chat")[-1]["x_request_id"], rid)
        ids = {h.post_json(self.d.url + "/api/chat", chat_body(stream=False))
               .headers["x-sollol-request-id"] for _ in range(3)}
        self.assertEqual(len(ids), 3)

    def test_local_routes(self):
        r = h.request("GET", self.d.url + "/")
        self.assertEqual((r.status, r.body), (200, b"Ollama is running"))
        self.assertTrue(r.headers["content-type"].startswith("text/plain"))
        r = h.request("HEAD", self.d.url + "/")
        self.assertEqual((r.status, r.body), (200, b""))
        r = h.request("GET", self.d.url + "/api/version")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], JSON_UTF8)
        self.assertRegex(r.json()["version"], r"^\d+\.\d+\.\d+")
        # An unknown /api/ route is a newer Ollama's: passed to a node, whose
        # own answer (Ollama's gin 404) comes back (issue 17 item 8).
        r = h.request("GET", self.d.url + "/api/nothing-here")
        self.assertEqual((r.status, r.body), (404, b"404 page not found"))
        r = h.request("GET", self.d.url + "/nothing-here")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.headers["content-type"], JSON_UTF8)
        self.assertIn("/nothing-here", r.json()["error"])
        for method, path, allow in (("GET", "/api/chat", "POST"), ("PUT", "/api/generate", "POST"),
                                    ("POST", "/api/tags", "GET, HEAD"),
                                    ("GET", "/api/delete", "DELETE"), ("DELETE", "/", "GET, HEAD")):
            with self.subTest(method=method, path=path):
                r = h.request(method, self.d.url + path)
                self.assertEqual(r.status, 405)
                self.assertEqual(r.headers.get("allow"), allow)
                self.assertIsInstance(r.json()["error"], str)
        # OpenAI routes answer in OpenAI's error shape
        r = h.request("GET", self.d.url + "/v1/chat/completions")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers.get("allow"), "POST")
        err = r.json()["error"]
        self.assertEqual(set(err), {"message", "type", "param", "code"})
        r = h.request("GET", self.d.url + "/v1/models/no-such-model:1b")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["error"]["type"], "not_found_error")

    def test_bad_requests(self):
        cases = [
            ("/api/chat", b"{not json", 400, "invalid JSON: "),
            ("/api/chat", b"", 400, None),
            ("/api/chat", b"[1,2]", 400, "invalid JSON: "),
            ("/api/chat", b'{"messages":[]}', 400, "model is required"),
            ("/api/generate", b'{"model":"","prompt":"x"}', 400, "model is required"),
            ("/api/generate", b'{"model":"' + MODEL.encode() + b'","stream":"yes"}', 400, None),
        ]
        before = h.sim_stats(self.sim.url)["requests_total"]
        for path, body, status, msg in cases:
            with self.subTest(body=body):
                r = h.request("POST", self.d.url + path, body=body,
                              headers={"Content-Type": "application/json"})
                self.assertEqual(r.status, status, r.body)
                self.assertEqual(r.headers["content-type"], JSON_UTF8)
                err = r.json()["error"]
                self.assertIsInstance(err, str)
                if msg and msg.endswith(": "):
                    self.assertTrue(err.startswith(msg) and len(err) > len(msg), err)
                elif msg:
                    self.assertEqual(err, msg)
        r = h.request("POST", self.d.url + "/v1/chat/completions", body=b"{oops",
                      headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        err = r.json()["error"]
        self.assertEqual(err["type"], "invalid_request_error")
        self.assertTrue(err["message"].startswith("invalid JSON: "), err)
        self.assertIsNone(err["param"])
        # none of these reached the node (probes aside)
        recs = [x for x in h.sim_stats(self.sim.url)["requests"]
                if x["id"] > before and x["method"] == "POST"]
        self.assertEqual(recs, [])

    def test_keep_alive(self):
        """Several requests, local and proxied, on one client connection."""
        conn = http.client.HTTPConnection(self.d.host, self.d.port, timeout=30)
        try:
            local_port = None
            plan = [("GET", "/api/version", None), ("POST", "/api/chat", chat_body(stream=False)),
                    ("GET", "/api/tags", None), ("POST", "/api/generate",
                                                 {"model": MODEL, "prompt": "x",
                                                  "options": {"num_predict": 3}}),
                    ("GET", "/", None), ("GET", "/api/ps", None),
                    ("POST", "/api/chat", chat_body(stream=False))]
            for method, path, body in plan:
                data = json.dumps(body).encode() if body is not None else None
                hdrs = {"Content-Type": "application/json"} if data else {}
                conn.request(method, path, body=data, headers=hdrs)
                resp = conn.getresponse()
                payload = resp.read()
                self.assertEqual(resp.status, 200, (path, payload))
                self.assertNotEqual((resp.getheader("connection") or "").lower(), "close",
                                    "%s %s closed the connection" % (method, path))
                port = conn.sock.getsockname()[1]
                if local_port is None:
                    local_port = port
                self.assertEqual(port, local_port, "a new connection was opened for " + path)
        finally:
            conn.close()
        # pipelined: all four answers come back, in order, on one connection
        gen = json.dumps({"model": MODEL, "prompt": "x", "stream": False,
                          "options": {"num_predict": 2}}).encode()
        post = (b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(gen), gen))
        get = b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n"
        last = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        raw = h.raw_exchange(self.d.host, self.d.port, post + get + post + last, timeout=10)
        self.assertEqual(raw.count(b"HTTP/1.1 200 OK\r\n"), 4, raw)
        self.assertTrue(raw.endswith(b"Ollama is running"), raw[-200:])

    def test_disconnect_mid_stream_cancels_node(self):
        h.sim_reset(self.sim.url)
        s = h.open_stream("POST", self.d.url + "/api/chat", chat_body(options={"num_predict": 200}))
        it = s.lines()
        next(it)
        next(it)
        s.close()
        t0 = time.monotonic()
        h.wait_until(lambda: h.sim_stats(self.sim.url)["cancelled"] == 1, timeout=1.0,
                     msg="node saw the cancellation within 1 s")
        self.assertLess(time.monotonic() - t0, 1.0)
        st = h.sim_stats(self.sim.url)
        self.assertEqual(st["in_flight"], 0)
        rec = records(self.sim.url, "/api/chat")[-1]
        self.assertEqual(rec["outcome"], "cancelled")
        h.wait_until(lambda: h.get_json(self.d.url + "/api/health")["requests_live"] == 0,
                     timeout=2, msg="daemon freed the request")
        self.assertEqual(h.get_json(self.d.url + "/api/stats")["nodes"][0]["in_flight"], 0)


class ReceiveBufferTest(unittest.TestCase):
    """libcurl reads a streamed answer with a 1 KiB buffer and a complete
    one with 64 KiB, and a chunked stream's MHD response has no block of
    its own (request.c: memory per open stream): a stream line longer than
    the small buffer, a 1.7 MiB answer and an HTTP/1.0 client's unframed
    stream all arrive byte for byte as the node sent them."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", "0", "--ttft-ms", "0", "--prompt-tps", "0",
                              "--name", "a", test=cls)
        cls.d = start_daemon(cls, [("a", cls.sim.url)])

    def same_as_node(self, body):
        direct = h.post_json(self.sim.url + "/api/generate", body)
        proxied = h.post_json(self.d.url + "/api/generate", body)
        self.assertEqual(direct.status, 200, direct)
        self.assertEqual(proxied.status, 200, proxied)
        self.assertEqual(normalize(proxied.body), normalize(direct.body))
        return proxied.body

    def test_stream_line_longer_than_buffer(self):
        # the final line carries the context: 2,000 token ids, ~12 KiB
        body = self.same_as_node({"model": MODEL, "prompt": "hi",
                                  "options": {"num_predict": 2000}})
        lines = body.rstrip(b"\n").split(b"\n")
        self.assertEqual(len(lines), 2001)
        self.assertGreater(len(lines[-1]), 8 * 1024)
        self.assertEqual(json.loads(lines[-1])["eval_count"], 2000)

    def test_http10_stream_unframed(self):
        # No chunked encoding for an HTTP/1.0 client: the stream goes out
        # through the response's own block, and the close ends it.
        body = json.dumps({"model": MODEL, "prompt": "hi", "options": {"num_predict": 300}})
        req = ("POST /api/generate HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode()
        raw = h.raw_exchange(self.d.host, self.d.port, req, timeout=h.scaled(10))
        head, _, got = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1."), head[:80])
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        self.assertNotIn(b"chunked", head.lower())
        direct = h.post_json(self.sim.url + "/api/generate", json.loads(body))
        self.assertEqual(normalize(got), normalize(direct.body))
        self.assertGreater(len(got), 8 * 1024)

    def test_large_complete_answer(self):
        body = self.same_as_node({"model": MODEL, "prompt": "hi", "stream": False,
                                  "options": {"num_predict": 150000}})
        self.assertGreater(len(body), 1 << 20)
        self.assertEqual(json.loads(body)["eval_count"], 150000)


class NodeHeadersTest(unittest.TestCase):
    """Headers configured for a node reach it; the client's credentials do not."""

    def test_configured_headers(self):
        import tempfile
        sim = h.start_sim("--tokens-per-second", "0", test=self, models=(MODEL + ",loaded",))
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"nodes": [{"url": sim.url, "name": "guarded",
                                  "headers": {"Authorization": "Bearer node-secret"}}]}, f)
        self.addCleanup(os.unlink, f.name)
        d = start_daemon(self, [], "--config", f.name)
        r = h.post_json(d.url + "/api/chat", chat_body(stream=False),
                        headers={"Authorization": "Bearer client-secret"})
        self.assertEqual((r.status, r.headers.get("x-sollol-node")), (200, "guarded"))
        recs = h.sim_stats(sim.url)["requests"]
        chat = [x for x in recs if x["path"] == "/api/chat"][-1]
        self.assertTrue(chat["authorization_present"])
        probes = [x for x in recs if x["path"] == "/api/version"]
        self.assertTrue(probes and all(x["authorization_present"] for x in probes))
        self.assertNotIn("node-secret", h.request("GET", d.url + "/api/stats").text)


class WaitingDisconnectTest(unittest.TestCase):
    """A client that leaves before the first token also frees the node."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--ttft-ms", "5000", "--tokens-per-second", "10", test=cls,
                              models=(MODEL + ",loaded",))
        cls.d = start_daemon(cls, [("slow", cls.sim.url)])

    def setUp(self):
        h.sim_fault(self.sim.url, "none")
        h.sim_reset(self.sim.url)

    def _send_and_leave(self, path, body):
        s = h.raw_connect(self.d.host, self.d.port)
        data = json.dumps(body).encode()
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
        h.wait_until(lambda: h.sim_stats(self.sim.url)["in_flight"] == 1, timeout=5,
                     msg="request reached the node")
        time.sleep(0.2)
        s.close()
        return time.monotonic()

    def test_disconnect_before_first_token(self):
        t0 = self._send_and_leave("/api/chat", chat_body())
        h.wait_until(lambda: h.sim_stats(self.sim.url)["cancelled"] == 1, timeout=1.0,
                     msg="cancellation within 1 s")
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(h.sim_stats(self.sim.url)["in_flight"], 0)
        h.wait_until(lambda: h.get_json(self.d.url + "/api/health")["requests_live"] == 0,
                     timeout=2, msg="daemon freed the request and its connection")

    def test_disconnect_while_node_hangs(self):
        h.sim_fault(self.sim.url, "hang", count=1)
        t0 = self._send_and_leave("/api/generate", {"model": MODEL, "prompt": "x", "stream": False})
        h.wait_until(lambda: h.sim_stats(self.sim.url)["in_flight"] == 0, timeout=1.0,
                     msg="hung request released within 1 s")
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(records(self.sim.url, "/api/generate")[-1]["outcome"], "fault:hang")
        h.wait_until(lambda: h.get_json(self.d.url + "/api/health")["requests_live"] == 0,
                     timeout=2, msg="daemon freed the request and its connection")


class LimitsTest(unittest.TestCase):
    """--max-body 2KiB: larger bodies are refused, declared or chunked."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", "0", test=cls, models=(MODEL + ",loaded",))
        cls.d = start_daemon(cls, [("a", cls.sim.url)], "--max-body", "2KiB")

    def big_body(self, size):
        pad = "x" * size
        return json.dumps(chat_body(content=pad, stream=False)).encode()

    def chunked_request(self, body, chunk=500):
        req = (b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"X-Sollol-Continue: 0\r\n"  # the body as sent (test_continue.py)
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        for i in range(0, len(body), chunk):
            part = body[i:i + chunk]
            req += b"%x\r\n%s\r\n" % (len(part), part)
        req += b"0\r\n\r\n"
        return h.raw_exchange(self.d.host, self.d.port, req, timeout=10)

    @staticmethod
    def split(raw):
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        if headers.get("transfer-encoding") == "chunked":
            out = b""
            while body:
                size_line, _, rest = body.partition(b"\r\n")
                n = int(size_line, 16)
                if n == 0:
                    break
                out += rest[:n]
                body = rest[n + 2:]
            body = out
        return status, headers, body

    def test_content_length_over_limit(self):
        before = h.sim_stats(self.sim.url)["requests_total"]
        r = h.request("POST", self.d.url + "/api/chat", body=self.big_body(3000),
                      headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 413)
        self.assertEqual(r.headers["content-type"], JSON_UTF8)
        self.assertIn("too large", r.json()["error"])
        r = h.request("POST", self.d.url + "/v1/chat/completions", body=self.big_body(3000),
                      headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json()["error"]["type"], "invalid_request_error")
        posts = [x for x in h.sim_stats(self.sim.url)["requests"]
                 if x["id"] > before and x["method"] == "POST"]
        self.assertEqual(posts, [])

    def test_chunked_over_limit(self):
        status, headers, body = self.split(self.chunked_request(self.big_body(5000)))
        self.assertEqual(status, 413)
        self.assertIn("too large", json.loads(body)["error"])
        # the daemon is fine afterwards
        r = h.post_json(self.d.url + "/api/chat", chat_body(stream=False))
        self.assertEqual(r.status, 200)

    def test_chunked_within_limit_reaches_node_intact(self):
        body = self.big_body(1500)
        self.assertLess(len(body), 2048)
        status, headers, resp = self.split(self.chunked_request(body, chunk=100))
        self.assertEqual(status, 200, resp)
        self.assertTrue(json.loads(resp)["done"])
        rec = records(self.sim.url, "/api/chat")[-1]
        self.assertEqual((rec["body_len"], rec["body_fnv1a64"]), (len(body), h.fnv1a64(body)))

    def test_exact_limit_accepted(self):
        body = self.big_body(1800)
        body = body.replace(b"x", b"x" * (2048 - len(body) + 1), 1)
        self.assertEqual(len(body), 2048)
        r = h.request("POST", self.d.url + "/api/chat", body=body,
                      headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r.body)


class UnreachableNodeTest(unittest.TestCase):
    """Nodes that cannot be reached: never up, or gone between probes."""

    def test_node_never_up(self):
        # A bound but not listening socket: connections to it are refused.
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        self.addCleanup(holder.close)
        port = holder.getsockname()[1]
        d = start_daemon(self, [("ghost", "127.0.0.1:%d" % port)])
        health = h.request("GET", d.url + "/api/health")
        self.assertEqual(health.status, 503)
        self.assertEqual(health.json()["status"], "down")
        st = h.get_json(d.url + "/api/stats")
        self.assertEqual(st["nodes"][0]["state"], "down")
        self.assertTrue(st["nodes"][0]["last_error"])
        r = h.post_json(d.url + "/api/chat", chat_body(stream=False))
        self.assertEqual(r.status, 503)
        self.assertTrue(r.headers.get("retry-after", "").isdigit(), r.headers)
        msg = r.json()["error"]
        self.assertIn(MODEL, msg)
        self.assertIn("ghost", msg, "the message should name the node that is down")
        self.assertIn("down", msg)

    def test_node_dies_between_probe_and_request(self):
        sim = h.start_sim("--tokens-per-second", "0", test=self, check_exit=False,
                          models=(MODEL + ",loaded",))
        d = start_daemon(self, [("mortal", sim.url)],
                         probes=("--probe-interval", "1h", "--tags-interval", "1h"))
        self.assertEqual(h.post_json(d.url + "/api/chat", chat_body(stream=False)).status, 200)
        sim.popen.kill()
        sim.popen.wait()
        for path, openai in (("/api/chat", False), ("/v1/chat/completions", True)):
            r = h.post_json(d.url + path, chat_body(stream=False))
            self.assertEqual(r.status, 502, r.body)
            self.assertEqual(r.headers["content-type"], JSON_UTF8)
            msg = r.json()["error"]["message"] if openai else r.json()["error"]
            self.assertIn("mortal", msg)
            self.assertEqual(r.headers.get("x-sollol-node"), "mortal")


class BackpressureTest(unittest.TestCase):
    """A slow reader of a long, fast stream holds the node back instead of
    filling the daemon's memory."""

    TOKENS = 300000  # ~33 MB of NDJSON

    def test_slow_reader(self):
        sim = h.start_sim("--tokens-per-second", "0", "--ttft-ms", "0", test=self,
                          models=(MODEL + ",loaded",))
        d = start_daemon(self, [("a", sim.url)])
        h.post_json(d.url + "/api/generate", {"model": MODEL, "prompt": "warm", "stream": False,
                                              "options": {"num_predict": 50}})
        base = h.rss_bytes(d.popen.pid)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(60)
        sock.connect((d.host, d.port))
        conn = http.client.HTTPConnection(d.host, d.port, timeout=60)
        conn.sock = sock
        self.addCleanup(conn.close)
        body = {"model": MODEL, "prompt": "long", "raw": True,
                "options": {"num_predict": self.TOKENS}}
        conn.request("POST", "/api/generate", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        first = json.loads(resp.readline())
        self.assertFalse(first["done"])
        # Stop reading: the node is fast, the client is not.
        peak = base
        for _ in range(20):
            time.sleep(0.1)
            peak = max(peak, h.rss_bytes(d.popen.pid))
        growth = peak - base
        self.assertLess(growth, 12 << 20, "daemon RSS grew by %.1f MiB while the client paused"
                        % (growth / 1048576))
        # the daemon still serves others meanwhile
        t0 = time.monotonic()
        self.assertEqual(h.request("GET", d.url + "/api/health", timeout=10).status, 200)
        self.assertLess(time.monotonic() - t0, 2.0)
        # resume: the whole stream arrives intact
        count, last, nbytes = 1, None, 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = resp.readline()
            if not line:
                break
            count += 1
            nbytes += len(line)
            last = line
        self.assertEqual(count, self.TOKENS + 1)
        self.assertGreater(nbytes, 20 << 20)
        final = json.loads(last)
        self.assertTrue(final["done"])
        self.assertEqual(final["eval_count"], self.TOKENS)
        # (RSS after the whole stream is not compared: under ASan, freed
        # buffers stay in its quarantine and RSS grows with throughput.)


class ShutdownTest(unittest.TestCase):
    """SIGTERM with no grace period (--shutdown-grace 0): exit 0 promptly; an
    open stream ends with an error line. (The graceful path, where running
    streams finish first, is tests/e2e/test_ops.py's.)"""

    def setUp(self):
        self.sim = h.start_sim("--tokens-per-second", "10", "--ttft-ms", "0", test=self,
                               models=(MODEL + ",loaded",))

    def test_idle(self):
        d = start_daemon(self, [("a", self.sim.url)], "--shutdown-grace", "0")
        self.assertEqual(h.post_json(d.url + "/api/chat", chat_body(stream=False)).status, 200)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        self.assertEqual(d.popen.wait(timeout=10), 0, d.stderr_text())
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_with_open_stream(self):
        d = start_daemon(self, [("a", self.sim.url)], "--shutdown-grace", "0")
        s = h.open_stream("POST", d.url + "/api/chat", chat_body(options={"num_predict": 200}))
        self.addCleanup(s.close)
        it = s.lines()
        next(it)
        next(it)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rest = list(it)
        self.assertFalse(s.incomplete, "the stream was cut, not ended")
        self.assertTrue(rest, "no final line")
        self.assertIsNotNone(rest[-1].json, rest[-1].raw)
        self.assertIn("error", rest[-1].json)
        self.assertIn("shutting down", rest[-1].json["error"])
        self.assertLess(len(rest), 20)
        self.assertEqual(d.popen.wait(timeout=10), 0, d.stderr_text())
        self.assertLess(time.monotonic() - t0, 3.0)
        h.wait_until(lambda: h.sim_stats(self.sim.url)["in_flight"] == 0, timeout=2,
                     msg="the node's work was cancelled")
        self.assertEqual(h.sim_stats(self.sim.url)["cancelled"], 1)

    def test_with_request_waiting_for_first_byte(self):
        d = start_daemon(self, [("a", self.sim.url)], "--shutdown-grace", "0")
        h.sim_fault(self.sim.url, "hang", count=1)
        s = h.raw_connect(d.host, d.port)
        self.addCleanup(s.close)
        data = json.dumps(chat_body(stream=False)).encode()
        s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        h.wait_until(lambda: h.sim_stats(self.sim.url)["in_flight"] == 1, timeout=5,
                     msg="request reached the node")
        d.signal(signal.SIGTERM)
        self.assertEqual(d.popen.wait(timeout=10), 0, d.stderr_text())
        raw = b""
        s.settimeout(5)
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 503"), raw)
        self.assertIn("shutting down", json.loads(body)["error"])
        h.wait_until(lambda: h.sim_stats(self.sim.url)["in_flight"] == 0, timeout=2,
                     msg="the hung attempt was cancelled")


if __name__ == "__main__":
    unittest.main(verbosity=2)
