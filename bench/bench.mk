# SPDX-License-Identifier: MIT
# `make bench`: pushes iperf3 through agentproxy and its peers (direct, an
# HAProxy two-hop chain, a naive blocking relay pair, a socat chain) in one run
# on loopback, then latency, the event path (events/s and CPU per event per
# event source, kmod in a qemu guest), 10,000 idle sessions against HAProxy,
# and the wide-area paths. Writes $(BUILD)/bench/results.md, results.json and
# one PNG per scenario.
# BENCH_ARGS passes options to bench/run.py (see `bench/run.py --help`), e.g.
#   make bench BENCH_ARGS='--quick'
#   make bench BENCH_ARGS='--agent-flags="--buffer-size 256K"'

BENCH_RELAY := $(BUILD)/bench_relay
BENCH_PINGPONG := $(BUILD)/bench_pingpong
BENCH_DELAYLINE := $(BUILD)/bench_delayline
BENCH_CHATTER := $(BUILD)/bench_chatter
# tests/path/run.py builds its path with the bench's delay line.
CHECK_EXTRA += $(BENCH_DELAYLINE)
BENCH_PY    ?= /usr/bin/python3
BENCH_ARGS  ?=

$(BENCH_RELAY): bench/relay.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Wall -Wextra -Werror -pthread -o $@ $<

$(BENCH_PINGPONG): bench/pingpong.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Wall -Wextra -Werror -pthread -o $@ $<

$(BENCH_DELAYLINE): bench/delayline.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Wall -Wextra -Werror -pthread -o $@ $<

# Static: the event-path scenario's qemu guest runs it too.
$(BENCH_CHATTER): bench/chatter.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Wall -Wextra -Werror -static -o $@ $<

bench: .deps-ok
	$(MAKE) all $(BENCH_RELAY) $(BENCH_PINGPONG) $(BENCH_DELAYLINE) $(BENCH_CHATTER)
	$(BENCH_PY) bench/run.py --build $(BUILD) $(BENCH_ARGS)
	$(BENCH_PY) bench/http_bench.py --build $(BUILD) $(BENCH_HTTP_ARGS)

# The HTTP scenario (bench/http_bench.py): one pipelining client connection at
# depth 1, 4 and 16 against a 10 ms backend, through agentproxy http, nginx and
# HAProxy. Writes $(BUILD)/bench/http.md, http.json and http.png; `make bench`
# runs it after the TCP scenarios (BENCH_HTTP_ARGS passes its options).
.PHONY: bench-http
bench-http: .deps-ok
	$(MAKE) all
	$(BENCH_PY) bench/http_bench.py --build $(BUILD) $(BENCH_HTTP_ARGS)

# The path scenarios alone (bench/paths.py): lossy and capped paths in namespaces.
# PATHS_ARGS passes options, e.g. make bench-paths PATHS_ARGS=--quick
PATHS_ARGS ?=
.PHONY: bench-paths
bench-paths: .deps-ok
	$(MAKE) all $(BENCH_DELAYLINE)
	$(BENCH_PY) bench/paths.py --build $(BUILD) $(PATHS_ARGS)

# The event-path scenario alone (bench/events.py): uring and bpf here, kmod in
# the qemu guest of tests/vm/. EVENTS_ARGS passes options, e.g. EVENTS_ARGS=--quick
EVENTS_ARGS ?=
.PHONY: bench-events
bench-events: .deps-ok
	$(MAKE) all $(BENCH_CHATTER)
	$(BENCH_PY) bench/events.py --build $(BUILD) $(EVENTS_ARGS)

# The idle-sessions scenario alone (bench/idle.py): 10,000 sessions through
# stripe + join and through HAProxy. IDLE_ARGS passes options.
IDLE_ARGS ?=
.PHONY: bench-idle
bench-idle: .deps-ok
	$(MAKE) all $(BENCH_CHATTER)
	$(BENCH_PY) bench/idle.py --build $(BUILD) $(IDLE_ARGS)
