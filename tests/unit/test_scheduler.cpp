// SPDX-License-Identifier: MIT
#include "agent/scheduler.hpp"

#include <catch2/catch_test_macros.hpp>

#include <vector>

using agent::Scheduler;

TEST_CASE("scheduler picks the least-queued stream", "[scheduler]")
{
	Scheduler s;
	std::vector<std::size_t> q{500, 0, 300, 900};
	CHECK(s.pick(q) == 1);
	q = {500, 700, 300, 900};
	CHECK(s.pick(q) == 2);
	q = {0, 700, 300, 900};
	CHECK(s.pick(q) == 0);
}

TEST_CASE("scheduler shares equal streams round robin", "[scheduler]")
{
	Scheduler s;
	std::vector<std::size_t> q(4, 0);
	std::vector<int> hits(4, 0);
	for (int i = 0; i < 400; i++)
		hits[s.pick(q)]++;
	for (int h : hits)
		CHECK(h == 100);
}

TEST_CASE("scheduler steers load away from a slow stream", "[scheduler]")
{
	// Stream 2 drains at a quarter of the others' speed: it must get
	// clearly fewer chunks than with plain round robin.
	Scheduler s;
	std::vector<std::size_t> q(4, 0);
	std::vector<int> hits(4, 0);
	for (int round = 0; round < 1000; round++) {
		std::size_t i = s.pick(q);
		hits[i]++;
		q[i] += 100;
		for (std::size_t k = 0; k < 4; k++) {
			std::size_t drain = k == 2 ? 10 : 40;
			q[k] = q[k] > drain ? q[k] - drain : 0;
		}
	}
	CHECK(hits[2] < 150);
	CHECK(hits[0] > 250);
}

TEST_CASE("scheduler with one stream always picks it", "[scheduler]")
{
	Scheduler s;
	std::vector<std::size_t> q{12345};
	for (int i = 0; i < 5; i++)
		CHECK(s.pick(q) == 0);
}

TEST_CASE("scheduler asks no further than the first stream with nothing queued",
	  "[scheduler]")
{
	Scheduler s;
	std::vector<std::size_t> q{0, 0, 0, 0};
	std::vector<int> asked(4, 0);
	auto queued_of = [&](std::size_t i) {
		asked[i]++;
		return q[i];
	};
	// All empty: one ask per pick, turn by turn.
	for (int i = 0; i < 8; i++)
		s.pick(4, queued_of);
	CHECK(asked == std::vector<int>{2, 2, 2, 2});

	// Busy streams are all asked, and the pick is the span version's.
	q = {500, 700, 300, 900};
	Scheduler a, b;
	asked.assign(4, 0);
	CHECK(a.pick(4, queued_of) == b.pick(q));
	CHECK(asked == std::vector<int>{1, 1, 1, 1});
	q = {500, 0, 300, 0};
	asked.assign(4, 0);
	// After 2, 3 comes first, has nothing queued, and is the only one asked.
	CHECK(a.pick(4, queued_of) == 3);
	CHECK(asked == std::vector<int>{0, 0, 0, 1});
	CHECK(b.pick(q) == 3);
}
