#!/usr/bin/env python3
"""Latency that brownout (no profile) adds to a streamed chat completion.

Starts `brownout sim --api openai --ttft 20ms --itl 2ms` and `brownout serve` (no
profile) in front of it, both on loopback, then sends N sequential streaming chat
requests (max_tokens 500) alternately direct to the simulator and through brownout,
on one keep-alive connection each. For every request it records:

  ttft  time from sending the request to the first SSE `data:` event whose delta has
        non-empty content (the simulator's first event is the role chunk with
        content "", which does not count),
  gaps  the time between consecutive content events,
  e2e   time to `data: [DONE]`.

It prints p50/p99 TTFT per path, the TTFT that brownout adds (difference of the
percentiles, and the median of the per-pair differences), the mean time added per
event (difference of the mean gaps), and the per-event added latency: the simulator
runs without jitter, so event k of a request is due at the same offset on both
paths, and (arrival offset of event k through brownout) - (same, direct) for
back-to-back request pairs is what brownout adds to that token (median, p99, mean
over all events). Standard library only.

usage: bench/stream_ttft.py [--brownout PATH] [-n 30] [--max-tokens 500]
                            [--ttft 20ms] [--itl 2ms] [--json OUT.json]
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, name, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"stream_ttft.py: {name} exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"stream_ttft.py: {name} did not listen on port {port}")


def pct(vals, p):
    """Nearest-rank percentile."""
    s = sorted(vals)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


class Client:
    def __init__(self, port, max_tokens):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.body = json.dumps({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Tell me a long story about a proxy."}],
            "stream": True,
            "max_tokens": max_tokens,
        }).encode()

    def one(self):
        """One streamed request: (ttft_s, [content event times], e2e_s, content_events)."""
        self.conn.putrequest("POST", "/v1/chat/completions", skip_accept_encoding=True)
        self.conn.putheader("Content-Type", "application/json")
        self.conn.putheader("Authorization", "Bearer sk-bench")
        self.conn.putheader("Content-Length", str(len(self.body)))
        self.conn.endheaders()
        t0 = time.perf_counter()
        self.conn.send(self.body)
        resp = self.conn.getresponse()
        if resp.status != 200:
            raise SystemExit(f"stream_ttft.py: status {resp.status} from port {self.port}: {resp.read()[:300]!r}")
        times = []
        done = None
        while True:
            line = resp.readline()
            if not line:
                break
            if not line.startswith(b"data:"):
                continue
            now = time.perf_counter()
            data = line[5:].strip()
            if data == b"[DONE]":
                done = now
                break
            ev = json.loads(data)
            choices = ev.get("choices") or []
            if choices and (choices[0].get("delta") or {}).get("content"):
                times.append(now)
        resp.read()  # drain to the end of the chunked body so the connection is reusable
        if not times or done is None:
            raise SystemExit(f"stream_ttft.py: incomplete stream from port {self.port}")
        return {
            "ttft_ms": (times[0] - t0) * 1e3,
            "e2e_ms": (done - t0) * 1e3,
            "events": len(times),
            "gaps_ms": [(b - a) * 1e3 for a, b in zip(times, times[1:])],
            "offsets_ms": [(t - t0) * 1e3 for t in times],
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brownout", default=os.environ.get("BROWNOUT", os.path.join(ROOT, "target/release/brownout")))
    ap.add_argument("-n", type=int, default=30, help="measured requests per path (default 30)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=500)
    ap.add_argument("--ttft", default="20ms")
    ap.add_argument("--itl", default="2ms")
    ap.add_argument("--json", help="write raw numbers here")
    a = ap.parse_args()
    if not os.access(a.brownout, os.X_OK):
        raise SystemExit(f"stream_ttft.py: no brownout binary at {a.brownout} (cargo build --release -p brownout)")

    env = {k: v for k, v in os.environ.items() if not k.startswith("BROWNOUT_")}
    procs = []
    try:
        sim_port = free_port()
        sim = subprocess.Popen([a.brownout, "sim", "--api", "openai", "--listen", f"127.0.0.1:{sim_port}",
                                "--ttft", a.ttft, "--itl", a.itl],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        procs.append(sim)
        wait_port(sim_port, sim, "brownout sim")
        px_port, admin_port = free_port(), free_port()
        px = subprocess.Popen([a.brownout, "serve", "--upstream", f"http://127.0.0.1:{sim_port}",
                               "--listen", f"127.0.0.1:{px_port}", "--admin", f"127.0.0.1:{admin_port}",
                               "--api", "openai"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        procs.append(px)
        wait_port(px_port, px, "brownout serve")

        clients = {"direct": Client(sim_port, a.max_tokens), "brownout": Client(px_port, a.max_tokens)}
        for _ in range(a.warmup):
            for c in clients.values():
                c.one()
        res = {"direct": [], "brownout": []}
        print(f"{a.n} streamed requests per path, max_tokens {a.max_tokens}, sim ttft {a.ttft} itl {a.itl}",
              file=sys.stderr)
        for i in range(a.n):
            order = ("direct", "brownout") if i % 2 == 0 else ("brownout", "direct")
            for k in order:
                res[k].append(clients[k].one())
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    summ = {}
    for k, rs in res.items():
        ttft = [r["ttft_ms"] for r in rs]
        gaps = [g for r in rs for g in r["gaps_ms"]]
        summ[k] = {
            "ttft_p50_ms": pct(ttft, 50), "ttft_p99_ms": pct(ttft, 99), "ttft_mean_ms": statistics.fmean(ttft),
            "gap_mean_ms": statistics.fmean(gaps), "gap_p50_ms": pct(gaps, 50), "gap_p99_ms": pct(gaps, 99),
            "gap_max_ms": max(gaps), "e2e_mean_ms": statistics.fmean(r["e2e_ms"] for r in rs),
            "events_mean": statistics.fmean(r["events"] for r in rs),
        }
    d, b = summ["direct"], summ["brownout"]
    pair = [y["ttft_ms"] - x["ttft_ms"] for x, y in zip(res["direct"], res["brownout"])]
    ev = [ob - od for x, y in zip(res["direct"], res["brownout"])
          for od, ob in zip(x["offsets_ms"], y["offsets_ms"])]
    added = {
        "ttft_p50_added_ms": b["ttft_p50_ms"] - d["ttft_p50_ms"],
        "ttft_p99_added_ms": b["ttft_p99_ms"] - d["ttft_p99_ms"],
        "ttft_paired_median_added_ms": statistics.median(pair),
        "ttft_paired_p99_added_ms": pct(pair, 99),
        "per_event_added_ms": b["gap_mean_ms"] - d["gap_mean_ms"],
        "gap_p99_added_ms": b["gap_p99_ms"] - d["gap_p99_ms"],
        "e2e_mean_added_ms": b["e2e_mean_ms"] - d["e2e_mean_ms"],
        "event_paired_median_added_ms": statistics.median(ev),
        "event_paired_p99_added_ms": pct(ev, 99),
        "event_paired_mean_added_ms": statistics.fmean(ev),
    }

    print("\n| path | TTFT p50 ms | TTFT p99 ms | gap mean ms | gap p50 ms | gap p99 ms | gap max ms | e2e mean ms | content events |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, s in summ.items():
        print("| %s | %.3f | %.3f | %.4f | %.3f | %.3f | %.3f | %.1f | %.0f |" % (
            k, s["ttft_p50_ms"], s["ttft_p99_ms"], s["gap_mean_ms"], s["gap_p50_ms"], s["gap_p99_ms"],
            s["gap_max_ms"], s["e2e_mean_ms"], s["events_mean"]))
    print("\nadded by brownout: TTFT p50 %+.3f ms, p99 %+.3f ms (paired median %+.3f ms, paired p99 %+.3f ms); "
          "per event %+.4f ms mean (gap p99 %+.3f ms); e2e %+.2f ms mean"
          % (added["ttft_p50_added_ms"], added["ttft_p99_added_ms"], added["ttft_paired_median_added_ms"],
             added["ttft_paired_p99_added_ms"], added["per_event_added_ms"], added["gap_p99_added_ms"],
             added["e2e_mean_added_ms"]))
    print("per-event added latency (same event index, paired requests, %d events): median %+.3f ms, p99 %+.3f ms, mean %+.3f ms"
          % (len(ev), added["event_paired_median_added_ms"], added["event_paired_p99_added_ms"],
             added["event_paired_mean_added_ms"]))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            runs = {k: [{kk: vv for kk, vv in r.items() if kk not in ("gaps_ms", "offsets_ms")} for r in rs]
                    for k, rs in res.items()}
            json.dump({"args": vars(a), "summary": summ, "added": added, "runs": runs}, f, indent=1)
        print(f"raw numbers: {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
