#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make demo: a stripe/join transfer on loopback. Moves SIZE_MB (256) MiB from
# a client through stripe (4 streams) and join to a sink server and checks it
# arrived intact (sha256), then measures throughput with iperf3 through the
# same pair for 5 s, and prints both sides' event counters.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}
SIZE_MB=${SIZE_MB:-256}
EVENTS=${EVENTS:-auto}
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK=$(port) JOIN=$(port) STRIPE=$(port) IPERF=$(port) JOIN2=$(port) STRIPE2=$(port)

# The sink: counts and hashes what arrives.
python3 - "$SINK" >"$tmp/sink.out" <<'PY' &
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
PY
pids+=($!)
"$BIN/agentproxy" join --listen 127.0.0.1:$JOIN --target 127.0.0.1:$SINK --events "$EVENTS" \
	>"$tmp/join.out" 2>"$tmp/join.err" &
pids+=($!)
"$BIN/agentproxy" stripe --listen 127.0.0.1:$STRIPE --peer 127.0.0.1:$JOIN --streams 4 \
	--events "$EVENTS" >"$tmp/stripe.out" 2>"$tmp/stripe.err" &
pids+=($!)
for f in join stripe; do
	for _ in $(seq 50); do grep -q listening "$tmp/$f.out" 2>/dev/null && break; sleep 0.1; done
done
echo "demo: client -> stripe :$STRIPE (4 streams) -> join :$JOIN -> sink :$SINK"
head -1 "$tmp/stripe.out"

# The client: sends SIZE_MB of pseudo-random bytes and hashes them.
python3 - "$STRIPE" "$SIZE_MB" >"$tmp/client.out" <<'PY'
import hashlib, os, socket, sys, time
block = os.urandom(1 << 20); h = hashlib.sha256(); n = int(sys.argv[2])
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
t = time.monotonic()
for i in range(n):
    b = i.to_bytes(8, "little") + block[8:]
    c.sendall(b); h.update(b)
    if i % 64 == 63: print(f"demo: sent {i + 1} MiB", file=sys.stderr, flush=True)
c.shutdown(socket.SHUT_WR); c.recv(1)
dt = time.monotonic() - t
print(n << 20, h.hexdigest(), f"{dt:.3f}", flush=True)
PY
read -r sent sent_hash secs <"$tmp/client.out"
for _ in $(seq 100); do [ -s "$tmp/sink.out" ] && break; sleep 0.1; done
read -r got got_hash <"$tmp/sink.out"
if [ "$sent_hash" = "$got_hash" ] && [ "$sent" = "$got" ]; then
	echo "demo: $((sent >> 20)) MiB arrived intact: sha256 $got_hash"
else
	echo "demo: MISMATCH: sent $sent bytes $sent_hash, got $got bytes $got_hash"
	exit 1
fi

# Throughput: iperf3 through a second stripe/join pair (the Python client
# above is slower than the proxy).
iperf3 -s -1 -B 127.0.0.1 -p "$IPERF" >/dev/null 2>&1 &
pids+=($!)
"$BIN/agentproxy" join --listen 127.0.0.1:$JOIN2 --target 127.0.0.1:$IPERF --events "$EVENTS" \
	>/dev/null 2>&1 &
pids+=($!)
"$BIN/agentproxy" stripe --listen 127.0.0.1:$STRIPE2 --peer 127.0.0.1:$JOIN2 --events "$EVENTS" \
	>/dev/null 2>&1 &
pids+=($!)
sleep 0.5
echo "demo: iperf3 through stripe (4 streams) -> join for 5 s ..."
iperf3 -c 127.0.0.1 -p "$STRIPE2" -t 5 -J >"$tmp/iperf.json" 2>/dev/null || true
python3 - "$tmp/iperf.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))["end"]["sum_received"]
    print(f"demo: throughput {r['bits_per_second'] / 8e9:.2f} GB/s "
          f"({r['bits_per_second'] / 1e9:.1f} Gbit/s), {r['bytes'] / 2**30:.1f} GiB in {r['seconds']:.1f} s")
except Exception as e:
    print(f"demo: iperf3 gave no result ({e})")
PY
kill -USR1 "${pids[1]}" "${pids[2]}"
sleep 0.3
echo
echo "counters (stripe side):"; grep -E '^(stats|events)' "$tmp/stripe.out" | tail -2
echo "counters (join side):";   grep -E '^(stats|events)' "$tmp/join.out" | tail -2
