"""A plain ASGI app for uvicorn that counts what it executes, for the keep-alive test
(integration-tests/tests/real_stack.rs).

Every request is executed once per arrival: its `x-id` header is counted and it is
answered with `{"id": ..., "executions": n, "bytes": len(body)}`. `GET /executed`
returns the counts, so the test can prove that no request was executed twice.
`GET /health` answers 200 (the readiness check).

Run: python -m uvicorn keepalive_app:app --app-dir integration-tests/python \
        --port P --timeout-keep-alive 1
"""
import json

EXECUTED = {}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    headers = dict(scope["headers"])
    if scope["path"] == "/executed":
        out = EXECUTED
    elif scope["path"] == "/health":
        out = {"ok": True}
    else:
        rid = headers.get(b"x-id", b"-").decode()
        EXECUTED[rid] = EXECUTED.get(rid, 0) + 1
        out = {"id": rid, "executions": EXECUTED[rid], "bytes": len(body)}
    data = json.dumps(out).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
