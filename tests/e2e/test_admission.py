"""End-to-end tests of admission (issue "queue, fairness, affinity"): per-node
slots that the daemon never exceeds, a queue instead of rejections, priority
that overtakes, the queue's bounds, and conversations that return to the
node holding their prefix.

Run: python3 -B tests/e2e/test_admission.py (SOLLOL_BUILD_DIR selects the build).
Timing assertions are loose: CI is a busy 2-core machine.
"""

import json
import os
import selectors
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"
FAST_PROBES = ["--probe-interval", "200ms", "--tags-interval", "500ms", "--probe-timeout", "500ms"]


def start_daemon(test, nodes, *extra, max_concurrent=2):
    """sollold over ``nodes`` [(name, url)], each with ``max_concurrent``
    slots (a per-node key: only the config file sets it)."""
    cfg = {"nodes": [{"name": n, "url": u, "max_concurrent": max_concurrent} for n, u in nodes]}
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(cfg, f)
    f.close()
    test.addCleanup(os.unlink, f.name)
    args = ["--config", f.name, "--listen", "127.0.0.1:0"] + FAST_PROBES + [str(a) for a in extra]
    return h.start_process("sollold", args, test=test)


def chat(content, n=4, **kw):
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": False,
            "options": {"num_predict": n}}
    body.update(kw)
    return body


def stats(d):
    return h.get_json(d.url + "/api/stats")


class SlotsTest(unittest.TestCase):
    def test_burst_never_exceeds_slots_and_all_complete(self):
        # The sims would take 8 at once; the daemon allows each 2.
        sims = [h.start_sim("--parallel", "8", "--tokens-per-second", "100",
                            models=(MODEL + ",loaded",), test=self) for _ in range(2)]
        d = start_daemon(self, [("a", sims[0].url), ("b", sims[1].url)], max_concurrent=2)
        results = [None] * 200

        def one(i):
            r = h.request("POST", d.url + "/api/chat", chat("burst %d" % i, n=3), timeout=120)
            results[i] = (r.status, r.headers.get("x-sollol-queue-ms"), r.headers.get("x-sollol-node"))

        h.run_parallel([lambda i=i: one(i) for i in range(200)], timeout=180)
        self.assertEqual([r[0] for r in results], [200] * 200)
        for s in sims:
            st = h.sim_stats(s.url)
            # max_in_flight would also count the daemon's probes; the
            # model's slot occupancy is what the node computed at once.
            self.assertLessEqual(st["max_active_per_model"][MODEL], 2,
                                 "a node ran more than its slots")
            self.assertGreater(st["requests_total"], 20, "both nodes should share the burst")
        waited = [int(r[1]) for r in results if r[1] is not None]
        self.assertEqual(len(waited), 200, "every routed answer carries X-Sollol-Queue-Ms")
        self.assertGreater(max(waited), 0, "a burst beyond all slots must have queued")
        q = stats(d)["queue"]
        self.assertEqual(q["length"], 0)
        self.assertEqual(q["enqueued_total"], 200)
        self.assertEqual(q["rejected_total"], 0)


