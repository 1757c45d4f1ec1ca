#!/usr/bin/env bash
# Heap allocations per request, on the fast path and on the full path.
#
# Counts calls to libc's malloc and realloc in `brownout serve` (a perf uprobe on
# libc, so the binary runs unchanged) while wrk sends GET / over $CONNS kept-alive
# connections to an nginx upstream, once with no profile (the fast path) and once
# with `fast_path: false` (every request down the pipeline, as a request a rule
# could touch goes). Unlike a timing, the count does not move with the machine's
# load: it is the figure to compare between builds.
#
# Environment: BROWNOUT [target/release/brownout], DUR [4] seconds, CONNS [4],
#              BROWNOUT_B (a second binary, counted the same way), OUT_DIR [bench/out]
# Needs: perf (with uprobes; run as root), wrk, nginx, python3, curl.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
bench_init allocs.sh brownout-allocs
DUR=${DUR:-4}
CONNS=${CONNS:-4}

need_cmds "apt-get install -y linux-perf wrk nginx-light python3 curl" perf wrk nginx python3 curl
need_brownout

LIBC=$(ldd "$BROWNOUT" | awk '/libc\.so/ {print $3}')
[[ -n $LIBC ]] || die "cannot find the libc $BROWNOUT links"
for f in malloc realloc; do
  perf probe -q -x "$LIBC" "$f" 2>/dev/null || perf probe -l 2>/dev/null | grep -q "probe_libc:$f" \
    || die "perf cannot place a uprobe on $f in $LIBC (needs root and uprobes)"
done

start_upstream "$(bench_body)"
unset_brownout_env
printf 'fast_path: false\n' > "$WORK/full.yaml"

# count NAME BINARY [ARGS...]: one line of per-request counts.
count() {
  local name=$1 bin=$2; shift 2
  BROWNOUT=$bin start_brownout "$name" "http://127.0.0.1:$UP" "$@"
  wait_http "$name" "$BO_PORT"
  wrk -t1 -c"$CONNS" -d1 "http://127.0.0.1:$BO_PORT/" > /dev/null
  perf stat -x, -e probe_libc:malloc,probe_libc:realloc -p "$BO_PID" -o "$WORK/$name.stat" -- sleep $((DUR + 2)) &
  local sp=$!
  sleep 0.5
  wrk -t1 -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:$BO_PORT/" > "$WORK/$name.wrk"
  wait "$sp"
  stop_pid "$BO_PID"
  python3 - "$name" "$WORK/$name.stat" "$WORK/$name.wrk" <<'PY'
import re, sys
name, stat, wrk = sys.argv[1:]
counts = {}
for line in open(stat):
    parts = line.strip().split(',')
    if len(parts) > 2 and parts[2].startswith('probe_libc:'):
        counts[parts[2].split(':')[1]] = int(parts[0])
m = re.search(r'(\d+) requests in', open(wrk).read())
n = int(m.group(1)) if m else 0
if n == 0 or 'malloc' not in counts:
    sys.exit(f'{name}: no requests or no counts')
# Requests sent after perf stopped counting would only lower the figure; the
# counting window is longer than the load, so every request is inside it.
print(f"| {name} | {n} | {counts['malloc'] / n:.2f} | {counts.get('realloc', 0) / n:.2f} |")
PY
}

echo "| target | requests | mallocs per request | reallocs per request |"
echo "|---|---:|---:|---:|"
count fast-path "$BROWNOUT"
count full-path "$BROWNOUT" --config "$WORK/full.yaml"
if [[ -n ${BROWNOUT_B:-} ]]; then
  count fast-path-b "$BROWNOUT_B"
  count full-path-b "$BROWNOUT_B" --config "$WORK/full.yaml"
fi
