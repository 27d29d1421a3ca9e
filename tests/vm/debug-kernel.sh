#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds (once) the debug guest kernel of `make vmtest-debug`: Debian's
# linux-source-6.12 (the bookworm-backports version, resolved with
# apt-cache), tinyconfig + tests/vm/debug.config (KASAN, lockdep,
# PROVE_RCU, kmemleak). The built tree is cached under
# $VM_CACHE/debug/<version>-<config hash>; prints the path of an env file
# (KREL, KDIR, VMLINUZ, MODROOT) as fetch.sh does. The build log and its
# wall/CPU time go to build.log and build-time in that directory.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
. tests/vm/common.sh
log() { echo "debug-kernel: $*" >&2; }

ver=$(apt-cache madison linux-source-6.12 | awk -F' *[|] *' '$3 ~ /bookworm-backports\// {print $2}' |
	sort -V | tail -1)
[ -n "$ver" ] || { log "linux-source-6.12 not in bookworm-backports (apt-get update?)"; exit 1; }
hash=$(sha256sum tests/vm/debug.config | cut -c1-12)
dir=$VM_CACHE/debug/$ver-$hash
if [ -s "$dir/env" ]; then
	echo "$dir/env"
	exit 0
fi
mkdir -p "$VM_CACHE/debug" "$VM_CACHE/debs"
deb=$(ls "$VM_CACHE"/debs/linux-source-6.12_"${ver//:/%3a}"_all.deb 2>/dev/null || true)
if [ -z "$deb" ]; then
	log "apt-get download linux-source-6.12=$ver"
	(cd "$VM_CACHE/debs" && apt-get download -qq -o APT::Sandbox::User=root "linux-source-6.12=$ver" >&2)
	deb=$(ls "$VM_CACHE"/debs/linux-source-6.12_*_all.deb | head -1)
fi
rm -rf "$dir"
mkdir -p "$dir"
tmp=$(mktemp -d "$VM_CACHE/debug/unpack.XXXXXX")
dpkg -x "$deb" "$tmp"
tar -xf "$tmp"/usr/src/linux-source-6.12.tar.* -C "$dir"
rm -rf "$tmp"
src=$dir/linux-source-6.12
jobs=${VM_DEBUG_JOBS:-2}
(
	set -e
	start=$(date +%s)
	make -C "$src" -s tinyconfig
	"$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" tests/vm/debug.config
	make -C "$src" -s olddefconfig
	# Every option the tests rely on must have survived olddefconfig.
	for o in KASAN PROVE_LOCKING PROVE_RCU DEBUG_KMEMLEAK SLUB_DEBUG TLS IO_URING IPV6 \
		BPF_SYSCALL NET_SOCK_MSG IA32_EMULATION; do
		grep -q "^CONFIG_$o=y" "$src/.config" || { echo "CONFIG_$o did not stick"; exit 1; }
	done
	TIMEFORMAT='cpu %U user %S sys'
	time make -C "$src" -j"$jobs" bzImage modules
	end=$(date +%s)
	echo "wall $((end - start)) s"
) >"$dir/build.log" 2>&1 || { log "build failed, see $dir/build.log"; tail -20 "$dir/build.log" >&2; exit 1; }
grep -E '^(cpu|wall) ' "$dir/build.log" >"$dir/build-time"
krel=$(make -C "$src" -s kernelrelease)
cat >"$dir/env" <<EOT
KREL=$krel
KDIR=$src
VMLINUZ=$src/arch/x86/boot/bzImage
MODROOT=
EOT
log "built $krel: $(tr '\n' ' ' <"$dir/build-time")"
echo "$dir/env"
