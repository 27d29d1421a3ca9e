// SPDX-License-Identifier: MIT
#include "agent/timer.hpp"

#include <cassert>
#include <algorithm>

namespace agent {

void Timer::arm(TimerWheel &wheel, std::chrono::milliseconds after)
{
	cancel();
	wheel.link(*this, after);
}

void Timer::cancel()
{
	if (wheel_)
		wheel_->unlink(*this);
}

TimerWheel::TimerWheel(Clock::time_point start) : start_(start) {}

TimerWheel::~TimerWheel()
{
	// Timers still armed belong to objects that outlive the wheel only
	// while the agent is torn down: detach them, never call them.
	for (Timer *&head : slots_)
		while (head)
			unlink(*head);
}

std::uint64_t TimerWheel::tick_of(Clock::time_point t) const
{
	if (t <= start_)
		return 0;
	return std::chrono::duration_cast<std::chrono::milliseconds>(t - start_) / kResolution;
}

void TimerWheel::link(Timer &t, std::chrono::milliseconds after)
{
	assert(!t.wheel_);
	if (after.count() < 0)
		after = std::chrono::milliseconds(0);
	// Rounded up, and at least one tick ahead: a timer never fires early.
	std::uint64_t ticks = (after + kResolution - std::chrono::milliseconds(1)) / kResolution;
	t.due_ = now_tick_ + std::max<std::uint64_t>(ticks, 1);
	push(slots_[t.due_ % kSlots], t);
	t.wheel_ = this;
	count_++;
}

void TimerWheel::push(Timer *&head, Timer &t)
{
	t.prev_ = nullptr;
	t.next_ = head;
	if (head)
		head->prev_ = &t;
	head = &t;
}

void TimerWheel::unlink(Timer &t)
{
	assert(t.wheel_ == this);
	if (t.prev_)
		t.prev_->next_ = t.next_;
	else if (t.firing_)
		firing_ = t.next_;
	else
		slots_[t.due_ % kSlots] = t.next_;
	if (t.next_)
		t.next_->prev_ = t.prev_;
	t.prev_ = t.next_ = nullptr;
	t.wheel_ = nullptr;
	t.firing_ = false;
	count_--;
}

void TimerWheel::advance(Clock::time_point now)
{
	std::uint64_t target = tick_of(now);
	// A long stall (a suspended VM) is caught up a revolution at most.
	if (target > now_tick_ + kSlots)
		now_tick_ = target - kSlots;
	while (now_tick_ < target) {
		now_tick_++;
		// The due ones move to a list of their own, and run one at a
		// time from there: a callback that destroys or re-arms another
		// due timer takes it off that list, and it does not run.
		Timer *&head = slots_[now_tick_ % kSlots];
		for (Timer *t = head, *next; t; t = next) {
			next = t->next_;
			if (t->due_ > now_tick_)
				continue;
			if (t->prev_)
				t->prev_->next_ = t->next_;
			else
				head = t->next_;
			if (t->next_)
				t->next_->prev_ = t->prev_;
			push(firing_, *t);
			t->firing_ = true;
		}
		while (Timer *t = firing_) {
			unlink(*t);
			t->fn_();
		}
	}
}

} // namespace agent
