#!/usr/bin/env bash
# Records lost to a crash: `kill -9` brownout while wrk saturates it, then compare the
# responses wrk received with the records in the file.
#
# Records go through a bounded queue to a background writer that writes a batch at
# least every 10 ms; a process killed outright loses what was queued and not yet
# written, never a line half-written. Each run reports the responses received, the
# records written, the missing ones (as a count and as milliseconds of traffic at the
# run's rate), and whether the file ends in a torn line.
#
# Target (issue 19): missing <= the records of the last 100 ms, no torn line. The
# script exits 1 when a run misses that, 0 otherwise.
#
# Environment (defaults in brackets):
#   RUNS [3] kills          KILL_AT [1.5] seconds of load before the kill
#   CONNS [64] wrk connections   THREADS [2] wrk threads   BUDGET_MS [100]
#   BROWNOUT [target/release/brownout]   OUT_DIR [bench/out]
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
bench_init crash_loss.sh brownout-crash
need_cmds "apt-get install -y wrk nginx-light" wrk nginx python3 curl
need_brownout
unset_brownout_env
RUNS=${RUNS:-3}
KILL_AT=${KILL_AT:-1.5}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
BUDGET_MS=${BUDGET_MS:-100}
DUR=$(python3 -c "import math; print(math.ceil($KILL_AT) + 2)")

start_upstream
mkdir -p "$OUT_DIR"
out="$OUT_DIR/crash-loss-$(utc_stamp).json"
results=()
fail=0
for run in $(seq 1 "$RUNS"); do
  rec="$WORK/records-$run.jsonl"
  start_brownout "brownout-$run" "http://127.0.0.1:$UP" --record "$rec"
  # Readiness through the admin port: its requests are not records.
  wait_http "brownout-$run" "$BO_ADMIN" /healthz
  wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:$BO_PORT/" >"$WORK/wrk-$run.out" 2>&1 &
  wrk_pid=$!
  sleep "$KILL_AT"
  kill -KILL "$BO_PID"
  wait "$wrk_pid" || true
  wait "$BO_PID" 2>/dev/null || true
  responses=$(grep -oE '^ *[0-9]+ requests in' "$WORK/wrk-$run.out" | grep -oE '[0-9]+' || echo 0)
  line=$(python3 - "$rec" "$responses" "$KILL_AT" "$BUDGET_MS" "$run" <<'PY'
import json, sys
path, responses, kill_at, budget_ms, run = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
data = open(path, "rb").read()
torn = bool(data) and not data.endswith(b"\n")
records = 0
for l in data.split(b"\n"):
    if not l:
        continue
    try:
        json.loads(l)
        records += 1
    except ValueError:
        torn = True
rate = responses / kill_at if kill_at > 0 else 0.0
missing = max(responses - records, 0)
missing_ms = 1000.0 * missing / rate if rate else 0.0
ok = (not torn) and missing_ms <= budget_ms
print(json.dumps({"run": run, "responses": responses, "records": records, "missing": missing,
                  "missing_pct": round(100.0 * missing / responses, 3) if responses else 0.0,
                  "rate_rps": round(rate), "missing_ms": round(missing_ms, 1), "torn_line": torn,
                  "ok": ok}))
PY
)
  echo "$line"
  results+=("$line")
  [[ $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ok'])" "$line") == True ]] || fail=1
done
python3 - "$out" "$BUDGET_MS" "${results[@]}" <<'PY'
import json, sys
out, budget = sys.argv[1], float(sys.argv[2])
runs = [json.loads(r) for r in sys.argv[3:]]
worst = max((r["missing_ms"] for r in runs), default=0.0)
summary = {"budget_ms": budget, "worst_missing_ms": worst, "any_torn_line": any(r["torn_line"] for r in runs), "runs": runs}
open(out, "w").write(json.dumps(summary, indent=2) + "\n")
print(f"crash_loss.sh: worst run missing {worst:.1f} ms of traffic (budget {budget:.0f} ms), torn lines: {summary['any_torn_line']}; {out}")
PY
exit "$fail"
