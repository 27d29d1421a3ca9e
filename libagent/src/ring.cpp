// SPDX-License-Identifier: MIT
#include "agent/ring.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace agent {

Ring::Ring(unsigned entries)
{
	io_uring_params p{};
	// The CQ must hold bursts of multishot completions without overflow.
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = entries * 8;
	int ret = io_uring_queue_init_params(entries, &ring_, &p);
	if (ret < 0)
		throw std::runtime_error(std::string("io_uring_queue_init: ") + strerror(-ret));
}

Ring::~Ring() { io_uring_queue_exit(&ring_); }

io_uring_sqe *Ring::sqe(Completion *c)
{
	io_uring_sqe *s = io_uring_get_sqe(&ring_);
	for (int tries = 0; !s; tries++) {
		if (tries == 64)
			throw std::runtime_error("io_uring: no submission entry after 64 submits");
		int ret = io_uring_submit(&ring_);
		if (ret == -EBUSY || ret == -EAGAIN)
			set_aside_ready();
		else if (ret < 0 && ret != -EINTR)
			throw std::runtime_error(std::string("io_uring submit: ") + strerror(-ret));
		s = io_uring_get_sqe(&ring_);
	}
	io_uring_sqe_set_data(s, c);
	return s;
}

void Ring::set_aside_ready()
{
	io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
		set_aside_.push_back({static_cast<Completion *>(io_uring_cqe_get_data(cqe)), cqe->res,
				      cqe->flags});
		io_uring_cqe_seen(&ring_, cqe);
	}
}

void Ring::dispatch(Completion *c, int res, unsigned flags)
{
	completions_++;
	if (c)
		c->on_complete(res, flags);
}

void Ring::submit() { io_uring_submit(&ring_); }

void Ring::run_once(int timeout_ms)
{
	io_uring_cqe *cqe = nullptr;
	int ret;
	if (!set_aside_.empty()) {
		// Completions set aside by sqe() come first, in their order.
		std::vector<SetAside> batch;
		batch.swap(set_aside_);
		for (const SetAside &a : batch)
			dispatch(a.c, a.res, a.flags);
		timeout_ms = 0;
	}
	if (timeout_ms == 0) {
		ret = io_uring_submit(&ring_);
	} else if (timeout_ms > 0) {
		__kernel_timespec ts{};
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (timeout_ms % 1000) * 1000000L;
		ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
	} else {
		ret = io_uring_submit_and_wait(&ring_, 1);
	}
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
		throw std::runtime_error(std::string("io_uring wait: ") + strerror(-ret));

	// Dispatch in batches; a handler may queue new SQEs (and free itself).
	io_uring_cqe *batch[256];
	unsigned n;
	while ((n = io_uring_peek_batch_cqe(&ring_, batch, 256)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			auto *c = static_cast<Completion *>(io_uring_cqe_get_data(batch[i]));
			int res = batch[i]->res;
			unsigned flags = batch[i]->flags;
			// Consume before dispatching: the handler may re-enter run_once.
			io_uring_cqe_seen(&ring_, batch[i]);
			dispatch(c, res, flags);
		}
	}
}

} // namespace agent
