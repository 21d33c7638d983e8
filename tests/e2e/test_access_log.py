"""End-to-end tests of the access log, the tracing headers and the
once-per-change node and breaker logs.

- Access log: one line per request with time, id, client, method, path,
  model, node, status, retries, queue/ttfb/duration ms, prompt and generated
  tokens, in both --log-format text and json; checked for a streamed
  request, a non-streamed one, a failed one (404 for an unknown model), an
  OpenAI-shaped one (tokens from `usage`) and a failover.
- Headers: X-Sollol-Request-Id (an incoming X-Request-Id is kept and
  forwarded to the node), X-Sollol-Node, X-Sollol-Queue-Ms and
  Server-Timing on success (streamed: the total comes as a chunked
  trailer), error and failover paths, and on the daemon's own answers.
- A node that goes down and comes back is logged once each way, not once
  per probe; each breaker opening is logged once.

Run: python3 -B tests/e2e/test_access_log.py (SOLLOL_BUILD_DIR selects the build).
"""

import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"
FAST_PROBES = ["--probe-interval", "200ms", "--tags-interval", "500ms", "--probe-timeout", "500ms"]
TEXT_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) sollold info access id=(\S+) client=(\S+) "
    r"method=(\S+) path=(\S+) model=(\S+) node=(\S+) status=(\d+) retries=(\d+) "
    r"queue_ms=(\d+) ttfb_ms=([\d.]+) duration_ms=([\d.]+) prompt_tokens=(\d+) "
    r"gen_tokens=(\d+) bytes=(\d+)( cont=[a-z_]+)?( client_gone)?$")
TEXT_FIELDS = ("time", "id", "client", "method", "path", "model", "node", "status", "retries",
               "queue_ms", "ttfb_ms", "duration_ms", "prompt_tokens", "gen_tokens", "bytes")
SERVER_TIMING = re.compile(r'^[a-z]+(;(dur=[\d.]+|desc="[^"]*"))*(, [a-z]+(;(dur=[\d.]+|desc="[^"]*"))*)*$')


def start_daemon(test, nodes, *extra):
    args = ["--listen", "127.0.0.1:0"] + FAST_PROBES + list(extra)
    for name, url in nodes:
        args += ["--node", "%s=%s" % (name, url)]
    return h.start_process("sollold", args, test=test)


def chat(n, stream, text="hello"):
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": stream,
            "options": {"num_predict": n}}


def access_lines_text(proc):
    out = {}
    for line in proc.stderr_text().splitlines():
        if " info access " not in line:
            continue
        m = TEXT_LINE.match(line)
        assert m, "access line does not match the documented format: %r" % line
        rec = dict(zip(TEXT_FIELDS, m.groups()))
        rec["client_gone"] = m.group(16) is not None
        out[rec["id"]] = rec
    return out


def access_lines_json(proc):
    out = {}
    for line in proc.stderr_text().splitlines():
        rec = json.loads(line)  # with --log-format json every line is a JSON object
        if rec.get("kind") == "access":
            out[rec["id"]] = rec
    return out


def timing(header):
    """Server-Timing -> {name: dur}."""
    assert SERVER_TIMING.match(header), header
    out = {}
    for part in header.split(", "):
        name, *params = part.split(";")
        for p in params:
            if p.startswith("dur="):
                out[name] = float(p[4:])
    return out


def read_chunked_with_trailers(host, port, path, body):
    """POST with a raw socket; returns (head, body chunks joined, trailer lines)."""
    data = json.dumps(body).encode()
    req = ("POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
           "Content-Length: %d\r\nTE: trailers\r\nConnection: close\r\n\r\n"
           % (path, host, port, len(data))).encode() + data
    raw = h.raw_exchange(host, port, req, timeout=10)
    head, _, rest = raw.partition(b"\r\n\r\n")
    payload = b""
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        payload += rest[:size]
        rest = rest[size + 2:]
    trailers = [t for t in rest.split(b"\r\n") if t]
    return head.decode(), payload, [t.decode() for t in trailers]


