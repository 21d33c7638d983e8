#!/usr/bin/python3
"""bench/continue_pause.py - the pause a user sees when a chat answer's node
fails mid-stream and sollold continues it on another node (issue 18).

Two ollama-sim nodes with the same --seed; node "a" (weight 100) gets every
first attempt and a fault after --at chunks: `close` (FIN), `reset` (RST) or
`stall` (silence until sollold's timeouts.idle_ms, --idle-ms). For each run
the client's arrival times give the pause at the switch (the last token
before the failure to the first token after it); node b's own time to first
token for the same continued request (the client's body plus the prefill,
sent to b directly) is measured right after. Prints the medians and p90 of
both and of their difference, the time the switch adds.

    SOLLOL_BUILD_DIR=build bench/continue_pause.py --runs 20

Loopback only; bounded (--runs per fault mode).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness as h  # noqa: E402

MODEL = "llama3.2:3b"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def ttft_direct(url, body):
    t0 = time.monotonic()
    with h.open_stream("POST", url + "/api/chat", body) as s:
        for ev in s.lines():
            if ev.json.get("message", {}).get("content"):
                return (ev.t - t0) * 1000.0
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--at", type=int, default=8, help="chunks node a sends before its fault")
    ap.add_argument("--tps", type=int, default=50, help="tokens per second of both nodes")
    ap.add_argument("--idle-ms", type=int, default=500)
    ap.add_argument("--modes", default="close,reset,stall")
    args = ap.parse_args()
    sim_args = ("--seed", "7", "--tokens-per-second", str(args.tps), "--num-predict", "32",
                "--ttft-ms", "5", "--log-level", "warn")
    a = h.start_sim(*sim_args)
    b = h.start_sim(*sim_args)
    tmp = tempfile.mkdtemp(prefix="sollol-bench-cont-")
    cfg = os.path.join(tmp, "sollol.json")
    with open(cfg, "w") as f:
        json.dump({"listen": "127.0.0.1:0", "log_level": "warn",
                   "nodes": [{"name": "a", "url": a.url, "weight": 100},
                             {"name": "b", "url": b.url, "weight": 1}],
                   "breaker": {"failure_threshold": 1000, "min_requests": 1000000},
                   "timeouts": {"idle_ms": args.idle_ms}}, f)
    d = h.start_process("sollold", ["--config", cfg])
    try:
        h.wait_until(lambda: all(n["state"] == "up" and n["models"]
                                 for n in h.get_json(d.url + "/api/stats")["nodes"]), timeout=10)
        print("nodes: %d tokens/s (token gap %.0f ms); fault after %d chunks; idle_ms %d"
              % (args.tps, 1000.0 / args.tps, args.at, args.idle_ms))
        print("%-6s %5s | %-22s | %-22s | %-22s" % ("fault", "runs", "pause at switch ms",
                                                    "b's own TTFT ms", "added by switch ms"))
        for mode in args.modes.split(","):
            pauses, ttfts, added = [], [], []
            for i in range(args.runs):
                body = {"model": MODEL, "messages": [{"role": "user",
                                                      "content": "bench %s %d" % (mode, i)}]}
                h.sim_fault(a.url, mode, arg=args.at, count=1)
                times, texts = [], []
                with h.open_stream("POST", d.url + "/api/chat", body) as s:
                    for ev in s.lines():
                        c = ev.json.get("message", {}).get("content")
                        if c:
                            times.append(ev.t)
                            texts.append(c)
                if len(times) <= args.at:
                    continue
                pause = (times[args.at] - times[args.at - 1]) * 1000.0
                cont = dict(body, messages=body["messages"] + [
                    {"role": "assistant", "content": "".join(texts[:args.at])}])
                ttft = ttft_direct(b.url, cont)
                pauses.append(pause)
                ttfts.append(ttft)
                added.append(pause - ttft)
                h.sim_fault(a.url, "none")
            if not pauses:
                print("%-6s: no run continued" % mode)
                continue
            f = "%6.1f med %6.1f p90"
            print("%-6s %5d | %s | %s | %s" % (
                mode, len(pauses), f % (statistics.median(pauses), pct(pauses, 90)),
                f % (statistics.median(ttfts), pct(ttfts, 90)),
                f % (statistics.median(added), pct(added, 90))))
    finally:
        for p in (d, a, b):
            p.stop()


if __name__ == "__main__":
    main()
