"""LiteLLM's Router retrying a throttled call, through brownout, for `brownout report`.

Usage: litellm_retries_check.py BASE N_CALLS NUM_RETRIES

A `Router(num_retries=K)` retries a failed call itself, each retry a fresh
`litellm.completion` (an OpenAI-SDK call of its own), so the requests may carry no
count of the attempts made. Prints one JSON object per call: whether it succeeded
and what was raised.
"""
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")

from litellm import Router  # noqa: E402


def main():
    base, n, retries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    router = Router(
        model_list=[{"model_name": "chat",
                     "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base,
                                        "api_key": "sk-litellm-test"}}],
        num_retries=retries,
        retry_after=0,
        timeout=30,
    )
    for i in range(n):
        try:
            router.completion(
                model="chat",
                messages=[{"role": "user", "content": f"call {i}"}],
                max_tokens=8,
            )
            print(json.dumps({"call": i, "ok": True}), flush=True)
        except Exception as e:  # noqa: BLE001 - report whatever LiteLLM raised
            print(json.dumps({"call": i, "ok": False, "error": type(e).__name__}), flush=True)


if __name__ == "__main__":
    main()
