"""Cross-check brownout's measurements against GuideLLM's (integration-tests/tests/guidellm.rs).

Subcommands (the `guidellm` environment's python for all but `selftest`):

  data DIR --requests N --prompt-chars C --output-tokens T --seed S
      Write the one workload both tools send: DIR/guidellm.jsonl (guidellm's
      `prompt` and `output_tokens_count` columns) and DIR/prompts.jsonl (the drill's
      prompt file, the same texts as chat messages), and a tokenizer in
      DIR/tokenizer/ for guidellm's processor: a byte-level BPE trained on those
      texts with the `tokenizers` package (nothing comes from a model hub), saved
      as tokenizer.json + tokenizer_config.json so that
      transformers.AutoTokenizer.from_pretrained(DIR/tokenizer) loads it.
      With --from-prompts FILE, the prompts are those of a drill prompt file
      instead (its user messages, in order), each asking for as many tokens as
      its scripted `sim_answer` has (the simulator's tokens: a word each), or
      --output-tokens where it scripts none; DIR/prompts.jsonl is FILE as is.

  run --target URL --model M --concurrency N[,N2,...] --seconds S --data DIR --out FILE
      Run `guidellm run` with a concurrent profile (N streams, closed loop) for S
      seconds over DIR/guidellm.jsonl; write guidellm's JSON report to FILE and
      print the summary of each benchmark (as `summary` does). A list of
      concurrencies runs one benchmark per step, in order, S seconds each
      (`--override profile.streams`). --processes P caps guidellm's worker
      processes (GUIDELLM__MAX_WORKER_PROCESSES, default 10): it starts them
      afresh for every benchmark, which on two cores costs ~18 s a step at 10
      and ~5 s at 2.

  summary FILE
      Print one JSON line per benchmark of a guidellm report: load, requests,
      TTFT (mean, median), ITL (mean, median), output tokens per request (mean,
      min, max) and per stream iteration, all over successful requests.

  capacity FILE --ttft-ms X [--tpot-ms Y] [--e2e-ms Z] [--attainment A]
      The highest load among the report's benchmarks (sweep rates, concurrency
      steps) at which the share of successful requests meeting every objective
      is at least A; JSON on stdout ({"capacity": null, ...} when none passes).

  selftest
      Check `capacity` and `summarize` on hand-made reports (plain python3).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

# guidellm's "ITL" (inter_token_latency_ms: (last token - first token) / (tokens - 1))
# is the per-request TPOT without the first token; vLLM's --goodput tpot and
# brownout's goodput tpot are the same quantity. guidellm's own SLO check
# (GoodputSLO.tpot_ms) compares it too, so the objectives below match.
WORDS = (
    "replica queue token slot batch cache prefill decode stream latency budget "
    "window retry backoff storm signal phase shard vector answer model request "
    "context memory throughput percentile noise recovery gateway tenant"
).split()


def make_prompts(n: int, chars: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words: list[str] = []
        while len(" ".join(words)) < chars:
            words.append(rng.choice(WORDS))
        out.append(" ".join(words)[:chars].rstrip())
    return out


def build_tokenizer(texts: list[str], out_dir: str) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": "<|endoftext|>",
                "bos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "model_max_length": 1_000_000,
            },
            f,
        )


def sim_answer_tokens(text: str) -> int:
    """How many tokens brownout's simulator streams for a scripted answer: a word
    each, the spaces before it included (sim/src/text.rs, scripted_tokens)."""
    tokens, cur = 0, ""
    for ch in text:
        if ch == " " and cur and not cur.endswith(" "):
            tokens, cur = tokens + 1, ""
        cur += ch
    return max(1, tokens + (1 if cur else 0))


def rows_from_prompt_file(lines: list[str], default_tokens: int) -> list[tuple[str, int]]:
    """(prompt, output tokens) for each line of a drill prompt file: the last user
    message's text, and the length of its scripted `sim_answer`."""
    rows = []
    for line in lines:
        if not line.strip():
            continue
        v = json.loads(line)
        if isinstance(v.get("prompt"), str):
            text = v["prompt"]
        else:
            users = [m for m in v.get("messages") or [] if m.get("role") == "user"]
            if not users or not isinstance(users[-1].get("content"), str):
                sys.exit(f"a prompt line without a user message's text: {line.strip()[:120]}")
            text = users[-1]["content"]
        answer = v.get("sim_answer")
        rows.append((text, sim_answer_tokens(answer) if isinstance(answer, str) else default_tokens))
    return rows


