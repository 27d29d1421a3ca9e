// SPDX-License-Identifier: MIT
#include "conn.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <vector>

namespace agent {
namespace {

// Freed blocks are kept for reuse up to a cap, so a busy thread does not
// churn malloc and an idle one does not hoard memory.
constexpr std::size_t kPoolCap = 256;

// The blocks go with the thread.
struct BlockPool {
	std::vector<std::byte *> free;
	~BlockPool()
	{
		for (std::byte *b : free)
			delete[] b;
	}
};
thread_local BlockPool g_pool;

std::byte *block_alloc(std::size_t size)
{
	if (!g_pool.free.empty()) {
		std::byte *b = g_pool.free.back();
		g_pool.free.pop_back();
		return b;
	}
	return new std::byte[size];
}

void block_free(std::byte *b)
{
	if (g_pool.free.size() < kPoolCap)
		g_pool.free.push_back(b);
	else
		delete[] b;
}

} // namespace

Conn::Conn(Agent &agent, ConnOwner &owner, int fd, bool connected)
	: agent_(agent), ring_(agent.ring()), owner_(owner), fd_(fd),
	  state_(connected ? State::open : State::idle), connected_(connected)
{
}

Conn::~Conn()
{
	// Operations in flight point into this object: the owner waits
	// (unless the agent is torn down: its ring runs no more).
	assert(!busy() || agent_.tearing_down());
	// An owner that never closed (it failed before it could): the fd
	// must not outlive the object.
	if (state_ != State::closed && fd_ >= 0)
		::close(fd_);
	drop_blocks();
}

void Conn::connect(const Address &to, std::chrono::milliseconds timeout)
{
	assert(state_ == State::idle);
	peer_ = to;
	state_ = State::connecting;
	io_uring_sqe *sqe = ring_.sqe(&connect_op_);
	io_uring_prep_connect(sqe, fd_, peer_.sa(), peer_.len);
	inflight_++;
	if (timeout.count() > 0)
		timer_.arm(agent_.timers(), timeout);
}

void Conn::on_connect_timeout()
{
	if (state_ == State::connecting) {
		// The owner closes us, which cancels the connect.
		owner_.conn_failed(*this, -ETIMEDOUT);
	} else if (state_ == State::draining) {
		close(true); // the linger ran out: the peer does not read
		owner_.conn_op_done(*this);
	} else if (state_ == State::acking) {
		// Reset once all is acknowledged, or when a tick went by without
		// the peer taking anything (it does not read), or at the deadline.
		std::size_t left = queued() + unsent_bytes(fd_) + (sending_ ? 1 : 0);
		bool stuck = left >= acking_left_;
		acking_left_ = left;
		if (left == 0 || stuck || agent_.now() >= reset_by_) {
			close(true);
			owner_.conn_op_done(*this);
		} else {
			timer_.arm(agent_.timers(), TimerWheel::kResolution);
		}
	}
}

void Conn::reset_when_acked(std::chrono::milliseconds deadline)
{
	if (state_ == State::closed || state_ == State::draining || state_ == State::acking)
		return;
	if (state_ != State::open) {
		close(true);
		return;
	}
	state_ = State::acking;
	reset_by_ = agent_.now() + deadline;
	acking_left_ = SIZE_MAX;
	timer_.arm(agent_.timers(), TimerWheel::kResolution);
}

void Conn::on_connect(int res, unsigned)
{
	inflight_--;
	if (state_ == State::closed) {
		owner_.conn_op_done(*this);
		return;
	}
	timer_.cancel();
	if (res < 0) {
		state_ = State::idle;
		owner_.conn_failed(*this, res);
	} else {
		state_ = State::open;
		connected_ = true;
		kick();
		owner_.conn_connected(*this);
	}
	owner_.conn_op_done(*this);
}

// A send failed: a conn that was only flushing before its close is reset
// now (nobody waits for it any more); an open one tells its owner.
void Conn::send_failed(int err)
{
	if (state_ == State::draining || state_ == State::acking)
		close(true);
	else
		owner_.conn_failed(*this, err);
}

void Conn::append(std::span<const std::byte> s)
{
	while (!s.empty()) {
		if (queue_empty() || blocks_.back().end == kBlockSize)
			blocks_.push_back(Block{block_alloc(kBlockSize)});
		Block &b = blocks_.back();
		std::size_t n = std::min(s.size(), kBlockSize - b.end);
		std::memcpy(b.data + b.end, s.data(), n);
		b.end += n;
		queued_ += n;
		agent_.memory().take(n);
		s = s.subspan(n);
	}
}

void Conn::send(std::span<const std::byte> a, std::span<const std::byte> b)
{
	if (state_ == State::closed || state_ == State::draining || state_ == State::acking ||
	    shut_requested_)
		return;
	append(a);
	append(b);
	kick();
}

void Conn::flush()
{
	if (sending_)
		ring_.submit();
}

bool Conn::can_send_direct() const
{
	return state_ == State::open && !shut_requested_ && !sending_ && queue_empty() &&
	       !direct_pending() && direct_error_ == 0;
}

void Conn::send_direct(std::span<const std::byte> head, Pipe pipe)
{
	assert(can_send_direct() && head.size() <= kMaxHead);
	if (!head.empty()) // an empty span may have no data pointer at all
		std::memcpy(head_, head.data(), head.size());
	head_len_ = head.size();
	head_off_ = 0;
	pipe_ = std::move(pipe);
	if (push_direct())
		Pipe::release(std::move(pipe_));
}

bool Conn::push_direct()
{
	while (head_off_ < head_len_) {
		// MSG_MORE: the head and the payload leave in one segment.
		int more = pipe_.bytes() ? MSG_MORE : 0;
		ssize_t n = ::send(fd_, head_ + head_off_, head_len_ - head_off_,
				   MSG_DONTWAIT | MSG_NOSIGNAL | more);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			fail_later(-errno);
			return false;
		}
		head_off_ += n;
		bytes_sent_ += n;
	}
	if (head_off_ == head_len_) {
		head_len_ = head_off_ = 0;
		if (pipe_.bytes()) {
			ssize_t n = pipe_.drain_to(fd_);
			if (n > 0)
				bytes_sent_ += n;
			else if (n < 0 && n != -EAGAIN) {
				fail_later(static_cast<int>(n));
				return false;
			}
		}
	}
	if (!direct_pending())
		return true;
	if (!wait_writable_) {
		wait_writable_ = true;
		io_uring_prep_poll_add(ring_.sqe(&writable_op_), fd_, POLLOUT);
		inflight_++;
	}
	return false;
}

