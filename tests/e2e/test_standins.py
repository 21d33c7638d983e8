"""End-to-end tests of the llama.cpp stand-ins (<build>/stand-ins/rpc-server
and llama-server) that the sharded path's tests run against: the ggml RPC
wire format in both HELLO forms, one client at a time, and llama-server's
start-up, routes, streams and the ways it dies.
Run: python3 -B tests/e2e/test_standins.py

With SOLLOL_REAL_RPC_SERVER / SOLLOL_REAL_LLAMA_SERVER (and SOLLOL_REAL_GGUF)
pointing at llama.cpp's programs, the tests that do not depend on simulation
knobs run against the real programs instead; the others are skipped.

Timing assertions are deliberately loose: CI runs on a busy 2-core machine.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MIB = 1024 * 1024
REAL_RPC = h.standin_is_real("rpc-server")
REAL_LLAMA = h.standin_is_real("llama-server")
sim_rpc_only = unittest.skipIf(REAL_RPC, "needs the rpc-server stand-in's knobs")
sim_llama_only = unittest.skipIf(REAL_LLAMA or REAL_RPC, "needs the stand-ins' knobs")


def rpc_env(version, **kw):
    env = {"SOLLOL_SIM_RPC_VERSION": version}
    env.update({"SOLLOL_SIM_" + k: str(v) for k, v in kw.items()})
    return env


class RpcServerTest(unittest.TestCase):
    """The rpc-server stand-in: wire forms, device queries, serial service."""

    def start(self, version, *args, **kw):
        return h.start_standin("rpc-server", ["-p", "0"] + list(args), test=self,
                               env=rpc_env(version, **kw))

    @sim_rpc_only
    def test_banner_and_warning(self):
        p = self.start("3.2.1", "-H", "127.0.0.1")
        self.assertIn("Starting RPC server v3.2.1", p.stdout_lines)
        self.assertNotIn("Never expose", p.stderr_text())
        q = self.start("3.2.1", "-H", "127.0.0.2")
        self.assertEqual(q.host, "127.0.0.2")
        self.assertIn("Never expose the RPC server to an open network", q.stderr_text())

    @sim_rpc_only
    def test_hello_v3(self):
        p = self.start("3.0.0")
        reply, s = h.rpc_hello(p.host, p.port, form="v3")
        self.assertEqual(reply, bytes([3, 0, 0]))  # exactly 3 bytes
        s.close()
        # The 4.x form is the wrong size for a 3.x server: closed, no reply.
        reply, _ = h.rpc_hello(p.host, p.port, form="v4")
        self.assertIsNone(reply)
        # The probe rule: v4 first, then the empty form on a new connection.
        reply, s = h.rpc_hello(p.host, p.port, form="v3")
        self.assertEqual(h.rpc_version_of(reply), (3, 0, 0))
        s.close()

    @sim_rpc_only
    def test_hello_v4(self):
        p = self.start("4.1.2")
        reply, s = h.rpc_hello(p.host, p.port, form="v4")
        self.assertEqual(len(reply), 28)
        self.assertEqual(reply[:4], bytes([4, 1, 2, 0]))
        self.assertEqual(reply[4:], b"\0" * 24)  # conn_caps: plain TCP
        s.close()
        reply, _ = h.rpc_hello(p.host, p.port, form="v3")
        self.assertIsNone(reply)

    @sim_rpc_only
    def test_devices_v3(self):
        p = self.start("3.0.0", "-d", "CPU,CPU", RPC_FREE_FRACTION="0.5", RPC_MEM_MB="2048")
        reply, s = h.rpc_hello(p.host, p.port, form="v3")
        self.assertIsNotNone(reply)
        self.assertEqual(h.rpc_device_count(s), 2)
        self.assertEqual(h.rpc_device_memory(s, 0), (1024 * MIB, 2048 * MIB))
        self.assertEqual(h.rpc_device_memory(s, 1), (1024 * MIB, 2048 * MIB))
        # An unknown device is a bad command: the connection closes.
        self.assertIsNone(h.rpc_device_memory(s, 2))
        s.close()

    @sim_rpc_only
    def test_devices_env_and_v2(self):
        p = self.start("2.0.0", RPC_MEM_MB="1000")
        reply, s = h.rpc_hello(p.host, p.port, form="v3")
        self.assertEqual(h.rpc_version_of(reply), (2, 0, 0))
        free, total = h.rpc_device_memory(s, with_arg=False)  # before v3: empty request
        self.assertEqual(total, 1000 * MIB)
        self.assertEqual(free, int(total * 0.9))
        # DEVICE_COUNT did not exist before 3.x: an unknown command closes.
        self.assertIsNone(h.rpc_device_count(s))
        s.close()

    @sim_rpc_only
    def test_first_command_must_be_hello(self):
        p = self.start("3.0.0")
        s = h.raw_connect(p.host, p.port)
        s.settimeout(5)
        h.rpc_send(s, h.RPC_CMD_DEVICE_COUNT)
        self.assertIsNone(h.rpc_recv(s))
        s.close()
        h.wait_until(lambda: "Expected HELLO command" in p.stderr_text(), msg="server log")
        reply, s = h.rpc_hello(p.host, p.port, form="v3")
        h.rpc_send(s, 99)  # unknown command
        self.assertIsNone(h.rpc_recv(s))
        s.close()

    def test_probe_any_version(self):
        for version in ("3.0.0", "4.0.0"):
            p = self.start(version)
            got, form, s = h.rpc_probe(p.host, p.port)
            s.close()
            if not REAL_RPC:
                self.assertEqual(got, tuple(int(x) for x in version.split(".")))
            self.assertEqual(form, "v4" if got[0] >= 4 else "v3")
            if REAL_RPC:
                break

    def test_one_client_at_a_time(self):
        p = self.start("3.0.0")
        version, form, s1 = h.rpc_probe(p.host, p.port)
        # The second connect succeeds (kernel backlog) but HELLO is not answered.
        s2 = h.raw_connect(p.host, p.port)
        s2.settimeout(0.5)
        h.rpc_send(s2, h.RPC_CMD_HELLO, b"\0" * 24 if form == "v4" else b"")
        with self.assertRaises(socket.timeout):
            h.rpc_recv(s2)
        # The first client is still served meanwhile.
        self.assertGreaterEqual(h.rpc_device_count(s1), 1)
        s1.close()
        s2.settimeout(10)
        reply = h.rpc_recv(s2)
        self.assertEqual(h.rpc_version_of(reply), version)
        self.assertEqual(len(reply), 28 if form == "v4" else 3)
        s2.close()

    @sim_rpc_only
    def test_flags(self):
        # As the real one: an unknown argument (-m too, removed upstream in
        # 2025-10) prints the usage and exits 0.
        for args in (["--nope"], ["-m", "2048"]):
            bad = subprocess.run([h.standin("rpc-server")] + args, capture_output=True,
                                 timeout=10)
            self.assertEqual(bad.returncode, 0)
            self.assertIn(b"error: unknown argument: " + args[0].encode(), bad.stderr)
            self.assertIn(b"Usage: ggml-rpc-server", bad.stderr)
        self.assertTrue(h.standin("rpc-server").endswith("/ggml-rpc-server"))
        bad = subprocess.run([h.standin("rpc-server"), "-H", "localhost", "-p", "0"],
                             capture_output=True, timeout=10)
        self.assertEqual(bad.returncode, 1)  # IPv4 literal only
        p = self.start("3.0.0", "-t", "4", "-c")
        self.assertTrue(any(line.startswith("  local cache    : /") for line in p.stdout_lines))

    def test_sigterm_while_serving(self):
        p = self.start("3.0.0")
        _, s = h.rpc_hello(p.host, p.port, form="v3")
        # No handler, as the real one: SIGTERM kills it while it serves.
        self.assertEqual(p.stop(), -signal.SIGTERM)
        s.close()


class LlamaServerBase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="sollol-standins-")
        self.addCleanup(self.tmp.cleanup)
        self.gguf = os.environ.get("SOLLOL_REAL_GGUF") if REAL_LLAMA else None
        if not self.gguf:
            self.gguf = h.write_gguf(os.path.join(self.tmp.name, "model.gguf"))

    def rpc(self, version="3.0.0", check_exit=True, **kw):
        return h.start_standin("rpc-server", ["-p", "0"], test=self, env=rpc_env(version, **kw),
                               check_exit=check_exit)

    def llama(self, *args, env=None, test=True, check_exit=True, rpcs=()):
        argv = ["-m", self.gguf, "--host", "127.0.0.1", "--port", "0"]
        if rpcs:
            argv += ["--rpc", ",".join("%s:%d" % (r.host, r.port) for r in rpcs)]
        argv += [str(a) for a in args]
        e = {"SOLLOL_SIM_LOAD_MS": "0"}
        e.update(env or {})
        return h.start_standin("llama-server", argv, test=self if test else None, env=e,
                               check_exit=check_exit)

    def run_llama(self, *args, env=None, timeout=20):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([h.standin("llama-server")] + [str(a) for a in args],
                              capture_output=True, timeout=timeout, env=e)

    def wait_ready(self, p, timeout=15):
        h.wait_until(lambda: h.request("GET", p.url + "/health").status == 200, timeout=timeout,
                     msg="llama-server ready")


class LlamaServerTest(LlamaServerBase):

    @sim_llama_only
    def test_loading_then_ready(self):
        r = self.rpc()
        p = self.llama("-ngl", "all", rpcs=[r], env={"SOLLOL_SIM_LOAD_MS": "3000"})
        res = h.request("GET", p.url + "/health")
        self.assertEqual(res.status, 503)
        self.assertEqual(res.json(), {"error": {"code": 503, "message": "Loading model",
                                                "type": "unavailable_error"}})
        res = h.request("POST", p.url + "/v1/chat/completions",
                        body={"messages": [{"role": "user", "content": "x"}]})
        self.assertEqual(res.status, 503)
        self.wait_ready(p)
        res = h.request("GET", p.url + "/health")
        self.assertEqual(res.json(), {"status": "ok"})
        # While llama-server holds the backend, a probe's HELLO is not answered.
        s = h.raw_connect(r.host, r.port)
        s.settimeout(0.5)
        h.rpc_send(s, h.RPC_CMD_HELLO)
        with self.assertRaises(socket.timeout):
            h.rpc_recv(s)
        s.close()

    def test_chat_stream_shape_and_timings(self):
        r = self.rpc()
        p = self.llama("-a", "big:70b", "-np", "2", rpcs=[r],
                       env={"SOLLOL_SIM_TOKENS_PER_SECOND": "200"})
        self.wait_ready(p)
        body = {"messages": [{"role": "user", "content": "hello there"}], "stream": True,
                "max_tokens": 5, "seed": 7}
        res = h.request("POST", p.url + "/v1/chat/completions", body=body)
        self.assertEqual(res.status, 200)
        self.assertTrue(res.headers["content-type"].startswith("text/event-stream"))
        raw = res.text
        self.assertTrue(raw.endswith("data: [DONE]\n\n"))
        events = [e for e in raw.split("\n\n") if e]
        self.assertTrue(all(e.startswith("data: ") for e in events))
        chunks = [json.loads(e[6:]) for e in events[:-1]]
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        for c in chunks:
            self.assertEqual(c["object"], "chat.completion.chunk")
            self.assertEqual(c["model"], "big:70b")
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        final = chunks[-1]
        self.assertEqual(final["choices"][0]["finish_reason"], "length")
        t = final["timings"]
        for k in ("cache_n", "prompt_n", "prompt_ms", "predicted_n", "predicted_ms",
                  "predicted_per_second"):
            self.assertIn(k, t)
        self.assertEqual(t["predicted_n"], 5)
        self.assertGreater(t["prompt_n"], 0)
        # As the real server: no usage in a stream unless asked for, then in
        # one more chunk with no choices (and the timings move there).
        self.assertNotIn("usage", final)
        body["stream_options"] = {"include_usage": True}
        raw = h.request("POST", p.url + "/v1/chat/completions", body=body).text
        events = [json.loads(e[6:]) for e in raw.split("\n\n") if e and e != "data: [DONE]"]
        self.assertEqual(events[-2]["choices"][0]["finish_reason"], "length")
        self.assertNotIn("timings", events[-2])
        self.assertEqual(events[-1]["choices"], [])
        self.assertEqual(events[-1]["usage"]["completion_tokens"], 5)
        self.assertEqual(events[-1]["usage"]["prompt_tokens"],
                         events[-1]["timings"]["prompt_n"] + events[-1]["timings"]["cache_n"])
        del body["stream_options"]
        if REAL_LLAMA:
            return
        # Deterministic: the same request gives the same text, non-streamed too,
        # and the slot's prompt cache now covers most of the prompt.
        body["stream"] = False
        res = h.request("POST", p.url + "/v1/chat/completions", body=body).json()
        self.assertEqual(res["choices"][0]["message"]["content"], text)
        self.assertEqual(res["object"], "chat.completion")
        self.assertGreater(res["timings"]["cache_n"], 0)
        # Without a limit it ends by itself: finish_reason stop.
        res = h.request("POST", p.url + "/v1/chat/completions",
                        body={"messages": [{"role": "user", "content": "again"}]}).json()
        self.assertEqual(res["choices"][0]["finish_reason"], "stop")
        self.assertEqual(res["timings"]["predicted_n"], 16)

    @sim_llama_only
    def test_completion_format(self):
        p = self.llama(env={"SOLLOL_SIM_TOKENS_PER_SECOND": "0"})
        self.wait_ready(p)
        res = h.request("POST", p.url + "/completion",
                        body={"prompt": "once upon", "n_predict": 4, "stream": True})
        self.assertEqual(res.status, 200)
        self.assertNotIn("[DONE]", res.text)
        events = [json.loads(e[6:]) for e in res.text.split("\n\n") if e]
        self.assertEqual(len(events), 5)
        self.assertTrue(all(e["stop"] is False for e in events[:-1]))
        final = events[-1]
        self.assertIs(final["stop"], True)
        self.assertEqual(final["stop_type"], "limit")
        self.assertEqual(final["timings"]["predicted_n"], 4)
        text = "".join(e["content"] for e in events)
        # Non-streamed: one object with the same text.
        res = h.request("POST", p.url + "/completion",
                        body={"prompt": "once upon", "n_predict": 4}).json()
        self.assertEqual(res["content"], text)
        self.assertEqual(res["stop_type"], "limit")
        # A stop word ends it early (stop_type word, the word not included).
        stop = text.split(" ")[1]
        res = h.request("POST", p.url + "/completion",
                        body={"prompt": "once upon", "n_predict": 4, "stop": [stop]}).json()
        self.assertEqual(res["stop_type"], "word")
        self.assertEqual(res["stopping_word"], stop)
        self.assertEqual(res["content"], text[:text.index(stop)])
        # No limit: the generation ends by itself (eos).
        res = h.request("POST", p.url + "/completion", body={"prompt": "x"}).json()
        self.assertEqual(res["stop_type"], "eos")
        # /v1/completions: OpenAI text_completion with [DONE] when streamed.
        res = h.request("POST", p.url + "/v1/completions",
                        body={"prompt": "once upon", "max_tokens": 4, "stream": True})
        self.assertTrue(res.text.endswith("data: [DONE]\n\n"))
        res = h.request("POST", p.url + "/v1/completions",
                        body={"prompt": "once upon", "max_tokens": 4}).json()
        self.assertEqual(res["object"], "text_completion")
        self.assertEqual(res["choices"][0]["text"], text)
        self.assertEqual(res["choices"][0]["finish_reason"], "length")

    @sim_llama_only
    def test_other_routes(self):
        p = self.llama("-a", "m1", "-np", "3", "-c", "3000", "--metrics")
        self.wait_ready(p)
        models = h.get_json(p.url + "/v1/models")
        self.assertEqual(models["data"][0]["id"], "m1")
        props = h.get_json(p.url + "/props")
        self.assertEqual(props["total_slots"], 3)
        self.assertEqual(props["default_generation_settings"]["n_ctx"], 1000)
        slots = h.get_json(p.url + "/slots")
        self.assertEqual(len(slots), 3)
        res = h.request("GET", p.url + "/metrics")
        self.assertEqual(res.status, 200)
        self.assertIn("llamacpp:tokens_predicted_total", res.text)
        res = h.request("POST", p.url + "/v1/embeddings", body={"input": "x"})
        self.assertEqual(res.status, 501)  # needs --embeddings
        self.assertEqual(res.json()["error"]["type"], "not_supported_error")
        res = h.request("GET", p.url + "/nope")
        self.assertEqual(res.status, 404)
        res = h.request("POST", p.url + "/completion", body=b"{not json")
        self.assertEqual(res.status, 400)
        self.assertEqual(res.json()["error"]["code"], 400)
        # The prompt must fit a slot's share of the context.
        res = h.request("POST", p.url + "/completion", body={"prompt": "word " * 2000})
        self.assertEqual(res.status, 400)
        self.assertEqual(res.json()["error"]["type"], "exceed_context_size_error")

    @sim_llama_only
    def test_embeddings_and_api_key(self):
        p = self.llama("--embeddings", "--api-key", "sekrit")
        self.wait_ready(p)
        res = h.request("POST", p.url + "/v1/embeddings", body={"input": ["a", "b"]})
        self.assertEqual(res.status, 401)
        auth = {"Authorization": "Bearer sekrit"}
        res = h.request("POST", p.url + "/v1/embeddings", body={"input": ["a", "b"]},
                        headers=auth)
        self.assertEqual(res.status, 200)
        data = res.json()["data"]
        self.assertEqual([d["index"] for d in data], [0, 1])
        self.assertNotEqual(data[0]["embedding"], data[1]["embedding"])
        self.assertEqual(h.request("GET", p.url + "/health").status, 200)  # public

    @sim_llama_only
    def test_parallel_slots(self):
        p = self.llama("-np", "2", env={"SOLLOL_SIM_TOKENS_PER_SECOND": "50"})
        self.wait_ready(p)

        def one(i):
            return lambda: h.request("POST", p.url + "/completion",
                                     body={"prompt": "p%d" % i, "n_predict": 20}).json()

        results = h.run_parallel([one(i) for i in range(5)])
        self.assertEqual(len(results), 5)
        self.assertTrue(all(r["stop_type"] == "limit" for r in results))
        # Pacing: 20 tokens at 50/s take at least 400 ms (a load only slows it).
        for r in results:
            self.assertGreaterEqual(r["timings"]["predicted_ms"], 395)
            self.assertLessEqual(r["timings"]["predicted_per_second"], 51)
        st = h.get_json(p.url + "/_sim/stats")
        self.assertEqual(st["max_active"], 2)
        self.assertEqual(st["completed"], 5)

    @sim_llama_only
    def test_json_mode(self):
        p = self.llama(env={"SOLLOL_SIM_TOKENS_PER_SECOND": "0"})
        self.wait_ready(p)
        res = h.request("POST", p.url + "/v1/chat/completions",
                        body={"messages": [{"role": "user", "content": "json please"}],
                              "response_format": {"type": "json_object"}}).json()
        answer = json.loads(res["choices"][0]["message"]["content"])
        self.assertIsInstance(answer["answer"], str)
        self.assertEqual(res["choices"][0]["finish_reason"], "stop")
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
        res = h.request("POST", p.url + "/completion",
                        body={"prompt": "x", "json_schema": schema, "stream": True})
        events = [json.loads(e[6:]) for e in res.text.split("\n\n") if e]
        self.assertIn("answer", json.loads("".join(e["content"] for e in events)))

    @sim_llama_only
    def test_fail_after_tokens(self):
        p = self.llama(env={"SOLLOL_SIM_FAIL_AFTER_TOKENS": "3"})
        self.wait_ready(p)
        res = h.request("POST", p.url + "/v1/chat/completions",
                        body={"messages": [{"role": "user", "content": "x"}], "stream": True})
        self.assertEqual(res.status, 200)
        events = [e for e in res.text.split("\n\n") if e]
        self.assertNotIn("data: [DONE]", events)
        last = json.loads(events[-1][6:])
        self.assertEqual(last["error"]["code"], 500)
        self.assertEqual(last["error"]["type"], "server_error")
        res = h.request("POST", p.url + "/completion", body={"prompt": "x"})
        self.assertEqual(res.status, 500)
        self.assertEqual(res.json()["error"]["code"], 500)
        # The slot was freed: the server still answers.
        self.assertEqual(h.get_json(p.url + "/_sim/stats")["active"], 0)

    @sim_llama_only
    def test_client_disconnect_frees_slot(self):
        p = self.llama("-np", "1", env={"SOLLOL_SIM_TOKENS_PER_SECOND": "20"})
        self.wait_ready(p)
        body = {"messages": [{"role": "user", "content": "x"}], "stream": True, "max_tokens": 500}
        first = h.open_stream("POST", p.url + "/v1/chat/completions", body=body)
        # A second request waits for the only slot; it gives up while queued.
        waiting = h.raw_connect(p.host, p.port)
        waiting.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Length: 28\r\n\r\n"
                        b'{"prompt":"q","n_predict":1}')
        h.wait_until(lambda: h.get_json(p.url + "/_sim/stats")["waiting"] == 1, timeout=10,
                     msg="queued request")
        waiting.close()
        h.wait_until(lambda: h.get_json(p.url + "/_sim/stats")["waiting"] == 0, timeout=10,
                     msg="queued request gone")
        first.close()  # the client goes away mid-stream: the slot is freed
        h.wait_until(lambda: h.get_json(p.url + "/_sim/stats")["active"] == 0, timeout=10,
                     msg="slot freed")
        res = h.request("POST", p.url + "/completion", body={"prompt": "y", "n_predict": 2},
                        timeout=10)
        self.assertEqual(res.status, 200)
        self.assertEqual(res.json()["timings"]["predicted_n"], 2)

    @sim_llama_only
    def test_sim_stats_records_launch(self):
        r1, r2 = self.rpc("3.0.0", RPC_MEM_MB="4096"), self.rpc("3.0.0", RPC_MEM_MB="2048")
        p = self.llama("-ngl", "all", "-ts", "2,1", "-c", "8192", "-np", "2", "--no-webui",
                       "-fa", "on", "--jinja", rpcs=[r1, r2])
        st = h.get_json(p.url + "/_sim/stats")
        self.assertEqual(st["tensor_split"], [2, 1])
        self.assertEqual(st["n_gpu_layers"], "all")
        self.assertEqual(st["ctx_size"], 8192)
        self.assertEqual(st["parallel"], 2)
        self.assertIs(st["no_webui"], True)
        self.assertEqual(st["argv"][1:3], ["-m", self.gguf])
        be = st["rpc_backends"]
        self.assertEqual([b["endpoint"] for b in be],
                         ["%s:%d" % (r1.host, r1.port), "%s:%d" % (r2.host, r2.port)])
        self.assertEqual(be[0]["version"], "3.0.0")
        self.assertEqual(be[0]["devices"][0]["total"], 4096 * MIB)
        self.assertEqual(be[1]["devices"][0]["total"], 2048 * MIB)
        self.wait_ready(p)
        h.request("POST", p.url + "/completion", body={"prompt": "hi", "temperature": 0.5})
        st = h.get_json(p.url + "/_sim/stats")
        self.assertEqual(st["recent"][-1]["body"], {"prompt": "hi", "temperature": 0.5})
        self.assertEqual(st["by_route"]["completion"], 1)

    @sim_llama_only
    def test_v4_handshake(self):
        r = self.rpc("4.0.0")
        p = self.llama(rpcs=[r], env={"SOLLOL_SIM_RPC_VERSION": "4.2.0"})
        st = h.get_json(p.url + "/_sim/stats")
        self.assertEqual(st["rpc_backends"][0]["version"], "4.0.0")


class LlamaServerFailureTest(LlamaServerBase):

    @sim_llama_only
    def test_version_mismatch_aborts(self):
        r = self.rpc("4.0.0")
        res = self.run_llama("-m", self.gguf, "--port", "0", "--rpc", "%s:%d" % (r.host, r.port),
                             env={"SOLLOL_SIM_RPC_VERSION": "3.0.0"})
        self.assertEqual(res.returncode, -signal.SIGABRT)
        # The 3.x client's empty HELLO is closed without a reply by a 4.x server.
        self.assertIn(b"Remote RPC server crashed or returned malformed response", res.stderr)
        # Same form, higher server minor: a version mismatch.
        r2 = self.rpc("4.3.0")
        res = self.run_llama("-m", self.gguf, "--port", "0", "--rpc", "%s:%d" % (r2.host, r2.port),
                             env={"SOLLOL_SIM_RPC_VERSION": "4.1.0"})
        self.assertEqual(res.returncode, -signal.SIGABRT)
        self.assertIn(b"RPC server version mismatch: 4.3.0", res.stderr)
        self.assertIn(b"RPC handshake failed for %s:%d" % (r2.host.encode(), r2.port), res.stderr)
        self.assertNotIn(b"listening on", res.stdout)  # aborted before its port opened

    @sim_llama_only
    def test_unreachable_backend_aborts(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        res = self.run_llama("-m", self.gguf, "--port", "0", "--rpc", "127.0.0.1:%d" % port)
        self.assertEqual(res.returncode, -signal.SIGABRT)
        self.assertIn(b"Failed to connect to 127.0.0.1:%d" % port, res.stderr)

    @sim_llama_only
    def test_busy_backend_blocks_start(self):
        r = self.rpc()
        _, holder = h.rpc_hello(r.host, r.port, form="v3")  # another client holds it
        self.addCleanup(holder.close)
        port = h.free_port()
        child = subprocess.Popen([h.standin("llama-server"), "-m", self.gguf, "--port", str(port),
                                  "--rpc", "%s:%d" % (r.host, r.port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        # Its HELLO is not answered: it waits inside the handshake, no port open yet.
        time.sleep(0.5)
        self.assertIsNone(child.poll())
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        # No signal handler yet (as the real one while parsing --rpc): SIGTERM kills it.
        child.terminate()
        self.assertEqual(child.wait(timeout=10), -signal.SIGTERM)

    @sim_llama_only
    def test_backend_killed_aborts(self):
        r = self.rpc(check_exit=False)
        p = self.llama(rpcs=[r], test=False)
        self.addCleanup(p.close)
        self.wait_ready(p)
        r.popen.kill()
        r.popen.wait()
        h.wait_until(lambda: not p.alive(), timeout=10, msg="llama-server exit")
        self.assertEqual(p.popen.returncode, -signal.SIGABRT)
        self.assertIn("RPC connection to %s:%d lost" % (r.host, r.port), p.stderr_text())
        self.assertIn("Remote RPC server crashed or returned malformed response", p.stderr_text())

    def test_bad_model_exits_1(self):
        bad = os.path.join(self.tmp.name, "bad.gguf")
        with open(bad, "wb") as f:
            f.write(b"NOPE" + b"\0" * 60)
        for model in (bad, os.path.join(self.tmp.name, "missing.gguf")):
            res = self.run_llama("-m", model, "--port", "0")
            self.assertEqual(res.returncode, 1)
            # The real one's last line ("exiting due to model loading error")
            # comes from its log thread and is often lost at exit: this one
            # is always there.
            self.assertIn(b"load_model: failed to load model, '%s'" % model.encode(), res.stderr)
        if REAL_LLAMA:
            return
        res = self.run_llama("-m", self.gguf, "--port", "0", env={"SOLLOL_SIM_LOAD_FAIL": "1"})
        self.assertEqual(res.returncode, 1)
        self.assertIn(b"exiting due to model loading error", res.stderr)

    @sim_llama_only
    def test_bad_flags_exit_1(self):
        for args in (["--bogus"], ["-m", self.gguf, "-ngl", "lots"], ["-m"],
                     ["-m", self.gguf, "--rpc", "nohost"]):
            res = self.run_llama(*args)
            self.assertEqual(res.returncode, 1, args)
            self.assertIn(b"error:", res.stderr)

    @sim_llama_only
    def test_crash_after(self):
        p = self.llama(env={"SOLLOL_SIM_CRASH_AFTER_MS": "300"}, test=False)
        self.addCleanup(p.close)
        h.wait_until(lambda: not p.alive(), timeout=10, msg="simulated crash")
        self.assertEqual(p.popen.returncode, -signal.SIGABRT)

    @sim_llama_only
    def test_sigterm_while_loading(self):
        r = self.rpc()
        p = self.llama(rpcs=[r], env={"SOLLOL_SIM_LOAD_MS": "60000"})
        self.assertEqual(h.request("GET", p.url + "/health").status, 503)
        self.assertEqual(p.stop(), 0)
        # Its backend connection is gone: the rpc-server serves the next client.
        reply, s = h.rpc_hello(r.host, r.port, form="v3", timeout=10)
        self.assertEqual(h.rpc_version_of(reply), (3, 0, 0))
        s.close()

    @sim_llama_only
    def test_sigterm_mid_stream(self):
        p = self.llama(env={"SOLLOL_SIM_TOKENS_PER_SECOND": "20"})
        self.wait_ready(p)
        st = h.open_stream("POST", p.url + "/completion",
                           body={"prompt": "x", "n_predict": 1000, "stream": True})
        time.sleep(0.2)
        self.assertEqual(p.stop(), 0)
        st.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
