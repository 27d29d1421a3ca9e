// SPDX-License-Identifier: MIT
// Constructors of the three EventSource implementations (internal).
#pragma once

#include "agent/buffer_ring.hpp"
#include "agent/event_source.hpp"

#include <uapi/agentfilt.h>

namespace agent {

std::unique_ptr<EventSource> make_uring_source(Ring &ring, BufferRing &buffers);
// Null with *err set when /dev/agentfilt cannot be opened or used.
std::unique_ptr<EventSource> make_kmod_source(Ring &ring, std::string *err);
// Null with *err set when the program cannot be loaded (no privilege, ...).
std::unique_ptr<EventSource> make_bpf_source(Ring &ring, std::string *err);

// The filter's counters (kmod or bpf) as EventCounters: filtered is every
// event seen less those passed.
EventCounters from_filter(const agentfilt_counters &k);

} // namespace agent
