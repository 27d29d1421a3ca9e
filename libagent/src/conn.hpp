// SPDX-License-Identifier: MIT
// The write half of a TCP connection: a queue of fixed blocks drained by one
// gathered sendmsg at a time through the ring (one in flight keeps the byte
// order), plus connect and close as ring operations. Reads are the
// EventSource's job.
//
// The zero-copy path writes directly instead: a short head and a pipe's
// bytes, sent at once with non-blocking calls; what the socket cannot take
// stays in the pipe until a POLLOUT completion says there is room. Direct
// and queued bytes never interleave: a direct send waits for an empty
// queue, and the queue waits for the direct send.
#pragma once

#include "agent/net.hpp"
#include "agent/ring.hpp"
#include "pipe.hpp"

#include <cstddef>
#include <deque>
#include <span>

namespace agent {

class Conn;

class ConnOwner {
public:
	virtual void conn_connected(Conn &c) = 0;
	// Queued bytes went out (queued() dropped).
	virtual void conn_sent(Conn &c) = 0;
	// connect or send failed (negative errno); the conn stays open.
	// Never called from inside a Conn method: always from a completion.
	virtual void conn_failed(Conn &c, int err) = 0;
	// An operation completed: the owner may be able to free itself now.
	virtual void conn_op_done(Conn &c) = 0;

protected:
	~ConnOwner() = default;
};

template <typename T, void (T::*M)(int, unsigned)>
class MemberOp final : public Completion {
public:
	explicit MemberOp(T *self) : self_(self) {}
	void on_complete(int res, unsigned flags) override { (self_->*M)(res, flags); }

private:
	T *self_;
};

class Conn {
public:
	Conn(Ring &ring, ConnOwner &owner, int fd, bool connected);
	~Conn();
	Conn(const Conn &) = delete;
	Conn &operator=(const Conn &) = delete;

	void connect(const Address &to);
	// Queues a copy of a then b; sends once connected.
	void send(std::span<const std::byte> a, std::span<const std::byte> b = {});
	// True when a direct send may start now: connected, open, not shut,
	// nothing queued, nothing in flight.
	bool can_send_direct() const;
	// Sends head, then the pipe's bytes, without waiting (the socket must
	// be O_NONBLOCK). What the socket cannot take now is kept with the pipe
	// and sent when there is room; queued() counts it and conn_sent()
	// follows. The pipe goes back to the pool once empty.
	void send_direct(std::span<const std::byte> head, Pipe pipe);
	// Shuts the write side down once the queue is empty.
	void shutdown_write();
	// Closes the fd; with reset, the peer gets an RST (SO_LINGER 0).
	// Queued, unsent bytes are dropped.
	void close(bool reset);
	// Closes gracefully once everything queued has been sent.
	void close_when_sent();

	int fd() const { return fd_; }
	std::size_t queued() const { return queued_ + direct_queued(); }
	bool connected() const { return connected_; }
	bool write_shut() const { return shut_requested_; }
	bool closed() const { return closed_; }
	// Operations in flight: the object must live until this is false.
	bool busy() const { return inflight_ > 0; }
	std::uint64_t bytes_sent() const { return bytes_sent_; }

private:
	struct Block {
		std::byte *data;
		std::size_t begin = 0, end = 0;
	};
	static constexpr std::size_t kBlockSize = 64 * 1024;
	static constexpr int kMaxIov = 32;

	std::size_t direct_queued() const { return head_len_ - head_off_ + pipe_.bytes(); }
	bool direct_pending() const { return direct_queued() > 0; }
	// Pushes the direct bytes; false if it must wait for room.
	bool push_direct();
	void fail_later(int err);
	void on_writable(int res, unsigned flags);
	void on_failed(int res, unsigned flags);
	void append(std::span<const std::byte> s);
	void drop_blocks();
	void kick();
	void on_connect(int res, unsigned flags);
	void on_send(int res, unsigned flags);
	void on_close(int res, unsigned flags);

	Ring &ring_;
	ConnOwner &owner_;
	int fd_;
	bool connected_;
	bool sending_ = false;
	bool shut_requested_ = false;
	bool shut_issued_ = false;
	bool closed_ = false;
	bool close_when_sent_ = false;
	int inflight_ = 0;
	std::size_t queued_ = 0;
	std::uint64_t bytes_sent_ = 0;
	std::deque<Block> blocks_;
	iovec iov_[kMaxIov];
	msghdr msg_{};
	Address peer_;
	static constexpr std::size_t kMaxHead = 64;
	std::byte head_[kMaxHead];    // direct: head bytes, sent from head_off_
	std::size_t head_len_ = 0, head_off_ = 0;
	Pipe pipe_;                   // direct: bytes after the head
	bool wait_writable_ = false;  // a POLLOUT is in flight
	int direct_error_ = 0;
	MemberOp<Conn, &Conn::on_writable> writable_op_{this};
	MemberOp<Conn, &Conn::on_failed> failed_op_{this};
	MemberOp<Conn, &Conn::on_connect> connect_op_{this};
	MemberOp<Conn, &Conn::on_send> send_op_{this};
	MemberOp<Conn, &Conn::on_close> close_op_{this};
};

} // namespace agent
