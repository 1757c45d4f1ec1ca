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

With --nginx (the default when nginx is installed) the same requests also go through
nginx as a streaming reverse proxy (proxy_buffering off, keep-alive upstream), as a
reference for what any proxy hop adds on this machine.

usage: bench/stream_ttft.py [--brownout PATH] [-n 30] [--max-tokens 500]
                            [--ttft 20ms] [--itl 2ms] [--no-nginx] [--json OUT.json]
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import shutil
import subprocess
import sys
import tempfile
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
    ap.add_argument("--no-nginx", action="store_true", help="skip the nginx reference path")
    a = ap.parse_args()
    if not os.access(a.brownout, os.X_OK):
        raise SystemExit(f"stream_ttft.py: no brownout binary at {a.brownout} (cargo build --release -p brownout)")

    env = {k: v for k, v in os.environ.items() if not k.startswith("BROWNOUT_")}
    procs = []
    tmp = tempfile.mkdtemp(prefix="brownout-ttft.")
    use_nginx = not a.no_nginx and shutil.which("nginx") is not None
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
        if use_nginx:
            ng_port = free_port()
            user = "user root;" if os.geteuid() == 0 else ""
            conf = f"""{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;
  uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  upstream sim {{ server 127.0.0.1:{sim_port}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{ng_port};
    location / {{
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
            with open(os.path.join(tmp, "nginx.conf"), "w") as f:
                f.write(conf)
            ng = subprocess.Popen(["nginx", "-p", tmp, "-c", os.path.join(tmp, "nginx.conf")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(ng)
            wait_port(ng_port, ng, "nginx")
            clients["nginx"] = Client(ng_port, a.max_tokens)
        for _ in range(a.warmup):
            for c in clients.values():
                c.one()
        res = {k: [] for k in clients}
        print(f"{a.n} streamed requests per path, max_tokens {a.max_tokens}, sim ttft {a.ttft} itl {a.itl}",
              file=sys.stderr)
        names = list(clients)
        for i in range(a.n):
            # rotate the order so no path always goes first
            order = names[i % len(names):] + names[:i % len(names)]
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
        shutil.rmtree(tmp, ignore_errors=True)

    summ = {}
    for k, rs in res.items():
        ttft = [r["ttft_ms"] for r in rs]
        gaps = [g for r in rs for g in r["gaps_ms"]]
        summ[k] = {
            "ttft_p50_ms": pct(ttft, 50), "ttft_p99_ms": pct(ttft, 99), "ttft_mean_ms": statistics.fmean(ttft),
            "gap_mean_ms": statistics.fmean(gaps), "gap_p50_ms": pct(gaps, 50), "gap_p99_ms": pct(gaps, 99),
            "gap_max_ms": max(gaps), "gaps_over_10ms": sum(1 for g in gaps if g > 10.0),
            "gaps_total": len(gaps), "e2e_mean_ms": statistics.fmean(r["e2e_ms"] for r in rs),
            "events_mean": statistics.fmean(r["events"] for r in rs),
        }
    def added_by(path):
        d, b = summ["direct"], summ[path]
        pair = [y["ttft_ms"] - x["ttft_ms"] for x, y in zip(res["direct"], res[path])]
        ev = [ob - od for x, y in zip(res["direct"], res[path])
              for od, ob in zip(x["offsets_ms"], y["offsets_ms"])]
        return {
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
            "events_compared": len(ev),
        }
    added = {k: added_by(k) for k in res if k != "direct"}

    print("\n| path | TTFT p50 ms | TTFT p99 ms | gap mean ms | gap p50 ms | gap p99 ms | gap max ms | gaps > 10 ms | e2e mean ms | content events |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, s in summ.items():
        print("| %s | %.3f | %.3f | %.4f | %.3f | %.3f | %.3f | %d of %d | %.1f | %.0f |" % (
            k, s["ttft_p50_ms"], s["ttft_p99_ms"], s["gap_mean_ms"], s["gap_p50_ms"], s["gap_p99_ms"],
            s["gap_max_ms"], s["gaps_over_10ms"], s["gaps_total"], s["e2e_mean_ms"], s["events_mean"]))
    print("\n| added vs direct | TTFT p50 diff | TTFT p99 diff | TTFT paired median | TTFT paired p99 | "
          "mean gap diff (per event) | per-event paired median | per-event paired p99 | per-event paired mean | e2e mean diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, x in added.items():
        print("| %s | %+.3f ms | %+.3f ms | %+.3f ms | %+.3f ms | %+.4f ms | %+.3f ms | %+.3f ms | %+.3f ms | %+.2f ms |" % (
            k, x["ttft_p50_added_ms"], x["ttft_p99_added_ms"], x["ttft_paired_median_added_ms"],
            x["ttft_paired_p99_added_ms"], x["per_event_added_ms"], x["event_paired_median_added_ms"],
            x["event_paired_p99_added_ms"], x["event_paired_mean_added_ms"], x["e2e_mean_added_ms"]))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            runs = {k: [{kk: vv for kk, vv in r.items() if kk not in ("gaps_ms", "offsets_ms")} for r in rs]
                    for k, rs in res.items()}
            json.dump({"args": vars(a), "summary": summ, "added": added, "runs": runs}, f, indent=1)
        print(f"raw numbers: {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
