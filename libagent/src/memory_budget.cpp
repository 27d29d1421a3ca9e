// SPDX-License-Identifier: MIT
#include "agent/memory_budget.hpp"

#include <vector>

namespace agent {

void MemoryBudget::give(std::size_t n)
{
	used_ -= n < used_ ? n : used_;
	if (!waiters_.empty() && !notify_pending_ && used_ <= cap_ / 4 * 3) {
		notify_pending_ = true;
		io_uring_prep_nop(ring_.sqe(this));
	}
}

void MemoryBudget::on_complete(int, unsigned)
{
	notify_pending_ = false;
	std::vector<MemoryWaiter *> told(waiters_.begin(), waiters_.end());
	waiters_.clear();
	// A waiter may free itself, or another, while told: each is looked up
	// in a set that forget() keeps current.
	std::unordered_set<MemoryWaiter *> left(told.begin(), told.end());
	current_ = &left;
	for (MemoryWaiter *w : told)
		if (left.count(w))
			w->memory_available();
	current_ = nullptr;
}

} // namespace agent
