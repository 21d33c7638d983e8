"""End-to-end tests of routing (issue "routing"): which node a request goes
to, what happens when nodes fail before or after the first byte, nodes that
go away and come back, the circuit breaker, model names, the aggregated
endpoints and the requests sent to several nodes.

Run: python3 -B tests/e2e/test_routing.py (SOLLOL_BUILD_DIR selects the build).
Timing assertions are loose: CI is a busy 2-core machine.
"""

import hashlib
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

JSON_UTF8 = "application/json; charset=utf-8"
FAST_PROBES = ("--probe-interval", "200ms", "--tags-interval", "500ms", "--probe-timeout", "500ms",
               "--breaker-cooldown-min", "300ms")
# Probes only at start-up: the node's state in the daemon stays as it was, so
# a request really meets the fault instead of a probe noticing it first.
NO_PROBES = ("--probe-interval", "1h", "--tags-interval", "1h")


def chat_body(model, content="route me", **kw):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    body.update(kw)
    return body


def start_daemon(test, nodes, *extra, probes=FAST_PROBES):
    args = ["--listen", "127.0.0.1:0"]
    for name, url in nodes:
        args += ["--node", "%s=%s" % (name, url)]
    args += list(probes) + [str(a) for a in extra]
    return h.start_process("sollold", args, test=test)


def node_stats(daemon, name):
    for n in h.get_json(daemon.url + "/api/stats")["nodes"]:
        if n["name"] == name:
            return n
    raise AssertionError("no node %s in /api/stats" % name)


def chat_records(url, model=None):
    recs = [r for r in h.sim_stats(url)["requests"]
            if r["path"] in ("/api/chat", "/api/generate", "/v1/chat/completions")]
    if model is not None:
        recs = [r for r in recs if r["model"] == model]
    return recs


def tag_names(url):
    return {m["name"] for m in h.get_json(url + "/api/tags")["models"]}


