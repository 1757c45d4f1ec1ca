#!/usr/bin/env bash
# What brownout's heap holds per idle keep-alive connection, by allocation site.
#
# Runs `brownout serve` under valgrind's massif in front of an nginx upstream, opens
# $IDLE_CONNS keep-alive connections (one request each), holds them idle for a few
# seconds, stops brownout, and prints the largest allocation sites at the heap peak
# with the hyper/tokio/brownout frame that explains each. Slow (valgrind) but
# bounded: about a minute.
#
# Environment: BROWNOUT [target/release/brownout], IDLE_CONNS [1000], OUT_DIR [bench/out]
# Needs: valgrind, nginx, python3, curl.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
CLEANUP_WAIT=${CLEANUP_WAIT:-100}   # valgrind takes its time to exit
bench_init idle_heap.sh brownout-heap
IDLE_CONNS=${IDLE_CONNS:-1000}

need_cmds "apt-get install -y valgrind nginx-light python3 curl" valgrind nginx python3 curl
need_brownout

start_upstream '{"ok":true}'

unset_brownout_env
BP=$(free_port); BA=$(free_port)
MASSIF=$WORK/massif.out
spawn brownout valgrind --tool=massif --massif-out-file="$MASSIF" --depth=40 --threshold=0.5 --max-snapshots=60 \
  "$BROWNOUT" serve --upstream "http://127.0.0.1:$UP" --listen "127.0.0.1:$BP" --admin "127.0.0.1:$BA"
BPID=$SPAWNED
for _ in $(seq 1 200); do
  curl -s -o /dev/null -m 1 "http://127.0.0.1:$BP/" && break
  kill -0 "$BPID" 2>/dev/null || { cat "$WORK/brownout.out" >&2; die "brownout under valgrind exited"; }
  sleep 0.2
done

python3 - "$BP" "$IDLE_CONNS" "$BPID" <<'EOF'
import os, signal, socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    d = b""
    while b"ok" not in d:
        d += s.recv(4096)
    socks.append(s)
time.sleep(3)
print(f"holding {len(socks)} idle connections; stopping brownout", file=sys.stderr)
os.kill(pid, signal.SIGTERM)   # massif writes its profile on exit
time.sleep(1)
for s in socks:
    s.close()
EOF
for _ in $(seq 1 300); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
wait "$BPID" 2>/dev/null || true
[[ -s $MASSIF ]] || die "massif wrote no profile"

mkdir -p "$OUT_DIR"
OUT=$OUT_DIR/idle-heap-$(utc_stamp).txt
python3 - "$MASSIF" "$IDLE_CONNS" <<'EOF' | tee "$OUT"
import re, sys
lines = open(sys.argv[1]).read().split("\n")
conns = int(sys.argv[2])
snaps = []
for i, l in enumerate(lines):
    if l.startswith("snapshot="):
        d, j = {}, i + 1
        while j < len(lines) and not lines[j].startswith("snapshot="):
            if "=" in lines[j] and not lines[j].startswith(("#", " ", "n")):
                k, v = lines[j].split("=", 1)
                d[k] = v
                if k == "heap_tree":
                    break
            j += 1
        snaps.append((int(d["mem_heap_B"]), j + 1))
peak, start = max(snaps)
pat = re.compile(r"^( *)n(\d+): (\d+) (.*)$")
tops, cur = [], None
for l in lines[start:]:
    if l.startswith("snapshot="):
        break
    m = pat.match(l)
    if not m:
        continue
    depth, size, name = len(m.group(1)), int(m.group(3)), re.sub(r"0x[0-9A-F]+: ", "", m.group(4))
    if depth == 1:
        cur = [size, name, None]
        tops.append(cur)
    elif cur and cur[2] is None and re.search(r"brownout::|hyper::|hyper_util::|tokio::|h2::|rustls", name):
        cur[2] = name
print(f"heap at peak with {conns} idle connections: {peak / 1024:.0f} KiB")
print("| KiB | KiB per connection | allocated at |")
print("|---:|---:|---|")
for size, name, why in sorted(tops, key=lambda t: -t[0])[:12]:
    print(f"| {size / 1024:.0f} | {size / 1024 / conns:.2f} | {(why or name)[:160]} |")
EOF
echo "written: $OUT" >&2
