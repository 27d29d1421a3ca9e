// SPDX-License-Identifier: MIT
#include "receiver.hpp"

namespace agent {

bool Receiver::take_fin(std::uint64_t seq)
{
	if ((fin_seq_ && *fin_seq_ != seq) || seq < next())
		return false;
	fin_seq_ = seq;
	if (state_ == State::receiving)
		state_ = State::fin_known;
	return true;
}

bool Receiver::complete()
{
	if (state_ != State::fin_known || next() != *fin_seq_)
		return false;
	state_ = State::delivered;
	return true;
}

bool Receiver::delivered(std::size_t bytes)
{
	unacked_bytes_ += bytes;
	return unacked_bytes_ >= ack_every_;
}

void Receiver::acked()
{
	ack_sent_ = next();
	unacked_bytes_ = 0;
}

void Receiver::watch(Clock::time_point now, std::size_t partial)
{
	watch_next_ = next();
	watch_partial_ = partial;
	stuck_since_ = now;
}

Receiver::Clock::duration Receiver::stuck_for(Clock::time_point now, std::size_t partial,
					      bool plain_busy)
{
	if (next() != watch_next_ || partial != watch_partial_ || plain_busy)
		watch(now, partial);
	return now - stuck_since_;
}

bool Receiver::waiting_due(Clock::time_point now, Clock::duration period)
{
	if (now - waiting_sent_ < period)
		return false;
	waiting_sent_ = now;
	return true;
}

} // namespace agent
