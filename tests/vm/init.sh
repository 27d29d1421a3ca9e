#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
# /init of the test guest: runs the agentfilt tests and powers off.
# TAP lines (unnumbered, the host numbers them) go to ttyS1, the guest's
# dmesg to ttyS2, everything else to the console (ttyS0).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp && mount -t tmpfs tmp /tmp
ip link set lo up
exec 3>/dev/ttyS1

ok() { echo "ok - $*" >&3; }
notok() { echo "not ok - $*" >&3; }
check() { # name command...
	name=$1
	shift
	if "$@"; then ok "$name"; else notok "$name"; fi
}

echo "# guest $(uname -r)" >&3
# What the kernel logs after this line is the tests' doing; before it, boot's.
echo "agentmux: guest tests begin" >/dev/kmsg
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
# kmemleak (debug kernel): forget what boot left, report what the tests leak.
[ -w /sys/kernel/debug/kmemleak ] && echo clear >/sys/kernel/debug/kmemleak
# kTLS from the guest kernel's own modules (run.sh lists them in load order;
# the debug kernel has them built in and lists none).
ktls=ok
for m in $(cat /lib/modules/extra/order 2>/dev/null); do
	insmod "$m" 2>/dev/console || ktls="insmod $m failed"
done
check "module: the guest kernel's kTLS modules load ($ktls)" test "$ktls" = ok
quick=
grep -q agentmux.quick /proc/cmdline && quick=1
# The eBPF filter's tests first, without the module loaded.
if [ -x /usr/bin/bpf_tests ] && [ -z "$quick" ]; then
	mount -t bpf bpf /sys/fs/bpf 2>/dev/null
	mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
	AGENTPROXY=/usr/bin/agentproxy /usr/bin/bpf_tests --reporter TAP 2>/dev/console |
		sed -E 's/^(not ok|ok) [0-9]+ - /\1 - bpf: /' | grep -E '^(ok|not ok|#)' >&3
fi
check "module: insmod" insmod /agentfilt.ko
check "module: /dev/agentfilt exists" test -c /dev/agentfilt

/aftest >&3
/afhostile >&3
if [ -x /afcompat ]; then
	/afcompat >&3
else
	notok "compat: 32-bit guest test built"
fi
if [ -z "$quick" ]; then
	[ -x /kmodsrc_test ] && /kmodsrc_test >&3
	[ -x /e2e.sh ] && /e2e.sh >&3
	[ -x /failover.sh ] && /failover.sh >&3
fi
# These rmmod and insmod the module: nothing else may hold it now.
AGENTFILT_KO=/agentfilt.ko /afhostile unload >&3

check "module: rmmod after all users are gone" rmmod agentfilt
check "module: device gone after rmmod" test ! -e /dev/agentfilt
check "module: insmod again with group=1234" insmod /agentfilt.ko group=1234
mode=$(stat -c '%a %g' /dev/agentfilt 2>/dev/null)
check "module: group parameter gives 0660 root:1234 (got $mode)" test "$mode" = "660 1234"
/aftest smoke >&3
check "module: rmmod again" rmmod agentfilt

# kmemleak (debug kernel): a scan prints "suspected memory leaks" to dmesg,
# which the host's dmesg check catches.
if [ -w /sys/kernel/debug/kmemleak ]; then
	echo scan >/sys/kernel/debug/kmemleak
	sleep 1
	echo scan >/sys/kernel/debug/kmemleak
	n=$(grep -c '^unreferenced object' /sys/kernel/debug/kmemleak)
	check "kmemleak: no unreferenced objects ($n)" test "$n" -eq 0
	head -40 /sys/kernel/debug/kmemleak >/dev/console
fi
dmesg >/dev/ttyS2
echo "# guest done" >&3
sync
poweroff -f
