// SPDX-License-Identifier: MIT
// Picks the stream for the next chunk: the one with the fewest bytes queued
// (a slow or congested stream gets fewer chunks), ties broken round robin
// so equal streams share the load.
#pragma once

#include <cstddef>
#include <span>

namespace agent {

class Scheduler {
public:
	// Index of the least-queued stream among queued (non-empty span).
	std::size_t pick(std::span<const std::size_t> queued);
	// The same pick among n streams, asking queued_of(i) in round-robin
	// order and no further than the first with nothing queued (none can
	// beat it, and an ask may be a system call: ioctl(SIOCOUTQ): bytes the
	// peer has not acknowledged, so an idle stream whose last bytes wait for
	// a delayed ACK counts them).
	template <typename QueuedOf>
	std::size_t pick(std::size_t n, QueuedOf queued_of)
	{
		std::size_t best = (last_ + 1) % n;
		std::size_t least = queued_of(best);
		for (std::size_t k = 1; k < n && least > 0; k++) {
			std::size_t i = (last_ + 1 + k) % n;
			std::size_t q = queued_of(i);
			if (q < least) {
				best = i;
				least = q;
			}
		}
		last_ = best;
		return best;
	}

private:
	std::size_t last_ = 0;
};

} // namespace agent
