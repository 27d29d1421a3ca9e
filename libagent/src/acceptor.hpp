// SPDX-License-Identifier: MIT
// A multishot accept on a listening socket. When accept fails for lack of
// resources (EMFILE, ENOBUFS...), it waits for the next tick instead of
// spinning.
#pragma once

#include "agent/ring.hpp"

#include <functional>

namespace agent {

class Acceptor final : public Completion {
public:
	Acceptor(Ring &ring, int listen_fd, std::function<void(int fd)> on_accept);
	~Acceptor() override;
	void on_complete(int res, unsigned flags) override;
	// Re-arms after a failure; call about every 100 ms.
	void tick();
	int fd() const { return fd_; }

private:
	void arm();
	Ring &ring_;
	int fd_;
	std::function<void(int)> on_accept_;
	bool armed_ = false;
	bool failing_ = false;
};

} // namespace agent
