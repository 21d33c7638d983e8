"""End-to-end tests of mid-stream continuation (issue 18): a chat answer
whose node fails after the first byte goes on on another node, with the
text so far as a trailing assistant message, and the client sees one
answer.

Two simulators with the same --seed: the answer to one conversation is the
same bytes on both, and a simulator given the first k tokens as a trailing
assistant message generates exactly the rest (docs/simulator.md), so "the
client's text equals the one uninterrupted answer" is checkable byte for
byte. Node "a" has weight 100: every first attempt goes there, and the
fault injected on it decides where the stream breaks.

Run: python3 -B tests/e2e/test_continue.py (SOLLOL_BUILD_DIR selects the build).
"""

import http.server
import json
import os
import re
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"
THINK = "qwen3:8b"
TOOLS = "toolie:1b"
ONLY_A = "lonely:1b"
TOKENS = 16  # the simulators' --num-predict: an answer's tokens without num_predict
SIM_ARGS = ("--seed", "7", "--tokens-per-second", "100", "--num-predict", str(TOKENS),
            "--ttft-ms", "5")


def fnv1a64(data):
    v = 0xCBF29CE484222325
    for b in data:
        v ^= b
        v = (v * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % v


def chat(content, model=MODEL, **kw):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    body.update(kw)
    return body


def enc(body):
    """The bytes the harness sends for a dict body."""
    return json.dumps(body).encode()


def write_config(path, a, b, **extra):
    cfg = {"listen": "127.0.0.1:0",
           "nodes": [{"name": "a", "url": a, "weight": 100},
                     {"name": "b", "url": b, "weight": 1}],
           "health": {"probe_interval_ms": 200, "tags_interval_ms": 500, "probe_timeout_ms": 500},
           "breaker": {"failure_threshold": 1000, "min_requests": 1000000},
           "timeouts": {"idle_ms": 1000}}
    for k, v in extra.items():
        cfg[k] = v
    with open(path, "w") as f:
        json.dump(cfg, f)


class ContinueTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        models = ("%s,loaded" % MODEL, "%s,loaded,caps=completion+thinking" % THINK,
                  "%s,loaded,caps=completion+tools" % TOOLS)
        cls.a = h.start_sim(*SIM_ARGS, "--name", "a", models=models + ("%s,loaded" % ONLY_A,),
                            test=cls)
        cls.b = h.start_sim(*SIM_ARGS, "--name", "b", models=models, test=cls)
        cls.tmp = tempfile.mkdtemp(prefix="sollol-cont-")
        cls.cfg = os.path.join(cls.tmp, "sollol.json")
        write_config(cls.cfg, cls.a.url, cls.b.url)
        cls.d = h.start_process("sollold", ["--config", cls.cfg], test=cls)
        h.wait_until(lambda: all(n["state"] == "up" and n["models"]
                                 for n in h.get_json(cls.d.url + "/api/stats")["nodes"]),
                     timeout=10)

    def setUp(self):
        for s in (self.a, self.b):
            h.sim_fault(s.url, "none")
            h.sim_reset(s.url)

    # -- helpers -----------------------------------------------------------

    def reference(self, path, body):
        """The uninterrupted answer, asked of node b directly (same seed):
        (text, final object)."""
        body = dict(body, stream=True)
        with h.open_stream("POST", self.b.url + path, body) as s:
            evs = list(s.sse() if path.startswith("/v1/") else s.lines())
        h.sim_reset(self.b.url)
        if path.startswith("/v1/"):
            objs = [json.loads(e.raw) for e in evs if e.raw != b"[DONE]"]
            text = "".join(o["choices"][0]["delta"].get("content") or ""
                           for o in objs if o.get("choices"))
            return text, objs
        objs = [e.json for e in evs]
        return "".join(o["message"]["content"] for o in objs), objs[-1]

    def stream_chat(self, body, headers=None):
        with h.open_stream("POST", self.d.url + "/api/chat", body, headers=headers) as s:
            objs = [e.json for e in s.lines()]
            self.assertFalse(s.incomplete)
            return s, objs

    def chat_records(self, sim, path="/api/chat"):
        return [r for r in h.sim_stats(sim.url)["requests"] if r["path"] == path]

    def check_prefill(self, path, body, pieces, at_most):
        """Node b received the client's body with the first k pieces of the
        text as a trailing assistant message, nothing else changed, for
        some 1 <= k <= at_most (a TCP reset may drop the last chunk node a
        sent before it: the daemon never saw it). Returns (record, k)."""
        raw = enc(body)
        end = raw.rindex(b"]")
        recs = self.chat_records(self.b, path)
        self.assertEqual(len(recs), 1, recs)
        for k in range(at_most, 0, -1):
            text = "".join(pieces[:k])
            expected = (raw[:end] + b', {"role":"assistant","content":' +
                        json.dumps(text, separators=(",", ":")).encode() + b"}" + raw[end:])
            expected = expected.replace(b', {"role":"assistant"', b',{"role":"assistant"')
            if recs[0]["body_fnv1a64"] == fnv1a64(expected):
                self.assertEqual(recs[0]["body_len"], len(expected))
                return recs[0], k
        self.fail("node b did not get the prefill: %r" % recs[0])

    # -- /api/chat streamed ------------------------------------------------

    def test_chat_stream_continued_at_every_point(self):
        for mode, n in (("close", 1), ("reset", 1), ("reset", 8), ("close", 8), ("reset", TOKENS),
                        ("close", TOKENS)):
            with self.subTest(mode=mode, at=n):
                self.setUp()
                body = chat("tell me about %s %d" % (mode, n))
                ref_text, ref_final = self.reference("/api/chat", body)
                h.sim_fault(self.a.url, mode, arg=n, count=1)
                s, objs = self.stream_chat(body)
                if mode == "reset" and s.headers.get("x-sollol-node") == "b":
                    # The reset came with the first chunk and the kernel
                    # dropped it: an ordinary retry before the first byte.
                    self.assertEqual("".join(o["message"]["content"] for o in objs), ref_text)
                    self.assertNotIn("sollol_nodes", objs[-1])
                    continue
                self.assertEqual(s.headers.get("x-sollol-node"), "a")
                self.assertNotIn("error", objs[-1], objs[-1])
                text = "".join(o["message"]["content"] for o in objs)
                self.assertEqual(text, ref_text)
                done = [o for o in objs if o.get("done")]
                self.assertEqual(len(done), 1)
                final = objs[-1]
                self.assertTrue(final["done"])
                self.assertEqual(final["sollol_nodes"], ["a", "b"])
                self.assertEqual(final["eval_count"], ref_final["eval_count"])
                self.assertEqual(final["done_reason"], "stop")
                rec, k = self.check_prefill("/api/chat", body,
                                            [o["message"]["content"] for o in objs], n)
                if mode == "close":
                    self.assertEqual(k, n)
                # prompt + generated = what node b's context held
                b_gen = TOKENS - k
                self.assertEqual(final["prompt_eval_count"] + final["eval_count"],
                                 rec["prompt_eval_count"] + b_gen)
                for k in ("total_duration", "eval_duration", "prompt_eval_duration"):
                    self.assertGreater(final[k], 0)

    def test_stall_continues_after_idle_timeout(self):
        body = chat("a stalled conversation")
        ref_text, _ = self.reference("/api/chat", body)
        h.sim_fault(self.a.url, "stall", arg=5, count=1)
        s, objs = self.stream_chat(body)
        self.assertEqual("".join(o["message"]["content"] for o in objs), ref_text)
        self.assertEqual(objs[-1]["sollol_nodes"], ["a", "b"])
        self.assertEqual(objs[-1]["eval_count"], TOKENS)

    def test_second_failure_ends_with_the_error_line(self):
        """Bounded: the continuation's node fails too and no node is left:
        the text both sent, then the error line; nothing repeated."""
        body = chat("everyone fails")
        ref_text, _ = self.reference("/api/chat", body)
        h.sim_fault(self.a.url, "close", arg=3, count=1)
        h.sim_fault(self.b.url, "close", arg=2, count=1)
        with h.open_stream("POST", self.d.url + "/api/chat", body) as s:
            objs = [e.json for e in s.lines()]
            self.assertFalse(s.incomplete)
        self.assertIn("error", objs[-1])
        self.assertTrue(objs[-1]["error"].startswith("node b failed"), objs[-1])
        text = "".join(o["message"]["content"] for o in objs[:-1])
        self.assertEqual(len(objs) - 1, 5)
        self.assertTrue(ref_text.startswith(text) and text, (text, ref_text))
        self.assertFalse(any(o.get("done") for o in objs))

    def test_num_predict_counts_the_whole_answer(self):
        body = chat("a limited answer", options={"num_predict": 10})
        ref_text, ref_final = self.reference("/api/chat", body)
        h.sim_fault(self.a.url, "reset", arg=4, count=1)
        s, objs = self.stream_chat(body)
        self.assertEqual("".join(o["message"]["content"] for o in objs), ref_text)
        self.assertEqual(objs[-1]["eval_count"], 10)
        self.assertEqual(objs[-1]["done_reason"], "length")

    def prompt_terms(self, turn2):
        """The prompt cost term of each node for the next turn (X-Sollol-Explain)."""
        r = h.post_json(self.d.url + "/api/chat", turn2, headers={"X-Sollol-Explain": "1"})
        self.assertEqual(r.status, 200)
        terms = {}
        for m in re.finditer(r"(\w+)=[0-9.e+-]+\(([^)]*)\)", r.headers["x-sollol-explain"]):
            terms[m.group(1)] = float(re.search(r"prompt=([0-9.e+-]+)", m.group(2)).group(1))
        return terms

    def test_affinity_follows_the_new_node(self):
        """The node that finished the answer holds the conversation: its
        next turn's prompt is priced at the affinity discount there."""
        turns = {}
        for name, fault in (("continued", True), ("control", False)):
            body = chat("where does this conversation live, %s" % name)
            if fault:
                h.sim_fault(self.a.url, "reset", arg=3, count=1)
            s, objs = self.stream_chat(body)
            self.assertEqual("sollol_nodes" in objs[-1], fault)
            answer = "".join(o["message"]["content"] for o in objs)
            turn2 = {"model": MODEL, "stream": False, "messages": body["messages"] + [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "tell me more " * 40}]}
            turns[name] = self.prompt_terms(turn2)
        self.assertLess(turns["continued"]["b"], turns["continued"]["a"], turns)
        self.assertLess(turns["control"]["a"], turns["control"]["b"], turns)

    # -- /v1/chat/completions streamed ---------------------------------------

    def v1_stream(self, body, headers=None):
        with h.open_stream("POST", self.d.url + "/v1/chat/completions", body,
                           headers=headers) as s:
            evs = list(s.sse())
            self.assertFalse(s.incomplete)
            return s, evs

    def test_v1_stream_continued(self):
        for mode, n in (("reset", 1), ("reset", 8), ("close", TOKENS)):
            with self.subTest(mode=mode, at=n):
                self.setUp()
                body = chat("openai %s %d" % (mode, n), stream=True,
                            stream_options={"include_usage": True})
                ref_text, ref_objs = self.reference("/v1/chat/completions", body)
                ref_usage = [o for o in ref_objs if o.get("usage")][-1]["usage"]
                h.sim_fault(self.a.url, mode, arg=n, count=1)
                s, evs = self.v1_stream(body)
                self.assertEqual(evs[-1].raw, b"[DONE]")
                objs = [json.loads(e.raw) for e in evs[:-1]]
                self.assertFalse([o for o in objs if "error" in o], objs)
                text = "".join(o["choices"][0]["delta"].get("content") or ""
                               for o in objs if o.get("choices"))
                self.assertEqual(text, ref_text)
                self.assertEqual(len({o["id"] for o in objs}), 1, "one answer, one id")
                fin = [o for o in objs if o.get("choices") and o["choices"][0]["finish_reason"]]
                self.assertEqual(len(fin), 1)
                self.assertEqual(fin[0]["sollol_nodes"], ["a", "b"])
                usage = [o for o in objs if o.get("usage")][-1]["usage"]
                self.assertEqual(usage["completion_tokens"], ref_usage["completion_tokens"])
                self.assertEqual(usage["total_tokens"],
                                 usage["prompt_tokens"] + usage["completion_tokens"])
                self.assertEqual(len(self.chat_records(self.b, "/v1/chat/completions")), 1)

    # -- non-streamed ---------------------------------------------------------

    def test_non_streamed_chat_is_continued_invisibly(self):
        body = chat("a whole answer please", stream=False)
        ref_text, ref_final = self.reference("/api/chat", body)
        direct = h.post_json(self.b.url + "/api/chat", body)
        h.sim_reset(self.b.url)
        h.sim_fault(self.a.url, "reset", arg=6, count=1)
        r = h.post_json(self.d.url + "/api/chat", body)
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(r.headers["content-type"].startswith("application/json"), (r.headers, r.body))
        o = r.json()
        self.assertEqual(o["message"], {"role": "assistant", "content": ref_text})
        self.assertEqual(o["eval_count"], TOKENS)
        self.assertEqual(o["sollol_nodes"], ["a", "b"])
        self.assertEqual(list(o)[:len(direct.json())],
                         list(direct.json()), "Ollama's field order")
        # node a was asked for a stream (so the text so far survives it)
        self.assertIs(self.chat_records(self.a)[0]["stream"], True)

    def test_non_streamed_broken_after_its_final_line_is_one_answer(self):
        # The node's final line is in, then its connection breaks before the
        # end of the body: the answer is whole, and it is the only one.
        body = chat("broken after the end", stream=False)
        ref_text, ref_final = self.reference("/api/chat", body)
        for mode in ("reset", "close"):
            with self.subTest(mode=mode):
                h.sim_reset(self.a.url)
                h.sim_reset(self.b.url)
                h.sim_fault(self.a.url, mode, arg=TOKENS + 1, count=1)
                r = h.post_json(self.d.url + "/api/chat", body)
                self.assertEqual(r.status, 200, r.body)
                o = r.json()  # one JSON object, nothing after it
                self.assertEqual(o["message"], {"role": "assistant", "content": ref_text})
                self.assertEqual(o["eval_count"], ref_final["eval_count"])
                self.assertTrue(o["done"])

    def test_non_streamed_without_failure_is_the_nodes_answer(self):
        body = chat("nothing breaks", stream=False)
        direct = h.post_json(self.b.url + "/api/chat", body).json()
        r = h.post_json(self.d.url + "/api/chat", body)
        self.assertEqual(r.status, 200)
        o = r.json()
        for k in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration",
                  "created_at"):
            o.pop(k, None)
            direct.pop(k, None)
        self.assertEqual(o, direct)
        self.assertEqual(r.body[-1:], h.post_json(self.b.url + "/api/chat", body).body[-1:])

    def test_non_streamed_v1_is_continued_invisibly(self):
        body = chat("a whole openai answer please")
        direct = h.post_json(self.b.url + "/v1/chat/completions", body)
        h.sim_reset(self.b.url)
        h.sim_fault(self.a.url, "reset", arg=6, count=1)
        r = h.post_json(self.d.url + "/v1/chat/completions", body)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.headers["content-type"], direct.headers["content-type"])
        o, want = r.json(), direct.json()
        self.assertEqual(o.pop("sollol_nodes"), ["a", "b"])
        for k in ("id", "created"):
            o.pop(k), want.pop(k)
        self.assertEqual(o["choices"], want["choices"])
        self.assertEqual(o["usage"]["completion_tokens"], want["usage"]["completion_tokens"])
        self.assertEqual(list(o), list(want), "the middleware's field order")
        self.assertEqual(r.body[-1:], b"\n")
        rec = self.chat_records(self.a, "/v1/chat/completions")[0]
        self.assertIs(rec["stream"], True)

    def test_non_streamed_v1_without_failure_is_the_nodes_answer(self):
        body = chat("nothing breaks here", max_tokens=7)
        direct = h.post_json(self.b.url + "/v1/chat/completions", body)
        r = h.post_json(self.d.url + "/v1/chat/completions", body)
        self.assertEqual(r.status, 200, r.body)
        o, want = r.json(), direct.json()
        for k in ("id", "created"):
            o.pop(k), want.pop(k)
        self.assertEqual(o, want)

    # -- not continued ----------------------------------------------------------

    def assert_error_end(self, objs, why=None):
        self.assertIn("error", objs[-1], objs[-1])
        self.assertFalse(any(o.get("done") for o in objs))
        self.assertEqual(self.chat_records(self.b), [], "node b was not asked")

    def test_not_continued(self):
        cases = [
            ("generate", "/api/generate", {"model": MODEL, "prompt": "hi there"}, None, None),
            ("header", "/api/chat", chat("opted out"), {"X-Sollol-Continue": "0"}, None),
            ("format", "/api/chat", chat("json please", format="json"), None, None),
            ("images", "/api/chat",
             {"model": MODEL, "messages": [{"role": "user", "content": "see",
                                            "images": ["aGVsbG8="]}]}, None, None),
            ("no_node", "/api/chat", chat("only on a", model=ONLY_A), None, None),
            ("thinking", "/api/chat", chat("think first", model=THINK), None, None),
            ("tool_calls", "/api/chat",
             chat("use a tool", model=TOOLS, tools=[{"type": "function", "function": {
                 "name": "get_weather", "parameters": {"type": "object", "properties": {
                     "city": {"type": "string"}}, "required": ["city"]}}}]), None, None),
        ]
        for name, path, body, headers, _ in cases:
            with self.subTest(case=name):
                self.setUp()
                # tool calls: the call is one chunk, then the final line
                h.sim_fault(self.a.url, "reset", arg=1 if name == "tool_calls" else 2, count=1)
                with h.open_stream("POST", self.d.url + path, body, headers=headers) as s:
                    self.assertEqual(s.status, 200)
                    objs = [e.json for e in s.lines()]
                self.assertIn("error", objs[-1], (name, objs[-1]))
                self.assertFalse(any(o.get("done") for o in objs))
                self.assertEqual(self.chat_records(self.b, path), [], name)
        m = h.request("GET", self.d.url + "/metrics").text
        for outcome in ("route", "disabled", "format", "images", "no_node", "thinking",
                        "tool_calls"):
            line = [x for x in m.splitlines()
                    if x.startswith('sollol_stream_continuations_total{outcome="%s"}' % outcome)]
            self.assertTrue(line and float(line[0].split()[-1]) >= 1, (outcome, line))

    def test_metrics_and_access_log_count_continuations(self):
        before = self.metric("continued")
        h.sim_fault(self.a.url, "close", arg=2, count=1)
        s, _ = self.stream_chat(chat("count me"), headers={"X-Request-Id": "cont-counted"})
        self.assertEqual(self.metric("continued"), before + 1)
        line = h.wait_until(lambda: [x for x in self.d.stderr_text().splitlines()
                                     if " info access id=cont-counted " in x], timeout=5)
        self.assertIn(" cont=continued", line[0])
        self.assertIn(" node=b ", line[0])  # the node that finished it

    def metric(self, outcome):
        m = h.request("GET", self.d.url + "/metrics").text
        for x in m.splitlines():
            if x.startswith('sollol_stream_continuations_total{outcome="%s"}' % outcome):
                return float(x.split()[-1])
        self.fail("no sollol_stream_continuations_total{outcome=%r}" % outcome)


