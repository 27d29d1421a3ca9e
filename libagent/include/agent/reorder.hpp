// SPDX-License-Identifier: MIT
// The join side's reorder buffer for one direction of a session: DATA frames
// arrive on several streams out of order; they leave in sequence order. It
// holds at most `budget` payload bytes; the caller stops reading streams
// whose next frame does not fit (backpressure) instead of growing it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

namespace agent {

class ReorderBuffer {
public:
	enum class Verdict {
		in_order,      // seq is the next one: the caller delivers it itself
		stored,        // kept until its turn
		duplicate,     // already delivered or already held
		out_of_window, // too far ahead of the next expected seq
		no_room,       // would exceed the budget: not taken, retry later
	};

	ReorderBuffer(std::size_t budget, std::uint64_t window) : budget_(budget), window_(window) {}

	// Offers frame seq. On in_order the caller delivers bytes and then calls
	// advance(); on stored the bytes were copied.
	Verdict offer(std::uint64_t seq, std::span<const std::byte> bytes);
	// Marks the next seq delivered.
	void advance() { next_++; }
	// If the next frame is held, moves it into out and advances.
	bool pop(std::vector<std::byte> &out);

	std::uint64_t next() const { return next_; }
	std::size_t held_bytes() const { return held_; }
	std::size_t held_frames() const { return frames_.size(); }
	std::size_t budget() const { return budget_; }
	std::uint64_t window() const { return window_; }

private:
	std::size_t budget_;
	std::uint64_t window_;
	std::uint64_t next_ = 0;
	std::size_t held_ = 0;
	std::map<std::uint64_t, std::vector<std::byte>> frames_;
};

} // namespace agent
