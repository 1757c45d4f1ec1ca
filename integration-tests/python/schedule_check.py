"""Drive brownout's count schedules with the official OpenAI Python SDK.

Each case sends requests tagged `x-case: NAME` (the profile in
integration-tests/tests/python_sdk_schedule.rs has one rule per case) and prints
one JSON object per call on stdout with what the SDK user saw: whether the call
succeeded, how many retries the SDK took, the exception class otherwise.

Usage: schedule_check.py OPENAI_BASE_URL [CASE...]
"""
import json
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor

import openai

MSGS = [{"role": "user", "content": "Say something about brownouts."}]
MODEL = "gpt-4o-mini"


def emit(case, **kw):
    print(json.dumps({"case": case, **kw}), flush=True)


def call(base, case, retries, extra=None, i=0):
    client = openai.OpenAI(base_url=base, api_key=f"sk-test-{case}", max_retries=retries, timeout=20)
    headers = {"x-case": case, **(extra or {})}
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MSGS, max_tokens=1, extra_headers=headers)
        r = raw.parse()
        return {"i": i, "ok": True, "retries_taken": raw.retries_taken, "content": r.choices[0].message.content}
    except openai.APIStatusError as e:
        return {"i": i, "ok": False, "raised": type(e).__name__, "status": e.status_code}


def first_two(base):
    # {first: 2, per: call} and the SDK default of two retries: every call
    # succeeds, on its third attempt. The same prompt each time.
    for i in range(5):
        emit("first_two", **call(base, "first_two", 2, i=i))


def first_two_one_retry(base):
    # The same schedule with one retry: both attempts fail, every call fails.
    for i in range(3):
        emit("first_two_one_retry", **call(base, "first_two_one_retry", 1, i=i))


def every_third(base):
    # {every: 3, per: rule}, no retries: exactly every third request fails.
    for i in range(30):
        emit("every_third", **call(base, "every_third", 0, i=i))


def seq_coin(base):
    # probability 0.5 with x-brownout-seq per call, as the drill sends it, and two
    # retries: each retry gets a fresh draw. Concurrent on purpose: the seq pins
    # the decisions whatever the order.
    def one(i):
        return call(base, "seq_coin", 2, extra={"x-brownout-seq": str(i)}, i=i)

    with ThreadPoolExecutor(8) as pool:
        for r in pool.map(one, range(200)):
            emit("seq_coin", **r)


CASES = {
    "first_two": first_two,
    "first_two_one_retry": first_two_one_retry,
    "every_third": every_third,
    "seq_coin": seq_coin,
}


def main():
    base = sys.argv[1]
    for name in sys.argv[2:] or list(CASES):
        try:
            CASES[name](base)
        except Exception:  # noqa: BLE001 - reported to the Rust test
            emit("script_error", name=name, traceback=traceback.format_exc())


if __name__ == "__main__":
    main()
