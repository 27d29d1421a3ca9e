// SPDX-License-Identifier: MIT
// The receiving half of a direction: the end, ACKs, the stuck watch.
#include "../../libagent/src/receiver.hpp"

#include <catch2/catch_test_macros.hpp>

#include <vector>

using agent::ReorderBuffer;
using agent::Receiver;
using namespace std::chrono_literals;

namespace {

// Delivers frame seq through the reorder buffer, as the Session does.
void deliver(Receiver &rx, std::uint64_t seq)
{
	std::vector<std::byte> b(10);
	REQUIRE(rx.reorder().offer(seq, b) == ReorderBuffer::Verdict::in_order);
	rx.reorder().advance();
}

} // namespace

TEST_CASE("Receiver: done once the FIN is known and every frame before it delivered",
	  "[receiver]")
{
	Receiver rx(1 << 20, 1024, 100);
	deliver(rx, 0);
	CHECK_FALSE(rx.complete()); // no FIN yet
	CHECK(rx.take_fin(2));
	CHECK(rx.state() == Receiver::State::fin_known);
	CHECK(rx.after_fin(2));
	CHECK_FALSE(rx.after_fin(1));
	CHECK_FALSE(rx.complete()); // frame 1 is due
	deliver(rx, 1);
	CHECK(rx.complete());
	CHECK(rx.done());
	CHECK_FALSE(rx.complete()); // once
	CHECK(rx.take_fin(2));      // the same FIN on another stream
}

TEST_CASE("Receiver: a FIN that contradicts one before or the delivered data is refused",
	  "[receiver]")
{
	Receiver rx(1 << 20, 1024, 100);
	deliver(rx, 0);
	deliver(rx, 1);
	CHECK_FALSE(rx.take_fin(1)); // below what was delivered
	CHECK(rx.state() == Receiver::State::receiving);
	CHECK(rx.take_fin(5));
	CHECK_FALSE(rx.take_fin(6));
	CHECK(rx.fin_seq() == 5u);
}

TEST_CASE("Receiver: an ACK is due at once past ack_every bytes, else pending", "[receiver]")
{
	Receiver rx(1 << 20, 1024, 100);
	CHECK_FALSE(rx.ack_pending());
	CHECK_FALSE(rx.ever_acked());
	deliver(rx, 0);
	CHECK_FALSE(rx.delivered(60)); // the caller's delay timer sends it
	CHECK(rx.ack_pending());
	deliver(rx, 1);
	CHECK(rx.delivered(60)); // 120 bytes unacknowledged
	rx.acked();
	CHECK_FALSE(rx.ack_pending());
	CHECK(rx.ever_acked());
	CHECK_FALSE(rx.delivered(60)); // counting starts again
}

TEST_CASE("Receiver: stuck time runs while nothing moves, and restarts when it does",
	  "[receiver]")
{
	Receiver rx(1 << 20, 1024, 100);
	auto t0 = Receiver::Clock::now();
	rx.watch(t0, 0);
	CHECK(rx.stuck_for(t0 + 300ms, 0, false) == 300ms);
	// Bytes of the next frame moved (the zero-copy path): not stuck.
	CHECK(rx.stuck_for(t0 + 400ms, 4096, false) == 0ms);
	CHECK(rx.stuck_for(t0 + 600ms, 4096, false) == 200ms);
	// The plain end holds it up: the frame is not late, the reader is.
	CHECK(rx.stuck_for(t0 + 700ms, 4096, true) == 0ms);
	deliver(rx, 0); // the next frame went
	CHECK(rx.stuck_for(t0 + 900ms, 4096, false) == 0ms);
	CHECK(rx.stuck_for(t0 + 1000ms, 4096, false) == 100ms);
}

TEST_CASE("Receiver: WAITING at most once a period", "[receiver]")
{
	Receiver rx(1 << 20, 1024, 100);
	auto t0 = Receiver::Clock::now();
	CHECK(rx.waiting_due(t0, 1000ms));
	CHECK_FALSE(rx.waiting_due(t0 + 999ms, 1000ms));
	CHECK(rx.waiting_due(t0 + 1000ms, 1000ms));
}