class OrderTest(unittest.TestCase):
    """One node, one slot, a slow node: what waits, waits in order."""

    def setUp(self):
        self.sim = h.start_sim("--tokens-per-second", "20", models=(MODEL + ",loaded",), test=self)

    def occupy(self, d, n=20):
        """Starts a request that holds the only slot for ~n/20 s."""
        t = threading.Thread(target=lambda: h.request("POST", d.url + "/api/chat",
                                                      chat("occupy", n=n), timeout=60))
        t.start()
        h.wait_until(lambda: h.sim_stats(self.sim.url)["in_flight"] == 1, timeout=5,
                     msg="slot taken")
        return t

    def test_priority_overtakes(self):
        d = start_daemon(self, [("only", self.sim.url)], max_concurrent=1)
        h.sim_reset(self.sim.url)
        blocker = self.occupy(d)
        done = []
        lock = threading.Lock()

        def send(tag, prio, header):
            body = chat(tag, n=2)
            headers = {}
            if header:
                headers["X-Sollol-Priority"] = str(prio)
            else:
                body["priority"] = prio
            r = h.request("POST", d.url + "/api/chat", body, headers=headers, timeout=60)
            with lock:
                done.append((tag, r.status))

        threads = []
        for i in range(3):
            threads.append(threading.Thread(target=send, args=("low%d" % i, 1, i % 2 == 0)))
            threads[-1].start()
            h.wait_until(lambda k=i: stats(d)["queue"]["length"] == k + 1, timeout=5,
                         msg="queued")
        threads.append(threading.Thread(target=send, args=("high", 9, True)))
        threads[-1].start()
        h.wait_until(lambda: stats(d)["queue"]["length"] == 4, timeout=5, msg="queued")
        for t in threads + [blocker]:
            t.join(60)
        order = [rec for rec in h.sim_stats(self.sim.url)["requests"]
                 if rec["path"] == "/api/chat"]
        received = [json.dumps(rec) for rec in order]
        self.assertEqual(len(order), 5, received)
        # What the node received, in order: the blocker, then the priority-9
        # request that came last, then the priority-1 ones in arrival order.
        self.assertTrue(all(s == 200 for _, s in done), done)
        firsts = [rec["received_ms"] for rec in order]
        self.assertEqual(firsts, sorted(firsts))
        self.assertEqual([tag for tag, _ in done][0], "high",
                         "the priority-9 request should finish first: %s" % done)
        self.assertEqual([tag for tag, _ in done][1:], ["low0", "low1", "low2"])

    def test_queue_full_and_wait_timeout(self):
        d = start_daemon(self, [("only", self.sim.url)], "--queue-max", "2", "--queue-wait",
                         "800ms", max_concurrent=1)
        blocker = self.occupy(d, n=60)  # ~3 s
        results = {}

        def send(tag):
            r = h.request("POST", d.url + "/api/chat", chat(tag, n=1), timeout=30)
            results[tag] = r

        waiting = [threading.Thread(target=send, args=("w%d" % i,)) for i in range(2)]
        for t in waiting:
            t.start()
        h.wait_until(lambda: stats(d)["queue"]["length"] == 2, timeout=5, msg="two queued")
        r = h.request("POST", d.url + "/api/chat", chat("over", n=1), timeout=30)
        self.assertEqual(r.status, 503, r.body)
        self.assertEqual(r.json()["error"], "server busy: queue full (2 requests waiting)")
        self.assertTrue(r.headers.get("retry-after"))
        for t in waiting:
            t.join(30)
        for tag in ("w0", "w1"):
            rr = results[tag]
            self.assertEqual(rr.status, 503, rr.body)
            self.assertEqual(rr.json()["error"], "timed out waiting for a node")
            self.assertTrue(rr.headers.get("retry-after"))
            self.assertGreaterEqual(int(rr.headers.get("x-sollol-queue-ms")), 700)
        blocker.join(30)
        q = stats(d)["queue"]
        self.assertEqual((q["expired_total"], q["rejected_total"], q["length"]), (2, 1, 0))
        # Neither timed-out request ever reached the node.
        self.assertEqual(sum(1 for rec in h.sim_stats(self.sim.url)["requests"]
                             if rec["path"] == "/api/chat"), 1)

    def test_disconnect_while_queued(self):
        d = start_daemon(self, [("only", self.sim.url)], max_concurrent=1)
        h.sim_reset(self.sim.url)
        blocker = self.occupy(d, n=40)
        s = h.raw_connect(d.host, d.port)
        data = json.dumps(chat("leaving", n=1)).encode()
        s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        h.wait_until(lambda: stats(d)["queue"]["length"] == 1, timeout=5, msg="queued")
        s.close()
        t0 = time.monotonic()
        h.wait_until(lambda: stats(d)["queue"]["length"] == 0, timeout=1.0,
                     msg="removed from the queue at once")
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(stats(d)["queue"]["removed_total"], 1)
        blocker.join(30)
        self.assertEqual(sum(1 for rec in h.sim_stats(self.sim.url)["requests"]
                             if rec["path"] == "/api/chat"), 1, "the node never saw it")

    def test_bad_priority(self):
        d = start_daemon(self, [("only", self.sim.url)])
        r = h.request("POST", d.url + "/api/chat", chat("x"), headers={"X-Sollol-Priority": "11"})
        self.assertEqual(r.status, 400)
        self.assertIn("X-Sollol-Priority", r.json()["error"])
        body = chat("x")
        body["priority"] = "high"
        r = h.request("POST", d.url + "/api/chat", body)
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"], "priority must be an integer from 1 to 10")


