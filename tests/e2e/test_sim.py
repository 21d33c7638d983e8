"""End-to-end tests of ollama-sim, the simulated Ollama node every other
test and benchmark relies on. Run: python3 -B tests/e2e/test_sim.py
(SOLLOL_BUILD_DIR selects the build; default <repo>/build).

Timing assertions are deliberately loose: CI runs on a busy 2-core machine.
"""

import base64
import http.client
import hashlib
import json
import math
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
JSON_UTF8 = "application/json; charset=utf-8"
BUSY = "server busy, please try again.  maximum pending requests exceeded"


def chat_body(content="hello there", model="llama3.2:3b", **kw):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    body.update(kw)
    return body


def last_record(url, path=None):
    recs = h.sim_stats(url)["requests"]
    if path:
        recs = [r for r in recs if r["path"] == path]
    return recs[-1]


def norm(v):
    return math.sqrt(sum(x * x for x in v))


class RoutesTest(unittest.TestCase):
    """Shapes, headers and status codes of every route."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim(
            "--tokens-per-second", "0", "--ttft-ms", "0", "--load-ms", "20",
            "--version-string", "0.12.6", "--name", "routes",
            models=("llama3.2:3b,loaded,size=2019393189,params=3.2B,quant=Q4_K_M",
                    "nomic-embed-text,embed",
                    "qwen2.5:0.5b,family=qwen2,modified=1600000000"),
            test=cls)
        cls.url = cls.sim.url

    def test_root(self):
        r = h.request("GET", self.url + "/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.text, "Ollama is running")
        self.assertEqual(r.headers["content-type"], "text/plain; charset=utf-8")
        r = h.request("HEAD", self.url + "/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.headers["content-length"], "17")

    def test_version(self):
        for method in ("GET", "HEAD"):
            r = h.request(method, self.url + "/api/version")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers["content-type"], JSON_UTF8)
        self.assertEqual(h.get_json(self.url + "/api/version"), {"version": "0.12.6"})

    def test_tags(self):
        r = h.request("GET", self.url + "/api/tags")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], JSON_UTF8)
        models = r.json()["models"]
        names = [m["name"] for m in models]
        self.assertIn("llama3.2:3b", names)
        self.assertIn("nomic-embed-text:latest", names)
        for m in models:
            self.assertEqual(list(m.keys()), ["name", "model", "modified_at", "size", "digest", "details",
                                              "capabilities"])
            self.assertEqual(m["name"], m["model"])
            self.assertRegex(m["modified_at"], RFC3339_NANO)
            self.assertRegex(m["digest"], HEX64)
            self.assertIsInstance(m["size"], int)
            self.assertEqual(list(m["details"].keys()),
                             ["parent_model", "format", "family", "families", "parameter_size",
                              "quantization_level", "context_length", "embedding_length"])
            self.assertEqual(m["details"]["format"], "gguf")
        llama = next(m for m in models if m["name"] == "llama3.2:3b")
        self.assertEqual(llama["size"], 2019393189)
        self.assertEqual(llama["details"]["family"], "llama")
        self.assertEqual(llama["details"]["families"], ["llama"])
        self.assertEqual(llama["details"]["parameter_size"], "3.2B")
        self.assertEqual(llama["details"]["quantization_level"], "Q4_K_M")
        # newest first (whole seconds, as Ollama compares); qwen was made old
        stamps = [m["modified_at"][:19] for m in models]
        self.assertEqual(names[-1], "qwen2.5:0.5b")
        self.assertEqual(stamps, sorted(stamps, reverse=True))
        # deterministic: a second sim with the same models agrees
        with h.start_sim(models=("llama3.2:3b,size=2019393189",)) as other:
            o = h.get_json(other.url + "/api/tags")["models"][0]
            self.assertEqual(o["digest"], llama["digest"])
            self.assertEqual(o["modified_at"], llama["modified_at"])
        r = h.request("HEAD", self.url + "/api/tags")
        self.assertEqual((r.status, r.body), (200, b""))

    def test_name_normalisation(self):
        for name in ("llama3.2:3b", "LLAMA3.2:3B", "registry.ollama.ai/library/llama3.2:3b",
                     "library/llama3.2:3b"):
            r = h.post_json(self.url + "/api/generate",
                            {"model": name, "prompt": "hi", "stream": False,
                             "options": {"num_predict": 1}})
            self.assertEqual(r.status, 200, (name, r.body))
            self.assertEqual(r.json()["model"], name)  # echoed as sent, like Ollama
        # "x" means "x:latest"
        self.assertEqual(h.sim_models(self.url, install="tinyllama").status, 200)
        names = [m["name"] for m in h.get_json(self.url + "/api/tags")["models"]]
        self.assertIn("tinyllama:latest", names)
        r = h.post_json(self.url + "/api/show", {"model": "tinyllama:latest"})
        self.assertEqual(r.status, 200)
        r = h.post_json(self.url + "/api/show", {"model": "TinyLlama"})
        self.assertEqual(r.status, 200)

    def test_ps(self):
        r = h.request("GET", self.url + "/api/ps")
        self.assertEqual(r.status, 200)
        models = r.json()["models"]
        llama = next(m for m in models if m["name"] == "llama3.2:3b")
        self.assertEqual(list(llama.keys()),
                         ["name", "model", "size", "digest", "details", "expires_at", "size_vram",
                          "context_length"])
        self.assertRegex(llama["expires_at"], RFC3339_NANO)
        self.assertEqual(llama["size_vram"], llama["size"])
        self.assertIsInstance(llama["context_length"], int)
        self.assertEqual(h.request("HEAD", self.url + "/api/ps").status, 405)

    def test_show(self):
        r = h.post_json(self.url + "/api/show", {"model": "llama3.2:3b"})
        self.assertEqual(r.status, 200)
        s = r.json()
        for key in ("modelfile", "parameters", "template", "details", "model_info", "capabilities",
                    "modified_at"):
            self.assertIn(key, s)
        self.assertEqual(s["model_info"]["general.architecture"], "llama")
        self.assertEqual(s["model_info"]["general.parameter_count"], 3200000000)
        self.assertIn("llama.context_length", s["model_info"])
        self.assertEqual(list(s["model_info"]), sorted(s["model_info"]))
        self.assertEqual(s["capabilities"], ["completion"])
        e = h.post_json(self.url + "/api/show", {"model": "nomic-embed-text"}).json()
        self.assertEqual(e["capabilities"], ["embedding"])
        r = h.post_json(self.url + "/api/show", {"model": "nope"})
        self.assertEqual((r.status, r.json()), (404, {"error": "model 'nope' not found"}))
        r = h.post_json(self.url + "/api/show", {})
        self.assertEqual((r.status, r.json()), (400, {"error": "model is required"}))

    def test_generate_non_streamed(self):
        r = h.post_json(self.url + "/api/generate",
                        {"model": "llama3.2:3b", "prompt": "Why is the sky blue?", "stream": False,
                         "options": {"num_predict": 5}})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], JSON_UTF8)
        g = r.json()
        self.assertEqual(list(g.keys())[:6],
                         ["model", "created_at", "response", "done", "done_reason", "context"])
        self.assertEqual(g["model"], "llama3.2:3b")
        self.assertRegex(g["created_at"], RFC3339_NANO)
        self.assertTrue(g["created_at"].endswith("Z"))
        self.assertTrue(g["done"])
        self.assertEqual(g["done_reason"], "length")
        self.assertEqual(g["eval_count"], 5)
        self.assertEqual(g["prompt_eval_count"], len("Why is the sky blue?") // 4)
        self.assertTrue(all(isinstance(x, int) for x in g["context"]))
        self.assertEqual(len(g["context"]), g["prompt_eval_count"] + g["eval_count"])
        for k in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
            self.assertIsInstance(g[k], int)
            self.assertGreater(g[k], 0)
        self.assertGreaterEqual(g["total_duration"], g["eval_duration"])
        self.assertIsInstance(g["response"], str)
        self.assertGreater(len(g["response"]), 0)
        # no num_predict: --num-predict (16) tokens and done_reason "stop"
        g = h.post_json(self.url + "/api/generate",
                        {"model": "llama3.2:3b", "prompt": "hi", "stream": False}).json()
        self.assertEqual((g["eval_count"], g["done_reason"]), (16, "stop"))
        # raw requests carry no context
        g = h.post_json(self.url + "/api/generate",
                        {"model": "llama3.2:3b", "prompt": "hi", "raw": True, "stream": False}).json()
        self.assertNotIn("context", g)

    def test_chat_streamed_shape(self):
        with h.open_stream("POST", self.url + "/api/chat",
                           chat_body(options={"num_predict": 4})) as s:
            self.assertEqual(s.status, 200)
            self.assertEqual(s.headers["content-type"], "application/x-ndjson")
            self.assertEqual(s.headers.get("transfer-encoding"), "chunked")
            events = list(s.lines())
        self.assertEqual(len(events), 5)
        for e in events[:-1]:
            self.assertEqual(list(e.json.keys()), ["model", "created_at", "message", "done"])
            self.assertEqual(e.json["message"]["role"], "assistant")
            self.assertFalse(e.json["done"])
            self.assertRegex(e.json["created_at"], RFC3339_NANO)
        last = events[-1].json
        self.assertTrue(last["done"])
        self.assertEqual(last["message"], {"role": "assistant", "content": ""})
        self.assertEqual(last["done_reason"], "length")
        self.assertEqual(list(last.keys()),
                         ["model", "created_at", "message", "done", "done_reason", "total_duration",
                          "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                          "eval_duration"])
        self.assertEqual(last["eval_count"], 4)
        # stream defaults to true on /api/*
        r = h.post_json(self.url + "/api/generate", {"model": "llama3.2:3b", "prompt": "hi",
                                                      "options": {"num_predict": 2}})
        self.assertEqual(r.headers["content-type"], "application/x-ndjson")
        self.assertEqual(len(r.body.splitlines()), 3)

    def test_embed(self):
        r = h.post_json(self.url + "/api/embed", {"model": "nomic-embed-text", "input": ["a", "b b"]})
        self.assertEqual(r.status, 200, r.body)
        e = r.json()
        self.assertEqual(list(e.keys()),
                         ["model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"])
        self.assertEqual(len(e["embeddings"]), 2)
        for v in e["embeddings"]:
            self.assertEqual(len(v), 8)
            self.assertAlmostEqual(norm(v), 1.0, places=5)
        self.assertNotEqual(e["embeddings"][0], e["embeddings"][1])
        one = h.post_json(self.url + "/api/embed", {"model": "nomic-embed-text", "input": "a"}).json()
        self.assertEqual(one["embeddings"][0], e["embeddings"][0])  # same text, same vector
        d = h.post_json(self.url + "/api/embed",
                        {"model": "nomic-embed-text", "input": "a", "dimensions": 16}).json()
        self.assertEqual(len(d["embeddings"][0]), 16)
        self.assertAlmostEqual(norm(d["embeddings"][0]), 1.0, places=5)
        empty = h.post_json(self.url + "/api/embed", {"model": "nomic-embed-text", "input": []}).json()
        self.assertEqual(empty, {"model": "nomic-embed-text", "embeddings": []})
        legacy = h.post_json(self.url + "/api/embeddings", {"model": "nomic-embed-text", "prompt": "a"})
        self.assertEqual(legacy.status, 200)
        lv = legacy.json()["embedding"]
        self.assertEqual(len(lv), 8)
        for x, y in zip(lv, e["embeddings"][0]):
            self.assertAlmostEqual(x, y, places=6)
        r = h.post_json(self.url + "/api/embed", {"model": "nomic-embed-text", "input": [1]})
        self.assertEqual((r.status, r.json()), (400, {"error": "invalid input type"}))
        r = h.post_json(self.url + "/api/embed", {"model": "missing", "input": "a"})
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json(), {"error": 'model "missing" not found, try pulling it first'})
        # every node with the same model gives the same vector, whatever its --seed
        with h.start_sim("--seed", "99", "--load-ms", "0", models=("nomic-embed-text,embed",)) as other:
            o = h.post_json(other.url + "/api/embed", {"model": "nomic-embed-text", "input": "a"}).json()
            self.assertEqual(o["embeddings"][0], e["embeddings"][0])

    def test_openai_chat(self):
        r = h.post_json(self.url + "/v1/chat/completions", chat_body(max_tokens=3))
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.headers["content-type"], "application/json")
        c = r.json()
        self.assertEqual(c["object"], "chat.completion")
        self.assertTrue(c["id"].startswith("chatcmpl-"))
        self.assertEqual(c["system_fingerprint"], "fp_ollama")
        self.assertEqual(c["choices"][0]["message"]["role"], "assistant")
        self.assertEqual(c["choices"][0]["finish_reason"], "length")
        self.assertEqual(c["usage"]["completion_tokens"], 3)
        self.assertEqual(c["usage"]["total_tokens"],
                         c["usage"]["prompt_tokens"] + c["usage"]["completion_tokens"])
        with h.open_stream("POST", self.url + "/v1/chat/completions",
                           chat_body(max_tokens=3, stream=True,
                                     stream_options={"include_usage": True})) as s:
            self.assertEqual(s.headers["content-type"], "text/event-stream")
            events = list(s.sse())
        self.assertEqual(events[-1].raw, b"[DONE]")
        chunks = [e.json for e in events[:-1]]
        self.assertEqual(len(chunks), 5)  # 3 tokens, finish, usage
        for i, ch in enumerate(chunks[:3]):
            self.assertEqual(ch["object"], "chat.completion.chunk")
            self.assertIsNone(ch["choices"][0]["finish_reason"])
            # Ollama 0.32: the role only in the first chunk
            self.assertEqual(list(ch["choices"][0]["delta"]), ["role", "content"] if i == 0 else ["content"])
            if i == 0:
                self.assertEqual(ch["choices"][0]["delta"]["role"], "assistant")
        # the finish chunk has an empty delta; one "created" for the whole stream
        self.assertEqual(chunks[3]["choices"][0]["delta"], {})
        self.assertEqual(len({ch["created"] for ch in chunks}), 1)
        self.assertEqual(chunks[3]["choices"][0]["finish_reason"], "length")
        self.assertEqual(chunks[4]["choices"], [])
        self.assertEqual(chunks[4]["usage"]["completion_tokens"], 3)
        text = "".join(ch["choices"][0]["delta"]["content"] for ch in chunks[:3])
        self.assertEqual(text, c["choices"][0]["message"]["content"])
        # errors in OpenAI's shape
        r = h.post_json(self.url + "/v1/chat/completions", chat_body(model="missing"))
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json(), {"error": {"message": "model 'missing' not found",
                                              "type": "api_error", "param": None, "code": None}})
        r = h.post_json(self.url + "/v1/chat/completions", {"model": "llama3.2:3b", "messages": []})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"]["type"], "invalid_request_error")

    def test_openai_completions_embeddings_models(self):
        r = h.post_json(self.url + "/v1/completions", {"model": "llama3.2:3b", "prompt": "hi",
                                                        "max_tokens": 2})
        c = r.json()
        self.assertEqual(c["object"], "text_completion")
        self.assertTrue(c["id"].startswith("cmpl-"))
        self.assertEqual(c["choices"][0]["finish_reason"], "length")
        with h.open_stream("POST", self.url + "/v1/completions",
                           {"model": "llama3.2:3b", "prompt": "hi", "max_tokens": 2,
                            "stream": True}) as s:
            events = list(s.sse())
        self.assertEqual([e.raw for e in events][-1], b"[DONE]")
        self.assertEqual("".join(e.json["choices"][0]["text"] for e in events[:-1]),
                         c["choices"][0]["text"])
        r = h.post_json(self.url + "/v1/embeddings", {"model": "nomic-embed-text", "input": ["x", "y"]})
        e = r.json()
        self.assertEqual(e["object"], "list")
        self.assertEqual([d["index"] for d in e["data"]], [0, 1])
        self.assertEqual(e["data"][0]["object"], "embedding")
        self.assertEqual(e["usage"]["prompt_tokens"], e["usage"]["total_tokens"])
        m = h.get_json(self.url + "/v1/models")
        self.assertEqual(m["object"], "list")
        ids = [d["id"] for d in m["data"]]
        self.assertIn("llama3.2:3b", ids)
        self.assertEqual(m["data"][0]["object"], "model")
        self.assertEqual(m["data"][0]["owned_by"], "library")
        one = h.get_json(self.url + "/v1/models/llama3.2:3b")
        self.assertEqual((one["id"], one["object"]), ("llama3.2:3b", "model"))
        r = h.request("GET", self.url + "/v1/models/nope")
        self.assertEqual((r.status, r.json()["error"]["message"]), (404, "model 'nope' not found"))

    def test_errors(self):
        r = h.request("GET", self.url + "/api/nope")
        self.assertEqual((r.status, r.text, r.headers["content-type"]),
                         (404, "404 page not found", "text/plain"))
        r = h.request("GET", self.url + "/api/chat")
        self.assertEqual((r.status, r.text), (405, "405 method not allowed"))
        r = h.request("DELETE", self.url + "/api/tags")
        self.assertEqual(r.status, 405)
        r = h.request("POST", self.url + "/api/chat", body=b"")
        self.assertEqual((r.status, r.json()), (400, {"error": "missing request body"}))
        self.assertEqual(r.headers["content-type"], JSON_UTF8)
        r = h.request("POST", self.url + "/api/chat", body=b"{not json")
        self.assertEqual(r.status, 400)
        self.assertIn("error", r.json())
        r = h.request("POST", self.url + "/api/chat", body=b"[1,2]")
        self.assertEqual(r.status, 400)
        self.assertIn("cannot unmarshal array", r.json()["error"])
        r = h.post_json(self.url + "/api/chat", {"messages": []})
        self.assertEqual((r.status, r.json()), (400, {"error": "model is required"}))
        r = h.post_json(self.url + "/api/chat", chat_body(model="missing:7b"))
        self.assertEqual((r.status, r.json()), (404, {"error": "model 'missing:7b' not found"}))
        r = h.post_json(self.url + "/api/generate", {"model": "missing", "prompt": "x"})
        self.assertEqual((r.status, r.json()), (404, {"error": "model 'missing' not found"}))
        r = h.post_json(self.url + "/api/generate", {"model": "nomic-embed-text", "prompt": "x"})
        self.assertEqual((r.status, r.json()),
                         (400, {"error": '"nomic-embed-text" does not support generate'}))
        r = h.post_json(self.url + "/api/chat", {"model": 5, "messages": []})
        self.assertEqual(r.status, 400)
        self.assertIn("cannot unmarshal number", r.json()["error"])
        r = h.post_json(self.url + "/api/chat", chat_body(keep_alive="300"))
        self.assertEqual(r.status, 400)
        self.assertIn("missing unit", r.json()["error"])
        r = h.post_json(self.url + "/api/chat", chat_body(model="nomic-embed-text"))
        self.assertEqual((r.status, r.json()),
                         (400, {"error": '"nomic-embed-text" does not support chat'}))
        self.assertEqual(h.post_json(self.url + "/api/me", {}).status, 401)
        self.assertEqual(h.post_json(self.url + "/api/signout", {}).status, 401)
        self.assertEqual(h.request("OPTIONS", self.url + "/api/chat").status, 204)
        # gin redirects a trailing slash
        r = h.request("GET", self.url + "/api/tags/")
        self.assertEqual((r.status, r.headers["location"]), (301, "/api/tags"))
        r = h.request("POST", self.url + "/api/chat/", body=chat_body())
        self.assertEqual(r.status, 307)

    def test_model_management(self):
        # pull streams progress, then the model is installed
        with h.open_stream("POST", self.url + "/api/pull", {"model": "phi3:mini"}) as s:
            self.assertEqual(s.headers["content-type"], "application/x-ndjson")
            lines = [e.json for e in s.lines()]
        self.assertEqual(lines[0], {"status": "pulling manifest"})
        self.assertEqual(lines[-1], {"status": "success"})
        layer = [l for l in lines if l["status"].startswith("pulling ") and "digest" in l]
        self.assertTrue(layer)
        self.assertTrue(layer[0]["digest"].startswith("sha256:"))
        self.assertEqual(layer[0]["status"], "pulling " + layer[0]["digest"][7:19])
        self.assertIn({"status": "verifying sha256 digest"}, lines)
        self.assertIn({"status": "writing manifest"}, lines)
        self.assertIn("phi3:mini", [m["name"] for m in h.get_json(self.url + "/api/tags")["models"]])
        r = h.post_json(self.url + "/api/pull", {"model": "gemma3:1b", "stream": False})
        self.assertEqual((r.status, r.json()), (200, {"status": "success"}))
        # copy, delete
        r = h.post_json(self.url + "/api/copy", {"source": "phi3:mini", "destination": "phi3:backup"})
        self.assertEqual((r.status, r.body), (200, b""))
        r = h.post_json(self.url + "/api/copy", {"source": "nope", "destination": "x"})
        self.assertEqual(r.status, 404)
        tags = {m["name"]: m for m in h.get_json(self.url + "/api/tags")["models"]}
        self.assertEqual(tags["phi3:backup"]["digest"], tags["phi3:mini"]["digest"])
        r = h.request("DELETE", self.url + "/api/delete", body={"model": "phi3:backup"})
        self.assertEqual((r.status, r.body), (200, b""))
        r = h.request("DELETE", self.url + "/api/delete", body={"model": "phi3:backup"})
        self.assertEqual((r.status, r.json()), (404, {"error": "model 'phi3:backup' not found"}))
        # create from an existing model
        with h.open_stream("POST", self.url + "/api/create",
                           {"model": "mario", "from": "llama3.2:3b", "system": "It's a me"}) as s:
            lines = [e.json for e in s.lines()]
        self.assertEqual(lines[-1], {"status": "success"})
        self.assertEqual(h.post_json(self.url + "/api/show", {"model": "mario"}).status, 200)
        r = h.post_json(self.url + "/api/create", {"model": "luigi"})
        self.assertEqual(r.status, 400)
        with h.open_stream("POST", self.url + "/api/push", {"model": "mario"}) as s:
            lines = [e.json for e in s.lines()]
        self.assertEqual(lines[-1], {"status": "success"})
        # blobs: HEAD 404 -> POST 201 (sha256 verified) -> HEAD 200; bad digest 400
        data = b"GGUF fake weights"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.assertEqual(h.request("HEAD", self.url + "/api/blobs/" + digest).status, 404)
        r = h.request("POST", self.url + "/api/blobs/" + digest, body=data)
        self.assertEqual(r.status, 201)
        self.assertEqual(h.request("HEAD", self.url + "/api/blobs/" + digest).status, 200)
        self.assertEqual(h.request("POST", self.url + "/api/blobs/" + digest, body=data).status, 200)
        wrong = "sha256:" + "0" * 64
        r = h.request("POST", self.url + "/api/blobs/" + wrong, body=data)
        self.assertEqual(r.status, 400)
        self.assertIn("digest mismatch", r.json()["error"])
        self.assertEqual(h.request("HEAD", self.url + "/api/blobs/sha256:abc").status, 400)

    def test_stats_record(self):
        body = json.dumps(chat_body(options={"num_predict": 1}, stream=False)).encode()
        r = h.request("POST", self.url + "/api/chat", body=body,
                      headers={"Content-Type": "application/json", "User-Agent": "e2e-agent/1",
                               "X-Request-Id": "req-42", "Authorization": "Bearer x",
                               "Accept": "application/json"})
        self.assertEqual(r.status, 200)
        rec = h.wait_until(lambda: next((x for x in h.sim_stats(self.url)["requests"]
                                         if x["x_request_id"] == "req-42" and x["ended_ms"]), None),
                           msg="record of the request")
        self.assertEqual(rec["method"], "POST")
        self.assertEqual(rec["path"], "/api/chat")
        self.assertEqual(rec["model"], "llama3.2:3b")
        self.assertIs(rec["stream"], False)
        self.assertTrue(rec["host"].startswith("127.0.0.1:"))
        self.assertEqual(rec["user_agent"], "e2e-agent/1")
        self.assertEqual(rec["content_type"], "application/json")
        self.assertEqual(rec["accept"], "application/json")
        self.assertIs(rec["authorization_present"], True)
        self.assertEqual(rec["body_len"], len(body))
        self.assertEqual(rec["body_fnv1a64"], h.fnv1a64(body))
        self.assertEqual(rec["outcome"], "completed")
        self.assertLessEqual(rec["received_ms"], rec["first_byte_ms"])
        self.assertLessEqual(rec["first_byte_ms"], rec["ended_ms"])
        self.assertEqual(rec["prompt_eval_count"], 2)
        self.assertIsInstance(rec["slot"], int)
        # stream as sent: absent -> null, true -> true
        h.post_json(self.url + "/api/chat", chat_body(options={"num_predict": 1}))
        self.assertIsNone(last_record(self.url, "/api/chat")["stream"])
        h.post_json(self.url + "/api/chat", chat_body(options={"num_predict": 1}, stream=True))
        self.assertIs(last_record(self.url, "/api/chat")["stream"], True)
        h.request("GET", self.url + "/api/nope")
        self.assertEqual(last_record(self.url)["outcome"], "error:404")
        st = h.sim_stats(self.url)
        for k in ("name", "requests_total", "in_flight", "max_in_flight", "max_active_per_model",
                  "completed", "cancelled", "faults_injected", "loaded", "requests"):
            self.assertIn(k, st)
        self.assertEqual(st["name"], "routes")
        self.assertIn("llama3.2:3b", [m["name"] for m in st["loaded"]])
        # control routes are never recorded and never host-checked
        r = h.request("GET", self.url + "/_sim/stats", headers={"Host": "evil.example"})
        self.assertEqual(r.status, 200)
        self.assertNotIn("/_sim/stats", [x["path"] for x in r.json()["requests"]])
        since = st["requests"][-1]["id"]
        self.assertEqual(h.sim_stats(self.url, since=since)["requests"], [])

    def test_sim_models_control(self):
        url = self.url
        self.assertEqual(h.sim_models(url, install="extra:1b,params=1B").status, 200)
        self.assertEqual(h.sim_models(url, load="extra:1b").status, 200)
        self.assertIn("extra:1b", [m["name"] for m in h.get_json(url + "/api/ps")["models"]])
        self.assertEqual(h.sim_models(url, unload="extra:1b").status, 200)
        self.assertNotIn("extra:1b", [m["name"] for m in h.get_json(url + "/api/ps")["models"]])
        self.assertEqual(h.sim_models(url, remove="extra:1b").status, 200)
        self.assertEqual(h.sim_models(url, load="extra:1b").status, 404)
        self.assertEqual(h.sim_models(url, install="bad name!").status, 400)


class StreamingTest(unittest.TestCase):
    """Pacing and determinism of generated output."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", "20", "--ttft-ms", "5", "--num-predict", "12",
                              "--seed", "7", test=cls)
        cls.url = cls.sim.url

    def test_chunks_are_paced(self):
        with h.open_stream("POST", self.url + "/api/chat", chat_body("pace me")) as s:
            events = list(s.lines())
        self.assertEqual(len(events), 13)
        tokens = events[:-1]
        span = tokens[-1].t - tokens[0].t
        # 11 intervals of 50 ms: ~0.55 s; all at once would be ~0
        self.assertGreater(span, 0.4, [round(e.t - s.t_start, 3) for e in events])
        gaps = sorted(b.t - a.t for a, b in zip(tokens, tokens[1:]))
        self.assertGreater(gaps[len(gaps) // 2], 0.02)
        final = events[-1].json
        rate = final["eval_count"] / final["eval_duration"] * 1e9
        self.assertGreater(rate, 10)
        self.assertLess(rate, 25)
        # the first chunk (and the headers) come with the first token, not before
        self.assertGreater(s.t_headers - s.t_start, 0.03)

    def test_sse_is_paced(self):
        with h.open_stream("POST", self.url + "/v1/chat/completions",
                           chat_body("pace me", stream=True, max_tokens=8)) as s:
            events = list(s.sse())
        self.assertEqual(events[-1].raw, b"[DONE]",
                         (len(events), s.incomplete, last_record(self.url), self.sim.stderr_text()[-2000:]))
        self.assertGreater(events[7].t - events[0].t, 0.25)

    def test_non_streamed_equals_streamed(self):
        body = chat_body("determinism please", options={"num_predict": 6, "seed": 3})
        with h.open_stream("POST", self.url + "/api/chat", body) as s:
            streamed = "".join(e.json["message"]["content"] for e in s.lines())
        body["stream"] = False
        whole = h.post_json(self.url + "/api/chat", body).json()
        self.assertEqual(whole["message"]["content"], streamed)
        again = h.post_json(self.url + "/api/chat", body).json()
        self.assertEqual(again["message"]["content"], streamed)
        gen = {"model": "llama3.2:3b", "prompt": "determinism", "options": {"num_predict": 5}}
        with h.open_stream("POST", self.url + "/api/generate", gen) as s:
            events = [e.json for e in s.lines()]
        gen["stream"] = False
        g = h.post_json(self.url + "/api/generate", gen).json()
        self.assertEqual("".join(e["response"] for e in events), g["response"])
        self.assertEqual(events[-1]["context"], g["context"])

    def test_output_depends_on_inputs(self):
        def text(**kw):
            b = chat_body(kw.pop("content", "same prompt"), stream=False)
            b.update(kw)
            return h.post_json(self.url + "/api/chat", b).json()["message"]["content"]

        base = text(options={"num_predict": 8, "seed": 1})
        self.assertEqual(base, text(options={"num_predict": 8, "seed": 1}))
        self.assertNotEqual(base, text(options={"num_predict": 8, "seed": 2}))
        self.assertNotEqual(base, text(content="other prompt", options={"num_predict": 8, "seed": 1}))
        self.assertNotEqual(base, text(options={"num_predict": 8, "seed": 1, "temperature": 0.2}))
        # greedy decoding ignores the seed
        self.assertEqual(text(options={"num_predict": 8, "seed": 1, "temperature": 0}),
                         text(options={"num_predict": 8, "seed": 2, "temperature": 0}))
        # another node with the same --seed says the same; another seed does not
        with h.start_sim("--tokens-per-second", "0", "--seed", "7") as same, \
                h.start_sim("--tokens-per-second", "0", "--seed", "8") as other:
            b = chat_body("same prompt", stream=False, options={"num_predict": 8, "seed": 1})
            self.assertEqual(h.post_json(same.url + "/api/chat", b).json()["message"]["content"], base)
            self.assertNotEqual(h.post_json(other.url + "/api/chat", b).json()["message"]["content"],
                                base)


class SlotsTest(unittest.TestCase):
    """--parallel slots per model, FIFO waiting, --max-queue."""

    def test_parallel_slots(self):
        sim = h.start_sim("--parallel", "2", "--tokens-per-second", "20", "--ttft-ms", "0",
                          test=self)
        h.sim_reset(sim.url)
        body = chat_body(stream=False, options={"num_predict": 8})
        t0 = time.monotonic()
        results = h.run_parallel([lambda: h.post_json(sim.url + "/api/chat", body)] * 4)
        elapsed = time.monotonic() - t0
        self.assertEqual([r.status for r in results], [200] * 4)
        st = h.sim_stats(sim.url)
        self.assertEqual(st["max_active_per_model"]["llama3.2:3b"], 2)
        self.assertEqual(st["max_in_flight"], 4)
        self.assertEqual(st["completed"], 4)
        self.assertEqual({r["slot"] for r in st["requests"]} - {0, 1}, set())
        # two rounds of 8 tokens at 20/s
        self.assertGreater(elapsed, 0.6)

    def test_max_queue(self):
        sim = h.start_sim("--parallel", "1", "--max-queue", "1", "--tokens-per-second", "20",
                          "--ttft-ms", "0", test=self)
        body = chat_body(stream=False, options={"num_predict": 20})
        threads = []
        results = []
        for _ in range(2):
            t = threading.Thread(target=lambda: results.append(h.post_json(sim.url + "/api/chat", body)))
            t.start()
            threads.append(t)
        h.wait_until(lambda: h.sim_stats(sim.url)["queued"] == 1, msg="one queued request")
        r = h.post_json(sim.url + "/api/chat", body)
        self.assertEqual((r.status, r.json()), (503, {"error": BUSY}))
        for t in threads:
            t.join(30)
        self.assertEqual([x.status for x in results], [200, 200])

    def test_fifo(self):
        sim = h.start_sim("--parallel", "1", "--tokens-per-second", "50", "--ttft-ms", "0",
                          test=self)
        order = []
        lock = threading.Lock()

        def one(i):
            r = h.post_json(sim.url + "/api/chat", chat_body("fifo %d" % i, stream=False,
                                                             options={"num_predict": 5}))
            with lock:
                order.append(i)
            return r.status

        threads = []
        for i in range(4):
            t = threading.Thread(target=one, args=(i,))
            t.start()
            threads.append(t)
            h.wait_until(lambda: h.sim_stats(sim.url)["requests_total"] >= i + 1, msg="arrival")
        for t in threads:
            t.join(30)
        self.assertEqual(order, [0, 1, 2, 3])


class PromptCacheTest(unittest.TestCase):
    """A slot remembers its last prompt; shared prefixes are not re-evaluated."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--parallel", "1", "--prompt-tps", "4000", "--ttft-ms", "0",
                              "--tokens-per-second", "0", "--num-predict", "4", test=cls)
        cls.url = cls.sim.url

    def test_conversation_second_turn_is_cached(self):
        system = {"role": "system", "content": "You are a careful assistant. " * 100}
        turn1 = [system, {"role": "user", "content": "first question " * 20}]
        a1 = h.post_json(self.url + "/api/chat", {"model": "llama3.2:3b", "messages": turn1,
                                                   "stream": False}).json()
        rec1 = last_record(self.url, "/api/chat")
        turn2 = turn1 + [a1["message"], {"role": "user", "content": "second question " * 20}]
        a2 = h.post_json(self.url + "/api/chat", {"model": "llama3.2:3b", "messages": turn2,
                                                   "stream": False}).json()
        rec2 = last_record(self.url, "/api/chat")
        self.assertEqual(rec1["cached_prompt_tokens"], 0)
        self.assertGreater(rec2["cached_prompt_tokens"], 700)
        self.assertEqual(rec2["prompt_eval_count"], a2["prompt_eval_count"])
        self.assertGreater(a2["prompt_eval_count"], a1["prompt_eval_count"])
        self.assertLess(a2["prompt_eval_duration"], a1["prompt_eval_duration"] / 2)

    def test_generate_byte_prefix(self):
        prefix = "Once upon a time in a cluster far away, " * 50
        h.post_json(self.url + "/api/generate", {"model": "llama3.2:3b", "prompt": prefix + "A",
                                                  "stream": False})
        h.post_json(self.url + "/api/generate", {"model": "llama3.2:3b", "prompt": prefix + "B",
                                                  "stream": False})
        rec = last_record(self.url, "/api/generate")
        self.assertGreaterEqual(rec["cached_prompt_tokens"], len(prefix) // 4 - 1)


class LoadAndKeepAliveTest(unittest.TestCase):
    """Cold loads, keep_alive, /api/ps, --max-loaded."""

    def test_cold_load(self):
        sim = h.start_sim("--load-ms", "300", "--tokens-per-second", "0", test=self,
                          models=("llama3.2:3b",))
        self.assertEqual(h.get_json(sim.url + "/api/ps")["models"], [])
        body = chat_body(stream=False, options={"num_predict": 2})
        first, second = h.run_parallel([lambda: h.post_json(sim.url + "/api/chat", body)] * 2)
        for r in (first, second):
            self.assertGreater(r.json()["load_duration"], 0.25e9)  # both waited for the load
        third = h.post_json(sim.url + "/api/chat", body).json()
        self.assertLess(third["load_duration"], 0.05e9)
        self.assertEqual([m["name"] for m in h.get_json(sim.url + "/api/ps")["models"]],
                         ["llama3.2:3b"])

    def test_load_unload_and_expiry(self):
        sim = h.start_sim("--load-ms", "50", "--keep-alive", "5m", test=self, models=("llama3.2:3b",))
        url = sim.url
        r = h.post_json(url + "/api/chat", {"model": "llama3.2:3b", "messages": []}).json()
        self.assertEqual((r["done"], r["done_reason"]), (True, "load"))
        self.assertEqual(r["message"], {"role": "assistant", "content": ""})
        ps = h.get_json(url + "/api/ps")["models"]
        self.assertEqual(len(ps), 1)
        left = self._seconds_left(ps[0]["expires_at"])
        self.assertTrue(250 < left < 330, left)
        r = h.post_json(url + "/api/generate", {"model": "llama3.2:3b", "keep_alive": 0})
        self.assertEqual(r.headers["content-type"], JSON_UTF8)
        self.assertEqual((r.json()["done_reason"], r.json()["response"]), ("unload", ""))
        self.assertEqual(h.get_json(url + "/api/ps")["models"], [])
        r = h.post_json(url + "/api/generate", {"model": "llama3.2:3b", "keep_alive": "10m"}).json()
        self.assertEqual(r["done_reason"], "load")
        left = self._seconds_left(h.get_json(url + "/api/ps")["models"][0]["expires_at"])
        self.assertTrue(550 < left < 630, left)
        h.post_json(url + "/api/generate", {"model": "llama3.2:3b", "keep_alive": -1})
        exp = h.get_json(url + "/api/ps")["models"][0]["expires_at"]
        self.assertGreater(int(exp[:4]), 2200)  # "forever", like Go's time.Add(MaxInt64)
        # keep_alive 0 on a real request unloads it once done; 1 second expires
        h.post_json(url + "/api/chat", chat_body(stream=False, keep_alive=0,
                                                 options={"num_predict": 1}))
        self.assertEqual(h.get_json(url + "/api/ps")["models"], [])
        h.post_json(url + "/api/chat", chat_body(stream=False, keep_alive="1s",
                                                 options={"num_predict": 1}))
        self.assertEqual(len(h.get_json(url + "/api/ps")["models"]), 1)
        h.wait_until(lambda: h.get_json(url + "/api/ps")["models"] == [], timeout=5,
                     msg="keep-alive expiry")
        r = h.post_json(url + "/api/chat", {"model": "llama3.2:3b", "messages": [], "keep_alive": 0})
        self.assertEqual(r.json()["done_reason"], "unload")

    def test_max_loaded_evicts_lru(self):
        sim = h.start_sim("--load-ms", "10", "--max-loaded", "2", "--tokens-per-second", "0",
                          test=self, models=("a:1b", "b:1b", "c:1b"))
        for name in ("a:1b", "b:1b"):
            h.post_json(sim.url + "/api/chat", chat_body(model=name, stream=False))
        h.post_json(sim.url + "/api/chat", chat_body(model="a:1b", stream=False))  # b is now LRU
        h.post_json(sim.url + "/api/chat", chat_body(model="c:1b", stream=False))
        names = sorted(m["name"] for m in h.get_json(sim.url + "/api/ps")["models"])
        self.assertEqual(names, ["a:1b", "c:1b"])

    @staticmethod
    def _seconds_left(stamp):
        import datetime
        frac = ""
        m = re.match(r"^(.*?)(\.\d+)?Z$", stamp)
        base, frac = m.group(1), (m.group(2) or "")
        t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.timezone.utc).timestamp() + (float(frac) if frac else 0)
        return t - time.time()


class FaultsTest(unittest.TestCase):
    """Every fault mode, its scope, count and model filter."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", "50", "--ttft-ms", "0", "--num-predict", "6",
                              models=("llama3.2:3b,loaded", "qwen3:4b,loaded"), test=cls)
        cls.url = cls.sim.url

    def setUp(self):
        h.sim_fault(self.url, "none")

    def tearDown(self):
        h.sim_fault(self.url, "none")

    def test_error_statuses(self):
        before = h.sim_stats(self.url)["faults_injected"]
        h.sim_fault(self.url, "500", count=1)
        r = h.post_json(self.url + "/api/chat", chat_body())
        self.assertEqual(r.status, 500)
        self.assertIn("error", r.json())
        self.assertEqual(h.post_json(self.url + "/api/chat", chat_body(stream=False)).status, 200)
        h.sim_fault(self.url, "503", count=1)
        r = h.post_json(self.url + "/api/chat", chat_body())
        self.assertEqual((r.status, r.json()), (503, {"error": BUSY}))
        h.sim_fault(self.url, "429", arg=3, count=1)
        r = h.post_json(self.url + "/api/generate", {"model": "llama3.2:3b", "prompt": "x"})
        self.assertEqual(r.status, 429)
        self.assertEqual(r.headers["retry-after"], "3")
        h.sim_fault(self.url, "404", count=1)
        r = h.post_json(self.url + "/api/chat", chat_body())
        self.assertEqual((r.status, r.json()), (404, {"error": "model 'llama3.2:3b' not found"}))
        h.sim_fault(self.url, "500", count=1)
        r = h.post_json(self.url + "/v1/chat/completions", chat_body())
        self.assertEqual(r.status, 500)
        self.assertEqual(r.json()["error"]["type"], "api_error")
        st = h.sim_stats(self.url)
        self.assertEqual(st["faults_injected"] - before, 5)
        outcomes = [x["outcome"] for x in st["requests"] if x["outcome"].startswith("fault:")]
        self.assertEqual(outcomes[-5:], ["fault:500", "fault:503", "fault:429", "fault:404",
                                         "fault:500"])
        self.assertEqual(h.sim_stats(self.url)["fault"]["mode"], "none")  # counts ran out

    def test_scope_and_model_filter(self):
        h.sim_fault(self.url, "503")
        self.assertEqual(h.request("GET", self.url + "/api/tags").status, 200)  # inference only
        self.assertEqual(h.post_json(self.url + "/api/embed", {"model": "llama3.2:3b",
                                                                "input": "x"}).status, 503)
        h.sim_fault(self.url, "503", scope="all")
        self.assertEqual(h.request("GET", self.url + "/api/tags").status, 503)
        self.assertEqual(h.request("GET", self.url + "/api/version").status, 503)
        self.assertEqual(h.request("GET", self.url + "/_sim/stats").status, 200)  # never faulted
        h.sim_fault(self.url, "500", model="qwen3:4b")
        self.assertEqual(h.post_json(self.url + "/api/chat", chat_body(stream=False)).status, 200)
        self.assertEqual(h.post_json(self.url + "/api/chat",
                                     chat_body(model="QWEN3:4b", stream=False)).status, 500)
        h.sim_fault(self.url, "none")
        self.assertEqual(h.post_json(self.url + "/api/chat",
                                     chat_body(model="qwen3:4b", stream=False)).status, 200)
        r = h.request("POST", self.url + "/_sim/fault", body={"mode": "explode"})
        self.assertEqual(r.status, 400)

    def test_hang(self):
        h.sim_fault(self.url, "hang", count=1)
        with self.assertRaises(socket.timeout):
            h.request("POST", self.url + "/api/chat", body=chat_body(), timeout=0.7)
        rec = last_record(self.url, "/api/chat")
        self.assertEqual(rec["outcome"], "fault:hang")
        self.assertIsNone(rec["first_byte_ms"])
        h.wait_until(lambda: h.sim_stats(self.url)["in_flight"] == 0, timeout=3,
                     msg="hung request released after the client left")

    def test_stall(self):
        h.sim_fault(self.url, "stall", arg=2, count=1)
        with h.open_stream("POST", self.url + "/api/chat", chat_body(), timeout=1.0) as s:
            self.assertEqual(s.status, 200)
            got = []
            with self.assertRaises(socket.timeout):
                for e in s.lines():
                    got.append(e)
            self.assertEqual(len(got), 2)
        h.wait_until(lambda: h.sim_stats(self.url)["in_flight"] == 0, timeout=3, msg="released")
        self.assertEqual(last_record(self.url, "/api/chat")["outcome"], "fault:stall")

    def test_close(self):
        h.sim_fault(self.url, "close", arg=2, count=1)
        with h.open_stream("POST", self.url + "/api/chat", chat_body()) as s:
            got = list(s.lines())
            self.assertEqual(len(got), 2)
            self.assertTrue(s.incomplete, "a cut chunked body must end incomplete")
        h.sim_fault(self.url, "close", arg=0, count=1)
        r = h.raw_exchange(self.sim.host, self.sim.port,
                           b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout=3)
        self.assertTrue(r.startswith(b"HTTP/1.1 200"))  # "/" is not an inference route
        h.sim_fault(self.url, "close", count=1, scope="all")
        r = h.raw_exchange(self.sim.host, self.sim.port,
                           b"GET /api/tags HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout=3)
        self.assertEqual(r, b"")

    def test_slow(self):
        h.sim_fault(self.url, "slow", arg=100, count=1)
        with h.open_stream("POST", self.url + "/api/chat", chat_body(options={"num_predict": 4})) as s:
            events = list(s.lines())
        gaps = [b.t - a.t for a, b in zip(events[:4], events[1:4])]
        self.assertGreater(min(gaps), 0.08, gaps)

    def test_refuse(self):
        h.sim_fault(self.url, "refuse", count=1)
        r = h.raw_exchange(self.sim.host, self.sim.port,
                           b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout=3)
        self.assertEqual(r, b"")
        self.assertEqual(h.request("GET", self.url + "/api/version").status, 200)

    def test_cli_fault(self):
        with h.start_sim("--fault", "503") as sim:
            self.assertEqual(h.post_json(sim.url + "/api/chat", chat_body()).status, 503)
            self.assertEqual(h.request("GET", sim.url + "/api/tags").status, 200)
            self.assertEqual(h.sim_stats(sim.url)["fault"]["mode"], "503")


class DisconnectTest(unittest.TestCase):
    """A client that goes away is noticed fast and frees its slot."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--parallel", "1", "--tokens-per-second", "10", "--ttft-ms", "0",
                              "--load-ms", "500", models=("llama3.2:3b,loaded", "cold:1b"), test=cls)
        cls.url = cls.sim.url

    def setUp(self):
        h.sim_reset(self.url)

    def test_mid_stream(self):
        s = h.open_stream("POST", self.url + "/api/chat", chat_body(options={"num_predict": 100}))
        it = s.lines()
        next(it)
        next(it)
        s.close()
        t0 = time.monotonic()
        h.wait_until(lambda: h.sim_stats(self.url)["cancelled"] == 1, timeout=1.0,
                     msg="cancel noticed within 1 s")
        self.assertLess(time.monotonic() - t0, 1.0)
        st = h.sim_stats(self.url)
        self.assertEqual(st["in_flight"], 0)
        self.assertEqual(st["requests"][-1]["outcome"], "cancelled")
        # the single slot is free again: the next request starts right away
        r = h.post_json(self.url + "/api/chat", chat_body(stream=False, options={"num_predict": 1}))
        self.assertEqual(r.status, 200)
        self.assertLess(r.json()["total_duration"], 0.5e9)

    def test_while_queued_and_while_loading(self):
        holder = h.open_stream("POST", self.url + "/api/chat", chat_body(options={"num_predict": 100}))
        next(holder.lines())
        waiter = socket.create_connection((self.sim.host, self.sim.port))
        body = json.dumps(chat_body(stream=False)).encode()
        waiter.sendall(b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        h.wait_until(lambda: h.sim_stats(self.url)["queued"] == 1, msg="queued")
        waiter.close()
        h.wait_until(lambda: h.sim_stats(self.url)["queued"] == 0, timeout=1.0, msg="dequeued")
        holder.close()
        h.wait_until(lambda: h.sim_stats(self.url)["in_flight"] == 0, timeout=1.0, msg="all gone")
        self.assertEqual(h.sim_stats(self.url)["cancelled"], 2)
        loader = socket.create_connection((self.sim.host, self.sim.port))
        body = json.dumps(chat_body(model="cold:1b", stream=False)).encode()
        loader.sendall(b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        h.wait_until(lambda: h.sim_stats(self.url)["in_flight"] == 1, msg="loading")
        loader.close()
        h.wait_until(lambda: h.sim_stats(self.url)["in_flight"] == 0, timeout=1.0, msg="gone")


class HostCheckTest(unittest.TestCase):
    """Ollama's Host check when bound to loopback."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim("--tokens-per-second", "0", test=cls)
        cls.url = cls.sim.url

    def status(self, host):
        req = b"GET /api/version HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode()
        r = h.raw_exchange(self.sim.host, self.sim.port, req, timeout=3)
        return int(r.split(b" ", 2)[1]), r

    def test_allowed(self):
        for host in ("localhost", "localhost:11434", "127.0.0.1:80", "[::1]:11434", "::1",
                     "10.1.2.3", "192.168.0.9:1", "172.16.0.1", "0.0.0.0", "box.local",
                     "api.internal", "a.b.localhost", "LOCALHOST", socket.gethostname()):
            self.assertEqual(self.status(host)[0], 200, host)

    def test_forbidden(self):
        for host in ("evil.example", "8.8.8.8", "example.com:11434", "localhost.evil.com", "[::1]"):
            code, raw = self.status(host)
            self.assertEqual(code, 403, host)
            head, _, body = raw.partition(b"\r\n\r\n")
            self.assertEqual(body, b"")
        r = h.request("POST", self.url + "/api/chat", body=chat_body(),
                      headers={"Host": "evil.example"})
        self.assertEqual((r.status, r.body), (403, b""))

    def test_off(self):
        with h.start_sim("--host-check", "off") as sim:
            r = h.request("GET", sim.url + "/api/version", headers={"Host": "evil.example"})
            self.assertEqual(r.status, 200)


class Ollama032Test(unittest.TestCase):
    """What the simulator imitates of Ollama 0.32.15 beyond 0.12.6."""

    @classmethod
    def setUpClass(cls):
        cls.sim = h.start_sim(
            "--tokens-per-second", "0", "--ttft-ms", "0", "--load-ms", "0",
            "--embed-per-second", "0",
            models=("llama3.2:3b,loaded", "nomic-embed-text,embed,dim=8"), test=cls)
        cls.url = cls.sim.url

    def setUp(self):
        h.sim_fault(self.url, "none")

    def chat(self, messages, path="/api/chat", **kw):
        body = {"model": "llama3.2:3b", "messages": messages, "stream": False}
        body.update(kw)
        r = h.post_json(self.url + path, body)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def test_version_status_and_tags(self):
        self.assertEqual(h.get_json(self.url + "/api/version"), {"version": "0.32.15"})
        self.assertEqual(h.get_json(self.url + "/api/status"),
                         {"cloud": {"disabled": False, "source": "none"}})
        self.assertEqual(h.request("POST", self.url + "/api/status").status, 405)
        tags = {m["name"]: m for m in h.get_json(self.url + "/api/tags")["models"]}
        self.assertEqual(tags["llama3.2:3b"]["capabilities"], ["completion"])
        self.assertEqual(tags["nomic-embed-text:latest"]["capabilities"], ["embedding"])
        self.assertEqual(tags["nomic-embed-text:latest"]["details"]["embedding_length"], 8)
        self.assertEqual(tags["llama3.2:3b"]["details"]["context_length"], 131072)
        # /api/ps and /api/show details keep the short form
        show = h.post_json(self.url + "/api/show", {"model": "llama3.2:3b"}).json()
        self.assertNotIn("context_length", show["details"])

    def test_base64_embeddings(self):
        body = {"model": "nomic-embed-text", "input": ["a", "bc"]}
        floats = h.post_json(self.url + "/v1/embeddings", body).json()
        r = h.post_json(self.url + "/v1/embeddings", dict(body, encoding_format="base64"))
        self.assertEqual(r.status, 200)
        b64 = r.json()
        self.assertEqual([d["index"] for d in b64["data"]], [0, 1])
        for f, b in zip(floats["data"], b64["data"]):
            raw = base64.b64decode(b["embedding"])
            self.assertEqual(len(raw), 4 * len(f["embedding"]))
            got = struct.unpack("<%df" % len(f["embedding"]), raw)
            for x, y in zip(got, f["embedding"]):
                self.assertAlmostEqual(x, y, places=6)
        self.assertEqual(b64["usage"], floats["usage"])
        r = h.post_json(self.url + "/v1/embeddings", dict(body, encoding_format="FLOAT"))
        self.assertEqual(r.json()["data"], floats["data"])
        r = h.post_json(self.url + "/v1/embeddings", dict(body, encoding_format="hex"))
        self.assertEqual((r.status, r.json()["error"]["message"], r.json()["error"]["type"]),
                         (400, "Invalid value for 'encoding_format' = hex. Supported values: "
                               "['float', 'base64'].", "invalid_request_error"))

    def test_duplicate_and_case_folded_keys(self):
        """Go's encoding/json into a struct: keys match fields case-insensitively
        (and U+017F / U+212A fold to s / k), the last one wins, and a null has
        no effect on a plain string field."""
        msgs = '[{"role":"user","content":"hello there"}]'
        want = self.chat([{"role": "user", "content": "hello there"}])["message"]["content"]

        def raw(body):
            r = h.request("POST", self.url + "/api/chat", body=body.encode(),
                          headers={"Content-Type": "application/json"})
            return r.status, r.json()

        st, j = raw('{"model":"missing","model":"llama3.2:3b","stream":false,"messages":%s}' % msgs)
        self.assertEqual((st, j["message"]["content"]), (200, want))
        self.assertEqual(j["model"], "llama3.2:3b")
        st, j = raw('{"Model":"missing","MODEL":"llama3.2:3b","Stream":false,"Messages":%s}' % msgs)
        self.assertEqual((st, j["message"]["content"]), (200, want))
        st, j = raw('{"model":"llama3.2:3b","model":null,"stream":false,"messages":%s}' % msgs)
        self.assertEqual((st, j["message"]["content"]), (200, want))
        st, j = raw('{"model":"llama3.2:3b","\u017ftream":false,"messages":%s}' % msgs)
        self.assertEqual((st, j["done"]), (200, True))  # not streamed: one object
        # the last messages array wins; roles are lower-cased (api.Message)
        st, j = raw('{"model":"llama3.2:3b","stream":false,"messages":[{"role":"user","content":"x"}],'
                    '"messages":[{"ROLE":"USER","content":"nope","Content":"hello there"}]}')
        self.assertEqual((st, j["message"]["content"]), (200, want))
        # options is a map: exact keys, the last wins
        st, j = raw('{"model":"llama3.2:3b","stream":false,"messages":%s,'
                    '"options":{"num_predict":9,"num_predict":2}}' % msgs)
        self.assertEqual((st, j["eval_count"]), (200, 2))
        st, j = raw('{"model":"llama3.2:3b","stream":false,"messages":%s,'
                    '"options":{"NUM_PREDICT":2}}' % msgs)
        self.assertEqual(j["eval_count"], 16)  # not num_predict
        # the other routes read the same way
        r = h.request("POST", self.url + "/api/show",
                      body=b'{"model":"missing","Model":"llama3.2:3b"}')
        self.assertEqual(r.status, 200)
        r = h.request("POST", self.url + "/api/embed",
                      body=b'{"model":"nomic-embed-text","input":"a","INPUT":["a","b"]}')
        self.assertEqual(len(r.json()["embeddings"]), 2)
        # the stats record sees the effective model
        self.assertEqual(last_record(self.url, "/api/embed")["model"], "nomic-embed-text")

    def test_trailing_assistant_message_is_continued(self):
        user = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "tell me"}]
        full = self.chat(user)
        with h.open_stream("POST", self.url + "/api/chat",
                           {"model": "llama3.2:3b", "messages": user}) as s:
            toks = [e.json["message"]["content"] for e in s.lines()][:-1]
        self.assertEqual("".join(toks), full["message"]["content"])
        n = len(toks)
        for k in (0, 1, n // 2, n - 1, n):
            part = "".join(toks[:k])
            c = self.chat(user + [{"role": "assistant", "content": part}])
            self.assertEqual(part + c["message"]["content"], full["message"]["content"], k)
            self.assertEqual(c["done_reason"], "stop")
            self.assertEqual(c.get("eval_count", 0), n - k)
            if k == n:
                self.assertNotIn("eval_count", c)  # omitempty, as Ollama
            # the prefill is prompt
            self.assertEqual(c["prompt_eval_count"],
                             max(1, (len("be brief") + len("tell me") + len(part)) // 4))
        # streamed continuation, and num_predict counts only new tokens
        with h.open_stream("POST", self.url + "/api/chat",
                           {"model": "llama3.2:3b",
                            "messages": user + [{"role": "assistant", "content": "".join(toks[:3])}],
                            "options": {"num_predict": 4}}) as s:
            lines = [e.json for e in s.lines()]
        self.assertEqual("".join(toks[:3]) + "".join(l["message"]["content"] for l in lines),
                         "".join(toks[:7]))
        self.assertEqual((lines[-1]["eval_count"], lines[-1]["done_reason"]), (4, "length"))
        # /v1 too
        v1 = self.chat(user, path="/v1/chat/completions", temperature=0)
        text = v1["choices"][0]["message"]["content"]
        with h.open_stream("POST", self.url + "/v1/chat/completions",
                           {"model": "llama3.2:3b", "messages": user, "temperature": 0,
                            "stream": True}) as s:
            parts = [e.json["choices"][0]["delta"].get("content", "")
                     for e in s.sse() if e.raw != b"[DONE]"]
        part = "".join(parts[:5])
        c = self.chat(user + [{"role": "assistant", "content": part}], path="/v1/chat/completions",
                      temperature=0)
        self.assertEqual(part + c["choices"][0]["message"]["content"], text)
        # a prefill the node would not have written is continued mid-sentence
        c = self.chat(user + [{"role": "assistant", "content": "Once upon a time"}],
                      options={"num_predict": 3})
        self.assertEqual(c["eval_count"], 3)
        self.assertRegex(c["message"]["content"], r"^( [a-zA-Z0-9]+|\.)")

    def test_thinking(self):
        """A model with the thinking capability thinks unless think:false;
        thinking tokens come first, are generated (eval_count, num_predict)
        and leave the answer's text as it is without them."""
        with h.start_sim("--tokens-per-second", "0", "--ttft-ms", "0",
                         models=("qwen3:4b,loaded,caps=completion+thinking",)) as sim:
            url = sim.url
            msgs = [{"role": "user", "content": "why"}]
            plain = h.post_json(url + "/api/chat", {"model": "qwen3:4b", "messages": msgs,
                                                    "stream": False, "think": False}).json()
            self.assertNotIn("thinking", plain["message"])
            self.assertEqual(plain["eval_count"], 16)
            t = h.post_json(url + "/api/chat", {"model": "qwen3:4b", "messages": msgs,
                                                "stream": False}).json()
            self.assertEqual(t["message"]["content"], plain["message"]["content"])
            self.assertTrue(t["message"]["thinking"])
            self.assertEqual(t["eval_count"], 24)
            with h.open_stream("POST", url + "/api/chat",
                               {"model": "qwen3:4b", "messages": msgs, "think": "high"}) as s:
                lines = [e.json for e in s.lines()]
            thinking = [l["message"]["thinking"] for l in lines if "thinking" in l["message"]]
            self.assertEqual(len(thinking), 8)
            self.assertTrue(all(l["message"]["content"] == "" for l in lines[:8]))
            self.assertEqual("".join(thinking), t["message"]["thinking"])
            self.assertEqual("".join(l["message"]["content"] for l in lines), t["message"]["content"])
            # num_predict counts thinking tokens
            n = h.post_json(url + "/api/chat", {"model": "qwen3:4b", "messages": msgs, "stream": False,
                                                "options": {"num_predict": 10}}).json()
            self.assertEqual((n["eval_count"], len(n["message"]["content"].split())), (10, 2))
            g = h.post_json(url + "/api/generate", {"model": "qwen3:4b", "prompt": "why",
                                                    "stream": False}).json()
            self.assertTrue(g["thinking"])
            v1 = h.post_json(url + "/v1/chat/completions", {"model": "qwen3:4b", "messages": msgs}).json()
            self.assertTrue(v1["choices"][0]["message"]["reasoning"])
            v1 = h.post_json(url + "/v1/chat/completions", {"model": "qwen3:4b", "messages": msgs,
                                                            "reasoning_effort": "none"}).json()
            self.assertNotIn("reasoning", v1["choices"][0]["message"])
            # a continued answer does not think again
            first = plain["message"]["content"].split(" ")[0]  # the first token
            c = h.post_json(url + "/api/chat", {"model": "qwen3:4b", "stream": False,
                                                "messages": msgs + [{"role": "assistant",
                                                                     "content": first}]}).json()
            self.assertNotIn("thinking", c["message"])
            self.assertEqual(first + c["message"]["content"], plain["message"]["content"])
            self.assertEqual(c["eval_count"], 15)
        # errors as Ollama's
        r = self.chat_raw({"model": "llama3.2:3b", "messages": msgs, "think": True})
        self.assertEqual((r.status, r.json()), (400, {"error": "\"llama3.2:3b\" does not support thinking"}))
        r = self.chat_raw({"model": "llama3.2:3b", "messages": msgs, "think": "lots"})
        self.assertEqual(r.status, 400)
        self.assertTrue(r.json()["error"].startswith("invalid think value"))
        r = self.chat_raw({"model": "llama3.2:3b", "messages": msgs, "think": False})
        self.assertEqual(r.status, 200)

    def test_tool_calls(self):
        tools = [{"type": "function", "function": {
            "name": "get_weather", "description": "weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}]
        msgs = [{"role": "user", "content": "weather in Paris?"}]
        with h.start_sim("--tokens-per-second", "0", "--ttft-ms", "0",
                         models=("llama3.2:3b,loaded,caps=completion+tools",)) as sim:
            url = sim.url
            r = h.post_json(url + "/api/chat", {"model": "llama3.2:3b", "messages": msgs,
                                                "tools": tools, "stream": False}).json()
            self.assertEqual(r["message"]["content"], "")
            (call,) = r["message"]["tool_calls"]
            self.assertEqual(list(call), ["id", "function"])
            self.assertTrue(call["id"].startswith("call_"))
            self.assertEqual((call["function"]["index"], call["function"]["name"]), (0, "get_weather"))
            self.assertEqual(list(call["function"]["arguments"]), ["city"])
            self.assertEqual((r["done_reason"], r["eval_count"]), ("stop", 16))
            with h.open_stream("POST", url + "/api/chat",
                               {"model": "llama3.2:3b", "messages": msgs, "tools": tools}) as s:
                lines = [e.json for e in s.lines()]
            self.assertEqual(len(lines), 2)  # the call, then the final line
            self.assertEqual(lines[0]["message"]["tool_calls"], [call])
            self.assertNotIn("tool_calls", lines[1]["message"])
            # the tool's result is answered with text
            r = h.post_json(url + "/api/chat", {
                "model": "llama3.2:3b", "tools": tools, "stream": False,
                "messages": msgs + [{"role": "assistant", "content": "", "tool_calls": [call]},
                                    {"role": "tool", "content": "sunny"}]}).json()
            self.assertTrue(r["message"]["content"])
            self.assertNotIn("tool_calls", r["message"])
            # /v1: arguments as a string, finish_reason tool_calls
            v1 = h.post_json(url + "/v1/chat/completions", {"model": "llama3.2:3b", "messages": msgs,
                                                            "tools": tools}).json()
            ch = v1["choices"][0]
            self.assertEqual(ch["finish_reason"], "tool_calls")
            tc = ch["message"]["tool_calls"][0]
            self.assertEqual((tc["type"], tc["index"], tc["function"]["name"]),
                             ("function", 0, "get_weather"))
            self.assertEqual(list(json.loads(tc["function"]["arguments"])), ["city"])
            with h.open_stream("POST", url + "/v1/chat/completions",
                               {"model": "llama3.2:3b", "messages": msgs, "tools": tools,
                                "stream": True}) as s:
                chunks = [e.json for e in s.sse() if e.raw != b"[DONE]"]
            self.assertEqual(chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
                             "get_weather")
            self.assertEqual(chunks[-1]["choices"][0], {"index": 0, "delta": {},
                                                        "finish_reason": "tool_calls"})
        r = self.chat_raw({"model": "llama3.2:3b", "messages": msgs, "tools": tools})
        self.assertEqual((r.status, r.json()),
                         (400, {"error": "registry.ollama.ai/library/llama3.2:3b does not support tools"}))

    def chat_raw(self, body):
        return h.post_json(self.url + "/api/chat", dict(body, stream=False))

    def test_empty_v1_stream(self):
        """A prefill that is the whole answer: the /v1 stream still opens with a
        role chunk, then the finish chunk."""
        user = [{"role": "user", "content": "q"}]
        full = self.chat(user)["message"]["content"]
        with h.open_stream("POST", self.url + "/v1/chat/completions",
                           {"model": "llama3.2:3b", "temperature": 0.8, "stream": True,
                            "messages": user + [{"role": "assistant", "content": full}]}) as s:
            chunks = [e.json for e in s.sse() if e.raw != b"[DONE]"]
        self.assertEqual([c["choices"][0]["delta"] for c in chunks],
                         [{"role": "assistant", "content": ""}, {}])
        self.assertEqual(chunks[1]["choices"][0]["finish_reason"], "stop")

    def test_reset_fault(self):
        h.sim_fault(self.url, "reset", arg=3, count=1)
        body = json.dumps(chat_body(model="llama3.2:3b")).encode()
        s = h.raw_connect(self.sim.host, self.sim.port)
        s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        got, reset = b"", False
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            reset = True
        finally:
            s.close()
        self.assertTrue(reset, "the connection must end with a TCP RST, not a FIN")
        self.assertEqual(got.count(b'"done":false'), 3)  # the chunks before the reset arrive
        self.assertNotIn(b'"done":true', got)
        h.wait_until(lambda: h.sim_stats(self.url)["in_flight"] == 0, timeout=3, msg="released")
        self.assertEqual(last_record(self.url, "/api/chat")["outcome"], "fault:reset")
        # non-streamed: reset instead of the answer
        h.sim_fault(self.url, "reset", arg=1, count=1)
        with self.assertRaises((ConnectionResetError, http.client.RemoteDisconnected)):
            h.post_json(self.url + "/api/chat", chat_body(model="llama3.2:3b", stream=False))

    def test_push_of_a_missing_model(self):
        with h.open_stream("POST", self.url + "/api/push", {"model": "nope"}) as s:
            self.assertEqual(s.status, 200)
            lines = [e.json for e in s.lines()]
        self.assertEqual(lines[:2], [{"status": "retrieving manifest"},
                                     {"status": "couldn't retrieve manifest"}])
        self.assertEqual(lines[2], {"error": "open /usr/share/ollama/.ollama/models/manifests/"
                                             "registry.ollama.ai/library/nope/latest: no such "
                                             "file or directory"})
        r = h.post_json(self.url + "/api/push", {"name": "nope", "stream": False})
        self.assertEqual((r.status, r.headers["content-type"]), (500, "application/json"))
        self.assertIn("no such file or directory", r.json()["error"])


class ShutdownTest(unittest.TestCase):
    """SIGTERM/SIGINT exit 0 promptly, even with streams and hung requests."""

    def test_signal_with_work_in_flight(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            sim = h.start_sim("--tokens-per-second", "5", "--parallel", "1", test=self)
            streams = [h.open_stream("POST", sim.url + "/api/chat",
                                     chat_body(options={"num_predict": 100}))]
            next(streams[0].lines())
            waiting = socket.create_connection((sim.host, sim.port))
            body = json.dumps(chat_body()).encode()
            waiting.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x.local\r\nContent-Length: %d\r\n\r\n%s"
                            % (len(body), body))
            h.sim_fault(sim.url, "hang", count=1)
            hung = socket.create_connection((sim.host, sim.port))
            hung.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x.local\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            h.wait_until(lambda: h.sim_stats(sim.url)["in_flight"] == 3, msg="three in flight")
            t0 = time.monotonic()
            sim.signal(sig)
            code = sim.popen.wait(timeout=10)
            self.assertEqual(code, 0, sim.stderr_text())
            self.assertLess(time.monotonic() - t0, 5)
            for s in streams:
                s.close()
            waiting.close()
            hung.close()
            err = sim.stderr_text()
            self.assertNotIn("ERROR: AddressSanitizer", err)
            self.assertNotIn("LeakSanitizer", err)
            self.assertNotIn("runtime error", err)

    def test_help_and_bad_options(self):
        import subprocess
        out = subprocess.run([h.binary("ollama-sim"), "--help"], capture_output=True, timeout=10)
        self.assertEqual(out.returncode, 0)
        for opt in (b"--listen", b"--model", b"--tokens-per-second", b"--fault", b"--parallel",
                    b"--max-queue", b"--keep-alive", b"--max-loaded", b"--load-ms"):
            self.assertIn(opt, out.stdout)
        bad = subprocess.run([h.binary("ollama-sim"), "--parallel", "zero"], capture_output=True,
                             timeout=10)
        self.assertNotEqual(bad.returncode, 0)
        with self.assertRaises(h.ProcError):
            h.start_sim(models=("bad name!",), ready_timeout=5).close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
