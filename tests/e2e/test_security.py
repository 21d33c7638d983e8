"""End-to-end tests of access control (issue #8, "Access control"): API keys
(401 with WWW-Authenticate), model lists and admin routes (403), per-key
rate limits (429 with Retry-After), public paths, the keys file's permission
check, the client's Authorization never reaching a node, and the key name as
the queue's fairness identity. Errors are checked in Ollama's shape on native
routes and OpenAI's on /v1/*.

Run: python3 -B tests/e2e/test_security.py (SOLLOL_BUILD_DIR selects the build).
"""

import hashlib
import json
import os
import re
import stat
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"
PROBES = ["--probe-interval", "200ms", "--tags-interval", "500ms", "--probe-timeout", "500ms"]
USER_KEY, ADMIN_KEY, SLOW_KEY = "user-secret-1", "admin-secret-1", "slow-secret-1"


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


KEYS = [
    {"name": "user", "sha256": sha(USER_KEY), "models": ["llama3.2*"]},
    {"name": "admin", "sha256": sha(ADMIN_KEY), "admin": True},
    {"name": "slow", "sha256": sha(SLOW_KEY), "rate": "2/m"},
]


def bearer(key):
    return {"Authorization": "Bearer " + key}


def chat(content="hi", n=2):
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": False,
            "options": {"num_predict": n}}


def v1_chat(model=MODEL):
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def start_daemon(test, sim, *extra, keys=KEYS, public=None, nodes_cfg=None):
    args = ["--listen", "127.0.0.1:0", "--node", "a=" + sim.url] + PROBES
    if keys is not None:
        args += ["--auth-keys", json.dumps(keys)]
    if public is not None:
        args += ["--auth-public", json.dumps(public)]
    d = h.start_process("sollold", args + [str(a) for a in extra], test=test)
    h.wait_until(lambda: h.request("GET", d.url + "/api/version").status in (200, 401),
                 msg="daemon answers")
    return d


