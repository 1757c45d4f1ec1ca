"""Drive brownout's LLM faults with the official OpenAI and Anthropic Python SDKs.

Each check sends requests tagged `x-case: NAME` (the profile in
integration-tests/tests/python_llm.rs has one rule per case, named like the case)
and prints one JSON object on stdout with what the SDK user saw: the exception
class, what arrived before it, timings, parsed text. The Rust test asserts on
these and on brownout's records of the same exchanges.

Usage: llm_check.py OPENAI_BASE_URL ANTHROPIC_BASE_URL CAPTURE_BASE_URL [CASE...]
"""
import json
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai

PROMPT = "Say something about brownouts."
MSGS = [{"role": "user", "content": PROMPT}]
MODEL = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku-latest"


def emit(name, **kw):
    print(json.dumps({"check": name, **kw}), flush=True)


def exc_info(e):
    """What a caller catching `e` can see."""
    resp = getattr(e, "response", None)
    return {
        "raised": type(e).__name__,
        "module": type(e).__module__.split(".")[0],
        "status": getattr(e, "status_code", None),
        "message": str(e)[:300],
        "headers": dict(resp.headers) if resp is not None else None,
    }


def oa(base, retries=0, timeout=20):
    return openai.OpenAI(base_url=base, api_key="sk-secret-test-key", max_retries=retries, timeout=timeout)


def an(base, retries=0, timeout=20):
    return anthropic.Anthropic(base_url=base, api_key="sk-ant-secret-test-key", max_retries=retries,
                               timeout=timeout)


def case(name):
    return {"x-case": name}


def content_of(chunk):
    return "".join(c.delta.content or "" for c in chunk.choices)


# ---------------------------------------------------------------------------
# Error presets and retries
# ---------------------------------------------------------------------------

def preset_429_retries(o_base, a_base, c_base):
    # max_retries=2 is the SDK default; the preset says retry-after-ms: 200.
    t0 = time.monotonic()
    try:
        oa(o_base, retries=2).chat.completions.create(model=MODEL, messages=MSGS, max_tokens=8,
                                                      extra_headers=case("preset_429"))
        out = {"raised": None}
    except Exception as e:  # noqa: BLE001 - report whatever the user would get
        out = exc_info(e)
    emit("preset_429", elapsed=time.monotonic() - t0, **out)


def preset_429_no_retry(o_base, a_base, c_base):
    t0 = time.monotonic()
    try:
        oa(o_base, retries=2).chat.completions.create(model=MODEL, messages=MSGS, max_tokens=8,
                                                      extra_headers=case("should_not_retry"))
        out = {"raised": None}
    except Exception as e:  # noqa: BLE001
        out = exc_info(e)
    emit("should_not_retry", elapsed=time.monotonic() - t0, **out)


def anthropic_overloaded(o_base, a_base, c_base):
    t0 = time.monotonic()
    try:
        an(a_base, retries=2).messages.create(model=CLAUDE, max_tokens=16, messages=MSGS,
                                              extra_headers=case("overloaded"))
        out = {"raised": None}
    except Exception as e:  # noqa: BLE001
        out = exc_info(e)
    emit("overloaded", elapsed=time.monotonic() - t0, **out)


# ---------------------------------------------------------------------------
# rate_limit
# ---------------------------------------------------------------------------

def rpm2(o_base, a_base, c_base):
    client = oa(o_base)
    results = []
    for _ in range(3):
        try:
            r = client.chat.completions.with_raw_response.create(model=MODEL, messages=MSGS, max_tokens=1,
                                                                 extra_headers=case("rpm2"))
            results.append({"raised": None, "status": r.status_code})
        except Exception as e:  # noqa: BLE001
            results.append({**exc_info(e), "body": getattr(e, "body", None)})
    emit("rpm2", results=results)


def tpm(o_base, a_base, c_base):
    client = oa(o_base)
    results = []
    for _ in range(2):
        try:
            client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=60, extra_headers=case("tpm"))
            results.append({"raised": None})
        except Exception as e:  # noqa: BLE001
            results.append({**exc_info(e), "body": getattr(e, "body", None)})
    emit("tpm", results=results)


