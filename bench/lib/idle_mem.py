#!/usr/bin/env python3
"""Memory per idle keep-alive connection of a proxy.

usage: idle_mem.py N NAME:PORT:PID [NAME:PORT:PID ...]

For each target: sum PSS (and RSS) over the process tree of PID, open N keep-alive
connections to 127.0.0.1:PORT, send one GET / on each and read the whole response
(so the proxy has set up its per-connection state), wait a second, measure again,
close them. Prints a JSON list on stdout; progress on stderr.
"""
import json
import os
import socket
import sys
import time


def tree(pid):
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for c in f.read().split():
                    out.extend(tree(int(c)))
    except OSError:
        pass
    return out


def mem_kib(pid):
    """(PSS, RSS) in KiB summed over the process tree."""
    pss = rss = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return pss, rss


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    if length is None:  # chunked: read until the terminating chunk
        while not body.endswith(b"0\r\n\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            body += chunk
    else:
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            body += chunk
    return head.split(b"\r\n")[0]


def main():
    n = int(sys.argv[1])
    results = []
    for spec in sys.argv[2:]:
        name, port, pid = spec.split(":")
        port, pid = int(port), int(pid)
        req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle-mem\r\n\r\n"
        # one warm-up exchange so lazily built state (pools, tables) is not counted
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(req)
            read_response(s)
        time.sleep(0.5)
        pss0, rss0 = mem_kib(pid)
        socks = []
        try:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(req)
                status = read_response(s)
                if b" 200 " not in status + b" ":
                    raise RuntimeError(f"{name}: {status!r}")
                socks.append(s)
            time.sleep(1.0)
            pss1, rss1 = mem_kib(pid)
        finally:
            for s in socks:
                s.close()
        time.sleep(1.0)
        r = {
            "target": name,
            "idle_conns": n,
            "pss_before_kib": pss0,
            "pss_after_kib": pss1,
            "rss_before_kib": rss0,
            "rss_after_kib": rss1,
            "pss_bytes_per_conn": (pss1 - pss0) * 1024 / n,
            "rss_bytes_per_conn": (rss1 - rss0) * 1024 / n,
        }
        print("  %-18s PSS %6d -> %6d KiB: %6.1f KiB per idle connection"
              % (name, pss0, pss1, r["pss_bytes_per_conn"] / 1024), file=sys.stderr)
        results.append(r)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