class Ollama401Test(unittest.TestCase):
    def assert_native_error(self, r, status, contains):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.headers["content-type"].startswith("application/json"))
        body = r.json()
        self.assertEqual(list(body), ["error"])
        self.assertIsInstance(body["error"], str)
        self.assertIn(contains, body["error"])

    def assert_openai_error(self, r, status, typ, contains):
        self.assertEqual(r.status, status, r)
        err = r.json()["error"]
        self.assertEqual(set(err), {"message", "type", "param", "code"})
        self.assertEqual(err["type"], typ)
        self.assertIn(contains, err["message"])

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", "0", models=(MODEL + ",loaded", "mistral:7b"),
                              test=cls)

    def setUp(self):
        self.d = start_daemon(self, self.sim, public=["/api/version", "/metrics"])

    def test_missing_and_wrong_key(self):
        for path, method, body in (("/api/tags", "GET", None), ("/api/chat", "POST", chat()),
                                   ("/api/ps", "GET", None), ("/api/stats", "GET", None)):
            r = h.request(method, self.d.url + path, body)
            self.assert_native_error(r, 401, "missing API key")
            self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
            r = h.request(method, self.d.url + path, body, headers=bearer("not-a-key"))
            self.assert_native_error(r, 401, "invalid API key")
            self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
        r = h.request("GET", self.d.url + "/api/tags", headers={"Authorization": "Basic dXNlcjp4"})
        self.assert_native_error(r, 401, "unsupported Authorization scheme")
        # OpenAI's shape on /v1/*.
        for path, method, body in (("/v1/chat/completions", "POST", v1_chat()),
                                   ("/v1/models", "GET", None)):
            r = h.request(method, self.d.url + path, body)
            self.assert_openai_error(r, 401, "authentication_error", "missing API key")
            self.assertEqual(r.headers.get("www-authenticate"), "Bearer")

    def test_refusal_of_a_large_body(self):
        # The client sends its whole body before reading (as http.client,
        # requests and most SDKs do): it must get the 401, not a reset.
        big = dict(chat("x" * 3000000))
        r = h.post_json(self.d.url + "/api/chat", big)
        self.assert_native_error(r, 401, "missing API key")
        r = h.post_json(self.d.url + "/v1/chat/completions", dict(v1_chat(), pad="y" * 2000000),
                        headers=bearer("wrong-key"))
        self.assert_openai_error(r, 401, "authentication_error", "invalid API key")
        r = h.post_json(self.d.url + "/api/pull", {"model": MODEL, "pad": "z" * 2000000},
                        headers=bearer(USER_KEY))
        self.assert_native_error(r, 403, "admin only")
        # With Expect: 100-continue the answer comes at once and no body is asked for.
        s = h.raw_connect(self.d.host, self.d.port)
        try:
            s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            s.settimeout(5)
            head = s.recv(4096)
        finally:
            s.close()
        self.assertTrue(head.startswith(b"HTTP/1.1 401 "), head[:200])
        self.assertNotIn(b"100 Continue", head)

    def test_valid_keys_and_public_paths(self):
        r = h.request("GET", self.d.url + "/api/version")
        self.assertEqual(r.status, 200, "public path without a key")
        r = h.request("GET", self.d.url + "/metrics")
        self.assertEqual(r.status, 200)
        r = h.request("GET", self.d.url + "/", headers={})
        self.assertEqual(r.status, 401, "/ is not public unless listed")
        r = h.request("GET", self.d.url + "/api/tags", headers=bearer(USER_KEY))
        self.assertEqual(r.status, 200)
        h.wait_until(lambda: h.post_json(self.d.url + "/api/chat", chat(),
                                         headers=bearer(USER_KEY)).status == 200,
                     timeout=10, msg="chat with a valid key")
        r = h.post_json(self.d.url + "/v1/chat/completions", v1_chat(), headers=bearer(USER_KEY))
        self.assertEqual(r.status, 200, r)

    def test_model_outside_the_key_list(self):
        r = h.post_json(self.d.url + "/api/chat", dict(chat(), model="qwen:7b"),
                        headers=bearer(USER_KEY))
        self.assert_native_error(r, 403, "API key 'user' may not use model 'qwen:7b'")
        r = h.post_json(self.d.url + "/v1/chat/completions", v1_chat("mistral"),
                        headers=bearer(USER_KEY))
        self.assert_openai_error(r, 403, "permission_error", "may not use model 'mistral'")
        # A key without a list may use any model (this one is not installed: 404).
        r = h.post_json(self.d.url + "/api/chat", dict(chat(), model="qwen:7b"),
                        headers=bearer(ADMIN_KEY))
        self.assertEqual(r.status, 404, r)

    def test_model_lists_show_only_the_key_models(self):
        def names(path, key, field):
            r = h.request("GET", self.d.url + path, headers=bearer(key))
            self.assertEqual(r.status, 200, r)
            return sorted(m[field] for m in r.json()["models" if path.startswith("/api") else "data"])

        h.wait_until(lambda: len(names("/api/tags", ADMIN_KEY, "name")) == 2, timeout=10,
                     msg="both models listed")
        self.assertEqual(names("/api/tags", ADMIN_KEY, "name"), ["llama3.2:3b", "mistral:7b"])
        self.assertEqual(names("/api/tags", USER_KEY, "name"), ["llama3.2:3b"])
        self.assertEqual(names("/v1/models", USER_KEY, "id"), ["llama3.2:3b"])
        self.assertEqual(names("/v1/models", ADMIN_KEY, "id"), ["llama3.2:3b", "mistral:7b"])
        h.wait_until(lambda: names("/api/ps", USER_KEY, "name") == ["llama3.2:3b"], timeout=10,
                     msg="loaded model listed for the key")
        r = h.request("GET", self.d.url + "/v1/models/mistral:7b", headers=bearer(USER_KEY))
        self.assert_openai_error(r, 404, "not_found_error", "not found")
        r = h.request("GET", self.d.url + "/v1/models/mistral:7b", headers=bearer(ADMIN_KEY))
        self.assertEqual(r.status, 200, r)

    def test_refusals_counted_in_metrics(self):
        h.request("GET", self.d.url + "/api/tags")  # no key
        h.request("GET", self.d.url + "/api/tags", headers=bearer("not-a-key"))
        h.post_json(self.d.url + "/api/chat", dict(chat(), model="qwen:7b"), headers=bearer(USER_KEY))
        h.post_json(self.d.url + "/api/pull", {"model": MODEL}, headers=bearer(USER_KEY))
        for _ in range(3):  # 2/m: the third is refused
            h.request("GET", self.d.url + "/api/tags", headers=bearer(SLOW_KEY))
        text = h.request("GET", self.d.url + "/metrics").body.decode()

        def count(reason):
            m = re.search(r'^sollol_refused_requests_total\{reason="%s"\} (\d+)$' % reason, text, re.M)
            self.assertIsNotNone(m, reason)
            return int(m.group(1))

        self.assertEqual(count("unauthorized"), 2)
        self.assertEqual(count("forbidden"), 2)  # model outside the list, admin route
        self.assertEqual(count("rate_limited"), 1)
        self.assertEqual(count("body_too_large"), 0)

    def test_admin_routes(self):
        for method, path, body in (("POST", "/api/pull", {"model": MODEL}),
                                   ("DELETE", "/api/delete", {"model": "gone:1b"}),
                                   ("POST", "/api/copy", {"source": MODEL, "destination": "x"}),
                                   ("POST", "/api/create", {"model": "x", "from": MODEL}),
                                   ("POST", "/api/push", {"model": MODEL}),
                                   ("HEAD", "/api/blobs/sha256:" + "0" * 64, None)):
            r = h.request(method, self.d.url + path, body, headers=bearer(USER_KEY))
            self.assertEqual(r.status, 403, "%s %s: %r" % (method, path, r))
            if method != "HEAD":
                self.assertIn("admin only", r.json()["error"])
        r = h.post_json(self.d.url + "/api/pull", {"model": MODEL, "stream": False},
                        headers=bearer(ADMIN_KEY))
        self.assertEqual(r.status, 200, r)

    def test_rate_limit(self):
        ok = [h.request("GET", self.d.url + "/api/tags", headers=bearer(SLOW_KEY)).status
              for _ in range(2)]
        self.assertEqual(ok, [200, 200])
        r = h.request("GET", self.d.url + "/api/tags", headers=bearer(SLOW_KEY))
        self.assert_native_error(r, 429, "rate limit of API key 'slow' exceeded")
        retry = int(r.headers["retry-after"])
        self.assertTrue(1 <= retry <= 30, retry)  # 2/m: a token every 30 s
        r = h.post_json(self.d.url + "/v1/chat/completions", v1_chat(), headers=bearer(SLOW_KEY))
        self.assert_openai_error(r, 429, "rate_limit_error", "rate limit")
        self.assertIn("retry-after", r.headers)
        # Other keys have their own buckets; public paths charge nothing.
        self.assertEqual(h.request("GET", self.d.url + "/api/tags",
                                   headers=bearer(USER_KEY)).status, 200)
        self.assertEqual(h.request("GET", self.d.url + "/api/version",
                                   headers=bearer(SLOW_KEY)).status, 200)

    def test_authorization_never_forwarded(self):
        since = h.sim_stats(self.sim.url)["requests"]
        since = since[-1]["id"] if since else 0
        h.wait_until(lambda: h.post_json(self.d.url + "/api/chat", chat(),
                                         headers=bearer(USER_KEY)).status == 200,
                     timeout=10, msg="chat")
        recs = [x for x in h.sim_stats(self.sim.url, since)["requests"] if x["path"] == "/api/chat"]
        self.assertTrue(recs)
        self.assertFalse(any(x["authorization_present"] for x in recs), recs)


