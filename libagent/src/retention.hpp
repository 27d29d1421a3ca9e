// SPDX-License-Identifier: MIT
// The sending side's copy of every DATA frame the peer has not acknowledged
// yet (docs/wire-format.md, "Losing a stream"): when a stream is lost, the
// frames it carried are sent again from here on the others. Frames are kept
// in seq order; a cumulative ACK releases a prefix.
//
// A frame is kept either as bytes (the copy path) or, on the zero-copy path,
// as a pipe tee(2)'d from the one that went to the socket: the pipe holds
// references to the same pages, so retention copies nothing until a frame
// is actually sent again. What a session retains is bounded by its own
// --retention, not by the agent's memory budget: a peer that stops reading
// pins its sessions' retention, and must not stop the sessions beside them.
#pragma once

#include "pipe.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

namespace agent {

class Retention {
public:
	using Clock = std::chrono::steady_clock;

	struct Frame {
		std::uint64_t seq;
		std::size_t length;
		unsigned stream;             // the stream it went out on last
		Clock::time_point sent;      // when it went out there
		unsigned resends = 0;        // times sent again after a loss
		std::vector<std::byte> bytes; // the copy path's payload...
		Pipe pipe;                    // ...or the zero-copy path's
	};

	static constexpr std::size_t kMinTee = 64 * 1024;
	static constexpr std::size_t kMaxPipes = 32;

	Retention() = default;
	Retention(const Retention &) = delete;
	Retention &operator=(const Retention &) = delete;

	// Keeps a copy of DATA seq (the next after the last one kept).
	void keep_copy(std::uint64_t seq, unsigned stream, Clock::time_point now,
		       std::span<const std::byte> payload);
	// Keeps a duplicate of pipe's bytes (which stay in pipe, to be sent).
	// False, keeping nothing, when the frame is small (a copy is cheaper
	// than two descriptors), kMaxPipes frames are kept as pipes already, or
	// no pipe or no room for the duplicate can be had: the caller keeps a
	// copy instead.
	bool keep_tee(std::uint64_t seq, unsigned stream, Clock::time_point now, const Pipe &pipe);

	// ACK n: frames below n are delivered. Returns the frames released.
	std::size_t ack(std::uint64_t n);
	std::uint64_t acked() const { return acked_; }

	Frame *find(std::uint64_t seq);
	// The lowest frame not acknowledged: the one the peer's ACKs wait for.
	const Frame *oldest() const { return frames_.empty() ? nullptr : &frames_.front(); }
	// The seqs of the frames last sent on stream, in order.
	std::vector<std::uint64_t> carried_by(unsigned stream) const;
	// Makes f's payload bytes (a pipe frame is read out of its pipe, which
	// goes: a frame sent again is copied anyway). False if the pipe could
	// not be read whole (a bug: it is dropped, and the caller ends the
	// session).
	bool materialize(Frame &f);

	std::size_t bytes() const { return bytes_; }
	std::size_t frames() const { return frames_.size(); }
	bool empty() const { return frames_.empty(); }

private:
	void push(Frame f);

	std::deque<Frame> frames_; // increasing seq
	std::size_t bytes_ = 0;
	std::size_t pipes_ = 0; // frames kept as pipes
	std::uint64_t acked_ = 0;
};

} // namespace agent
