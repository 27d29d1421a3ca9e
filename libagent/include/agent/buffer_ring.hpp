// SPDX-License-Identifier: MIT
// A provided-buffer ring: a pool of equal buffers the kernel picks from when
// a multishot recv completes. Buffers go back to the ring as soon as their
// bytes are consumed, so the pool bounds the memory held by all receives.
#pragma once

#include "agent/ring.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

namespace agent {

class BufferRing {
public:
	// count must be a power of two; group is the buffer group id.
	BufferRing(Ring &ring, std::uint16_t group, unsigned count, std::size_t size);
	~BufferRing();
	BufferRing(const BufferRing &) = delete;
	BufferRing &operator=(const BufferRing &) = delete;

	std::uint16_t group() const { return group_; }
	std::size_t buffer_size() const { return size_; }
	unsigned count() const { return count_; }

	// The bytes of buffer id (from a CQE's flags) holding len bytes.
	std::span<const std::byte> data(unsigned id, std::size_t len) const;
	// Hands buffer id back to the kernel.
	void recycle(unsigned id);

private:
	Ring &ring_;
	io_uring_buf_ring *br_ = nullptr;
	std::byte *bufs_ = nullptr;
	std::size_t ring_bytes_ = 0;
	std::uint16_t group_;
	unsigned count_;
	std::size_t size_;
};

// The buffer id of a CQE that carries IORING_CQE_F_BUFFER.
inline unsigned cqe_buffer_id(unsigned flags) { return flags >> IORING_CQE_BUFFER_SHIFT; }

} // namespace agent
