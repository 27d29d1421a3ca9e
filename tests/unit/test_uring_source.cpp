// SPDX-License-Identifier: MIT
// The uring event source against real sockets: delivery, end of stream,
// pause/resume (nothing delivered while paused, nothing lost), unwatch.
#include "agent/agent.hpp"
#include "support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
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

namespace {

// A pull mode reader: reads for itself, a few bytes per turn if asked to.
struct Puller final : StreamReader {
	int fd = -1;
	std::string got;
	int turns = 0;
	bool eof = false;
	std::size_t per_turn = 1 << 20;
	EventSource *src = nullptr;
	bool pause_after_turn = false;
	void on_data(std::span<const std::byte> b) override
	{
		got.append(reinterpret_cast<const char *>(b.data()), b.size());
	}
	void on_end(int) override { FAIL("on_end in pull mode"); }
	bool pulls() const override { return true; }
	Pulled on_readable() override
	{
		turns++;
		Pulled p;
		char buf[4096];
		while (p.bytes < per_turn) {
			ssize_t n = recv(fd, buf, std::min(sizeof(buf), per_turn - p.bytes),
					 MSG_DONTWAIT);
			if (n <= 0) {
				eof = eof || n == 0;
				return p;
			}
			got.append(buf, n);
			p.bytes += n;
		}
		p.drained = false;
		if (pause_after_turn)
			src->pause(fd);
		return p;
	}
};

} // namespace

TEST_CASE("uring source in pull mode signals data without taking it", "[uring][pull]")
{
	Fixture f;
	Puller p;
	p.fd = f.sv[0];
	EventSource &ev = f.agent->events();
	ev.watch(f.sv[0], p);
	f.spin();
	CHECK(p.turns == 0); // no data, no event
	f.put("pulled");
	f.spin();
	CHECK(p.got == "pulled"); // every byte came from the reader's own recv
	CHECK(p.turns >= 1);
	CHECK(ev.counters(f.sv[0]).bytes == 6);
	shutdown(f.sv[1], SHUT_WR);
	f.spin();
	CHECK(p.eof);
	ev.unwatch(f.sv[0]);
	f.spin();
}

TEST_CASE("uring source in pull mode gives a reader that stops early another turn",
	  "[uring][pull]")
{
	Fixture f;
	Puller p;
	p.fd = f.sv[0];
	p.per_turn = 1000;
	EventSource &ev = f.agent->events();
	ev.watch(f.sv[0], p);
	std::string big(10000, 'y');
	f.put(big);
	f.spin(40);
	CHECK(p.got == big);
	CHECK(p.turns >= 10);
	ev.unwatch(f.sv[0]);
	f.spin();
}

TEST_CASE("uring source in pull mode: no turn while paused, one after resume",
	  "[uring][pull]")
{
	Fixture f;
	Puller p;
	p.fd = f.sv[0];
	p.per_turn = 100;
	p.src = &f.agent->events();
	p.pause_after_turn = true;
	EventSource &ev = f.agent->events();
	ev.watch(f.sv[0], p);
	f.put(std::string(300, 'z'));
	f.spin();
	CHECK(p.turns == 1); // it paused itself after its first turn
	CHECK(p.got.size() == 100);
	p.pause_after_turn = false;
	ev.resume(f.sv[0]);
	CHECK(p.turns == 1); // never from inside resume()
	f.spin();
	CHECK(p.got.size() == 300);
	ev.unwatch(f.sv[0]);
	f.spin();
}

using test_support::reset_close;
using test_support::tcp_pair;

TEST_CASE("uring source: a reset reaches a paused reader at once", "[uring][fault]")
{
	Fixture f;
	Collect c;
	int ours, peer;
	tcp_pair(ours, peer);
	EventSource &ev = f.agent->events();
	ev.watch(ours, c);
	REQUIRE(write(peer, "abc", 3) == 3);
	f.spin();
	REQUIRE(c.got == "abc");
	ev.pause(ours);
	REQUIRE(write(peer, "more", 4) == 4);
	reset_close(peer);
	f.spin();
	// Paused, yet told: the stream is broken whatever was held.
	CHECK(c.end == -ECONNRESET);
	ev.unwatch(ours);
	f.spin();
	close(ours);
}

TEST_CASE("uring source: an idle half-closed socket costs no completions", "[uring][fault]")
{
	Fixture f;
	Collect c;
	int ours, peer;
	tcp_pair(ours, peer);
	EventSource &ev = f.agent->events();
	ev.watch(ours, c);
	ev.pause(ours); // as a session that waits for its other end
	shutdown(peer, SHUT_WR);
	f.spin();
	std::uint64_t before = f.agent->ring().completions();
	f.spin(40); // 200 ms of nothing
	CHECK(f.agent->ring().completions() - before <= 1);
	CHECK(c.end == 1); // paused: the end waits for resume
	ev.resume(ours);
	f.spin();
	CHECK(c.end == 0);
	ev.unwatch(ours);
	f.spin();
	close(ours);
	close(peer);
}
