// SPDX-License-Identifier: MIT
// The event path: something that learns that data arrived on a socket and
// hands the bytes to the socket's reader. Three implementations:
//   uring - a recv into a provided-buffer ring (no privilege), re-armed;
//   kmod  - agentfilt.ko events read from /dev/agentfilt, then recv;
//   bpf   - agentfilt.bpf.c ring-buffer records, then recv.
// None of them polls a socket before reading it. In pull mode the reader
// does the read itself (uring: a one-byte MSG_PEEK recv is the event).
#pragma once

#include "agent/ring.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace agent {

class BufferRing;

// Receives the bytes of one watched socket.
class StreamReader {
public:
	// bytes is valid only during the call.
	virtual void on_data(std::span<const std::byte> bytes) = 0;
	// The socket will deliver nothing more: err is 0 for an orderly end of
	// stream (peer shut down its write side), else a negative errno.
	virtual void on_end(int err) = 0;

	// Pull mode, for a reader that moves the bytes itself (splice into a
	// pipe, no copy): while pulls() is true the source calls on_readable()
	// when data has arrived instead of reading for it, and the reader
	// learns of the end of stream from its own read. Bytes a source had
	// already read when the mode changed still come through on_data().
	struct Pulled {
		std::size_t bytes = 0; // bytes the reader took
		bool drained = true;   // false: it stopped early, wants another turn
	};
	virtual bool pulls() const { return false; }
	// The reader reads (without waiting) until EAGAIN, end of stream, an
	// error, a budget or a pause of its own.
	virtual Pulled on_readable() { return {}; }

protected:
	~StreamReader() = default;
};

// Signaling events seen and what became of them. A source fills in the
// kinds it can observe; the uring source sees data arrival only.
struct EventCounters {
	std::uint64_t data_ready = 0;
	std::uint64_t state_change = 0;
	std::uint64_t write_space = 0;
	std::uint64_t error_report = 0;
	std::uint64_t passed = 0;      // events handed to the agent
	std::uint64_t filtered = 0;    // events seen and not passed
	std::uint64_t coalesced = 0;   // data arrivals merged into a pending event
	std::uint64_t completions = 0; // io_uring CQEs the source consumed
	std::uint64_t bytes = 0;       // bytes read from watched sockets
	std::uint64_t overflows = 0;   // times the event queue overflowed
	std::uint64_t sweeps = 0;      // times every watched socket was read again (an
	                               // overflow, or an arrival the filter missed)

	EventCounters &operator+=(const EventCounters &o);
};

class EventSource {
public:
	virtual ~EventSource() = default;

	virtual std::string_view name() const = 0;

	// Starts delivering fd's bytes to reader. The fd stays owned by the
	// caller, who must unwatch() before closing it.
	virtual void watch(int fd, StreamReader &reader) = 0;
	// Stops delivering (backpressure); bytes stay queued in the socket.
	// A few bytes already in flight may still be held by the source.
	virtual void pause(int fd) = 0;
	// Delivers again, starting with whatever is held or queued.
	virtual void resume(int fd) = 0;
	// None of watch, pause, resume and unwatch calls a reader back before
	// returning (readers call them from inside their own callbacks):
	// deliveries they cause happen later, from a ring completion.
	// Forgets fd: no reader callback happens after this returns.
	virtual void unwatch(int fd) = 0;

	// Totals over all watches, past and present.
	virtual EventCounters counters() const = 0;
	// One watched socket's counters (zero if fd is not watched).
	virtual EventCounters counters(int fd) const = 0;
};

enum class EventKind { automatic, uring, kmod, bpf };

// Parses "auto", "uring", "kmod" or "bpf".
bool parse_event_kind(std::string_view s, EventKind &out);

// Creates the source; auto picks kmod if /dev/agentfilt exists, else bpf if
// its program loads, else uring. On failure returns null and sets *err to
// one line saying why.
std::unique_ptr<EventSource> make_event_source(EventKind kind, Ring &ring, BufferRing &buffers,
					       std::string *err);

} // namespace agent
