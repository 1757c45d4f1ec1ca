#!/usr/bin/env bash
# HTTP/2 and gRPC pass-through cost of brownout with no fault active, side by side with
# nginx's grpc_pass in front of the same HTTP/2 upstream, in one run (issue 17,
# "Performance": >= 1.0x nginx grpc_pass throughput, goal 2x; gRPC added p99 < 1 ms).
#
# One upstream: nginx, 1 worker, cleartext HTTP/2 only (`listen PORT http2`), no
# access log. It answers
#   GET /                  200, a fixed ~200-byte JSON body (bench_body)
#   POST /bench.Bench/Unary   as a gRPC server would: content-type application/grpc,
#                             one length-prefixed message (GRPC_MSG_BYTES) from a
#                             static file, trailers `grpc-status: 0`
#   POST /bench.Bench/Stream  the same with GRPC_STREAM_MSGS messages in the body (the
#                             shape of a server-streaming response, sent at once)
# The gRPC locations read the request body before answering (`mirror_request_body on`),
# as a gRPC server does: an nginx that answers first and discards the body later makes
# nginx's own grpc_pass fail ~1% of calls ("upstream sent frame for unknown stream").
#
# Targets:
#   direct           h2load -> upstream (the floor)
#   nginx-grpc_pass  h2load -> nginx (`listen http2`, `grpc_pass grpc://up`, upstream
#                    block with `keepalive NG_KEEPALIVE`) -> upstream. nginx does not
#                    multiplex upstream: one upstream connection per stream in flight
#   brownout         h2load -> brownout serve -> upstream: in part 1 a listener with
#                    `upstream_protocol: h2c`, in part 2 one with `upstream_protocol:
#                    auto` (gRPC goes over h2c). One upstream HTTP/2 connection per
#                    client connection
#   brownout-b       (not in the default sets) the same with the binary $BROWNOUT_B (say,
#                    the build before a change): an A/B of two builds in one run
#   haproxy          (not in the default sets) HAProxy 2.x `mode http`, `proto h2` on
#                    both sides, `http-reuse always`: a second reference
#
# Part 1, plain HTTP/2 throughput: per target a WARM-second warm-up run, then
# `h2load -t1 -c$CONNS -m$STREAMS -D $DUR` on GET /. Per run: req/s, p50/p99 of h2load's
# request time (from --log-file), the proxy's CPU time per request (utime+stime from
# /proc/PID/stat over its process tree), context switches per request, the proxy's
# established upstream connections mid-run (ss) and the connections it opened during
# the run (the upstream's stub_status `accepts` counter; only proxies connect to it).
# Part 2, gRPC added latency: `h2load -t1 -c$GRPC_CONNS -m1 --rps $GRPC_RPS` (a rate per
# connection: low and fixed, so latency is not queueing) for GRPC_DUR seconds, POSTs
# of a framed request message with `content-type: application/grpc` and `te: trailers`,
# unary then stream. Added latency = target's p50/p99 minus direct's, per round.
# Before any load: every target returns the upstream's bytes, and through every proxy
# each gRPC call gets :status 200, content-type application/grpc, the same body byte
# for byte and a trailing HEADERS frame with `grpc-status: 0` (curl and nghttp -v).
#
# Environment knobs (defaults in brackets):
#   BROWNOUT [target/release/brownout]   REPEAT [1] rounds (targets interleaved; medians)
#   DUR [10] seconds per measured run    WARM [2] warm-up seconds per run
#   CONNS [4] h2load connections         STREAMS [32] concurrent streams per connection
#   TARGETS ["direct nginx-grpc_pass brownout"] part 1 (add haproxy); "" skips part 1
#   GRPC_TARGETS ["direct nginx-grpc_pass brownout"] part 2 (add haproxy); "" skips it
#   GRPC_DUR [10] GRPC_WARM [1] seconds  GRPC_CONNS [2]  GRPC_RPS [100] per connection
#   GRPC_MSG_BYTES [64] bytes per message  GRPC_STREAM_MSGS [20] messages per stream
#   PROXY_CORES [nproc]: nginx worker_processes / HAProxy nbthread / brownout tokio
#                  worker threads (TOKIO_WORKER_THREADS)
#   NG_KEEPALIVE [256]: nginx's upstream `keepalive` (it needs one idle connection per
#                  stream in flight per worker; at 64 it reconnects all the time)
#   OUT_DIR [bench/out]
# Exit status 1 when any request failed or answered non-2xx.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
bench_init h2_passthrough.sh brownout-h2bench
DUR=${DUR:-10}
WARM=${WARM:-2}
CONNS=${CONNS:-4}
STREAMS=${STREAMS:-32}
REPEAT=${REPEAT:-1}
TARGETS=${TARGETS-"direct nginx-grpc_pass brownout"}
GRPC_TARGETS=${GRPC_TARGETS-"direct nginx-grpc_pass brownout"}
GRPC_DUR=${GRPC_DUR:-10}
GRPC_WARM=${GRPC_WARM:-1}
GRPC_CONNS=${GRPC_CONNS:-2}
GRPC_RPS=${GRPC_RPS:-100}
GRPC_MSG_BYTES=${GRPC_MSG_BYTES:-64}
GRPC_STREAM_MSGS=${GRPC_STREAM_MSGS:-20}
PROXY_CORES=${PROXY_CORES:-$NCPU}
NG_KEEPALIVE=${NG_KEEPALIVE:-256}

