// SPDX-License-Identifier: MIT
// A multishot accept on a listening socket. When accept fails for lack of
// resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) it stops and tries again a
// little later instead of spinning, logging at most one line a second.
// stop() cancels the accept; the object may be destroyed once !busy().
#pragma once

#include "agent/agent.hpp"
#include "agent/log.hpp"
#include "agent/timer.hpp"

#include <functional>

namespace agent {

class Acceptor final : public Completion {
public:
	Acceptor(Agent &agent, int listen_fd, std::function<void(int fd)> on_accept);
	~Acceptor() override;
	void on_complete(int res, unsigned flags) override;
	// Accepts no more; connections that the kernel hands over after this
	// are closed.
	void stop();
	// The accept (or its cancel) is still in flight.
	bool busy() const { return armed_ || cancelling_; }
	int fd() const { return fd_; }

private:
	void arm();
	void on_retry();

	Agent &agent_;
	int fd_;
	std::function<void(int)> on_accept_;
	bool armed_ = false;
	bool stopped_ = false;
	bool cancelling_ = false;
	LogEverySecond paused_log_;
	Timer retry_{[this] { on_retry(); }};
	CompletionFn<std::function<void(int, unsigned)>> cancel_op_{
		[this](int, unsigned) { cancelling_ = false; }};
};

} // namespace agent
