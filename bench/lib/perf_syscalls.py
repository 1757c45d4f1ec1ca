#!/usr/bin/env python3
"""Turn a `perf stat -x,` syscall count file into syscalls per request (one JSON line).

usage: perf_syscalls.py TARGET WRK_SUMMARY_JSON PERF_STAT_CSV
"""
import json
import sys


def main():
    target, wrk, path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    n = max(wrk["requests"], 1)
    per = {}
    for line in open(path):
        f = line.strip().split(",")
        if len(f) < 3 or not f[0].strip().isdigit():
            continue
        event = f[2]
        name = "all" if event.endswith("raw_syscalls:sys_enter") else event.split("sys_enter_")[-1]
        per[name] = int(f[0]) / n
    print(json.dumps({"target": target, "requests": wrk["requests"], "per_request": per}))
    print("  %-18s %5.1f syscalls/request (futex %.2f, writev %.2f)"
          % (target, per.get("all", 0), per.get("futex", 0), per.get("writev", 0)), file=sys.stderr)


if __name__ == "__main__":
    main()
