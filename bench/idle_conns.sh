#!/usr/bin/env bash
# Memory per idle keep-alive connection at scale: brownout, nginx and HAProxy side by
# side, each in front of the same nginx upstream.
#
# For each target in turn, bench/lib/idle_conns.py (asyncio) opens N keep-alive
# connections through the proxy, sends one GET / on each and reads the answer, then
# leaves them idle. It reports the proxy's RSS and PSS growth (summed over its process
# tree) per connection, over all N and over the second half only (the marginal cost,
# without one-off growth), and the proxy's open fds.
#
# Target: <= 4 KiB PSS per idle connection for brownout (HAProxy's 1.1 KiB the goal). The script exits 1
# when brownout is above LIMIT_KIB (on either figure), 0 otherwise.
#
# Environment (defaults in brackets):
#   N [10000] idle connections per target      TARGETS ["brownout nginx haproxy"]
#   LIMIT_KIB [4] brownout's target             CONCURRENCY [64] connections opened at once
#   IDLE_S [2] idle time before each sample     PROXY_CORES [nproc] workers/threads per proxy
#   BROWNOUT [target/release/brownout]          OUT_DIR [bench/out]
# The fd limit is raised to what N needs (ulimit -n, up to the hard limit); brownout
# gets `limits.max_connections` and nginx `worker_connections` above N.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
N=${N:-10000}
LIMIT_KIB=${LIMIT_KIB:-4}
TARGETS=${TARGETS:-"brownout nginx haproxy"}
NGINX_WORKER_CONNS=$(( N + 1024 ))
bench_init idle_conns.sh brownout-idle
PROXY_CORES=${PROXY_CORES:-$NCPU}

need_cmds "apt-get install -y nginx-light haproxy python3 curl" nginx haproxy python3 curl
need_brownout

# Every process needs N fds or more: the client, and each proxy (client side plus
# upstream connections); HAProxy asks for about 2 x maxconn.
want_fds=$(( 2 * N + 4096 ))
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && (( hard < want_fds )); then
  ulimit -Hn "$want_fds" 2>/dev/null && hard=$want_fds
fi
if [[ $hard != unlimited ]] && (( hard < N + 2048 )); then
  die "needs $(( N + 2048 )) fds or more, hard limit is $hard (raise it, or lower N)"
fi
ulimit -n "$( [[ $hard == unlimited ]] || (( hard >= want_fds )) && echo "$want_fds" || echo "$hard")"
(( N <= 20000 )) || echo "idle_conns.sh: N=$N may exhaust the ephemeral port range ($(cat /proc/sys/net/ipv4/ip_local_port_range))" >&2

unset_brownout_env
start_upstream "$(bench_body)"

declare -A PORT PID_OF N_OF
for t in $TARGETS; do
  case $t in
    nginx) start_nginx_proxy "$PROXY_CORES"; PORT[$t]=$NG; PID_OF[$t]=$NG_PID ;;
    haproxy)
      # HAProxy reserves 2 fds per connection (client + server side) and will not
      # start when 2 x maxconn exceeds its fd limit: under a hard limit below 2N it
      # holds fewer connections (the per-connection figure does not depend on N).
      hp_max=$(( N + 1024 ))
      (( 2 * hp_max + 64 > $(ulimit -n) )) && hp_max=$(( ($(ulimit -n) - 64) / 2 ))
      N_OF[$t]=$(( N < hp_max - 16 ? N : hp_max - 16 ))
      (( N_OF[$t] < N )) && echo "idle_conns.sh: haproxy holds ${N_OF[$t]} connections, not $N: fd hard limit $(ulimit -Hn) < 2 x N" >&2
      start_haproxy "$PROXY_CORES" "$hp_max" "$(ulimit -n)"; PORT[$t]=$HP; PID_OF[$t]=$HP_PID ;;
    brownout)
      cat >"$WORK/brownout.yaml" <<EOF
limits:
  max_connections: $(( N + 1024 ))
  idle_timeout: 600s
EOF
      start_brownout brownout "http://127.0.0.1:$UP" --config "$WORK/brownout.yaml"
      PORT[$t]=$BO_PORT; PID_OF[$t]=$BO_PID ;;
    *) die "unknown target $t (brownout, nginx, haproxy)" ;;
  esac
done
for t in $TARGETS; do wait_http "$t" "${PORT[$t]}"; done

echo "idle keep-alive connections: N=$N per target, $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "  proxies: nginx worker_processes $PROXY_CORES, HAProxy nbthread $PROXY_CORES, brownout TOKIO_WORKER_THREADS=$PROXY_CORES; ulimit -n $(ulimit -n)" >&2
args=()
for t in $TARGETS; do args+=("$t:${PORT[$t]}:${PID_OF[$t]}:${N_OF[$t]:-$N}"); done
RESULT=$WORK/idle.json
python3 "$HERE/lib/idle_conns.py" "$N" "${args[@]}" >"$RESULT"

mkdir -p "$OUT_DIR"
OUT=$OUT_DIR/idle-conns-$(utc_stamp).json
rc=0
python3 - "$RESULT" "$OUT" "$LIMIT_KIB" "n=$N" "nproc=$NCPU" "kernel=$(uname -r)" \
  "brownout=$("$BROWNOUT" --version 2>/dev/null || echo unknown)" \
  "nginx=$(nginx -v 2>&1 | sed 's/.*: //')" "haproxy=$(haproxy -v | head -1 | awk '{print $3}')" <<'EOF' || rc=$?
import json, sys
res = json.load(open(sys.argv[1]))
out, limit = sys.argv[2], float(sys.argv[3])
meta = dict(kv.split("=", 1) for kv in sys.argv[4:])
ng = next((r for r in res if r["target"] == "nginx"), None)
print(f"\n### memory per idle keep-alive connection ({meta['n']} connections per target)\n")
print("| target | open | errors | PSS before → after (KiB) | PSS KiB/conn | PSS KiB/conn (2nd half) | RSS KiB/conn | ratio vs nginx (PSS) | fds after |")
print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
for r in res:
    pss, marg, rss = r["pss_bytes_per_conn"] / 1024, r["pss_bytes_per_conn_marginal"] / 1024, r["rss_bytes_per_conn"] / 1024
    ratio = "-" if not ng or ng["pss_bytes_per_conn"] <= 0 else "%.1f" % (r["pss_bytes_per_conn"] / ng["pss_bytes_per_conn"])
    print(f"| {r['target']} | {r['idle_conns']} | {r['errors']} | {r['pss_before_kib']} → {r['pss_after_kib']} | "
          f"{pss:.1f} | {marg:.1f} | {rss:.1f} | {ratio} | {r['fds_after']} |")
json.dump({"meta": meta, "limit_kib": limit, "results": res}, open(out, "w"), indent=1)
bo = next((r for r in res if r["target"] == "brownout"), None)
rc = 0
if bo:
    worst = max(bo["pss_bytes_per_conn"], bo["pss_bytes_per_conn_marginal"]) / 1024
    ok = worst <= limit and bo["errors"] == 0 and bo["idle_conns"] == bo["asked"]
    print(f"\nbrownout: {worst:.1f} KiB per idle connection (worst of all-N and 2nd-half PSS), "
          f"target <= {limit:g} KiB: {'PASS' if ok else 'FAIL'} ({worst / limit:.2f}x the target)")
    rc = 0 if ok else 1
for r in res:
    if r["errors"] or r["idle_conns"] != r["asked"]:
        print(f"{r['target']}: only {r['idle_conns']} of {r['asked']} connections held ({r['first_error']})")
sys.exit(rc)
EOF
echo "raw numbers: $OUT" >&2
exit $rc
