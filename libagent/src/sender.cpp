// SPDX-License-Identifier: MIT
#include "sender.hpp"

#include <algorithm>

namespace agent {

bool Sender::finish()
{
	if (state_ != State::sending)
		return false;
	state_ = State::finished;
	settle();
	return true;
}

Sender::Ack Sender::take_ack(std::uint64_t seq)
{
	if (seq > next_seq_)
		return Ack::beyond;
	if (retention_.ack(seq) == 0)
		return Ack::stale;
	settle();
	return Ack::released;
}

// Finished with nothing left unacknowledged: done. (Nothing is kept once
// finished: the retention only shrinks.)
void Sender::settle()
{
	if (state_ == State::finished && retention_.empty())
		state_ = State::acked;
}

// One seq, at its place (a frame made with no stream open is the newest:
// at the end), without sorting the whole queue again.
void Sender::resend_later(std::uint64_t seq)
{
	auto at = std::lower_bound(resends_.begin(), resends_.end(), seq);
	if (at == resends_.end() || *at != seq)
		resends_.insert(at, seq);
}

void Sender::resend_later(const std::vector<std::uint64_t> &seqs)
{
	resends_.insert(resends_.end(), seqs.begin(), seqs.end());
	std::sort(resends_.begin(), resends_.end());
	resends_.erase(std::unique(resends_.begin(), resends_.end()), resends_.end());
}

std::optional<std::uint64_t> Sender::next_resend() const
{
	if (resends_.empty())
		return std::nullopt;
	return resends_.front();
}

} // namespace agent
