// SPDX-License-Identifier: MIT
// Coarse timers for timeouts (connect, handshake, idle, linger): a hashed
// wheel of 100 ms slots driven by the agent's tick. Arming and cancelling
// are O(1); a tick looks only at the entries of its own slot, never at every
// session. A Timer unlinks itself when destroyed, so it cannot outlive its
// owner: whoever owns the object that a timer's callback touches owns the
// timer too.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace agent {

class TimerWheel;

class Timer {
public:
	using Callback = std::function<void()>;
	explicit Timer(Callback fn) : fn_(std::move(fn)) {}
	~Timer() { cancel(); }
	Timer(const Timer &) = delete;
	Timer &operator=(const Timer &) = delete;

	// (Re)arms: the callback runs on the agent thread once `after` has
	// passed (rounded up to the wheel's resolution).
	void arm(TimerWheel &wheel, std::chrono::milliseconds after);
	void cancel();
	bool armed() const { return wheel_ != nullptr; }

private:
	friend class TimerWheel;
	Callback fn_;
	TimerWheel *wheel_ = nullptr;
	Timer *prev_ = nullptr, *next_ = nullptr;
	std::uint64_t due_ = 0; // in ticks
	bool firing_ = false;   // on the wheel's list of due timers
};

class TimerWheel {
public:
	using Clock = std::chrono::steady_clock;
	static constexpr std::chrono::milliseconds kResolution{100};

	explicit TimerWheel(Clock::time_point start = Clock::now());
	~TimerWheel();
	TimerWheel(const TimerWheel &) = delete;
	TimerWheel &operator=(const TimerWheel &) = delete;

	// Runs every timer due by now (each callback once; a callback may arm
	// or cancel any timer, itself included).
	void advance(Clock::time_point now);
	std::size_t armed() const { return count_; }

private:
	friend class Timer;
	static constexpr std::size_t kSlots = 512;
	void link(Timer &t, std::chrono::milliseconds after);
	void unlink(Timer &t);
	static void push(Timer *&head, Timer &t);
	std::uint64_t tick_of(Clock::time_point t) const;

	Clock::time_point start_;
	std::uint64_t now_tick_ = 0;
	std::size_t count_ = 0;
	Timer *slots_[kSlots] = {};
	Timer *firing_ = nullptr; // due this tick, not yet run
};

} // namespace agent
