#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Fetches one Debian kernel (image, headers, their -common and kbuild
# packages) with `apt-get download` and unpacks it with `dpkg -x` into the
# VM cache. The version is resolved with apt-cache, never hard-coded.
#
#   fetch.sh 6.1|6.12   prints the path of an env file that sets
#                       KREL (uname -r), KDIR (headers), VMLINUZ, MODROOT.
#   fetch.sh checkpatch prints the path of checkpatch.pl (from linux-source).
set -euo pipefail
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/../.."
. tests/vm/common.sh

want=${1:?usage: fetch.sh 6.1|6.12|checkpatch}

# Stale apt lists name versions the mirror no longer has: on any failure,
# refresh the lists once and start over.
if [ -z "${AF_FETCH_INNER:-}" ]; then
	if out=$(AF_FETCH_INNER=1 bash "$SELF" "$@"); then
		echo "$out"
		exit 0
	fi
	echo "fetch: failed; apt-get update and retry" >&2
	apt-get update -qq >&2 || true
	AF_FETCH_INNER=1 exec bash "$SELF" "$@"
fi
mkdir -p "$VM_CACHE/debs"

log() { echo "fetch: $*" >&2; }

# Version of a binary package in a given suite (the newest one there).
suite_version() { # pkg suite-regex
	apt-cache madison "$1" | awk -F' *[|] *' -v s="$2" '$3 ~ s {print $2}' |
		sort -V | tail -1
}

ensure_lists() {
	if [ -z "$(suite_version linux-image-amd64 'bookworm-backports')" ]; then
		log "no bookworm-backports in apt lists; running apt-get update"
		apt-get update -qq >&2 || true
	fi
}

# Downloads pkg=ver into the deb cache (once) and prints the .deb path.
download() { # pkg ver
	local f
	f=$(ls "$VM_CACHE/debs/$1_$(echo "$2" | sed 's/^[0-9]*://; s/:/%3a/g')"_*.deb 2>/dev/null | head -1 || true)
	if [ -z "$f" ]; then
		log "apt-get download $1=$2"
		(cd "$VM_CACHE/debs" && apt-get download -qq -o APT::Sandbox::User=root "$1=$2" >&2)
		f=$(ls "$VM_CACHE/debs/$1_"*.deb | grep -F "_$(echo "$2" | sed 's/^[0-9]*://; s/:/%3a/g')_" | head -1)
	fi
	echo "$f"
}

# The package names one package depends on, matching a pattern.
deps_of() { # pkg ver regex
	apt-cache show "$1=$2" | sed -n 's/^Depends: //p' | head -1 | tr ',' '\n' |
		sed 's/^ *//; s/ .*//' | grep -E "$3" || true
}

ensure_lists

case "$want" in
6.1) suite='bookworm(-security)?/' ;;
6.12) suite='bookworm-backports/' ;;
checkpatch)
	out=$VM_CACHE/checkpatch
	if [ ! -x "$out/scripts/checkpatch.pl" ]; then
		ver=$(suite_version linux-source 'bookworm-backports/')
		[ -n "$ver" ] || { log "linux-source not found in bookworm-backports"; exit 1; }
		src=$(deps_of linux-source "$ver" '^linux-source-')
		deb=$(download "$src" "$ver")
		tmp=$(mktemp -d "$VM_CACHE/src.XXXXXX")
		dpkg -x "$deb" "$tmp"
		tarball=$(ls "$tmp"/usr/src/linux-source-*.tar.* | head -1)
		top=$(basename "$tarball" | sed 's/\.tar\..*//')
		mkdir -p "$out/scripts"
		tar -xf "$tarball" -C "$tmp" "$top/scripts/checkpatch.pl" \
			"$top/scripts/spelling.txt" "$top/scripts/const_structs.checkpatch"
		cp "$tmp/$top/scripts/"* "$out/scripts/"
		rm -rf "$tmp"
		rm -f "$deb"	# 139 MB we no longer need
	fi
	echo "$out/scripts/checkpatch.pl"
	exit 0
	;;
*) log "unknown kernel $want"; exit 2 ;;
esac

meta=$(suite_version linux-image-amd64 "$suite")
[ -n "$meta" ] || { log "linux-image-amd64 not found for $want"; exit 1; }
img=$(deps_of linux-image-amd64 "$meta" '^linux-image-')
krel=${img#linux-image-}
case "$krel" in "$want".*) ;; *) log "resolved $krel, not a $want kernel"; exit 1 ;; esac
dir=$VM_CACHE/kernels/$krel
env=$dir/env
if [ -s "$env" ]; then
	echo "$env"
	exit 0
fi
log "kernel $want: $krel ($meta)"
hdr=linux-headers-$krel
pkgs=("$img" "$hdr")
for d in $(deps_of "$hdr" "$meta" '^linux-(headers|kbuild)-'); do
	pkgs+=("$d")
done
rm -rf "$dir"
mkdir -p "$dir/root"
for p in "${pkgs[@]}"; do
	# -common and -kbuild may carry a different (source) version string.
	v=$(apt-cache madison "$p" | awk -F' *[|] *' '{print $2}' | grep -Fx "$meta" || true)
	[ -n "$v" ] || v=$(apt-cache madison "$p" | awk -F' *[|] *' '{print $2}' | sort -V | tail -1)
	deb=$(download "$p" "$v")
	dpkg -x "$deb" "$dir/root"
done
root=$dir/root
kdir=$root/usr/src/linux-headers-$krel
# The headers' Makefile includes the -common tree by absolute path; the
# scripts/tools symlinks point into /usr/lib/linux-kbuild-*: repoint both.
sed -i "s|^include /usr/src/|include $root/usr/src/|" "$kdir/Makefile"
for l in $(find "$root/usr/src" -maxdepth 2 -type l); do
	t=$(readlink "$l")
	case "$t" in /*) ln -sfn "$root$t" "$l" ;; esac
done
vmlinuz=$(ls "$root"/boot/vmlinuz-"$krel")
cat >"$env" <<EOT
KREL=$krel
KDIR=$kdir
VMLINUZ=$vmlinuz
MODROOT=$root
EOT
echo "$env"
