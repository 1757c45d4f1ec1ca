#!/usr/bin/env bash
# CPU profile of brownout's pass-through path under saturation, with perf.
#
# Starts an nginx upstream (fixed ~200-byte JSON body) and `brownout serve` in front
# of it (no profile, or RULES=N non-matching rules), drives it with
# `wrk -t1 -c$CONNS` and records brownout with `perf record --call-graph dwarf`
# for $PERF_S seconds in the middle of the run. Writes
#   bench/out/profile-<date>.txt   flat profile (self time by symbol), by shared
#                                  object, and a caller tree of the top entries
#   bench/out/profile-<date>.data  perf data, for `perf report -i`
#
# Environment: BROWNOUT [target/release/brownout], RULES [0|50|100|N], REQUEST [get|chat],
#   CONNS [32], PERF_S [8], PERF_FREQ [499], OUT_DIR [bench/out]
# Needs: perf (Debian: linux-perf), nginx, wrk, curl, python3.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
bench_init profile.sh brownout-profile
RULES=${RULES:-0}
REQUEST=${REQUEST:-get}
CONNS=${CONNS:-32}
PERF_S=${PERF_S:-8}
PERF_FREQ=${PERF_FREQ:-499}

need_cmds "apt-get install -y linux-perf wrk nginx-light python3 curl" perf wrk nginx python3 curl
need_brownout

start_upstream "$(bench_body)"

ARGS=()
[[ $REQUEST == chat ]] && ARGS+=(--api openai)
if (( RULES > 0 )); then
  write_rules_profile "$WORK/rules.yaml" "$RULES"
  ARGS+=(--profile "$WORK/rules.yaml")
fi
unset_brownout_env
start_brownout brownout "http://127.0.0.1:$UP" "${ARGS[@]}"
BPID=$BO_PID; BP=$BO_PORT
wait_http brownout "$BP"

WRK_SCRIPT=$WORK/wrk.lua
write_wrk_script "$WRK_SCRIPT" "$REQUEST"

mkdir -p "$OUT_DIR"
STAMP=$(utc_stamp)
DATA=$OUT_DIR/profile-$STAMP.data
TXT=$OUT_DIR/profile-$STAMP.txt
wrk -t1 -c"$CONNS" -d"$(( PERF_S + 4 ))s" -s "$WRK_SCRIPT" "http://127.0.0.1:$BP/" >"$WORK/wrk.out" 2>&1 &
WRK_PID=$!; PIDS+=("$WRK_PID")
sleep 2
perf record -q -F "$PERF_FREQ" --call-graph dwarf,16384 -p "$BPID" -o "$DATA" -- sleep "$PERF_S" 2>"$WORK/perf.err" || {
  cat "$WORK/perf.err" >&2; die "perf record failed"; }
wait "$WRK_PID" || true

{
  echo "# brownout pass-through profile: RULES=$RULES REQUEST=$REQUEST wrk -t1 -c$CONNS, perf -F $PERF_FREQ for ${PERF_S}s"
  echo "# $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), kernel $(uname -r)"
  grep -E 'Requests/sec|requests in' "$WORK/wrk.out" | sed 's/^/# wrk: /'
  echo
  echo "## self time by shared object"
  perf report -i "$DATA" --stdio --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15 || true
  echo
  echo "## self time by symbol (top 60)"
  perf report -i "$DATA" --stdio --no-children --sort sym -g none --percent-limit 0.3 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -60 || true
  echo
  echo "## inclusive time (children) by symbol, brownout code only (top 60)"
  perf report -i "$DATA" --stdio --children --sort sym -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | grep -E 'brownout|hyper|tokio|h2|http|tracing|serde|std::|core::|alloc::|__libc|syscall|epoll|send|recv|write|read' \
    | head -60 || true
} >"$TXT"
cat "$TXT"
echo "profile: $TXT (perf data: $DATA)" >&2
