// SPDX-License-Identifier: MIT
#include "acceptor.hpp"

#include "agent/log.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>

namespace agent {
namespace {

// How long accepting pauses after running out of descriptors or memory.
constexpr std::chrono::milliseconds kRetryAfter{100};

} // namespace

Acceptor::Acceptor(Agent &agent, int listen_fd, std::function<void(int)> on_accept)
	: agent_(agent), fd_(listen_fd), on_accept_(std::move(on_accept))
{
	arm();
}

Acceptor::~Acceptor()
{
	assert(!busy() || agent_.tearing_down());
	::close(fd_);
}

void Acceptor::arm()
{
	io_uring_sqe *sqe = agent_.ring().sqe(this);
	io_uring_prep_multishot_accept(sqe, fd_, nullptr, nullptr, SOCK_CLOEXEC);
	armed_ = true;
}

void Acceptor::stop()
{
	if (stopped_)
		return;
	stopped_ = true;
	retry_.cancel();
	if (armed_) {
		cancelling_ = true;
		io_uring_prep_cancel(agent_.ring().sqe(&cancel_op_), this, 0);
	}
}

void Acceptor::on_complete(int res, unsigned flags)
{
	if (!(flags & IORING_CQE_F_MORE))
		armed_ = false;
	if (stopped_) {
		if (res >= 0)
			::close(res);
		return;
	}
	if (res >= 0) {
		on_accept_(res);
	} else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
		// Out of descriptors or memory: the backlog waits in the kernel
		// while sessions end, rather than us spinning on it.
		if (std::uint64_t n; paused_log_.due(agent_.now(), &n))
			log(LogLevel::warn, "accept paused for {} ms: {} ({}x in the last second)",
			    kRetryAfter.count(), strerror(-res), n);
		if (armed_) {
			// Still armed: the kernel would post the next failure at
			// once. Stop it; the retry arms it again.
			cancelling_ = true;
			io_uring_prep_cancel(agent_.ring().sqe(&cancel_op_), this, 0);
		}
		if (!retry_.armed())
			retry_.arm(agent_.timers(), kRetryAfter);
		return;
	} else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED && res != -ECANCELED) {
		log(LogLevel::warn, "accept failed: {}", strerror(-res));
		if (!retry_.armed())
			retry_.arm(agent_.timers(), kRetryAfter);
		return;
	}
	if (!armed_ && !retry_.armed() && res != -ECANCELED)
		arm();
}

void Acceptor::on_retry()
{
	if (!stopped_ && !armed_ && !cancelling_)
		arm();
	else if (!stopped_ && !armed_)
		retry_.arm(agent_.timers(), kRetryAfter);
}

} // namespace agent