class RoutingTest(unittest.TestCase):
    """Three nodes that differ in models, loaded state and speed."""

    @classmethod
    def setUpClass(cls):
        cls.alpha = h.start_sim("--name", "alpha", "--tokens-per-second", "200", "--ttft-ms", "0",
                                models=("llama3.2:latest,loaded", "qwen3:4b"), test=cls)
        cls.beta = h.start_sim("--name", "beta", "--tokens-per-second", "100", "--ttft-ms", "0",
                               "--load-ms", "300",
                               models=("llama3.2:latest", "mistral:7b,loaded"), test=cls)
        cls.gamma = h.start_sim("--name", "gamma", "--tokens-per-second", "50", "--ttft-ms", "0",
                                models=("phi3:mini,loaded", "nomic-embed-text:latest,embed"),
                                test=cls)
        cls.sims = {"alpha": cls.alpha, "beta": cls.beta, "gamma": cls.gamma}
        cls.d = start_daemon(cls, [(n, s.url) for n, s in cls.sims.items()])

    def post(self, path, body, **kw):
        return h.post_json(self.d.url + path, body, **kw)

    def test_requests_land_where_the_model_is(self):
        cases = [("mistral:7b", "beta", "/api/chat"), ("phi3:mini", "gamma", "/api/chat"),
                 ("qwen3:4b", "alpha", "/api/generate"),
                 ("nomic-embed-text", "gamma", "/api/embed")]
        for model, node, path in cases:
            with self.subTest(model=model):
                if path == "/api/chat":
                    body = chat_body(model, stream=False, options={"num_predict": 3})
                elif path == "/api/generate":
                    body = {"model": model, "prompt": "x", "stream": False,
                            "options": {"num_predict": 3}}
                else:
                    body = {"model": model, "input": "x"}
                r = self.post(path, body)
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.headers.get("x-sollol-node"), node)
                for name, sim in self.sims.items():
                    got = [x for x in h.sim_stats(sim.url)["requests"]
                           if x["path"] == path and x["model"] == model]
                    if name == node:
                        self.assertTrue(got, "%s got no %s request" % (name, model))
                        self.assertEqual(got[-1]["outcome"], "completed")
                    else:
                        self.assertEqual(got, [], "%s got a %s request" % (name, model))

    def test_loaded_model_preferred_over_cold_load(self):
        for i in range(4):
            r = self.post("/api/chat", chat_body("llama3.2:latest", content="q%d" % i,
                                                 stream=False, options={"num_predict": 3}))
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers.get("x-sollol-node"), "alpha")
        # beta never had to load llama3.2 (it only served mistral, if anything)
        self.assertEqual([x for x in chat_records(self.beta.url) if x["model"] != "mistral:7b"],
                         [])
        self.assertEqual(h.sim_stats(self.beta.url)["loaded"][0]["name"], "mistral:7b")
        self.assertEqual(len(h.sim_stats(self.beta.url)["loaded"]), 1)

    def test_model_names(self):
        for given in ("llama3.2", "llama3.2:latest", "library/llama3.2",
                      "registry.ollama.ai/library/llama3.2:latest", "LLAMA3.2"):
            with self.subTest(model=given):
                r = self.post("/api/chat", chat_body(given, stream=False,
                                                     options={"num_predict": 2}))
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.headers.get("x-sollol-node"), "alpha")
                self.assertEqual(chat_records(self.alpha.url)[-1]["model"], given)
        r = self.post("/api/chat", chat_body("nope:1b", stream=False))
        self.assertEqual(r.status, 404)
        self.assertEqual(r.headers["content-type"], JSON_UTF8)
        self.assertEqual(r.json(), {"error": "model 'nope:1b' not found on any node"})
        r = self.post("/v1/chat/completions", chat_body("nope:1b"))
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["error"]["type"], "not_found_error")
        self.assertIn("nope:1b", r.json()["error"]["message"])
        # a tag that exists nowhere is not the model of another tag
        r = self.post("/api/chat", chat_body("llama3.2:70b", stream=False))
        self.assertEqual(r.status, 404)

    def test_route_unknown_to_nodes_is_not_a_missing_model(self):
        """A node's plain 404 for a route it lacks (/v1/responses here) is
        passed through once: not retried on every node, and the model stays
        routable."""
        body = {"model": "llama3.2", "input": "hello"}
        r = self.post("/v1/responses", body)
        self.assertEqual((r.status, r.body), (404, b"404 page not found"))
        hits = {n: len([x for x in h.sim_stats(s.url)["requests"] if x["path"] == "/v1/responses"])
                for n, s in self.sims.items()}
        self.assertEqual(sum(hits.values()), 1, hits)
        self.assertEqual(hits[r.headers["x-sollol-node"]], 1)
        r = self.post("/api/chat", chat_body("llama3.2", stream=False, options={"num_predict": 2}))
        self.assertEqual((r.status, r.headers.get("x-sollol-node")), (200, "alpha"), r.body)

    def test_tags_union(self):
        expected = {}
        for sim in self.sims.values():
            for m in h.get_json(sim.url + "/api/tags")["models"]:
                expected.setdefault(m["name"], []).append(m)
        got = h.get_json(self.d.url + "/api/tags")["models"]
        self.assertEqual(sorted(m["name"] for m in got), sorted(expected))
        for m in got:
            self.assertIn(m, expected[m["name"]])
        stamps = [m["modified_at"] for m in got]
        self.assertEqual(stamps, sorted(stamps, reverse=True), "newest first")
        r = h.request("HEAD", self.d.url + "/api/tags")
        self.assertEqual((r.status, r.body), (200, b""))

    def test_ps_union(self):
        def expected():
            out = {}
            for name, sim in self.sims.items():
                for m in h.get_json(sim.url + "/api/ps")["models"]:
                    out[(m["name"], name)] = m
            return out

        def matches():
            got = {(m["name"], m.get("node")): m
                   for m in h.get_json(self.d.url + "/api/ps")["models"]}
            return got if set(got) == set(expected()) else None

        got = h.wait_until(matches, timeout=5, interval=0.1, msg="/api/ps equals the union")
        want = expected()
        self.assertIn(("llama3.2:latest", "alpha"), got)
        self.assertIn(("phi3:mini", "gamma"), got)
        for key, m in got.items():
            self.assertIn(m["node"], self.sims)
            for field in ("model", "size", "digest", "details", "size_vram", "context_length"):
                self.assertEqual(m[field], want[key][field], (key, field))

    def test_openai_models(self):
        names = set()
        for sim in self.sims.values():
            names |= tag_names(sim.url)
        r = h.get_json(self.d.url + "/v1/models")
        self.assertEqual(r["object"], "list")
        self.assertEqual(sorted(m["id"] for m in r["data"]), sorted(names))
        for m in r["data"]:
            self.assertEqual(m["object"], "model")
            self.assertEqual(m["owned_by"], "library")
            self.assertIsInstance(m["created"], int)
        one = h.get_json(self.d.url + "/v1/models/phi3:mini")
        self.assertEqual((one["id"], one["object"]), ("phi3:mini", "model"))
        direct = h.get_json(self.gamma.url + "/v1/models/phi3:mini")
        self.assertEqual(one["created"], direct["created"])
        r = h.request("GET", self.d.url + "/v1/models/missing:1b")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["error"]["type"], "not_found_error")

    def test_explain_header(self):
        r = self.post("/api/chat", chat_body("llama3.2", stream=False, options={"num_predict": 2}),
                      headers={"X-Sollol-Explain": "1"})
        self.assertEqual(r.status, 200)
        ex = r.headers.get("x-sollol-explain")
        self.assertTrue(ex, r.headers)
        self.assertIn("alpha", ex)
        self.assertIn("beta", ex)
        self.assertIn("gamma", ex)  # skipped: it lacks the model
        self.assertLess(ex.index("alpha"), ex.index("beta"), "best candidate first: " + ex)
        r = self.post("/api/chat", chat_body("llama3.2", stream=False, options={"num_predict": 2}))
        self.assertNotIn("x-sollol-explain", r.headers)

    def test_health_and_stats(self):
        health = h.get_json(self.d.url + "/api/health")
        self.assertEqual(health["status"], "ok")
        self.assertEqual((health["nodes_up"], health["nodes_total"]), (3, 3))
        self.assertIsInstance(health["requests_live"], int)
        self.assertIsInstance(health["version"], str)
        st = h.get_json(self.d.url + "/api/stats")
        for key in ("version", "uptime_s", "requests_live", "requests_total", "routing", "nodes"):
            self.assertIn(key, st)
        self.assertEqual(st["routing"], "cost")
        self.assertEqual([n["name"] for n in st["nodes"]], ["alpha", "beta", "gamma"])
        for n in st["nodes"]:
            sim = self.sims[n["name"]]
            self.assertEqual(n["url"], sim.url)
            self.assertEqual(n["state"], "up")
            self.assertEqual(n["ollama_version"], h.get_json(sim.url + "/api/version")["version"])
            self.assertEqual(n["breaker"]["state"], "closed")
            installed = {m["name"] for m in n["models"] if m["installed"]}
            self.assertEqual(installed, tag_names(sim.url))
            for m in n["models"]:
                for k in ("loaded", "gone", "in_flight", "gen_tps", "samples"):
                    self.assertIn(k, m)