class ErrorLineNode:
    """A stand-in node whose /api/chat streams the given pieces of text,
    then Ollama's mid-stream error line ({"error": ...}, what Ollama sends
    when its runner dies during a stream), then ends cleanly. Probes are
    answered by a simulator's own /api/version, /api/tags and /api/ps."""

    def __init__(self, probe_url):
        node = self
        self.pieces, self.requests = [], 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with urllib.request.urlopen(probe_url + self.path, timeout=5) as r:
                    data = r.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                node.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                for p in node.pieces:
                    line = {"model": MODEL, "created_at": "2026-01-01T00:00:00Z",
                            "message": {"role": "assistant", "content": p}, "done": False}
                    self.wfile.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
                    self.wfile.flush()
                    time.sleep(0.01)
                self.wfile.write(b'{"error":"an error was encountered while running the model: '
                                 b'unexpected EOF"}\n')

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class ErrorLineTest(unittest.TestCase):
    """The node's own error line after tokens is a node fault: held back and
    continued; with no other node it reaches the client as the node sent it."""

    @classmethod
    def setUpClass(cls):
        cls.a = h.start_sim(*SIM_ARGS, models=("%s,loaded" % MODEL, "%s,loaded" % ONLY_A),
                            test=cls)
        cls.b = h.start_sim(*SIM_ARGS, test=cls)
        cls.c = ErrorLineNode(cls.a.url)
        cls.addClassCleanup(cls.c.close)
        cls.tmp = tempfile.mkdtemp(prefix="sollol-cont-err-")
        cfg = os.path.join(cls.tmp, "sollol.json")
        write_config(cfg, cls.c.url, cls.b.url)
        cls.d = h.start_process("sollold", ["--config", cfg], test=cls)
        h.wait_until(lambda: all(n["state"] == "up" and n["models"]
                                 for n in h.get_json(cls.d.url + "/api/stats")["nodes"]),
                     timeout=10)

    def test_error_line_is_continued(self):
        body = chat("the runner dies")
        with h.open_stream("POST", self.b.url + "/api/chat", body) as s:
            ref = [e.json["message"]["content"] for e in s.lines()]
        h.sim_reset(self.b.url)
        self.c.pieces = ref[:5]
        with h.open_stream("POST", self.d.url + "/api/chat", body) as s:
            objs = [e.json for e in s.lines()]
        self.assertFalse([o for o in objs if "error" in o], objs)
        self.assertEqual("".join(o["message"]["content"] for o in objs), "".join(ref))
        self.assertEqual(objs[-1]["sollol_nodes"], ["a", "b"])
        self.assertEqual(objs[-1]["eval_count"], TOKENS)

    def test_error_line_without_another_node_reaches_the_client(self):
        self.c.pieces = ["Hello", " there"]
        with h.open_stream("POST", self.d.url + "/api/chat", chat("alone", model=ONLY_A)) as s:
            self.assertEqual(s.status, 200)
            objs = [e.json for e in s.lines()]
        self.assertEqual([o["message"]["content"] for o in objs[:-1]], ["Hello", " there"])
        self.assertEqual(objs[-1], {"error": "an error was encountered while running the model: "
                                             "unexpected EOF"})
        # before any text: the same line, as the node's whole answer
        self.c.pieces = []
        with h.open_stream("POST", self.d.url + "/api/chat", chat("alone 2", model=ONLY_A)) as s:
            self.assertEqual(s.status, 200)
            objs = [e.json for e in s.lines()]
        self.assertEqual(len(objs), 1)
        self.assertIn("unexpected EOF", objs[0]["error"])
        # non-streamed: Ollama's 500 with the node's message
        self.c.pieces = ["Hi"]
        r = h.post_json(self.d.url + "/api/chat", chat("alone 3", model=ONLY_A, stream=False))
        self.assertEqual(r.status, 500, r.body)
        self.assertIn("unexpected EOF", r.json()["error"])


class ContinueOffTest(unittest.TestCase):
    def test_config_key_turns_it_off(self):
        a = h.start_sim(*SIM_ARGS, test=self)
        b = h.start_sim(*SIM_ARGS, test=self)
        tmp = tempfile.mkdtemp(prefix="sollol-cont-off-")
        cfg = os.path.join(tmp, "sollol.json")
        write_config(cfg, a.url, b.url, routing={"continue_streams": False})
        d = h.start_process("sollold", ["--config", cfg], test=self)
        h.wait_until(lambda: all(n["state"] == "up" and n["models"]
                                 for n in h.get_json(d.url + "/api/stats")["nodes"]), timeout=10)
        h.sim_fault(a.url, "reset", arg=3, count=1)
        with h.open_stream("POST", d.url + "/api/chat", chat("off")) as s:
            objs = [e.json for e in s.lines()]
        self.assertIn("error", objs[-1])
        self.assertEqual([r for r in h.sim_stats(b.url)["requests"] if r["path"] == "/api/chat"],
                         [])


if __name__ == "__main__":
    unittest.main()
