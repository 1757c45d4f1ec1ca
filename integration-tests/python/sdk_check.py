"""Drive a brownout proxy with the official OpenAI and Anthropic Python SDKs.

Prints one JSON object per check on stdout; the Rust test asserts on them.
Usage: sdk_check.py OPENAI_BASE_URL ANTHROPIC_BASE_URL
"""
import json
import sys

import anthropic
import openai


def emit(name, **kw):
    print(json.dumps({"check": name, **kw}), flush=True)


def main():
    openai_base, anthropic_base = sys.argv[1], sys.argv[2]
    oa = openai.OpenAI(base_url=openai_base, api_key="sk-secret-test-key", max_retries=2, timeout=20)
    msgs = [{"role": "user", "content": "Say something about brownouts."}]

    r = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=8)
    emit("openai_chat", content=r.choices[0].message.content, finish=r.choices[0].finish_reason,
         completion_tokens=r.usage.completion_tokens)

    parts = []
    stream = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=8, stream=True,
                                        stream_options={"include_usage": True})
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        for c in chunk.choices:
            if c.delta.content:
                parts.append(c.delta.content)
    emit("openai_stream", content="".join(parts), completion_tokens=usage)

    try:
        oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=8,
                                   extra_headers={"x-drill": "rate-limit"})
        emit("openai_429", raised=None)
    except openai.RateLimitError as e:
        emit("openai_429", raised=type(e).__name__, status=e.status_code,
             code=(e.body or {}).get("code") if isinstance(e.body, dict) else None,
             request_id=e.response.headers.get("x-request-id"))

    an = anthropic.Anthropic(base_url=anthropic_base, api_key="sk-ant-secret-test-key", max_retries=1, timeout=20)
    try:
        an.messages.create(model="claude-3-5-haiku-latest", max_tokens=8,
                           messages=[{"role": "user", "content": "hi"}])
        emit("anthropic_overloaded", raised=None)
    except anthropic.APIStatusError as e:
        emit("anthropic_overloaded", raised=type(e).__name__, status=e.status_code,
             request_id=e.response.headers.get("request-id"))


if __name__ == "__main__":
    main()
