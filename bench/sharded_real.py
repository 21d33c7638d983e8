#!/usr/bin/env python3
"""The sharded path with the REAL llama.cpp programs, side by side on one
machine (issue 16; results in docs/benchmarks.md, "Sharded path, real
llama.cpp"):

  1. time to first token and decode tokens/s through sollold vs the same
     llama-server called directly (its own /v1/chat/completions stream);
  2. cold start: first request -> first token through sollold, vs
     llama-server started by hand with the same arguments (spawn -> /health
     200 -> first token of the same request), fresh RPC servers each;
  3. the RPC servers' tensor cache (-c) on vs off for a second launch;
  4. llama-server's peak RSS (VmHWM) against the GGUF's size, every layer on
     the RPC backends, with --mmap (default) and --no-mmap;
  5. a backend's death -> the client's error line, and its return (with
     the lost one required) -> serving again.

Needs what `tests/run --real-llama` sets up (SOLLOL_REAL_LLAMA_SERVER,
SOLLOL_REAL_RPC_SERVER, SOLLOL_REAL_GGUF, SOLLOL_BUILD_DIR), e.g.:

  cur=$(tests/real/build-llama current)
  build/tests/sollol-gen-gguf /tmp/m.gguf $(dirname $(dirname $cur))/src/*/models/ggml-vocab-llama-spm.gguf
  SOLLOL_REAL_LLAMA_SERVER=$cur/llama-server SOLLOL_REAL_RPC_SERVER=$cur/ggml-rpc-server \\
    SOLLOL_REAL_GGUF=/tmp/m.gguf SOLLOL_BUILD_DIR=build bench/sharded_real.py [--runs N]

Prints one table per measure (Markdown), medians of --runs.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness as h  # noqa: E402

MODEL = "big:70b"
LLAMA = os.environ["SOLLOL_REAL_LLAMA_SERVER"]
RPC = os.environ["SOLLOL_REAL_RPC_SERVER"]
GGUF = os.environ["SOLLOL_REAL_GGUF"]
TMP = tempfile.mkdtemp(prefix="sollol-bench-real-")
procs = []


def rpc_server(cache=False, port=None):
    port = port or h.free_port()
    args = [RPC, "-p", str(port)] + (["-c"] if cache else [])
    env = {"LLAMA_CACHE": os.path.join(TMP, "cache")}
    p = h._ConnectReadyProc(args, "127.0.0.1", port, name="rpc", env=env)
    procs.append(p)
    return p


SIM = []


def daemon(backends, **ls):
    if not SIM:  # sollold needs one Ollama node; the sharded path does not use it
        SIM.append(h.start_sim())
        procs.append(SIM[0])
    conf = {"nodes": [SIM[0].url], "listen": "127.0.0.1:0", "model_sharding_enabled": True,
            "rpc_backends": [{"host": "127.0.0.1", "port": b.port} for b in backends],
            "sharded_models": [MODEL], "model_paths": {MODEL: GGUF}, "rpc_version": "5.1.0",
            "log_level": "warn",
            "llama_server": dict({"binary": LLAMA, "ctx_size": 2048, "parallel": 1,
                                  "startup_timeout_ms": 120000, "stop_grace_ms": 5000,
                                  "restart_backoff_min_ms": 100}, **ls)}
    path = os.path.join(TMP, "conf-%d.json" % len(os.listdir(TMP)))
    with open(path, "w") as f:
        json.dump(conf, f)
    p = h.Proc([h.binary("sollold"), "--config", path], ready_timeout=30, name="sollold")
    procs.append(p)
    return p


def stop(p):
    p.stop()
    p.close()
    if p in procs:
        procs.remove(p)


def status(d):
    return h.get_json(d.url + "/api/sollol/rpc")


def chat_body(n):
    return {"model": MODEL, "messages": [{"role": "user", "content": "tell me a story"}],
            "options": {"num_predict": n, "seed": 3}}


def through_sollol(d, n):
    """(ttft_s, decode tokens/s) of one streamed /api/chat."""
    t0 = time.monotonic()
    s = h.open_stream("POST", d.url + "/api/chat", chat_body(n), timeout=300)
    stamps = [ln.t for ln in s.lines() if not ln.json.get("done")]
    s.close()
    return stamps[0] - t0, (len(stamps) - 1) / (stamps[-1] - stamps[0])


def direct(port, n):
    """The same through llama-server's own SSE stream."""
    body = {"messages": [{"role": "user", "content": "tell me a story"}], "max_tokens": n,
            "seed": 3, "stream": True}
    t0 = time.monotonic()
    s = h.open_stream("POST", "http://127.0.0.1:%d/v1/chat/completions" % port, body,
                      timeout=300)
    stamps = []
    for ev in s.sse():
        if not ev.raw.startswith(b"{"):
            continue  # [DONE]
        d = json.loads(ev.raw)
        ch = (d.get("choices") or [{}])[0]
        if (ch.get("delta") or {}).get("content"):
            stamps.append(ev.t)
    s.close()
    return stamps[0] - t0, (len(stamps) - 1) / (stamps[-1] - stamps[0])