// A failed direct send is reported from a completion, as every other
// failure is: the caller of send_direct() may not be re-entered.
void Conn::fail_later(int err)
{
	head_len_ = head_off_ = 0;
	pipe_ = Pipe();
	direct_error_ = err;
	io_uring_prep_nop(ring_.sqe(&failed_op_));
	inflight_++;
}

void Conn::on_failed(int, unsigned)
{
	inflight_--;
	if (state_ != State::closed)
		send_failed(direct_error_);
	owner_.conn_op_done(*this);
}

void Conn::on_writable(int, unsigned)
{
	inflight_--;
	wait_writable_ = false;
	if (state_ == State::closed) {
		owner_.conn_op_done(*this);
		return;
	}
	if (direct_pending() && push_direct()) {
		Pipe::release(std::move(pipe_));
		kick();
		owner_.conn_sent(*this);
	}
	owner_.conn_op_done(*this);
}

void Conn::kick()
{
	if (sending_ ||
	    (state_ != State::open && state_ != State::draining && state_ != State::acking) ||
	    direct_pending() || direct_error_)
		return;
	if (queue_empty()) {
		if (state_ == State::draining) {
			close(false);
			return;
		}
		if (shut_requested_ && !shut_issued_) {
			// Directly, not IORING_OP_SHUTDOWN: io_uring always runs
			// that one in a worker that looks the fd number up late,
			// after our ring close may have handed the number to the
			// next accepted socket. shutdown(2) of TCP never blocks.
			shut_issued_ = true;
			::shutdown(fd_, SHUT_WR);
		}
		return;
	}
	iov_.clear();
	for (std::size_t i = head_block_; i < blocks_.size() && iov_.size() < kMaxIov; i++) {
		const Block &b = blocks_[i];
		iov_.push_back({b.data + b.begin, b.end - b.begin});
	}
	msg_ = {};
	msg_.msg_iov = iov_.data();
	msg_.msg_iovlen = iov_.size();
	io_uring_sqe *sqe = ring_.sqe(&send_op_);
	io_uring_prep_sendmsg(sqe, fd_, &msg_, MSG_NOSIGNAL);
	sending_ = true;
	inflight_++;
}

