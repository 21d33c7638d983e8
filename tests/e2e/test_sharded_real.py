"""End-to-end tests of the sharded path against the REAL llama.cpp programs
(issue 16): sollold launching the real llama-server over real ggml RPC
servers, with a random-weight GGUF from tests/real/gen_gguf.c.

Run by `tests/run --real-llama`, which builds the programs into a cache
(tests/real/build-llama) and sets:
  SOLLOL_REAL_LLAMA_SERVER, SOLLOL_REAL_RPC_SERVER  the current build (RPC 5.1.0)
  SOLLOL_REAL_OLD_RPC_SERVER                        an older rpc-server (RPC 3.6.1)
  SOLLOL_REAL_GGUF                                  the generated model
Without them every test is skipped (the stand-in tests are test_sharded.py).

Each test prints what it measured ([measure] lines): the numbers of
docs/benchmarks.md's sharded section come from these runs. Timing
assertions are loose: a loaded 2-core machine.
"""

import json
import os
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from test_sharded import children_of, proc_alive, proc_exists  # noqa: E402

MODEL = "big:70b"
OTHER = "other:7b"
REAL = bool(os.environ.get("SOLLOL_REAL_LLAMA_SERVER") and os.environ.get("SOLLOL_REAL_RPC_SERVER")
            and os.environ.get("SOLLOL_REAL_GGUF"))
OLD_RPC = os.environ.get("SOLLOL_REAL_OLD_RPC_SERVER")
LAYERS = 4  # tests/run --real-llama generates a 4-layer model


def measure(fmt, *args):
    print("\n[measure] " + fmt % args, file=sys.stderr)


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


