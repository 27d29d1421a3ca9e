#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make vmtest`: builds agentfilt.ko against the Debian 6.1 and 6.12 kernel
# headers (warning-free, sparse, checkpatch), boots each kernel in qemu (TCG)
# with the module and the guest tests in an initramfs, and prints TAP.
# VM_KERNELS="6.12" limits the kernels (default "6.1 6.12 debug"; "debug": the
# KASAN/lockdep kernel of tests/vm/debug-kernel.sh, built once and cached,
# alone with `make vmtest-debug`); VM_APPEND="agentmux.quick" runs
# only the module's own tests (no bpf_tests, KmodSource or e2e); VM_CACHE and VM_BUILD move the cache
# and the build output (see common.sh).
set -u
cd "$(dirname "$0")/../.."
. tests/vm/common.sh
KERNELS=${VM_KERNELS:-6.1 6.12 debug}

# What the kernel logs that is a finding (the checkers' boot banners of the
# debug kernel are not).
FINDING='BUG|WARNING|Oops|refcount|lockdep|underflow|use-after-free|leak|Call Trace'
BANNER='kmemleak: Kernel memory leak detector initialized|kmemleak: Automatic memory scanning|RCU lockdep checking is enabled|RCU callback double-/use-after-free debug is enabled'
MARK='agentmux: guest tests begin'
# Findings before (boot_findings) or after (test_findings) init.sh's mark, in
# the guest's dmesg and console logs; test_findings fails when there is none.
# A log without the mark (the guest died booting) counts as all tests'.
boot_findings() {
	for f in "$1/dmesg.log" "$1/console.log"; do
		grep -aq "$MARK" "$f" 2>/dev/null || continue
		awk -v m="$MARK" 'index($0, m) { exit } { print }' "$f"
	done | grep -aE "$FINDING" | grep -avE "$BANNER"
}
test_findings() {
	for f in "$1/dmesg.log" "$1/console.log"; do
		if grep -aq "$MARK" "$f" 2>/dev/null; then
			awk -v m="$MARK" 'seen { print } index($0, m) { seen = 1 }' "$f"
		else
			cat "$f" 2>/dev/null
		fi
	done | grep -aE "$FINDING" | grep -avE "$BANNER"
}
VM_TIMEOUT=${VM_TIMEOUT:-420}
mkdir -p "$VM_BUILD"
LOG=$VM_BUILD/log
mkdir -p "$LOG"

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
diag() { sed 's/^/# /' "$@"; }
finish() {
	echo "1..$n"
	[ "$failed" -eq 0 ]
	exit
}

# ---- tools ----
missing=
for t in qemu-system-x86_64 cpio gzip gcc g++ make apt-get apt-cache dpkg perl; do
	command -v "$t" >/dev/null || missing="$missing $t"
done
# busybox-static installs /bin/busybox; the guest has no shared libc for it.
BUSYBOX=/bin/busybox
if [ ! -x "$BUSYBOX" ] || ldd "$BUSYBOX" >/dev/null 2>&1; then
	missing="$missing busybox-static"
fi
[ -e /usr/lib/x86_64-linux-gnu/liburing.a ] || missing="$missing liburing.a"
if [ -n "$missing" ]; then
	notok "vm: tools present (missing:$missing; run make deps)"
	finish
fi
ok "vm: tools present"

