#!/usr/bin/env python3
"""Summarize passthrough.sh runs: medians per target and mode, ratios vs nginx.

usage: summarize.py RESULTS.jsonl IDLE.json SYSCALLS.jsonl OUT.json key=value...
       summarize.py --from bench/out/passthrough-<date>.json   (re-print the tables)
Prints markdown tables on stdout and writes OUT.json (meta, summary, idle, raw runs).
"""
import json
import statistics
import sys


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    if sys.argv[1] == "--from":  # re-print the tables of an earlier run's JSON
        old = json.load(open(sys.argv[2]))
        runs, idle, syscalls, meta, out_path = old["runs"], old["idle"], old.get("syscalls", []), old["meta"], None
    else:
        runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
        idle = json.load(open(sys.argv[2]))
        syscalls = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
        out_path = sys.argv[4]
        meta = dict(kv.split("=", 1) for kv in sys.argv[5:])

    targets = []
    for r in runs:
        if r["target"] not in targets:
            targets.append(r["target"])
    summary = {}
    for mode in ("saturation", "fixed-rate"):
        rows = {}
        for t in targets:
            rs = [r for r in runs if r["target"] == t and r["mode"] == mode]
            if not rs:
                continue
            rows[t] = {
                "rounds": len(rs),
                "rps": med(r["rps"] for r in rs),
                "p50_ms": med(r["lat_p50_us"] / 1e3 for r in rs),
                "p99_ms": med(r["lat_p99_us"] / 1e3 for r in rs),
                "proxy_cpu_us_per_req": med(r["proxy_cpu_us_per_req"] for r in rs),
                "upstream_cpu_us_per_req": med(r["upstream_cpu_us_per_req"] for r in rs),
                "ctx_switches_per_req": med(r.get("proxy_ctx_switches_per_req") for r in rs),
                "user_us_per_req": med(r.get("proxy_user_us_per_req") for r in rs),
                "sys_us_per_req": med(r.get("proxy_sys_us_per_req") for r in rs),
                "errors": sum(r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + r["err_timeout"] for r in rs),
            }
        ng = rows.get("nginx")
        for t, row in rows.items():
            # Rounds interleave the targets, so a ratio within one round compares runs
            # that are close in time; the median of those is robust to noise that
            # drifts between rounds.
            per_round_rps, per_round_cpu = [], []
            for r in runs:
                if r["target"] != t or r["mode"] != mode:
                    continue
                n = next((x for x in runs if x["target"] == "nginx" and x["mode"] == mode
                          and x["round"] == r["round"]), None)
                if n and n["rps"]:
                    per_round_rps.append(r["rps"] / n["rps"])
                if n and n.get("proxy_cpu_us_per_req") and r.get("proxy_cpu_us_per_req") is not None:
                    per_round_cpu.append(r["proxy_cpu_us_per_req"] / n["proxy_cpu_us_per_req"])
            row["rps_vs_nginx_per_round"] = per_round_rps
            row["cpu_vs_nginx_per_round"] = per_round_cpu
            row["rps_vs_nginx_round_median"] = med(per_round_rps)
            row["cpu_vs_nginx_round_median"] = med(per_round_cpu)
            row["rps_vs_nginx"] = row["rps"] / ng["rps"] if ng and ng["rps"] else None
            row["p50_vs_nginx"] = row["p50_ms"] / ng["p50_ms"] if ng and ng["p50_ms"] else None
            row["p99_vs_nginx"] = row["p99_ms"] / ng["p99_ms"] if ng and ng["p99_ms"] else None
            row["cpu_vs_nginx"] = (row["proxy_cpu_us_per_req"] / ng["proxy_cpu_us_per_req"]
                                   if ng and ng["proxy_cpu_us_per_req"] and row["proxy_cpu_us_per_req"] is not None else None)
        summary[mode] = rows

    for mode, rows in summary.items():
        title = "saturation (wrk -c%s)" % meta.get("conns", "?") if mode == "saturation" else \
            "fixed rate %s req/s (%s x nginx saturation)" % (meta.get("fixed_rate", "?"), meta.get("rate_fraction", "?"))
        print(f"\n### {title}\n")
        print("| target | req/s | ratio vs nginx | p50 ms | p99 ms | p99 vs nginx | CPU µs/request (user+sys) | ratio vs nginx | ctx switches/request | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for t, r in rows.items():
            cpu = fmt(r["proxy_cpu_us_per_req"], ".1f")
            if r["user_us_per_req"] is not None:
                cpu += " (%.1f + %.1f)" % (r["user_us_per_req"], r["sys_us_per_req"])
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                t, fmt(r["rps"], ".0f"), fmt(r["rps_vs_nginx_round_median"], ".2f"), fmt(r["p50_ms"], ".3f"),
                fmt(r["p99_ms"], ".3f"), fmt(r["p99_vs_nginx"], ".2f"), cpu,
                fmt(r["cpu_vs_nginx_round_median"], ".2f"), fmt(r["ctx_switches_per_req"], ".2f"), r["errors"]))
        print("\nMedians over %d round(s); ratios are medians of per-round ratios (targets interleaved within a round)."
              % max(r["rounds"] for r in rows.values()))
    rule_targets = [t for t in targets if t.startswith("brownout-") and t.endswith("-rules")]
    if "brownout" in targets and rule_targets:
        print("\n### cost of non-matching rules (vs brownout with no profile, same round)\n")
        print("| target | mode | req/s ratio | throughput change | CPU/request ratio | CPU change | < 5% throughput cost |")
        print("|---|---|---:|---:|---:|---:|---|")
        rules_cost = {}
        for t in rule_targets:
            for mode in ("saturation", "fixed-rate"):
                rps_r, cpu_r = [], []
                for r in runs:
                    if r["target"] != t or r["mode"] != mode:
                        continue
                    b = next((x for x in runs if x["target"] == "brownout" and x["mode"] == mode
                              and x["round"] == r["round"]), None)
                    if b and b["rps"]:
                        rps_r.append(r["rps"] / b["rps"])
                    if b and b.get("proxy_cpu_us_per_req") and r.get("proxy_cpu_us_per_req") is not None:
                        cpu_r.append(r["proxy_cpu_us_per_req"] / b["proxy_cpu_us_per_req"])
                if not rps_r:
                    continue
                rr, cr = med(rps_r), med(cpu_r)
                rules_cost.setdefault(t, {})[mode] = {"rps_ratio": rr, "cpu_ratio": cr,
                                                      "rps_ratio_per_round": rps_r, "cpu_ratio_per_round": cpu_r}
                # At a fixed rate throughput is pinned: the CPU ratio is the cost there.
                cost = (1 - rr) if mode == "saturation" else ((cr - 1) if cr is not None else None)
                verdict = "-" if cost is None else ("yes" if cost < 0.05 else "no")
                print("| %s | %s | %.3f | %+.1f%% | %s | %s | %s |" % (
                    t, mode, rr, (rr - 1) * 100, fmt(cr, ".3f"),
                    "-" if cr is None else "%+.1f%%" % ((cr - 1) * 100), verdict))
        print("\nMedians of per-round ratios. At saturation the cost is the throughput lost; at a fixed rate "
              "(throughput pinned) it is the extra CPU per request. On a shared 2-core machine a single "
              "round moves by ±10%: use REPEAT=3 or more before reading a 5% difference.")
        summary["rules_cost"] = rules_cost
    if idle:
        ng = next((i for i in idle if i["target"] == "nginx"), None)
        print(f"\n### memory per idle keep-alive connection ({idle[0]['idle_conns']} connections)\n")
        print("| target | PSS before (KiB) | PSS after (KiB) | KiB per idle connection | ratio vs nginx |")
        print("|---|---:|---:|---:|---:|")
        for i in idle:
            ratio = i["pss_bytes_per_conn"] / ng["pss_bytes_per_conn"] if ng and ng["pss_bytes_per_conn"] > 0 else None
            print("| %s | %d | %d | %.1f | %s |" % (i["target"], i["pss_before_kib"], i["pss_after_kib"],
                                                   i["pss_bytes_per_conn"] / 1024, fmt(ratio, ".2f")))
    if syscalls:
        names = ["all", "futex", "writev", "write", "sendto", "recvfrom", "read", "epoll_wait", "epoll_pwait", "epoll_ctl"]
        print(f"\n### syscalls per request at {meta.get('fixed_rate', '?')} req/s (perf stat tracepoints)\n")
        print("| target | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for sc in syscalls:
            print("| %s | %s |" % (sc["target"], " | ".join("%.2f" % sc["per_request"].get(n, 0) for n in names)))
    if out_path is None:
        return
    with open(out_path, "w") as f:
        json.dump({"meta": meta, "summary": summary, "idle": idle, "syscalls": syscalls, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
