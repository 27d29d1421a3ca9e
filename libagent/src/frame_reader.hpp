// SPDX-License-Identifier: MIT
// One stream's frames read a piece at a time from its non-blocking socket
// (pull mode): the 16-byte header with a recv, then the payload into
// memory, into a pipe (zero-copy), or skipped. Bytes an event source had
// read before (held) come first. Nothing here waits or decides: each call
// makes one read and says what it got; the session decides what a frame
// means and where its payload goes.
#pragma once

#include "agent/frame.hpp"
#include "pipe.hpp"

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <span>
#include <vector>

namespace agent {

class FrameReader {
public:
	enum class State {
		header,  // between frames, or part of a header read
		payload, // a header taken (head()), its payload being read
	};

	explicit FrameReader(int fd) : fd_(fd) {}

	State state() const { return head_ ? State::payload : State::header; }
	// Some of a frame has been read: an end of stream now cuts a frame.
	bool inside_frame() const { return head_ || head_have_ > 0; }
	// The frame whose payload is being read (State::payload).
	const std::optional<wire::Header> &head() const { return head_; }
	std::size_t payload_left() const { return payload_left_; }
	// What read_payload() has read of the frame's payload so far.
	std::span<const std::byte> payload() const { return payload_; }

	// Reads (once) what is missing of the header. Returns the bytes read,
	// 0 at end of stream or -errno. When the header is complete, *status
	// is its decoding; if ok, head() is the frame (State::payload).
	ssize_t read_header(wire::Status *status);
	// Payload into memory, until it is all there or a read returns <= 0
	// (returned: 0 at end of stream, -errno); else the last read's count.
	ssize_t read_payload();
	// One read of at most n payload bytes into pipe; bytes, 0, or -errno.
	ssize_t splice_payload(Pipe &pipe, std::size_t n);
	// One read of at most n payload bytes, thrown away.
	ssize_t skip_payload(std::size_t n);
	// The frame is taken: the next read starts a header.
	void frame_done();
	// The payload read_payload() completed, handed over; the frame is done.
	std::vector<std::byte> take_payload();

	// Received by an event source before the stream was read this way (or
	// by the copy path, which frames them itself): read first.
	std::vector<std::byte> held;

private:
	ssize_t read_bytes(std::byte *dst, std::size_t n);
	void took_payload(ssize_t n);

	int fd_;
	std::byte head_buf_[wire::kHeaderSize];
	std::size_t head_have_ = 0;
	std::optional<wire::Header> head_;
	std::size_t payload_left_ = 0;
	std::vector<std::byte> payload_;
};

} // namespace agent
