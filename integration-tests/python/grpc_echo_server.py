"""grpcio's own server (insecure: h2c) for integration-tests/tests/grpc_real.rs.

    grpc_echo_server.py --port P [--host 127.0.0.1]

Serves `brownout.test.Echo` (grpc_echo.proto) and prints one line when it is
serving, then nothing more on stdout:

    grpc echo server listening on 127.0.0.1:P

Every method sends the call's metadata back as initial metadata, each key prefixed
`echo-` (reserved `grpc-*` and pseudo-headers left out; `-bin` keys stay binary),
and ends with trailing metadata `x-echo-trailer: <method>` and
`x-echo-trailer-bin: 00 01 fe ff`, so a test can see metadata pass both ways.

- Unary: the request echoed; `sleep_ms` is slept first, but never past the call's
  deadline (the client then sees DEADLINE_EXCEEDED, as from any server).
- ServerStream: `n` messages `interval_ms` apart, message i carrying index i and
  `payload_size` bytes of payload.
- ClientStream: how many messages came, and their payload bytes in all.
- Bidi: each message echoed as it arrives.
- Fail: the status code and details asked for; `trailers_only` answers with no
  initial metadata first.
Each reply carries the time the call had left when it arrived (`deadline_remaining_ms`,
from its grpc-timeout), so a test can see what deadline reached the server.
"""

import argparse
import sys
import time
from concurrent import futures

import grpc

from grpc_echo_pb import pb, pb_grpc

TRAILER_BIN = bytes([0x00, 0x01, 0xFE, 0xFF])


def remaining_ms(context):
    r = context.time_remaining()
    return -1.0 if r is None else r * 1000.0


def echo_metadata(context):
    return tuple(
        ("echo-" + k, v)
        for k, v in context.invocation_metadata()
        if not k.startswith(":") and not k.startswith("grpc-")
    )


def begin(context, method, initial=True):
    if initial:
        context.send_initial_metadata(echo_metadata(context))
    context.set_trailing_metadata(
        (("x-echo-trailer", method), ("x-echo-trailer-bin", TRAILER_BIN))
    )


def payload(size, index):
    return bytes((index + i) % 251 for i in range(size))


class Echo(pb_grpc.EchoServicer):
    def Unary(self, request, context):
        left = remaining_ms(context)
        begin(context, "Unary")
        if request.sleep_ms:
            until = time.monotonic() + request.sleep_ms / 1000.0
            while context.is_active() and time.monotonic() < until:
                time.sleep(min(0.01, max(0.0, until - time.monotonic())))
        return pb.EchoReply(
            payload=request.payload,
            index=request.index,
            text=request.text,
            deadline_remaining_ms=left,
        )

    def ServerStream(self, request, context):
        left = remaining_ms(context)
        begin(context, "ServerStream")
        for i in range(request.n):
            if i and request.interval_ms:
                time.sleep(request.interval_ms / 1000.0)
            if not context.is_active():
                return
            yield pb.EchoReply(
                payload=payload(request.payload_size, i),
                index=i,
                text=f"message {i}",
                deadline_remaining_ms=left,
            )

    def ClientStream(self, request_iterator, context):
        begin(context, "ClientStream")
        count, total = 0, 0
        for m in request_iterator:
            count += 1
            total += len(m.payload)
        return pb.ClientStreamReply(count=count, total_bytes=total)

    def Bidi(self, request_iterator, context):
        left = remaining_ms(context)
        begin(context, "Bidi")
        for m in request_iterator:
            yield pb.EchoReply(
                payload=m.payload,
                index=m.index,
                text=m.text,
                deadline_remaining_ms=left,
            )

    def Fail(self, request, context):
        begin(context, "Fail", initial=not request.trailers_only)
        try:
            code = grpc.StatusCode[request.code]
        except KeyError:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown status code {request.code!r}"
            )
        context.abort(code, request.details)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=32)
    args = ap.parse_args()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )
    pb_grpc.add_EchoServicer_to_server(Echo(), server)
    addr = f"{args.host}:{args.port}"
    if server.add_insecure_port(addr) != args.port:
        sys.exit(f"cannot bind {addr}")
    server.start()
    print(f"grpc echo server listening on {addr}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(grace=1)


if __name__ == "__main__":
    main()
