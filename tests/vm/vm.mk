# SPDX-License-Identifier: GPL-2.0
# `make vmtest`: agentfilt.ko in qemu on the Debian 6.1 and 6.12 kernels
# (included by the top-level Makefile). VM_KERNELS="6.12" picks kernels.
.PHONY: vmtest
vmtest: .deps-ok
	$(MAKE) all
	bash tests/vm/run.sh
