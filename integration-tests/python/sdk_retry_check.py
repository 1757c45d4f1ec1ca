"""Drive a scripted upstream with the official OpenAI and Anthropic Python SDKs.

integration-tests/tests/python_sdk_retries.rs starts an upstream that answers each
case's attempts with scripted statuses and retry headers, and records when each
attempt arrives; this script makes one call per `SDK:CASE` argument, all at once
(the waits overlap, so the run takes as long as its longest case), with the SDKs'
default two retries. It prints one JSON object per call with what the SDK user
saw; the attempts and waits are read at the upstream.

Usage: sdk_retry_check.py BASE_URL SDK:CASE...   (SDK: openai or anthropic)
"""
import json
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai

MSGS = [{"role": "user", "content": "Say something about retries."}]


def call_openai(base, case):
    client = openai.OpenAI(base_url=f"{base}/openai/{case}/v1", api_key="sk-test", max_retries=2, timeout=20)
    try:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS, max_tokens=1)
        raw.parse()
        return {"ok": True, "retries_taken": raw.retries_taken}
    except openai.APIStatusError as e:
        return {"ok": False, "raised": type(e).__name__, "status": e.status_code}


def call_anthropic(base, case):
    client = anthropic.Anthropic(base_url=f"{base}/anthropic/{case}", api_key="sk-ant-test", max_retries=2, timeout=20)
    try:
        raw = client.messages.with_raw_response.create(model="claude-3-5-haiku-latest", messages=MSGS, max_tokens=1)
        raw.parse()
        return {"ok": True, "retries_taken": raw.retries_taken}
    except anthropic.APIStatusError as e:
        return {"ok": False, "raised": type(e).__name__, "status": e.status_code}


CALLS = {"openai": call_openai, "anthropic": call_anthropic}


def one(base, item):
    sdk, case = item.split(":", 1)
    try:
        return {"sdk": sdk, "case": case, **CALLS[sdk](base, case)}
    except Exception:  # noqa: BLE001 - reported to the Rust test
        return {"sdk": sdk, "case": "script_error", "name": case, "traceback": traceback.format_exc()}


def main():
    base, items = sys.argv[1], sys.argv[2:]
    with ThreadPoolExecutor(max(1, len(items))) as pool:
        for r in pool.map(lambda i: one(base, i), items):
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
