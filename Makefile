# SPDX-License-Identifier: MIT
# agentmux top-level build. `make` builds the library, agentproxy and the
# examples; `make check` runs every test suite; `make demo` shows a transfer.
# The kernel module is built through Kbuild (see kmod/kmod.mk), the eBPF
# program through bpf/bpf.mk; tests/vm/vm.mk boots it in qemu.

ifneq ($(KERNELRELEASE),)
# Invoked by Kbuild: hand over to the Kbuild file.
include $(src)/Kbuild
else

BUILD    ?= build
CXX      ?= g++
CXXSTD   := -std=c++20
WARN     := -Wall -Wextra -Werror
OPT      ?= -O2 -g
DEPFLAGS  = -MMD -MP
PKGS     := liburing libbpf fmt libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CXXFLAGS += $(CXXSTD) $(WARN) $(OPT) $(DEPFLAGS) -fPIC -Ilibagent/include -Iinclude -I$(BUILD)/gen $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lhttp_parser -lpthread

PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include

LIB_SRCS := $(wildcard libagent/src/*.cpp)
LIB_OBJS := $(LIB_SRCS:%.cpp=$(BUILD)/%.o)
LIB_A    := $(BUILD)/libagent.a
LIB_SO   := $(BUILD)/libagent.so

PROXY_SRCS := $(wildcard examples/agentproxy/*.cpp)
PROXY_OBJS := $(PROXY_SRCS:%.cpp=$(BUILD)/%.o)
PROXY      := $(BUILD)/agentproxy

ECHO_SRCS := $(wildcard examples/echo_server/*.cpp)
ECHO_OBJS := $(ECHO_SRCS:%.cpp=$(BUILD)/%.o)
ECHO      := $(BUILD)/echo_server

UNIT_SRCS := $(wildcard tests/unit/*.cpp)
UNIT_OBJS := $(UNIT_SRCS:%.cpp=$(BUILD)/%.o)
UNIT      := $(BUILD)/unit_tests

# Generated headers (the bpf skeleton) that library objects depend on.
GEN_HDRS :=

.PHONY: all deps check demo bench vmtest install clean
all: $(LIB_A) $(LIB_SO) $(PROXY) $(ECHO)

-include bpf/bpf.mk
-include kmod/kmod.mk
-include tests/vm/vm.mk
-include bench/bench.mk
-include tests/sanitize/sanitize.mk
-include tests/fuzz/fuzz.mk
-include tests/tools/tools.mk

$(BUILD)/%.o: %.cpp | $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(LIB_SO): $(LIB_OBJS)
	$(CXX) -shared -Wl,-soname,libagent.so.0 -o $@ $^ $(LDLIBS)

$(PROXY): $(PROXY_OBJS) $(LIB_A)
	$(CXX) -o $@ $(PROXY_OBJS) $(LIB_A) $(LDLIBS)

$(ECHO): $(ECHO_OBJS) $(LIB_A)
	$(CXX) -o $@ $(ECHO_OBJS) $(LIB_A) $(LDLIBS)

$(UNIT): $(UNIT_OBJS) $(LIB_A)
	$(CXX) -o $@ $(UNIT_OBJS) $(LIB_A) $(LDLIBS) $(shell pkg-config --libs catch2-with-main)

# Installs the packages the build, the tests and the benchmarks need.
deps:
	bash scripts/deps.sh

# Runs `make deps` only when a needed tool or library is missing.
.deps-ok:
	@bash scripts/deps.sh
	@touch $@

check: .deps-ok
	$(MAKE) -j$(shell nproc) all $(UNIT) $(CHECK_EXTRA)
	bash tests/run.sh

demo: .deps-ok
	$(MAKE) -j$(shell nproc) all
	bash scripts/demo.sh

install: $(LIB_A) $(LIB_SO)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR)/agent $(DESTDIR)$(INCDIR)/uapi
	install -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/libagent.so.0
	ln -sf libagent.so.0 $(DESTDIR)$(LIBDIR)/libagent.so
	install -m 644 libagent/include/agent/*.hpp $(DESTDIR)$(INCDIR)/agent/
	install -m 644 include/uapi/agentfilt.h $(DESTDIR)$(INCDIR)/uapi/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCDIR@|$(INCDIR)|' \
		libagent/libagent.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/libagent.pc

clean:
	rm -rf $(BUILD) .deps-ok

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

endif
