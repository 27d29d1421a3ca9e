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
//
// Lifetime: every operation in flight holds a reference to the socket (and
// points into this object). close() cancels all of them by fd before the
// close itself, so a peer that never reads cannot keep the socket, the
// reset it is owed, or this object alive; the owner frees the Conn once
// busy() is false (asserted by the destructor).
#pragma once

#include "agent/agent.hpp"
#include "agent/net.hpp"
#include "agent/ring.hpp"
#include "agent/timer.hpp"
#include "pipe.hpp"

#include <chrono>

#include <cstddef>
#include <span>
#include <vector>

namespace agent {

class Conn;

class ConnOwner {
public:
	virtual void conn_connected(Conn &c) = 0;
	// Queued bytes went out (queued() dropped).
	virtual void conn_sent(Conn &c) = 0;
	// connect or send failed, or the connect timed out (negative errno);
	// the conn stays open. Never called from inside a Conn method: always
	// from a completion or a timer.
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
	enum class State {
		idle,       // a socket not yet connected
		connecting, // connect in flight
		open,       // connected: sends go out
		draining,   // close_when_sent(): flushing, then close
		acking,     // reset_when_acked(): flushing, the peer acknowledging, then reset
		closed,     // close issued; the fd is no longer ours
	};

	Conn(Agent &agent, ConnOwner &owner, int fd, bool connected);
	~Conn();
	Conn(const Conn &) = delete;
	Conn &operator=(const Conn &) = delete;

	// Fails with -ETIMEDOUT (conn_failed) if not connected within timeout
	// (zero: the kernel's own SYN retries decide).
	void connect(const Address &to, std::chrono::milliseconds timeout = {});
	// Queues a copy of a then b; sends once connected.
	void send(std::span<const std::byte> a, std::span<const std::byte> b = {});
	// Hands a send queued here to the kernel now, not with the ring's next
	// wait: for a small message whose latency counts more than the system
	// call (the turn that read it still has reads to make that find
	// nothing, and other sockets' turns, before that wait).
	void flush();
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
	// Closes gracefully once everything queued has been sent; resets
	// instead if that has not happened within linger, or a send fails.
	void close_when_sent(std::chrono::milliseconds linger);
	// Sends what is queued, waits until the peer's TCP has acknowledged
	// every byte (or it takes nothing for a tick, or deadline), then resets. For a last frame that a
	// reading peer must see, where a peer that does not read (its reader
	// paused) must still learn of the end: a reset reaches a paused
	// reader, a FIN behind unread bytes does not.
	void reset_when_acked(std::chrono::milliseconds deadline);

	State state() const { return state_; }
	int fd() const { return fd_; }
	std::size_t queued() const { return queued_ + direct_queued(); }
	bool connected() const { return connected_; }
	bool write_shut() const { return shut_requested_; }
	bool closed() const { return state_ == State::closed; }
	// Operations in flight: the object must live until this is false.
	// (A conn flushing before its close, or waiting for the peer's
	// acknowledgements before its reset, has a timer that points into it.)
	bool busy() const
	{
		return inflight_ > 0 || state_ == State::draining || state_ == State::acking;
	}
	std::uint64_t bytes_sent() const { return bytes_sent_; }

private:
	struct Block {
		std::byte *data;
		std::size_t begin = 0, end = 0;
	};
	static constexpr std::size_t kBlockSize = 64 * 1024;
	static constexpr std::size_t kMaxIov = 32;
	// Sent entries at the head of blocks_ that make on_send compact it.
	static constexpr std::size_t kCompactAt = 32;

	std::size_t direct_queued() const { return head_len_ - head_off_ + pipe_.bytes(); }
	bool direct_pending() const { return direct_queued() > 0; }
	// Pushes the direct bytes; false if it must wait for room.
	bool push_direct();
	void fail_later(int err);
	void on_writable(int res, unsigned flags);
	void on_failed(int res, unsigned flags);
	void append(std::span<const std::byte> s);
	bool queue_empty() const { return head_block_ == blocks_.size(); }
	void release_queue();
	void drop_blocks();
	void kick();
	void on_connect(int res, unsigned flags);
	void on_send(int res, unsigned flags);
	void on_close(int res, unsigned flags);
	void on_connect_timeout();
	void send_failed(int err);

	Agent &agent_;
	Ring &ring_;
	ConnOwner &owner_;
	int fd_;
	State state_;
	bool connected_; // reached open at some point (stays true once closed)
	bool sending_ = false;
	bool shut_requested_ = false;
	bool shut_issued_ = false;
	int inflight_ = 0;
	Timer timer_{[this] { on_connect_timeout(); }}; // connect, then linger
	Agent::Clock::time_point reset_by_;              // acking: the deadline
	std::size_t acking_left_ = 0;                    // acking: bytes left at the last tick
	std::size_t queued_ = 0;
	std::uint64_t bytes_sent_ = 0;
	// The copied bytes to send, oldest first: blocks_[head_block_..]. Both
	// vectors are let go whenever the queue empties (release_queue()), so
	// an idle connection holds no heap for them: a std::deque allocates
	// 568 B even when empty, and an inline iovec[32] was 512 B, of every
	// one of a session's five connections.
	std::vector<Block> blocks_;
	std::size_t head_block_ = 0;
	std::vector<iovec> iov_; // the sendmsg in flight's
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
