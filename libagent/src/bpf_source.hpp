// SPDX-License-Identifier: MIT
// The bpf event source with its load-time options (internal; tests use it to
// pick a tiny ring buffer).
#pragma once

#include "agent/event_source.hpp"

#include <cstddef>
#include <memory>
#include <string>

namespace agent {

struct BpfOptions {
	// Size of the BPF ring buffer in bytes: a power of two, at least one
	// page (rounded up if not). A record takes 24 bytes (16 and the ring's
	// 8-byte header) and a watch has at most one queued (the pending flag),
	// so 2 MiB holds one for each of the 65,536 slots: it cannot overflow.
	std::size_t ring_bytes = 2 * 1024 * 1024;
	// Most sockets watched at once (slots of the pending-flag array).
	unsigned max_watches = 65536;
};

// Loads agentfilt.bpf.c (tracepoints, with the fentry fallback where the
// sk_data_ready tracepoint is missing) and returns its EventSource. On
// failure returns null and sets *err to one line.
std::unique_ptr<EventSource> make_bpf_source(Ring &ring, const BpfOptions &opts,
					     std::string *err);

} // namespace agent
