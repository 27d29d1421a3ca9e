// SPDX-License-Identifier: MIT
#include "agent/reorder.hpp"

#include <catch2/catch_test_macros.hpp>

using agent::ReorderBuffer;
using V = ReorderBuffer::Verdict;

namespace {
std::vector<std::byte> bytes(std::size_t n, int fill)
{
	return std::vector<std::byte>(n, std::byte(fill));
}
} // namespace

TEST_CASE("reorder delivers in sequence order", "[reorder]")
{
	ReorderBuffer r(1000, 100);
	CHECK(r.offer(2, bytes(10, 2)) == V::stored);
	CHECK(r.offer(1, bytes(10, 1)) == V::stored);
	CHECK(r.held_bytes() == 20);
	std::vector<std::byte> out;
	CHECK_FALSE(r.pop(out)); // 0 has not arrived
	CHECK(r.offer(0, bytes(10, 0)) == V::in_order);
	r.advance();
	REQUIRE(r.pop(out));
	CHECK(out == bytes(10, 1));
	REQUIRE(r.pop(out));
	CHECK(out == bytes(10, 2));
	CHECK_FALSE(r.pop(out));
	CHECK(r.next() == 3);
	CHECK(r.held_bytes() == 0);
}

TEST_CASE("reorder refuses duplicates and seqs outside the window", "[reorder]")
{
	ReorderBuffer r(1000, 4);
	CHECK(r.offer(0, bytes(1, 0)) == V::in_order);
	r.advance();
	CHECK(r.offer(0, bytes(1, 0)) == V::duplicate); // already delivered
	CHECK(r.offer(3, bytes(1, 3)) == V::stored);
	CHECK(r.offer(3, bytes(1, 3)) == V::duplicate); // already held
	CHECK(r.offer(4, bytes(1, 4)) == V::stored);    // next + 3: last in window
	CHECK(r.offer(5, bytes(1, 5)) == V::out_of_window);
	CHECK(r.offer(~0ull, bytes(1, 5)) == V::out_of_window);
}

TEST_CASE("reorder never holds more than its budget", "[reorder]")
{
	ReorderBuffer r(100, 1000);
	CHECK(r.offer(1, bytes(60, 1)) == V::stored);
	CHECK(r.offer(2, bytes(40, 2)) == V::stored);
	CHECK(r.held_bytes() == 100);
	CHECK(r.offer(3, bytes(1, 3)) == V::no_room);
	CHECK(r.held_bytes() == 100);
	// The next frame in order needs no room: it is delivered, not held.
	CHECK(r.offer(0, bytes(500, 0)) == V::in_order);
	r.advance();
	std::vector<std::byte> out;
	REQUIRE(r.pop(out));
	CHECK(r.held_bytes() == 40);
	CHECK(r.offer(3, bytes(60, 3)) == V::stored);
}
