#!/usr/bin/env python3
"""Tables and JSON for bench/h2_passthrough.sh.

    h2_summarize.py RESULTS.jsonl CHECKS.jsonl OUT.json [KEY=VALUE ...]

RESULTS: one line per h2load run (bench/lib/h2load_json.py plus the script's CPU,
context-switch and connection counters). Medians over rounds; ratios and added
latencies are taken per round (same round, so the same machine state) and then the
median of those, with their range across rounds as the noise.
"""
import json
import statistics
import sys

REF = "nginx-grpc_pass"


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def rng(v):
    v = [x for x in v if x is not None]
    return (min(v), max(v)) if v else (None, None)


def derive(r):
    n = max(r["req_succeeded"], 1)
    direct = r["target"] == "direct"
    r["proxy_cpu_us_per_req"] = None if direct else r["proxy_ticks"] / r["clk_tck"] * 1e6 / n
    r["proxy_ctxsw_per_req"] = None if direct else r["proxy_ctxsw"] / n
    r["upstream_cpu_us_per_req"] = r["upstream_ticks"] / r["clk_tck"] * 1e6 / n
    r["upstream_connects"] = None if direct else r["upstream_accepts"]
    r["bad"] = (r["req_failed"] + r["req_errored"] + r["req_timeout"] + r["status_4xx"]
                + r["status_5xx"] + r["log_non200"])
    return r


def per_round(runs, shape, target, ref, f):
    """f(target run, ref run) for each round both ran in."""
    out = []
    for rnd in sorted({r["round"] for r in runs}):
        a = [r for r in runs if r["shape"] == shape and r["target"] == target and r["round"] == rnd]
        b = [r for r in runs if r["shape"] == shape and r["target"] == ref and r["round"] == rnd]
        if a and b:
            try:
                out.append(f(a[0], b[0]))
            except (TypeError, ZeroDivisionError):
                pass
    return out


def fmt(x, spec="%.1f"):
    return "-" if x is None else spec % x


def fmt_r(vals, spec="%.2f", suffix="x"):
    if not vals:
        return "-"
    lo, hi = rng(vals)
    m = med(vals)
    if len(vals) == 1:
        return (spec % m) + suffix
    return "%s%s (%s–%s)" % (spec % m, suffix, spec % lo, spec % hi)


