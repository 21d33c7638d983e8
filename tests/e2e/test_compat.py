"""End-to-end tests of issue 17's daemon-side items: what real Ollama
clients expect of sollold that our own mirrors did not ask for.

1. the deprecated "name" field; 2. a model pulled, created, copied or deleted
is seen at once; 3. /api/version is the cluster's Ollama version; 4. CORS as
Ollama does it; 5. keep_alive 0 unloads everywhere; 6. request errors do not
open a node's breaker; 7. one monotone pull progress; 8. /v1/models/:name
echoes the name, unknown routes pass through, trailing slashes redirect,
/api/ps lists a model once.

Run: python3 -B tests/e2e/test_compat.py (SOLLOL_BUILD_DIR selects the build).
"""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"
# Liveness probes fast; the tags probe at its slow default (30 s), so a test
# that sees a change at once does not owe it to the periodic probe.
PROBES = ("--probe-interval", "200ms", "--probe-timeout", "1s")


def start_daemon(test, nodes, *extra, env=None):
    args = ["--listen", "127.0.0.1:0"]
    for name, url in nodes:
        args += ["--node", "%s=%s" % (name, url)]
    args += list(PROBES) + [str(a) for a in extra]
    return h.start_process("sollold", args, test=test, env=env)


def two_nodes(test, models=(MODEL + ",loaded",), *sim_args, extra=(), env=None):
    a = h.start_sim(*sim_args, models=models, test=test)
    b = h.start_sim(*sim_args, models=models, test=test)
    d = start_daemon(test, [("sim-a", a.url), ("sim-b", b.url)], *extra, env=env)
    return a, b, d


def ndjson(body):
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def tag_names(d):
    return sorted(m["name"] for m in h.get_json(d.url + "/api/tags")["models"])


class NameAlias(unittest.TestCase):
    """Item 1: Ollama reads "name" where "model" is absent on pull, push,
    show, delete and create (model wins when both are set)."""

    def test_pull_show_delete_push_with_name(self):
        a, b, d = two_nodes(self)
        r = h.request("POST", d.url + "/api/pull", {"name": "qwen2:0.5b", "stream": False})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json(), {"status": "success"})
        r = h.request("POST", d.url + "/api/show", {"name": MODEL})
        self.assertEqual(r.status, 200, r.body)
        self.assertIn("details", r.json())
        r = h.request("POST", d.url + "/api/push", {"name": MODEL, "stream": False})
        self.assertEqual(r.status, 200, r.body)
        r = h.request("DELETE", d.url + "/api/delete", {"name": "qwen2:0.5b"})
        self.assertEqual(r.status, 200, r.body)
        for sim in (a, b):
            names = [m["name"] for m in h.get_json(sim.url + "/api/tags")["models"]]
            self.assertNotIn("qwen2:0.5b", names)

    def test_model_wins_and_copy_has_no_alias(self):
        a, b, d = two_nodes(self)
        # Both set: "model" is the one Ollama reads (and routes by).
        r = h.request("POST", d.url + "/api/show", {"model": MODEL, "name": "nothing:here"})
        self.assertEqual(r.status, 200, r.body)
        # Missing both: Ollama's message.
        r = h.request("POST", d.url + "/api/show", {})
        self.assertEqual((r.status, r.json()), (400, {"error": "model is required"}))
        # Chat has no such alias in Ollama.
        r = h.request("POST", d.url + "/api/chat", {"name": MODEL, "messages": []})
        self.assertEqual((r.status, r.json()), (400, {"error": "model is required"}))


def chat_status(d, model):
    return h.request("POST", d.url + "/api/chat",
                     {"model": model, "messages": [{"role": "user", "content": "hi"}],
                      "stream": False}).status


