#!/usr/bin/env bash
# The drill's load generator against oha, side by side in one run, both aimed at
# `brownout sim` directly (no proxy): the generator must sustain RATE (default
# 5000) requests/s open loop, and reach at least 80% of oha's rate.
#
#   bench/drill_generator.sh                     # DUR=10 RATE=5000 CONNS=64
#
# Rounds: oha at full speed (closed loop, CONNS connections), then the generator
# open loop at RATE, then open loop at 60%, 70%, ... of oha's rate until it no
# longer keeps up (same CONNS connections at most). The
# generator is the same engine as `brownout drill` (drill/examples/generator.rs):
# Poisson arrivals, the SDK-like client, HDR statistics and scoring.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
RATE=${RATE:-5000}
CONNS=${CONNS:-64}
command -v oha >/dev/null || { echo "oha is needed: cargo install oha" >&2; exit 2; }
cargo build --release -q -p brownout -p brownout-drill --example generator
BIN=target/release/brownout
GEN=target/release/examples/generator
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
RUST_LOG=warn $BIN sim --listen 127.0.0.1:$PORT --ttft 0ms --itl 0ms >/dev/null 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "$URL/v1/models" >/dev/null && break; sleep 0.1; done

BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi."}],"max_tokens":16}'
echo "== oha: ${DUR}s, ${CONNS} connections, full speed" >&2
oha -z "${DUR}s" -c "$CONNS" --no-tui --output-format json -m POST \
  -H 'content-type: application/json' -d "$BODY" "$URL/v1/chat/completions" > /tmp/oha-gen.json
OHA_RPS=$(python3 -c 'import json; d=json.load(open("/tmp/oha-gen.json")); print(round(d["summary"]["requestsPerSec"]))')
OHA_OK=$(python3 -c 'import json; d=json.load(open("/tmp/oha-gen.json")); print(d["summary"]["successRate"])')
echo "oha: $OHA_RPS req/s (success rate $OHA_OK)" >&2

echo "== generator: open loop at $RATE/s for ${DUR}s" >&2
A=$($GEN "$URL" "$RATE" "$DUR")
echo "$A" >&2
# The generator's highest sustained rate: open loop at a rising share of oha's rate
# until it no longer keeps up (completes < 97% of what was asked, or errors).
RUNS=()
for share in 0.6 0.7 0.8 0.9 1.0; do
  R=$(python3 -c "print(round($OHA_RPS * $share))")
  echo "== generator: open loop at $R/s ($share of oha) for ${DUR}s" >&2
  OUT=$($GEN "$URL" "$R" "$DUR")
  echo "$OUT" >&2
  RUNS+=("$OUT")
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d['errors']==0 and d['completed_per_s'] >= 0.97*d['rate_asked'] else 1)" "$OUT" || break
done

python3 - "$RATE" "$OHA_RPS" "$A" "${RUNS[@]}" <<'PY'
import json, sys
rate, oha = float(sys.argv[1]), float(sys.argv[2])
a = json.loads(sys.argv[3])
runs = [json.loads(x) for x in sys.argv[4:]]
kept = lambda r: r["errors"] == 0 and r["completed_per_s"] >= 0.97 * r["rate_asked"]
ok_a = kept(a)
best = max((r["completed_per_s"] for r in runs if kept(r)), default=0.0)
ratio = best / oha
print("| run | asked req/s | completed req/s | errors | p50 ms | p99 ms | max send lag ms | CPU µs/req |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
print(f"| oha (closed loop) | - | {oha:.0f} | - | - | - | - | - |")
for name, r in [("generator @ RATE", a)] + [("generator", r) for r in runs]:
    print(f"| {name} | {r['rate_asked']:.0f} | {r['completed_per_s']:.0f} | {r['errors']} | {r['p50_ms'] or 0:.2f} | {r['p99_ms'] or 0:.2f} | {r['max_send_lag_ms']:.1f} | {r['cpu_us_per_request']:.1f} |")
print(f"\nsustains {rate:.0f}/s: {'yes' if ok_a else 'NO'}; highest sustained rate {best:.0f}/s = {ratio:.2f} of oha's (target ≥ 0.80)")
sys.exit(0 if ok_a and ratio >= 0.8 else 1)
PY
