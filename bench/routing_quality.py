#!/usr/bin/env python3
"""Routing quality: sollol's cost routing against round-robin and
least-connections (both modes of the same daemon, `--routing`), on three
heterogeneous simulated nodes under a mixed workload that keeps them busy.

    python3 bench/routing_quality.py [--seconds 30] [--clients 24] [--append docs/benchmarks.md]

Each mode gets fresh nodes (same models loaded at start) and the same
workload, driven by the same number of client threads for the same time:
multi-turn chats (3 turns, llama3.2:3b or qwen2.5:7b), generates, and
embeddings. Reported per mode: requests completed, mean and p95 completion
time and time to first token (streamed requests). Loops are bounded in time
and count. Uses only loopback addresses.
"""

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness as h  # noqa: E402

# Heterogeneous on purpose: speeds and loaded models differ. --contention
# 0.25 makes a node's streams slow down as its batch fills, as a GPU does
# (a full batch of 4 runs each stream at 1/1.75 of the solo speed).
NODES = [
    ("fast", ["--contention", "0.25", "--tokens-per-second", "80", "--prompt-tps", "3000", "--load-ms", "3000",
              "--parallel", "4"], ["llama3.2:3b,loaded", "qwen2.5:7b"]),
    ("mid", ["--contention", "0.25", "--tokens-per-second", "35", "--prompt-tps", "1500", "--load-ms", "3000",
             "--parallel", "4"], ["llama3.2:3b,loaded", "qwen2.5:7b,loaded",
                                  "nomic-embed-text,embed,loaded"]),
    ("slow", ["--contention", "0.25", "--tokens-per-second", "12", "--prompt-tps", "600", "--load-ms", "3000",
              "--parallel", "4", "--embed-per-second", "500"],
     ["llama3.2:3b", "qwen2.5:7b,loaded", "nomic-embed-text,embed,loaded"]),
]
MAX_CONCURRENT = 4
WAIT_FOR_FASTER = True
VERBOSE = False


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def workload(url, deadline, rng, out, lock, once=False):
    """One client: a loop of mixed requests until the deadline (or one task
    when `once`: the open-loop driver starts one client per arrival)."""
    n = 0
    while time.monotonic() < deadline and n < (1 if once else 10000):
        n += 1
        kind = rng.random()
        t0 = time.monotonic()
        ttft = None
        try:
            if kind < 0.6:  # a multi-turn chat, streamed
                model = "llama3.2:3b" if rng.random() < 0.7 else "qwen2.5:7b"
                msgs = [{"role": "system", "content": "You help with topic %d. " %
                         rng.randrange(1000) * 30}]
                for turn in range(3):
                    if time.monotonic() >= deadline:
                        break
                    msgs.append({"role": "user", "content": "turn %d: %s" %
                                 (turn, "detail " * rng.randrange(5, 60))})
                    t0 = time.monotonic()
                    body = {"model": model, "messages": msgs,
                            "options": {"num_predict": rng.choice([16, 32, 64, 128])}}
                    text = ""
                    with h.open_stream("POST", url + "/api/chat", body, timeout=120) as s:
                        node = s.headers.get("x-sollol-node", "?")
                        qms = s.headers.get("x-sollol-queue-ms", "?")
                        first = None
                        for ev in s.lines():
                            if first is None:
                                first = ev.t
                            text += ev.json.get("message", {}).get("content", "")
                    msgs.append({"role": "assistant", "content": text})
                    with lock:
                        out.append(("chat", time.monotonic() - t0, first - t0 if first else None,
                                    "%s/%d@%s q=%s" % (model, body["options"]["num_predict"],
                                                       node, qms), t0))
                continue
            if kind < 0.85:
                body = {"model": "llama3.2:3b", "prompt": "write " * rng.randrange(10, 400),
                        "stream": False, "options": {"num_predict": rng.choice([8, 32, 96])}}
                r = h.request("POST", url + "/api/generate", body, timeout=120)
                kind_name = "generate"
            else:
                body = {"model": "nomic-embed-text",
                        "input": ["text %d" % i for i in range(rng.randrange(8, 64))]}
                r = h.request("POST", url + "/api/embed", body, timeout=120)
                kind_name = "embed"
            if r.status == 200:
                with lock:
                    out.append((kind_name, time.monotonic() - t0, ttft, "%s@%s q=%s" % (
                        body.get("options", {}).get("num_predict", len(body.get("input", []))),
                        r.headers.get("x-sollol-node", "?"), r.headers.get("x-sollol-queue-ms", "?")),
                        t0))
        except Exception as e:  # noqa: BLE001 - a failed request is reported, not fatal
            with lock:
                out.append(("error", time.monotonic() - t0, None, str(e)[:80], t0))


