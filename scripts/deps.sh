#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs everything agentmux needs to build, test and benchmark on Debian 12.
# Idempotent: safe to run again; it only installs what is missing.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive

# Debian 12 backports carries Catch2 v3, a newer libbpf and bpftool.
BPO=/etc/apt/sources.list.d/bpo.sources
if [ ! -e "$BPO" ] && [ -e /etc/apt/sources.list.d/debian.sources ]; then
	sed 's/Suites: bookworm bookworm-updates/Suites: bookworm-backports/' \
		/etc/apt/sources.list.d/debian.sources |
		awk 'BEGIN{RS="";ORS="\n\n"} NR==1' | $SUDO tee "$BPO" >/dev/null
	NEED_UPDATE=1
fi

MAIN_PKGS=(build-essential pkg-config liburing-dev libfmt-dev libcli11-dev libssl-dev
	libhttp-parser-dev nginx curl
	clang llvm libclang-rt-14-dev libelf-dev zlib1g-dev
	iperf3 haproxy socat iproute2 procps psmisc python3 python3-matplotlib
	qemu-system-x86 busybox-static cpio kmod dwarves sparse xz-utils zstd nftables
	gcc-multilib flex bison bc mptcpize iputils-ping)
BPO_PKGS=(libbpf-dev bpftool libcatch2-dev)

missing=()
for p in "${MAIN_PKGS[@]}" "${BPO_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Catch2 must be v3 (the bookworm one is v2).
if ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' libcatch2-dev 2>/dev/null || echo 0)" ge 3; then
	missing+=(libcatch2-dev)
fi
if ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' libbpf-dev 2>/dev/null || echo 0)" ge 1:1.4; then
	missing+=(libbpf-dev)
fi
[ ${#missing[@]} -eq 0 ] && { echo "deps: all installed"; exit 0; }

echo "deps: installing ${missing[*]}"
if [ -n "${NEED_UPDATE:-}" ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] ||
	! apt-cache policy libbpf-dev 2>/dev/null | grep -q bookworm-backports; then
	$SUDO apt-get update -qq
fi
main=() bpo=()
for p in "${missing[@]}"; do
	case " ${BPO_PKGS[*]} " in *" $p "*) bpo+=("$p") ;; *) main+=("$p") ;; esac
done
[ ${#main[@]} -eq 0 ] || $SUDO apt-get install -y -qq --no-install-recommends "${main[@]}"
[ ${#bpo[@]} -eq 0 ] || $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports "${bpo[@]}"
echo "deps: done"
