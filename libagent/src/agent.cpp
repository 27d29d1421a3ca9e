// SPDX-License-Identifier: MIT
#include "agent/agent.hpp"

#include "agent/log.hpp"
#include "pipe.hpp"

#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

namespace agent {

Agent::Agent(const AgentOptions &opts)
	: ring_(opts.ring_entries), memory_(ring_, opts.memory_cap)
{
	buffers_ = std::make_unique<BufferRing>(ring_, 0, opts.buffer_count, opts.buffer_size);
}

Agent::~Agent()
{
	// What is left refers to the ring and the source: it goes first.
	tearing_down_ = true;
	disposed_.clear();
	retired_.clear();
	events_.reset();
	if (signal_fd_ >= 0)
		close(signal_fd_);
}

std::unique_ptr<Agent> Agent::create(const AgentOptions &opts, std::string *err)
{
	std::unique_ptr<Agent> a;
	try {
		a.reset(new Agent(opts));
	} catch (const std::exception &e) {
		*err = e.what();
		return nullptr;
	}
	a->events_ = opts.make_source ? opts.make_source(a->ring_, *a->buffers_, err)
				      : make_event_source(opts.events, a->ring_, *a->buffers_, err);
	if (!a->events_)
		return nullptr;
	Pipe::prepare();
	return a;
}

void Agent::arm_signal()
{
	io_uring_sqe *sqe = ring_.sqe(signal_op_.get());
	io_uring_prep_read(sqe, signal_fd_, siginfo_, sizeof(signalfd_siginfo), 0);
}

void Agent::arm_tick()
{
	tick_ts_.tv_sec = 0;
	tick_ts_.tv_nsec = 100 * 1000 * 1000;
	io_uring_sqe *sqe = ring_.sqe(timer_op_.get());
	io_uring_prep_timeout(sqe, &tick_ts_, 0, 0);
}

void Agent::on_signal(int res, unsigned)
{
	if (res == static_cast<int>(sizeof(signalfd_siginfo))) {
		signalfd_siginfo si;
		std::memcpy(&si, siginfo_, sizeof(si));
		if (si.ssi_signo == SIGUSR1) {
			if (report_)
				report_();
		} else {
			log(LogLevel::info, "signal {}: stopping", strsignal(si.ssi_signo));
			running_ = false;
		}
	}
	if (running_)
		arm_signal();
}

void Agent::tick()
{
	now_ = Clock::now();
	timers_.advance(now_);
	for (auto &t : tickers_)
		t(now_);
	std::erase_if(retired_, [](const std::unique_ptr<Disposable> &o) { return o->idle(); });
}

void Agent::on_timer(int, unsigned)
{
	tick();
	if (running_)
		arm_tick();
}

void Agent::retire(std::unique_ptr<Disposable> o)
{
	if (!o->idle())
		retired_.push_back(std::move(o));
	else
		dispose(std::move(o));
}

void Agent::reap()
{
	// A destructor may dispose of more.
	while (!disposed_.empty()) {
		std::vector<std::unique_ptr<Disposable>> batch;
		batch.swap(disposed_);
	}
}

void Agent::run()
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, nullptr);
	signal(SIGPIPE, SIG_IGN);
	if (signal_fd_ < 0)
		signal_fd_ = signalfd(-1, &set, SFD_CLOEXEC);
	auto sig = [this](int r, unsigned f) { on_signal(r, f); };
	auto tick = [this](int r, unsigned f) { on_timer(r, f); };
	signal_op_ = std::make_unique<CompletionFn<decltype(sig)>>(sig);
	timer_op_ = std::make_unique<CompletionFn<decltype(tick)>>(tick);
	running_ = true;
	arm_signal();
	arm_tick();
	while (running_) {
		ring_.run_once();
		reap();
	}
}

} // namespace agent