def cmd_data(args: argparse.Namespace) -> None:
    os.makedirs(args.dir, exist_ok=True)
    if args.from_prompts:
        with open(args.from_prompts) as f:
            lines = f.read().splitlines()
        rows = rows_from_prompt_file(lines, args.output_tokens)
        prompts = [p for p, _ in rows]
        with open(os.path.join(args.dir, "prompts.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
    else:
        prompts = make_prompts(args.requests, args.prompt_chars, args.seed)
        rows = [(p, args.output_tokens) for p in prompts]
        with open(os.path.join(args.dir, "prompts.jsonl"), "w") as f:
            for p in prompts:
                f.write(json.dumps({"messages": [{"role": "user", "content": p}]}) + "\n")
    # guidellm stops when its dataset runs out; the drill cycles its prompt file.
    # Repeat the prompts, in the same order, for as long as any run here lasts.
    with open(os.path.join(args.dir, "guidellm.jsonl"), "w") as f:
        for i in range(max(args.rows, len(rows))):
            p, n = rows[i % len(rows)]
            f.write(json.dumps({"prompt": p, "output_tokens_count": n}) + "\n")
    build_tokenizer(prompts, os.path.join(args.dir, "tokenizer"))
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(os.path.join(args.dir, "tokenizer"))
    if t.decode(t.encode(prompts[0], add_special_tokens=False)) != prompts[0]:
        sys.exit("the trained tokenizer does not round-trip its own text")
    lengths = [n for _, n in rows]
    print(json.dumps({"prompts": len(prompts), "tokens_per_prompt": len(t.encode(prompts[0])),
                      "output_tokens_min": min(lengths), "output_tokens_max": max(lengths),
                      "output_tokens_mean": sum(lengths) / len(lengths)}))


def _stat(metrics: dict, name: str) -> dict:
    m = metrics.get(name) or {}
    return m.get("successful") or {}


def load_of(benchmark: dict) -> float | None:
    """The load a benchmark ran at: streams (concurrent), rate (constant, poisson)."""
    strategy = benchmark.get("config", {}).get("strategy", {})
    for key in ("streams", "rate"):
        if strategy.get(key) is not None:
            return float(strategy[key])
    if strategy.get("type_") == "synchronous":
        return 1.0
    return None


def successful_requests(benchmark: dict) -> list[dict]:
    reqs = benchmark.get("requests") or {}
    return list(reqs.get("successful") or [])


def summarize(report: dict) -> list[dict]:
    out = []
    for b in report.get("benchmarks", []):
        m = b.get("metrics", {})
        ttft, itl, otok = (
            _stat(m, "time_to_first_token_ms"),
            _stat(m, "inter_token_latency_ms"),
            _stat(m, "output_token_count"),
        )
        per_iter = _stat(m, "output_tokens_per_iteration")
        out.append(
            {
                "strategy": b.get("config", {}).get("strategy", {}).get("type_"),
                "load": load_of(b),
                "requests": ttft.get("count", 0),
                "errored": (m.get("request_totals") or {}).get("errored"),
                "ttft_mean_ms": ttft.get("mean"),
                "ttft_median_ms": ttft.get("median"),
                "itl_mean_ms": itl.get("mean"),
                "itl_median_ms": itl.get("median"),
                "output_tokens_mean": otok.get("mean"),
                "output_tokens_min": otok.get("min"),
                "output_tokens_max": otok.get("max"),
                "output_tokens_per_iteration_mean": per_iter.get("mean"),
                "output_tokens_per_s": _stat(m, "output_tokens_per_second").get("mean"),
                "requests_per_s": _stat(m, "requests_per_second").get("mean"),
            }
        )
    return out


def _request_ms(req: dict) -> tuple[float | None, float | None, float | None]:
    """TTFT, ITL (TPOT without the first token) and e2e of one request, ms.

    From the request's timings as guidellm defines them (request_start to the first
    and last token iterations, tokens from usage), so that it does not depend on
    which computed fields a report version serialises.
    """
    t = (req.get("info") or {}).get("timings") or {}
    start, first, last = t.get("request_start"), t.get("first_token_iteration"), t.get("last_token_iteration")
    end = t.get("request_end") or last
    tokens = req.get("output_tokens")
    if tokens is None:
        tokens = ((req.get("output_metrics") or {}).get("text_tokens"))
    ttft = 1000 * (first - start) if first is not None and start is not None else req.get("time_to_first_token_ms")
    if first is not None and last is not None and tokens and tokens > 1:
        itl = 1000 * (last - first) / (tokens - 1)
    else:
        itl = req.get("inter_token_latency_ms")
    e2e = 1000 * (end - start) if end is not None and start is not None else None
    return ttft, itl, e2e


def attainment(benchmark: dict, ttft_ms: float | None, tpot_ms: float | None, e2e_ms: float | None) -> tuple[float | None, int]:
    """Share of successful requests meeting every objective given, and how many were judged.

    Errored requests count as missing the objectives (they are not good), as
    brownout's goodput counts them. Incomplete ones are left out: they are the
    requests still running when the benchmark's time ran out, cancelled by
    guidellm, not failed by the server (guidellm's own attainment leaves them out
    too); counting them would cost every probe N of its requests at N streams.
    """
    ok = successful_requests(benchmark)
    reqs = benchmark.get("requests") or {}
    failed = len(reqs.get("errored") or [])
    n = len(ok) + failed
    if n == 0:
        return None, 0
    good = 0
    for r in ok:
        ttft, itl, e2e = _request_ms(r)
        if ttft_ms is not None and (ttft is None or ttft > ttft_ms):
            continue
        if tpot_ms is not None and itl is not None and itl > tpot_ms:
            continue
        if e2e_ms is not None and (e2e is None or e2e > e2e_ms):
            continue
        good += 1
    return good / n, n


def capacity(report: dict, ttft_ms: float | None = None, tpot_ms: float | None = None,
             e2e_ms: float | None = None, target: float = 0.99) -> dict:
    """The highest load of the report's benchmarks whose attainment is at least `target`.

    Loads are the sweep's rates (req/s) or the concurrency steps' streams; a
    sweep's synchronous and throughput anchors are left out unless they carry a
    load (synchronous counts as concurrency 1 only in a concurrency series).
    The capacity is the highest passing load below the lowest failing one, so a
    noisy pass above a failure does not count, as a bisection would not reach it.
    """
    probes = []
    for b in report.get("benchmarks", []):
        load = load_of(b)
        strategy = b.get("config", {}).get("strategy", {}).get("type_")
        if load is None or strategy == "throughput":
            continue
        att, n = attainment(b, ttft_ms, tpot_ms, e2e_ms)
        probes.append({"strategy": strategy, "load": load, "requests": n, "attainment": att,
                       "passed": att is not None and att >= target})
    probes.sort(key=lambda p: p["load"])
    lowest_fail = min((p["load"] for p in probes if not p["passed"]), default=None)
    passing = [p["load"] for p in probes if p["passed"] and (lowest_fail is None or p["load"] < lowest_fail)]
    return {
        "capacity": max(passing) if passing else None,
        "lowest_failing": lowest_fail,
        "target": target,
        "objectives": {"ttft_ms": ttft_ms, "tpot_ms": tpot_ms, "e2e_ms": e2e_ms},
        "probes": probes,
    }


def cmd_run(args: argparse.Namespace) -> None:
    steps = [int(n) for n in str(args.concurrency).split(",") if n.strip()]
    if not steps or min(steps) < 1:
        sys.exit(f"--concurrency: one or more positive whole numbers, comma-separated, not {args.concurrency!r}")
    data = os.path.join(args.data, "guidellm.jsonl")
    tok = os.path.join(args.data, "tokenizer")
    env = dict(os.environ)
    env.setdefault("GUIDELLM__LOGGING__CONSOLE_LOG_LEVEL", "WARNING")
    env["USE_TORCH"] = "0"
    if args.processes:
        env["GUIDELLM__MAX_WORKER_PROCESSES"] = str(args.processes)
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "guidellm"), "run",
        "--backend", f"kind=openai_http,target={args.target},model={args.model}",
        "--profile", f"kind=concurrent,streams={steps[0]}",
        "--constraint", f"kind=max_duration,seconds={args.seconds}",
        "--data", f"kind=json_file,path={data}",
        "--tokenizer", f"kind=huggingface_auto,model={tok}",
        "--seed", f"kind=static,value={args.seed}",
        "--output", f"kind=json,path={args.out}",
        "--disable-console-interactive",
    ]
    if len(steps) > 1:
        cmd += ["--override", "profile.streams", ",".join(str(n) for n in steps)]
    with tempfile.TemporaryFile("w+") as log:
        rc = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        if rc != 0:
            log.seek(0)
            sys.stderr.write(log.read()[-6000:])
            sys.exit(f"guidellm run exited {rc}")
    with open(args.out) as f:
        for s in summarize(json.load(f)):
            print(json.dumps(s))


