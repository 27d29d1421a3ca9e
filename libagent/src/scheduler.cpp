// SPDX-License-Identifier: MIT
#include "agent/scheduler.hpp"

namespace agent {

std::size_t Scheduler::pick(std::span<const std::size_t> queued)
{
	return pick(queued.size(), [&](std::size_t i) { return queued[i]; });
}

} // namespace agent
