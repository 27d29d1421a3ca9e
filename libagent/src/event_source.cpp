// SPDX-License-Identifier: MIT
#include "agent/event_source.hpp"

#include "sources.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace agent {

void prep_fault_poll(io_uring_sqe *sqe, int fd) { io_uring_prep_poll_multishot(sqe, fd, 0); }

int socket_failure(int fd, int poll_res)
{
	if (poll_res <= 0 || !(poll_res & POLLERR))
		return 0;
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0)
		err = ECONNRESET;
	return -err;
}

EventCounters &EventCounters::operator+=(const EventCounters &o)
{
	data_ready += o.data_ready;
	state_change += o.state_change;
	write_space += o.write_space;
	error_report += o.error_report;
	passed += o.passed;
	filtered += o.filtered;
	coalesced += o.coalesced;
	completions += o.completions;
	bytes += o.bytes;
	overflows += o.overflows;
	sweeps += o.sweeps;
	return *this;
}

EventCounters from_filter(const agentfilt_counters &k)
{
	EventCounters c;
	c.data_ready = k.data_ready;
	c.state_change = k.state_change;
	c.write_space = k.write_space;
	c.error_report = k.error_report;
	c.passed = k.passed;
	c.coalesced = k.coalesced;
	std::uint64_t seen = k.data_ready + k.state_change + k.write_space + k.error_report;
	c.filtered = seen > k.passed ? seen - k.passed : 0;
	return c;
}

bool parse_event_kind(std::string_view s, EventKind &out)
{
	if (s == "auto")
		out = EventKind::automatic;
	else if (s == "uring")
		out = EventKind::uring;
	else if (s == "kmod")
		out = EventKind::kmod;
	else if (s == "bpf")
		out = EventKind::bpf;
	else
		return false;
	return true;
}

std::unique_ptr<EventSource> make_event_source(EventKind kind, Ring &ring, BufferRing &buffers,
					       std::string *err)
{
	switch (kind) {
	case EventKind::uring:
		return make_uring_source(ring, buffers);
	case EventKind::kmod:
		return make_kmod_source(ring, err);
	case EventKind::bpf:
		return make_bpf_source(ring, err);
	case EventKind::automatic:
		break;
	}
	std::string ignored;
	if (access("/dev/agentfilt", F_OK) == 0) {
		if (auto s = make_kmod_source(ring, &ignored))
			return s;
	}
	if (auto s = make_bpf_source(ring, &ignored))
		return s;
	return make_uring_source(ring, buffers);
}

} // namespace agent
