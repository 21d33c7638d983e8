"""End-to-end regression tests of issue #14 (second security pass), items 5,
6 and 10:

- batch jobs belong to the API key that submitted them: another key gets 404
  for them (as if absent) and does not see them listed; admins see all; job
  ids are 128 random bits, not a sequence;
- a node that announces new model names at every probe does not grow the
  daemon's model table (what it no longer lists is forgotten, the rest is
  capped by health.max_models_per_node with a warning);
- /api/stats, the dashboard's data and a non-public /metrics show a key
  restricted to some models only those models (and no node URL).

Each test failed on the code before the fix. Run:
python3 -B tests/e2e/test_hostile_misc.py (SOLLOL_BUILD_DIR selects the build).
"""

import hashlib
import http.server
import json
import os
import re
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PROBES = ["--probe-interval", "200ms", "--tags-interval", "200ms", "--probe-timeout", "1s"]
EMBED = "nomic-embed-text"
CHAT = "llama3.2:3b"
OTHER = "qwen2.5:7b"
A_KEY, B_KEY, ADMIN_KEY, CHAT_KEY = "team-a-secret", "team-b-secret", "ops-secret", "chat-secret"


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


KEYS = [
    {"name": "team-a", "sha256": sha(A_KEY), "models": [EMBED + "*"]},
    {"name": "team-b", "sha256": sha(B_KEY), "models": [EMBED + "*"]},
    {"name": "ops", "sha256": sha(ADMIN_KEY), "admin": True},
    {"name": "chat", "sha256": sha(CHAT_KEY), "models": ["llama3.2*"]},
]


def bearer(key):
    return {"Authorization": "Bearer " + key}


def start_daemon(test, nodes, *extra, keys=KEYS, public=None):
    args = ["--listen", "127.0.0.1:0"] + PROBES
    for name, url in nodes:
        args += ["--node", "%s=%s" % (name, url)]
    if keys is not None:
        args += ["--auth-keys", json.dumps(keys)]
    if public is not None:
        args += ["--auth-public", json.dumps(public)]
    d = h.start_process("sollold", args + [str(a) for a in extra], test=test)
    h.wait_until(lambda: h.request("GET", d.url + "/api/version").status in (200, 401),
                 msg="daemon answers")
    return d


def get(d, path, key=None):
    return h.request("GET", d.url + path, headers=bearer(key) if key else None)


