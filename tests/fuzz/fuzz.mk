# SPDX-License-Identifier: MIT
# libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined) over the
# wire decoders and the reorder buffer; each compiles the few libagent
# sources it needs directly. Included by the top-level Makefile.
#   make fuzz [FUZZ_SECONDS=60]   fuzz each target for FUZZ_SECONDS, then
#                                 merge what it found into its corpus
#                                 (tests/fuzz/corpus/<target>/, minimized)
# `make check` builds them (CHECK_EXTRA) and replays every corpus (suite
# fuzz-replay, tests/fuzz/replay.sh).

FUZZ_BUILD   ?= build/fuzz
FUZZ_CXX     ?= clang++
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -std=c++20 -O1 -g -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-Wall -Wextra -Werror -Ilibagent/include -Iinclude
FUZZ_HDRS    := $(wildcard libagent/include/agent/*.hpp) include/uapi/agentfilt.h

FUZZ_TARGETS := frame hello reorder
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%_fuzz)

$(FUZZ_BUILD)/frame_fuzz: tests/fuzz/frame_fuzz.cpp libagent/src/frame.cpp $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -o $@ $(filter %.cpp,$^)

$(FUZZ_BUILD)/hello_fuzz: tests/fuzz/hello_fuzz.cpp libagent/src/frame.cpp \
		libagent/src/auth.cpp $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -o $@ $(filter %.cpp,$^) $(shell pkg-config --libs libcrypto)

$(FUZZ_BUILD)/reorder_fuzz: tests/fuzz/reorder_fuzz.cpp libagent/src/reorder.cpp $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -o $@ $(filter %.cpp,$^)

.PHONY: fuzz fuzzers
fuzzers: $(FUZZ_BINS)

fuzz: .deps-ok fuzzers
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/fuzz.sh $(FUZZ_TARGETS)

CHECK_EXTRA += fuzzers