class SpreadTest(unittest.TestCase):
    """Concurrent requests spread over identical nodes instead of piling up."""

    def test_concurrent_requests_spread(self):
        twins = {}
        for name in ("twin1", "twin2"):
            twins[name] = h.start_sim("--name", name, "--tokens-per-second", "20", "--ttft-ms", "0",
                                      models=("llama3.2:3b,loaded",), test=self)
        d = start_daemon(self, [(n, s.url) for n, s in twins.items()])

        def one(i):
            def run():
                with h.open_stream("POST", d.url + "/api/chat",
                                   chat_body("llama3.2:3b", content="c%d" % i,
                                             options={"num_predict": 20})) as s:
                    events = list(s.lines())
                    return s.status, s.headers.get("x-sollol-node"), events[-1].json
            return run
        results = h.run_parallel([one(i) for i in range(6)], timeout=60)
        for status, node, last in results:
            self.assertEqual(status, 200)
            self.assertTrue(last["done"], last)
        counts = {n: sum(1 for r in results if r[1] == n) for n in twins}
        self.assertEqual(sum(counts.values()), 6, results)
        for name, sim in twins.items():
            st = h.sim_stats(sim.url)
            self.assertGreaterEqual(counts[name], 2, counts)
            self.assertEqual(len(chat_records(sim.url)), counts[name])
            self.assertLessEqual(counts[name], 4, counts)
            # they ran side by side on each node (probes may add to this)
            self.assertGreaterEqual(st["max_in_flight"], 2, (name, counts))


