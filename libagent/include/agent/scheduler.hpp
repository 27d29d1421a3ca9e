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

private:
	std::size_t last_ = 0;
};

} // namespace agent
