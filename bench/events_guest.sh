#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# /init of the event-path benchmark's qemu guest (bench/eventsvm.py builds it):
# the same workload as the host's (bench/events.py) through agentproxy stripe ->
# join with each event source, kmod among them (the host kernel cannot load
# modules). /bench.conf sets SOURCES, LOADS ("name:reconnect ..."), SESSIONS,
# SECONDS, SIZE, ROUNDS. Results go to ttyS1, one line each:
#   R LOAD SOURCE ROUND {bench_chatter JSON}
#   E LOAD SOURCE ROUND SIDE events[...] line     (two per side: start, end)
#   X LOAD SOURCE ROUND reason                    (a run that failed)
# and "# bench done" last; everything else goes to the console (ttyS0).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp && mount -t tmpfs tmp /tmp
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
ip link set lo up
exec 3>/dev/ttyS1
. /bench.conf
cd /tmp || exit 1
echo "# guest $(uname -r)" >&3
insmod /agentfilt.ko || echo "# insmod agentfilt.ko failed" >&3

# Waits until something listens on 127.0.0.1:PORT (state 0A in /proc/net/tcp).
wait_listen() { # port
	hex=$(printf '0100007F:%04X' "$1")
	i=0
	while [ $i -lt 100 ]; do
		grep -q " $hex 00000000:0000 0A " /proc/net/tcp && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# Waits until FILE holds at least N events lines.
wait_lines() { # file n
	i=0
	while [ $i -lt 50 ]; do
		[ "$(grep -c 'events\[' "$1")" -ge "$2" ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

/usr/bin/bench_chatter serve 7100 &
wait_listen 7100 || echo "# echo server did not start" >&3
port=7200
round=1
while [ $round -le "$ROUNDS" ]; do
	for load in $LOADS; do
		name=${load%%:*}
		reconnect=${load#*:}
		for src in $SOURCES; do
			port=$((port + 2))
			agentproxy join --listen 127.0.0.1:$((port + 1)) --target 127.0.0.1:7100 \
				--events "$src" >join.log 2>&1 &
			join=$!
			agentproxy stripe --listen 127.0.0.1:$port --peer 127.0.0.1:$((port + 1)) \
				--events "$src" >stripe.log 2>&1 &
			stripe=$!
			if wait_listen $((port + 1)) && wait_listen $port; then
				out=$(/usr/bin/bench_chatter run -r "$reconnect" $port "$SESSIONS" \
					"$SECONDS" "$SIZE" $stripe $join 2>chatter.err)
				if [ -n "$out" ] && wait_lines stripe.log 2 && wait_lines join.log 2; then
					echo "R $name $src $round $out" >&3
					for side in stripe join; do
						grep 'events\[' $side.log | head -2 |
							sed "s/^/E $name $src $round $side /" >&3
					done
				else
					echo "X $name $src $round $(cat chatter.err | head -1)" >&3
				fi
			else
				echo "X $name $src $round did not start: $(tail -1 stripe.log) $(tail -1 join.log)" >&3
			fi
			kill $stripe $join 2>/dev/null
			wait $stripe $join 2>/dev/null
			cat stripe.log join.log >/dev/console
		done
	done
	round=$((round + 1))
done
echo "# bench done" >&3
sync
poweroff -f
