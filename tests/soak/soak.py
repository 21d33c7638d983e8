#!/usr/bin/env python3
"""Soak test: sollold over three simulated nodes under continuous mixed
traffic while the nodes are killed, restarted, stalled and made to fail.

    tests/run --soak [SECONDS]                      # CI: 180 s
    python3 -B tests/soak/soak.py --duration 3600   # longer, by hand

Traffic (each kind in its own threads):
  - non-streamed generate/chat/embed requests over two generative models
    and one embedding model;
  - streamed generate/chat (NDJSON) and /v1/chat/completions (SSE); a
    quarter of these clients hang up after a few lines;
  - slowloris connections that trickle a request byte by byte;
  - malformed requests (bad JSON, wrong types, wrong methods, unknown
    routes, garbage request lines, bodies cut short).
Chaos: every 1-3 s one node is SIGKILLed (restarted on the same port a few
seconds later) or made to answer 500 / 503, stall streams, hang or refuse
connections for a few seconds. At most two nodes are impaired at a time, and
a node counts as impaired until a grace period after it recovered (so the
daemon's probes and breaker had time to see it back): at every moment at
least one node is healthy, so every non-streamed request can be served.

Asserted at the end (the run fails with a list of violations):
  - every non-streamed request succeeded (none lost to a retryable failure);
  - every stream that the client did not abandon either completed (its
    final done line / [DONE]) or ended with an error line;
  - every malformed request got a 4xx answer or was closed, never a 5xx;
  - the daemon's resident memory after the run is within 10% of its
    plateau (the largest RSS seen between 25% and 50% of the run);
  - its open descriptors return to the baseline taken before the traffic;
  - /api/version, probed every 20 ms from a separate process (so the
    load generator's threads cannot delay it), answers within
    --version-ms (10) at the 99th percentile; --strict-version applies the
    limit to the maximum too. The measured p50/p99/max are always printed.
  - the daemon exits 0 on SIGTERM without a sanitizer report.
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness as h  # noqa: E402

GEN_MODELS = ["llama3.2:3b", "qwen2.5:0.5b"]
EMBED_MODEL = "nomic-embed-text"
SIM_MODELS = ("llama3.2:3b,loaded", "qwen2.5:0.5b,loaded", "nomic-embed-text,embed")
SIM_ARGS = ["--tokens-per-second", "200", "--num-predict", "8", "--load-ms", "20",
            "--parallel", "4", "--log-level", "error"]
# Short timeouts so stalls and hangs are detected (and retried) within the
# run; a short breaker cooldown so recovered nodes come back quickly.
DAEMON_ARGS = ["--probe-interval", "500ms", "--tags-interval", "2s", "--probe-timeout", "2s",
               "--first-byte-timeout", "3s", "--idle-timeout", "3s", "--connect-timeout", "1s",
               "--breaker-cooldown-max", "3s", "--max-attempts", "3"]
GRACE_S = 6.0  # a recovered node counts as impaired this much longer


def log(msg):
    print("soak: %s" % msg, flush=True)


# --------------------------------------------------------------------------
# nodes and chaos


class Node:
    def __init__(self, name):
        self.name = name
        self.proc = h.start_sim("--name", name, *SIM_ARGS, models=SIM_MODELS)
        self.port = self.proc.port
        self.url = self.proc.url
        self.dead = False
        self.impaired_until = 0.0
        self.lock = threading.Lock()

    def kill(self):
        with self.lock:
            self.proc.popen.kill()
            self.proc.close()
            self.dead = True

    def restart(self):
        with self.lock:
            deadline = time.monotonic() + 15
            while True:
                try:
                    self.proc = h.start_sim("--name", self.name, *SIM_ARGS, models=SIM_MODELS,
                                            listen="127.0.0.1:%d" % self.port)
                    break
                except h.ProcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)  # the port may linger for a moment
            self.dead = False

    def fault(self, mode, scope="inference"):
        with self.lock:
            if self.dead:
                return
            if mode == "none":
                # SIGUSR1 clears any fault, even "refuse" (which would
                # refuse the /_sim/fault request itself).
                self.proc.signal(signal.SIGUSR1)
            else:
                h.sim_fault(self.url, mode, scope=scope)

    def stop(self):
        with self.lock:
            self.proc.close()


class Chaos(threading.Thread):
    FAULTS = ["kill", "500", "503", "stall", "hang", "refuse", "slow"]

    def __init__(self, nodes, stop, rng):
        super().__init__(daemon=True)
        self.nodes, self.stop_ev, self.rng = nodes, stop, rng
        self.pending = []  # (when, fn)
        self.counts = {f: 0 for f in self.FAULTS}
        self.error = None

    def run(self):
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e

    def _run(self):
        next_action = time.monotonic() + 2
        while not self.stop_ev.is_set():
            now = time.monotonic()
            for item in [p for p in self.pending if p[0] <= now]:
                self.pending.remove(item)
                item[1]()
            if now >= next_action:
                self.act(now)
                next_action = now + self.rng.uniform(1, 3)
            time.sleep(0.05)
        for _, fn in sorted(self.pending, key=lambda p: p[0]):
            fn()  # recover everything
        self.pending = []

    def act(self, now):
        healthy = [n for n in self.nodes if n.impaired_until < now]
        if len(healthy) < 2:
            return  # the last healthy node stays healthy
        node = self.rng.choice(healthy)
        what = self.rng.choice(self.FAULTS)
        length = self.rng.uniform(1, 4)
        self.counts[what] += 1
        if what == "slow":  # slower, but it still serves: not impaired
            node.fault("slow:15")
            self.pending.append((now + length, lambda: node.fault("none")))
            return
        node.impaired_until = now + length + GRACE_S
        if what == "kill":
            node.kill()
            self.pending.append((now + length, node.restart))
        else:
            mode = "stall:%d" % self.rng.randint(0, 4) if what == "stall" else what
            node.fault(mode, scope="all" if what == "refuse" else "inference")
            self.pending.append((now + length, lambda: node.fault("none")))


# --------------------------------------------------------------------------
# traffic


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.violations = []

    def count(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def violation(self, msg):
        with self.lock:
            self.violations.append("%.1fs %s" % (time.monotonic() - T0, msg))


T0 = time.monotonic()

# Which client kind opened each connection (local port -> thread name), so a
# connection the daemon fails to close can be traced to what the client did.
CLIENT_PORTS = {}
_create_connection = socket.create_connection


def _traced_create_connection(*args, **kwargs):
    s = _create_connection(*args, **kwargs)
    try:
        CLIENT_PORTS[s.getsockname()[1]] = threading.current_thread().name
    except OSError:
        pass
    return s


socket.create_connection = _traced_create_connection


def worker(fn, stop, res, rng, pace):
    def run():
        while not stop.is_set():
            time.sleep(rng.uniform(0, 2 * pace))
            try:
                fn(res, rng)
            except Exception as e:  # noqa: BLE001 - a client-side failure is a finding
                res.violation("%s: %s: %r" % (fn.__name__, type(e).__name__, e))
                time.sleep(0.2)
    t = threading.Thread(target=run, daemon=True, name=fn.__name__)
    t.start()
    return t


def non_streamed(url):
    def non_streamed_request(res, rng):
        kind = rng.choice(["generate", "chat", "embed"])
        if kind == "embed":
            body = {"model": EMBED_MODEL, "input": ["soak %d" % rng.randint(0, 999), "b", "c"]}
        elif kind == "chat":
            body = {"model": rng.choice(GEN_MODELS), "stream": False,
                    "messages": [{"role": "user", "content": "hi %d" % rng.randint(0, 99)}],
                    "options": {"num_predict": rng.randint(1, 8)}}
        else:
            body = {"model": rng.choice(GEN_MODELS), "stream": False, "prompt": "p",
                    "options": {"num_predict": rng.randint(1, 8)}}
        r = h.request("POST", url + "/api/" + kind, body, timeout=60)
        if r.status != 200:
            res.violation("non-streamed %s -> %d %r" % (kind, r.status, r.body[:200]))
            res.count("non_streamed_failed")
        else:
            json.loads(r.body)
            res.count("non_streamed_ok")
    return non_streamed_request


def streamed(url):
    def streamed_request(res, rng):
        route = rng.choice(["/api/generate", "/api/chat", "/v1/chat/completions"])
        model = rng.choice(GEN_MODELS)
        msgs = [{"role": "user", "content": "stream %d" % rng.randint(0, 99)}]
        if route == "/api/generate":
            body = {"model": model, "prompt": "p", "options": {"num_predict": 8}}
        elif route == "/api/chat":
            body = {"model": model, "messages": msgs, "options": {"num_predict": 8}}
        else:
            body = {"model": model, "messages": msgs, "stream": True, "max_tokens": 8}
        abandon = rng.random() < 0.25
        with h.open_stream("POST", url + route, body, timeout=60) as s:
            if s.status != 200:
                res.violation("stream %s -> %d %r" % (route, s.status, s.read_all()[:200]))
                res.count("stream_refused")
                return
            events = s.sse() if route.startswith("/v1/") else s.lines()
            n, last = 0, None
            for ev in events:
                n += 1
                last = ev
                if abandon and n >= 2:
                    res.count("stream_abandoned")
                    return  # the with block hangs up mid-stream
            if last is None:
                res.violation("stream %s: empty body" % route)
                return
            done = (last.raw == b"[DONE]") if route.startswith("/v1/") else \
                bool(last.json and last.json.get("done") is True)
            if done and not s.incomplete:
                res.count("stream_completed")
            elif last.json and "error" in last.json:
                res.count("stream_error_line")
            else:
                res.violation("stream %s ended without done or error line (last %r)"
                              % (route, last.raw[:120]))
                res.count("stream_broken")
    return streamed_request


def slowloris(host, port):
    def slowloris_connection(res, rng):
        try:
            s = socket.create_connection((host, port), timeout=5)
        except OSError as e:
            res.violation("slowloris connect: %r" % e)
            return
        head = b"POST /api/chat HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
        if rng.random() < 0.5:
            head += b"Content-Length: 1000\r\n\r\n{\"model\":"  # then trickles the body
        res.count("slowloris")
        end = time.monotonic() + rng.uniform(3, 15)
        try:
            s.sendall(head[:20])
            for b in head[20:] + b" " * 1000:
                if time.monotonic() > end:
                    break
                s.sendall(bytes([b]))
                time.sleep(0.5)
        except OSError:
            res.count("slowloris_cut")  # the daemon closed it: fine
        finally:
            s.close()
    return slowloris_connection


def _post(path, body):
    return (b"POST %s HTTP/1.1\r\nHost: s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
            % (path.encode(), len(body))) + body


MALFORMED = [  # (request, expected status or None = any 4xx or a closed connection)
    (_post("/api/chat", b"{bad}"), 400),
    (_post("/api/generate", b"[]"), 400),
    (_post("/api/chat", b'{"model":17}'), 400),
    (_post("/api/chat", b"{}"), 400),
    (_post("/api/generate", b'{"model":"m","model":"m"}'), 400),
    (_post("/api/chat", b'{"model":"\xff"}'), 400),
    (_post("/api/embed", b'{"model":"m","input":[1,'), 400),
    (b"GET /api/nothing HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n", 404),
    (b"DELETE /api/chat HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n", 405),
    (b"\x00\x01garbage\r\n\r\n", None),
    (b"GET / HTTP/1.1\r\nHost: s\r\nX-Big: " + b"a" * 70000
     + b"\r\nConnection: close\r\n\r\n", None),
]


def malformed(host, port):
    def malformed_request(res, rng):
        data, want = rng.choice(MALFORMED)
        if rng.random() < 0.2:
            # A body cut short: the client gives up half-way.
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: s\r\nContent-Length: 100\r\n\r\n{\"mo")
            s.close()
            res.count("malformed_cut")
            return
        out = h.raw_exchange(host, port, data, timeout=5)
        status = None
        if out.startswith(b"HTTP/1."):
            status = int(out.split(b" ", 2)[1])
        if status is not None and status >= 500:
            res.violation("malformed request got %d: %r" % (status, out[:200]))
        elif want is not None and status != want:
            res.violation("malformed request %r: wanted %d, got %r" % (data[:60], want, out[:120]))
        res.count("malformed")
        time.sleep(0.05)
    return malformed_request


# --------------------------------------------------------------------------
# /api/version latency, from its own process


def probe_main(url, stop_file, out_file):
    host, port, _ = h._split(url)
    lat, errors = [], 0
    conn = None
    while not os.path.exists(stop_file):
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/api/version")
            r = conn.getresponse()
            r.read()
            ok = r.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn = None
        dt = (time.perf_counter() - t0) * 1000
        if ok:
            lat.append(dt)
        else:
            errors += 1
        time.sleep(0.02)
    with open(out_file, "w") as f:
        json.dump({"latencies_ms": lat, "errors": errors}, f)


def percentile(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] if v else 0.0


# --------------------------------------------------------------------------
# the daemon's resources


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_kinds(pid, node_ports, own_port):
    """(descriptors other than connections to nodes, connections to nodes).
    libcurl keeps idle keep-alive connections to nodes for reuse; those are
    bounded by the nodes' slots and are not a leak."""
    socks = sockets(pid)
    own, upstream = 0, 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        info = socks.get(target[8:-1], "") if target.startswith("socket:[") else ""
        local, _, rest = info.partition("->:")
        peer = rest.split(" ")[0]
        if peer.isdigit() and int(peer) in node_ports and local != ":%d" % own_port:
            upstream += 1
        else:
            own += 1
    return own, upstream