# ---- checkpatch, once ----
if cp=$(bash tests/vm/fetch.sh checkpatch 2>"$LOG/fetch-checkpatch.log"); then
	if perl "$cp" --no-tree --strict --quiet -f kmod/*.[ch] >"$LOG/checkpatch.log" 2>&1; then
		ok "kmod: checkpatch --strict clean"
	else
		notok "kmod: checkpatch --strict clean"
		diag "$LOG/checkpatch.log"
	fi
else
	notok "kmod: fetch checkpatch.pl from linux-source"
	diag "$LOG/fetch-checkpatch.log"
fi

# ---- guest programs (static, shared by every kernel) ----
BIN=$VM_BUILD/bin
mkdir -p "$BIN"
if gcc -O2 -g -Wall -Wextra -Werror -static -Iinclude/uapi -o "$BIN/aftest" \
	tests/vm/aftest.c -luring -lpthread >"$LOG/aftest-build.log" 2>&1; then
	ok "vm: build guest tests"
else
	notok "vm: build guest tests"
	diag "$LOG/aftest-build.log"
	finish
fi
if gcc -O2 -g -Wall -Wextra -Werror -static -Iinclude/uapi -o "$BIN/afhostile" \
	tests/vm/afhostile.c -lpthread >"$LOG/afhostile-build.log" 2>&1; then
	ok "vm: build the hostile-use guest tests"
else
	notok "vm: build the hostile-use guest tests"
	diag "$LOG/afhostile-build.log"
	finish
fi
# The compat ioctl path needs a 32-bit process (gcc-multilib).
if gcc -m32 -O2 -Wall -Wextra -Werror -static -Iinclude/uapi -o "$BIN/afcompat" \
	tests/vm/afcompat.c >"$LOG/afcompat-build.log" 2>&1; then
	ok "vm: build the 32-bit guest test"
else
	notok "vm: build the 32-bit guest test (gcc-multilib; make deps)"
	diag "$LOG/afcompat-build.log"
	rm -f "$BIN/afcompat"
fi
if gcc -O2 -Wall -Wextra -Werror -static -o "$BIN/xfer" tests/vm/xfer.c \
	>"$LOG/xfer-build.log" 2>&1; then :; else diag "$LOG/xfer-build.log"; fi
# The failover case's relay (tests/vm/failover.sh; the host's e2e suite
# builds it too, dynamically, in tests/tools/tools.mk).
if gcc -O2 -Wall -Wextra -Werror -static -o "$BIN/faultrelay" tests/tools/faultrelay.c \
	tests/tools/faultrelay_plan.c >"$LOG/faultrelay-build.log" 2>&1; then :; else
	diag "$LOG/faultrelay-build.log"
fi
# The KmodSource tests link libagent (dynamically: there is no static fmt).
[ -f build/libagent.a ] || make -s build/libagent.a >"$LOG/libagent-build.log" 2>&1
if g++ -std=c++20 -O2 -g -Wall -Wextra -Werror -Ilibagent/include -Iinclude \
	-o "$BIN/kmodsrc_test" tests/vm/kmodsrc_test.cpp build/libagent.a \
	$(pkg-config --libs liburing libbpf fmt libcrypto 2>/dev/null || echo -luring -lbpf -lfmt -lcrypto) \
	-lpthread >"$LOG/kmodsrc-build.log" 2>&1; then
	ok "vm: build the KmodSource guest test"
else
	notok "vm: build the KmodSource guest test"
	diag "$LOG/kmodsrc-build.log" | tail -30
	rm -f "$BIN/kmodsrc_test"
fi

# Copies a binary into the initramfs at dest, with the shared libraries
# ldd names (and the dynamic loader) at their own paths.
add_bin() { # root file dest
	mkdir -p "$1$(dirname "$3")"
	cp "$2" "$1$3"
	ldd "$2" 2>/dev/null | awk '/=> \// {print $3} /^[[:space:]]*\// {print $1}' |
		while read -r lib; do
			[ -e "$1$lib" ] && continue
			mkdir -p "$1$(dirname "$lib")"
			cp -L "$lib" "$1$lib"
		done
}

# Copies the distro modules kTLS needs (tls.ko, gcm(aes)) decompressed
# into the initramfs, with the order init.sh loads them in.
add_ktls_modules() { # root
	local dst=$1/lib/modules/extra i=0 m f
	mkdir -p "$dst"
	: >"$dst/order"
	[ -n "${MODROOT:-}" ] || return 0
	depmod -b "$MODROOT" "$KREL" 2>/dev/null || return 1
	for m in $(for n in tls gcm ghash-generic ctr aesni-intel; do
		modprobe -d "$MODROOT" -S "$KREL" --show-depends "$n" 2>/dev/null
	done | awk '$1 == "insmod" && !seen[$2]++ {print $2}'); do
		i=$((i + 1))
		f=$dst/$i-$(basename "$m" | sed 's/\.\(xz\|zst\|gz\)$//')
		case "$m" in
		*.xz) xz -dc "$m" >"$f" ;;
		*.zst) zstd -qdc "$m" >"$f" ;;
		*) cp "$m" "$f" ;;
		esac
		echo "/lib/modules/extra/$(basename "$f")" >>"$dst/order"
	done
}

# ---- per kernel ----
for k in $KERNELS; do
	append=${VM_APPEND:-}
	tmo=$VM_TIMEOUT
	if [ "$k" = debug ]; then
		tmo=${VM_DEBUG_TIMEOUT:-1200}	# KASAN and lockdep in TCG: ~4x slower
		# Built once, then cached (tests/vm/debug-kernel.sh); no BTF, so
		# only the module's own tests run on it.
		t0=$(date +%s)
		if ! env=$(bash tests/vm/debug-kernel.sh 2>"$LOG/fetch-$k.log"); then
			notok "$k: build the debug kernel (tests/vm/debug-kernel.sh)"
			diag "$LOG/fetch-$k.log" | tail -30
			continue
		fi
		echo "# debug kernel ready in $(($(date +%s) - t0)) s ($(tr '\n' ' ' <"$(dirname "$env")/build-time"))"
		append="$append agentmux.quick"
	elif ! env=$(bash tests/vm/fetch.sh "$k" 2>"$LOG/fetch-$k.log"); then
		notok "$k: fetch the Debian kernel image and headers"
		diag "$LOG/fetch-$k.log"
		continue
	fi
	# shellcheck disable=SC1090
	. "$env"
	ok "$k: fetch $KREL"
	W=$VM_BUILD/$KREL
	rm -rf "$W"
	mkdir -p "$W/src/kmod" "$W/src/include/uapi"
	cp kmod/*.c kmod/*.h kmod/Kbuild "$W/src/kmod/"
	cp include/uapi/agentfilt.h "$W/src/include/uapi/"
	if make -C "$KDIR" M="$W/src/kmod" W=1 C=2 CHECK=sparse modules \
		>"$W/build.log" 2>&1 && [ -f "$W/src/kmod/agentfilt.ko" ]; then
		if grep -E 'warning|error|: note:' "$W/build.log" >"$W/warnings.log"; then
			notok "$k: module builds warning- and sparse-clean"
			diag "$W/warnings.log"
		else
			ok "$k: module builds warning- and sparse-clean"
		fi
	else
		notok "$k: module builds"
		diag "$W/build.log" | tail -40
		continue
	fi

	R=$W/initrd
	mkdir -p "$R/bin" "$R/sbin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp"
	cp "$BUSYBOX" "$R/bin/busybox"
	cp tests/vm/init.sh "$R/init"
	mkdir -p "$R/etc"
	printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
	chmod +x "$R/init"
	cp "$W/src/kmod/agentfilt.ko" "$BIN/aftest" "$BIN/afhostile" "$R/"
	[ -x "$BIN/afcompat" ] && cp "$BIN/afcompat" "$R/"
	if ! add_ktls_modules "$R"; then
		notok "$k: depmod of the guest kernel's modules"
	fi
	[ -x "$BIN/kmodsrc_test" ] && add_bin "$R" "$BIN/kmodsrc_test" /kmodsrc_test
	[ -x "$BIN/xfer" ] && add_bin "$R" "$BIN/xfer" /usr/bin/xfer
	[ -x build/agentproxy ] && add_bin "$R" build/agentproxy /usr/bin/agentproxy
	[ -x "$BIN/faultrelay" ] && add_bin "$R" "$BIN/faultrelay" /usr/bin/faultrelay
	cp tests/vm/e2e.sh "$R/e2e.sh"
	cp tests/vm/failover.sh "$R/failover.sh"
	# The eBPF filter's tests (bpf/, tests/bpf) run in the same guests.
	[ -x build/bpf_tests ] && add_bin "$R" build/bpf_tests /usr/bin/bpf_tests
	(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) >"$W/initrd.gz"

	# A report the kernel makes while it boots, before /init marks the start
	# of the tests, is not the tests' (seen on the debug kernel under TCG:
	# KASAN in rcu_is_watching from an early interrupt in identify_cpu); it
	# taints the kernel and turns lockdep off, so the guest boots again, up to
	# three times, to run the tests with every checker on.
	for attempt in 1 2 3; do
		start=$(date +%s%N)
		timeout "$tmo" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1G -smp 2 \
			-display none -monitor none -no-reboot \
			-kernel "$VMLINUZ" -initrd "$W/initrd.gz" \
			-append "console=ttyS0 panic=-1 loglevel=7 $append" \
			-serial "file:$W/console.log" -serial "file:$W/tap.log" \
			-serial "file:$W/dmesg.log" >"$W/qemu.log" 2>&1
		rc=$?
		secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
		echo "# $k: guest ran ${secs}s (qemu status $rc)"
		boot_findings "$W" >"$W/boot-bad.log"
		[ -s "$W/boot-bad.log" ] && [ "$attempt" -lt 3 ] || break
		echo "# $k: the kernel reported while booting, before any test: $(head -1 "$W/boot-bad.log" | cut -c1-120); booting again"
	done
	# Numbered TAP from guest programs (bpf_tests) loses its numbers here.
	tr -d '\r' <"$W/tap.log" | sed -E 's/^(not ok|ok) [0-9]+ -/\1 -/' >"$W/tap.txt"
	while IFS= read -r line; do
		case "$line" in
		'ok - '*'# SKIP'*)
			name=${line#ok - }
			skip "$k: ${name%%# SKIP*}" "${name#*# SKIP }"
			;;
		'ok - '*) ok "$k: ${line#ok - }" ;;
		'not ok - '*) notok "$k: ${line#not ok - }" ;;
		*[0-9]' passed, '*[0-9]' failed'*) ;; # only tests/run.sh prints those
		'#'*) echo "$line" ;;
		esac
	done <"$W/tap.txt"
	if grep -q '^# guest done' "$W/tap.txt" && [ "$rc" -ne 124 ]; then
		ok "$k: guest ran to the end"
	else
		notok "$k: guest ran to the end (qemu status $rc)"
		tail -40 "$W/console.log" | diag
	fi
	if test_findings "$W" >"$W/dmesg-bad.log"; then
		notok "$k: guest dmesg clean"
		diag "$W/dmesg-bad.log" | head -60
	else
		ok "$k: guest dmesg clean"
		if [ -s "$W/boot-bad.log" ]; then
			echo "# $k: three boots each had a kernel report before the tests (lockdep was off for them):"
			diag "$W/boot-bad.log" | head -10
		fi
	fi
done
finish
