"""LiteLLM's Router falling back when brownout storms one deployment with 429s.

Usage: litellm_check.py STORMED_BASE FALLBACK_BASE N

Two deployments of one OpenAI-compatible model: `primary` behind brownout (whose
profile answers every chat call with openai.rate_limit_requests) and `backup`.
The Router is set up as people set it up for fallbacks (a retry, then the fallback
group). Prints one JSON object per call: whether it succeeded, which deployment's
model answered, and what was raised.
"""
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")

from litellm import Router  # noqa: E402


def main():
    stormed, backup, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    router = Router(
        model_list=[
            {"model_name": "primary",
             "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": stormed, "api_key": "sk-test"}},
            {"model_name": "backup",
             "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": backup, "api_key": "sk-test"}},
        ],
        fallbacks=[{"primary": ["backup"]}],
        num_retries=1,
        retry_after=0,
        timeout=30,
    )
    for i in range(n):
        try:
            r = router.completion(model="primary",
                                  messages=[{"role": "user", "content": f"call {i}"}],
                                  max_tokens=8)
            print(json.dumps({"call": i, "ok": True,
                              "deployment": r._hidden_params.get("api_base"),
                              "content": r.choices[0].message.content}), flush=True)
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"call": i, "ok": False, "raised": type(e).__name__,
                              "message": str(e)[:300]}), flush=True)


if __name__ == "__main__":
    main()
