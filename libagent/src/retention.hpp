// SPDX-License-Identifier: MIT
// The sending side's copy of every DATA frame the peer has not acknowledged
// yet (docs/wire-format.md, "Losing a stream"): when a stream is lost, the
// frames it carried are sent again from here on the others. Frames are kept
// in seq order; a cumulative ACK releases a prefix.
//
// A frame is kept either as bytes (the copy path) or, on the zero-copy path,
// tee(2)'d from the pipe that went to the socket into a store: a pipe that
// holds the payloads of consecutive frames, oldest first, by reference to
// the same pages. Retention copies nothing until a frame is actually sent
// again (rare: a stream was lost), and then reads its whole store out. An
// ACK drops the acknowledged payloads from the head of their store, so one
// store serves a session's frames in turn; a new one is taken only when a
// frame does not fit (a tee that comes short seals the store: the bytes it
// did duplicate belong to no frame). A pipe per frame instead cost a
// descriptor pair per frame, and a copy once they ran out. What a session
// retains is bounded by its own --retention, not by the agent's memory
// budget: a peer that stops reading pins its sessions' retention, and must
// not stop the sessions beside them.
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
		std::uint32_t store = 0;      // ...or in the store of this id
		// The peer said it waits for it (ACK WAITING) since it went
		// out last: past --stream-timeout, that stream is lost.
		bool peer_waits = false;
	};

	// Stores a session holds at most (two descriptors each); past them,
	// frames are copied.
	static constexpr std::size_t kMaxStores = 16;
	// Bytes a store holds at least (its pipe is made as large as the
	// pipe a frame comes in, if that is larger).
	static constexpr std::size_t kStoreSize = 1 << 20;

	Retention() = default;
	Retention(const Retention &) = delete;
	Retention &operator=(const Retention &) = delete;

	// Keeps a copy of DATA seq (the next after the last one kept).
	void keep_copy(std::uint64_t seq, unsigned stream, Clock::time_point now,
		       std::span<const std::byte> payload);
	// Keeps a duplicate of pipe's bytes (which stay in pipe, to be sent)
	// in a store. False, keeping nothing, when the pipe is empty, or no
	// store has room and no new one can be had (kMaxStores, descriptors,
	// pipe pages): the caller keeps a copy instead.
	bool keep_tee(std::uint64_t seq, unsigned stream, Clock::time_point now, const Pipe &pipe);

	// ACK n: frames below n are delivered. Returns the frames released.
	std::size_t ack(std::uint64_t n);
	std::uint64_t acked() const { return acked_; }

	Frame *find(std::uint64_t seq);
	// The lowest frame not acknowledged: the one the peer's ACKs wait for.
	const Frame *oldest() const { return frames_.empty() ? nullptr : &frames_.front(); }
	// The seqs of the frames last sent on stream, in order.
	std::vector<std::uint64_t> carried_by(unsigned stream) const;
	// Makes f's payload bytes: a frame in a store is read out of it with
	// every other frame the store holds, and the store goes (a frame sent
	// again is copied anyway, and its neighbours, carried by the same lost
	// stream or not, are next). False if the store could not be read
	// whole (a bug: it is dropped, and the caller ends the session).
	bool materialize(Frame &f);

	std::size_t bytes() const { return bytes_; }
	std::size_t frames() const { return frames_.size(); }
	bool empty() const { return frames_.empty(); }
	// Stores held (each a pipe).
	std::size_t stores() const { return stores_.size(); }

private:
	enum class StoreState {
		filling, // takes the next frame's duplicate at its end
		sealed,  // a tee came short: bytes past its frames belong to none
		broken,  // an ACK's bytes could not be dropped: cannot be read
	};
	struct Store {
		std::uint32_t id;
		Pipe pipe; // its frames' payloads in seq order, from the first unacked
		std::size_t frames = 0;
		StoreState state = StoreState::filling;
	};

	void push(Frame f);
	bool append(Store &s, const Pipe &pipe);
	Store *store(std::uint32_t id);
	void drop_store(std::uint32_t id);

	std::deque<Frame> frames_; // increasing seq
	std::deque<Store> stores_; // increasing id
	std::uint32_t next_store_ = 1;
	std::size_t bytes_ = 0;
	std::uint64_t acked_ = 0;
};

} // namespace agent