class AffinityTest(unittest.TestCase):
    def test_conversation_returns_to_its_node(self):
        # Identical nodes: nothing but affinity tells them apart.
        sims = [h.start_sim("--tokens-per-second", "200", "--prompt-tps", "200",
                            models=(MODEL + ",loaded",), test=self) for _ in range(3)]
        # Defaults equal to the nodes' real speeds: a measured node must not
        # look faster than the unmeasured ones, so only affinity decides.
        d = start_daemon(self, [("n%d" % i, s.url) for i, s in enumerate(sims)],
                         "--default-gen-tps", "200", "--default-prompt-tps", "200",
                         max_concurrent=4)
        by_url = {"n%d" % i: s.url for i, s in enumerate(sims)}
        homes = set()
        for conv in range(6):
            messages = [{"role": "system", "content": "You are conversation %d. " % conv * 20}]
            node = None
            for turn in range(3):
                messages.append({"role": "user", "content": "question %d of chat %d" % (turn, conv)})
                body = {"model": MODEL, "messages": messages, "stream": False,
                        "options": {"num_predict": 3}}
                r = h.request("POST", d.url + "/api/chat", body)
                self.assertEqual(r.status, 200, r.body)
                served = r.headers.get("x-sollol-node")
                if node is None:
                    node = served
                    homes.add(node)
                else:
                    self.assertEqual(served, node, "turn %d of chat %d moved" % (turn, conv))
                    rec = [x for x in h.sim_stats(by_url[served])["requests"]
                           if x["path"] == "/api/chat"][-1]
                    self.assertGreater(rec["cached_prompt_tokens"], 0,
                                       "the node's prompt cache should have served the prefix")
                    self.assertLess(r.json()["prompt_eval_duration"],
                                    first_prompt_ns, "cached prompt evaluation is faster")
                if turn == 0:
                    first_prompt_ns = r.json()["prompt_eval_duration"]
                messages.append(r.json()["message"])
        self.assertGreater(len(homes), 1, "rendezvous should spread conversations over nodes")
        a = stats(d)["affinity"]
        self.assertGreaterEqual(a["hits"], 12)

    def test_session_header(self):
        sims = [h.start_sim(models=(MODEL + ",loaded",), test=self) for _ in range(3)]
        d = start_daemon(self, [("n%d" % i, s.url) for i, s in enumerate(sims)])
        for session in ("alice", "bob", "carol"):
            nodes = {h.request("POST", d.url + "/api/chat", chat("turn %d" % i),
                               headers={"X-Sollol-Session": session}).headers.get("x-sollol-node")
                     for i in range(4)}
            self.assertEqual(len(nodes), 1, "session %s moved between %s" % (session, nodes))


class SpikeMemoryTest(unittest.TestCase):
    """After a spike of open streams the daemon gives the memory they freed
    back to the system (daemon.c: malloc_trim once the requests in flight
    fall to a quarter of a peak of 256 or more); without it glibc keeps the
    whole spike resident. 400 streams, so every node slot is configured."""

    STREAMS = 400

    def test_memory_returned_after_spike(self):
        # glibc's allocator only: ASan's and valgrind's replace it
        cache = os.path.join(h.build_dir(), "CMakeCache.txt")
        if os.environ.get("SOLLOL_WRAP") or (
                os.path.exists(cache) and "SOLLOL_SANITIZE:BOOL=ON" in open(cache).read()):
            self.skipTest("sollold does not use glibc's malloc in this build")
        sim = h.start_sim("--tokens-per-second", "4", "--ttft-ms", "0", "--prompt-tps", "0",
                          "--parallel", "1024", test=self)
        d = start_daemon(self, [("a", sim.url)], "--max-connections-per-client", "0",
                         "--max-upstream", "1024", max_concurrent=1024)
        before = h.rss_bytes(d.popen.pid)
        body = json.dumps({"model": MODEL, "prompt": "hi", "options": {"num_predict": 8}})
        req = ("POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode()
        sel = selectors.DefaultSelector()
        self.addCleanup(sel.close)
        got = {}
        for _ in range(self.STREAMS):
            s = h.raw_connect(d.host, d.port)
            self.addCleanup(s.close)
            s.sendall(req)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            got[s] = b""
        h.wait_until(lambda: h.get_json(d.url + "/api/stats")["requests_live"] >= self.STREAMS,
                     timeout=h.scaled(20), msg="every stream in flight")
        peak = h.rss_bytes(d.popen.pid)
        deadline = time.monotonic() + h.scaled(60)
        open_socks = set(got)
        while open_socks and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1.0):
                data = key.fileobj.recv(65536)
                if data:
                    got[key.fileobj] += data
                else:
                    sel.unregister(key.fileobj)
                    open_socks.discard(key.fileobj)
        self.assertEqual(len(open_socks), 0, "streams that did not end")
        for raw in got.values():
            self.assertIn(b" 200 ", raw.split(b"\r\n", 1)[0])
            self.assertIn(b'"done":true', raw)
        h.wait_until(lambda: "returned freed memory" in d.stderr_text(), timeout=h.scaled(10),
                     msg="the daemon's trim after the spike")
        after = h.rss_bytes(d.popen.pid)
        self.assertGreater(peak - before, 4 << 20, "the spike should have grown the daemon")
        # Not all of it: spare easy handles and idle node connections stay
        # (400 streams: 8.7 MiB grown, 3 MiB returned; without the trim
        # nothing is).
        self.assertGreater(peak - after, (peak - before) / 5,
                           "RSS %.1f MiB before, %.1f at the peak, %.1f after"
                           % (before / 2**20, peak / 2**20, after / 2**20))

if __name__ == "__main__":
    unittest.main()
