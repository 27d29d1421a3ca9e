# SPDX-License-Identifier: GPL-2.0
# The eBPF filter: bpf/agentfilt.bpf.c -> $(BUILD)/bpf/agentfilt.bpf.o ->
# $(BUILD)/gen/agentfilt.skel.h (embedded in libagent by bpf_source.cpp).
# vmlinux.h is generated at build time from the running kernel's BTF (or
# VMLINUX_BTF=path, e.g. an unpacked guest kernel's); it is never committed.
# Included by the top-level Makefile.

BPF_CLANG   ?= clang
BPFTOOL     ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
BPF_ARCH    := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BPF_CFLAGS  := -target bpf -O2 -g -mcpu=v3 -D__TARGET_ARCH_$(BPF_ARCH) \
	-Wall -Werror -I$(BUILD)/gen -Ibpf -Iinclude

BPF_OBJ  := $(BUILD)/bpf/agentfilt.bpf.o
BPF_SKEL := $(BUILD)/gen/agentfilt.skel.h

$(BUILD)/gen/vmlinux.h:
	@mkdir -p $(dir $@)
	$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@.tmp
	mv $@.tmp $@

$(BPF_OBJ): bpf/agentfilt.bpf.c bpf/agentfilt.h include/uapi/agentfilt.h $(BUILD)/gen/vmlinux.h
	@mkdir -p $(dir $@)
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BPF_SKEL): $(BPF_OBJ)
	$(BPFTOOL) gen object $(BUILD)/bpf/agentfilt.o $<
	$(BPFTOOL) gen skeleton $(BUILD)/bpf/agentfilt.o name agentfilt > $@.tmp
	mv $@.tmp $@

GEN_HDRS += $(BPF_SKEL)

# Host and guest tests (TAP). Linked statically when the static libraries
# are there, so the qemu guests can run the same binary.
BPF_TEST_SRCS := $(wildcard tests/bpf/*.cpp)
BPF_TEST_OBJS := $(BPF_TEST_SRCS:%.cpp=$(BUILD)/%.o)
BPF_TESTS     := $(BUILD)/bpf_tests
BPF_TEST_LIBS := $(shell pkg-config --static --libs libbpf liburing 2>/dev/null) -lpthread

$(BPF_TESTS): $(BPF_TEST_OBJS) $(LIB_A)
	$(CXX) -static -o $@ $(BPF_TEST_OBJS) $(LIB_A) $(BPF_TEST_LIBS) 2>/dev/null || \
		$(CXX) -o $@ $(BPF_TEST_OBJS) $(LIB_A) $(LDLIBS)

ifneq ($(BPF_TEST_SRCS),)
CHECK_EXTRA += $(BPF_TESTS)
endif
.PHONY: bpf
bpf: $(BPF_SKEL)
