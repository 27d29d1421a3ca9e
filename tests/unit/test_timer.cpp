// SPDX-License-Identifier: MIT
// The timer wheel: never early, once, cancelled by cancel() or by the
// timer's destruction (also by another due timer's callback), re-armed from
// its own callback, and right past one revolution of the wheel.
#include "agent/timer.hpp"

#include <catch2/catch_test_macros.hpp>

#include <memory>

using namespace agent;
using namespace std::chrono_literals;

namespace {

struct Clocked {
	TimerWheel::Clock::time_point t0 = TimerWheel::Clock::now();
	TimerWheel wheel{t0};
	void at(std::chrono::milliseconds ms) { wheel.advance(t0 + ms); }
};

} // namespace

TEST_CASE("a timer fires once, not before its time", "[timer]")
{
	Clocked c;
	int fired = 0;
	Timer t([&] { fired++; });
	t.arm(c.wheel, 250ms);
	CHECK(t.armed());
	c.at(200ms);
	CHECK(fired == 0);
	c.at(300ms);
	CHECK(fired == 1);
	CHECK_FALSE(t.armed());
	c.at(5000ms);
	CHECK(fired == 1);
	CHECK(c.wheel.armed() == 0);
}

TEST_CASE("cancel and destruction take a timer off the wheel", "[timer]")
{
	Clocked c;
	int fired = 0;
	Timer kept([&] { fired++; });
	kept.arm(c.wheel, 100ms);
	kept.cancel();
	{
		Timer gone([&] { fired++; });
		gone.arm(c.wheel, 100ms);
		CHECK(c.wheel.armed() == 1);
	}
	CHECK(c.wheel.armed() == 0);
	c.at(1000ms);
	CHECK(fired == 0);
}

TEST_CASE("a callback that destroys another due timer stops it from running", "[timer]")
{
	Clocked c;
	int fired = 0;
	std::unique_ptr<Timer> victim;
	Timer killer([&] {
		fired++;
		victim.reset();
	});
	victim = std::make_unique<Timer>([&] { fired += 100; });
	// Same slot, both due: whichever runs first, the victim never runs
	// after it is gone (its first run, if any, is before the killer's).
	killer.arm(c.wheel, 100ms);
	victim->arm(c.wheel, 100ms);
	c.at(200ms);
	CHECK((fired == 1 || fired == 101));
	CHECK(c.wheel.armed() == 0);
}

TEST_CASE("a timer re-armed from its callback fires again later", "[timer]")
{
	Clocked c;
	int fired = 0;
	std::unique_ptr<Timer> t;
	t = std::make_unique<Timer>([&] {
		if (++fired < 3)
			t->arm(c.wheel, 100ms);
	});
	t->arm(c.wheel, 100ms);
	for (int ms = 100; ms <= 1000; ms += 100)
		c.at(std::chrono::milliseconds(ms));
	CHECK(fired == 3);
}

TEST_CASE("timers past one revolution of the wheel fire on time", "[timer]")
{
	Clocked c;
	int fired = 0;
	Timer t([&] { fired++; });
	t.arm(c.wheel, 120s); // more than 512 slots of 100 ms
	for (int s = 1; s < 120; s++) {
		c.at(std::chrono::seconds(s));
		REQUIRE(fired == 0);
	}
	c.at(120s + 100ms);
	CHECK(fired == 1);
}
