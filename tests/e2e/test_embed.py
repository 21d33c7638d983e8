"""End-to-end tests of distributed embedding batches (issue "Distributed
embedding batches"): a large /api/embed split across nodes and merged back in
input order, small batches left alone, a failed chunk retried alone, and the
batch-job API (/api/batch/...).

Run: python3 -B tests/e2e/test_embed.py (SOLLOL_BUILD_DIR selects the build).
Timing assertions are loose: CI is a busy 2-core machine.
"""

import hashlib
import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "nomic-embed-text"
EMBED_MODEL = ("nomic-embed-text,embed,loaded",)
SIM_ARGS = ("--embed-per-second", "2000")
PROBES = ("--probe-interval", "300ms", "--tags-interval", "1s", "--probe-timeout", "1s")
BIG = 10000
JSON_UTF8 = "application/json; charset=utf-8"
EMBED_KEYS = {"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}


def texts(n, tag="doc"):
    # Different lengths and contents, so a shifted or swapped vector shows.
    return ["%s %d: %s" % (tag, i, hashlib.sha1(str(i).encode()).hexdigest()[: 5 + i % 30])
            for i in range(n)]


def start_daemon(test, sims, *extra):
    args = ["--listen", "127.0.0.1:0"]
    for name, sim in sims:
        args += ["--node", "%s=%s" % (name, sim.url)]
    args += list(PROBES) + [str(a) for a in extra]
    return h.start_process("sollold", args, test=test)


def embed_records(sim, since=None):
    return [r for r in h.sim_stats(sim.url, since)["requests"] if r["path"] == "/api/embed"]


def last_id(sim):
    recs = h.sim_stats(sim.url)["requests"]
    return recs[-1]["id"] if recs else 0


def idle(sims):
    return all(h.sim_stats(s.url)["in_flight"] == 0 for s in sims)


def wait_breakers_closed(daemon):
    """Tests that make every node fail open the breakers; a later test
    waits for the probes to close them again."""
    h.wait_until(lambda: all(n["breaker"]["state"] == "closed" and n["in_flight"] == 0
                             for n in h.get_json(daemon.url + "/api/stats")["nodes"]),
                 timeout=30, interval=0.1, msg="breakers closed")


class EmbedSplitTest(unittest.TestCase):
    """Three simulated nodes with the same embedding model."""

    @classmethod
    def setUpClass(cls):
        cls.sims = {n: h.start_sim("--name", n, *SIM_ARGS, models=EMBED_MODEL, test=cls)
                    for n in ("a", "b", "c")}
        cls.d3 = start_daemon(cls, sorted(cls.sims.items()))
        cls.d1 = start_daemon(cls, [("a", cls.sims["a"])])
        cls.inputs = texts(BIG)
        # What one node answers for the whole batch (vectors depend only on
        # the model and the text, so every node agrees).
        r = h.post_json(cls.sims["b"].url + "/api/embed", {"model": MODEL, "input": cls.inputs},
                        timeout=120)
        assert r.status == 200, r
        cls.reference = r.json()

    def setUp(self):
        h.wait_until(lambda: idle(self.sims.values()), timeout=30, msg="simulators idle")
        wait_breakers_closed(self.d3)
        self.marks = {n: last_id(s) for n, s in self.sims.items()}

    def records(self, name):
        return embed_records(self.sims[name], self.marks[name])

    def embed(self, daemon, inputs, **extra):
        body = {"model": MODEL, "input": inputs}
        body.update(extra)
        t0 = time.monotonic()
        r = h.post_json(daemon.url + "/api/embed", body, timeout=180)
        return r, time.monotonic() - t0

    def assertSameAsOneNode(self, r, reference):
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(r.headers.get("content-type"), JSON_UTF8)
        got = r.json()
        self.assertEqual(set(got), EMBED_KEYS)
        self.assertEqual(list(got)[:2], ["model", "embeddings"], "Ollama's field order")
        self.assertEqual(got["model"], reference["model"])
        self.assertEqual(len(got["embeddings"]), len(reference["embeddings"]))
        for i, (a, b) in enumerate(zip(got["embeddings"], reference["embeddings"])):
            if a != b:
                self.fail("embedding %d differs: %r != %r" % (i, a[:3], b[:3]))
        # prompt_eval_count is the sum over chunks of the nodes' counts.
        self.assertGreater(got["prompt_eval_count"], 0)
        self.assertGreater(got["total_duration"], 0)
        self.assertGreaterEqual(got["load_duration"], 0)
        return got

    def test_large_batch_split_in_order_and_faster(self):
        r, t3 = self.embed(self.d3, self.inputs)
        got = self.assertSameAsOneNode(r, self.reference)
        self.assertEqual(r.headers.get("x-sollol-node"), "*")
        self.assertLess(got["total_duration"], t3 * 1e9 + 1e9)
        served = {n: self.records(n) for n in self.sims}
        for name, recs in served.items():
            self.assertTrue(recs, "node %s got no chunk" % name)
            for rec in recs:
                self.assertEqual(rec["outcome"], "completed")
        # Each chunk is a slice of the same body: together about its size.
        total_body = sum(rec["body_len"] for recs in served.values() for rec in recs)
        self.assertLess(total_body, 1.2 * len(str(self.inputs)) + 100 * len(served))

        # The same over one node, for time: three nodes must clearly win.
        # Best of two on each side, so one hiccup of a busy machine does not
        # decide.
        r1, t1 = self.embed(self.d1, self.inputs)
        self.assertSameAsOneNode(r1, self.reference)
        r1b, t1b = self.embed(self.d1, self.inputs)
        self.assertEqual(r1b.status, 200)
        r3b, t3b = self.embed(self.d3, self.inputs)
        self.assertEqual(r3b.status, 200)
        one, three = min(t1, t1b), min(t3, t3b)
        print("\n10k inputs: 1 node %.3fs, 3 nodes %.3fs (ratio %.2f)" % (one, three, three / one),
              file=sys.stderr)
        self.assertLess(three, 0.8 * one, "3 nodes %.2fs vs 1 node %.2fs" % (three, one))

    def test_small_batch_not_split(self):
        body = {"model": MODEL, "input": texts(10, "small"), "truncate": True}
        raw = json.dumps(body).encode()
        r = h.post_json(self.d3.url + "/api/embed", raw,
                        headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(len(r.json()["embeddings"]), 10)
        node = r.headers.get("x-sollol-node")
        self.assertIn(node, self.sims)
        seen = {n: self.records(n) for n in self.sims}
        self.assertEqual(sum(len(v) for v in seen.values()), 1, seen)
        self.assertEqual(len(seen[node]), 1)
        self.assertEqual(seen[node][0]["body_fnv1a64"], h.fnv1a64(raw), "body forwarded unchanged")
        direct = h.post_json(self.sims["c"].url + "/api/embed", body).json()
        self.assertEqual(r.json()["embeddings"], direct["embeddings"])

        # A string input is never split, however long.
        self.marks = {n: last_id(s) for n, s in self.sims.items()}
        r = h.post_json(self.d3.url + "/api/embed", {"model": MODEL, "input": "x" * 100000})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(len(r.json()["embeddings"]), 1)
        self.assertEqual(sum(len(self.records(n)) for n in self.sims), 1)

        # Empty array: Ollama's own answer, from one node.
        r = h.post_json(self.d3.url + "/api/embed", {"model": MODEL, "input": []})
        self.assertEqual((r.status, r.json()), (200, {"model": MODEL, "embeddings": []}))

    def test_split_keeps_other_fields(self):
        inputs = texts(300, "dims")
        body = {"model": MODEL, "input": inputs, "dimensions": 4, "truncate": True,
                "keep_alive": "10m", "options": {"temperature": 0}}
        r = h.post_json(self.d3.url + "/api/embed", body, timeout=60)
        self.assertEqual(r.status, 200, r.body[:300])
        ref = h.post_json(self.sims["a"].url + "/api/embed", body, timeout=60).json()
        self.assertEqual(r.json()["embeddings"], ref["embeddings"])
        self.assertTrue(all(len(v) == 4 for v in r.json()["embeddings"]))
        chunks = [rec for n in self.sims for rec in self.records(n)]
        self.assertGreater(len(chunks), 2, "300 inputs are split")

    def test_failed_chunk_retried_alone(self):
        h.sim_fault(self.sims["b"].url, "500", count=1, model=MODEL)
        try:
            r, _ = self.embed(self.d3, self.inputs)
            self.assertSameAsOneNode(r, self.reference)
            outcomes = {n: [rec["outcome"] for rec in self.records(n)] for n in self.sims}
            self.assertEqual(outcomes["b"].count("fault:500"), 1, outcomes)
            failed = sum(o.count("fault:500") for o in outcomes.values())
            completed = sum(o.count("completed") for o in outcomes.values())
            self.assertEqual(failed, 1)
            # One retry, not a redo: one more completed request than the
            # plan had chunks would mean more than the failed chunk was sent
            # again. The plan is 4 chunks per node here (4 free slots).
            self.assertEqual(completed, 12, outcomes)
        finally:
            h.sim_fault(self.sims["b"].url, "none")

    def test_chunk_that_cannot_be_served_fails_the_request(self):
        for s in self.sims.values():
            h.sim_fault(s.url, "503", model=MODEL)
        try:
            r, _ = self.embed(self.d3, texts(200, "fail"))
            self.assertEqual(r.status, 503, r.body[:300])
            self.assertEqual(r.headers.get("content-type"), JSON_UTF8)
            err = r.json()
            self.assertEqual(list(err), ["error"])
            self.assertIn("answered 503", err["error"])
            self.assertIn("server busy", err["error"])
        finally:
            for s in self.sims.values():
                h.sim_fault(s.url, "none")
        # The breakers the failures opened close again on their own.
        h.wait_until(lambda: self.embed(self.d3, texts(100, "after"))[0].status == 200,
                     timeout=30, interval=0.3, msg="embedding works again")


class BatchApiTest(unittest.TestCase):
    """The batch-job API on top of the same split."""

    @classmethod
    def setUpClass(cls):
        cls.sims = {n: h.start_sim("--name", n, *SIM_ARGS, models=EMBED_MODEL, test=cls)
                    for n in ("a", "b", "c")}
        cls.d = start_daemon(cls, sorted(cls.sims.items()))

    def setUp(self):
        wait_breakers_closed(self.d)

    def tearDown(self):
        for s in self.sims.values():
            h.sim_fault(s.url, "none")

    def job(self, job_id):
        return h.request("GET", self.d.url + "/api/batch/jobs/" + job_id)

    def submit(self, inputs, daemon=None, **extra):
        body = {"model": MODEL, "input": inputs}
        body.update(extra)
        return h.post_json((daemon or self.d).url + "/api/batch/embed", body, timeout=60)

    def wait_status(self, job_id, statuses, timeout=90):
        def done():
            r = self.job(job_id)
            self.assertEqual(r.status, 200, r.body)
            return r.json() if r.json()["status"] in statuses else None
        return h.wait_until(done, timeout=timeout, interval=0.05,
                            msg="job %s in %s" % (job_id, statuses))

    def test_submit_poll_results_delete(self):
        inputs = texts(3000, "job")
        r = self.submit(inputs, dimensions=6)
        self.assertEqual(r.status, 202, r.body)
        sub = r.json()
        self.assertEqual(set(sub), {"job_id", "status", "total"})
        self.assertIn(sub["status"], ("queued", "running"))
        self.assertEqual(sub["total"], 3000)
        job_id = sub["job_id"]
        self.assertEqual(r.headers.get("location"), "/api/batch/jobs/" + job_id)

        st = self.wait_status(job_id, ("completed", "failed"))
        self.assertEqual(st["status"], "completed", st)
        self.assertEqual((st["done"], st["total"]), (3000, 3000))
        self.assertEqual(st["model"], MODEL)
        self.assertIsNone(st["error"])
        for k in ("created_at", "started_at", "finished_at", "expires_at"):
            self.assertRegex(st[k], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", k)
        self.assertLessEqual(st["created_at"], st["started_at"])
        self.assertLessEqual(st["started_at"], st["finished_at"])

        res = h.request("GET", self.d.url + "/api/batch/results/" + job_id, timeout=60)
        self.assertEqual(res.status, 200, res.body[:300])
        self.assertEqual(res.headers.get("content-type"), JSON_UTF8)
        got = res.json()
        self.assertEqual(set(got), EMBED_KEYS)
        direct = h.post_json(self.d.url + "/api/embed",
                             {"model": MODEL, "input": inputs, "dimensions": 6}, timeout=60)
        self.assertEqual(direct.status, 200)
        self.assertEqual(got["model"], direct.json()["model"])
        self.assertEqual(got["embeddings"], direct.json()["embeddings"])
        self.assertTrue(all(len(v) == 6 for v in got["embeddings"]))

        listed = h.get_json(self.d.url + "/api/batch/jobs")["jobs"]
        self.assertIn(job_id, [j["job_id"] for j in listed])

        r = h.request("DELETE", self.d.url + "/api/batch/jobs/" + job_id)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json(), {"job_id": job_id, "status": "deleted"})
        for path in ("/api/batch/jobs/", "/api/batch/results/"):
            r = h.request("GET", self.d.url + path + job_id)
            self.assertEqual(r.status, 404, (path, r.body))
            self.assertEqual(r.json(), {"error": "batch job '%s' not found" % job_id})
        r = h.request("DELETE", self.d.url + "/api/batch/jobs/" + job_id)
        self.assertEqual(r.status, 404)
        self.assertNotIn(job_id, [j["job_id"] for j in
                                  h.get_json(self.d.url + "/api/batch/jobs")["jobs"]])

    def test_cancel_running_job(self):
        # Nodes that never answer: the job stays running until cancelled.
        for s in self.sims.values():
            h.sim_fault(s.url, "hang", model=MODEL)
        r = self.submit(texts(500, "hang"))
        self.assertEqual(r.status, 202, r.body)
        job_id = r.json()["job_id"]
        st = self.wait_status(job_id, ("running",), timeout=10)
        self.assertEqual(st["done"], 0)
        h.wait_until(lambda: sum(h.sim_stats(s.url)["in_flight"] for s in self.sims.values()) > 0,
                     timeout=10, msg="chunks reach the nodes")
        res = h.request("GET", self.d.url + "/api/batch/results/" + job_id)
        self.assertEqual(res.status, 409, res.body)
        self.assertIn("is running", res.json()["error"])

        r = h.request("DELETE", self.d.url + "/api/batch/jobs/" + job_id)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["status"], "cancelled")
        # The transfers are cancelled: the nodes see their clients go.
        h.wait_until(lambda: idle(self.sims.values()), timeout=10,
                     msg="nodes see the chunks cancelled")
        self.assertEqual(self.job(job_id).json()["status"], "cancelled")
        res = h.request("GET", self.d.url + "/api/batch/results/" + job_id)
        self.assertEqual(res.status, 409)
        self.assertIn("cancelled", res.json()["error"])
        # A second DELETE removes it.
        self.assertEqual(h.request("DELETE", self.d.url + "/api/batch/jobs/" + job_id).status, 200)
        self.assertEqual(self.job(job_id).status, 404)
        # The slots came back: the daemon still serves embeddings.
        for s in self.sims.values():
            h.sim_fault(s.url, "none")
        r = h.post_json(self.d.url + "/api/embed", {"model": MODEL, "input": texts(200)},
                        timeout=60)
        self.assertEqual(r.status, 200, r.body[:300])
        stats = h.get_json(self.d.url + "/api/stats")["nodes"]
        self.assertEqual([n["in_flight"] for n in stats], [0, 0, 0])

    def test_failed_job(self):
        for s in self.sims.values():
            h.sim_fault(s.url, "500", model=MODEL)
        r = self.submit(texts(100, "doomed"))
        self.assertEqual(r.status, 202, r.body)
        job_id = r.json()["job_id"]
        st = self.wait_status(job_id, ("completed", "failed"), timeout=30)
        self.assertEqual(st["status"], "failed")
        self.assertIn("answered 500", st["error"])
        res = h.request("GET", self.d.url + "/api/batch/results/" + job_id)
        self.assertEqual(res.status, 409)
        self.assertIn("failed", res.json()["error"])
        self.assertEqual(h.request("DELETE", self.d.url + "/api/batch/jobs/" + job_id).status, 200)

    def test_bad_submissions(self):
        cases = [({"model": MODEL, "input": "one string"}, 400, "array of strings"),
                 ({"model": MODEL, "input": ["a", 1]}, 400, "array of strings"),
                 ({"model": MODEL, "input": []}, 400, "empty"),
                 ({"model": MODEL}, 400, "array of strings"),
                 ({"input": ["a"]}, 400, "model is required"),
                 ({"model": "nope:1b", "input": ["a"]}, 404, "not found on any node")]
        for body, status, msg in cases:
            with self.subTest(body=body):
                r = h.post_json(self.d.url + "/api/batch/embed", body)
                self.assertEqual(r.status, status, r.body)
                self.assertIn(msg, r.json()["error"])
        r = h.request("GET", self.d.url + "/api/batch/embed")
        self.assertEqual(r.status, 405)
        r = h.request("GET", self.d.url + "/api/batch/jobs/nope")
        self.assertEqual((r.status, r.json()), (404, {"error": "batch job 'nope' not found"}))
        r = h.request("POST", self.d.url + "/api/batch/jobs/nope", body=b"{}")
        self.assertEqual(r.status, 405)

    def test_shutdown_with_work_in_flight(self):
        """SIGTERM while a job and a split request are running: the client
        gets an error, the daemon exits 0 and (ASan build) frees everything."""
        # No grace period: SIGTERM cuts what runs (test_ops.py covers the
        # graceful path, where it would finish first).
        d = start_daemon(None, sorted(self.sims.items()), "--shutdown-grace", "0")
        try:
            for s in self.sims.values():
                h.sim_fault(s.url, "hang", model=MODEL)
            self.assertEqual(self.submit(texts(400, "late"), daemon=d).status, 202)
            self.assertEqual(self.submit(texts(400, "queued"), daemon=d).status, 202)
            out = {}

            def client():
                out["r"] = h.post_json(d.url + "/api/embed",
                                       {"model": MODEL, "input": texts(300, "cut")}, timeout=30)

            t = threading.Thread(target=client, daemon=True)
            t.start()
            # The job holds 3 slots per node (one is left to other traffic),
            # the request's split the last one: 12 chunks hang on the nodes.
            h.wait_until(lambda: sum(h.sim_stats(s.url)["in_flight"]
                                     for s in self.sims.values()) >= 12,
                         timeout=10, msg="job and split request in flight")
        finally:
            d.close_checked()
        t.join(10)
        self.assertEqual(out["r"].status, 503, out["r"].body)
        self.assertIn("shutting down", out["r"].json()["error"])
        h.wait_until(lambda: idle(self.sims.values()), timeout=10, msg="nodes see cancels")

    def test_job_bound(self):
        d = start_daemon(self, sorted(self.sims.items()))
        accepted, refused = [], None
        for i in range(80):
            r = self.submit(["bound %d" % i], daemon=d)
            if r.status != 202:
                refused = r
                break
            accepted.append(r.json()["job_id"])
        self.assertIsNotNone(refused, "no bound on jobs")
        self.assertEqual(len(accepted), 64)
        self.assertEqual(refused.status, 503, refused.body)
        self.assertIn("too many batch jobs", refused.json()["error"])
        self.assertEqual(refused.headers.get("retry-after"), "1")
        # Deleting a finished job makes room again.
        h.wait_until(lambda: all(j["status"] == "completed" for j in
                                 h.get_json(d.url + "/api/batch/jobs")["jobs"]),
                     timeout=60, interval=0.1, msg="all small jobs completed")
        self.assertEqual(h.request("DELETE", d.url + "/api/batch/jobs/" + accepted[0]).status, 200)
        self.assertEqual(self.submit(["one more"], daemon=d).status, 202)


if __name__ == "__main__":
    unittest.main(verbosity=2)
