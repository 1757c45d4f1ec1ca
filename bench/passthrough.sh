#!/usr/bin/env bash
# Pass-through cost of brownout with no fault active, side by side with nginx and
# HAProxy as reverse proxies in front of the same upstream, in one run.
#
# Targets (all on loopback, all forwarding to one nginx upstream that returns a
# fixed ~200-byte JSON body):
#   direct              wrk -> upstream (the floor)
#   nginx               wrk -> nginx reverse proxy -> upstream
#   haproxy             wrk -> HAProxy (mode http)  -> upstream
#   brownout            wrk -> brownout serve (no profile) -> upstream
#   brownout-50-rules   wrk -> brownout serve with 50 rules that never match -> upstream
#   brownout-100-rules  the same with 100 rules (any brownout-N-rules in TARGETS works):
#                       the "100 rules cost < 5% throughput" check, read against `brownout`
#   brownout-hyper      brownout with `fast_path: false`: every request through hyper
#                       (the full path a matching rule takes), for an A/B of the fast path
#   brownout-b          the binary $BROWNOUT_B (say, the build before a change), no
#                       profile: an A/B of two builds in one run
#   brownout-b-hyper    the same with `fast_path: false`
#
# For each target: a saturation run (wrk -t1 -c$CONNS), then a fixed-rate run at
# RATE_FRACTION (default 0.5) of nginx's saturation throughput. For each run: req/s,
# p50/p99 latency and the proxy's CPU time per request (utime+stime from
# /proc/PID/stat, summed over every process of the proxy, before/after the run).
# Before the load runs, memory per idle keep-alive connection (PSS delta with
# $IDLE_CONNS idle connections open).
#
# Environment knobs (defaults in brackets):
#   BROWNOUT [target/release/brownout]   DUR [10] seconds per measured wrk run
#   WARM [2] warm-up seconds per run     CONNS [32] wrk connections
#   REPEAT [1] rounds (targets interleaved; medians reported)
#   RATE_FRACTION [0.5]                  IDLE_CONNS [1000] (0 skips the idle test)
#   SYSCALL_DUR [3] seconds of the syscall census per proxy (0 skips it; needs perf)
#   TARGETS ["direct nginx haproxy brownout brownout-50-rules brownout-100-rules"];
#                  add brownout-hyper for the fast path's A/B
#   REQUEST [get]: `get` = GET /; `chat` = POST /v1/chat/completions with a small
#                  JSON body (brownout then runs with --api openai)
#   PROXY_CORES [nproc]: nginx worker_processes / HAProxy nbthread /
#                  brownout tokio worker threads (TOKIO_WORKER_THREADS)
#   OUT_DIR [bench/out]
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
bench_init passthrough.sh brownout-bench
DUR=${DUR:-10}
WARM=${WARM:-2}
CONNS=${CONNS:-32}
REPEAT=${REPEAT:-1}
RATE_FRACTION=${RATE_FRACTION:-0.5}
IDLE_CONNS=${IDLE_CONNS:-1000}
TARGETS=${TARGETS:-"direct nginx haproxy brownout brownout-50-rules brownout-100-rules"}
REQUEST=${REQUEST:-get}
PROXY_CORES=${PROXY_CORES:-$NCPU}

need_cmds "apt-get install -y wrk nginx-light haproxy python3 curl" wrk nginx haproxy python3 curl
need_brownout
case $REQUEST in get|chat) ;; *) die "REQUEST must be get or chat" ;; esac

# ---------------------------------------------------------------- start everything
unset_brownout_env
start_upstream "$(bench_body)"
start_nginx_proxy "$PROXY_CORES"
start_haproxy "$PROXY_CORES"

API_ARGS=()
[[ $REQUEST == chat ]] && API_ARGS=(--api openai)
declare -A PORT=([direct]=$UP [nginx]=$NG [haproxy]=$HP)
declare -A PPID_OF=([direct]=none [nginx]=$NG_PID [haproxy]=$HP_PID)
for t in $TARGETS; do
  case $t in
    direct|nginx|haproxy) ;;
    brownout)
      start_brownout brownout "http://127.0.0.1:$UP" "${API_ARGS[@]}"
      PORT[$t]=$BO_PORT; PPID_OF[$t]=$BO_PID ;;
    brownout-hyper)
      printf 'fast_path: false\n' > "$WORK/hyper.yaml"
      start_brownout "$t" "http://127.0.0.1:$UP" --config "$WORK/hyper.yaml" "${API_ARGS[@]}"
      PORT[$t]=$BO_PORT; PPID_OF[$t]=$BO_PID ;;
    brownout-b|brownout-b-hyper)
      [[ -x ${BROWNOUT_B:-} ]] || die "$t needs BROWNOUT_B, the other build's binary"
      printf 'fast_path: %s\n' "$([[ $t == brownout-b ]] && echo true || echo false)" > "$WORK/$t.yaml"
      BROWNOUT=$BROWNOUT_B start_brownout "$t" "http://127.0.0.1:$UP" --config "$WORK/$t.yaml" "${API_ARGS[@]}"
      PORT[$t]=$BO_PORT; PPID_OF[$t]=$BO_PID ;;
    brownout-*-rules)
      n=${t#brownout-}; n=${n%-rules}
      [[ $n =~ ^[0-9]+$ ]] || die "unknown target $t (brownout-N-rules takes a number)"
      write_rules_profile "$WORK/bench-$n-rules.yaml" "$n"
      start_brownout "$t" "http://127.0.0.1:$UP" --profile "$WORK/bench-$n-rules.yaml" "${API_ARGS[@]}"
      PORT[$t]=$BO_PORT; PPID_OF[$t]=$BO_PID ;;
    *) die "unknown target $t" ;;
  esac
