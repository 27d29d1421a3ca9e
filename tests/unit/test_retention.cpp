// SPDX-License-Identifier: MIT
// The sender's retention: what a lost stream's frames are sent again from.
#include "../../libagent/src/retention.hpp"


#include <catch2/catch_test_macros.hpp>

#include <unistd.h>

#include <cstring>
#include <vector>

using agent::Pipe;
using agent::Retention;

namespace {

std::vector<std::byte> bytes_of(const char *s)
{
	std::vector<std::byte> v(std::strlen(s));
	std::memcpy(v.data(), s, v.size());
	return v;
}

const auto t0 = Retention::Clock::now();

} // namespace

TEST_CASE("retention keeps frames until a cumulative ACK covers them", "[retention]")
{
	{
		Retention r;
		r.keep_copy(0, 1, t0, bytes_of("alpha"));
		r.keep_copy(1, 2, t0, bytes_of("beta"));
		r.keep_copy(2, 1, t0, bytes_of("gamma"));
		CHECK(r.frames() == 3);
		CHECK(r.bytes() == 14);
		CHECK(r.carried_by(1) == std::vector<std::uint64_t>{0, 2});
		CHECK(r.carried_by(2) == std::vector<std::uint64_t>{1});

		CHECK(r.ack(2) == 2); // 0 and 1 delivered
		CHECK(r.frames() == 1);
		CHECK(r.bytes() == 5);
		CHECK(r.find(1) == nullptr);
		REQUIRE(r.find(2) != nullptr);
		CHECK(r.find(2)->stream == 1);
		CHECK(r.ack(1) == 0); // stale: came on a slower stream
		CHECK(r.acked() == 2);
		CHECK(r.frames() == 1);
	}
}

TEST_CASE("retention tees a zero-copy frame: the pipe keeps its bytes, the copy reads back",
	  "[retention]")
{
	Retention r;
	Pipe p = Pipe::acquire(1 << 20);
	REQUIRE(p.valid());
	std::vector<char> msg(Retention::kMinTee);
	for (std::size_t i = 0; i < msg.size(); i++)
		msg[i] = static_cast<char>(i * 7);
	REQUIRE(p.fill_copy(msg.data(), msg.size()) == static_cast<ssize_t>(msg.size()));
	REQUIRE(r.keep_tee(7, 0, t0, p));
	CHECK(p.bytes() == msg.size()); // still there, to be sent
	CHECK(r.bytes() == msg.size());

	// The original goes to its socket (read here); the duplicate stays.
	std::vector<char> out(msg.size());
	REQUIRE(p.read_into(out.data(), out.size()) == static_cast<ssize_t>(out.size()));
	CHECK(out == msg);

	Retention::Frame *f = r.find(7);
	REQUIRE(f != nullptr);
	REQUIRE(r.materialize(*f));
	REQUIRE(f->bytes.size() == msg.size());
	CHECK(std::memcmp(f->bytes.data(), msg.data(), msg.size()) == 0);
	CHECK(!f->pipe.valid());
	CHECK(r.ack(8) == 1);
	CHECK(r.empty());
}

TEST_CASE("retention copies small frames instead of holding two descriptors each",
	  "[retention]")
{
	Retention r;
	Pipe p = Pipe::acquire(1 << 16);
	REQUIRE(p.valid());
	const char small[] = "a small frame";
	REQUIRE(p.fill_copy(small, sizeof(small)) == static_cast<ssize_t>(sizeof(small)));
	CHECK_FALSE(r.keep_tee(0, 0, t0, p));
	CHECK(r.empty());
	CHECK(p.bytes() == sizeof(small));
}