void Conn::on_send(int res, unsigned)
{
	inflight_--;
	sending_ = false;
	if (state_ == State::closed) {
		drop_blocks();
		owner_.conn_op_done(*this);
		return;
	}
	if (res < 0) {
		if (res == -EAGAIN || res == -EINTR)
			kick();
		else
			send_failed(res);
		owner_.conn_op_done(*this);
		return;
	}
	std::size_t left = res;
	bytes_sent_ += left;
	queued_ -= left;
	agent_.memory().give(left);
	while (left > 0) {
		Block &b = blocks_[head_block_];
		std::size_t n = std::min(left, b.end - b.begin);
		b.begin += n;
		left -= n;
		if (b.begin == b.end) {
			block_free(b.data);
			head_block_++;
		}
	}
	if (queue_empty()) {
		release_queue(); // no send in flight reads iov_ now
	} else if (head_block_ >= kCompactAt) {
		// A queue that never empties (a peer reading slower than we
		// queue) must not keep the sent blocks' entries for ever.
		blocks_.erase(blocks_.begin(), blocks_.begin() + head_block_);
		head_block_ = 0;
	}
	kick();
	owner_.conn_sent(*this);
	owner_.conn_op_done(*this);
}

void Conn::shutdown_write()
{
	if (shut_requested_ || state_ == State::closed)
		return;
	shut_requested_ = true;
	kick();
}

void Conn::close(bool reset)
{
	if (state_ == State::closed)
		return;
	state_ = State::closed;
	timer_.cancel();
	if (reset) {
		linger l{1, 0};
		setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	// A sendmsg in flight still points into the blocks: free them after it.
	if (!sending_)
		drop_blocks();
	head_len_ = head_off_ = 0;
	pipe_ = Pipe();
	io_uring_sqe *sqe;
	if (inflight_ > 0) {
		// Each operation in flight (a sendmsg or POLLOUT waiting on a
		// peer that never reads, a connect) holds a reference to the
		// socket: without the cancel the close would not release it,
		// the reset would never go out, and we would wait forever.
		// Hard-linked: the close runs whatever the cancel found.
		sqe = ring_.sqe(nullptr);
		io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
		sqe->flags |= IOSQE_IO_HARDLINK;
	}
	sqe = ring_.sqe(&close_op_);
	io_uring_prep_close(sqe, fd_);
	inflight_++;
}

void Conn::close_when_sent(std::chrono::milliseconds linger)
{
	if (state_ == State::closed || state_ == State::draining || state_ == State::acking)
		return;
	bool was_open = state_ == State::open;
	state_ = State::draining;
	if (!sending_ && ((queue_empty() && !direct_pending()) || !was_open)) {
		close(false);
		return;
	}
	timer_.arm(agent_.timers(), linger);
}

void Conn::release_queue()
{
	// Swapped with empty ones: `blocks_ = {}` would assign an empty
	// initializer list and keep the capacity.
	std::vector<Block>().swap(blocks_);
	head_block_ = 0;
	std::vector<iovec>().swap(iov_);
}

// Called only with no sendmsg in flight (it would read iov_ and the blocks).
void Conn::drop_blocks()
{
	for (std::size_t i = head_block_; i < blocks_.size(); i++)
		block_free(blocks_[i].data);
	release_queue();
	agent_.memory().give(queued_);
	queued_ = 0;
}

void Conn::on_close(int, unsigned)
{
	inflight_--;
	owner_.conn_op_done(*this);
}

} // namespace agent
