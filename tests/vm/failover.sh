#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest: the failover case with the kmod event source (issue 11: the fault
# suite with each event source; the host runs it with uring and bpf in
# tests/e2e/cases_failover.py). client -> agentproxy stripe -> faultrelay
# -> agentproxy join -> server and back, both proxies with --events kmod;
# the relay resets, blackholes and stalls three of the four streams early
# in a 16 MiB echo. Asserts: both directions intact (sha256), one session
# on each side and none failed, the stripe side lost at least three streams
# and rejoined, every fault hit. Unnumbered TAP.
ok() { echo "ok - $*"; }
notok() { echo "not ok - $*"; }
skip() { echo "ok - $1 # SKIP $2"; }
cd /tmp || exit 1
for b in agentproxy faultrelay xfer; do
	if [ ! -x /usr/bin/$b ]; then
		skip "failover: kmod source" "/usr/bin/$b was not built"
		exit 0
	fi
done
mkdir -p fo && cd fo || exit 1
dd if=/dev/urandom of=in.bin bs=1024 count=16384 2>/dev/null
printf '0123456789abcdef0123456789abcdef' >key
# The relay's points count both directions of a stream: each of the four
# carries about 8 MiB of the echo, so these hit in its first half.
faultrelay --listen 127.0.0.1:7111 --upstream 127.0.0.1:7112 \
	--fault 0:reset:1M --fault 1:blackhole:2M --fault 2:stall:3M >relay.log 2>&1 &
relay=$!
/usr/bin/xfer serve 7113 server.bin &
srv=$!
flags="--events kmod --key-file key --stream-timeout 1000 --keepalive 1 --retention 4M
	--reorder-budget 8M --failover-deadline 5000 --rejoin-tries 5"
# shellcheck disable=SC2086
agentproxy join --listen 127.0.0.1:7112 --target 127.0.0.1:7113 $flags >join.log 2>&1 &
join=$!
# shellcheck disable=SC2086
agentproxy stripe --listen 127.0.0.1:7110 --peer 127.0.0.1:7111 --streams 4 $flags \
	>stripe.log 2>&1 &
stripe=$!
sleep 1
if timeout 180 /usr/bin/xfer send 7110 in.bin echo.bin; then sent=1; else sent=0; fi
[ "$sent" = 1 ] || kill $srv 2>/dev/null
wait $srv
kill -USR1 $stripe $join 2>/dev/null
sleep 0.5
kill $stripe $join $relay 2>/dev/null
wait $stripe $join $relay 2>/dev/null
a=$(sha256sum <in.bin | cut -d' ' -f1)
b=$(sha256sum <server.bin | cut -d' ' -f1)
c=$(sha256sum <echo.bin 2>/dev/null | cut -d' ' -f1)
diag() { sed 's/^/# /' relay.log stripe.log join.log | tail -30; }
if [ "$sent" = 1 ] && [ "$a" = "$b" ] && [ "$a" = "$c" ]; then
	ok "failover: kmod source: 16 MiB echo through reset, blackhole and stall intact"
else
	notok "failover: kmod source: 16 MiB echo through reset, blackhole and stall intact" \
		"(sent $sent, in $a, server $b, echo $c)"
	diag
fi
hit=$(grep -c ' fault ' relay.log)
# The last stats line of each side (SIGUSR1).
sstat=$(grep 'sessions opened' stripe.log | tail -1)
jstat=$(grep 'sessions opened' join.log | tail -1)
field() { echo "$1" | sed -n "s/.*$2 \([0-9]*\).*/\1/p"; }
lost=$(field "$sstat" 'streams lost')
rejoined=$(field "$sstat" 'rejoined')
if [ "$hit" = 3 ] && [ "$(field "$sstat" 'opened')" = 1 ] &&
	[ "$(field "$jstat" 'opened')" = 1 ] && [ "$(field "$sstat" 'failed')" = 0 ] &&
	[ "$(field "$jstat" 'failed')" = 0 ] && [ "${lost:-0}" -ge 3 ] &&
	[ "${rejoined:-0}" -ge 1 ]; then
	ok "failover: kmod source: the same session throughout (faults hit $hit, stripe lost" \
		"$lost rejoined $rejoined)"
else
	notok "failover: kmod source: the same session throughout (faults hit $hit of 3;" \
		"stripe: $sstat; join: $jstat)"
	diag
fi
both=1
for side in stripe join; do
	p=$(grep 'events\[kmod\]' $side.log | tail -1 | sed -n 's/.*passed \([0-9]*\).*/\1/p')
	[ "${p:-0}" -gt 0 ] || both=0
done
if [ "$both" = 1 ]; then
	ok "failover: kmod source: both proxies used the kmod filter"
else
	notok "failover: kmod source: both proxies used the kmod filter"
fi
