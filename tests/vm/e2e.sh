#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest: client -> agentproxy stripe -> agentproxy join -> server and back,
# both proxies with --events kmod; compares sha256 sums. Unnumbered TAP.
ok() { echo "ok - $*"; }
notok() { echo "not ok - $*"; }
cd /tmp || exit 1
if [ ! -x /usr/bin/agentproxy ]; then
	notok "e2e: agentproxy --events kmod transfer # agentproxy was not built"
	exit 0
fi
dd if=/dev/urandom of=in.bin bs=1024 count=16384 2>/dev/null
printf '0123456789abcdef0123456789abcdef' >key
/usr/bin/xfer serve 7002 server.bin &
srv=$!
agentproxy join --listen 127.0.0.1:7001 --target 127.0.0.1:7002 --events kmod \
	--key-file key >join.log 2>&1 &
join=$!
agentproxy stripe --listen 127.0.0.1:7000 --peer 127.0.0.1:7001 --events kmod \
	--key-file key >stripe.log 2>&1 &
stripe=$!
sleep 1
watches=0
( while sleep 0.2; do cat /sys/module/agentfilt/parameters/watches; done ) >watches.log &
mon=$!
if timeout 120 /usr/bin/xfer send 7000 in.bin echo.bin; then sent=1; else sent=0; fi
kill $mon 2>/dev/null
# A stalled transfer leaves the server waiting for EOF: end it too.
[ "$sent" = 1 ] || kill $srv 2>/dev/null
wait $srv
watches=$(sort -n watches.log | tail -1)
kill -USR1 $stripe $join 2>/dev/null
sleep 0.5
kill $stripe $join 2>/dev/null
wait $stripe $join 2>/dev/null
a=$(sha256sum <in.bin | cut -d' ' -f1)
b=$(sha256sum <server.bin | cut -d' ' -f1)
c=$(sha256sum <echo.bin 2>/dev/null | cut -d' ' -f1)
if [ "$sent" = 1 ] && [ "$a" = "$b" ]; then
	ok "e2e: 16 MiB client -> stripe -> join -> server intact (sha256 ${a%${a#????????}})"
else
	notok "e2e: 16 MiB client -> stripe -> join -> server intact (sent $sent, $a vs $b)"
	sed 's/^/# /' stripe.log join.log | tail -20
fi
if [ "$sent" = 1 ] && [ "$a" = "$c" ]; then
	ok "e2e: the echo comes back intact through join -> stripe"
else
	notok "e2e: the echo comes back intact through join -> stripe ($a vs $c)"
fi
# Each side must have used the kmod source and passed events through it.
both=1 passed=
for side in stripe join; do
	p=$(grep 'events\[kmod\]' $side.log | tail -1 | sed -n 's/.*passed \([0-9]*\).*/\1/p')
	[ "${p:-0}" -gt 0 ] || both=0
	passed="$passed $side:${p:-none}"
done
if [ "${watches:-0}" -gt 0 ] && [ "$both" = 1 ]; then
	ok "e2e: both proxies used the kmod filter (watches $watches, passed$passed)"
else
	notok "e2e: both proxies used the kmod filter (watches ${watches:-?}, passed$passed)"
fi
for side in stripe join; do
	grep 'events\[' $side.log | tail -1 | sed "s/^/# $side: /"
done
