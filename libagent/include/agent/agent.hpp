// SPDX-License-Identifier: MIT
// An agent thread's context: its io_uring, the provided-buffer pool, the
// event source, a coarse ticker for timeouts, and signal handling. Nothing
// in an agent blocks outside the ring.
#pragma once

#include "agent/buffer_ring.hpp"
#include "agent/event_source.hpp"
#include "agent/memory_budget.hpp"
#include "agent/ring.hpp"
#include "agent/timer.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace agent {

// An object whose end the agent carries out: disposed of after the
// completion being handled returns (never inside a callee's own frame), or
// kept, once its owner is gone, until nothing in flight refers to it.
class Disposable {
public:
	virtual ~Disposable() = default;
	// False while operations in flight still point into the object.
	virtual bool idle() const { return true; }
};

struct AgentOptions {
	EventKind events = EventKind::automatic;
	unsigned ring_entries = 1024;
	unsigned buffer_count = 512;         // provided buffers (power of two)
	std::size_t buffer_size = 64 * 1024; // bytes each
	// Bytes held in user space for all sessions of the thread (send
	// queues, reorder buffers); past it sessions stop reading.
	std::size_t memory_cap = std::size_t(1) << 30;
	// Makes the event source in place of `events`' (a source of one's own,
	// or the unit tests' scripted one); null: make_event_source(events).
	std::function<std::unique_ptr<EventSource>(Ring &, BufferRing &, std::string *err)>
		make_source;
};

class Agent {
public:
	using Clock = std::chrono::steady_clock;

	// Null with *err set if the ring or the requested event source cannot
	// be set up.
	static std::unique_ptr<Agent> create(const AgentOptions &opts, std::string *err);
	~Agent();

	Ring &ring() { return ring_; }
	BufferRing &buffers() { return *buffers_; }
	EventSource &events() { return *events_; }
	MemoryBudget &memory() { return memory_; }

	// Runs the loop until stop(); SIGINT and SIGTERM call stop(), SIGUSR1
	// calls the report callback.
	void run();
	void stop() { running_ = false; }
	void on_report(std::function<void()> fn) { report_ = std::move(fn); }
	// fn runs on the agent thread about every tick (100 ms), for as long as
	// the agent lives: for objects that may go away first, use a Timer.
	void on_tick(std::function<void(Clock::time_point)> fn) { tickers_.push_back(std::move(fn)); }

	// The timeouts of this thread (see timer.hpp).
	TimerWheel &timers() { return timers_; }
	// The time of the last tick: cheap enough for every frame.
	Clock::time_point now() const { return now_; }
	// A tick: takes the time, runs the timers and tickers due. run() calls
	// it every 100 ms; a caller that drives the ring itself (the unit tests)
	// calls it instead.
	void tick();

	// True once the agent is being destroyed: its ring dispatches nothing
	// more, so what is still in flight will never complete.
	bool tearing_down() const { return tearing_down_; }

	// Frees o after the completion being dispatched has returned.
	void dispose(std::unique_ptr<Disposable> o) { disposed_.push_back(std::move(o)); }
	// Keeps o until o->idle(), then frees it (servers destroyed while the
	// agent runs hand their sessions' remains over this way).
	void retire(std::unique_ptr<Disposable> o);

private:
	explicit Agent(const AgentOptions &opts);
	void arm_signal();
	void arm_tick();
	void on_signal(int res, unsigned flags);
	void on_timer(int res, unsigned flags);
	void reap();

	Ring ring_;
	MemoryBudget memory_;
	std::unique_ptr<BufferRing> buffers_;
	std::unique_ptr<EventSource> events_;
	bool running_ = false;
	bool tearing_down_ = false;
	int signal_fd_ = -1;
	unsigned char siginfo_[128]{};
	__kernel_timespec tick_ts_{};
	std::function<void()> report_;
	std::vector<std::function<void(Clock::time_point)>> tickers_;
	Clock::time_point now_ = Clock::now();
	TimerWheel timers_{now_};
	std::vector<std::unique_ptr<Disposable>> disposed_, retired_;
	std::unique_ptr<Completion> signal_op_, timer_op_;
};

} // namespace agent