need_cmds "apt-get install -y nghttp2-client nginx-light haproxy python3 curl iproute2" \
  h2load nghttp nginx python3 curl ss
need_brownout
for t in $TARGETS $GRPC_TARGETS; do
  case $t in direct|nginx-grpc_pass|brownout) ;; haproxy) need_cmds "apt-get install -y haproxy" haproxy ;;
    brownout-b) [[ -x ${BROWNOUT_B:-} ]] || die "brownout-b needs BROWNOUT_B, the other build's binary" ;;
    *) die "unknown target $t (direct, nginx-grpc_pass, brownout, brownout-b, haproxy)" ;; esac
done

# ---------------------------------------------------------------- gRPC payloads
GRPC_DIR=$WORK/grpc
mkdir -p "$GRPC_DIR/bench.Bench"
python3 - "$GRPC_DIR" "$GRPC_MSG_BYTES" "$GRPC_STREAM_MSGS" <<'EOF'
import struct, sys
d, size, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def msg(i, size):
    # A protobuf-looking message: field 1 (bytes), length-delimited, then padding.
    payload = bytes([65 + (i % 26)]) * max(size - 3, 1)
    body = b"\x0a" + bytes([len(payload) & 0x7f]) + payload if len(payload) < 128 else \
        b"\x0a" + bytes([(len(payload) & 0x7f) | 0x80, len(payload) >> 7]) + payload
    return b"\x00" + struct.pack(">I", len(body)) + body   # uncompressed, length-prefixed
open(d + "/req.bin", "wb").write(msg(0, 16))
open(d + "/bench.Bench/Unary", "wb").write(msg(0, size))
open(d + "/bench.Bench/Stream", "wb").write(b"".join(msg(i, size) for i in range(n)))
EOF

# ---------------------------------------------------------------- start everything
unset_brownout_env
BODY=$(bench_body)
UP=$(free_port)
cat >"$WORK/upstream.conf" <<EOF
$(_nginx_head upstream 1 u)
  server {
    listen 127.0.0.1:$UP http2 backlog=4096;
    location / {
      default_type application/json;
      return 200 '$BODY';
    }
    # POST to a static file is a 405 in nginx; error_page turns it into a GET of the
    # file under /_g/ (status 200). The mirror reads the request body first.
    location /bench.Bench/ {
      root $GRPC_DIR;
      mirror /_drain;
      mirror_request_body on;
      error_page 405 =200 /_g\$uri;
    }
    location = /_drain { internal; return 204; }
    location = /_status { stub_status; }
    location /_g/ {
      internal;
      alias $GRPC_DIR/;
      types { }
      default_type application/grpc;
      etag off;
      add_trailer grpc-status 0 always;
    }
  }
}
EOF
spawn upstream nginx -p "$WORK" -c "$WORK/upstream.conf"
UP_PID=$SPAWNED
wait_h2c upstream "$UP"

declare -A PORT=([direct]=$UP) GPORT=([direct]=$UP) PPID_OF=([direct]=none) GPPID_OF=([direct]=none)
if [[ " $TARGETS $GRPC_TARGETS " == *" nginx-grpc_pass "* ]]; then
  NG=$(free_port)
  cat >"$WORK/nginx.conf" <<EOF
