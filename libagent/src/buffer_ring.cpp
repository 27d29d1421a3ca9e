// SPDX-License-Identifier: MIT
#include "agent/buffer_ring.hpp"

#include <sys/mman.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace agent {

BufferRing::BufferRing(Ring &ring, std::uint16_t group, unsigned count, std::size_t size)
	: ring_(ring), group_(group), count_(count), size_(size)
{
	if (count == 0 || (count & (count - 1)) || count > 32768)
		throw std::invalid_argument("buffer ring count must be a power of two <= 32768");
	// liburing 2.3 has no io_uring_setup_buf_ring: map the ring page-aligned
	// and register it ourselves.
	ring_bytes_ = count * sizeof(io_uring_buf);
	void *mem = mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
			 -1, 0);
	if (mem == MAP_FAILED)
		throw std::runtime_error("buffer ring mmap failed");
	br_ = static_cast<io_uring_buf_ring *>(mem);
	bufs_ = static_cast<std::byte *>(mmap(nullptr, count * size, PROT_READ | PROT_WRITE,
					      MAP_ANONYMOUS | MAP_PRIVATE, -1, 0));
	if (bufs_ == MAP_FAILED) {
		munmap(br_, ring_bytes_);
		throw std::runtime_error("buffer pool mmap failed");
	}
	io_uring_buf_reg reg{};
	reg.ring_addr = reinterpret_cast<unsigned long>(br_);
	reg.ring_entries = count;
	reg.bgid = group;
	int ret = io_uring_register_buf_ring(ring_.raw(), &reg, 0);
	if (ret < 0) {
		munmap(bufs_, count * size);
		munmap(br_, ring_bytes_);
		throw std::runtime_error(std::string("io_uring_register_buf_ring: ") +
					 strerror(-ret));
	}
	io_uring_buf_ring_init(br_);
	int mask = io_uring_buf_ring_mask(count);
	for (unsigned i = 0; i < count; i++)
		io_uring_buf_ring_add(br_, bufs_ + i * size, size, i, mask, i);
	io_uring_buf_ring_advance(br_, count);
}

BufferRing::~BufferRing()
{
	io_uring_unregister_buf_ring(ring_.raw(), group_);
	munmap(bufs_, count_ * size_);
	munmap(br_, ring_bytes_);
}

std::span<const std::byte> BufferRing::data(unsigned id, std::size_t len) const
{
	return {bufs_ + static_cast<std::size_t>(id) * size_, len};
}

void BufferRing::recycle(unsigned id)
{
	io_uring_buf_ring_add(br_, bufs_ + static_cast<std::size_t>(id) * size_, size_, id,
			      io_uring_buf_ring_mask(count_), 0);
	io_uring_buf_ring_advance(br_, 1);
}

} // namespace agent