class FailoverTest(unittest.TestCase):
    """Two nodes with the model: "prime" has it loaded (preferred), "spare"
    must load it. Faults are injected on prime."""

    MODEL = "llama3.2:3b"

    def setUp(self):
        self.prime = h.start_sim("--name", "prime", "--tokens-per-second", "100", "--ttft-ms", "0",
                                 models=(self.MODEL + ",loaded",), test=self, check_exit=False)
        # spare is slower than the daemon's default guess (30 tokens/s), so
        # serving a retry does not make it look better than prime.
        self.spare = h.start_sim("--name", "spare", "--tokens-per-second", "20", "--ttft-ms", "0",
                                 "--load-ms", "50", models=(self.MODEL,), test=self)
        self.d = start_daemon(self, [("prime", self.prime.url), ("spare", self.spare.url)],
                              "--first-byte-timeout", "1s", "--idle-timeout", "1s",
                              # retries, not the breaker (BreakerTest), are tested here
                              "--breaker-failures", "1000", "--breaker-min-requests", "100000",
                              probes=NO_PROBES)
        # prime's speed is learned: it stays the cheapest node throughout
        r = self.post("/api/chat", self.body(False))
        self.assertEqual(r.headers.get("x-sollol-node"), "prime")

    def body(self, stream, n=5):
        return json.dumps(chat_body(self.MODEL, stream=stream,
                                    options={"num_predict": n})).encode()

    def post(self, path, data):
        # X-Sollol-Continue: 0 keeps a non-streamed chat's body as the client
        # sent it (by default it is asked of the node as a stream, so a
        # failure can be continued: test_continue.py)
        return h.request("POST", self.d.url + path, body=data,
                         headers={"Content-Type": "application/json", "X-Sollol-Continue": "0"})

    def assert_retried_on_spare(self, r, data, path="/api/chat"):
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.headers.get("x-sollol-node"), "spare")
        rec = [x for x in h.sim_stats(self.spare.url)["requests"] if x["path"] == path][-1]
        self.assertEqual((rec["body_len"], rec["body_fnv1a64"]), (len(data), h.fnv1a64(data)),
                         "the retry sent the client's body unchanged")
        self.assertEqual(rec["outcome"], "completed")

    def test_healthy_prime_is_preferred(self):
        data = self.body(False)
        r = self.post("/api/chat", data)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("x-sollol-node"), "prime")
        self.assertEqual(chat_records(self.spare.url), [])

    def test_error_statuses_before_first_byte_are_retried(self):
        for mode, arg in (("500", None), ("503", None), ("429", 1)):
            with self.subTest(fault=mode):
                before = h.sim_stats(self.prime.url)["faults_injected"]
                for stream in (False, True):
                    h.sim_fault(self.prime.url, mode, arg=arg, count=1)
                    data = self.body(stream)
                    r = self.post("/api/chat", data)
                    self.assert_retried_on_spare(r, data)
                    lines = [json.loads(x) for x in r.body.splitlines()]
                    self.assertTrue(lines[-1]["done"])
                    self.assertNotIn("error", r.text)
                self.assertEqual(h.sim_stats(self.prime.url)["faults_injected"], before + 2)

    def test_every_node_failing(self):
        # the last node's own answer comes back when no node is left to try
        for sim in (self.prime, self.spare):
            h.sim_fault(sim.url, "500", count=1)
        r = self.post("/api/chat", self.body(False))
        self.assertEqual(r.status, 500)
        self.assertEqual(r.json(), {"error": "llama runner process has terminated: exit status 2"})
        self.assertEqual(r.headers.get("x-sollol-node"), "spare")
        # no answer at all from either: the daemon's own 504, naming the node
        for sim in (self.prime, self.spare):
            h.sim_fault(sim.url, "hang", count=1)
        t0 = time.monotonic()
        r = self.post("/api/chat", self.body(True))
        self.assertGreaterEqual(time.monotonic() - t0, 1.8, "two first-byte timeouts of 1 s")
        self.assertEqual(r.status, 504, r.body)
        self.assertEqual(r.headers["content-type"], JSON_UTF8)
        self.assertIn("spare", r.json()["error"])
        self.assertIn("timed out", r.json()["error"])

    def test_404_for_a_listed_model_is_retried(self):
        h.sim_fault(self.prime.url, "404", count=1)
        data = self.body(False)
        r = self.post("/api/chat", data)
        self.assert_retried_on_spare(r, data)
        self.assertEqual(h.sim_stats(self.prime.url)["faults_injected"], 1)
        # the daemon re-reads prime's tags, finds the model again, routes there
        h.wait_until(lambda: self.post("/api/chat", self.body(False))
                     .headers.get("x-sollol-node") == "prime",
                     timeout=5, interval=0.2, msg="prime routable again")

    def test_long_non_streamed_generation_is_not_cut(self):
        # 250 tokens at 100 tokens/s: the answer's first byte comes after
        # ~2.5 s, past the 1 s first-byte timeout; the expected generation
        # time on prime (its learned speed) extends the wait for it.
        data = self.body(False, n=250)
        r = self.post("/api/chat", data)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.headers.get("x-sollol-node"), "prime")
        self.assertEqual(json.loads(r.body)["eval_count"], 250)
        self.assertEqual(chat_records(self.spare.url), [], "not started again on spare")

    def test_hang_before_first_byte_times_out_and_retries(self):
        h.sim_fault(self.prime.url, "hang", count=1)
        data = self.body(True)
        t0 = time.monotonic()
        r = self.post("/api/chat", data)
        elapsed = time.monotonic() - t0
        self.assert_retried_on_spare(r, data)
        self.assertGreaterEqual(elapsed, 0.9, "first-byte timeout is 1 s")
        # Under valgrind the daemon's timeouts are stretched by TIME_SCALE.
        self.assertLess(elapsed, h.scaled(10))
        h.wait_until(lambda: h.sim_stats(self.prime.url)["in_flight"] == 0, timeout=2,
                     msg="the hung attempt was cancelled on prime")

    def test_connection_cut_before_first_byte_is_retried(self):
        for stream in (True, False):
            with self.subTest(stream=stream):
                # Streamed, prime sends its headers and cuts; non-streamed it
                # cuts before any byte, and libcurl itself retries once on a
                # fresh connection when a reused one dies that way: cut twice.
                h.sim_fault(self.prime.url, "close", arg=0, count=1 if stream else 2)
                data = self.body(stream)
                r = self.post("/api/chat", data)
                self.assert_retried_on_spare(r, data)
                h.sim_fault(self.prime.url, "none")
        # every connection cut, including fresh ones
        h.sim_fault(self.prime.url, "close", arg=0, scope="all")
        data = self.body(False)
        r = self.post("/api/chat", data)
        self.assert_retried_on_spare(r, data)
        h.sim_fault(self.prime.url, "none")

    def test_refused_connection_is_retried(self):
        port = self.prime.port
        self.prime.popen.kill()
        self.prime.popen.wait()
        # The same address now refuses every connection (accepts and closes
        # it at once) for its first 3 s, control connections included.
        t0 = time.monotonic()
        refusing = h.start_sim("--name", "prime2", "--fault", "refuse:3000",
                               listen="127.0.0.1:%d" % port, models=(self.MODEL + ",loaded",),
                               test=self)
        data = self.body(True)
        r = self.post("/api/chat", data)
        self.assertLess(time.monotonic() - t0, 2.5, "too slow to meet the refusal window")
        self.assert_retried_on_spare(r, data)

        def stats():
            try:
                return h.sim_stats(refusing.url)
            except OSError:
                return None
        st = h.wait_until(stats, timeout=8, interval=0.2, msg="refusal window over")
        self.assertGreaterEqual(st["faults_injected"], 1, "prime2 never saw the request")

    def test_failure_after_first_byte_ends_stream_with_error_line(self):
        for mode, arg in (("stall", 2), ("close", 2)):
            with self.subTest(fault=mode):
                h.sim_reset(self.prime.url)
                h.sim_fault(self.prime.url, mode, arg=arg, count=1)
                t0 = time.monotonic()
                # Without continuation (test_continue.py covers it)
                with h.open_stream("POST", self.d.url + "/api/chat",
                                   chat_body(self.MODEL, options={"num_predict": 20}),
                                   headers={"X-Sollol-Continue": "0"}) as s:
                    self.assertEqual(s.status, 200)
                    self.assertEqual(s.headers.get("x-sollol-node"), "prime")
                    events = list(s.lines())
                    self.assertFalse(s.incomplete, "the stream must end cleanly")
                self.assertEqual(len(events), 3, events)
                for e in events[:2]:
                    self.assertFalse(e.json["done"])
                last = events[-1].json
                self.assertEqual(list(last), ["error"])
                self.assertTrue(last["error"].startswith("node prime failed: "), last)
                if mode == "stall":
                    self.assertIn("timed out", last["error"])
                    self.assertGreater(events[-1].t - t0, 0.9)
                h.wait_until(lambda: h.sim_stats(self.prime.url)["in_flight"] == 0, timeout=2,
                             msg="prime released")
        self.assertEqual(chat_records(self.spare.url), [], "no retry once bytes were sent")

    def test_failure_after_first_byte_openai_sse(self):
        h.sim_fault(self.prime.url, "close", arg=2, count=1)
        with h.open_stream("POST", self.d.url + "/v1/chat/completions",
                           chat_body(self.MODEL, stream=True, max_tokens=20),
                           headers={"X-Sollol-Continue": "0"}) as s:
            self.assertEqual(s.status, 200)
            events = list(s.sse())
            self.assertFalse(s.incomplete)
        self.assertEqual(len(events), 3, events)
        for e in events[:2]:
            self.assertEqual(e.json["object"], "chat.completion.chunk")
        err = events[-1].json
        self.assertIsNotNone(err, events[-1].raw)
        self.assertIn("error", err)
        self.assertTrue(err["error"]["message"].startswith("node prime failed: "), err)
        self.assertNotIn(b"[DONE]", [e.raw for e in events])


