// SPDX-License-Identifier: MIT
// One io_uring per agent thread. Every operation the agent does (accept,
// connect, recv, send, close, timeouts, reads of event fds) goes through it;
// each SQE's user_data points at the Completion that handles its CQE.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace agent {

// The handler of one in-flight operation (or of a multishot one's stream of
// completions). The object must outlive the operation: owners count their
// in-flight operations and free themselves only when that count is zero.
class Completion {
public:
	virtual ~Completion() = default;
	virtual void on_complete(int res, unsigned flags) = 0;
};

class Ring {
public:
	explicit Ring(unsigned entries = 1024);
	~Ring();
	Ring(const Ring &) = delete;
	Ring &operator=(const Ring &) = delete;

	// A fresh SQE whose user_data is c; submits first if the SQ is full.
	// When the kernel refuses new work until completions are reaped
	// (EBUSY: the CQ overflowed), the ready completions are set aside and
	// dispatched by the next run_once(), never from inside sqe(): callers
	// are in the middle of their own handlers. Throws if the ring cannot
	// take an SQE at all (a broken ring), rather than spin.
	io_uring_sqe *sqe(Completion *c);
	// Submits pending SQEs, waits for at least one CQE (or until
	// timeout_ms passes, if >= 0) and dispatches every ready CQE.
	void run_once(int timeout_ms = -1);
	// Submits pending SQEs without waiting.
	void submit();

	io_uring *raw() { return &ring_; }
	std::uint64_t completions() const { return completions_; }

private:
	struct SetAside {
		Completion *c;
		int res;
		unsigned flags;
	};
	void set_aside_ready();
	void dispatch(Completion *c, int res, unsigned flags);

	io_uring ring_{};
	std::uint64_t completions_ = 0;
	std::vector<SetAside> set_aside_;
};

// Adapts a lambda-like callable into a Completion (for long-lived owners
// that want several handlers without a class per operation).
template <typename F>
class CompletionFn final : public Completion {
public:
	explicit CompletionFn(F f) : f_(std::move(f)) {}
	void on_complete(int res, unsigned flags) override { f_(res, flags); }

private:
	F f_;
};

} // namespace agent