def open_loop(url, seconds, rate, seed, out, lock):
    """Poisson arrivals at `rate` tasks/s for `seconds`; each task runs in its
    own thread (at most 400 at once); waits for all to finish."""
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    threads = []
    t = time.monotonic()
    while t < deadline and len(threads) < 100000:
        t += rng.expovariate(rate)
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        threads = [th for th in threads if th.is_alive()]
        if len(threads) >= 400:
            continue
        th = threading.Thread(target=workload,
                              args=(url, deadline + 120, random.Random(rng.random()), out, lock,
                                    True), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join(180)


def run_mode(mode, seconds, clients, rate=0.0, warmup=0.0):
    sims = []
    try:
        for name, args, models in NODES:
            sims.append(h.start_sim("--name", name, *args, models=models))
        cfg = {"nodes": [{"name": name, "url": s.url, "max_concurrent": MAX_CONCURRENT}
                         for (name, _, _), s in zip(NODES, sims)],
               "routing": {"mode": mode, "wait_for_faster": WAIT_FOR_FASTER},
               "log_level": "warn"}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(cfg, f)
        d = h.start_process("sollold", ["--config", f.name, "--listen", "127.0.0.1:0"])
        try:
            out, lock = [], threading.Lock()
            measured_from = time.monotonic() + warmup
            if rate > 0:
                open_loop(d.url, warmup + seconds, rate, 4242, out, lock)
            else:
                deadline = time.monotonic() + warmup + seconds
                threads = [threading.Thread(target=workload,
                                            args=(d.url, deadline, random.Random(1000 + i), out,
                                                  lock), daemon=True) for i in range(clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(warmup + seconds + 180)
        finally:
            d.close()
            os.unlink(f.name)
    finally:
        for s in sims:
            s.close()
    # Requests started during the warm-up only taught the daemon its nodes.
    out = [o for o in out if o[4] >= measured_from]
    done = [o for o in out if o[0] != "error"]
    if VERBOSE:
        for o in sorted(done, key=lambda o: -o[1])[:max(1, len(done) // 20)]:
            print("  %s slow: %-8s %.2fs %s" % (mode, o[0], o[1], o[3]), file=sys.stderr)
    comp = [o[1] for o in done]
    ttft = [o[2] for o in done if o[0] == "chat" and o[2] is not None]
    return {"mode": mode, "requests": len(done), "errors": len(out) - len(done),
            "mean": sum(comp) / len(comp) if comp else float("nan"),
            "p95": pct(comp, 95), "ttft_mean": sum(ttft) / len(ttft) if ttft else float("nan"),
            "ttft_p95": pct(ttft, 95)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=24)
    ap.add_argument("--rate", type=float, default=0,
                    help="open loop: tasks arriving per second (Poisson); 0 = closed loop of --clients")
    ap.add_argument("--warmup", type=float, default=15,
                    help="seconds of the same traffic before measuring (the daemon learns its "
                         "nodes' speeds, as it has long done in service); every mode gets it")
    ap.add_argument("--append", help="append the table to this markdown file")
    ap.add_argument("--modes", default="cost,round_robin,least_conn",
                    help="comma-separated routing modes to run (least_conn is always run)")
    ap.add_argument("--verbose", action="store_true",
                    help="list the slowest 5%% of requests of each mode on stderr")
    ap.add_argument("--no-wait-for-faster", action="store_true",
                    help="run cost mode with routing.wait_for_faster false (start every request "
                         "on a free slot)")
    a = ap.parse_args()
    global WAIT_FOR_FASTER, VERBOSE
    WAIT_FOR_FASTER = not a.no_wait_for_faster
    VERBOSE = a.verbose
    modes = [m for m in a.modes.split(",") if m and m != "least_conn"] + ["least_conn"]
    rows = [run_mode(m, a.seconds, a.clients, a.rate, a.warmup) for m in modes]
    lc = next(r for r in rows if r["mode"] == "least_conn")
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    lines = ["", "### Routing quality (%s, commit %s, %s, %d cores)" %
             (datetime.date.today().isoformat(), commit or "?", platform.machine(),
              os.cpu_count() or 0), "",
             "`python3 bench/routing_quality.py --seconds %g --warmup %g %s%s`: three heterogeneous "
             "simulated nodes, %d slots each, mixed chats (multi-turn, streamed), generates "
             "and embeddings; %s." % (
                 a.seconds, a.warmup, "--rate %g" % a.rate if a.rate else "--clients %d" % a.clients,
                 " --no-wait-for-faster" if a.no_wait_for_faster else "",
                 MAX_CONCURRENT,
                 "open loop: Poisson arrivals" if a.rate else "closed loop: every client sends "
                 "its next request when the last one ends"), "",
             "| routing | requests | errors | mean completion s | p95 completion s | "
             "mean TTFT s | p95 TTFT s | p95 vs least_conn |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %s | %d | %d | %.3f | %.3f | %.3f | %.3f | %+.0f%% |" % (
            r["mode"], r["requests"], r["errors"], r["mean"], r["p95"], r["ttft_mean"],
            r["ttft_p95"], (r["p95"] / lc["p95"] - 1) * 100 if lc["p95"] else 0))
    text = "\n".join(lines) + "\n"
    print(text)
    if a.append:
        with open(a.append, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