class AccessLogAndHeaders(unittest.TestCase):
    def check_common_headers(self, r, node=None):
        self.assertRegex(r.headers.get("x-sollol-request-id", ""), r"^[A-Za-z0-9._-]{1,64}$")
        self.assertIn("server-timing", r.headers)
        if node:
            self.assertEqual(r.headers.get("x-sollol-node"), node)

    def test_text_log_and_headers(self):
        # Paced, so a stream is still running when its headers are sent.
        sims = [h.start_sim("--tokens-per-second", "50", test=self) for _ in range(2)]
        d = start_daemon(self, [("gpu-a", sims[0].url), ("gpu-b", sims[1].url)],
                         "--routing", "round_robin")

        # Streamed success, with an incoming X-Request-Id that must be kept.
        with h.open_stream("POST", d.url + "/api/chat", chat(20, True),
                           headers={"X-Request-Id": "client-id-123"}) as s:
            lines = [e.json for e in s.lines()]
        self.assertEqual(s.status, 200)
        self.assertEqual(s.headers["x-sollol-request-id"], "client-id-123")
        node_stream = s.headers["x-sollol-node"]
        self.assertIn(node_stream, ("gpu-a", "gpu-b"))
        self.assertEqual(s.headers["x-sollol-queue-ms"], "0")
        st = timing(s.headers["server-timing"])
        self.assertIn("queue", st)
        self.assertIn("upstream", st)
        self.assertNotIn("total", st, "a stream's total is not known with the headers")
        self.assertEqual(s.headers.get("trailer"), "Server-Timing")
        sim_of = {"gpu-a": sims[0], "gpu-b": sims[1]}
        recs = [x for x in h.sim_stats(sim_of[node_stream].url)["requests"]
                if x["path"] == "/api/chat"]
        self.assertEqual(recs[-1]["x_request_id"], "client-id-123", "forwarded to the node")
        gen_stream = lines[-1]["eval_count"]
        prompt_stream = lines[-1]["prompt_eval_count"]

        # Non-streamed success: the total is in the header.
        r = h.post_json(d.url + "/api/chat", chat(4, False))
        self.assertEqual(r.status, 200)
        self.check_common_headers(r)
        st = timing(r.headers["server-timing"])
        self.assertEqual(set(st), {"queue", "upstream", "total"})
        self.assertGreaterEqual(st["total"], st["upstream"])
        id_plain = r.headers["x-sollol-request-id"]

        # OpenAI shape: tokens from usage.
        r = h.post_json(d.url + "/v1/chat/completions",
                        {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                         "max_tokens": 3})
        self.assertEqual(r.status, 200, r.body)
        usage = r.json()["usage"]
        id_openai = r.headers["x-sollol-request-id"]

        # Error answered by the daemon: request id, queue ms and the total.
        r = h.post_json(d.url + "/api/chat", {"model": "nope:1b", "messages": []})
        self.assertEqual(r.status, 404)
        self.check_common_headers(r)
        self.assertNotIn("x-sollol-node", r.headers)
        self.assertEqual(r.headers["x-sollol-queue-ms"], "0")
        self.assertIn("total", timing(r.headers["server-timing"]))
        id_404 = r.headers["x-sollol-request-id"]

        # The daemon's own answers carry an id and a total too.
        for path in ("/api/tags", "/api/version", "/metrics", "/no/such/path"):
            r = h.request("GET", d.url + path)
            self.check_common_headers(r)
            self.assertIn("total", timing(r.headers["server-timing"]), path)
        r = h.request("GET", d.url + "/api/tags", headers={"X-Request-Id": "tags-1"})
        self.assertEqual(r.headers["x-sollol-request-id"], "tags-1")

        # Failover: gpu-a answers 500; round robin sends one of two requests
        # there first, and gpu-b takes it over.
        h.sim_fault(sims[0].url, "500")
        failover = None
        for i in range(2):
            r = h.post_json(d.url + "/api/chat", chat(2, False, text="f%d" % i))
            self.assertEqual(r.status, 200, r.body)
            self.check_common_headers(r, node="gpu-b")
            st = timing(r.headers["server-timing"])
            self.assertEqual(set(st), {"queue", "upstream", "total"})
            if h.sim_stats(sims[0].url)["faults_injected"] and failover is None:
                failover = r.headers["x-sollol-request-id"]
        self.assertIsNotNone(failover, "round robin never tried the failing node")
        h.sim_fault(sims[0].url, "none")

        # Streamed with the Server-Timing trailer, read on a raw socket.
        head, payload, trailers = read_chunked_with_trailers(
            d.host, d.port, "/api/generate",
            {"model": MODEL, "prompt": "hi", "options": {"num_predict": 20}})
        self.assertIn("Transfer-Encoding: chunked", head)
        self.assertEqual(len(trailers), 1, trailers)
        name, _, value = trailers[0].partition(": ")
        self.assertEqual(name.lower(), "server-timing")
        self.assertEqual(set(timing(value)), {"total"})
        self.assertIn(b'"done":true', payload)

        # The access log: one line per proxied request, all fields.
        def logged():
            lines = access_lines_text(d)
            return lines if len(lines) >= 7 else None
        lines = h.wait_until(logged, msg="7 access lines")
        self.assertEqual(len(lines), 7, sorted(lines))
        a = lines["client-id-123"]
        self.assertEqual((a["client"], a["method"], a["path"], a["model"], a["node"]),
                         ("127.0.0.1", "POST", "/api/chat", MODEL, node_stream))
        self.assertEqual((a["status"], a["retries"]), ("200", "0"))
        self.assertEqual((int(a["gen_tokens"]), int(a["prompt_tokens"])), (gen_stream, prompt_stream))
        self.assertGreater(float(a["ttfb_ms"]), 0)
        self.assertGreaterEqual(float(a["duration_ms"]), float(a["ttfb_ms"]))
        self.assertGreater(int(a["bytes"]), 0)
        self.assertFalse(a["client_gone"])
        self.assertEqual(lines[id_plain]["status"], "200")
        o = lines[id_openai]
        self.assertEqual((o["path"], int(o["gen_tokens"]), int(o["prompt_tokens"])),
                         ("/v1/chat/completions", usage["completion_tokens"],
                          usage["prompt_tokens"]))
        e = lines[id_404]
        self.assertEqual((e["status"], e["node"], e["model"], e["retries"], e["gen_tokens"]),
                         ("404", "-", "nope:1b", "0", "0"))
        self.assertEqual(e["ttfb_ms"], "0.0")
        f = lines[failover]
        self.assertEqual((f["status"], f["node"], f["retries"]), ("200", "gpu-b", "1"))
        for rec in lines.values():
            self.assertRegex(rec["id"], r"^[A-Za-z0-9._-]+$")

        # GET /metrics agrees: one failover, OpenAI tokens counted.
        text = h.request("GET", d.url + "/metrics").text
        m = re.search(r'^sollol_request_failovers_total\{route="/api/chat"\} (\d+)$', text, re.M)
        self.assertEqual(int(m.group(1)), 1)
        v1 = re.findall(r'^sollol_request_ttft_seconds_count\{route="/api/chat"\} (\d+)$', text,
                        re.M)
        self.assertEqual(v1, ["1"], "one streamed chat")

    def test_json_log(self):
        sim = h.start_sim("--tokens-per-second", "0", test=self)
        d = start_daemon(self, [("n1", sim.url)], "--log-format", "json")
        with h.open_stream("POST", d.url + "/api/generate",
                           {"model": MODEL, "prompt": "p", "options": {"num_predict": 4}}) as s:
            last = [e.json for e in s.lines()][-1]
        rid = s.headers["x-sollol-request-id"]
        r = h.post_json(d.url + "/api/chat", b"{broken", headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        bad = r.headers["x-sollol-request-id"]
        lines = h.wait_until(lambda: (lambda x: x if len(x) >= 2 else None)(access_lines_json(d)),
                             msg="2 access lines")
        a = lines[rid]
        for k in ("time", "id", "client", "method", "path", "model", "node", "status", "retries",
                  "queue_ms", "ttfb_ms", "duration_ms", "prompt_tokens", "gen_tokens", "bytes"):
            self.assertIn(k, a)
        self.assertRegex(a["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual((a["method"], a["path"], a["model"], a["node"], a["status"]),
                         ("POST", "/api/generate", MODEL, "n1", 200))
        self.assertEqual((a["gen_tokens"], a["prompt_tokens"]),
                         (last["eval_count"], last["prompt_eval_count"]))
        b = lines[bad]
        self.assertEqual((b["status"], b["model"], b["node"], b["retries"]), (400, None, None, 0))

    def test_state_changes_logged_once(self):
        sims = [h.start_sim("--tokens-per-second", "0", test=self) for _ in range(2)]
        # A generous probe timeout: a probe slowed by a loaded machine must
        # not flap the node and add lines this test counts.
        d = start_daemon(self, [("a", sims[0].url), ("b", sims[1].url)],
                         "--routing", "round_robin", "--probe-timeout", "3s")
        # Down for ~10 probe rounds (every route answers 500), then back.
        h.sim_fault(sims[0].url, "500", scope="all")
        stats = lambda: h.get_json(d.url + "/api/stats")  # noqa: E731
        h.wait_until(lambda: stats()["nodes"][0]["state"] == "down", msg="node a down")
        time.sleep(2.0)
        h.sim_fault(sims[0].url, "none")
        h.wait_until(lambda: stats()["nodes"][0]["state"] == "up", msg="node a up again")
        err = d.stderr_text()
        self.assertEqual(len(re.findall(r"node a is down", err)), 1, err[-3000:])
        self.assertEqual(len(re.findall(r"node a is up", err)), 2, "start and recovery")

        # Breaker: node b fails every request; each opening is one line.
        h.sim_fault(sims[1].url, "500")
        for i in range(8):
            h.post_json(d.url + "/api/chat", chat(1, False, text="b%d" % i))
        opens = stats()["nodes"][1]["breaker"]["opens_total"]
        self.assertGreaterEqual(opens, 1)
        err = d.stderr_text()
        self.assertEqual(len(re.findall(r"node b: circuit breaker open", err)), opens, err[-3000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
