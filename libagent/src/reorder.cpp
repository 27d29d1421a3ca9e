// SPDX-License-Identifier: MIT
#include "agent/reorder.hpp"

namespace agent {

ReorderBuffer::Verdict ReorderBuffer::offer(std::uint64_t seq, std::span<const std::byte> bytes)
{
	if (seq < next_)
		return Verdict::duplicate;
	if (seq - next_ >= window_)
		return Verdict::out_of_window;
	if (seq == next_)
		return frames_.count(seq) ? Verdict::duplicate : Verdict::in_order;
	if (frames_.count(seq))
		return Verdict::duplicate;
	if (held_ + bytes.size() > budget_)
		return Verdict::no_room;
	frames_.emplace(seq, std::vector<std::byte>(bytes.begin(), bytes.end()));
	held_ += bytes.size();
	return Verdict::stored;
}

bool ReorderBuffer::pop(std::vector<std::byte> &out)
{
	auto it = frames_.begin();
	if (it == frames_.end() || it->first != next_)
		return false;
	out = std::move(it->second);
	held_ -= out.size();
	frames_.erase(it);
	next_++;
	return true;
}

} // namespace agent