def med(xs):
    return statistics.median(xs)


def bench_overhead(runs, n):
    b1, b2 = rpc_server(), rpc_server()
    d = daemon([b1, b2])
    through_sollol(d, 4)
    port = status(d)["coordinator"]["port"]
    direct(port, 4)
    rs, rd = [], []
    for _ in range(runs):
        rd.append(direct(port, n))
        rs.append(through_sollol(d, n))
    stop(d)
    for b in (b1, b2):
        stop(b)
    ttd, tts = med([x[0] for x in rd]) * 1000, med([x[0] for x in rs]) * 1000
    tpd, tps = med([x[1] for x in rd]), med([x[1] for x in rs])
    print("\n### 1. Through sollold vs llama-server direct (%d runs, %d tokens, medians)\n" % (runs, n))
    print("| path | TTFT ms | decode tokens/s |\n|---|---|---|")
    print("| llama-server direct (`/v1/chat/completions`, SSE) | %.1f | %.1f |" % (ttd, tpd))
    print("| through sollold (`/api/chat`, NDJSON) | %.1f | %.1f |" % (tts, tps))
    print("| difference | %+.1f ms | %.1f%% of direct |" % (tts - ttd, 100.0 * tps / tpd))


def first_token_by_hand(argv, n=4):
    """llama-server started by hand with argv: spawn -> first token of one
    streamed chat sent as soon as /health answers 200."""
    port = h.free_port()
    argv = list(argv)
    argv[argv.index("--port") + 1] = str(port)
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, GGML_NO_BACKTRACE="1"))
    try:
        while True:
            try:
                if h.request("GET", "http://127.0.0.1:%d/health" % port, timeout=2).status == 200:
                    break
            except OSError:
                pass
            if p.poll() is not None:
                raise RuntimeError("llama-server exited %s" % p.returncode)
            time.sleep(0.01)
        body = {"messages": [{"role": "user", "content": "tell me a story"}], "max_tokens": n,
                "stream": True}
        s = h.open_stream("POST", "http://127.0.0.1:%d/v1/chat/completions" % port, body,
                          timeout=300)
        first = None
        for ev in s.sse():
            if ev.raw.startswith(b"{") and not first:
                ch = (json.loads(ev.raw).get("choices") or [{}])[0]
                first = (ch.get("delta") or {}).get("content") and ev.t
        s.close()
        return first - t0
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)


