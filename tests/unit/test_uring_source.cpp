// SPDX-License-Identifier: MIT
// The uring event source against real sockets: delivery, end of stream,
// pause/resume (nothing delivered while paused, nothing lost), unwatch.
#include "agent/agent.hpp"

#include <catch2/catch_test_macros.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <string>

using namespace agent;

namespace {

struct Collect final : StreamReader {
	EventSource *src = nullptr;
	int fd = -1;
	std::string got;
	int end = 1;
	int calls = 0;
	bool unwatch_on_data = false;
	void on_data(std::span<const std::byte> b) override
	{
		calls++;
		got.append(reinterpret_cast<const char *>(b.data()), b.size());
		if (unwatch_on_data)
			src->unwatch(fd);
	}
	void on_end(int err) override { end = err; }
};

struct Fixture {
	std::string err;
	std::unique_ptr<Agent> agent;
	int sv[2];
	Fixture()
	{
		AgentOptions o;
		o.events = EventKind::uring;
		o.buffer_count = 64;
		o.buffer_size = 4096;
		agent = Agent::create(o, &err);
		REQUIRE(agent);
		REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	}
	~Fixture()
	{
		close(sv[0]);
		close(sv[1]);
	}
	void spin(int rounds = 20)
	{
		for (int i = 0; i < rounds; i++)
			agent->ring().run_once(5);
	}
	void put(const std::string &s) { REQUIRE(write(sv[1], s.data(), s.size()) == (ssize_t)s.size()); }
};

} // namespace

TEST_CASE("uring source delivers data and end of stream", "[uring]")
{
	Fixture f;
	Collect c;
	EventSource &ev = f.agent->events();
	CHECK(ev.name() == "uring");
	ev.watch(f.sv[0], c);
	f.put("hello");
	f.spin();
	CHECK(c.got == "hello");
	shutdown(f.sv[1], SHUT_WR);
	f.spin();
	CHECK(c.end == 0);
	EventCounters k = ev.counters(f.sv[0]);
	CHECK(k.bytes == 5);
	CHECK(k.passed >= 1);
	ev.unwatch(f.sv[0]);
	f.spin();
	CHECK(ev.counters().bytes == 5);
}

TEST_CASE("uring source holds nothing back across pause and resume", "[uring]")
{
	Fixture f;
	Collect c;
	EventSource &ev = f.agent->events();
	ev.watch(f.sv[0], c);
	f.put("a");
	f.spin();
	ev.pause(f.sv[0]);
	f.spin();
	int calls = c.calls;
	std::string big(20000, 'x');
	f.put(big);
	f.spin();
	CHECK(c.calls == calls); // paused: no delivery
	ev.resume(f.sv[0]);
	CHECK(c.calls == calls); // resume never calls back synchronously
	f.spin();
	CHECK(c.got == "a" + big);
	ev.unwatch(f.sv[0]);
	f.spin();
}

TEST_CASE("uring source calls nothing after unwatch, even from a callback", "[uring]")
{
	Fixture f;
	Collect c;
	EventSource &ev = f.agent->events();
	c.src = &ev;
	c.fd = f.sv[0];
	c.unwatch_on_data = true;
	ev.watch(f.sv[0], c);
	f.put("one");
	f.spin();
	CHECK(c.got == "one");
	f.put("two");
	shutdown(f.sv[1], SHUT_WR);
	f.spin();
	CHECK(c.got == "one");
	CHECK(c.end == 1);
}
