// SPDX-License-Identifier: MIT
#include "agent/scheduler.hpp"

namespace agent {

std::size_t Scheduler::pick(std::span<const std::size_t> queued)
{
	std::size_t n = queued.size();
	std::size_t best = (last_ + 1) % n;
	for (std::size_t k = 1; k < n; k++) {
		std::size_t i = (last_ + 1 + k) % n;
		if (queued[i] < queued[best])
			best = i;
	}
	last_ = best;
	return best;
}

} // namespace agent
