#!/usr/bin/env python3
"""Where brownout's CPU goes, by category, from a perf recording with call graphs.

usage: perf script -i perf.data -F comm,tid,ip,sym | bench/lib/perf_breakdown.py

Each sample is put in the first category (in the order below) that one of its stack
frames matches, so the shares add up to 100%. The categories are chosen to separate
what every proxy must pay (socket reads/writes, HTTP parsing) from brownout's own
work (recording, metrics, cross-thread wake-ups).
"""
import re
import sys
from collections import Counter

# (category, thread-name regex or None, frame regex); first match wins.
RULES = [
    ("recorder thread: futex wait/park", r"brownout-record", r"futex_wait|park_timeout|Parker|schedule"),
    ("recorder thread: metrics.observe", r"brownout-record", r"brownout::metrics::"),
    ("recorder thread: free records / recent ring", r"brownout-record", r"drop_in_place<.*Record|cfree|_int_free|VecDeque"),
    ("recorder thread: other", r"brownout-record", r"."),
    ("Recorder::submit (channel send + futex wake of recorder)", None, r"brownout::record::Recorder::submit|Recorder>::submit|record::Recorder::submit"),
    ("tokio worker park/unpark (futex, epoll_wait idle)", None, r"multi_thread::park|multi_thread::idle|Parker|unpark|notify_parked|futex_wait|futex_wake|park_timeout|epoll_wait"),
    ("socket write (writev/sendmsg incl. loopback delivery)", None, r"writev|sendmsg|__send\b|__libc_send|sendto"),
    ("socket read (recv/read)", None, r"__libc_recv|recvfrom|\bread\b|__GI___libc_read|tcp_recvmsg|sock_read_iter"),
    ("epoll/IO driver", None, r"tokio::runtime::io::driver|mio::poll|epoll_ctl"),
    ("HTTP/1 parse (httparse, hyper parse)", None, r"httparse|Http1Transaction>::parse|role::parse_headers|header::name::parse_hdr"),
    ("HTTP/1 encode (hyper encode)", None, r"Http1Transaction>::encode|role::.*encode|write_headers"),
    ("brownout Exchange/record build + drop", None, r"brownout::exchange::|blank_record|brownout::record::"),
    ("brownout ProxyBody (response wrapper)", None, r"brownout::body::"),
    ("brownout service::handle (classify, profile load, forward)", None, r"brownout::service::"),
    ("hyper client pool / dispatch", None, r"hyper_util::client::legacy|hyper::client|want::|pool::"),
    ("hyper server dispatch", None, r"hyper::proto::h1::dispatch|hyper::proto::h1::conn|hyper_util::server"),
    ("malloc/free (other)", None, r"malloc|_int_free|cfree|realloc"),
    ("tokio scheduler (other)", None, r"tokio::runtime"),
    ("other", None, r"."),
]
COMPILED = [(n, re.compile(t) if t else None, re.compile(f)) for n, t, f in RULES]


def strip_generics(name):
    """Drop generic arguments (`f<T, U>` -> `f`), keep `<A as B>::` qualifiers, so a
    type that only appears as a generic argument does not match."""
    out, depth, i = [], 0, 0
    while i < len(name):
        c = name[i]
        if c == "<" and (depth > 0 or (i > 0 and (name[i - 1].isalnum() or name[i - 1] in "_"))):
            depth += 1
        elif c == ">" and depth > 0:
            depth -= 1
        elif depth == 0:
            out.append(c)
        i += 1
    return "".join(out)


def samples(lines):
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
            continue
        if not line.startswith(("\t", " ")):
            if comm is not None:
                yield comm, frames
            comm, frames = line.split()[0] if line.split() else "?", []
        else:
            parts = line.strip().split(None, 1)
            frames.append(strip_generics(parts[1]) if len(parts) > 1 else "")
    if comm is not None:
        yield comm, frames


def main():
    counts, total = Counter(), 0
    for comm, frames in samples(sys.stdin):
        total += 1
        for name, tre, fre in COMPILED:
            if tre is not None and not tre.search(comm):
                continue
            if any(fre.search(f) for f in frames) or (fre.pattern == "." and tre is not None):
                counts[name] += 1
                break
        else:
            counts["other"] += 1
    print(f"{total} samples")
    print("| category | share of brownout CPU |")
    print("|---|---:|")
    for name, _, _ in RULES:
        if counts[name]:
            print(f"| {name} | {100 * counts[name] / total:.1f}% |")


if __name__ == "__main__":
    main()
