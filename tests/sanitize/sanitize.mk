# SPDX-License-Identifier: MIT
# The sanitizer build: libagent, agentproxy, echo_server and the unit tests
# with AddressSanitizer (LeakSanitizer included) and UndefinedBehaviorSanitizer,
# in a build folder of their own, $(ASAN_BUILD). `make check` builds it
# (CHECK_EXTRA) and tests/suites runs the unit tests and the e2e suite on it
# (suites unit-asan, e2e-asan; tests/sanitize/run.sh sets the options).
# Included by the top-level Makefile.
#   make asan              build it
#   make asan-check        build it and run those two suites only

ASAN_BUILD ?= build/asan
# -O1 keeps the stacks readable and the run fast enough; undefined behaviour
# is fatal (no recovery), so a report cannot scroll by unnoticed.
SAN_FLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer

.PHONY: asan asan-check
# A make of its own over the same rules with BUILD=$(ASAN_BUILD): every object
# is built twice, never mixed. LDLIBS goes by the environment so that the
# Makefile's `LDLIBS +=` appends the libraries to the sanitizer flags.
asan:
	LDLIBS="$(SAN_FLAGS)" $(MAKE) BUILD=$(ASAN_BUILD) OPT="-O1 -g $(SAN_FLAGS)" \
		$(ASAN_BUILD)/agentproxy $(ASAN_BUILD)/echo_server $(ASAN_BUILD)/unit_tests

asan-check: .deps-ok asan
	SUITES="unit-asan e2e-asan" bash tests/run.sh

CHECK_EXTRA += asan
