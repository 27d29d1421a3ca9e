# SPDX-License-Identifier: GPL-2.0
# `make vmtest`: agentfilt.ko in qemu on the Debian 6.1 and 6.12 kernels
# (included by the top-level Makefile). VM_KERNELS="6.12" picks kernels.
# `make vmtest-debug`: the module's tests on a KASAN/lockdep/PROVE_RCU/kmemleak
# kernel built from Debian's linux-source-6.12 (tests/vm/debug-kernel.sh;
# built once, then cached). Not part of `make check`: see kmod/README.md.
.PHONY: vmtest vmtest-debug
vmtest: .deps-ok
	$(MAKE) all
	bash tests/vm/run.sh

vmtest-debug: .deps-ok
	VM_KERNELS=debug bash tests/vm/run.sh