def bench_cold(runs):
    sol, hand = [], []
    for _ in range(runs):
        b1, b2 = rpc_server(), rpc_server()
        d = daemon([b1, b2])
        time.sleep(1)  # the start-up survey (--help runs, backend probes) is done
        t0 = time.monotonic()
        s = h.open_stream("POST", d.url + "/api/chat", chat_body(4), timeout=300)
        first = next(iter(s.lines())).t
        list(s.lines())
        s.close()
        sol.append(first - t0)
        argv = None
        with open("/proc/%d/cmdline" % status(d)["coordinator"]["pid"], "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        stop(d)
        for b in (b1, b2):
            stop(b)
        b1, b2 = rpc_server(), rpc_server()
        # The same arguments, over the fresh servers' ports.
        rpcs = "127.0.0.1:%d,127.0.0.1:%d" % (b1.port, b2.port)
        argv[argv.index("--rpc") + 1] = rpcs
        hand.append(first_token_by_hand(argv))
        for b in (b1, b2):
            stop(b)
    print("\n### 2. Cold start of a sharded model (%d runs, medians; fresh RPC servers each)\n"
          % runs)
    print("| how | request (or spawn) -> first token ms |\n|---|---|")
    print("| llama-server by hand, same arguments (spawn, poll /health every 10 ms, request) "
          "| %.0f |" % (med(hand) * 1000))
    print("| through sollold (pre-flight probes, launch, /health every 50 ms, request) | %.0f |"
          % (med(sol) * 1000))
    print("| difference | %+.0f ms |" % ((med(sol) - med(hand)) * 1000))


def bench_cache(runs):
    res = {}
    for cache in (False, True):
        shutil.rmtree(os.path.join(TMP, "cache"), ignore_errors=True)
        b1, b2 = rpc_server(cache), rpc_server(cache)
        d = daemon([b1, b2])
        through_sollol(d, 2)  # first launch: fills the cache when on
        times = []
        for _ in range(runs):
            h.post_json(d.url + "/api/chat", {"model": MODEL, "messages": [], "keep_alive": 0,
                                              "stream": False})
            h.wait_until(lambda: status(d)["coordinator"]["state"] == "stopped", timeout=30)
            t0 = time.monotonic()
            s = h.open_stream("POST", d.url + "/api/chat", chat_body(2), timeout=300)
            first = next(iter(s.lines())).t
            list(s.lines())
            s.close()
            times.append(first - t0)
        stop(d)
        for b in (b1, b2):
            stop(b)
        res[cache] = med(times)
    size = os.path.getsize(GGUF)
    print("\n### 3. Second launch, RPC tensor cache (`-c`) off vs on (%d runs, medians; "
          "GGUF %.0f MiB)\n" % (runs, size / 2 ** 20))
    print("| rpc servers | unload, then request -> first token ms |\n|---|---|")
    print("| without -c | %.0f |" % (res[False] * 1000))
    print("| with -c | %.0f |" % (res[True] * 1000))


def rss(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def bench_memory():
    size = os.path.getsize(GGUF)
    rows = []
    for label, extra in (("--mmap (default)", []), ("--no-mmap", ["--no-mmap"])):
        b1, b2 = rpc_server(), rpc_server()
        d = daemon([b1, b2], extra_args=extra)
        through_sollol(d, 16)
        pid = status(d)["coordinator"]["pid"]
        rows.append((label, rss(pid, "VmHWM"), rss(pid, "VmRSS"),
                     rss(b1.popen.pid, "VmHWM") + rss(b2.popen.pid, "VmHWM")))
        stop(d)
        for b in (b1, b2):
            stop(b)
    print("\n### 4. llama-server's memory, every layer on 2 RPC backends (GGUF %.1f MiB)\n"
          % (size / 2 ** 20))
    print("| llama-server | peak RSS MiB | RSS after a request MiB | peak / GGUF | "
          "both RPC servers' peak RSS MiB |\n|---|---|---|---|---|")
    for label, hwm, now, back in rows:
        print("| %s | %.1f | %.1f | %.2f | %.1f |" % (label, hwm / 2 ** 20, now / 2 ** 20,
                                                      hwm / size, back / 2 ** 20))


def bench_death(runs):
    err, back = [], []
    for _ in range(runs):
        b1, b2 = rpc_server(), rpc_server()
        port2 = b2.port
        d = daemon([b1, b2])
        through_sollol(d, 2)
        s = h.open_stream("POST", d.url + "/api/chat", chat_body(3000), timeout=300)
        it = s.lines()
        for _ in range(3):
            next(it)
        t_kill = time.monotonic()
        b2.popen.kill()
        b2.popen.wait()
        rest = list(it)
        s.close()
        assert "error" in rest[-1].json, rest[-1].json
        err.append(rest[-1].t - t_kill)
        stop(b2)
        h.wait_until(lambda: status(d)["coordinator"]["state"] == "ready", timeout=60)
        stop(d)
        stop(b1)
    # Return: the lost backend is the only one (the real servers report the
    # machine's free memory, so with two the other always holds the model
    # and the coordinator relaunches at once without waiting).
    for _ in range(runs):
        b = rpc_server()
        port = b.port
        d = daemon([b])
        through_sollol(d, 2)
        b.popen.kill()
        b.popen.wait()
        stop(b)
        h.wait_until(lambda: "waiting for rpc backend" in status(d)["coordinator"]["reason"],
                     timeout=30)
        first = []

        def wait_for_token():
            s = h.open_stream("POST", d.url + "/api/chat", chat_body(2), timeout=300)
            first.append(next(iter(s.lines())).t)
            list(s.lines())
            s.close()

        t = threading.Thread(target=wait_for_token)
        t.start()
        time.sleep(0.5)
        t_back = time.monotonic()
        b = rpc_server(port=port)
        t.join(120)
        back.append(first[0] - t_back)
        stop(d)
        stop(b)
    print("\n### 5. A backend's death and return (%d runs, medians)\n" % runs)
    print("| event | ms |\n|---|---|")
    print("| backend killed (SIGKILL) mid-stream -> the client's error line | %.0f |"
          % (med(err) * 1000))
    print("| the only backend returns -> first token of a request that waited | %.0f |"
          % (med(back) * 1000))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--only", default="overhead,cold,cache,memory,death")
    a = ap.parse_args()
    only = a.only.split(",")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print("## Sharded path, real llama.cpp (%s, %d CPUs, load %s)" %
          (time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), " ".join(load)))
    try:
        if "overhead" in only:
            bench_overhead(a.runs, a.tokens)
        if "cold" in only:
            bench_cold(a.runs)
        if "cache" in only:
            bench_cache(a.runs)
        if "memory" in only:
            bench_memory()
        if "death" in only:
            bench_death(a.runs)
    finally:
        for p in reversed(list(procs)):
            try:
                stop(p)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
