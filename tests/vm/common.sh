# SPDX-License-Identifier: GPL-2.0
# Shared settings of the vm test scripts (sourced).
# VM_CACHE holds downloaded packages, unpacked kernels and checkpatch; it
# survives `make clean` when it lives outside build/.
if [ -z "${VM_CACHE:-}" ]; then
	if [ "$(id -u)" -eq 0 ]; then
		VM_CACHE=/var/cache/agentmux
	else
		VM_CACHE=$PWD/build/vm-cache
	fi
fi
VM_BUILD=${VM_BUILD:-$PWD/build/vm}
export VM_CACHE VM_BUILD
