#!/usr/bin/python3
"""bench/model_churn.py - chat latency and daemon memory with a node that
lists thousands of models (issue #14 item 6).

One stand-in node (this process, Python's HTTP server) lists one real model
plus N model names at every GET /api/tags: new names at every probe
(--churn, the hostile case) or the same names (a node that simply has many
models). sollold probes it every --tags-interval and routes chats to it; the
script sends one non-streamed chat every 100 ms for --seconds and prints the
latency percentiles of each quarter of the run and sollold's RSS at its end.

    SOLLOL_BUILD_DIR=build bench/model_churn.py --models 10000 --churn
    SOLLOL_BUILD_DIR=build bench/model_churn.py --models 10000
    SOLLOL_BUILD_DIR=build bench/model_churn.py --models 0     # baseline

Loopback only; bounded in time (--seconds, 20 by default).
"""

import argparse
import http.server
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"


class Node:
    def __init__(self, n, churn):
        self.n, self.churn, self.generation = n, churn, 0
        self.lock = threading.Lock()
        node = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, body):
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/api/version":
                    self.reply(b'{"version":"0.12.6"}')
                elif self.path == "/api/ps":
                    self.reply(b'{"models":[]}')
                elif self.path == "/api/tags":
                    self.reply(node.tags())
                else:
                    self.send_error(404)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.reply(json.dumps({
                    "model": MODEL, "created_at": "2025-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": "ok"}, "done": True,
                    "done_reason": "stop", "total_duration": 1000, "eval_count": 1,
                    "eval_duration": 1000, "prompt_eval_count": 1,
                    "prompt_eval_duration": 1000}).encode())

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def tags(self):
        with self.lock:
            g = self.generation
            if self.churn:
                self.generation += 1
        tail = ('","modified_at":"2025-01-01T00:00:00Z","size":1,"digest":"' + "ab" * 32 +
                '","details":{"family":"llama"}}')
        items = ['{"name":"%s' % MODEL + tail]
        items += ['{"name":"churn-%d-%d:latest' % (g, i) + tail for i in range(self.n)]
        return ('{"models":[' + ",".join(items) + "]}").encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=10000)
    ap.add_argument("--churn", action="store_true")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--tags-interval", default="500ms")
    a = ap.parse_args()
    node = Node(a.models, a.churn)
    d = h.start_process("sollold", ["--listen", "127.0.0.1:0", "--node", "n=" + node.url,
                                    "--tags-interval", a.tags_interval,
                                    "--probe-interval", "1s", "--probe-timeout", "5s"])
    try:
        body = {"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "hi"}]}
        lat = []
        end = time.monotonic() + a.seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            r = h.post_json(d.url + "/api/chat", body, timeout=60)
            lat.append((t0, time.monotonic() - t0, r.status))
            time.sleep(0.1)
        rss = h.rss_bytes(d.popen.pid)
        start = lat[0][0]
        print("node lists %d models%s; tags every %s; %d chats in %.0f s" %
              (a.models, " (new names at every probe)" if a.churn else "", a.tags_interval,
               len(lat), a.seconds))
        for q in range(4):
            part = [x for x in lat if q * a.seconds / 4 <= x[0] - start < (q + 1) * a.seconds / 4]
            if not part:
                continue
            ms = sorted(x[1] * 1000 for x in part)
            bad = sum(1 for x in part if x[2] != 200)
            print("  quarter %d: chat p50 %.1f ms, p95 %.1f ms, max %.1f ms, non-200 %d" %
                  (q + 1, statistics.median(ms), ms[int(len(ms) * 0.95) - 1], ms[-1], bad))
        print("  sollold RSS at the end: %.1f MiB" % (rss / 1048576.0))
    finally:
        d.stop()
        node.server.shutdown()


if __name__ == "__main__":
    main()