class BatchOwnershipTest(unittest.TestCase):
    """Item 5: jobs are tied to their key."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--embed-per-second", "0", models=(EMBED + ",embed,loaded",),
                              test=cls)
        cls.d = start_daemon(cls, [("a", cls.sim.url)])

    def submit(self, key, n=20):
        body = {"model": EMBED, "input": ["text %d" % i for i in range(n)]}
        r = h.post_json(self.d.url + "/api/batch/embed", body, headers=bearer(key))
        self.assertEqual(r.status, 202, r.body)
        return r.json()["job_id"]

    def wait_done(self, job_id, key):
        def done():
            r = get(self.d, "/api/batch/jobs/" + job_id, key)
            self.assertEqual(r.status, 200, r.body)
            return r.json()["status"] in ("completed", "failed")
        h.wait_until(done, timeout=h.scaled(30), msg="job done")

    def test_other_key_cannot_see_read_cancel_or_delete(self):
        job = self.submit(A_KEY)
        self.wait_done(job, A_KEY)
        # The owner sees it, reads it.
        mine = get(self.d, "/api/batch/jobs", A_KEY).json()["jobs"]
        self.assertIn(job, [j["job_id"] for j in mine])
        self.assertEqual(get(self.d, "/api/batch/results/" + job, A_KEY).status, 200)

        # Another key with the same models: absent, whatever it tries.
        theirs = get(self.d, "/api/batch/jobs", B_KEY)
        self.assertEqual(theirs.status, 200, theirs.body)
        self.assertNotIn(job, [j["job_id"] for j in theirs.json()["jobs"]])
        self.assertNotIn(job, theirs.text)
        for method, path in (("GET", "/api/batch/jobs/"), ("GET", "/api/batch/results/"),
                             ("DELETE", "/api/batch/jobs/")):
            r = h.request(method, self.d.url + path + job, headers=bearer(B_KEY))
            self.assertEqual(r.status, 404, (method, path, r.body[:200]))
            self.assertEqual(r.json(), {"error": "batch job '%s' not found" % job})
            self.assertNotIn("embeddings", r.text)
        # ... and the same answer as for an id that never existed.
        fake = "emb-" + "0" * 32
        r = get(self.d, "/api/batch/jobs/" + fake, B_KEY)
        self.assertEqual((r.status, r.json()), (404, {"error": "batch job '%s' not found" % fake}))

        # The DELETE above did nothing: the owner still has it.
        self.assertEqual(get(self.d, "/api/batch/jobs/" + job, A_KEY).status, 200)

        # An admin key sees every job, and whose it is.
        listed = {j["job_id"]: j for j in get(self.d, "/api/batch/jobs", ADMIN_KEY).json()["jobs"]}
        self.assertIn(job, listed)
        self.assertEqual(listed[job]["key"], "team-a")
        self.assertEqual(get(self.d, "/api/batch/results/" + job, ADMIN_KEY).status, 200)
        r = h.request("DELETE", self.d.url + "/api/batch/jobs/" + job, headers=bearer(ADMIN_KEY))
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(get(self.d, "/api/batch/jobs/" + job, A_KEY).status, 404)

    def test_job_ids_are_random(self):
        ids = [self.submit(A_KEY, 1) for _ in range(3)]
        for job in ids:
            self.assertRegex(job, r"^emb-[0-9a-f]{32}$")
        self.assertEqual(len(set(ids)), 3)
        # Not a counter: the ids share no long common prefix.
        prefix = os.path.commonprefix(ids)
        self.assertLess(len(prefix), len("emb-") + 8, ids)
        for job in ids:
            self.wait_done(job, A_KEY)
            h.request("DELETE", self.d.url + "/api/batch/jobs/" + job, headers=bearer(A_KEY))


class BatchKeysOffTest(unittest.TestCase):
    """With keys off, every caller sees every job (behaviour unchanged)."""

    def test_open_mode(self):
        sim = h.start_sim("--embed-per-second", "0", models=(EMBED + ",embed,loaded",), test=self)
        d = start_daemon(self, [("a", sim.url)], keys=None)
        r = h.post_json(d.url + "/api/batch/embed", {"model": EMBED, "input": ["x", "y"]})
        self.assertEqual(r.status, 202, r.body)
        job = r.json()["job_id"]
        self.assertIn(job, [j["job_id"] for j in h.get_json(d.url + "/api/batch/jobs")["jobs"]])
        self.assertEqual(get(d, "/api/batch/jobs/" + job).status, 200)


class ChurnNode:
    """A stand-in Ollama node that lists `per_probe` model names never seen
    before at every GET /api/tags (plus one real model), and answers chats."""

    def __init__(self, per_probe, fixed=("llama3.2:3b",), churn=True):
        self.per_probe, self.fixed, self.churn = per_probe, fixed, churn
        self.generation = 0
        self.tags_served = 0
        node = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, obj):
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/api/version":
                    self.reply({"version": "0.12.6"})
                elif self.path == "/api/ps":
                    self.reply({"models": []})
                elif self.path == "/api/tags":
                    self.reply({"models": node.tags()})
                else:
                    self.send_error(404)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                req = json.loads(self.rfile.read(n) or b"{}")
                self.reply({"model": req.get("model"), "created_at": "2025-01-01T00:00:00Z",
                            "message": {"role": "assistant", "content": "ok"}, "done": True,
                            "done_reason": "stop", "total_duration": 1000, "eval_count": 1,
                            "eval_duration": 1000, "prompt_eval_count": 1,
                            "prompt_eval_duration": 1000})

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the daemon closing a kept-alive connection is no error

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def tags(self):
        self.tags_served += 1
        g = self.generation
        if self.churn:
            self.generation += 1
        entry = {"modified_at": "2025-01-01T00:00:00Z", "size": 1, "digest": "ab" * 32,
                 "details": {"family": "llama"}}
        names = list(self.fixed) + ["churn-%d-%d:latest" % (g, i) for i in range(self.per_probe)]
        return [dict(entry, name=n, model=n) for n in names]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class ModelChurnTest(unittest.TestCase):
    """Item 6: what a node lists is bounded and forgotten when it stops."""

    def node_models(self, d):
        nodes = h.get_json(d.url + "/api/stats")["nodes"]
        return [m["name"] for m in nodes[0]["models"]]

    def test_names_a_node_no_longer_lists_are_forgotten(self):
        node = ChurnNode(300)
        self.addCleanup(node.close)
        d = start_daemon(self, [("churn", node.url)], keys=None)
        h.wait_until(lambda: node.tags_served >= 8, timeout=h.scaled(20), msg="8 tags probes")
        names = self.node_models(d)
        # Only the last listing (301 names), not every name ever listed
        # (8 x 300 and more before the fix).
        self.assertLessEqual(len(names), 301, len(names))
        self.assertIn("llama3.2:3b", names)
        gens = {n.split("-")[1] for n in names if n.startswith("churn-")}
        self.assertLessEqual(len(gens), 1, sorted(gens))
        # Routing still works, and quickly finds the model.
        r = h.post_json(d.url + "/api/chat", {"model": "llama3.2:3b", "stream": False,
                                              "messages": [{"role": "user", "content": "hi"}]})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["message"]["content"], "ok")

    def test_cap_per_node_with_a_warning(self):
        node = ChurnNode(300, churn=False)
        self.addCleanup(node.close)
        d = start_daemon(self, [("many", node.url)], "--max-models-per-node", "100", keys=None)
        h.wait_until(lambda: node.tags_served >= 2, timeout=h.scaled(20), msg="tags probes")
        h.wait_until(lambda: len(self.node_models(d)) > 0, timeout=h.scaled(10), msg="models")
        names = self.node_models(d)
        self.assertEqual(len(names), 100, len(names))
        self.assertIn("llama3.2:3b", names)  # listed first, so kept
        h.wait_until(lambda: "max_models_per_node" in d.stderr_text(), timeout=h.scaled(5),
                     msg="warning logged")
        warn = [l for l in d.stderr_text().splitlines() if "max_models_per_node" in l]
        self.assertEqual(len(warn), 1, warn)  # once, not at every probe
        self.assertIn("201 names ignored", warn[0])  # 301 listed


class RestrictedViewsTest(unittest.TestCase):
    """Item 10: a key restricted to some models sees only those in /api/stats,
    the dashboard's data and /metrics."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", "0",
                              models=(CHAT + ",loaded", OTHER + ",loaded"), test=cls)
        cls.d = start_daemon(cls, [("gpu-1", cls.sim.url)])
        h.wait_until(lambda: OTHER in get(cls.d, "/api/tags", ADMIN_KEY).text, timeout=10,
                     msg="models probed")
        for key, model in ((ADMIN_KEY, OTHER), (CHAT_KEY, CHAT)):
            r = h.post_json(cls.d.url + "/api/chat",
                            {"model": model, "stream": False, "options": {"num_predict": 2},
                             "messages": [{"role": "user", "content": "hi"}]},
                            headers=bearer(key))
            assert r.status == 200, r.body

    def test_stats(self):
        full = get(self.d, "/api/stats", ADMIN_KEY).json()
        self.assertIn(OTHER, json.dumps(full))
        self.assertEqual(full["nodes"][0]["url"], self.sim.url)
        r = get(self.d, "/api/stats", CHAT_KEY)
        self.assertEqual(r.status, 200, r.body)
        self.assertNotIn("qwen", r.text)
        node = r.json()["nodes"][0]
        self.assertEqual(node["name"], "gpu-1")
        self.assertEqual([m["name"] for m in node["models"]], [CHAT])
        self.assertNotIn("url", node)
        self.assertNotIn("last_error", node)
        self.assertNotIn(self.sim.url, r.text)

    def test_dashboard_data(self):
        def decisions(key):
            return get(self.d, "/api/sollol/dashboard", key).json()["decisions"]
        h.wait_until(lambda: {d["model"] for d in decisions(ADMIN_KEY)} >= {CHAT, OTHER},
                     timeout=5, msg="both decisions recorded")
        r = get(self.d, "/api/sollol/dashboard", CHAT_KEY)
        self.assertEqual(r.status, 200, r.body)
        self.assertNotIn("qwen", r.text)
        self.assertEqual({d["model"] for d in r.json()["decisions"]}, {CHAT})

    def test_metrics(self):
        full = get(self.d, "/metrics", ADMIN_KEY).text
        self.assertRegex(full, r'sollol_requests_total\{[^}]*model="qwen2.5:7b"')
        self.assertRegex(full, r'sollol_node_model_loaded\{node="gpu-1",model="qwen2.5:7b"\}')
        r = get(self.d, "/metrics", CHAT_KEY)
        self.assertEqual(r.status, 200, r.body)
        self.assertNotIn("qwen", r.text)
        self.assertRegex(r.text, r'sollol_requests_total\{[^}]*model="llama3.2:3b"')
        self.assertRegex(r.text, r'sollol_node_model_loaded\{node="gpu-1",model="llama3.2:3b"\}')
        # A series of unnamed models ("other") would count the hidden ones.
        self.assertNotRegex(r.text, r'model="other"')
        self.assertRegex(r.text, r'sollol_node_up\{node="gpu-1"\} 1')

    def test_public_metrics_show_everything(self):
        d = start_daemon(self, [("gpu-1", self.sim.url)], public=["/metrics"])
        h.wait_until(lambda: "qwen2.5:7b" in get(d, "/metrics").text, timeout=10,
                     msg="public metrics name every model")
        self.assertIn("qwen2.5:7b", get(d, "/metrics", CHAT_KEY).text)


if __name__ == "__main__":
    unittest.main()
