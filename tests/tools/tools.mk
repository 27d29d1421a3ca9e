# SPDX-License-Identifier: MIT
# Test tools in C that the e2e suites run (included by the top-level Makefile;
# `make` builds them with everything else, so `make check` has them).
#   $(BUILD)/faultrelay   a TCP relay that resets, stalls, blackholes or delays chosen
#                         connections (tests/e2e/relay.py, cases_failover.py)

FAULTRELAY := $(BUILD)/faultrelay

$(FAULTRELAY): tests/tools/faultrelay.c tests/tools/faultrelay_plan.c tests/tools/faultrelay.h
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Wall -Wextra -Werror -o $@ tests/tools/faultrelay.c tests/tools/faultrelay_plan.c

all: $(FAULTRELAY)