class OpenWithoutKeysTest(unittest.TestCase):
    def test_no_keys_everything_open(self):
        sim = h.start_sim("--tokens-per-second", "0", models=(MODEL + ",loaded",), test=self)
        d = start_daemon(self, sim, keys=None)
        self.assertEqual(h.request("GET", d.url + "/api/tags").status, 200)
        self.assertEqual(h.request("GET", d.url + "/api/tags", headers=bearer("anything")).status,
                         200)
        h.wait_until(lambda: h.post_json(d.url + "/api/chat", chat(),
                                         headers=bearer("client-secret")).status == 200,
                     timeout=10, msg="chat")
        recs = [x for x in h.sim_stats(sim.url)["requests"] if x["path"] == "/api/chat"]
        self.assertFalse(any(x["authorization_present"] for x in recs))
        # Loopback only: no warning about an open non-loopback listener.
        self.assertNotIn("no API keys configured", d.stderr_text())


class KeysFileTest(unittest.TestCase):
    def write_keys(self, mode):
        f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump({"keys": [{"name": "filed", "key": "plain-file-key", "models": ["llama3.2*"]}]},
                  f)
        f.close()
        self.addCleanup(os.unlink, f.name)
        os.chmod(f.name, mode)
        return f.name

    def test_world_readable_file_refused(self):
        path = self.write_keys(0o644)
        with self.assertRaises(h.ProcError) as cm:
            h.start_process("sollold", ["--listen", "127.0.0.1:0", "--node", "127.0.0.1:9",
                                        "--auth-keys-file", path], ready_timeout=10)
        msg = str(cm.exception)
        self.assertIn("config: auth.keys_file", msg)
        self.assertIn("mode 0644", msg)
        self.assertIn("chmod 600", msg)

    def test_private_file_with_plain_key(self):
        path = self.write_keys(0o600)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        sim = h.start_sim("--tokens-per-second", "0", models=(MODEL + ",loaded",), test=self)
        d = start_daemon(self, sim, "--auth-keys-file", path, keys=None)
        self.assertEqual(h.request("GET", d.url + "/api/tags").status, 401)
        self.assertEqual(h.request("GET", d.url + "/api/tags",
                                   headers=bearer("plain-file-key")).status, 200)
        # Plain keys are refused in the main config.
        with self.assertRaises(h.ProcError) as cm:
            h.start_process("sollold", ["--listen", "127.0.0.1:0", "--node", "127.0.0.1:9",
                                        "--auth-keys", json.dumps([{"name": "x", "key": "abcdefgh"}])],
                            ready_timeout=10)
        self.assertIn("plain keys are accepted only from auth.keys_file", str(cm.exception))


