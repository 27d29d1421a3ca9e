// SPDX-License-Identifier: MIT
#include "conn.hpp"

#include <sys/socket.h>

#include <cstring>
#include <vector>

namespace agent {
namespace {

// Freed blocks are kept for reuse up to a cap, so a busy thread does not
// churn malloc and an idle one does not hoard memory.
constexpr std::size_t kPoolCap = 256;
thread_local std::vector<std::byte *> g_pool;

std::byte *block_alloc(std::size_t size)
{
	if (!g_pool.empty()) {
		std::byte *b = g_pool.back();
		g_pool.pop_back();
		return b;
	}
	return new std::byte[size];
}

void block_free(std::byte *b)
{
	if (g_pool.size() < kPoolCap)
		g_pool.push_back(b);
	else
		delete[] b;
}

} // namespace

Conn::Conn(Ring &ring, ConnOwner &owner, int fd, bool connected)
	: ring_(ring), owner_(owner), fd_(fd), connected_(connected)
{
}

Conn::~Conn() { drop_blocks(); }

void Conn::connect(const Address &to)
{
	peer_ = to;
	io_uring_sqe *sqe = ring_.sqe(&connect_op_);
	io_uring_prep_connect(sqe, fd_, peer_.sa(), peer_.len);
	inflight_++;
}

void Conn::on_connect(int res, unsigned)
{
	inflight_--;
	if (closed_) {
		owner_.conn_op_done(*this);
		return;
	}
	if (res < 0) {
		owner_.conn_failed(*this, res);
	} else {
		connected_ = true;
		kick();
		owner_.conn_connected(*this);
	}
	owner_.conn_op_done(*this);
}

void Conn::append(std::span<const std::byte> s)
{
	while (!s.empty()) {
		if (blocks_.empty() || blocks_.back().end == kBlockSize)
			blocks_.push_back(Block{block_alloc(kBlockSize)});
		Block &b = blocks_.back();
		std::size_t n = std::min(s.size(), kBlockSize - b.end);
		std::memcpy(b.data + b.end, s.data(), n);
		b.end += n;
		queued_ += n;
		s = s.subspan(n);
	}
}

void Conn::send(std::span<const std::byte> a, std::span<const std::byte> b)
{
	if (closed_ || shut_requested_)
		return;
	append(a);
	append(b);
	kick();
}

void Conn::kick()
{
	if (sending_ || !connected_ || closed_)
		return;
	if (blocks_.empty()) {
		if (close_when_sent_) {
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
	int n = 0;
	for (auto &b : blocks_) {
		if (n == kMaxIov)
			break;
		iov_[n].iov_base = b.data + b.begin;
		iov_[n].iov_len = b.end - b.begin;
		n++;
	}
	msg_ = {};
	msg_.msg_iov = iov_;
	msg_.msg_iovlen = n;
	io_uring_sqe *sqe = ring_.sqe(&send_op_);
	io_uring_prep_sendmsg(sqe, fd_, &msg_, MSG_NOSIGNAL);
	sending_ = true;
	inflight_++;
}

void Conn::on_send(int res, unsigned)
{
	inflight_--;
	sending_ = false;
	if (closed_) {
		drop_blocks();
		owner_.conn_op_done(*this);
		return;
	}
	if (res < 0) {
		if (res == -EAGAIN || res == -EINTR) {
			kick();
		} else {
			owner_.conn_failed(*this, res);
		}
		owner_.conn_op_done(*this);
		return;
	}
	std::size_t left = res;
	bytes_sent_ += left;
	queued_ -= left;
	while (left > 0) {
		Block &b = blocks_.front();
		std::size_t n = std::min(left, b.end - b.begin);
		b.begin += n;
		left -= n;
		if (b.begin == b.end) {
			block_free(b.data);
			blocks_.pop_front();
		}
	}
	kick();
	owner_.conn_sent(*this);
	owner_.conn_op_done(*this);
}

void Conn::shutdown_write()
{
	if (shut_requested_ || closed_)
		return;
	shut_requested_ = true;
	kick();
}

void Conn::close(bool reset)
{
	if (closed_)
		return;
	closed_ = true;
	if (reset) {
		linger l{1, 0};
		setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	// A sendmsg in flight still points into the blocks: free them after it.
	if (!sending_)
		drop_blocks();
	io_uring_sqe *sqe = ring_.sqe(&close_op_);
	io_uring_prep_close(sqe, fd_);
	inflight_++;
}

void Conn::close_when_sent()
{
	if (closed_)
		return;
	close_when_sent_ = true;
	if (!sending_ && (blocks_.empty() || !connected_))
		close(false);
}

void Conn::drop_blocks()
{
	for (auto &b : blocks_)
		block_free(b.data);
	blocks_.clear();
	queued_ = 0;
}

void Conn::on_close(int, unsigned)
{
	inflight_--;
	owner_.conn_op_done(*this);
}

} // namespace agent
