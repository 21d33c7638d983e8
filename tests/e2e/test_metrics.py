"""End-to-end tests of GET /metrics (Prometheus text exposition format 0.0.4).

Two simulated nodes behind sollold; a known mix of requests (chats that
succeed, chats for a model no node has, a body that is not JSON); then one
scrape, validated line by line with a strict parser of the text format
written here, and its counts compared with what was sent. Prometheus's own
linter, `promtool check metrics` (Debian package `prometheus`, which
tests/run installs), must accept the scrape too: without it that part is
skipped with a message, and fails in CI (CI=true).

Run: python3 -B tests/e2e/test_metrics.py (SOLLOL_BUILD_DIR selects the build).
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"
FAST_PROBES = ["--probe-interval", "200ms", "--tags-interval", "500ms", "--probe-timeout", "500ms"]

CT = "text/plain; version=0.0.4; charset=utf-8"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf|inf)\Z")


class FormatError(AssertionError):
    pass


def parse_value(text, where):
    if text in ("NaN", "+Inf", "-Inf"):
        return float(text.replace("Inf", "inf"))
    if not FLOAT.match(text):
        raise FormatError("%s: bad value %r" % (where, text))
    return float(text)


def parse_labels(s, i, where):
    """Parses `{name="value",...}` starting at s[i] == '{'. Returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(s, i)
        if not m:
            raise FormatError("%s: bad label name at %d" % (where, i))
        name = m.group(0)
        i = m.end()
        if not s.startswith('="', i):
            raise FormatError("%s: expected =\" after label %s" % (where, name))
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise FormatError("%s: unterminated label value" % where)
            c = s[i]
            if c == "\\":
                if i + 1 >= len(s) or s[i + 1] not in '\\"n':
                    raise FormatError("%s: bad escape in label value" % where)
                val.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise FormatError("%s: raw newline in label value" % where)
            else:
                val.append(c)
                i += 1
        if name in labels:
            raise FormatError("%s: label %s repeated" % (where, name))
        if name.startswith("__"):
            raise FormatError("%s: reserved label name %s" % (where, name))
        labels[name] = "".join(val)
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        raise FormatError("%s: expected , or } in labels" % where)


def family_of(name, types):
    """The declared family a sample name belongs to."""
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if types.get(base) in ("histogram", "summary"):
                if suffix == "_bucket" and types[base] != "histogram":
                    continue
                return base
    return None


def parse_exposition(text):
    """Strict parse of the text format. Returns (types, helps, samples) with
    samples a list of (name, labels dict, value). Raises FormatError."""
    if not text.endswith("\n"):
        raise FormatError("exposition does not end with a newline")
    types, helps, samples = {}, {}, []
    seen_series = set()
    closed = set()  # families whose samples ended (no interleaving)
    current = None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d %r" % (n, line[:120])
        if line == "":
            raise FormatError("%s: empty line" % where)
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not METRIC_NAME.match(parts[2]):
                    raise FormatError("%s: bad metric name" % where)
                name = parts[2]
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise FormatError("%s: bad type" % where)
                    if name in types:
                        raise FormatError("%s: second TYPE for %s" % (where, name))
                    if any(family_of(s[0], {name: parts[3]}) == name for s in samples):
                        raise FormatError("%s: TYPE after samples of %s" % (where, name))
                    types[name] = parts[3]
                else:
                    if name in helps:
                        raise FormatError("%s: second HELP for %s" % (where, name))
                    helps[name] = parts[3] if len(parts) == 4 else ""
                    if re.search(r"\\[^\\n]", helps[name]):
                        raise FormatError("%s: bad escape in HELP" % where)
                continue
            continue  # other comments are allowed
        m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(line)
        if not m:
            raise FormatError("%s: bad metric name" % where)
        name = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i, where)
        rest = line[i:]
        if not rest.startswith(" "):
            raise FormatError("%s: expected a space before the value" % where)
        fields = rest[1:].split(" ")
        if len(fields) not in (1, 2):
            raise FormatError("%s: bad value/timestamp" % where)
        value = parse_value(fields[0], where)
        if len(fields) == 2 and not re.match(r"-?\d+\Z", fields[1]):
            raise FormatError("%s: bad timestamp" % where)
        fam = family_of(name, types)
        if fam is None:
            raise FormatError("%s: sample of %s before its TYPE line" % (where, name))
        if fam != current:
            if fam in closed:
                raise FormatError("%s: samples of %s are not together" % (where, fam))
            if current:
                closed.add(current)
            current = fam
        if types[fam] == "histogram" and name == fam:
            raise FormatError("%s: bare sample of histogram %s" % (where, fam))
        if name.endswith("_bucket") and types[fam] == "histogram" and "le" not in labels:
            raise FormatError("%s: bucket without le" % where)
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise FormatError("%s: duplicate series" % where)
        seen_series.add(key)
        if types[fam] == "counter" and (value < 0 or math.isnan(value)):
            raise FormatError("%s: counter with value %r" % (where, value))
        samples.append((name, labels, value))
    for fam, typ in types.items():
        if fam not in helps:
            raise FormatError("family %s has no HELP" % fam)
        if typ == "histogram":
            check_histogram(fam, samples)
    return types, helps, samples


