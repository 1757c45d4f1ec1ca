"""Real WebSocket peers for integration-tests/tests/websocket.rs (websockets 17.4).

    ws_check.py server              an echo server on 127.0.0.1:<free port>
    ws_check.py suite URL           the full client check through the proxy
    ws_check.py handshake URL       one handshake: how it went, and how long it took
    ws_check.py echo-timed URL N    one N-byte binary message echoed, timed
    ws_check.py hold URL            one echo, then wait for the other side to close

Every line on stdout is one JSON object. The server prints {"port": N} first, then
one line per connection ({"event": "connect", ...}) and per close ({"event":
"close", "code": ..., "reason": ...}), so the test can see what the far side got.
With WS_CERT and WS_KEY set (PEM files), the server speaks TLS and offers ALPN h2
and http/1.1, as api.openai.com does; with WS_CA set, clients trust that CA for
wss:// URLs.

The server supports one subprotocol, "brownout.v2", picked when a client offers it
(and no subprotocol otherwise); it echoes every message as it came, text as text,
binary as binary. permessage-deflate stays on (the default on both sides), so the
extension's negotiation goes through the proxy too.
"""

import asyncio
import json
import os
import ssl
import sys
import time

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus


def emit(**fields):
    print(json.dumps(fields), flush=True)


def server_tls():
    cert, key = os.environ.get("WS_CERT"), os.environ.get("WS_KEY")
    if not cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


def client_tls(url):
    if not url.startswith("wss:"):
        return {}
    ca = os.environ.get("WS_CA")
    return {"ssl": ssl.create_default_context(cafile=ca)}


def pick_subprotocol(_connection, offered):
    return "brownout.v2" if "brownout.v2" in offered else None


async def echo(ws):
    emit(
        event="connect",
        path=ws.request.path,
        subprotocol=ws.subprotocol,
        headers={k.lower(): v for k, v in ws.request.headers.raw_items()},
    )
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass
    emit(event="close", code=ws.close_code, reason=ws.close_reason)


async def server():
    async with serve(
        echo,
        "127.0.0.1",
        0,
        select_subprotocol=pick_subprotocol,
        max_size=None,
        ssl=server_tls(),
    ) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        emit(port=port)
        await asyncio.get_running_loop().create_future()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def suite(url):
    async with connect(
        url,
        subprotocols=["brownout.v1", "brownout.v2"],
        max_size=None,
        **client_tls(url),
    ) as ws:
        check(ws.subprotocol == "brownout.v2", f"subprotocol {ws.subprotocol!r}")
        extensions = [type(e).__name__ for e in ws.protocol.extensions]
        emit(step="open", subprotocol=ws.subprotocol, extensions=extensions)

        text = "héllo, wörld ✓ 🌍 " * 10
        await ws.send(text)
        got = await ws.recv()
        check(isinstance(got, str) and got == text, "text echo")
        emit(step="text")

        binary = bytes(range(256)) * 4
        await ws.send(binary)
        got = await ws.recv()
        check(isinstance(got, bytes) and got == binary, "binary echo")
        emit(step="binary")

        big = os.urandom(1 << 20)
        await ws.send(big)
        got = await ws.recv()
        check(isinstance(got, bytes) and got == big, "1 MiB echo")
        emit(step="big", size=len(big))

        # Several messages in flight at once come back in order.
        for i in range(20):
            await ws.send(f"m{i}")
        for i in range(20):
            got = await ws.recv()
            check(got == f"m{i}", f"message {i} in order")
        emit(step="pipelined")

        pong = await ws.ping(b"are you there")
        latency = await asyncio.wait_for(pong, 5)
        emit(step="ping", latency_ms=round(latency * 1000, 3))

        await ws.close(4001, "bye")
        check(ws.close_code == 4001, f"close code back {ws.close_code}")
        check(ws.close_reason == "bye", f"close reason back {ws.close_reason!r}")
        emit(step="close", code=ws.close_code, reason=ws.close_reason)
    emit(step="done")


async def handshake(url):
    start = time.monotonic()
    try:
        async with connect(url, open_timeout=20, **client_tls(url)) as ws:
            ms = (time.monotonic() - start) * 1000
            await ws.send("after the handshake")
            check(await ws.recv() == "after the handshake", "echo after handshake")
            emit(ok=True, ms=round(ms, 1), headers=dict(ws.response.headers.raw_items()))
    except InvalidStatus as e:
        r = e.response
        emit(
            ok=False,
            status=r.status_code,
            body=r.body.decode("utf-8", "replace") if r.body else "",
            headers={k.lower(): v for k, v in r.headers.raw_items()},
            ms=round((time.monotonic() - start) * 1000, 1),
        )
    except Exception as e:  # a reset, a closed connection: what the client saw
        emit(ok=False, error=type(e).__name__, detail=str(e))


async def echo_timed(url, size):
    payload = os.urandom(size)
    async with connect(url, max_size=None, compression=None, **client_tls(url)) as ws:
        start = time.monotonic()
        await ws.send(payload)
        got = await ws.recv()
        ms = (time.monotonic() - start) * 1000
        check(got == payload, "timed echo")
        emit(ms=round(ms, 1), size=size)


async def hold(url):
    async with connect(url, ping_interval=None, **client_tls(url)) as ws:
        await ws.send("one message, then silence")
        check(await ws.recv() == "one message, then silence", "hold echo")
        emit(event="open")
        await ws.wait_closed()
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


def main():
    mode = sys.argv[1]
    if mode == "server":
        asyncio.run(server())
    elif mode == "suite":
        asyncio.run(suite(sys.argv[2]))
    elif mode == "handshake":
        asyncio.run(handshake(sys.argv[2]))
    elif mode == "echo-timed":
        asyncio.run(echo_timed(sys.argv[2], int(sys.argv[3])))
    elif mode == "hold":
        asyncio.run(hold(sys.argv[2]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
