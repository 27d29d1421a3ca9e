// SPDX-License-Identifier: MIT
#include "frame_reader.hpp"

#include "agent/net.hpp"

#include <algorithm>
#include <cstring>

namespace agent {

ssize_t FrameReader::read_header(wire::Status *status)
{
	ssize_t n = read_bytes(head_buf_ + head_have_, wire::kHeaderSize - head_have_);
	if (n <= 0)
		return n;
	head_have_ += n;
	if (head_have_ < wire::kHeaderSize)
		return n;
	head_have_ = 0;
	wire::Header h;
	*status = wire::decode_header(std::span(head_buf_), h);
	if (*status == wire::Status::ok) {
		head_ = h;
		payload_left_ = h.length;
		payload_.clear();
	}
	return n;
}

ssize_t FrameReader::read_payload()
{
	ssize_t n = 1;
	while (payload_left_ > 0) {
		std::size_t have = payload_.size();
		payload_.resize(have + payload_left_);
		n = read_bytes(payload_.data() + have, payload_left_);
		payload_.resize(have + std::max<ssize_t>(n, 0));
		if (n <= 0)
			return n;
		payload_left_ -= n;
	}
	return n;
}

ssize_t FrameReader::splice_payload(Pipe &pipe, std::size_t n)
{
	n = std::min(n, payload_left_);
	ssize_t got;
	if (!held.empty()) {
		got = pipe.fill_copy(held.data(), std::min(n, held.size()));
		if (got > 0)
			held.erase(held.begin(), held.begin() + got);
	} else {
		got = pipe.fill_from(fd_, n);
	}
	took_payload(got);
	return got;
}

ssize_t FrameReader::skip_payload(std::size_t n)
{
	std::byte scratch[16384];
	ssize_t got = read_bytes(scratch, std::min({n, payload_left_, sizeof(scratch)}));
	took_payload(got);
	return got;
}

void FrameReader::frame_done()
{
	head_.reset();
	payload_left_ = 0;
	payload_.clear();
}

std::vector<std::byte> FrameReader::take_payload()
{
	std::vector<std::byte> out = std::move(payload_);
	frame_done();
	return out;
}

// Held bytes first, then the socket: bytes read, 0 at end of stream, -errno.
ssize_t FrameReader::read_bytes(std::byte *dst, std::size_t n)
{
	if (!held.empty()) {
		std::size_t k = std::min(n, held.size());
		std::memcpy(dst, held.data(), k);
		held.erase(held.begin(), held.begin() + k);
		return static_cast<ssize_t>(k);
	}
	return recv_now(fd_, dst, n);
}

void FrameReader::took_payload(ssize_t n)
{
	if (n > 0)
		payload_left_ -= static_cast<std::size_t>(n);
}

} // namespace agent
