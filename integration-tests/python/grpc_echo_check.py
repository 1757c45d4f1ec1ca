"""grpcio's own client against grpc_echo_server.py (integration-tests/tests/grpc_real.rs).

    grpc_echo_check.py HOST:PORT CASE... [--repeat N] [--parallel P]
                       [--fresh-channel] [--timeout S] [--summary-only]

Cases:
    unary            Unary, a 16-byte payload
    unary_big        Unary, a 1 MiB payload each way
    server_stream    ServerStream: 5 messages 50 ms apart, 64 bytes each
    client_stream    ClientStream: 10 messages of 0..9 KiB
    bidi             Bidi, ping-pong: each of 5 messages sent only once the echo of
                     the one before came back (a proxy that held the request stream
                     would hang it, so it ends at the call's timeout instead)
    deadline         Unary asking the server to sleep 2000 ms, with a 300 ms
                     deadline: DEADLINE_EXCEEDED
    metadata         Unary with more metadata: repeated keys, a `-bin` key, long
                     values
    fail:CODE        Fail: the server answers CODE (a grpc.StatusCode name) after
                     its initial metadata
    fail_only:CODE   the same, trailers-only (no initial metadata first)
    server_stream_big
                     ServerStream: 16 messages of 16 KiB, no gap (256 KiB in all)

A case may carry modifiers, `CASE+fault=TAG+timeout=S`: `fault=TAG` adds the
metadata `x-fault: TAG` (for a proxy's profile to pick the call by), `timeout=S`
gives this call a deadline of S seconds instead of --timeout. The call's `case` in
the output is the whole text; `base` is the case without its modifiers.

Every call sends `x-case: CASE` and `x-call: I` metadata and has a deadline
(--timeout, 10 s by default; deadline's own is 300 ms), so a broken proxy cannot
hang a test. All calls share one channel (one HTTP/2 connection, as an application
has) unless --fresh-channel; --repeat runs each case N times, --parallel spreads the
calls over P threads.

Prints one JSON document on one line:
    {"target", "calls": [{"case", "call", "ok", "code", "details", "messages",
     "initial_metadata", "trailing_metadata", "elapsed_ms"}...],
     "summary": {CASE: {CODE: count}}}
`messages` are the replies received ({index, text, payload_len, payload_sha256,
deadline_remaining_ms}); metadata are sorted [key, value] pairs, binary values as
"base64:...". With --summary-only, `calls` holds only the calls whose code was not
the one the case expects.
"""

import argparse
import base64
import hashlib
import json
import queue
import sys
import threading
import time
from concurrent import futures

import grpc

from grpc_echo_pb import pb, pb_grpc

MiB = 1024 * 1024


def payload(size, seed):
    return bytes((seed * 31 + i) % 253 for i in range(size))


def md_json(md):
    out = []
    for k, v in md or ():
        if isinstance(v, bytes):
            v = "base64:" + base64.b64encode(v).decode()
        out.append([k, v])
    return sorted(out)


def msg_json(m):
    if isinstance(m, pb.ClientStreamReply):
        return {"count": m.count, "total_bytes": m.total_bytes}
    return {
        "index": m.index,
        "text": m.text,
        "payload_len": len(m.payload),
        "payload_sha256": hashlib.sha256(m.payload).hexdigest()[:16],
        "deadline_remaining_ms": round(m.deadline_remaining_ms, 1),
    }


def parse_case(spec):
    """`CASE+k=v+...` -> (CASE, {k: v})."""
    base, *mods = spec.split("+")
    opts = {}
    for m in mods:
        k, sep, v = m.partition("=")
        if not sep or k not in ("fault", "timeout"):
            raise SystemExit(f"bad case modifier {m!r} in {spec!r}")
        opts[k] = v
    return base, opts


def expected_code(spec):
    case = parse_case(spec)[0]
    if case == "deadline":
        return "DEADLINE_EXCEEDED"
    if case.startswith("fail:") or case.startswith("fail_only:"):
        return case.split(":", 1)[1]
    return "OK"


