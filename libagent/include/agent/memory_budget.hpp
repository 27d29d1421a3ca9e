// SPDX-License-Identifier: MIT
// The bytes an agent thread holds for its sessions in user space (send
// queues, reorder buffers), against one cap for all of them. Past the cap no
// session reads its plain end or takes a frame out of order (backpressure,
// as at their own budgets; the frame that is due always goes through, so a
// session never waits on another); once usage falls to three quarters of
// the cap, the ones that waited are told, from a ring completion of the
// budget's own, never from inside the call that freed the bytes.
#pragma once

#include "agent/ring.hpp"

#include <cstddef>
#include <unordered_set>

namespace agent {

class MemoryWaiter {
public:
	// There is room again: re-check what paused.
	virtual void memory_available() = 0;

protected:
	~MemoryWaiter() = default;
};

class MemoryBudget final : public Completion {
public:
	MemoryBudget(Ring &ring, std::size_t cap) : ring_(ring), cap_(cap) {}
	MemoryBudget(const MemoryBudget &) = delete;
	MemoryBudget &operator=(const MemoryBudget &) = delete;

	void take(std::size_t n)
	{
		used_ += n;
		if (used_ > peak_)
			peak_ = used_;
	}
	void give(std::size_t n);
	bool over() const { return used_ >= cap_; }
	std::size_t used() const { return used_; }
	std::size_t peak() const { return peak_; }
	std::size_t cap() const { return cap_; }

	// w is told once when there is room; forget() before w goes away.
	void wait(MemoryWaiter &w) { waiters_.insert(&w); }
	void forget(MemoryWaiter &w)
	{
		waiters_.erase(&w);
		if (current_)
			current_->erase(&w);
	}

	void on_complete(int res, unsigned flags) override;

private:
	Ring &ring_;
	std::size_t cap_;
	std::size_t used_ = 0, peak_ = 0;
	bool notify_pending_ = false;
	std::unordered_set<MemoryWaiter *> waiters_;
	std::unordered_set<MemoryWaiter *> *current_ = nullptr; // being told
};

} // namespace agent
