// SPDX-License-Identifier: MIT
// The sending half of a direction: seqs, the end, ACKs, what goes again.
#include "../../libagent/src/sender.hpp"

#include <catch2/catch_test_macros.hpp>

#include <vector>

using agent::Retention;
using agent::Sender;

namespace {

void keep(Sender &tx, unsigned stream, std::size_t len)
{
	std::vector<std::byte> payload(len, std::byte{7});
	std::uint64_t seq = tx.take_seq();
	tx.retention().keep_copy(seq, stream, Retention::Clock::now(), payload);
}

} // namespace

TEST_CASE("Sender: seqs count up; FIN takes the next seq, once", "[sender]")
{
	Sender tx(1 << 20);
	CHECK(tx.state() == Sender::State::sending);
	CHECK(tx.take_seq() == 0);
	CHECK(tx.take_seq() == 1);
	CHECK(tx.next_seq() == 2);
	CHECK(tx.finish());
	CHECK_FALSE(tx.finish()); // a second end of the plain end is no news
	CHECK(tx.ended());
	CHECK(tx.next_seq() == 2); // the FIN's seq
}

TEST_CASE("Sender: acked only once finished and every frame acknowledged", "[sender]")
{
	Sender tx(1 << 20);
	keep(tx, 0, 100);
	keep(tx, 1, 100);
	CHECK(tx.take_ack(1) == Sender::Ack::released);
	CHECK(tx.state() == Sender::State::sending); // not finished: more may come
	CHECK(tx.finish());
	CHECK(tx.state() == Sender::State::finished);
	CHECK(tx.take_ack(1) == Sender::Ack::stale); // the same ACK on a slower stream
	CHECK(tx.take_ack(2) == Sender::Ack::released);
	CHECK(tx.all_acked());
}

TEST_CASE("Sender: finishing with nothing out is done at once", "[sender]")
{
	Sender tx(1 << 20);
	CHECK(tx.finish());
	CHECK(tx.all_acked());
}

TEST_CASE("Sender: an ACK beyond what was sent is refused, and changes nothing", "[sender]")
{
	Sender tx(1 << 20);
	keep(tx, 0, 10);
	CHECK(tx.take_ack(2) == Sender::Ack::beyond);
	CHECK(tx.retention().frames() == 1);
	CHECK(tx.take_ack(1) == Sender::Ack::released);
}

TEST_CASE("Sender: full at the retention budget, roomy again after an ACK", "[sender]")
{
	Sender tx(250);
	keep(tx, 0, 100);
	keep(tx, 1, 100);
	CHECK_FALSE(tx.full());
	keep(tx, 2, 100); // a read may overshoot by one frame
	CHECK(tx.full());
	CHECK(tx.take_ack(1) == Sender::Ack::released);
	CHECK_FALSE(tx.full());
}

TEST_CASE("Sender: resends go oldest first, each once, as losses merge", "[sender]")
{
	Sender tx(1 << 20);
	CHECK_FALSE(tx.next_resend());
	tx.resend_later(std::vector<std::uint64_t>{5, 9});
	tx.resend_later(std::vector<std::uint64_t>{2, 9, 7}); // a second stream lost
	tx.resend_later(5);
	std::vector<std::uint64_t> order;
	while (auto seq = tx.next_resend()) {
		order.push_back(*seq);
		tx.resent();
	}
	CHECK(order == std::vector<std::uint64_t>{2, 5, 7, 9});
	tx.resend_later(3);
	tx.drop_resends(); // the session is over both ways
	CHECK_FALSE(tx.next_resend());
}