$(_nginx_head nginx "$PROXY_CORES" n)
  upstream up {
    server 127.0.0.1:$UP;
    keepalive $NG_KEEPALIVE;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$NG http2 backlog=4096;
    location / {
      grpc_pass grpc://up;
    }
  }
}
EOF
  spawn nginx nginx -p "$WORK" -c "$WORK/nginx.conf"
  PORT[nginx-grpc_pass]=$NG; GPORT[nginx-grpc_pass]=$NG
  PPID_OF[nginx-grpc_pass]=$SPAWNED; GPPID_OF[nginx-grpc_pass]=$SPAWNED
  wait_h2c nginx "$NG"
fi
if [[ " $TARGETS $GRPC_TARGETS " == *" haproxy "* ]]; then
  HP=$(free_port)
  cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread $PROXY_CORES
  maxconn 8000
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:$HP proto h2
  default_backend be
backend be
  http-reuse always
  server up 127.0.0.1:$UP proto h2
EOF
  spawn haproxy haproxy -db -f "$WORK/haproxy.cfg"
  PORT[haproxy]=$HP; GPORT[haproxy]=$HP; PPID_OF[haproxy]=$SPAWNED; GPPID_OF[haproxy]=$SPAWNED
  wait_h2c haproxy "$HP"
fi
# brownout: a config with one listener whose upstream_protocol is set; --listen and
# --upstream from start_brownout refine it.
# brownout-b is the same with $BROWNOUT_B (say, the build before a change): an A/B
# of two builds in one run.
printf 'listeners:\n  - listen: 127.0.0.1:1\n    upstream: http://127.0.0.1:%s\n    upstream_protocol: h2c\n' "$UP" >"$WORK/bo-h2c.yaml"
printf 'listeners:\n  - listen: 127.0.0.1:1\n    upstream: http://127.0.0.1:%s\n    upstream_protocol: auto\n' "$UP" >"$WORK/bo-auto.yaml"
for b in brownout brownout-b; do
  bin=$BROWNOUT; [[ $b == brownout-b ]] && bin=${BROWNOUT_B:-}
  if [[ " $TARGETS " == *" $b "* ]]; then
    BROWNOUT=$bin start_brownout "$b-h2c" "http://127.0.0.1:$UP" --config "$WORK/bo-h2c.yaml"
    PORT[$b]=$BO_PORT; PPID_OF[$b]=$BO_PID
    wait_h2c "$b-h2c" "$BO_PORT"
  fi
  if [[ " $GRPC_TARGETS " == *" $b "* ]]; then
    BROWNOUT=$bin start_brownout "$b-auto" "http://127.0.0.1:$UP" --config "$WORK/bo-auto.yaml"
    GPORT[$b]=$BO_PORT; GPPID_OF[$b]=$BO_PID
    wait_h2c "$b-auto" "$BO_PORT" /bench.Bench/Unary --data-binary "@$GRPC_DIR/req.bin" \
      -H 'content-type: application/grpc' -H 'te: trailers'
  fi
done

# ---------------------------------------------------------------- checks before load
CHECKS=$WORK/checks.jsonl
: >"$CHECKS"
for t in $TARGETS; do
  got=$(curl -s --http2-prior-knowledge "http://127.0.0.1:${PORT[$t]}/")
  [[ $got == "$BODY" ]] || die "$t does not return the upstream's body over h2c (got: ${got:0:200})"
done
for t in $GRPC_TARGETS; do
  for shape in unary stream; do
    m=Unary; [[ $shape == stream ]] && m=Stream
    url="http://127.0.0.1:${GPORT[$t]}/bench.Bench/$m"
    curl -s --http2-prior-knowledge -o "$WORK/check-$t-$shape.bin" -D "$WORK/check-$t-$shape.hdr" \
      --data-binary "@$GRPC_DIR/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' "$url" || true
    nghttp -v -d "$GRPC_DIR/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' "$url" \
      >"$WORK/check-$t-$shape.nghttp" 2>&1 || true
    python3 - "$t" "$shape" "$WORK/check-$t-$shape" "$GRPC_DIR/bench.Bench/$m" >>"$CHECKS" <<'EOF'