done
for t in nginx haproxy $TARGETS; do [[ $t == direct ]] || wait_http "$t" "${PORT[$t]}"; done

# Same body through every target?
want=$(curl -s "http://127.0.0.1:$UP/")
for t in $TARGETS; do
  got=$(curl -s "http://127.0.0.1:${PORT[$t]}/")
  [[ $got == "$want" ]] || die "$t does not return the upstream's body (got: ${got:0:200})"
done

# ---------------------------------------------------------------- wrk runs
WRK_SCRIPT=$WORK/wrk.lua
write_wrk_script "$WRK_SCRIPT" "$REQUEST"

RESULTS=$WORK/results.jsonl
: >"$RESULTS"

# run_wrk TARGET MODE RATE ROUND: one warm-up run, then one measured run.
run_wrk() {
  local t=$1 mode=$2 rate=$3 round=$4 port=${PORT[$1]} ppid=${PPID_OF[$1]}
  local c0 c1 u0 u1 x0 x1 out line cu0 cs0 cu1 cs1 uu0 us0 uu1 us1
  WRK_RATE=$rate wrk -t1 -c"$CONNS" -d"${WARM}s" -s "$WRK_SCRIPT" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  x0=$(ctx_switches "$ppid"); read -r cu0 cs0 < <(cpu_ticks "$ppid"); read -r uu0 us0 < <(cpu_ticks "$UP_PID")
  out=$(WRK_RATE=$rate wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$WRK_SCRIPT" "http://127.0.0.1:$port/" 2>&1) || {
    echo "$out" >&2; die "wrk failed against $t"; }
  read -r cu1 cs1 < <(cpu_ticks "$ppid"); read -r uu1 us1 < <(cpu_ticks "$UP_PID"); x1=$(ctx_switches "$ppid")
  c0=$(( cu0 + cs0 )); c1=$(( cu1 + cs1 )); u0=$(( uu0 + us0 )); u1=$(( uu1 + us1 ))
  line=$(grep '^WRKJSON ' <<<"$out" | sed 's/^WRKJSON //') || { echo "$out" >&2; die "no summary from wrk for $t"; }
  python3 - "$line" "$t" "$mode" "$rate" "$round" $((c1 - c0)) $((u1 - u0)) "$CLK_TCK" $((x1 - x0)) $((cu1 - cu0)) $((cs1 - cs0)) >>"$RESULTS" <<'EOF'
import json, sys
w = json.loads(sys.argv[1])
t, mode, rate, rnd, ticks, up_ticks, hz = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
ctxsw, user_ticks, sys_ticks = int(sys.argv[9]), int(sys.argv[10]), int(sys.argv[11])
n = max(w["requests"], 1)
w.update(target=t, mode=mode, target_rate=float(rate or 0), round=rnd,
         rps=w["requests"] / (w["duration_us"] / 1e6),
         proxy_cpu_s=ticks / hz if t != "direct" else None,
         proxy_cpu_us_per_req=(ticks / hz * 1e6 / n) if t != "direct" else None,
         upstream_cpu_us_per_req=up_ticks / hz * 1e6 / n,
         proxy_ctx_switches_per_req=(ctxsw / n) if t != "direct" else None,
         proxy_user_us_per_req=(user_ticks / hz * 1e6 / n) if t != "direct" else None,
         proxy_sys_us_per_req=(sys_ticks / hz * 1e6 / n) if t != "direct" else None)
print(json.dumps(w))
EOF
  python3 - "$RESULTS" <<'EOF'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
cpu = "-" if r["proxy_cpu_us_per_req"] is None else "%.1f" % r["proxy_cpu_us_per_req"]
errs = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + r["err_timeout"]
cs = "-" if r["proxy_ctx_switches_per_req"] is None else "%.2f" % r["proxy_ctx_switches_per_req"]
print("  %-18s %-10s round %d: %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %s us/req  ctxsw %s/req  errors %d"
      % (r["target"], r["mode"], r["round"], r["rps"], r["lat_p50_us"] / 1e3, r["lat_p99_us"] / 1e3, cpu, cs, errs),
      file=sys.stderr)
EOF
}