def run_call(stub, spec, call_no, timeout):
    case, opts = parse_case(spec)
    md = [("x-case", spec), ("x-call", str(call_no))]
    if "fault" in opts:
        md.append(("x-fault", opts["fault"]))
    if "timeout" in opts:
        timeout = float(opts["timeout"])
    res = {"case": spec, "call": call_no}
    if spec != case:
        res["base"] = case
    messages, call = [], None
    start = time.monotonic()
    try:
        if case in ("unary", "unary_big", "metadata"):
            size = MiB if case == "unary_big" else 16
            if case == "metadata":
                md += [
                    ("x-test-repeated", "one"),
                    ("x-test-repeated", "two"),
                    ("x-test-long", "v" * 4000),
                    ("x-test-bin", bytes(range(256))),
                    ("x-test-text", "spaces and: colons, commas"),
                ]
            reply, call = stub.Unary.with_call(
                pb.EchoRequest(payload=payload(size, call_no), index=call_no, text=case),
                timeout=timeout,
                metadata=md,
            )
            messages.append(reply)
        elif case == "deadline":
            reply, call = stub.Unary.with_call(
                pb.EchoRequest(sleep_ms=2000, text=case), timeout=0.3, metadata=md
            )
            messages.append(reply)
        elif case in ("server_stream", "server_stream_big"):
            req = (
                pb.StreamRequest(n=16, interval_ms=0, payload_size=16 * 1024)
                if case == "server_stream_big"
                else pb.StreamRequest(n=5, interval_ms=50, payload_size=64)
            )
            call = stub.ServerStream(
                req,
                timeout=timeout,
                metadata=md,
            )
            for m in call:
                messages.append(m)
        elif case == "client_stream":
            reqs = (
                pb.EchoRequest(payload=payload(i * 1024, i), index=i) for i in range(10)
            )
            reply, call = stub.ClientStream.with_call(reqs, timeout=timeout, metadata=md)
            messages.append(reply)
        elif case == "bidi":
            n = 5
            q = queue.Queue()

            def reqs():
                while True:
                    m = q.get()
                    if m is None:
                        return
                    yield m

            def msg(i):
                return pb.EchoRequest(payload=payload(100 + i, i), index=i, text=f"ping {i}")

            q.put(msg(0))
            call = stub.Bidi(reqs(), timeout=timeout, metadata=md)
            try:
                for m in call:
                    messages.append(m)
                    q.put(msg(len(messages)) if len(messages) < n else None)
            finally:
                q.put(None)
        elif case.startswith("fail:") or case.startswith("fail_only:"):
            kind, code = case.split(":", 1)
            reply, call = stub.Fail.with_call(
                pb.FailRequest(
                    code=code,
                    details=f"brownout test {code}",
                    trailers_only=kind == "fail_only",
                ),
                timeout=timeout,
                metadata=md,
            )
            messages.append(reply)
        else:
            raise SystemExit(f"unknown case {case!r}")
        res.update(ok=True, code=call.code().name, details=call.details() or "")
    except grpc.RpcError as e:
        call = e
        res.update(ok=False, code=e.code().name, details=e.details() or "")
    res["elapsed_ms"] = round((time.monotonic() - start) * 1000, 1)
    res["messages"] = [msg_json(m) for m in messages]
    res["initial_metadata"] = md_json(call.initial_metadata()) if call else []
    res["trailing_metadata"] = md_json(call.trailing_metadata()) if call else []
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target")
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--fresh-channel", action="store_true")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()

    shared = None if args.fresh_channel else grpc.insecure_channel(args.target)
    lock = threading.Lock()
    channels = []

    def one(case, call_no):
        ch = shared
        if ch is None:
            ch = grpc.insecure_channel(args.target)
            with lock:
                channels.append(ch)
        try:
            return run_call(pb_grpc.EchoStub(ch), case, call_no, args.timeout)
        finally:
            if shared is None:
                ch.close()

    jobs = [(c, i) for i in range(args.repeat) for c in args.cases]
    if args.parallel > 1:
        with futures.ThreadPoolExecutor(max_workers=args.parallel) as ex:
            calls = list(ex.map(lambda j: one(*j), jobs))
    else:
        calls = [one(c, i) for c, i in jobs]
    if shared is not None:
        shared.close()

    summary = {}
    for c in calls:
        s = summary.setdefault(c["case"], {})
        s[c["code"]] = s.get(c["code"], 0) + 1
    if args.summary_only:
        calls = [c for c in calls if c["code"] != expected_code(c["case"])]
    print(json.dumps({"target": args.target, "calls": calls, "summary": summary}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
