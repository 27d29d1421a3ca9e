# SPDX-License-Identifier: GPL-2.0
# agentfilt.ko targets, included by the top-level Makefile.
#   make kmod [KDIR=/lib/modules/VER/build]   build against kernel headers
#   make kmod-check                           checkpatch --strict and sparse
#                                             against the Debian 6.12 headers
#   make kmod-clean
#   make dkms-install                         copy the sources to /usr/src and
#                                             dkms add/build/install them
# `make vmtest` (tests/vm/vm.mk) builds it against Debian 6.1 and 6.12 and
# tests it in qemu.
KDIR ?= /lib/modules/$(shell uname -r)/build
AGENTFILT_VERSION := 1.0
DKMS_SRC := $(DESTDIR)/usr/src/agentfilt-$(AGENTFILT_VERSION)

.PHONY: kmod kmod-check kmod-clean dkms-install
kmod:
	$(MAKE) -C $(KDIR) M=$(CURDIR)/kmod modules

kmod-clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR)/kmod clean

kmod-check:
	perl "$$(bash tests/vm/fetch.sh checkpatch)" --no-tree --strict -f kmod/*.[ch]
	. "$$(bash tests/vm/fetch.sh 6.12)" && \
		$(MAKE) -C "$$KDIR" M=$(CURDIR)/kmod W=1 C=2 CHECK=sparse modules && \
		$(MAKE) -C "$$KDIR" M=$(CURDIR)/kmod clean

dkms-install:
	install -d $(DKMS_SRC)/uapi
	install -m 644 kmod/*.c kmod/*.h kmod/Kbuild kmod/Makefile kmod/dkms.conf $(DKMS_SRC)/
	install -m 644 include/uapi/agentfilt.h $(DKMS_SRC)/uapi/
	dkms add agentfilt/$(AGENTFILT_VERSION)
	dkms build agentfilt/$(AGENTFILT_VERSION)
	dkms install agentfilt/$(AGENTFILT_VERSION)