class BreakerTest(unittest.TestCase):
    """A node answering 503 busy stops attracting traffic."""

    MODEL = "llama3.2:3b"

    def test_busy_node_breaker_opens(self):
        busy = h.start_sim("--name", "busy", "--tokens-per-second", "200", "--ttft-ms", "0",
                           models=(self.MODEL + ",loaded",), test=self)
        # slower than the default guess, so once busy recovers it is cheaper again
        calm = h.start_sim("--name", "calm", "--tokens-per-second", "20", "--ttft-ms", "0",
                           "--load-ms", "20", models=(self.MODEL + ",loaded",), test=self)
        d = start_daemon(self, [("busy", busy.url), ("calm", calm.url)],
                         "--breaker-cooldown-min", "5s", "--breaker-cooldown-max", "5s")
        h.sim_fault(busy.url, "503")
        nodes = []
        for i in range(10):
            r = h.post_json(d.url + "/api/chat", chat_body(self.MODEL, content="b%d" % i,
                                                           stream=False,
                                                           options={"num_predict": 2}))
            self.assertEqual(r.status, 200, r.body)
            nodes.append(r.headers.get("x-sollol-node"))
        self.assertEqual(set(nodes), {"calm"})
        hits = h.sim_stats(busy.url)["faults_injected"]
        self.assertGreaterEqual(hits, 1)
        self.assertLessEqual(hits, 4, "busy kept getting requests: %d of 10" % hits)
        st = node_stats(d, "busy")
        self.assertEqual(st["breaker"]["state"], "open")
        self.assertGreaterEqual(st["breaker"]["opens_total"], 1)
        self.assertEqual(st["state"], "up", "a busy node still answers its probes")
        # recovered: after the cooldown it gets traffic again
        h.sim_fault(busy.url, "none")

        def lands_on_busy():
            r = h.post_json(d.url + "/api/chat", chat_body(self.MODEL, stream=False,
                                                           options={"num_predict": 2}))
            return r.status == 200 and r.headers.get("x-sollol-node") == "busy"
        h.wait_until(lands_on_busy, timeout=15, interval=0.3, msg="busy receives traffic again")
        self.assertEqual(node_stats(d, "busy")["breaker"]["state"], "closed")


