#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make vmtest`: builds agentfilt.ko against the Debian 6.1 and 6.12 kernel
# headers (warning-free, sparse, checkpatch), boots each kernel in qemu (TCG)
# with the module and the guest tests in an initramfs, and prints TAP.
# VM_KERNELS="6.12" limits the kernels; VM_CACHE and VM_BUILD move the cache
# and the build output (see common.sh).
set -u
cd "$(dirname "$0")/../.."
. tests/vm/common.sh
KERNELS=${VM_KERNELS:-6.1 6.12}
VM_TIMEOUT=${VM_TIMEOUT:-900}
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
BUSYBOX=$(command -v busybox || true)
if [ -n "$BUSYBOX" ] && ! file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked'; then
	[ -x /bin/busybox ] && BUSYBOX=/bin/busybox
fi
[ -n "$BUSYBOX" ] || missing="$missing busybox(-static)"
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
GUEST_EXTRA=()
if [ -f tests/vm/guest.mk ] && make -s -f tests/vm/guest.mk BIN="$BIN" >"$LOG/guest-extra.log" 2>&1; then
	:
fi
[ -x "$BIN/kmodsrc_test" ] && GUEST_EXTRA+=("$BIN/kmodsrc_test")

# ---- per kernel ----
for k in $KERNELS; do
	if ! env=$(bash tests/vm/fetch.sh "$k" 2>"$LOG/fetch-$k.log"); then
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
	chmod +x "$R/init"
	cp "$W/src/kmod/agentfilt.ko" "$BIN/aftest" "$R/"
	for x in "${GUEST_EXTRA[@]}"; do cp "$x" "$R/"; done
	if [ -x tests/vm/guest-e2e.sh ]; then
		bash tests/vm/guest-e2e.sh "$R" >"$W/e2e-stage.log" 2>&1 || diag "$W/e2e-stage.log"
	fi
	(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) >"$W/initrd.gz"

	start=$(date +%s.%N)
	timeout "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1G -smp 2 \
		-display none -monitor none -no-reboot \
		-kernel "$VMLINUZ" -initrd "$W/initrd.gz" \
		-append 'console=ttyS0 panic=-1 loglevel=7' \
		-serial "file:$W/console.log" -serial "file:$W/tap.log" \
		-serial "file:$W/dmesg.log" >"$W/qemu.log" 2>&1
	rc=$?
	secs=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo '?')
	echo "# $k: guest ran ${secs}s (qemu status $rc)"
	tr -d '\r' <"$W/tap.log" >"$W/tap.txt"
	while IFS= read -r line; do
		case "$line" in
		'ok - '*'# SKIP'*)
			name=${line#ok - }
			skip "$k: ${name%%# SKIP*}" "${name#*# SKIP }"
			;;
		'ok - '*) ok "$k: ${line#ok - }" ;;
		'not ok - '*) notok "$k: ${line#not ok - }" ;;
		'#'*) echo "$line" ;;
		esac
	done <"$W/tap.txt"
	if grep -q '^# guest done' "$W/tap.txt" && [ "$rc" -ne 124 ]; then
		ok "$k: guest ran to the end"
	else
		notok "$k: guest ran to the end (qemu status $rc)"
		tail -40 "$W/console.log" | diag
	fi
	pat='BUG|WARNING|Oops|refcount|lockdep|underflow|use-after-free|leak|Call Trace'
	if grep -aE "$pat" "$W/dmesg.log" "$W/console.log" >"$W/dmesg-bad.log"; then
		notok "$k: guest dmesg clean"
		diag "$W/dmesg-bad.log" | head -60
	else
		ok "$k: guest dmesg clean"
	fi
done
finish