def cmd_summary(args: argparse.Namespace) -> None:
    with open(args.file) as f:
        for s in summarize(json.load(f)):
            print(json.dumps(s))


def cmd_capacity(args: argparse.Namespace) -> None:
    with open(args.file) as f:
        report = json.load(f)
    print(json.dumps(capacity(report, args.ttft_ms, args.tpot_ms, args.e2e_ms, args.attainment)))


def _fake_request(ttft_ms: float, itl_ms: float, tokens: int) -> dict:
    start = 1000.0
    first = start + ttft_ms / 1000
    last = first + itl_ms * (tokens - 1) / 1000
    return {"output_tokens": tokens, "info": {"timings": {
        "request_start": start, "first_token_iteration": first,
        "last_token_iteration": last, "request_end": last}}}


def _fake_benchmark(kind: str, load: float, ttfts: list[float], itl: float = 5.0, errored: int = 0,
                    incomplete: int = 0) -> dict:
    key = "streams" if kind == "concurrent" else "rate"
    return {"config": {"strategy": {"type_": kind, key: load}},
            "metrics": {"time_to_first_token_ms": {"successful": {"count": len(ttfts), "median": sorted(ttfts)[len(ttfts) // 2]}}},
            "requests": {"successful": [_fake_request(t, itl, 64) for t in ttfts],
                         "errored": [{}] * errored, "incomplete": [{}] * incomplete}}


def selftest() -> None:
    fails = []

    checks = 0

    def check(name, got, want):
        nonlocal checks
        checks += 1
        if got != want:
            fails.append(f"{name}: got {got!r}, want {want!r}")

    steps = {"benchmarks": [
        _fake_benchmark("concurrent", 8, [50.0] * 100),
        _fake_benchmark("concurrent", 16, [50.0] * 99 + [900.0]),      # 99% good
        _fake_benchmark("concurrent", 32, [50.0] * 90 + [900.0] * 10),  # 90%
        _fake_benchmark("concurrent", 64, [900.0] * 100),
    ]}
    check("concurrency steps", capacity(steps, ttft_ms=500, target=0.99)["capacity"], 16.0)
    check("looser target", capacity(steps, ttft_ms=500, target=0.9)["capacity"], 32.0)
    check("nothing passes", capacity(steps, ttft_ms=10, target=0.99)["capacity"], None)
    check("tpot objective", capacity(steps, ttft_ms=1000, tpot_ms=4.0)["capacity"], None)
    check("tpot objective met", capacity(steps, ttft_ms=1000, tpot_ms=6.0)["capacity"], 64.0)
    # a pass above the first failure is noise, not capacity
    noisy = {"benchmarks": steps["benchmarks"][:3] + [_fake_benchmark("concurrent", 64, [50.0] * 100)]}
    check("noisy pass above a failure", capacity(noisy, ttft_ms=500, target=0.99)["capacity"], 16.0)
    # errors are not good
    errs = {"benchmarks": [_fake_benchmark("constant", 2.5, [50.0] * 95, errored=5)]}
    check("errors count against", capacity(errs, ttft_ms=500, target=0.99)["capacity"], None)
    check("errors within target", capacity(errs, ttft_ms=500, target=0.95)["capacity"], 2.5)
    # requests cut off by the benchmark's end are not judged
    cut = {"benchmarks": [_fake_benchmark("concurrent", 8, [50.0] * 60, incomplete=8)]}
    check("incomplete left out", capacity(cut, ttft_ms=500, target=0.99)["capacity"], 8.0)
    # a sweep: the throughput anchor has no load and is left out
    sweep = {"benchmarks": [
        {"config": {"strategy": {"type_": "synchronous"}}, "requests": {"successful": [_fake_request(20, 5, 64)] * 10}},
        {"config": {"strategy": {"type_": "throughput", "max_concurrency": None}}, "requests": {"successful": [_fake_request(2000, 5, 64)] * 10}},
        _fake_benchmark("constant", 4.0, [40.0] * 50),
        _fake_benchmark("constant", 8.0, [600.0] * 50),
    ]}
    r = capacity(sweep, ttft_ms=500)
    check("sweep capacity", r["capacity"], 4.0)
    check("sweep probes", [p["load"] for p in r["probes"]], [1.0, 4.0, 8.0])
    s = summarize(steps)
    check("summary loads", [x["load"] for x in s], [8.0, 16.0, 32.0, 64.0])
    check("summary median", s[0]["ttft_median_ms"], 50.0)
    # a drill prompt file's answer lengths, as the simulator counts tokens
    check("sim tokens", sim_answer_tokens("stream slot  cache token"), 4)
    check("sim tokens, one", sim_answer_tokens(""), 1)
    lines = [json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Q0"}],
                         "sim_answer": "a b c"}),
             "",
             json.dumps({"messages": [{"role": "user", "content": "Q1"}]}),
             json.dumps({"prompt": "Q2", "sim_answer": "x"})]
    check("prompt file rows", rows_from_prompt_file(lines, 128), [("Q0", 3), ("Q1", 128), ("Q2", 1)])
    ttft, itl, _ = _request_ms(_fake_request(30.0, 5.0, 11))
    check("request ttft", round(ttft, 6), 30.0)
    check("request itl", round(itl, 6), 5.0)
    if fails:
        print("\n".join(fails))
        print(f"{checks - len(fails)} passed, {len(fails)} failed")
        sys.exit(1)
    print(f"selftest: {checks} passed, 0 failed")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("dir")
    d.add_argument("--requests", type=int, default=64)
    d.add_argument("--rows", type=int, default=8192)
    d.add_argument("--prompt-chars", type=int, default=800)
    d.add_argument("--output-tokens", type=int, default=128)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--from-prompts", help="a drill prompt file to take the prompts and answer lengths from")
    r = sub.add_parser("run")
    r.add_argument("--target", required=True)
    r.add_argument("--model", default="llama-3.1-8b")
    r.add_argument("--concurrency", required=True, help="streams, or a comma-separated list of steps")
    r.add_argument("--seconds", type=float, required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--seed", type=int, default=7)
    r.add_argument("--processes", type=int, help="guidellm's worker processes (default: guidellm's, 10)")
    s = sub.add_parser("summary")
    s.add_argument("file")
    c = sub.add_parser("capacity")
    c.add_argument("file")
    c.add_argument("--ttft-ms", type=float)
    c.add_argument("--tpot-ms", type=float)
    c.add_argument("--e2e-ms", type=float)
    c.add_argument("--attainment", type=float, default=0.99)
    sub.add_parser("selftest")
    a = p.parse_args()
    {"data": cmd_data, "run": cmd_run, "summary": cmd_summary, "capacity": cmd_capacity,
     "selftest": lambda _a: selftest()}[a.cmd](a)


if __name__ == "__main__":
    main()
