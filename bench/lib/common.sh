# Shared preamble of the bench/ scripts. Source it, then call `bench_init`:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#   bench_init passthrough.sh brownout-bench      # script name, temp dir prefix
#   need_cmds "apt-get install -y wrk nginx-light" wrk nginx python3 curl
#   need_brownout
#
# What it gives:
#   HERE (bench/), ROOT (repository), BROWNOUT [target/release/brownout], OUT_DIR
#   [bench/out], WORK (a temporary directory removed on exit), PIDS (every process
#   started through `spawn` or appended to it is stopped on exit, Ctrl-C included:
#   TERM, then KILL after CLEANUP_WAIT tenths of a second, default 30), USER_LINE
#   (nginx `user root;` when run as root), CLK_TCK, NCPU.
#   die, need_cmds, need_brownout, free_port, wait_http, spawn, stop_pid, tree_pids,
#   wait_h2c, cpu_ticks, ctx_switches, upstream_conns, mem_kib,
#   unset_brownout_env, bench_body,
#   write_upstream_conf, start_upstream, start_nginx_proxy, start_haproxy,
#   start_brownout, start_sim, write_rules_profile, write_wrk_script, utc_stamp.
#
# Every start_* function sets globals named after what it started (ports and PIDs)
# and documents them; nothing is printed on success.

# ------------------------------------------------------------------ setup
bench_init() {
  BENCH_NAME=$1
  local prefix=${2:-brownout-bench}
  HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  ROOT=$(dirname "$HERE")
  BROWNOUT=${BROWNOUT:-$ROOT/target/release/brownout}
  OUT_DIR=${OUT_DIR:-$HERE/out}
  NCPU=$(nproc)
  CLK_TCK=$(getconf CLK_TCK)
  CLEANUP_WAIT=${CLEANUP_WAIT:-30}
  USER_LINE=""
  [[ $EUID -eq 0 ]] && USER_LINE="user root;"
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$prefix.XXXXXX")
  PIDS=()
  trap _bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

_bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 "$CLEANUP_WAIT"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [[ -n ${KEEP_WORK:-} ]] && { echo "$BENCH_NAME: kept $WORK" >&2; return; }
  rm -rf "$WORK"
}

die() { echo "$BENCH_NAME: $*" >&2; exit 2; }

# need_cmds HINT CMD...: every CMD must be on PATH; HINT says how to install them.
need_cmds() {
  local hint=$1 cmd; shift
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || die "needs \`$cmd\` (Debian: $hint)"
  done
}

need_brownout() {
  [[ -x $BROWNOUT ]] || die "no brownout binary at $BROWNOUT (cargo build --release -p brownout, or set BROWNOUT=)"
}

# Never let a caller's BROWNOUT_* environment change what is measured.
unset_brownout_env() {
  unset BROWNOUT_LISTEN BROWNOUT_UPSTREAM BROWNOUT_API BROWNOUT_PROFILE BROWNOUT_ADMIN \
        BROWNOUT_ADMIN_TOKEN BROWNOUT_RECORD BROWNOUT_SEED
}

utc_stamp() { date -u +%Y%m%dT%H%M%SZ; }

# ------------------------------------------------------------------ processes
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# spawn LOGNAME CMD...: start CMD in the background, output to $WORK/LOGNAME.out;
# sets SPAWNED to its PID and adds it to PIDS.
spawn() {
  local log=$1; shift
  "$@" >"$WORK/$log.out" 2>&1 &
  SPAWNED=$!
  PIDS+=("$SPAWNED")
}

# stop_pid PID: TERM, wait up to CLEANUP_WAIT tenths of a second, then KILL.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 "$CLEANUP_WAIT"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# wait_http NAME PORT [PATH]: wait (max 10 s) until GET PATH (default /) on PORT
# answers 200.
wait_http() {
  local name=$1 port=$2 path=${3:-/}
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port$path" 2>/dev/null | grep -q '^200$'; then
      return 0
    fi
    sleep 0.1
  done
  echo "--- $name logs:" >&2; cat "$WORK"/"$name".* >&2 2>/dev/null || true
  die "$name on port $port did not come up"
}

