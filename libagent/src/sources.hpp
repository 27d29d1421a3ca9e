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

// Every source keeps one multishot poll per watched socket with an empty
// event mask: io_uring always adds POLLERR, POLLHUP and POLLRDHUP, and data
// or send-space wakeups never match, so it completes only when the socket
// fails or its peer hangs up, paused or not. It is edge-triggered: a
// half-close that stays set completes it once, not on every turn.
void prep_fault_poll(io_uring_sqe *sqe, int fd);
// What such a poll's completion means: a negative errno when the socket has
// failed (POLLERR: a reset or a hard error, named by SO_ERROR) and the
// reader must hear of it now, paused or not; 0 for a hang-up or half-close,
// which a read reports in order.
int socket_failure(int fd, int poll_res);

// The filter's counters (kmod or bpf) as EventCounters: filtered is every
// event seen less those passed.
EventCounters from_filter(const agentfilt_counters &k);

} // namespace agent