def main():
    runs = [derive(json.loads(l)) for l in open(sys.argv[1])]
    checks = [json.loads(l) for l in open(sys.argv[2])]
    out_path = sys.argv[3]
    meta = dict(kv.split("=", 1) for kv in sys.argv[4:])
    summary = {"get": {}, "unary": {}, "stream": {}}
    lines = []
    verdicts = []

    targets_in = lambda shape: [t for t in dict.fromkeys(r["target"] for r in runs if r["shape"] == shape)]

    # Part 1
    if targets_in("get"):
        rounds = len({r["round"] for r in runs if r["shape"] == "get"})
        lines.append("")
        lines.append("HTTP/2 pass-through: GET / over h2c, h2load -c%s -m%s, %s s per run; medians of %d round(s);"
                     % (meta.get("conns"), meta.get("streams"), meta.get("dur_s"), rounds))
        lines.append("ratios are per-round ratios to %s (median, range across rounds)" % REF)
        lines.append("")
        lines.append("| target | req/s | req/s vs %s | p50 ms | p99 ms | proxy CPU µs/req | CPU vs %s | ctx sw/req | upstream conns (mid-run) | upstream connects/run | bad |" % (REF, REF))
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for t in targets_in("get"):
            rs = [r for r in runs if r["shape"] == "get" and r["target"] == t]
            rps_ratio = per_round(runs, "get", t, REF, lambda a, b: a["rps"] / b["rps"])
            cpu_ratio = per_round(runs, "get", t, REF, lambda a, b: a["proxy_cpu_us_per_req"] / b["proxy_cpu_us_per_req"])
            s = dict(rps=med([r["rps"] for r in rs]),
                     rps_vs_ref=med(rps_ratio), rps_vs_ref_range=rng(rps_ratio),
                     p50_ms=med([r["lat_p50_us"] / 1e3 for r in rs]),
                     p99_ms=med([r["lat_p99_us"] / 1e3 for r in rs]),
                     cpu_us_per_req=med([r["proxy_cpu_us_per_req"] for r in rs]),
                     cpu_vs_ref=med(cpu_ratio), cpu_vs_ref_range=rng(cpu_ratio),
                     ctxsw_per_req=med([r["proxy_ctxsw_per_req"] for r in rs]),
                     upstream_conns_mid=med([r["upstream_conns_mid"] if t != "direct" else None for r in rs]),
                     upstream_connects=med([r["upstream_connects"] for r in rs]),
                     bad=sum(r["bad"] for r in rs),
                     rps_rounds=[round(r["rps"]) for r in rs])
            summary["get"][t] = s
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                t, fmt(s["rps"], "%.0f"), "-" if t in (REF, "direct") else fmt_r(rps_ratio),
                fmt(s["p50_ms"], "%.2f"), fmt(s["p99_ms"], "%.2f"), fmt(s["cpu_us_per_req"]),
                "-" if t in (REF, "direct") else fmt_r(cpu_ratio), fmt(s["ctxsw_per_req"], "%.2f"),
                fmt(s["upstream_conns_mid"], "%.0f"), fmt(s["upstream_connects"], "%.0f"), s["bad"]))
        if "brownout" in summary["get"] and REF in summary["get"]:
            x = summary["get"]["brownout"]["rps_vs_ref"]
            if x is not None:
                verdicts.append("throughput brownout / %s: %.2fx (target >= 1.0x: %s; goal 2x: %s)"
                                % (REF, x, "PASS" if x >= 1.0 else "FAIL", "met" if x >= 2.0 else "not met"))

    # Part 2
    for shape in ("unary", "stream"):
        ts = targets_in(shape)
        if not ts:
            continue
        rounds = len({r["round"] for r in runs if r["shape"] == shape})
        lines.append("")
        lines.append("gRPC %s (%s): h2load -c%s -m1 --rps %s per connection, %s s per run; medians of %d round(s);"
                     % (shape, "1 message" if shape == "unary" else "%s messages of %s B" % (meta.get("grpc_stream_msgs"), meta.get("grpc_msg_bytes")),
                        meta.get("grpc_conns"), meta.get("grpc_rps_per_conn"), meta.get("grpc_dur_s"), rounds))
        lines.append("added = target minus direct in the same round (median, range across rounds)")
        lines.append("")
        lines.append("| target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | proxy CPU µs/req | upstream conns (mid-run) | bad |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for t in ts:
            rs = [r for r in runs if r["shape"] == shape and r["target"] == t]
            a50 = per_round(runs, shape, t, "direct", lambda a, b: (a["lat_p50_us"] - b["lat_p50_us"]) / 1e3)
            a99 = per_round(runs, shape, t, "direct", lambda a, b: (a["lat_p99_us"] - b["lat_p99_us"]) / 1e3)
            s = dict(rps=med([r["rps"] for r in rs]),
                     p50_ms=med([r["lat_p50_us"] / 1e3 for r in rs]),
                     p99_ms=med([r["lat_p99_us"] / 1e3 for r in rs]),
                     added_p50_ms=med(a50) if t != "direct" else None, added_p50_range=rng(a50),
                     added_p99_ms=med(a99) if t != "direct" else None, added_p99_range=rng(a99),
                     cpu_us_per_req=med([r["proxy_cpu_us_per_req"] for r in rs]),
                     upstream_conns_mid=med([r["upstream_conns_mid"] if t != "direct" else None for r in rs]),
                     bad=sum(r["bad"] for r in rs))
            summary[shape][t] = s
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                t, fmt(s["rps"], "%.0f"), fmt(s["p50_ms"], "%.3f"), fmt(s["p99_ms"], "%.3f"),
                "-" if t == "direct" else fmt_r(a50, "%+.3f", ""), "-" if t == "direct" else fmt_r(a99, "%+.3f", ""),
                fmt(s["cpu_us_per_req"]), "-" if t == "direct" else fmt(s["upstream_conns_mid"], "%.0f"), s["bad"]))
        if "brownout" in summary[shape]:
            x = summary[shape]["brownout"]["added_p99_ms"]
            if x is not None:
                verdicts.append("gRPC %s added p99 through brownout: %+.3f ms (target < 1 ms: %s)"
                                % (shape, x, "PASS" if x < 1.0 else "FAIL"))

    bad = sum(r["bad"] for r in runs)
    verdicts.append("requests failed or non-2xx over all runs: %d%s" % (bad, "" if bad == 0 else "  <-- FAIL"))
    verdicts.append("checks before load (status 200, content-type, body byte for byte, grpc-status 0 trailer): %s"
                    % ("all passed" if all(c["ok"] for c in checks) else "FAILED"))
    lines.append("")
    lines += verdicts
    print("\n".join(lines))
    json.dump(dict(meta=meta, checks=checks, summary=summary, verdicts=verdicts, runs=runs),
              open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