echo "brownout pass-through benchmark: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r)" >&2
echo "  request: $REQUEST; wrk -t1 -c$CONNS -d${DUR}s (+${WARM}s warm-up); $REPEAT round(s), targets interleaved" >&2
echo "  fairness: nginx worker_processes $PROXY_CORES, HAProxy nbthread $PROXY_CORES, brownout TOKIO_WORKER_THREADS=$PROXY_CORES;" >&2
echo "            upstream nginx worker_processes 1; all keep-alive to the upstream; no access logs" >&2

# Idle connection memory (before any load, so nothing is warmed up yet).
IDLE_JSON=$WORK/idle.json
echo "[]" >"$IDLE_JSON"
if (( IDLE_CONNS > 0 )); then
  echo "idle connections: $IDLE_CONNS per target" >&2
  args=()
  for t in $TARGETS; do [[ $t == direct ]] || args+=("$t:${PORT[$t]}:${PPID_OF[$t]}"); done
  python3 "$HERE/lib/idle_mem.py" "$IDLE_CONNS" "${args[@]}" >"$IDLE_JSON"
fi

echo "saturation runs" >&2
for round in $(seq 1 "$REPEAT"); do
  for t in $TARGETS; do run_wrk "$t" saturation "" "$round"; done
done

NGINX_RPS=$(python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
v = [r["rps"] for r in rs if r["target"] == "nginx" and r["mode"] == "saturation"]
print(statistics.median(v) if v else 0)
EOF
)
if [[ $NGINX_RPS == 0 ]]; then
  NGINX_RPS=$(python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
print(statistics.median([r["rps"] for r in rs]))
EOF
)
fi
RATE=$(python3 -c "print(int(float('$NGINX_RPS') * float('$RATE_FRACTION')))")
echo "fixed-rate runs at $RATE req/s ($RATE_FRACTION x nginx saturation; paced by bench/lib/report.lua)" >&2
for round in $(seq 1 "$REPEAT"); do
  for t in $TARGETS; do run_wrk "$t" fixed-rate "$RATE" "$round"; done
done

# Syscall census: syscalls per request at the fixed rate, counted by perf tracepoints
# in a separate short run (counting slows the process a little, so it is kept out of
# the CPU measurements above).
SYSCALLS_JSON=$WORK/syscalls.jsonl
: >"$SYSCALLS_JSON"
SYSCALL_DUR=${SYSCALL_DUR:-3}
if (( SYSCALL_DUR > 0 )) && command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
  echo "syscall census at $RATE req/s, ${SYSCALL_DUR}s per target (perf stat tracepoints)" >&2
  EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_ctl
  for t in $TARGETS; do
    [[ $t == direct ]] && continue
    pids=$(tree_pids "${PPID_OF[$t]}" | paste -sd, -)
    perf stat -x, -e "$EVENTS" -p "$pids" -o "$WORK/perf-$t.csv" -- sleep $(( SYSCALL_DUR + 1 )) &
    PERF_PID=$!
    sleep 0.5
    out=$(WRK_RATE=$RATE wrk -t1 -c"$CONNS" -d"${SYSCALL_DUR}s" -s "$WRK_SCRIPT" "http://127.0.0.1:${PORT[$t]}/" 2>&1)
    wait "$PERF_PID" || true
    python3 "$HERE/lib/perf_syscalls.py" "$t" "$(grep '^WRKJSON ' <<<"$out" | sed 's/^WRKJSON //')" "$WORK/perf-$t.csv" >>"$SYSCALLS_JSON"
  done
else
  echo "syscall census skipped (needs perf with tracepoints, SYSCALL_DUR > 0)" >&2
fi

# ---------------------------------------------------------------- report
mkdir -p "$OUT_DIR"
STAMP=$(utc_stamp)
OUT=$OUT_DIR/passthrough-$STAMP.json
python3 "$HERE/lib/summarize.py" "$RESULTS" "$IDLE_JSON" "$SYSCALLS_JSON" "$OUT" \
  "request=$REQUEST" "dur_s=$DUR" "warm_s=$WARM" "conns=$CONNS" "repeat=$REPEAT" \
  "rate_fraction=$RATE_FRACTION" "fixed_rate=$RATE" "proxy_cores=$PROXY_CORES" \
  "nproc=$NCPU" "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
  "kernel=$(uname -r)" "brownout=$("$BROWNOUT" --version 2>/dev/null || echo unknown)" \
  "nginx=$(nginx -v 2>&1 | sed 's/.*: //')" "haproxy=$(haproxy -v | head -1 | awk '{print $3}')" \
  "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
echo "raw numbers: $OUT" >&2