# wait_h2c NAME PORT [PATH [CURL_ARGS...]]: like wait_http, over cleartext HTTP/2 with
# prior knowledge (curl --http2-prior-knowledge), for servers that speak only h2c.
wait_h2c() {
  local name=$1 port=$2 path=${3:-/}
  shift $(( $# < 3 ? $# : 3 ))
  for _ in $(seq 1 100); do
    if curl -s --http2-prior-knowledge -o /dev/null -m 1 -w '%{http_code}' "$@" "http://127.0.0.1:$port$path" 2>/dev/null | grep -q '^200$'; then
      return 0
    fi
    sleep 0.1
  done
  echo "--- $name logs:" >&2; cat "$WORK"/"$name".* >&2 2>/dev/null || true
  die "$name on port $port did not come up (h2c)"
}

# All PIDs of a process tree (the process and its descendants).
tree_pids() {
  local pid=$1 child
  echo "$pid"
  for child in $(cat "/proc/$pid/task/"*/children 2>/dev/null); do tree_pids "$child"; done
}

# CPU ticks summed over a process tree, as "USER SYSTEM" (utime, stime); "0 0" for "none".
cpu_ticks() {
  local root=$1 user=0 sys=0 pid stat rest u s
  [[ $root == none ]] && { echo "0 0"; return; }
  for pid in $(tree_pids "$root"); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    rest=${stat##*) }
    read -r u s < <(awk '{print $12, $13}' <<<"$rest")
    user=$(( user + u )); sys=$(( sys + s ))
  done
  echo "$user $sys"
}

# Context switches (voluntary + involuntary) summed over every thread of a process tree.
ctx_switches() {
  local root=$1 total=0 pid
  [[ $root == none ]] && { echo 0; return; }
  for pid in $(tree_pids "$root"); do
    total=$(( total + $(cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}') ))
  done
  echo "$total"
}

# upstream_conns PID PORT: established TCP connections from the process tree of PID to
# destination port PORT (the upstream's port; ss -tnp, which needs to see the process:
# the same user, or root).
upstream_conns() {
  local root=$1 port=$2 pids
  [[ $root == none ]] && { echo 0; return; }
  pids=$(tree_pids "$root" | paste -sd'|' -)
  ss -Htnp state established "( dport = :$port )" 2>/dev/null | grep -cE "pid=($pids)," || true
}

# mem_kib PID: "RSS PSS" in KiB summed over the process tree (smaps_rollup).
mem_kib() {
  local rss=0 pss=0 pid r p
  for pid in $(tree_pids "$1"); do
    read -r r p < <(awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {print r+0, p+0}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo "0 0")
    rss=$(( rss + r )); pss=$(( pss + p ))
  done
  echo "$rss $pss"
}

# ------------------------------------------------------------------ configs
# The upstream's answer: a fixed 200-byte chat.completion JSON body.
bench_body() {
  local body='{"id":"bench-0001","object":"chat.completion","model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"'
  local pad=$(( 200 - ${#body} - 6 ))
  body+=$(printf 'x%.0s' $(seq 1 $pad))'"}}]}'
  printf '%s' "$body"
}

# nginx `worker_connections` for the upstream and the nginx proxy (raise it, and the
# fd limit, for tests with many connections).
NGINX_WORKER_CONNS=${NGINX_WORKER_CONNS:-8192}
_nginx_rlimit() {
  (( NGINX_WORKER_CONNS > 8192 )) && echo "worker_rlimit_nofile $(( NGINX_WORKER_CONNS * 2 + 1024 ));"
  return 0
}

# _nginx_head NAME WORKERS T: the start of an nginx config, shared by the upstream
# and the proxy: WORKERS processes, pid and error log $WORK/NAME.*, no access log,
# keep-alive without limits, temp paths $WORK/T*. The caller closes `http {`.
_nginx_head() {
  local name=$1 workers=$2 t=$3
  cat <<EOF
$USER_LINE
worker_processes $workers;
daemon off;
pid $WORK/$name.pid;
error_log $WORK/$name.err warn;
events { worker_connections $NGINX_WORKER_CONNS; }
$(_nginx_rlimit)
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $WORK/${t}b; proxy_temp_path $WORK/${t}p; fastcgi_temp_path $WORK/${t}f;
  uwsgi_temp_path $WORK/${t}u; scgi_temp_path $WORK/${t}s;
EOF
}

# write_upstream_conf FILE PORT BODY: nginx, 1 worker, `return 200 BODY` on every
# path, keep-alive without limits, no access log.
write_upstream_conf() {
  local file=$1 port=$2 body=$3
  cat >"$file" <<EOF
$(_nginx_head upstream 1 u)
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / {
      default_type application/json;
      return 200 '$body';
    }
  }
}
EOF
}

# start_upstream [BODY]: sets UP (port) and UP_PID; waits until it answers.
start_upstream() {
  local body=${1:-$(bench_body)}
  UP=$(free_port)
  write_upstream_conf "$WORK/upstream.conf" "$UP" "$body"
  spawn upstream nginx -p "$WORK" -c "$WORK/upstream.conf"
  UP_PID=$SPAWNED
  wait_http upstream "$UP"
}

# start_nginx_proxy CORES: nginx reverse proxy to 127.0.0.1:$UP (keepalive 64, HTTP/1.1
# upstream, no access log). Sets NG (port) and NG_PID; does not wait.
start_nginx_proxy() {
  local cores=$1
  NG=$(free_port)
  cat >"$WORK/nginx.conf" <<EOF
$(_nginx_head nginx "$cores" n)
  upstream up {
    server 127.0.0.1:$UP;
    keepalive 64;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$NG backlog=4096;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  spawn nginx nginx -p "$WORK" -c "$WORK/nginx.conf"
  NG_PID=$SPAWNED
}

# start_haproxy CORES [MAXCONN [ULIMIT_N]]: HAProxy `mode http` to 127.0.0.1:$UP.
# ULIMIT_N caps its fd limit (it asks for ~2 x MAXCONN otherwise, and refuses to start
# above the hard limit). Sets HP, HP_PID.
start_haproxy() {
  local cores=$1 maxconn=${2:-8000} ulimit_n=${3:-}
  HP=$(free_port)
  cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread $cores
  maxconn $maxconn
${ulimit_n:+  ulimit-n $ulimit_n}
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:$HP
  default_backend be
backend be
  server up 127.0.0.1:$UP
EOF
  spawn haproxy haproxy -db -f "$WORK/haproxy.cfg"
  HP_PID=$SPAWNED
}

# start_brownout NAME UPSTREAM_URL [ARGS...]: `brownout serve` on free ports, with
# TOKIO_WORKER_THREADS=$PROXY_CORES when PROXY_CORES is set. Sets BO_PORT, BO_ADMIN,
# BO_PID; does not wait (use wait_http NAME $BO_PORT).
start_brownout() {
  local name=$1 upstream=$2; shift 2
  BO_PORT=$(free_port); BO_ADMIN=$(free_port)
  if [[ -n ${PROXY_CORES:-} ]]; then
    spawn "$name" env TOKIO_WORKER_THREADS="$PROXY_CORES" "$BROWNOUT" serve --upstream "$upstream" \
      --listen "127.0.0.1:$BO_PORT" --admin "127.0.0.1:$BO_ADMIN" "$@"
  else
    spawn "$name" "$BROWNOUT" serve --upstream "$upstream" \
      --listen "127.0.0.1:$BO_PORT" --admin "127.0.0.1:$BO_ADMIN" "$@"
  fi
  BO_PID=$SPAWNED
}

# start_sim [ARGS...]: `brownout sim` on a free port. Sets SIM_PORT, SIM_PID; waits
# until GET /v1/models answers.
start_sim() {
  SIM_PORT=$(free_port)
  spawn sim "$BROWNOUT" sim --listen "127.0.0.1:$SIM_PORT" "$@"
  SIM_PID=$SPAWNED
  wait_http sim "$SIM_PORT" /v1/models
}

# write_rules_profile FILE N: a profile of N rules whose path never matches
# (`match: {path: "/never/I/*"}`, a `delay` fault), validated with `brownout validate`.
write_rules_profile() {
  local file=$1 n=$2 i
  {
    echo "version: 1"
    echo "name: bench-$n-nonmatching"
    echo "description: $n rules whose path never matches, to measure the cost of matching."
    echo "rules:"
    for i in $(seq 1 "$n"); do
      echo "  - name: never-$i"
      echo "    match: {path: \"/never/$i/*\"}"
      echo "    faults:"
      echo "      - type: delay"
      echo "        duration: 100ms"
    done
  } >"$file"
  "$BROWNOUT" validate "$file" >"$WORK/validate-$n.out" 2>&1 || {
    cat "$WORK/validate-$n.out" >&2; die "the generated $n-rule profile does not validate"; }
}

# write_wrk_script FILE REQUEST: lib/report.lua (pacing + WRKJSON summary), plus a
# POST chat completion body when REQUEST is `chat`.
write_wrk_script() {
  local file=$1 request=$2
  cp "$HERE/lib/report.lua" "$file"
  if [[ $request == chat ]]; then
    cat >>"$file" <<'EOF'
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}'
EOF
  fi
}