class NodeLifecycleTest(unittest.TestCase):
    """A node killed and restarted on the same port goes down and comes back."""

    def test_kill_and_restart(self):
        solo = h.start_sim("--name", "solo", "--tokens-per-second", "0",
                           models=("phi3:mini,loaded",), test=self, check_exit=False)
        other = h.start_sim("--name", "other", "--tokens-per-second", "0",
                            models=("llama3.2:3b,loaded",), test=self)
        d = start_daemon(self, [("solo", solo.url), ("other", other.url)])
        body = chat_body("phi3:mini", stream=False, options={"num_predict": 2})
        self.assertEqual(h.post_json(d.url + "/api/chat", body).headers["x-sollol-node"], "solo")
        port = solo.port
        solo.popen.kill()
        solo.popen.wait()
        t0 = time.monotonic()
        h.wait_until(lambda: node_stats(d, "solo")["state"] == "down", timeout=5, interval=0.05,
                     msg="solo marked down")
        self.assertLess(time.monotonic() - t0, 3.0)
        health = h.get_json(d.url + "/api/health")
        self.assertEqual((health["status"], health["nodes_up"]), ("degraded", 1))
        self.assertNotIn("phi3:mini", {m["name"] for m in
                                       h.get_json(d.url + "/api/tags")["models"]})
        # the model is only on a down node: 503, try again later
        r = h.post_json(d.url + "/api/chat", body)
        self.assertEqual(r.status, 503)
        self.assertTrue(r.headers.get("retry-after", "").isdigit())
        self.assertIn("phi3:mini", r.json()["error"])
        self.assertIn("solo", r.json()["error"])
        # the other node is unaffected
        r = h.post_json(d.url + "/api/chat", chat_body("llama3.2:3b", stream=False))
        self.assertEqual((r.status, r.headers.get("x-sollol-node")), (200, "other"))
        # back on the same port
        back = h.start_sim("--name", "solo-again", "--tokens-per-second", "0",
                           listen="127.0.0.1:%d" % port, models=("phi3:mini,loaded",), test=self)
        t0 = time.monotonic()
        h.wait_until(lambda: node_stats(d, "solo")["state"] == "up", timeout=5, interval=0.05,
                     msg="solo back up")
        self.assertLess(time.monotonic() - t0, 3.0)
        r = h.wait_until(lambda: (lambda x: x if x.status == 200 else None)(
            h.post_json(d.url + "/api/chat", body)), timeout=3, interval=0.1,
            msg="phi3 routable again")
        self.assertEqual(r.headers["x-sollol-node"], "solo")
        self.assertEqual(chat_records(back.url, "phi3:mini")[-1]["outcome"], "completed")
        self.assertIn("phi3:mini", {m["name"] for m in h.get_json(d.url + "/api/tags")["models"]})