class SeenAtOnce(unittest.TestCase):
    """Item 2: a model pulled, copied or created is routable and listed the
    moment its success is answered; a deleted one is gone as fast (the tags
    probe runs every 30 s here, its default)."""

    def test_pull_copy_delete(self):
        a, b, d = two_nodes(self)
        self.assertEqual(chat_status(d, "qwen2:0.5b"), 404)
        with h.open_stream("POST", d.url + "/api/pull", {"model": "qwen2:0.5b"}) as st:
            lines = [json.loads(e.raw) for e in st.lines()]
        self.assertEqual(lines[-1], {"status": "success"})
        self.assertEqual(chat_status(d, "qwen2:0.5b"), 200)
        self.assertIn("qwen2:0.5b", tag_names(d))
        r = h.request("POST", d.url + "/api/copy",
                      {"source": "qwen2:0.5b", "destination": "mine:latest"})
        self.assertEqual(r.status, 200, r.body)
        self.assertIn("mine:latest", tag_names(d))
        self.assertEqual(chat_status(d, "mine"), 200)
        r = h.request("DELETE", d.url + "/api/delete", {"model": "qwen2:0.5b"})
        self.assertEqual(r.status, 200, r.body)
        self.assertNotIn("qwen2:0.5b", tag_names(d))
        self.assertEqual(chat_status(d, "qwen2:0.5b"), 404)
        # The non-streamed pull too.
        r = h.request("POST", d.url + "/api/pull", {"model": "phi3:mini", "stream": False})
        self.assertEqual(r.status, 200, r.body)
        self.assertIn("phi3:mini", tag_names(d))

    def test_create(self):
        a, b, d = two_nodes(self)
        for stream in (True, False):
            name = "made-%s:latest" % ("s" if stream else "n")
            r = h.request("POST", d.url + "/api/create",
                          {"model": name, "from": MODEL, "stream": stream})
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(ndjson(r.body)[-1], {"status": "success"})
            self.assertEqual(chat_status(d, name), 200, name)
            h.wait_until(lambda: name in tag_names(d), timeout=h.scaled(2),
                         msg="listed after the re-probe")