def check_histogram(fam, samples):
    """Buckets cumulative, in increasing le, ending in +Inf == _count."""
    groups = {}
    for name, labels, value in samples:
        base = {k: v for k, v in labels.items() if k != "le"}
        key = tuple(sorted(base.items()))
        g = groups.setdefault(key, {"buckets": [], "count": None, "sum": None})
        if name == fam + "_bucket":
            g["buckets"].append((parse_value(labels["le"], fam + " le"), value))
        elif name == fam + "_count":
            g["count"] = value
        elif name == fam + "_sum":
            g["sum"] = value
    for key, g in groups.items():
        if not g["buckets"] and g["count"] is None:
            continue
        where = "%s%s" % (fam, dict(key))
        les = [b[0] for b in g["buckets"]]
        if les != sorted(les) or len(set(les)) != len(les):
            raise FormatError("%s: le not increasing" % where)
        if not les or les[-1] != float("inf"):
            raise FormatError("%s: last bucket is not +Inf" % where)
        counts = [b[1] for b in g["buckets"]]
        if any(b < a for a, b in zip(counts, counts[1:])):
            raise FormatError("%s: buckets not cumulative: %r" % (where, counts))
        if g["count"] is None or g["sum"] is None:
            raise FormatError("%s: missing _count or _sum" % where)
        if counts[-1] != g["count"]:
            raise FormatError("%s: +Inf bucket %r != _count %r" % (where, counts[-1], g["count"]))


def pick(samples, name, **labels):
    return [(l, v) for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]


def total(samples, name, **labels):
    return sum(v for _, v in pick(samples, name, **labels))


class ParserSelfTest(unittest.TestCase):
    """The parser must reject what the format forbids, or the e2e check proves nothing."""

    GOOD = ('# HELP a_total A.\n# TYPE a_total counter\na_total{x="q\\"\\\\\\n"} 3\n'
            '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'
            'h_sum 3.5\nh_count 2\n')

    def test_good(self):
        types, _, samples = parse_exposition(self.GOOD)
        self.assertEqual(types, {"a_total": "counter", "h": "histogram"})
        self.assertEqual(samples[0][1], {"x": 'q"\\\n'})

    def test_rejects(self):
        bad = [
            "a 1\n",                                                 # no TYPE
            "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} one\n",         # bad value
            "# HELP a A.\n# TYPE a gauge\na{x=\"\\q\"} 1\n",         # bad escape
            "# HELP a A.\n# TYPE a gauge\na{1x=\"1\"} 1\n",          # bad label name
            "# HELP a A.\n# TYPE a gauge\na 1",                      # no final newline
            "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",               # duplicate series
            "# TYPE a gauge\na 1\n",                                 # no HELP
            "# HELP a A.\n# TYPE a wrong\na 1\n",                    # bad type
            self.GOOD.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="+Inf"} 0'),  # not cumulative
            self.GOOD.replace("h_count 2", "h_count 5"),             # +Inf != count
            self.GOOD.replace('h_bucket{le="+Inf"} 2\n', ""),        # no +Inf
        ]
        for text in bad:
            with self.assertRaises(FormatError, msg=repr(text)):
                parse_exposition(text)