class FanoutTest(unittest.TestCase):
    """pull/delete/copy go to every node; create/push/blobs to one."""

    @classmethod
    def setUpClass(cls):
        cls.sims = {}
        for name, models in (("n1", ("llama3.2:3b,loaded",)), ("n2", ("llama3.2:3b",)),
                             ("n3", ("phi3:mini",))):
            cls.sims[name] = h.start_sim("--name", name, "--tokens-per-second", "0",
                                         models=models, test=cls)
        cls.d = start_daemon(cls, [(n, s.url) for n, s in cls.sims.items()])

    def tearDown(self):
        for s in self.sims.values():
            h.sim_fault(s.url, "none")

    def stream(self, path, body, headers=None):
        with h.open_stream("POST", self.d.url + path, body, headers=headers) as s:
            self.assertEqual(s.status, 200)
            self.assertEqual(s.headers["content-type"], "application/x-ndjson")
            events = list(s.lines())
            self.assertFalse(s.incomplete)
        for e in events:
            self.assertIsNotNone(e.json, e.raw)
        return s, [e.json for e in events]

    def test_pull_streams_from_every_node(self):
        s, lines = self.stream("/api/pull", {"model": "tinyllama:1b"})
        self.assertEqual(s.headers.get("x-sollol-node"), "*")
        self.assertEqual(lines[-1], {"status": "success"})
        self.assertEqual(sum(1 for x in lines if x.get("status") == "success"), 1)
        progress = lines[:-1]
        self.assertTrue(progress)
        for x in progress:
            self.assertIn(x.get("node"), self.sims, x)
            self.assertIn("status", x)
        self.assertEqual({x["node"] for x in progress}, set(self.sims))
        for name, sim in self.sims.items():
            self.assertIn("tinyllama:1b", tag_names(sim.url), name)
        h.wait_until(lambda: "tinyllama:1b" in {m["name"] for m in
                                               h.get_json(self.d.url + "/api/tags")["models"]},
                     timeout=5, msg="daemon's tags include the pulled model")
        r = h.post_json(self.d.url + "/api/pull", {"model": "tinyllama:1b", "stream": False})
        self.assertEqual((r.status, r.json()), (200, {"status": "success"}))

    def test_pull_with_one_failing_node(self):
        h.sim_fault(self.sims["n2"].url, "500", scope="all", model="broken:1b")
        s, lines = self.stream("/api/pull", {"model": "broken:1b"})
        self.assertNotIn({"status": "success"}, lines)
        self.assertEqual(list(lines[-1]), ["error"])
        self.assertIn("n2", lines[-1]["error"])
        self.assertNotIn("n1", lines[-1]["error"])
        self.assertIn("broken:1b", tag_names(self.sims["n1"].url))
        self.assertIn("broken:1b", tag_names(self.sims["n3"].url))
        self.assertNotIn("broken:1b", tag_names(self.sims["n2"].url))
        r = h.post_json(self.d.url + "/api/pull", {"model": "broken:1b", "stream": False})
        self.assertEqual(r.status, 500)
        self.assertIn("n2", r.json()["error"])

    def test_pull_names_the_nodes_that_are_down(self):
        up = h.start_sim("--name", "up", "--tokens-per-second", "0", test=self)
        gone = h.start_sim("--name", "gone", "--tokens-per-second", "0", test=self)
        d = start_daemon(self, [("up", up.url), ("gone", gone.url)])
        gone.close()
        h.wait_until(lambda: {n["name"]: n["state"] for n in
                              h.get_json(d.url + "/api/stats")["nodes"]}.get("gone") == "down",
                     timeout=10, msg="node gone is down")
        with h.open_stream("POST", d.url + "/api/pull", {"model": "tiny:1b"}) as s:
            self.assertEqual(s.status, 200)
            lines = [e.json for e in s.lines()]
        self.assertEqual(lines[0], {"node": "gone", "status": "skipped: node is down"})
        self.assertEqual(lines[-1], {"status": "success"})
        self.assertEqual({x.get("node") for x in lines[1:-1]}, {"up"})
        self.assertIn("tiny:1b", tag_names(up.url))

    def test_pinned_pull_delete_and_copy(self):
        s, lines = self.stream("/api/pull", {"model": "pinned:1b"},
                               headers={"X-Sollol-Node": "n3"})
        self.assertEqual(s.headers.get("x-sollol-node"), "n3")
        self.assertEqual(lines[-1], {"status": "success"})
        self.assertEqual({x.get("node") for x in lines[:-1]}, {"n3"})
        self.assertEqual([n for n, sim in self.sims.items() if "pinned:1b" in tag_names(sim.url)],
                         ["n3"])
        r = h.post_json(self.d.url + "/api/pull", {"model": "x:1b"},
                        headers={"X-Sollol-Node": "nobody"})
        self.assertEqual(r.status, 400)
        self.assertIn("nobody", r.json()["error"])

    def test_delete_fans_out(self):
        r = h.post_json(self.d.url + "/api/pull", {"model": "doomed:1b", "stream": False})
        self.assertEqual(r.status, 200)
        for sim in self.sims.values():
            self.assertIn("doomed:1b", tag_names(sim.url))
        r = h.request("DELETE", self.d.url + "/api/delete", body={"model": "doomed:1b"})
        self.assertEqual(r.status, 200, r.body)
        for name, sim in self.sims.items():
            self.assertNotIn("doomed:1b", tag_names(sim.url), name)
        # nobody has it any more: the nodes' own 404
        r = h.request("DELETE", self.d.url + "/api/delete", body={"model": "doomed:1b"})
        self.assertEqual(r.status, 404)
        self.assertIn("doomed:1b", r.json()["error"])

    def test_copy_fans_out(self):
        r = h.post_json(self.d.url + "/api/copy",
                        {"source": "llama3.2:3b", "destination": "llama-copy:1"})
        self.assertEqual(r.status, 200, r.body)
        have = [n for n, sim in self.sims.items() if "llama-copy:1" in tag_names(sim.url)]
        self.assertEqual(have, ["n1", "n2"])  # n3 lacks the source: its 404 is not a failure
        r = h.post_json(self.d.url + "/api/copy", {"source": "ghost:1b", "destination": "g:1"})
        self.assertEqual(r.status, 404)

    def test_create_and_blobs_go_to_first_routable_node(self):
        data = b"sollol blob payload " * 50
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = h.request("POST", self.d.url + "/api/blobs/" + digest, body=data)
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.headers.get("x-sollol-node"), "n1")
        for name, want in (("n1", 200), ("n2", 404)):
            blob = self.sims[name].url + "/api/blobs/" + digest
            self.assertEqual(h.request("HEAD", blob).status, want, name)
        r = h.request("HEAD", self.d.url + "/api/blobs/" + digest)
        self.assertEqual((r.status, r.headers.get("x-sollol-node")), (200, "n1"))
        missing = "sha256:" + hashlib.sha256(b"nothing").hexdigest()
        r = h.request("HEAD", self.d.url + "/api/blobs/" + missing)
        self.assertEqual((r.status, r.body), (404, b""))
        r = h.post_json(self.d.url + "/api/create",
                        {"model": "made:1", "from": "llama3.2:3b", "stream": False})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json(), {"status": "success"})
        self.assertEqual([n for n, sim in self.sims.items() if "made:1" in tag_names(sim.url)],
                         ["n1"])
        r = h.post_json(self.d.url + "/api/create", {"model": "made:2", "from": "phi3:mini"},
                        headers={"X-Sollol-Node": "n3"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.headers.get("x-sollol-node"), "n3")
        self.assertEqual(json.loads(r.body.splitlines()[-1]), {"status": "success"})
        self.assertEqual([n for n, sim in self.sims.items() if "made:2" in tag_names(sim.url)],
                         ["n3"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