def rpm60_retry(o_base, a_base, c_base):
    """Empty a 60/min bucket, then let the SDK's own retry find the next free slot."""
    drain = oa(o_base)

    def one(_):
        try:
            drain.chat.completions.create(model="drain", messages=MSGS, max_tokens=1, extra_headers=case("rpm60"))
            return None
        except openai.RateLimitError as e:
            return float(e.response.headers.get("retry-after-ms", "0"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(60)))
    # Keep going until a 429 promises a wait long enough that the next request,
    # sent at once, surely meets the same empty bucket.
    drained = 60
    while drained < 200:
        drained += 1
        wait = one(None)
        if wait is not None and wait >= 300:
            break
    t0 = time.monotonic()
    try:
        r = oa(o_base, retries=2).chat.completions.create(model=MODEL, messages=MSGS, max_tokens=4,
                                                          extra_headers=case("rpm60"))
        out = {"raised": None, "content": r.choices[0].message.content}
    except Exception as e:  # noqa: BLE001
        out = exc_info(e)
    emit("rpm60", drained=drained, elapsed=time.monotonic() - t0, **out)


def anthropic_rpm1(o_base, a_base, c_base):
    client = an(a_base)
    results = []
    for _ in range(2):
        try:
            client.messages.create(model=CLAUDE, max_tokens=4, messages=MSGS, extra_headers=case("anthropic_rpm1"))
            results.append({"raised": None})
        except Exception as e:  # noqa: BLE001
            results.append({**exc_info(e), "body": getattr(e, "body", None)})
    emit("anthropic_rpm1", results=results)


# ---------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------

def openai_stream(o_base, name, **kw):
    """Iterate a chat stream; report tokens seen, finish reason, and what was raised."""
    tokens, finish, out = [], None, {"raised": None}
    t0 = time.monotonic()
    times = []
    try:
        stream = oa(o_base).chat.completions.create(model=MODEL, messages=MSGS, stream=True,
                                                    extra_headers=case(name), **kw)
        for chunk in stream:
            text = content_of(chunk)
            if text:
                tokens.append(text)
                times.append(time.monotonic() - t0)
            for c in chunk.choices:
                if c.finish_reason:
                    finish = c.finish_reason
    except Exception as e:  # noqa: BLE001
        out = exc_info(e)
        out["exact"] = type(e) is openai.APIError
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {"tokens": len(tokens), "content": "".join(tokens), "finish": finish, "ttft": times[0] if times else None,
            "gaps": gaps, **out}


def anthropic_raw_stream(a_base, name, max_tokens=32):
    tokens, stop, out = [], None, {"raised": None}
    try:
        stream = an(a_base).messages.create(model=CLAUDE, max_tokens=max_tokens, messages=MSGS, stream=True,
                                            extra_headers=case(name))
        for ev in stream:
            if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
                tokens.append(ev.delta.text)
            elif ev.type == "message_delta":
                stop = ev.delta.stop_reason
    except Exception as e:  # noqa: BLE001
        out = exc_info(e)
    return {"tokens": len(tokens), "content": "".join(tokens), "stop_reason": stop, **out}


def anthropic_helper_stream(a_base, name, max_tokens=32):
    """messages.stream() and get_final_message(), as most Anthropic code does."""
    out = {"raised": None}
    texts = []
    try:
        with an(a_base).messages.stream(model=CLAUDE, max_tokens=max_tokens, messages=MSGS,
                                        extra_headers=case(name)) as s:
            for t in s.text_stream:
                texts.append(t)
            m = s.get_final_message()
        out.update(final_text="".join(b.text for b in m.content if b.type == "text"),
                   stop_reason=m.stop_reason, output_tokens=m.usage.output_tokens)
    except Exception as e:  # noqa: BLE001
        out = exc_info(e)
    return {"tokens": len(texts), "content": "".join(texts), **out}


