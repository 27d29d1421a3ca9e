// SPDX-License-Identifier: MIT
// The sending half of one direction of a session (docs/wire-format.md):
// DATA sequence numbers, the end (FIN), what the peer has acknowledged
// (Retention keeps the rest) and what is to go again after a lost stream.
// The Session does the I/O and picks the streams; this holds the state and
// its rules, and is tested alone (tests/unit/test_sender.cpp).
#pragma once

#include "retention.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace agent {

class Sender {
public:
	enum class State {
		sending,  // DATA goes out as the plain end yields bytes
		finished, // the plain end ended: FIN sent at next_seq(); frames may
			  // still go again until the peer acknowledges them
		acked,    // finished, and every frame acknowledged
	};
	enum class Ack {
		beyond,   // acknowledges frames never sent: the peer is broken
		stale,    // no news (a lower one came on a slower stream)
		released, // frames left the retention
	};

	explicit Sender(std::size_t retention_budget) : budget_(retention_budget) {}

	State state() const { return state_; }
	bool ended() const { return state_ != State::sending; }
	bool all_acked() const { return state_ == State::acked; }

	// The seq of the next DATA frame (and of the FIN, once finished).
	std::uint64_t next_seq() const { return next_seq_; }
	std::uint64_t take_seq() { return next_seq_++; }
	// The plain end ended: false if it had already.
	bool finish();

	Retention &retention() { return retention_; }
	const Retention &retention() const { return retention_; }
	// The retention is at its budget: reading the plain end pauses.
	bool full() const { return retention_.bytes() >= budget_; }

	// The peer's cumulative ACK seq.
	Ack take_ack(std::uint64_t seq);

	// Frames to send again (a lost stream carried them, or no stream was
	// open when they were made), oldest first, each once.
	void resend_later(std::uint64_t seq);
	void resend_later(const std::vector<std::uint64_t> &seqs);
	std::optional<std::uint64_t> next_resend() const;
	void resent() { resends_.pop_front(); }
	void drop_resends() { resends_.clear(); }

private:
	void settle();

	State state_ = State::sending;
	std::size_t budget_;
	std::uint64_t next_seq_ = 0;
	Retention retention_;
	std::deque<std::uint64_t> resends_; // increasing, no repeats
};

} // namespace agent
