#!/usr/bin/env bash
# CPU profile of brownout's pass-through path under saturation, with perf.
#
# Starts an nginx upstream (fixed ~200-byte JSON body) and `brownout serve` in front
# of it (no profile, or RULES=50 non-matching rules), drives it with
# `wrk -t1 -c$CONNS` and records brownout with `perf record --call-graph dwarf`
# for $PERF_S seconds in the middle of the run. Writes
#   bench/out/profile-<date>.txt   flat profile (self time by symbol), by shared
#                                  object, and a caller tree of the top entries
#   bench/out/profile-<date>.data  perf data, for `perf report -i`
#
# Environment: BROWNOUT [target/release/brownout], RULES [0|50], REQUEST [get|chat],
#   CONNS [32], PERF_S [8], PERF_FREQ [499], OUT_DIR [bench/out]
# Needs: perf (Debian: linux-perf), nginx, wrk, curl, python3.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BROWNOUT=${BROWNOUT:-$ROOT/target/release/brownout}
RULES=${RULES:-0}
REQUEST=${REQUEST:-get}
CONNS=${CONNS:-32}
PERF_S=${PERF_S:-8}
PERF_FREQ=${PERF_FREQ:-499}
OUT_DIR=${OUT_DIR:-$HERE/out}

die() { echo "profile.sh: $*" >&2; exit 2; }
for cmd in perf wrk nginx python3 curl; do
  command -v "$cmd" >/dev/null || die "needs \`$cmd\` (Debian: apt-get install -y linux-perf wrk nginx-light python3 curl)"
done
[[ -x $BROWNOUT ]] || die "no brownout binary at $BROWNOUT"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/brownout-profile.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 1 100); do
    curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$2/" 2>/dev/null | grep -q '^200$' && return 0
    sleep 0.1
  done
  cat "$WORK"/*.out >&2 2>/dev/null || true
  die "$1 on port $2 did not come up"
}

USER_LINE=""
[[ $EUID -eq 0 ]] && USER_LINE="user root;"
UP=$(free_port)
cat >"$WORK/upstream.conf" <<EOF
$USER_LINE
worker_processes 1;
daemon off;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $WORK/ub; proxy_temp_path $WORK/up; fastcgi_temp_path $WORK/uf;
  uwsgi_temp_path $WORK/uu; scgi_temp_path $WORK/us;
  server {
    listen 127.0.0.1:$UP backlog=4096;
    location / {
      default_type application/json;
      return 200 '{"id":"bench-0001","object":"chat.completion","model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}]}';
    }
  }
}
EOF
nginx -p "$WORK" -c "$WORK/upstream.conf" >"$WORK/upstream.out" 2>&1 &
PIDS+=("$!")
wait_http upstream "$UP"

ARGS=(serve --upstream "http://127.0.0.1:$UP")
[[ $REQUEST == chat ]] && ARGS+=(--api openai)
if (( RULES > 0 )); then
  {
    echo "version: 1"; echo "name: bench-nonmatching"; echo "rules:"
    for i in $(seq 1 "$RULES"); do
      printf '  - name: never-%d\n    match: {path: "/never/%d/*"}\n    faults:\n      - type: delay\n        duration: 100ms\n' "$i" "$i"
    done
  } >"$WORK/rules.yaml"
  "$BROWNOUT" validate "$WORK/rules.yaml" >/dev/null
  ARGS+=(--profile "$WORK/rules.yaml")
fi
unset BROWNOUT_LISTEN BROWNOUT_UPSTREAM BROWNOUT_API BROWNOUT_PROFILE BROWNOUT_ADMIN \
      BROWNOUT_ADMIN_TOKEN BROWNOUT_RECORD BROWNOUT_SEED
BP=$(free_port); BA=$(free_port)
"$BROWNOUT" "${ARGS[@]}" --listen "127.0.0.1:$BP" --admin "127.0.0.1:$BA" >"$WORK/brownout.out" 2>&1 &
BPID=$!; PIDS+=("$BPID")
wait_http brownout "$BP"

WRK_SCRIPT=$WORK/wrk.lua
cp "$HERE/lib/report.lua" "$WRK_SCRIPT"
if [[ $REQUEST == chat ]]; then
  cat >>"$WRK_SCRIPT" <<'EOF'
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}'
EOF
fi

mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
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
