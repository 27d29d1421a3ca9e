// SPDX-License-Identifier: MIT
// The receiving half of one direction of a session (docs/wire-format.md):
// the reorder buffer, the end (FIN), what has been acknowledged to the
// sender, and the watch for a next frame that does not come while later
// ones are in hand. The Session does the I/O; this holds the state and its
// rules, and is tested alone (tests/unit/test_receiver.cpp).
#pragma once

#include "agent/reorder.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace agent {

class Receiver {
public:
	using Clock = std::chrono::steady_clock;
	enum class State {
		receiving, // no FIN yet
		fin_known, // FIN came at fin_seq(); the frames before it are due
		delivered, // every frame up to the FIN delivered
	};

	// ack_every: delivered bytes past which an ACK goes at once (else the
	// caller sends one within its delay): a quarter of the peer's retention.
	Receiver(std::size_t reorder_budget, std::uint64_t window, std::size_t ack_every)
		: reorder_(reorder_budget, window), ack_every_(ack_every ? ack_every : 1)
	{
	}

	State state() const { return state_; }
	bool done() const { return state_ == State::delivered; }

	ReorderBuffer &reorder() { return reorder_; }
	const ReorderBuffer &reorder() const { return reorder_; }
	std::uint64_t next() const { return reorder_.next(); }

	std::optional<std::uint64_t> fin_seq() const { return fin_seq_; }
	// DATA seq lies at or past the FIN.
	bool after_fin(std::uint64_t seq) const { return fin_seq_ && seq >= *fin_seq_; }
	// FIN at seq: false if it contradicts one before or what was delivered.
	bool take_fin(std::uint64_t seq);
	// True once: when the FIN is known and every frame before it delivered.
	bool complete();

	// bytes went to the plain end: true if an ACK is due now.
	bool delivered(std::size_t bytes);
	// Something was delivered since the last ACK.
	bool ack_pending() const { return next() > ack_sent_; }
	// An ACK has gone (a replacement stream gets one at once).
	bool ever_acked() const { return ack_sent_ > 0 || done(); }
	// An ACK of next() went out.
	void acked();

	// The watch for the next frame: restarted whenever it moves (next(), or
	// the bytes of it delivered: partial) or the plain end holds it up.
	void watch(Clock::time_point now, std::size_t partial);
	// How long the next frame has not moved, as of now.
	Clock::duration stuck_for(Clock::time_point now, std::size_t partial, bool plain_busy);
	// True (and noted) if the sender was not told it waits within period.
	bool waiting_due(Clock::time_point now, Clock::duration period);

private:
	State state_ = State::receiving;
	ReorderBuffer reorder_;
	std::optional<std::uint64_t> fin_seq_;
	std::size_t ack_every_;
	std::uint64_t ack_sent_ = 0;
	std::size_t unacked_bytes_ = 0;
	std::uint64_t watch_next_ = 0;
	std::size_t watch_partial_ = 0;
	Clock::time_point stuck_since_{}, waiting_sent_{};
};

} // namespace agent
