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

namespace {

// A pipe holding n bytes of a pattern that starts at `from`.
Pipe pipe_of(std::size_t n, unsigned from, std::size_t capacity = 1 << 20)
{
	Pipe p = Pipe::acquire(capacity);
	std::vector<char> v(n);
	for (std::size_t i = 0; i < n; i++)
		v[i] = static_cast<char>((from + i) * 7);
	if (p.valid() && p.fill_copy(v.data(), n) != static_cast<ssize_t>(n))
		p = Pipe();
	return p;
}

bool holds_pattern(const std::vector<std::byte> &b, unsigned from)
{
	for (std::size_t i = 0; i < b.size(); i++)
		if (b[i] != static_cast<std::byte>((from + i) * 7))
			return false;
	return true;
}

// What a sender does with a frame's pipe once it is retained: sends it
// (read here) and pools it.
void send_away(Pipe &p)
{
	std::vector<char> sink(p.bytes());
	p.read_into(sink.data(), sink.size());
	Pipe::release(std::move(p));
}

} // namespace

TEST_CASE("retention tees a zero-copy frame: the pipe keeps its bytes, the copy reads back",
	  "[retention]")
{
	Retention r;
	Pipe p = pipe_of(64 * 1024, 0);
	REQUIRE(p.valid());
	REQUIRE(r.keep_tee(7, 0, t0, p));
	CHECK(p.bytes() == 64 * 1024); // still there, to be sent
	CHECK(r.bytes() == 64 * 1024);
	send_away(p);

	Retention::Frame *f = r.find(7);
	REQUIRE(f != nullptr);
	REQUIRE(r.materialize(*f));
	CHECK(f->bytes.size() == 64 * 1024);
	CHECK(holds_pattern(f->bytes, 0));
	CHECK(f->store == 0);
	CHECK(r.stores() == 0);
	CHECK(r.ack(8) == 1);
	CHECK(r.empty());
}

TEST_CASE("retention packs frames into one store, and ACKs drop them from its head",
	  "[retention]")
{
	Retention r;
	// Small and large frames alike: a small one costs no descriptor.
	const std::size_t sizes[] = {13, 100000, 4096, 1, 70000};
	unsigned from = 0;
	for (std::uint64_t seq = 0; seq < 5; seq++) {
		Pipe p = pipe_of(sizes[seq], from);
		REQUIRE(p.valid());
		REQUIRE(r.keep_tee(seq, seq % 2, t0, p));
		send_away(p);
		from += sizes[seq];
	}
	CHECK(r.stores() == 1);
	CHECK(r.bytes() == 13 + 100000 + 4096 + 1 + 70000);

	// Frames 0 and 1 delivered: their bytes leave the store, which keeps
	// taking frames.
	CHECK(r.ack(2) == 2);
	CHECK(r.bytes() == 4096 + 1 + 70000);
	{
		Pipe p = pipe_of(500, from);
		REQUIRE(r.keep_tee(5, 0, t0, p));
		send_away(p);
	}
	CHECK(r.stores() == 1);

	// Stream 1 lost: frame 3 is read out, and with it every frame the
	// store held, each with its own bytes.
	Retention::Frame *f = r.find(3);
	REQUIRE(f != nullptr);
	REQUIRE(r.materialize(*f));
	CHECK(r.stores() == 0);
	unsigned at = 13 + 100000;
	for (std::uint64_t seq = 2; seq < 6; seq++) {
		Retention::Frame *g = r.find(seq);
		REQUIRE(g != nullptr);
		CHECK(g->store == 0);
		CHECK(g->bytes.size() == g->length);
		CHECK(holds_pattern(g->bytes, at));
		at += g->length;
	}
	// Later frames go into a new store.
	{
		Pipe p = pipe_of(10, at);
		REQUIRE(r.keep_tee(6, 0, t0, p));
		send_away(p);
	}
	CHECK(r.stores() == 1);
	CHECK(r.ack(7) == 5);
	CHECK(r.empty());
	CHECK(r.stores() == 0); // pooled, not held by an idle session
}

TEST_CASE("retention seals a full store and goes on in a new one", "[retention]")
{
	Retention r;
	// Each frame a pipe of 16 pages (written a page at a time, so one
	// buffer per page): sixteen fill a store's 256 slots, the 17th does
	// not fit and goes into a second store.
	const std::size_t frame = 16 * 4096;
	unsigned from = 0;
	for (std::uint64_t seq = 0; seq < 20; seq++) {
		Pipe p = pipe_of(frame, from, frame);
		REQUIRE(p.valid());
		REQUIRE(r.keep_tee(seq, 0, t0, p));
		send_away(p);
		from += frame;
	}
	CHECK(r.stores() == 2);
	// The first store's frames delivered: it goes; the second stays.
	CHECK(r.ack(16) == 16);
	CHECK(r.stores() == 1);
	Retention::Frame *f = r.find(18);
	REQUIRE(f != nullptr);
	REQUIRE(r.materialize(*f));
	for (std::uint64_t seq = 16; seq < 20; seq++) {
		Retention::Frame *g = r.find(seq);
		REQUIRE(g != nullptr);
		CHECK(holds_pattern(g->bytes, static_cast<unsigned>(seq * frame)));
	}
}

TEST_CASE("retention copies once it holds kMaxStores stores", "[retention]")
{
	Retention r;
	const std::size_t frame = 256 * 4096; // a whole store each
	std::uint64_t seq = 0;
	for (; seq < Retention::kMaxStores; seq++) {
		Pipe p = pipe_of(frame, 0, frame);
		REQUIRE(p.valid());
		REQUIRE(r.keep_tee(seq, 0, t0, p));
		send_away(p);
	}
	Pipe p = pipe_of(frame, 0, frame);
	CHECK_FALSE(r.keep_tee(seq, 0, t0, p));
	CHECK(p.bytes() == frame); // untouched: the caller copies it
	CHECK(r.stores() == Retention::kMaxStores);
	CHECK(r.ack(seq) == seq);
	CHECK(r.stores() == 0);
}
