#!/usr/bin/env python3
"""Memory per idle keep-alive connection of proxies, with many connections (asyncio).

usage: idle_conns.py N NAME:PORT:PID[:N] [NAME:PORT:PID[:N] ...]   (a per-target N overrides)

For each target in turn: one warm-up exchange, then the memory of PID's process
tree (RSS and PSS from /proc/PID/smaps_rollup, summed over the tree); then open N
keep-alive connections to 127.0.0.1:PORT (CONCURRENCY at a time), send one
`GET /` on each and read the whole response, so the proxy has set up its
per-connection state, and keep them open. Memory is sampled when half are open and
when all are, after IDLE_S seconds of idling. Then every connection is closed with
an RST (SO_LINGER 0), so no TIME_WAIT is left to eat the ephemeral ports the next
target needs.

Per target it reports the growth per connection over all N (before -> all open)
and the marginal growth per connection over the second half (half -> all open),
which leaves out one-off costs such as allocator arenas or thread caches touched
by the first connections. JSON list on stdout; progress on stderr.

Environment: CONCURRENCY [64] connections being opened at once, IDLE_S [2].
"""
import asyncio
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_mem import mem_kib, tree  # noqa: E402  (the same /proc readers)

REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle-conns\r\n\r\n"


def fds(pid):
    n = 0
    for p in tree(pid):
        try:
            n += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return n


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if length is not None:
        await reader.readexactly(length)
    elif chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def open_one(port, conns, errors):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQ)
        await writer.drain()
        status = await asyncio.wait_for(read_response(reader), 30)
        if b" 200" not in status:
            raise RuntimeError(f"status {status!r}")
        conns.append((reader, writer))
    except Exception as e:  # noqa: BLE001 - counted and reported
        errors.append(repr(e))


async def open_many(port, n, conns, errors, concurrency):
    sem = asyncio.Semaphore(concurrency)

    async def guarded():
        async with sem:
            await open_one(port, conns, errors)

    await asyncio.gather(*(guarded() for _ in range(n)))


def close_all(conns):
    for _, w in conns:
        sock = w.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        w.close()


async def measure(name, port, pid, n, concurrency, idle_s):
    # Warm-up: lazily built state (pools, tables) is not counted.
    conns, errors = [], []
    await open_one(port, conns, errors)
    if errors:
        raise SystemExit(f"{name}: warm-up request failed: {errors[0]}")
    close_all(conns)
    await asyncio.sleep(0.5)
    pss0, rss0 = mem_kib(pid)
    fd0 = fds(pid)
    conns, errors = [], []
    t0 = time.monotonic()
    half = n // 2
    await open_many(port, half, conns, errors, concurrency)
    await asyncio.sleep(idle_s)
    pss_h, rss_h = mem_kib(pid)
    n_half = len(conns)
    await open_many(port, n - half, conns, errors, concurrency)
    open_s = time.monotonic() - t0
    await asyncio.sleep(idle_s)
    pss1, rss1 = mem_kib(pid)
    fd1 = fds(pid)
    n_all = len(conns)
    close_all(conns)
    await asyncio.sleep(1.0)
    pss2, rss2 = mem_kib(pid)
    second = max(n_all - n_half, 1)
    r = {
        "target": name,
        "idle_conns": n_all,
        "asked": n,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "open_s": round(open_s, 2),
        "rss_before_kib": rss0, "rss_half_kib": rss_h, "rss_after_kib": rss1, "rss_closed_kib": rss2,
        "pss_before_kib": pss0, "pss_half_kib": pss_h, "pss_after_kib": pss1, "pss_closed_kib": pss2,
        "fds_before": fd0, "fds_after": fd1,
        "rss_bytes_per_conn": (rss1 - rss0) * 1024 / max(n_all, 1),
        "pss_bytes_per_conn": (pss1 - pss0) * 1024 / max(n_all, 1),
        "rss_bytes_per_conn_marginal": (rss1 - rss_h) * 1024 / second,
        "pss_bytes_per_conn_marginal": (pss1 - pss_h) * 1024 / second,
    }
    print("  %-18s %6d open (%d errors) in %.1fs: PSS %7d -> %7d KiB = %5.1f KiB/conn "
          "(2nd half %5.1f); RSS %5.1f KiB/conn; fds %d -> %d"
          % (name, n_all, len(errors), open_s, pss0, pss1, r["pss_bytes_per_conn"] / 1024,
             r["pss_bytes_per_conn_marginal"] / 1024, r["rss_bytes_per_conn"] / 1024, fd0, fd1),
          file=sys.stderr)
    if errors:
        print(f"  {name}: first error: {errors[0]}", file=sys.stderr)
    return r


async def main():
    n = int(sys.argv[1])
    concurrency = int(os.environ.get("CONCURRENCY", "64"))
    idle_s = float(os.environ.get("IDLE_S", "2"))
    results = []
    for spec in sys.argv[2:]:
        name, port, pid, *own_n = spec.split(":")
        results.append(await measure(name, int(port), int(pid), int(own_n[0]) if own_n else n,
                                     concurrency, idle_s))
        await asyncio.sleep(1.0)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
