// SPDX-License-Identifier: MIT
#include "acceptor.hpp"

#include "agent/log.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace agent {

Acceptor::Acceptor(Ring &ring, int listen_fd, std::function<void(int)> on_accept)
	: ring_(ring), fd_(listen_fd), on_accept_(std::move(on_accept))
{
	arm();
}

Acceptor::~Acceptor()
{
	// The ring is torn down with the agent; the listening socket is ours.
	::close(fd_);
}

void Acceptor::arm()
{
	io_uring_sqe *sqe = ring_.sqe(this);
	io_uring_prep_multishot_accept(sqe, fd_, nullptr, nullptr, SOCK_CLOEXEC);
	armed_ = true;
}

void Acceptor::on_complete(int res, unsigned flags)
{
	if (!(flags & IORING_CQE_F_MORE))
		armed_ = false;
	if (res >= 0) {
		failing_ = false;
		on_accept_(res);
	} else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED) {
		if (!failing_)
			log(LogLevel::warn, "accept failed: {}", strerror(-res));
		failing_ = true;
		return; // tick() re-arms
	}
	if (!armed_)
		arm();
}

void Acceptor::tick()
{
	if (!armed_)
		arm();
}

} // namespace agent