def start_daemon(test, nodes):
    cfg = {"nodes": [{"name": n, "url": u} for n, u in nodes]}
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(cfg, f)
    f.close()
    test.addCleanup(os.unlink, f.name)
    args = ["--config", f.name, "--listen", "127.0.0.1:0"] + FAST_PROBES
    return h.start_process("sollold", args, test=test)


def chat(model, n=4, stream=False):
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": stream,
            "options": {"num_predict": n}}


class MetricsTest(unittest.TestCase):
    def test_scrape_after_known_mix(self):
        sims = [h.start_sim("--tokens-per-second", "0", models=(MODEL + ",loaded",), test=self)
                for _ in range(2)]
        # The config refuses quotes, backslashes and spaces in node names, so
        # escaping of node_a names is covered by tests/unit/test_metrics.c.
        node_a = "gpu-a"
        d = start_daemon(self, [(node_a, sims[0].url), ("b", sims[1].url)])

        before = h.request("GET", d.url + "/metrics")
        self.assertEqual(before.status, 200)
        _, _, s0 = parse_exposition(before.body.decode("utf-8"))
        self.assertEqual(total(s0, "sollol_requests_total"), 0, "nothing proxied yet")

        eval_counts = 0
        prompt_counts = 0
        for i in range(5):
            r = h.request("POST", d.url + "/api/chat", chat(MODEL, n=3 + i, stream=(i % 2 == 1)))
            self.assertEqual(r.status, 200, r.body)
            last = json.loads(r.body.decode().strip().split("\n")[-1])
            eval_counts += last.get("eval_count", 0)
            prompt_counts += last.get("prompt_eval_count", 0)
        # OpenAI shape: the tokens come from its usage object.
        r = h.request("POST", d.url + "/v1/chat/completions",
                      {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 5})
        self.assertEqual(r.status, 200, r.body)
        eval_counts += r.json()["usage"]["completion_tokens"]
        prompt_counts += r.json()["usage"]["prompt_tokens"]
        for _ in range(2):
            r = h.request("POST", d.url + "/api/chat", chat("no-such-model:7b"))
            self.assertEqual(r.status, 404, r.body)
        r = h.request("POST", d.url + "/api/chat", b"{not json",
                      headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400, r.body)

        # A request is recorded when its connection completes, which can be
        # a moment after the client read the last byte: scrape until all 8
        # are in (every scrape is validated), then check everything.
        deadline = time.monotonic() + 5
        while True:
            resp = h.request("GET", d.url + "/metrics")
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.headers.get("content-type"), CT)
            text = resp.body.decode("utf-8")
            types, helps, samples = parse_exposition(text)
            if (total(samples, "sollol_requests_total") >= 9 and
                    total(samples, "sollol_requests_in_flight") == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.05)

        # Every family the daemon promises, with its type.
        expected = {
            "sollol_requests_total": "counter",
            "sollol_request_duration_seconds": "histogram",
            "sollol_request_ttfb_seconds": "histogram",
            "sollol_request_ttft_seconds": "histogram",
            "sollol_request_failovers_total": "counter",
            "sollol_queue_wait_seconds": "histogram",
            "sollol_response_bytes_total": "counter",
            "sollol_request_retries_total": "counter",
            "sollol_generated_tokens_total": "counter",
            "sollol_prompt_tokens_total": "counter",
            "sollol_node_up": "gauge",
            "sollol_node_state": "gauge",
            "sollol_node_probe_rtt_seconds": "gauge",
            "sollol_node_breaker_state": "gauge",
            "sollol_node_breaker_opens_total": "counter",
            "sollol_node_in_flight": "gauge",
            "sollol_node_max_concurrent": "gauge",
            "sollol_node_attempts_total": "counter",
            "sollol_node_attempt_failures_total": "counter",
            "sollol_node_model_loaded": "gauge",
            "sollol_node_model_generate_tokens_per_second": "gauge",
            "sollol_node_model_prompt_tokens_per_second": "gauge",
            "sollol_build_info": "gauge",
            "sollol_uptime_seconds": "gauge",
            "sollol_requests_in_flight": "gauge",
            "sollol_retries_total": "counter",
            "sollol_queue_length": "gauge",
            "sollol_queue_oldest_wait_seconds": "gauge",
            "sollol_queue_enqueued_total": "counter",
            "sollol_queue_dispatched_total": "counter",
            "sollol_queue_expired_total": "counter",
            "sollol_queue_rejected_total": "counter",
            "sollol_queue_removed_total": "counter",
            "sollol_affinity_hits_total": "counter",
            "sollol_affinity_misses_total": "counter",
            "sollol_affinity_evictions_total": "counter",
            "sollol_affinity_entries": "gauge",
            "sollol_affinity_capacity": "gauge",
            "process_start_time_seconds": "gauge",
            "process_virtual_memory_bytes": "gauge",
            "process_resident_memory_bytes": "gauge",
            "process_open_fds": "gauge",
        }
        for name, typ in expected.items():
            self.assertEqual(types.get(name), typ, name)

        # Requests: exactly what was sent (the daemon's own traffic and the
        # scrapes are not proxied requests).
        req = pick(samples, "sollol_requests_total")
        self.assertEqual(total(samples, "sollol_requests_total"), 9, req)
        self.assertEqual(total(samples, "sollol_requests_total", route="/v1/chat/completions",
                               code="2xx", model="llama3.2:3b"), 1, req)
        self.assertEqual(total(samples, "sollol_requests_total", route="/api/chat", code="2xx",
                               model="llama3.2:3b"), 5, req)
        self.assertEqual(total(samples, "sollol_requests_total", route="/api/chat", code="4xx"),
                         3, req)
        # The unknown model is never a label value: it is "other".
        self.assertNotIn("no-such-model", text)
        self.assertEqual(total(samples, "sollol_requests_total", model="other", code="4xx"), 3)
        nodes_2xx = {l["node"] for l, v in pick(samples, "sollol_requests_total", code="2xx")}
        self.assertTrue(nodes_2xx <= {node_a, "b"}, nodes_2xx)
        self.assertEqual({l["node"] for l, _ in pick(samples, "sollol_requests_total", code="4xx")},
                         {"none"})
        for l, _ in req:
            self.assertEqual(set(l), {"route", "model", "node", "code"})

        # Histograms by route: every finished request, ttfb for the 5 proxied.
        self.assertEqual(total(samples, "sollol_request_duration_seconds_count",
                               route="/api/chat"), 8)
        self.assertEqual(total(samples, "sollol_request_ttfb_seconds_count", route="/api/chat"), 5)
        self.assertEqual(total(samples, "sollol_queue_wait_seconds_count"), 6)
        # TTFT: the two streamed chats only (arrival to first token).
        self.assertEqual(total(samples, "sollol_request_ttft_seconds_count", route="/api/chat"), 2)
        self.assertEqual(total(samples, "sollol_request_ttft_seconds_count"), 2)
        self.assertEqual(total(samples, "sollol_request_failovers_total"), 0)
        self.assertGreater(total(samples, "sollol_response_bytes_total", route="/api/chat"), 0)

        # Tokens: the sum of the nodes' final eval_count / prompt_eval_count.
        self.assertGreater(eval_counts, 0)
        self.assertEqual(total(samples, "sollol_generated_tokens_total"), eval_counts)
        self.assertEqual(total(samples, "sollol_prompt_tokens_total"), prompt_counts)
        self.assertEqual(total(samples, "sollol_generated_tokens_total", model="llama3.2:3b"),
                         eval_counts)

        # Nodes: both up, closed breakers, nothing in flight.
        for name in (node_a, "b"):
            self.assertEqual(total(samples, "sollol_node_up", node=name), 1)
            self.assertEqual(total(samples, "sollol_node_state", node=name, state="up"), 1)
            self.assertEqual(total(samples, "sollol_node_state", node=name, state="down"), 0)
            self.assertEqual(total(samples, "sollol_node_breaker_state", node=name), 0)
            self.assertEqual(total(samples, "sollol_node_in_flight", node=name), 0)
            self.assertGreater(total(samples, "sollol_node_probe_rtt_seconds", node=name), 0)
            self.assertEqual(total(samples, "sollol_node_model_loaded", node=name,
                                   model="llama3.2:3b"), 1)
        self.assertEqual(total(samples, "sollol_node_attempts_total"), 6)
        tps = pick(samples, "sollol_node_model_generate_tokens_per_second", model="llama3.2:3b")
        self.assertTrue(tps and all(v > 0 for _, v in tps), tps)

        # Daemon and process.
        self.assertEqual(total(samples, "sollol_retries_total"), 0)
        self.assertEqual(total(samples, "sollol_request_retries_total"), 0)
        self.assertEqual(total(samples, "sollol_queue_length"), 0)
        self.assertEqual(total(samples, "sollol_queue_rejected_total"), 0)
        self.assertEqual(total(samples, "sollol_queue_expired_total"), 0)
        self.assertEqual(total(samples, "sollol_requests_in_flight"), 0)
        self.assertGreater(total(samples, "sollol_uptime_seconds"), 0)
        self.assertGreater(total(samples, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(total(samples, "process_open_fds"), 3)
        self.assertGreater(total(samples, "process_start_time_seconds"), 1.5e9)
        self.assertEqual(len(pick(samples, "sollol_build_info")), 1)

        # Only GET.
        r = h.request("POST", d.url + "/metrics", b"")
        self.assertEqual(r.status, 405)

        self.promtool(text)
        self.check_docs(types)

    def check_docs(self, types):
        """docs/observability.md names every family the daemon exports, and the
        Grafana dashboard in docs/ is valid JSON whose queries use only
        families that exist."""
        with open(os.path.join(h.REPO_ROOT, "docs", "observability.md")) as f:
            doc = f.read()
        for fam in types:
            self.assertIn("`%s`" % fam, doc, "docs/observability.md does not list " + fam)
        with open(os.path.join(h.REPO_ROOT, "docs", "grafana-sollol.json")) as f:
            dash = json.load(f)
        exprs = []
        def walk(panels):
            for p in panels:
                walk(p.get("panels", []))
                exprs.extend(t["expr"] for t in p.get("targets", []) if "expr" in t)
        walk(dash["panels"])
        self.assertGreater(len(exprs), 20)
        used = set()
        for e in exprs:
            for name in re.findall(r"\b((?:sollol|process)_[a-z0-9_]+)", e):
                fam = re.sub(r"_(bucket|sum|count)$", "", name)
                fam = fam if fam in types else name
                if name.startswith(("sollol_rpc_", "sollol_coordinator_")):
                    # Exported only with a coordinator (none here): documented.
                    self.assertIn("`%s`" % name, doc, "Grafana query uses unknown " + name)
                    continue
                self.assertIn(fam, types, "Grafana query uses unknown metric %s: %s" % (name, e))
                used.add(fam)
        for must in ("sollol_requests_total", "sollol_request_ttft_seconds", "sollol_node_up",
                     "sollol_queue_length", "sollol_generated_tokens_total"):
            self.assertIn(must, used)

    def promtool(self, text):
        tool = shutil.which("promtool")
        if not tool:
            if os.environ.get("CI") == "true":
                self.fail("promtool not installed (Debian package 'prometheus'): CI runs it")
            print("promtool not installed (Debian package 'prometheus'): skipping "
                  "'promtool check metrics'", file=sys.stderr)
            return
        p = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True,
                           timeout=60)
        # Exit 0: parsed, and no lint finding (1 = parse error, 3 = lint).
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "promtool check metrics:\n" + out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