def sockets(pid):
    """inode -> "local->remote" for the process's TCP sockets."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                next(f)
                for line in f:
                    p = line.split()
                    ports = [int(x.rsplit(":", 1)[1], 16) for x in (p[1], p[2])]
                    out[p[9]] = ":%d->:%d st%s" % (ports[0], ports[1], p[3])
        except OSError:
            pass
    return out


def fd_list(pid):
    out = []
    socks = sockets(pid)
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            target += " " + socks.get(target[8:-1], "?")
            peer = target.rsplit("->:", 1)[-1].split(" ")[0]
            if peer.isdigit() and int(peer) in CLIENT_PORTS:
                target += " (%s)" % CLIENT_PORTS[int(peer)]
        out.append("%s -> %s" % (fd, target))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=180, help="seconds of traffic (180)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (printed)")
    ap.add_argument("--version-ms", type=float, default=10.0,
                    help="limit on /api/version latency at p99 (10 ms)")
    ap.add_argument("--strict-version", action="store_true",
                    help="apply --version-ms to the maximum, not only p99")
    ap.add_argument("--clients", type=int, default=4, help="non-streamed client threads (4)")
    ap.add_argument("--streams", type=int, default=3, help="streaming client threads (3)")
    ap.add_argument("--slowloris", type=int, default=4, help="slowloris connections (4)")
    ap.add_argument("--pace", type=float, default=0.02,
                    help="mean pause between a client's requests in seconds (0.02): the soak is "
                    "about time under faults, not peak load, which bench/ measures")
    ap.add_argument("--log-level", default="warn", help="the daemon's (warn); its log is shown "
                    "on failure")
    ap.add_argument("--probe", nargs=3, metavar=("URL", "STOP", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.probe:
        probe_main(*a.probe)
        return 0
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    log("seed %d, %.0f s of traffic" % (seed, a.duration))
    rng = random.Random(seed)

    nodes = [Node("n%d" % i) for i in range(3)]
    cfg = {"nodes": [{"name": n.name, "url": n.url, "max_concurrent": 4} for n in nodes]}
    cfg_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(cfg, cfg_file)
    cfg_file.close()
    d = h.start_process("sollold", ["--config", cfg_file.name, "--listen", "127.0.0.1:0",
                                     "--log-level", a.log_level] + DAEMON_ARGS)
    pid = d.popen.pid
    violations = []
    tmpdir = tempfile.mkdtemp(prefix="sollol-soak-")
    try:
        h.wait_until(lambda: all(n["state"] == "up" for n in
                                 h.get_json(d.url + "/api/stats")["nodes"]), timeout=15,
                     msg="all nodes up")
        for m in GEN_MODELS:  # warm every path once
            h.request("POST", d.url + "/api/generate",
                      {"model": m, "prompt": "x", "stream": False})
        time.sleep(1.5)
        node_ports = {n.port for n in nodes}
        fd_base, _ = fd_kinds(pid, node_ports, d.port)
        fd_base_list = fd_list(pid)
        log("daemon pid %d on port %d: %d fds, %d kB resident before traffic; nodes on %s"
            % (pid, d.port, fd_base, rss_kb(pid), [n.port for n in nodes]))

        stop_file = os.path.join(tmpdir, "stop")
        probe_out = os.path.join(tmpdir, "probe.json")
        probe = subprocess.Popen([sys.executable, "-B", os.path.abspath(__file__), "--probe",
                                  d.url, stop_file, probe_out])

        stop = threading.Event()
        res = Results()
        threads = []
        for i in range(a.clients):
            threads.append(worker(non_streamed(d.url), stop, res, random.Random(seed + 1 + i),
                                  a.pace))
        for i in range(a.streams):
            threads.append(worker(streamed(d.url), stop, res, random.Random(seed + 100 + i),
                                  a.pace))
        for i in range(a.slowloris):
            threads.append(worker(slowloris(d.host, d.port), stop, res,
                                  random.Random(seed + 200 + i), a.pace))
        threads.append(worker(malformed(d.host, d.port), stop, res, random.Random(seed + 300),
                              a.pace))
        chaos = Chaos(nodes, stop, random.Random(seed + 400))
        chaos.start()

        samples = []  # (t since start, rss kB, fds)
        start = time.monotonic()
        while time.monotonic() - start < a.duration:
            if not d.alive():
                violations.append("the daemon died (status %s)" % d.popen.poll())
                break
            samples.append((time.monotonic() - start, rss_kb(pid), fds(pid)))
            time.sleep(1)
        stop.set()
        chaos.join(30)
        for t in threads:
            t.join(90)
        if chaos.error:
            violations.append("chaos controller failed: %r" % chaos.error)
        open(stop_file, "w").close()
        probe.wait(30)
        for n in nodes:  # every node back to health
            if n.dead:
                n.restart()
            n.fault("none", scope="all")
        log("traffic done: %s" % json.dumps(res.counts, sort_keys=True))
        log("chaos actions: %s" % json.dumps(chaos.counts, sort_keys=True))
        violations += res.violations

        # Resources after the run.
        if d.alive():
            try:
                h.wait_until(lambda: fd_kinds(pid, node_ports, d.port)[0] <= fd_base, timeout=20,
                             interval=0.5, msg="descriptors back to %d" % fd_base)
            except AssertionError:
                extra = sorted(set(fd_list(pid)) - set(fd_base_list))
                violations.append("descriptors: %d after the run, %d before; new: %s"
                                  % (fd_kinds(pid, node_ports, d.port)[0], fd_base, extra[:20]))
            pool = fd_kinds(pid, node_ports, d.port)[1]
            pool_max = sum(c["max_concurrent"] for c in cfg["nodes"]) + 2 * len(nodes)
            if pool > pool_max:
                violations.append("%d connections to nodes after the run (more than %d)"
                                  % (pool, pool_max))
            rss_after = rss_kb(pid)
            window = [s[1] for s in samples if a.duration * 0.25 <= s[0] <= a.duration * 0.5]
            plateau = max(window) if window else max(s[1] for s in samples)
            peak = max(s[1] for s in samples)
            log("resident memory: plateau %d kB, peak %d kB, after %d kB (%+.1f%%)"
                % (plateau, peak, rss_after, 100.0 * (rss_after - plateau) / plateau))
            if rss_after > plateau * 1.10:
                violations.append("resident memory %d kB after the run > plateau %d kB + 10%%"
                                  % (rss_after, plateau))
            log("descriptors (without idle connections to nodes): %d before, %d after; "
                "%d idle connections to nodes; peak of all descriptors %d"
                % (fd_base, fd_kinds(pid, node_ports, d.port)[0], pool,
                   max(s[2] for s in samples)))
            # Still serving after all that.
            for m in GEN_MODELS:
                r = h.request("POST", d.url + "/api/generate", {"model": m, "prompt": "x",
                                                                 "stream": False})
                if r.status != 200:
                    violations.append("after the run: %s -> %d" % (m, r.status))

        with open(probe_out) as f:
            pr = json.load(f)
        lat = pr["latencies_ms"]
        p50, p99, mx = percentile(lat, 0.5), percentile(lat, 0.99), max(lat) if lat else 0
        log("/api/version: %d probes, %d errors, p50 %.2f ms, p99 %.2f ms, max %.2f ms"
            % (len(lat), pr["errors"], p50, p99, mx))
        if pr["errors"]:
            violations.append("/api/version failed %d times" % pr["errors"])
        if p99 > a.version_ms:
            violations.append("/api/version p99 %.2f ms > %.1f ms" % (p99, a.version_ms))
        if a.strict_version and mx > a.version_ms:
            violations.append("/api/version max %.2f ms > %.1f ms" % (mx, a.version_ms))
    finally:
        code = d.stop()
        problem = d.problems()
        daemon_log = d.stderr_text()
        d.close()
        for n in nodes:
            n.stop()
        os.unlink(cfg_file.name)
    if problem:
        violations.append(problem)
    if violations:
        log("the daemon's log (last 60 lines):")
        print("\n".join(daemon_log.splitlines()[-60:]))
        log("FAILED (seed %d), %d violation(s):" % (seed, len(violations)))
        for v in violations[:50]:
            print("  " + v)
        return 1
    log("passed (seed %d, daemon exit %s)" % (seed, code))
    return 0


if __name__ == "__main__":
    sys.exit(main())