class UnloadEverywhere(unittest.TestCase):
    """Item 5: keep_alive 0 with nothing to generate (what `ollama stop`
    sends) unloads the model on every node that has it loaded."""

    def loaded_on(self, sim):
        return [m["name"] for m in h.get_json(sim.url + "/api/ps")["models"]]

    def test_generate_and_chat_forms(self):
        a, b, d = two_nodes(self)
        h.wait_until(lambda: h.get_json(d.url + "/api/ps")["models"], timeout=h.scaled(5),
                     msg="loaded")
        self.assertEqual((self.loaded_on(a), self.loaded_on(b)), ([MODEL], [MODEL]))
        r = h.request("POST", d.url + "/api/generate", {"model": MODEL, "keep_alive": 0})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual((r.json()["done"], r.json()["done_reason"]), (True, "unload"))
        self.assertEqual((self.loaded_on(a), self.loaded_on(b)), ([], []))
        self.assertEqual(h.get_json(d.url + "/api/ps")["models"], [])
        # Load both again, then the chat form with a Go duration.
        for sim in (a, b):
            h.sim_models(sim.url, load=MODEL)
        h.wait_until(lambda: len(h.get_json(d.url + "/api/ps")["models"][0]["nodes"]) == 2
                     if h.get_json(d.url + "/api/ps")["models"] else False,
                     timeout=h.scaled(5), msg="loaded on both")
        r = h.request("POST", d.url + "/api/chat",
                      {"model": MODEL, "messages": [], "keep_alive": "0s"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["done_reason"], "unload")
        self.assertEqual((self.loaded_on(a), self.loaded_on(b)), ([], []))
        self.assertEqual(h.get_json(d.url + "/api/ps")["models"], [])
        # A real request with keep_alive 0 is one request on one node.
        h.sim_reset(a.url)
        h.sim_reset(b.url)
        r = h.request("POST", d.url + "/api/generate",
                      {"model": MODEL, "prompt": "hi", "keep_alive": 0, "stream": False})
        self.assertEqual(r.status, 200, r.body)
        served = [len([x for x in h.sim_stats(s.url)["requests"] if x["path"] == "/api/generate"])
                  for s in (a, b)]
        self.assertEqual(sorted(served), [0, 1])
        # Unknown model: as before.
        r = h.request("POST", d.url + "/api/generate", {"model": "nothing:here", "keep_alive": 0})
        self.assertEqual(r.status, 404)


class PullProgress(unittest.TestCase):
    """Item 7: one monotone progress per digest, summed over the nodes."""

    def test_summed_and_monotone(self):
        a, b, d = two_nodes(self)
        with h.open_stream("POST", d.url + "/api/pull", {"model": "qwen2:0.5b"}) as st:
            lines = [json.loads(e.raw) for e in st.lines()]
        self.assertEqual(lines[-1], {"status": "success"})
        self.assertNotIn({"status": "success"}, lines[:-1])
        size = next(m["size"] for m in h.get_json(a.url + "/api/tags")["models"]
                    if m["name"] == "qwen2:0.5b")
        last = {}
        steps = []
        for ln in lines[:-1]:
            if "digest" in ln:
                self.assertEqual(ln["total"], 2 * size, ln)
                done = ln.get("completed", 0)
                self.assertGreaterEqual(done, last.get(ln["digest"], 0), lines)
                last[ln["digest"]] = done
                self.assertEqual(sorted(n["node"] for n in ln["nodes"]), ["sim-a", "sim-b"])
                self.assertEqual(done, sum(n["completed"] for n in ln["nodes"]))
            else:
                steps.append(ln["status"])
        self.assertTrue(last and all(v == 2 * size for v in last.values()), last)
        self.assertEqual(len(steps), len(set(steps)), "each step once: %r" % steps)
        self.assertIn("pulling manifest", steps)

    def test_a_failing_node_is_named(self):
        a, b, d = two_nodes(self)
        h.sim_fault(b.url, "500", scope="all")
        with h.open_stream("POST", d.url + "/api/pull", {"model": "qwen2:0.5b"}) as st:
            lines = [json.loads(e.raw) for e in st.lines()]
        self.assertIn("error", lines[-1])
        self.assertIn("sim-b", lines[-1]["error"])
        self.assertNotIn({"status": "success"}, lines)


class ClusterVersion(unittest.TestCase):
    """Item 3: /api/version is the lowest Ollama version of the nodes that
    are up; sollold's own is in X-Sollol-Version and /api/sollol/version."""

    def test_lowest_up_version(self):
        a = h.start_sim("--version-string", "0.12.10", test=self)
        b = h.start_sim("--version-string", "0.12.6", test=self)
        d = start_daemon(self, [("sim-a", a.url), ("sim-b", b.url)])
        r = h.request("GET", d.url + "/api/version")
        self.assertEqual((r.status, r.json()), (200, {"version": "0.12.6"}))
        own = r.headers.get("x-sollol-version")
        self.assertTrue(own, r.headers)
        r = h.request("GET", d.url + "/api/sollol/version")
        self.assertEqual((r.status, r.json()), (200, {"version": own}))
        self.assertEqual(h.request("HEAD", d.url + "/api/version").status, 200)
        # The older node goes: the cluster can do more now.
        b.stop()
        h.wait_until(lambda: h.get_json(d.url + "/api/version") == {"version": "0.12.10"},
                     timeout=h.scaled(10), msg="version of the node left up")
        # None up: the lowest last known, still 200 (documented).
        a.stop()
        h.wait_until(lambda: h.request("GET", d.url + "/api/health").status == 503,
                     timeout=h.scaled(10), msg="all down")
        r = h.request("GET", d.url + "/api/version")
        self.assertEqual((r.status, r.json()), (200, {"version": "0.12.6"}))


def breaker(d, node):
    for n in h.get_json(d.url + "/api/stats")["nodes"]:
        if n["name"] == node:
            return n["breaker"]
    raise AssertionError(node)


class Breaker(unittest.TestCase):
    """Item 6: a node's breaker counts what says the node is unwell."""

    def test_request_errors_do_not_open_it(self):
        a = h.start_sim(models=(MODEL + ",loaded", "nomic-embed-text,embed,loaded"), test=self)
        b = h.start_sim(models=(MODEL + ",loaded",), test=self)
        d = start_daemon(self, [("sim-a", a.url), ("sim-b", b.url)],
                         "--breaker-failures", "3", "--breaker-cooldown-min", "30s")
        for _ in range(5):
            # Ollama answers a push of a model it lacks 500 (stream false).
            r = h.request("POST", d.url + "/api/push", {"model": "nothing:here", "stream": False})
            self.assertEqual(r.status, 500, r.body)
            # Ollama's text: "open .../manifests/...: no such file or directory".
            self.assertRegex(r.json()["error"], "no such file or directory|not found")
            self.assertEqual(r.headers.get("x-sollol-node"), "sim-a")
            # A 4xx is the request's fault too.
            r = h.request("POST", d.url + "/api/chat",
                          {"model": MODEL, "messages": [], "options": {"num_ctx": "x"}})
        self.assertEqual(breaker(d, "sim-a")["state"], "closed", breaker(d, "sim-a"))
        self.assertEqual(breaker(d, "sim-a")["consecutive_failures"], 0)
        # The model only sim-a has is still served.
        r = h.request("POST", d.url + "/api/embed", {"model": "nomic-embed-text", "input": "x"})
        self.assertEqual(r.status, 200, r.body)

    def test_node_failures_still_open_it(self):
        a = h.start_sim(test=self)
        b = h.start_sim(test=self)
        # Round robin: sim-a gets a turn whatever the two nodes' costs.
        d = start_daemon(self, [("sim-a", a.url), ("sim-b", b.url)], "--routing", "round_robin",
                         "--breaker-failures", "3", "--breaker-cooldown-min", "30s")
        h.sim_fault(a.url, "500")  # "llama runner process has terminated": the node's
        body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": False}
        for i in range(8):
            r = h.request("POST", d.url + "/api/chat", body, headers={"X-Sollol-Session": str(i)})
            self.assertEqual((r.status, r.headers.get("x-sollol-node")), (200, "sim-b"), r.body)
            if breaker(d, "sim-a")["consecutive_failures"]:
                break
        # sim-a's 500 was read, judged the node's, counted, and the request
        # went to sim-b unseen by the client.
        self.assertEqual(breaker(d, "sim-a")["consecutive_failures"], 1)
        self.assertTrue(any(x["path"] == "/api/chat" for x in h.sim_stats(a.url)["requests"]))
        # Alone, the node's 500s reach the client and open the breaker.
        d1 = start_daemon(self, [("sim-a", a.url)], "--breaker-failures", "3",
                          "--breaker-cooldown-min", "30s")
        for _ in range(3):
            r = h.request("POST", d1.url + "/api/chat", body)
            self.assertEqual(r.status, 500)
        self.assertEqual(breaker(d1, "sim-a")["state"], "open", breaker(d1, "sim-a"))


class Cors(unittest.TestCase):
    """Item 4: gin-contrib/cors as Ollama configures it."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim(test=cls)
        cls.d = start_daemon(cls, [("sim-a", cls.sim.url)],
                             env=dict(os.environ, OLLAMA_ORIGINS="chrome-extension://*"))

    def test_preflight_from_allowed_origins(self):
        for origin in ("http://localhost:3000", "app://obsidian.md", "vscode-webview://x1",
                       "chrome-extension://abcdef"):
            r = h.request("OPTIONS", self.d.url + "/api/chat",
                          headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                   "Access-Control-Request-Headers": "content-type"})
            self.assertEqual((r.status, r.body), (204, b""), origin)
            self.assertEqual(r.headers.get("access-control-allow-origin"), origin)
            self.assertEqual(r.headers.get("access-control-allow-methods"),
                             "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS")
            self.assertIn("Content-Type", r.headers.get("access-control-allow-headers"))
            self.assertIn("X-Stainless-Os", r.headers.get("access-control-allow-headers"))
            self.assertEqual(r.headers.get("access-control-max-age"), "43200")

    def test_answers_carry_the_allow_header(self):
        o = {"Origin": "http://127.0.0.1:5173"}
        r = h.request("GET", self.d.url + "/api/tags", headers=o)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("access-control-allow-origin"), o["Origin"])
        self.assertIn("Origin", r.headers.get("vary", ""))
        with h.open_stream("POST", self.d.url + "/api/chat",
                           {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                           headers=o) as st:
            self.assertEqual(st.status, 200)
            self.assertEqual(st.headers.get("access-control-allow-origin"), o["Origin"])
            st.read_all()
        r = h.request("GET", self.d.url + "/api/nope-nope", headers=o)
        self.assertEqual(r.headers.get("access-control-allow-origin"), o["Origin"])

    def test_other_origins_refused_as_ollama_does(self):
        for method, path in (("OPTIONS", "/api/chat"), ("GET", "/api/tags"),
                             ("POST", "/api/generate")):
            r = h.request(method, self.d.url + path,
                          {"model": MODEL, "prompt": "x"} if method == "POST" else None,
                          headers={"Origin": "https://evil.example"})
            self.assertEqual((r.status, r.body), (403, b""), (method, path))
            self.assertNotIn("access-control-allow-origin", r.headers)

    def test_no_origin_or_own_origin_unchanged(self):
        r = h.request("GET", self.d.url + "/api/tags")
        self.assertEqual(r.status, 200)
        self.assertNotIn("access-control-allow-origin", r.headers)
        r = h.request("GET", self.d.url + "/api/tags", headers={"Origin": self.d.url})
        self.assertEqual(r.status, 200)
        self.assertNotIn("access-control-allow-origin", r.headers)
        # OPTIONS without Origin is no preflight: as before.
        r = h.request("OPTIONS", self.d.url + "/api/tags")
        self.assertEqual(r.status, 405)

    def test_bad_origin_config_refused(self):
        import subprocess
        out = subprocess.run([h.binary("sollold"), "--listen", "127.0.0.1:0", "--node",
                              "a=" + self.sim.url, "--origins", "example.com", "--check-config"],
                             capture_output=True, text=True, timeout=20)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("cors.origins", out.stderr)


class SmallerOnes(unittest.TestCase):
    """Item 8."""

    @classmethod
    def setUpClass(cls):
        cls.a = h.start_sim("--name", "sim-a", models=(MODEL + ",loaded", "qwen2:0.5b", "phi3"),
                            test=cls)
        cls.b = h.start_sim("--name", "sim-b", models=(MODEL + ",loaded",), test=cls)
        cls.d = start_daemon(cls, [("sim-a", cls.a.url), ("sim-b", cls.b.url)])

    def test_v1_model_echoes_the_name_asked(self):
        # phi3 is installed as phi3:latest: Ollama answers the id asked.
        for asked in ("phi3", "phi3:latest", "library/phi3", "qwen2:0.5b", "qwen2"):
            r = h.request("GET", self.d.url + "/v1/models/" + asked)
            if asked == "qwen2":  # qwen2:latest is not installed
                self.assertEqual(r.status, 404)
                continue
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual((r.json()["id"], r.json()["owned_by"]), (asked, "library"))

    def test_unknown_routes_pass_through(self):
        h.sim_reset(self.a.url)
        h.sim_reset(self.b.url)
        # /api/me exists on Ollama (and the sim), not in sollold's table.
        r = h.request("POST", self.d.url + "/api/me", {})
        self.assertNotEqual(r.status, 404, r.body)
        self.assertEqual(r.headers.get("x-sollol-node"), "sim-a", "the first node that is up")
        got = [x["path"] for x in h.sim_stats(self.a.url)["requests"]]
        self.assertIn("/api/me", got)
        # DELETE with a parameter in the path, as Ollama's /api/user/keys/:key.
        r = h.request("DELETE", self.d.url + "/api/user/keys/abc")
        self.assertNotEqual(r.status, 404, r.body)
        # A route no Ollama has: the node's own 404, as Ollama would answer.
        r = h.request("GET", self.d.url + "/api/nothing-here?x=1")
        self.assertEqual((r.status, r.body), (404, b"404 page not found"))
        r = h.request("GET", self.d.url + "/v1/nope/x")
        self.assertEqual((r.status, r.body), (404, b"404 page not found"))
        # sollol's own namespaces are never passed on.
        r = h.request("GET", self.d.url + "/api/sollol/nothing")
        self.assertEqual(r.status, 404)
        self.assertIn("not found", r.json()["error"])

    def test_unknown_routes_need_an_admin_key(self):
        import hashlib
        keys = [{"name": "user", "sha256": hashlib.sha256(b"user-key").hexdigest()},
                {"name": "ops", "sha256": hashlib.sha256(b"ops-key").hexdigest(), "admin": True}]
        d = start_daemon(self, [("sim-a", self.a.url)], "--auth-keys", json.dumps(keys))
        r = h.request("POST", d.url + "/api/me", {})
        self.assertEqual(r.status, 401)
        r = h.request("POST", d.url + "/api/me", {}, headers={"Authorization": "Bearer user-key"})
        self.assertEqual(r.status, 403, r.body)
        r = h.request("GET", d.url + "/v1/nope", headers={"Authorization": "Bearer user-key"})
        self.assertEqual(r.status, 403, r.body)
        h.sim_reset(self.a.url)
        r = h.request("POST", d.url + "/api/me", {}, headers={"Authorization": "Bearer ops-key"})
        # The node's own answer (the sim, as Ollama, says "not signed in"),
        # which does not make the node look misconfigured.
        self.assertEqual((r.status, r.headers.get("x-sollol-node")), (401, "sim-a"), r.body)
        self.assertEqual([x["path"] for x in h.sim_stats(self.a.url)["requests"]], ["/api/me"])
        r = h.request("GET", d.url + "/api/health", headers={"Authorization": "Bearer ops-key"})
        self.assertEqual(r.json()["nodes_up"], 1)

    def test_trailing_slash_redirects_as_gin(self):
        r = h.request("GET", self.d.url + "/api/tags/?a=b")
        self.assertEqual((r.status, r.headers.get("location")), (301, "/api/tags?a=b"))
        r = h.request("POST", self.d.url + "/api/chat/", {"model": MODEL, "messages": []})
        self.assertEqual((r.status, r.headers.get("location")), (307, "/api/chat"))
        r = h.request("POST", self.d.url + "/v1/chat/completions/", {"model": MODEL})
        self.assertEqual((r.status, r.headers.get("location")), (307, "/v1/chat/completions"))
        # No route for the method there: not a redirect (gin looks per method).
        r = h.request("GET", self.d.url + "/api/chat/")
        self.assertNotIn(r.status, (301, 307))

    def test_ps_lists_each_model_once(self):
        h.wait_until(lambda: len(h.get_json(self.d.url + "/api/ps")["models"]) >= 1,
                     timeout=h.scaled(10), msg="ps")
        ps = h.get_json(self.d.url + "/api/ps")["models"]
        names = [m["name"] for m in ps]
        self.assertEqual(names, [MODEL], ps)
        self.assertEqual(sorted(ps[0]["nodes"]), ["sim-a", "sim-b"])
        self.assertIn(ps[0]["node"], ("sim-a", "sim-b"))
        for k in ("model", "size", "digest", "details", "expires_at", "size_vram"):
            self.assertIn(k, ps[0])


if __name__ == "__main__":
    unittest.main()