@unittest.skipUnless(REAL, "needs the real llama.cpp programs (tests/run --real-llama)")
class RealSharded(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sollol-real-")
        self.sim = h.start_sim(test=self)
        self.gguf = os.environ["SOLLOL_REAL_GGUF"]

    def backend(self, port=0, binary=None, check_exit=True):
        """A real RPC server on a free loopback port (the current build, or
        `binary`). Killed tests pass check_exit=False."""
        if binary is None:
            return h.start_standin("rpc-server", ["-p", str(port)], test=self,
                                   check_exit=check_exit)
        port = port or h.free_port()
        p = h._ConnectReadyProc([binary, "-p", str(port)], "127.0.0.1", port, name="old-rpc")
        p.ok_exit = (-signal.SIGTERM,)
        return h._cleanup_with(p, self, check_exit)

    def daemon(self, backends, check_exit=True, **cfg):
        conf = {
            "nodes": [self.sim.url],
            "listen": "127.0.0.1:0",
            "model_sharding_enabled": True,
            "rpc_backends": [{"host": "127.0.0.1", "port": b.port} for b in backends],
            "sharded_models": [MODEL, OTHER],
            "model_paths": {MODEL: self.gguf, OTHER: self.gguf},
            "rpc_probe_timeout_ms": 2000,
            "health": {"probe_interval_ms": 500},
        }
        ls = {"binary": os.environ["SOLLOL_REAL_LLAMA_SERVER"], "stop_grace_ms": 5000,
              "ctx_size": 2048, "parallel": 2, "restart_backoff_min_ms": 200,
              "startup_timeout_ms": 60000}
        ls.update(cfg.pop("llama_server", {}))
        conf["llama_server"] = ls
        conf.update(cfg)
        path = os.path.join(self.tmp, "sollol-%d.json" % len(os.listdir(self.tmp)))
        with open(path, "w") as f:
            json.dump(conf, f)
        return h.start_process("sollold", ["--config", path], test=self, check_exit=check_exit,
                               ready_timeout=30)

    def status(self, d):
        return h.get_json(d.url + "/api/sollol/rpc")

    def rows(self, d):
        return {b["address"]: b for b in self.status(d)["backends"]}

    def wait_state(self, d, state, timeout=60.0):
        h.wait_until(lambda: self.status(d)["coordinator"]["state"] == state, timeout=timeout,
                     interval=0.05,
                     msg="coordinator %s (now %s)" % (state, self.status(d)["coordinator"]))
        return self.status(d)

    def chat(self, model=MODEL, n=8, **kw):
        body = {"model": model, "messages": [{"role": "user", "content": "hello there"}],
                "options": {"num_predict": n, "seed": 1}}
        body.update(kw)
        return body

    def stream(self, d, path="/api/chat", body=None, timeout=120):
        s = h.open_stream("POST", d.url + path, body or self.chat(), timeout=timeout)
        self.assertEqual(s.status, 200)
        lines = list(s.lines())
        s.close()
        return s, lines

    # ------------------------------------------------------------------

    def test_preflight_launch_serve_and_backend_rows(self):
        b1, b2 = self.backend(), self.backend()
        # -lv 4: llama.cpp logs where each layer went only at verbosity 4.
        d = self.daemon([b1, b2], llama_server={"extra_args": ["-lv", "4"]})
        # Before any request: the binary found under its current name, the
        # reference version from it, both backends checked (start-up survey).
        h.wait_until(lambda: all(b["state"] == "up" for b in self.status(d)["backends"]),
                     timeout=30, msg="backends up before the first request")
        st = self.status(d)
        self.assertTrue(st["rpc_server_binary"].endswith("/ggml-rpc-server"), st)
        self.assertIn("ggml-rpc-server beside llama-server", st["rpc_server_found"])
        self.assertEqual(st["reference_version"], "5.1.0")
        self.assertEqual(st["coordinator"]["state"], "stopped")
        for b in st["backends"]:
            self.assertEqual(b["version"], "5.1.0")
            self.assertEqual(b["hello_form"], "v4")
            self.assertGreaterEqual(b["devices"], 1)
            self.assertGreater(b["free_bytes"], 0)
            self.assertGreaterEqual(b["total_bytes"], b["free_bytes"])

        # Streamed chat, cold: pre-flight, launch, weights sent, load.
        t0 = time.monotonic()
        s, lines = self.stream(d)
        measure("cold sharded start, first request -> first token: %.0f ms",
                (lines[0].t - t0) * 1000)
        body = [e.json for e in lines]
        self.assertTrue(all(not x["done"] and x["message"]["role"] == "assistant"
                            for x in body[:-1]))
        last = body[-1]
        self.assertTrue(last["done"], last)
        self.assertEqual(last["done_reason"], "length")
        self.assertEqual(last["eval_count"], 8)
        self.assertGreater(last["prompt_eval_count"], 0)
        self.assertGreater(last["load_duration"], 0)
        text = "".join(x["message"]["content"] for x in body[:-1])
        self.assertTrue(text and all(32 <= ord(ch) < 127 for ch in text), repr(text))

        # Every layer is on the RPC backends, both of them used.
        log = d.stderr_text()
        self.assertIn("offloaded %d/%d layers to GPU" % (LAYERS + 1, LAYERS + 1), log)
        for b in (b1, b2):
            self.assertRegex(log, r"RPC\d*\[127\.0\.0\.1:%d\]\s+model buffer size" % b.port)
        pid = self.status(d)["coordinator"]["pid"]
        argv = cmdline(pid)
        self.assertEqual(argv[argv.index("--rpc") + 1],
                         "127.0.0.1:%d,127.0.0.1:%d" % (b1.port, b2.port))

        # Non-streamed generate; the /v1 routes, streamed and not.
        r = h.post_json(d.url + "/api/generate", {"model": MODEL, "prompt": "once upon",
                                                  "stream": False, "options": {"num_predict": 5}})
        self.assertEqual(r.status, 200, r.body)
        g = r.json()
        self.assertTrue(g["done"] and g["response"], g)
        self.assertEqual(g["eval_count"], 5)
        s, lines = self.stream(d, "/api/generate", {"model": MODEL, "prompt": "x",
                                                    "options": {"num_predict": 4}})
        self.assertEqual(lines[-1].json["eval_count"], 4)
        r = h.post_json(d.url + "/v1/chat/completions",
                        {"model": MODEL, "max_tokens": 4,
                         "messages": [{"role": "user", "content": "hi"}]})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["object"], "chat.completion")
        self.assertEqual(r.json()["usage"]["completion_tokens"], 4)
        r = h.post_json(d.url + "/v1/completions", {"model": MODEL, "prompt": "a", "max_tokens": 3})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["object"], "text_completion")
        s = h.open_stream("POST", d.url + "/v1/chat/completions",
                          {"model": MODEL, "max_tokens": 4, "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]}, timeout=60)
        raw = s.read_all().decode()
        s.close()
        self.assertTrue(raw.rstrip().endswith("data: [DONE]"), raw[-300:])
        self.assertEqual(s.headers.get("content-type").split(";")[0], "text/event-stream")
        tags = [m["name"] for m in h.get_json(d.url + "/api/tags")["models"]]
        self.assertIn(MODEL, tags)
        ps = [m for m in h.get_json(d.url + "/api/ps")["models"] if m["name"] == MODEL]
        self.assertEqual(ps[0]["node"], "rpc")

        # Issue 16 item 2: the backends llama-server holds stay "in use" and
        # up; no probe connects to them (their backlog of one would make it
        # time out) - checked over several liveness periods.
        time.sleep(5)
        for b in self.status(d)["backends"]:
            self.assertEqual(b["state"], "in_use", b)
            self.assertTrue(b["reachable"], b)
        m = h.request("GET", d.url + "/metrics").body.decode()
        for b in (b1, b2):
            self.assertIn('sollol_rpc_backend_up{backend="127.0.0.1:%d"} 1' % b.port, m)
            self.assertIn('sollol_rpc_backend_in_use{backend="127.0.0.1:%d"} 1' % b.port, m)
        log = d.stderr_text()
        self.assertNotIn("is unreachable", log)
        self.assertNotIn("is down", log)

    def test_two_parallel_slots(self):
        b = self.backend()
        d = self.daemon([b], llama_server={"parallel": 2})
        self.stream(d, body=self.chat(n=2))  # loaded
        spans = [None, None]

        def one(i):
            t0 = time.monotonic()
            s, lines = self.stream(d, body=self.chat(n=48, messages=[
                {"role": "user", "content": "question %d" % i}]))
            spans[i] = (lines[0].t, lines[-2].t, lines[-1].json)
            return time.monotonic() - t0

        h.run_parallel([lambda: one(0), lambda: one(1)], timeout=120)
        for first, last, done in spans:
            self.assertTrue(done["done"])
            self.assertEqual(done["eval_count"], 48)
        # Served at the same time: each began before the other ended.
        self.assertLess(spans[0][0], spans[1][1])
        self.assertLess(spans[1][0], spans[0][1])

    def test_model_switch_and_unload(self):
        b = self.backend()
        d = self.daemon([b])
        self.stream(d)
        pid = self.status(d)["coordinator"]["pid"]
        r = h.post_json(d.url + "/api/chat", self.chat(OTHER, stream=False), timeout=120)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["model"], OTHER)
        st = self.status(d)["coordinator"]
        self.assertEqual(st["model"], OTHER)
        self.assertNotEqual(st["pid"], pid)
        self.assertEqual(st["restarts"], 0)
        h.wait_until(lambda: not proc_exists(pid), timeout=10, msg="first llama-server reaped")
        pid2 = st["pid"]
        r = h.post_json(d.url + "/api/chat", {"model": OTHER, "messages": [], "keep_alive": 0,
                                              "stream": False})
        self.assertEqual(r.json()["done_reason"], "unload")
        self.wait_state(d, "stopped", timeout=20)
        h.wait_until(lambda: not proc_exists(pid2), timeout=10, msg="unloaded llama-server reaped")
        self.assertNotIn(OTHER, [m["name"] for m in h.get_json(d.url + "/api/ps")["models"]])
        # No abort at its exit: the backends were still there.
        self.assertNotIn("GGML_ASSERT", d.stderr_text())

    @unittest.skipUnless(OLD_RPC, "needs SOLLOL_REAL_OLD_RPC_SERVER (RPC 3.6.1)")
    def test_old_backend_excluded_before_launch(self):
        good = self.backend()
        old = self.backend(binary=OLD_RPC)
        d = self.daemon([good, old])
        h.wait_until(lambda: self.rows(d)["127.0.0.1:%d" % old.port]["state"] == "excluded",
                     timeout=30, msg="the 3.6.1 server excluded before any request")
        row = self.rows(d)["127.0.0.1:%d" % old.port]
        self.assertEqual(row["version"], "3.6.1")
        self.assertEqual(row["hello_form"], "v1-v3")
        self.assertIn("3.6.1", row["excluded_why"])
        self.assertIn("major differs", row["excluded_why"])
        self.assertIn("rpc backend 127.0.0.1:%d excluded" % old.port, d.stderr_text())
        s, lines = self.stream(d)
        self.assertTrue(lines[-1].json["done"])
        argv = cmdline(self.status(d)["coordinator"]["pid"])
        self.assertEqual(argv[argv.index("--rpc") + 1], "127.0.0.1:%d" % good.port)
        # With only the old one: a 503 naming both versions, nothing launched.
        d2 = self.daemon([old])
        r = h.post_json(d2.url + "/api/chat", self.chat(), timeout=60)
        self.assertEqual(r.status, 503, r.body)
        err = r.json()["error"]
        self.assertIn("127.0.0.1:%d" % old.port, err)
        self.assertIn("3.6.1", err)
        self.assertIn("expected 5.1", err)
        self.assertIsNone(self.status(d2)["coordinator"]["pid"])
        self.assertNotIn("started llama-server", d2.stderr_text())

    def survivor(self):
        """A local RPC server sollold supervises: the backend that is left
        when another dies. It must be supervised (as the systemd unit does
        with Restart=on-failure): when llama-server aborts while this one is
        replying to it, the real server dies of SIGPIPE (it does not ignore
        it), and sollold restarts it."""
        port = h.free_port()
        return {"local_rpc_servers": [{"port": port, "cache": False}],
                "llama_server": {"rpc_server_binary": os.environ["SOLLOL_REAL_RPC_SERVER"]}}, port

    def test_backend_killed_mid_stream(self):
        b2 = self.backend(check_exit=False)
        cfg, local = self.survivor()
        cfg["llama_server"]["parallel"] = 1
        d = self.daemon([b2], **cfg)
        self.stream(d, body=self.chat(n=2))
        pid = self.status(d)["coordinator"]["pid"]
        s = h.open_stream("POST", d.url + "/api/chat", self.chat(n=1500), timeout=120)
        self.assertEqual(s.status, 200)
        it = s.lines()
        for _ in range(3):
            self.assertFalse(next(it).json["done"])
        # A request that arrives now waits (one slot, busy) and is served
        # after the recovery, never a 502.
        queued = []
        t = threading.Thread(target=lambda: queued.append(
            h.post_json(d.url + "/api/chat", self.chat(n=4, stream=False), timeout=120)))
        t.start()
        time.sleep(0.3)
        t_kill = time.monotonic()
        b2.popen.kill()
        b2.popen.wait()
        rest = list(it)
        s.close()
        t_err = rest[-1].t
        self.assertIn("error", rest[-1].json, rest[-1].json)
        self.assertNotIn("done", rest[-1].json)
        measure("backend killed mid-stream -> error line: %.0f ms", (t_err - t_kill) * 1000)
        t.join(120)
        self.assertEqual(queued[0].status, 200, queued[0].body)
        self.assertTrue(queued[0].json()["done"])
        st = self.wait_state(d, "ready")
        measure("backend killed mid-stream -> serving again: %.0f ms (queued request done)",
                (time.monotonic() - t_kill) * 1000)
        self.assertNotEqual(st["coordinator"]["pid"], pid)
        self.assertIn("without 127.0.0.1:%d" % b2.port, st["coordinator"]["recovery"])
        row = self.rows(d)["127.0.0.1:%d" % b2.port]
        self.assertEqual(row["state"], "down")
        print("\n[info] the surviving rpc server was restarted %d time(s) (SIGPIPE at the abort)"
              % st["local_rpc_servers"][0]["restarts"], file=sys.stderr)
        # The cause as llama.cpp printed it (GGML_NO_BACKTRACE=1: no gdb frames).
        print("\n[last_exit] %s" % st["coordinator"]["last_exit"], file=sys.stderr)
        self.assertIn("signal 6", st["coordinator"]["last_exit"])
        # ggml's "E recv failed ..." and then "ggml-rpc.cpp:NNN: Remote RPC
        # server crashed ...": the later one once all its output is read.
        self.assertRegex(st["coordinator"]["last_exit"], r"ggml-rpc\.cpp:\d+|\bE recv failed")
        self.assertNotIn("gdb", d.stderr_text())
        self.assertFalse(any(p == pid for p, _ in children_of(d.popen.pid)), "zombie")

    def test_backend_killed_while_idle(self):
        b1 = self.backend()
        b2 = self.backend(check_exit=False)
        port2 = b2.port
        d = self.daemon([b1, b2])
        self.stream(d, body=self.chat(n=2))
        pid = self.status(d)["coordinator"]["pid"]
        t_kill = time.monotonic()
        b2.popen.kill()
        b2.popen.wait()
        # Detected without a request, and shown.
        h.wait_until(lambda: self.rows(d)["127.0.0.1:%d" % port2]["state"] == "down",
                     timeout=15, interval=0.05, msg="dead backend shown down")
        measure("backend killed while idle -> shown down: %.0f ms",
                (time.monotonic() - t_kill) * 1000)
        row = self.rows(d)["127.0.0.1:%d" % port2]
        self.assertIn("connection", row["last_error"])
        self.assertIsInstance(row["down_since"], str)
        # (It stays "ready" for a moment while the old llama-server stops.)
        h.wait_until(lambda: self.status(d)["coordinator"]["pid"] not in (pid, None) and
                     self.status(d)["coordinator"]["state"] == "ready", timeout=60,
                     interval=0.05, msg="relaunched")
        measure("backend killed while idle -> relaunched over the other: %.0f ms",
                (time.monotonic() - t_kill) * 1000)
        s, lines = self.stream(d, body=self.chat(n=4))
        self.assertEqual(lines[-1].json["eval_count"], 4)
        m = h.request("GET", d.url + "/metrics").body.decode()
        self.assertIn('sollol_rpc_backend_up{backend="127.0.0.1:%d"} 0' % port2, m)
        # It returns: up again (not in use by the relaunched llama-server).
        t_back = time.monotonic()
        self.backend(port=port2)
        h.wait_until(lambda: self.rows(d)["127.0.0.1:%d" % port2]["state"] == "up",
                     timeout=15, interval=0.05, msg="backend up again")
        measure("backend returned -> shown up: %.0f ms", (time.monotonic() - t_back) * 1000)

    def test_request_right_after_an_idle_backend_died_is_not_a_502(self):
        # Sent before the coordinator noticed (llama-server only learns of
        # it when it uses the backend, then aborts before its first byte):
        # the request waits for the recovery and is answered, never 502.
        b2 = self.backend(check_exit=False)
        cfg, local = self.survivor()
        d = self.daemon([b2], **cfg)
        self.stream(d, body=self.chat(n=2))
        b2.popen.kill()
        b2.popen.wait()
        t0 = time.monotonic()
        r = h.post_json(d.url + "/api/chat", self.chat(n=4, stream=False), timeout=120)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["eval_count"], 4)
        log = d.stderr_text()
        how = ("retried after llama-server failed before its first byte"
               if "waits for the sharded model's recovery" in log else
               "held: the lost backend was seen first")
        measure("request right after an idle backend died: 200 after %.0f ms (%s)",
                (time.monotonic() - t0) * 1000, how)

    def test_llama_server_that_exits_at_once_is_a_clear_503(self):
        b = self.backend()
        d = self.daemon([b], llama_server={"extra_args": ["--no-such-flag"], "crash_limit": 2,
                                           "restart_backoff_min_ms": 50})
        r = h.post_json(d.url + "/api/chat", self.chat(), timeout=60)
        self.assertEqual(r.status, 503, r.body)
        err = r.json()["error"]
        self.assertIn("exited 2 times", err)
        self.assertIn("--no-such-flag", err)
        self.assertIsNone(self.status(d)["coordinator"]["pid"])

    def test_sigterm_then_sigkill_leave_nothing(self):
        b = self.backend()
        local = h.free_port()
        for how in ("term", "kill"):
            d = self.daemon([b], check_exit=False,
                            local_rpc_servers=[{"port": local, "mem": 4096}],
                            llama_server={"rpc_server_binary": os.environ["SOLLOL_REAL_RPC_SERVER"]})
            s, lines = self.stream(d, body=self.chat(n=4))
            self.assertTrue(lines[-1].json["done"])
            st = self.status(d)
            # "mem" is a start-up warning with a current server, not a restart loop.
            self.assertEqual(st["local_rpc_servers"][0]["restarts"], 0)
            self.assertIn('"mem" ignored', d.stderr_text())
            pids = [st["coordinator"]["pid"]] + [x["pid"] for x in st["local_rpc_servers"]]
            self.assertTrue(all(pids) and all(proc_alive(p) for p in pids), st)
            self.assertIn("127.0.0.1:%d" % local, [x["address"] for x in st["backends"]])
            if how == "term":
                self.assertEqual(d.stop(), 0)
                # llama-server went first: it did not abort on a vanished backend.
                self.assertNotIn("Remote RPC server crashed", d.stderr_text())
            else:
                d.popen.kill()
                d.popen.wait()
            h.wait_until(lambda: not any(proc_alive(p) for p in pids), timeout=15,
                         msg="children gone after %s" % how)
            self.assertEqual([c for c in children_of(d.popen.pid)], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
