"""The official OpenAI Python SDK against an axum app with brownout's faults
in-process (brownout::layer::ChaosLayer; integration-tests/tests/layer.rs).

Prints one JSON object per check on stdout; the Rust test asserts on them.
Usage: layer_check.py BASE_URL
"""
import json
import sys

import openai


def emit(name, **kw):
    print(json.dumps({"check": name, **kw}), flush=True)


def main():
    base = sys.argv[1]
    oa = openai.OpenAI(base_url=base, api_key="sk-test", max_retries=2, timeout=20)
    msgs = [{"role": "user", "content": "hi"}]

    r = oa.chat.completions.create(model="toy", messages=msgs)
    emit("chat", content=r.choices[0].message.content, finish=r.choices[0].finish_reason)

    try:
        oa.chat.completions.create(model="toy", messages=msgs, extra_headers={"x-drill": "throttle"})
        emit("throttled", raised=None)
    except openai.RateLimitError as e:
        emit("throttled", raised=type(e).__name__, status=e.status_code,
             code=(e.body or {}).get("code") if isinstance(e.body, dict) else None)

    parts, finish, error = [], None, None
    try:
        stream = oa.chat.completions.create(model="toy", messages=msgs, stream=True,
                                            extra_headers={"x-drill": "cut"})
        for chunk in stream:
            for c in chunk.choices:
                if c.delta.content:
                    parts.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
    except Exception as e:  # what the SDK raises on a stream cut short is the finding
        error = type(e).__name__
    emit("truncated", content="".join(parts), finish=finish, error=error)


if __name__ == "__main__":
    main()