import json, re, sys
t, shape, base, want = sys.argv[1:5]
body = open(base + ".bin", "rb").read() if __import__("os").path.exists(base + ".bin") else b""
hdr = open(base + ".hdr", errors="replace").read().lower() if __import__("os").path.exists(base + ".hdr") else ""
ng = open(base + ".nghttp", errors="replace").read()
# The trailers: the last HEADERS frame received, which must carry END_STREAM, after DATA.
recv = re.findall(r"recv \(stream_id=\d+\) ([^\n]+)\n|recv (HEADERS|DATA) frame <[^>]*flags=(0x[0-9a-f]+)", ng)
trailer_block, seen_data, blocks, cur = None, False, [], []
for hline, ftype, flags in recv:
    if hline:
        cur.append(hline.strip())
    elif ftype == "HEADERS":
        blocks.append((cur, int(flags, 16), seen_data)); cur = []
    elif ftype == "DATA":
        seen_data = True
trailers = [b for b in blocks if b[2]]
r = dict(target=t, shape=shape,
         status_200=hdr.startswith("http/2 200"),
         content_type_grpc="content-type: application/grpc" in hdr,
         body_identical=(body == open(want, "rb").read()),
         body_bytes=len(body),
         trailers=(trailers[-1][0] if trailers else []),
         trailer_end_stream=bool(trailers and trailers[-1][1] & 0x1))
r["grpc_status_0_trailer"] = "grpc-status: 0" in r["trailers"] and r["trailer_end_stream"]
r["ok"] = all((r["status_200"], r["content_type_grpc"], r["body_identical"], r["grpc_status_0_trailer"]))
print(json.dumps(r))
print("  check %-16s %-6s status 200 %-5s content-type grpc %-5s body identical %-5s (%d B)  trailers %s"
      % (t, shape, r["status_200"], r["content_type_grpc"], r["body_identical"], r["body_bytes"],
         r["trailers"]), file=sys.stderr)
EOF
  done
done
if python3 -c "import json,sys; sys.exit(0 if all(json.loads(l)['ok'] for l in open(sys.argv[1])) else 1)" "$CHECKS"; then :; else
  KEEP_WORK=1; die "a gRPC check failed (see the lines above; nghttp -v output in $WORK/check-*.nghttp)"
fi

# ---------------------------------------------------------------- h2load runs
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
FAILED=0

# Connections the upstream has accepted so far (this curl's own included).
up_accepts() {
  curl -s --http2-prior-knowledge "http://127.0.0.1:$UP/_status" | awk 'NR == 3 {print $1}'
}

