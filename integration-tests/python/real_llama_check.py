"""Drive a real model server (llama-cpp-python's OpenAI server) through brownout with
the official OpenAI SDK, and report what the SDK user saw, one JSON object per line.

Usage: real_llama_check.py BASE_URL MODEL CASE...

Cases (the profile in integration-tests/tests/real_stack.rs has one rule per faulted
case, matched on `x-case`):
  stream, plain    no fault: the SDK's own clock (TTFT, end to end) and usage
  preset_429       openai.rate_limit_requests, with the SDK's retries on
  stream_error     a mid-stream error after 3 tokens
  reset            a TCP reset instead of an answer
  first_token      first_token_delay 400ms
Two untimed warm-up calls (GET /v1/models) come first; calls run one after
another, so brownout's records come in the same order.
"""
import json
import sys
import time

import openai

PROMPT = [{"role": "user", "content": "Write three short sentences about the sea."}]


def emit(name, **kw):
    print(json.dumps({"check": name, **kw}), flush=True)


CLIENTS = {}


def client(base, retries=0):
    """One SDK client per retry setting, reused as applications reuse theirs."""
    if retries not in CLIENTS:
        CLIENTS[retries] = openai.OpenAI(base_url=base, api_key="sk-test", max_retries=retries, timeout=60)
    return CLIENTS[retries]


def exc_info(e):
    return {"raised": type(e).__name__, "status": getattr(e, "status_code", None),
            "message": str(e)[:400]}


def stream(base, model, case, **kw):
    t0 = time.monotonic()
    ttft, tokens, usage, out = None, 0, None, {"raised": None}
    try:
        s = client(base).chat.completions.create(
            model=model, messages=PROMPT, stream=True, max_tokens=24, temperature=0,
            stream_options={"include_usage": True}, extra_headers={"x-case": case}, **kw)
        for chunk in s:
            if chunk.usage is not None:
                usage = chunk.usage.completion_tokens
            for c in chunk.choices:
                if c.delta.content:
                    tokens += 1
                    if ttft is None:
                        ttft = time.monotonic() - t0
    except Exception as e:  # noqa: BLE001
        out = exc_info(e)
    e2e = time.monotonic() - t0
    return {"ttft_ms": ttft * 1000 if ttft is not None else None, "e2e_ms": e2e * 1000,
            "tokens": tokens, "usage_output_tokens": usage, **out}


def plain(base, model, case, retries=0):
    t0 = time.monotonic()
    try:
        r = client(base, retries).chat.completions.create(
            model=model, messages=PROMPT, max_tokens=24, temperature=0,
            extra_headers={"x-case": case})
        return {"raised": None, "e2e_ms": (time.monotonic() - t0) * 1000,
                "usage_output_tokens": r.usage.completion_tokens,
                "content": r.choices[0].message.content}
    except Exception as e:  # noqa: BLE001
        return {"e2e_ms": (time.monotonic() - t0) * 1000, **exc_info(e)}


def main():
    base, model = sys.argv[1], sys.argv[2]
    # Warm-up, untimed: the SDK's first call pays for its lazy imports and the
    # connection; the timed calls then measure what a running application sees.
    for retries in (0, 2):
        client(base, retries).models.list()
    for case in sys.argv[3:]:
        if case == "stream":
            emit(case, **stream(base, model, case))
        elif case == "plain":
            emit(case, **plain(base, model, case))
        elif case == "preset_429":
            emit(case, **plain(base, model, case, retries=2))
        elif case in ("stream_error", "first_token"):
            emit(case, **stream(base, model, case))
        elif case == "reset":
            emit(case, **plain(base, model, case))
        else:
            raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    main()
