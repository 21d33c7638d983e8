"""sollold's open-file limit: started with a low soft limit (256) under a
higher hard one, it raises the soft limit to the hard limit and serves more
concurrent streams than the soft limit would have allowed (each stream
holds a client socket and a node socket)."""

import json
import os
import resource
import selectors
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SOFT = 256
STREAMS = 300
MODEL = "llama3.2:3b"


def open_files_limits(pid):
    """(soft, hard) "Max open files" of a process, from /proc."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                parts = line.split()
                return int(parts[3]), int(parts[4]) if parts[4].isdigit() else -1
    raise AssertionError("no 'Max open files' line")


class FdLimitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < 4 * STREAMS:
            raise unittest.SkipTest("hard open-file limit %d too low for this test" % hard)
        # The test itself holds STREAMS client sockets.
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                    else 65536, hard))
        # Tokens 100 ms apart, 10 per stream: every stream stays open ~1 s,
        # so all of them are open at the same time.
        cls.sim = h.start_sim("--parallel", "1024", "--tokens-per-second", "0", "--ttft-ms", "0",
                              "--prompt-tps", "0", "--load-ms", "0", "--host-check", "off",
                              "--fault", "slow:100", test=cls)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(cls.tmp.cleanup)
        cfg = os.path.join(cls.tmp.name, "sollol.json")
        with open(cfg, "w") as f:
            json.dump({"listen": "127.0.0.1:0",
                       "nodes": [{"url": cls.sim.url, "max_concurrent": 1024}],
                       # every stream comes from this one address
                       "limits": {"max_connections_per_client": 0}}, f)
        # Lower the soft limit in the child only, then exec sollold.
        launcher = ("import resource, os, sys\n"
                    "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
                    "resource.setrlimit(resource.RLIMIT_NOFILE, (%d, hard))\n"
                    "os.execv(sys.argv[1], sys.argv[1:])\n" % SOFT)
        cls.sol = h.Proc([sys.executable, "-c", launcher, h.binary("sollold"), "--config", cfg,
                          "--log-level", "warn"], name="sollold")
        cls.addClassCleanup(cls.sol.close_checked)

    def test_soft_limit_raised_to_hard(self):
        soft, hard = open_files_limits(self.sol.popen.pid)
        self.assertGreater(soft, SOFT)
        self.assertEqual(soft, hard)

    def test_more_streams_than_the_old_soft_limit(self):
        body = json.dumps({"model": MODEL, "stream": True, "options": {"num_predict": 10},
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = (b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        sel = selectors.DefaultSelector()
        got = {}
        try:
            for _ in range(STREAMS):
                s = socket.create_connection((self.sol.host, self.sol.port), timeout=10)
                s.sendall(req)
                s.setblocking(False)
                got[s] = bytearray()
                sel.register(s, selectors.EVENT_READ)
            open_now = len(got)
            deadline = time.monotonic() + 60
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1):
                    s = key.fileobj
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        got[s] += data
                    else:
                        sel.unregister(s)
        finally:
            for s in got:
                s.close()
            sel.close()
        self.assertEqual(open_now, STREAMS)
        ok = 0
        for buf in got.values():
            text = bytes(buf)
            if text.startswith(b"HTTP/1.1 200") and text.count(b'"done":true') == 1 \
                    and text.endswith(b"0\r\n\r\n") and b'"error"' not in text:
                ok += 1
        self.assertEqual(ok, STREAMS, "streams completed in full")
        stats = h.sim_stats(self.sim.url)
        self.assertGreaterEqual(stats["max_in_flight"], SOFT, "streams were open at once")


if __name__ == "__main__":
    unittest.main()