# run_h2 SHAPE TARGET ROUND: SHAPE is get (part 1), unary or stream (part 2). One
# warm-up run, then one measured run.
run_h2() {
  local shape=$1 t=$2 round=$3 port ppid url dur warm hpid mid a0 a1 x0 x1 cu0 cs0 cu1 cs1 uu0 us0 uu1 us1
  local args=()
  if [[ $shape == get ]]; then
    port=${PORT[$t]}; ppid=${PPID_OF[$t]}; url="http://127.0.0.1:$port/"
    args=(-c"$CONNS" -m"$STREAMS"); dur=$DUR; warm=$WARM
  else
    port=${GPORT[$t]}; ppid=${GPPID_OF[$t]}
    if [[ $shape == unary ]]; then url="http://127.0.0.1:$port/bench.Bench/Unary"; else url="http://127.0.0.1:$port/bench.Bench/Stream"; fi
    args=(-c"$GRPC_CONNS" -m1 --rps "$GRPC_RPS" -d "$GRPC_DIR/req.bin"
          -H 'content-type: application/grpc' -H 'te: trailers'); dur=$GRPC_DUR; warm=$GRPC_WARM
  fi
  h2load -t1 "${args[@]}" -D "$warm" "$url" >/dev/null 2>&1 || true
  a0=$(up_accepts); x0=$(ctx_switches "$ppid")
  read -r cu0 cs0 < <(cpu_ticks "$ppid"); read -r uu0 us0 < <(cpu_ticks "$UP_PID")
  rm -f "$WORK/h2load.log"   # h2load appends to its log file
  h2load -t1 "${args[@]}" -D "$dur" --log-file "$WORK/h2load.log" "$url" >"$WORK/h2load.out" 2>&1 &
  hpid=$!
  sleep "$(python3 -c "print($dur / 2)")"
  mid=$(upstream_conns "$ppid" "$UP")
  wait "$hpid" || { cat "$WORK/h2load.out" >&2; die "h2load failed against $t ($shape)"; }
  read -r cu1 cs1 < <(cpu_ticks "$ppid"); read -r uu1 us1 < <(cpu_ticks "$UP_PID")
  x1=$(ctx_switches "$ppid"); a1=$(up_accepts)
  python3 "$HERE/lib/h2load_json.py" "$WORK/h2load.out" "$WORK/h2load.log" \
    "target=$t" "shape=$shape" "round=$round" "clients=${args[0]#-c}" \
    "proxy_ticks=$(( cu1 + cs1 - cu0 - cs0 ))" "proxy_user_ticks=$(( cu1 - cu0 ))" \
    "proxy_sys_ticks=$(( cs1 - cs0 ))" "upstream_ticks=$(( uu1 + us1 - uu0 - us0 ))" \
    "clk_tck=$CLK_TCK" "proxy_ctxsw=$(( x1 - x0 ))" "upstream_accepts=$(( a1 - a0 - 1 ))" \
    "upstream_conns_mid=$mid" >>"$RESULTS"
  python3 - "$RESULTS" <<'EOF' || FAILED=1
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
n = max(r["req_succeeded"], 1)
direct = r["target"] == "direct"
cpu = "-" if direct else "%.1f" % (r["proxy_ticks"] / r["clk_tck"] * 1e6 / n)
cs = "-" if direct else "%.2f" % (r["proxy_ctxsw"] / n)
conns = "-" if direct else "%d up conns, %d opened" % (r["upstream_conns_mid"], r["upstream_accepts"])
bad = r["req_failed"] + r["req_errored"] + r["req_timeout"] + r["status_4xx"] + r["status_5xx"] + r["log_non200"]
print("  %-16s %-6s round %d: %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %s us/req  ctxsw %s/req  %s  bad %d"
      % (r["target"], r["shape"], r["round"], r["rps"], r["lat_p50_us"] / 1e3, r["lat_p99_us"] / 1e3, cpu, cs, conns, bad),
      file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}

echo "brownout HTTP/2 pass-through benchmark: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r)" >&2
echo "  fairness: nginx worker_processes $PROXY_CORES (upstream keepalive $NG_KEEPALIVE), HAProxy nbthread $PROXY_CORES," \
     "brownout TOKIO_WORKER_THREADS=$PROXY_CORES; upstream nginx 1 worker, h2c; no access logs" >&2
if [[ -n $TARGETS ]]; then
  echo "part 1: GET / over h2c, h2load -t1 -c$CONNS -m$STREAMS -D $DUR (+${WARM}s warm-up); $REPEAT round(s), targets interleaved" >&2
  for round in $(seq 1 "$REPEAT"); do
    for t in $TARGETS; do run_h2 get "$t" "$round"; done
  done
fi
if [[ -n $GRPC_TARGETS ]]; then
  echo "part 2: gRPC POSTs, h2load -t1 -c$GRPC_CONNS -m1 --rps $GRPC_RPS (per connection) -D $GRPC_DUR;" \
       "unary = 1 message, stream = $GRPC_STREAM_MSGS messages of $GRPC_MSG_BYTES B; $REPEAT round(s)" >&2
  for round in $(seq 1 "$REPEAT"); do
    for shape in unary stream; do
      for t in $GRPC_TARGETS; do run_h2 "$shape" "$t" "$round"; done
    done
  done
fi

# ---------------------------------------------------------------- report
mkdir -p "$OUT_DIR"
OUT=$OUT_DIR/h2-passthrough-$(utc_stamp).json
python3 "$HERE/lib/h2_summarize.py" "$RESULTS" "$CHECKS" "$OUT" \
  "dur_s=$DUR" "warm_s=$WARM" "conns=$CONNS" "streams=$STREAMS" "repeat=$REPEAT" \
  "grpc_dur_s=$GRPC_DUR" "grpc_conns=$GRPC_CONNS" "grpc_rps_per_conn=$GRPC_RPS" \
  "grpc_msg_bytes=$GRPC_MSG_BYTES" "grpc_stream_msgs=$GRPC_STREAM_MSGS" \
  "proxy_cores=$PROXY_CORES" "ng_keepalive=$NG_KEEPALIVE" "nproc=$NCPU" \
  "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "kernel=$(uname -r)" \
  "brownout=$("$BROWNOUT" --version 2>/dev/null || echo unknown)" "nginx=$(nginx -v 2>&1 | sed 's/.*: //')" \
  "h2load=$(h2load --version 2>&1 | head -1 | awk '{print $2}')"
echo "raw numbers: $OUT" >&2
(( FAILED == 0 )) || { echo "h2_passthrough.sh: some requests failed or answered non-2xx (see 'bad' above)" >&2; exit 1; }
