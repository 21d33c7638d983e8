"""End-to-end test of a burst of streams (issue #9, scenario 2): every stream
of a burst reaches the node at once (no stream held in the daemon's queue or
inside libcurl by a per-host connection cap), and a repeated burst travels on
the node connections the first one opened (the pool keeps them: a new
connection per stream costs the daemon a dozen system calls and the node an
accept while the whole burst waits behind it).

The node counts the TCP connections it accepts (``connections_total`` of
/_sim/stats, the harness's own control requests included: one each).

Run: python3 -B tests/e2e/test_burst.py (SOLLOL_BUILD_DIR selects the build).
No timing assertion: CI is a busy 2-core machine.
"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"
STREAMS = 24
TOKENS = 60  # at 20 tokens/s: each stream is open for about 3 s (margin for slow thread starts)


def start_daemon(test, node_url):
    # Probes far apart: a probe during a burst would find every pooled
    # connection busy and open one of its own.
    cfg = {"nodes": [{"name": "a", "url": node_url, "max_concurrent": STREAMS}]}
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(cfg, f)
    f.close()
    test.addCleanup(os.unlink, f.name)
    args = ["--config", f.name, "--listen", "127.0.0.1:0", "--probe-interval", "1h",
            "--tags-interval", "24h"]
    return h.start_process("sollold", args, test=test)


def burst(d, tag):
    """STREAMS streamed chats started together; returns [(status, queue ms,
    NDJSON lines)]."""
    def one(i):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "%s %d" % (tag, i)}],
                "stream": True, "options": {"num_predict": TOKENS}}
        r = h.request("POST", d.url + "/api/chat", body, timeout=120)
        lines = [json.loads(x) for x in r.body.splitlines() if x.strip()]
        return r.status, r.headers.get("x-sollol-queue-ms"), lines

    return h.run_parallel([lambda i=i: one(i) for i in range(STREAMS)], timeout=180)


class BurstTest(unittest.TestCase):
    def check(self, results, sim):
        for status, queue_ms, lines in results:
            self.assertEqual(status, 200)
            self.assertEqual(queue_ms, "0", "a stream waited in the daemon's queue")
            self.assertTrue(lines and lines[-1].get("done"), "every stream ends with its done line")
            self.assertEqual(len(lines), TOKENS + 1)
        st = h.sim_stats(sim.url)
        # Every stream of the burst was running at the node at the same time.
        self.assertEqual(st["max_active_per_model"][MODEL], STREAMS, st["max_active_per_model"])
        return st

    def test_burst_reaches_node_at_once_on_pooled_connections(self):
        sim = h.start_sim("--parallel", str(STREAMS * 2), "--tokens-per-second", "20",
                          models=(MODEL + ",loaded",), test=self)
        d = start_daemon(self, sim.url)
        h.sim_reset(sim.url)
        first = self.check(burst(d, "first"), sim)
        # At most one connection per stream (one the start-up probes left in
        # the pool may serve a stream); this stats call is one more.
        self.assertLessEqual(first["connections_total"], STREAMS + 1, first)

        h.sim_reset(sim.url)
        second = self.check(burst(d, "second"), sim)
        self.assertEqual(second["connections_total"], 1,
                         "the second burst opened node connections instead of reusing the pool")


if __name__ == "__main__":
    unittest.main()
