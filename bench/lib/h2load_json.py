#!/usr/bin/env python3
"""One h2load run as one JSON line.

    h2load_json.py H2LOAD_STDOUT LOG_FILE [KEY=VALUE ...]

H2LOAD_STDOUT is what h2load printed; LOG_FILE is its --log-file (one line per
request: start time in µs since the epoch, HTTP status, µs until the end of the
response). h2load's own summary gives only min/max/mean/sd of the request time, so
the percentiles are computed here from the log (nearest rank). KEY=VALUE pairs are
added to the object as they are (numbers as numbers).
"""
import json
import re
import sys

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def dur_us(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def main():
    out_text = open(sys.argv[1], errors="replace").read()
    r = {}
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out_text)
    if not m:
        sys.exit("h2load_json: no 'finished in' line in h2load's output:\n" + out_text[-2000:])
    r["finished_s"], r["rps"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out_text)
    for k, v in zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"),
                    m.groups() if m else [0] * 7):
        r["req_" + k] = int(v)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out_text)
    for k, v in zip(("2xx", "3xx", "4xx", "5xx"), m.groups() if m else [0] * 4):
        r["status_" + k] = int(v)
    m = re.search(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?\((\d+)\) data", out_text)
    if m:
        r["bytes_total"], r["bytes_headers"], r["bytes_data"] = map(int, m.groups())
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out_text)
    if m:
        r["h2load_min_us"], r["h2load_max_us"], r["h2load_mean_us"], r["h2load_sd_us"] = map(dur_us, m.groups())

    lat, statuses = [], {}
    for line in open(sys.argv[2]):
        f = line.split("\t")
        if len(f) < 3:
            continue
        statuses[f[1]] = statuses.get(f[1], 0) + 1
        lat.append(int(f[2]))
    lat.sort()
    r["log_requests"] = len(lat)
    r["log_statuses"] = statuses
    r["log_non200"] = sum(n for s, n in statuses.items() if s != "200")
    for p in (50, 90, 99, 99.9):
        r["lat_p%s_us" % str(p).replace(".", "")] = pct(lat, p)
    r["lat_mean_us"] = sum(lat) / len(lat) if lat else None
    r["lat_max_us"] = lat[-1] if lat else None

    for kv in sys.argv[3:]:
        k, _, v = kv.partition("=")
        try:
            v = int(v)
        except ValueError:
            try:
                v = float(v)
            except ValueError:
                pass
        r[k] = v
    print(json.dumps(r))


if __name__ == "__main__":
    main()
