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


if __name__ == "__main__":
    unittest.main()