def stream_error(o_base, a_base, c_base):
    emit("openai_stream_error", **openai_stream(o_base, "stream_error"))
    emit("anthropic_stream_error", **anthropic_raw_stream(a_base, "stream_error"))
    emit("anthropic_stream_error_helper", **anthropic_helper_stream(a_base, "stream_error"))


def timing(o_base, a_base, c_base):
    emit("timing", **openai_stream(o_base, "timing", max_tokens=8))


def truncate(o_base, a_base, c_base):
    emit("openai_truncate_no_terminator", **openai_stream(o_base, "truncate_nt"))
    emit("anthropic_truncate_no_terminator", **anthropic_raw_stream(a_base, "truncate_nt"))
    emit("anthropic_truncate_no_terminator_helper", **anthropic_helper_stream(a_base, "truncate_nt"))
    emit("openai_truncate_clean", **openai_stream(o_base, "truncate_clean"))
    emit("anthropic_truncate_clean_helper", **anthropic_helper_stream(a_base, "truncate_clean"))


def corrupt(o_base, a_base, c_base):
    emit("openai_corrupt", **openai_stream(o_base, "corrupt"))
    emit("anthropic_corrupt", **anthropic_raw_stream(a_base, "corrupt"))


# ---------------------------------------------------------------------------
# Content faults on whole answers
# ---------------------------------------------------------------------------

def content(o_base, a_base, c_base):
    client = oa(o_base)
    for name in ("garble", "empty", "finish_length"):
        try:
            r = client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=8, extra_headers=case(name))
            emit(name, raised=None, content=r.choices[0].message.content, finish=r.choices[0].finish_reason,
                 completion_tokens=r.usage.completion_tokens)
        except Exception as e:  # noqa: BLE001
            emit(name, **exc_info(e))
    try:
        m = an(a_base).messages.create(model=CLAUDE, max_tokens=32, messages=MSGS,
                                       extra_headers=case("anthropic_finish"))
        emit("anthropic_finish", raised=None, stop_reason=m.stop_reason,
             text="".join(b.text for b in m.content if b.type == "text"))
    except Exception as e:  # noqa: BLE001
        emit("anthropic_finish", **exc_info(e))


# ---------------------------------------------------------------------------
# Per-request header faults
# ---------------------------------------------------------------------------

def header_faults(o_base, a_base, c_base):
    t0 = time.monotonic()
    try:
        oa(c_base).chat.completions.create(
            model=MODEL, messages=MSGS, max_tokens=8,
            extra_headers={"x-brownout-fault": "error=openai.rate_limit_requests"})
        out = {"raised": None}
    except Exception as e:  # noqa: BLE001
        out = exc_info(e)
    emit("header_429", elapsed=time.monotonic() - t0, **out)
    # A header fault that lets the request through: the upstream must not see it.
    t0 = time.monotonic()
    try:
        r = oa(c_base).chat.completions.create(model=MODEL, messages=MSGS, max_tokens=8,
                                               extra_headers={"x-brownout-fault": "delay=300ms"})
        out = {"raised": None, "content": r.choices[0].message.content}
    except Exception as e:  # noqa: BLE001
        out = exc_info(e)
    emit("header_delay", elapsed=time.monotonic() - t0, **out)


CASES = {
    "preset_429": preset_429_retries,
    "should_not_retry": preset_429_no_retry,
    "overloaded": anthropic_overloaded,
    "rpm2": rpm2,
    "tpm": tpm,
    "rpm60": rpm60_retry,
    "anthropic_rpm1": anthropic_rpm1,
    "stream_error": stream_error,
    "timing": timing,
    "truncate": truncate,
    "corrupt": corrupt,
    "content": content,
    "header": header_faults,
}


def main():
    o_base, a_base, c_base = sys.argv[1:4]
    names = sys.argv[4:] or list(CASES)
    for name in names:
        try:
            CASES[name](o_base, a_base, c_base)
        except Exception:  # noqa: BLE001 - a broken check must not hide the others
            emit("script_error", case=name, traceback=traceback.format_exc())


if __name__ == "__main__":
    main()