class FairnessByKeyTest(unittest.TestCase):
    def test_key_name_is_the_fairness_identity(self):
        # One slot; client "a" queues three requests, then client "b" one,
        # all from the same address. Round-robin between keys serves b's
        # request before a's later ones; by address they would be one client
        # and b would be last.
        sim = h.start_sim("--tokens-per-second", "50", models=(MODEL + ",loaded",), test=self)
        keys = [{"name": "a", "sha256": sha("key-a-123")}, {"name": "b", "sha256": sha("key-b-123")}]
        f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump({"nodes": [{"name": "only", "url": sim.url, "max_concurrent": 1}],
                   "auth": {"keys": keys}}, f)
        f.close()
        self.addCleanup(os.unlink, f.name)
        d = h.start_process("sollold", ["--config", f.name, "--listen", "127.0.0.1:0"] + PROBES,
                            test=self)
        h.wait_until(lambda: h.post_json(d.url + "/api/chat", chat(), headers=bearer("key-a-123"))
                     .status == 200, timeout=10, msg="node up")
        order, lock = [], threading.Lock()

        def send(key, tag, n):
            r = h.post_json(d.url + "/api/chat", chat(tag, n), headers=bearer(key), timeout=60)
            with lock:
                order.append((tag, r.status))

        since = h.sim_stats(sim.url)["requests"][-1]["id"]
        threads = [threading.Thread(target=send, args=("key-a-123", "blocker", 100))]
        threads[0].start()
        stats_hdr = bearer("key-a-123")
        h.wait_until(lambda: any(x["path"] == "/api/chat"
                                 for x in h.sim_stats(sim.url, since)["requests"]),
                     timeout=5, msg="the blocker holds the slot")
        for i in range(3):
            t = threading.Thread(target=send, args=("key-a-123", "a%d" % i, 2))
            t.start()
            threads.append(t)
            h.wait_until(lambda: h.request("GET", d.url + "/api/stats", headers=stats_hdr)
                         .json()["queue"]["length"] == i + 1, timeout=5, msg="a%d queued" % i)
        t = threading.Thread(target=send, args=("key-b-123", "b0", 2))
        t.start()
        threads.append(t)
        for t in threads:
            t.join(60)
        self.assertTrue(all(s == 200 for _, s in order), order)
        tags = [tag for tag, _ in order if tag != "blocker"]
        self.assertLessEqual(tags.index("b0"), 1, tags)


if __name__ == "__main__":
    unittest.main(verbosity=2)
