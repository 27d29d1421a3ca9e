// SPDX-License-Identifier: MIT
// Conn lifetimes: a close cancels what is in flight, so a peer that never
// reads cannot keep the socket (or its reset) alive; a close that cannot
// flush is reset after the linger time; a connect that does not complete
// fails with ETIMEDOUT.
#include "../../libagent/src/conn.hpp"
#include "agent/agent.hpp"
#include "agent/net.hpp"
#include "heap_count.hpp"
#include "support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <span>
#include <string>
#include <thread>
#include <vector>

using namespace agent;
using namespace std::chrono_literals;

namespace {

struct Owner final : ConnOwner {
	int failed = 0;
	int ops = 0;
	void conn_connected(Conn &) override {}
	void conn_sent(Conn &) override {}
	void conn_failed(Conn &, int err) override { failed = err; }
	void conn_op_done(Conn &) override { ops++; }
};

// A connected TCP pair on loopback: a is ours, b the peer's.
struct Pair {
	int a = -1, b = -1;
	Pair() { test_support::tcp_pair(a, b); }
	~Pair()
	{
		if (b >= 0)
			close(b);
	}
};

std::unique_ptr<Agent> make_agent() { return test_support::uring_agent(); }

int tcp_state(int fd)
{
	tcp_info ti{};
	socklen_t len = sizeof(ti);
	REQUIRE(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0);
	return ti.tcpi_state;
}

using test_support::run_until;

} // namespace

TEST_CASE("close(reset) of a conn whose peer never reads releases it at once", "[conn]")
{
	auto agent = make_agent();
	Pair p;
	Owner owner;
	auto c = std::make_unique<Conn>(*agent, owner, p.a, true);
	// Far more than the socket buffers hold: a sendmsg stays in flight.
	std::vector<std::byte> big(32 << 20);
	c->send(big);
	run_until(*agent, [] { return false; }, 300);
	REQUIRE(c->busy());
	c->close(true);
	run_until(*agent, [&] { return !c->busy(); });
	CHECK_FALSE(c->busy());
	c.reset();
	// The peer got the reset: its socket is closed, not ESTABLISHED.
	CHECK(tcp_state(p.b) == TCP_CLOSE);
}

TEST_CASE("close_when_sent that cannot flush resets after the linger time", "[conn]")
{
	auto agent = make_agent();
	Pair p;
	Owner owner;
	auto c = std::make_unique<Conn>(*agent, owner, p.a, true);
	std::vector<std::byte> big(32 << 20);
	c->send(big);
	c->close_when_sent(200ms);
	CHECK(c->state() == Conn::State::draining);
	// The agent's tick drives the linger timer.
	run_until(*agent, [&] { return !c->busy(); }, 5000);
	CHECK(c->closed());
	CHECK_FALSE(c->busy());
	c.reset();
	CHECK(tcp_state(p.b) == TCP_CLOSE);
}

TEST_CASE("a connect that does not complete fails with ETIMEDOUT", "[conn]")
{
	auto agent = make_agent();
	Owner owner;
	// A listener with a full backlog and SYN cookies off would drop SYNs;
	// a non-routable address (TEST-NET-1) never answers at all.
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	std::string err;
	auto to = parse_address("192.0.2.1:9", &err);
	REQUIRE(to);
	auto c = std::make_unique<Conn>(*agent, owner, fd, false);
	c->connect(*to, 300ms);
	run_until(*agent, [&] { return owner.failed != 0; }, 5000);
	// Either our timer (ETIMEDOUT) or the kernel's quick answer (no route).
	CHECK(owner.failed != 0);
	if (owner.failed == -ETIMEDOUT)
		CHECK(c->state() == Conn::State::connecting);
	c->close(false);
	run_until(*agent, [&] { return !c->busy(); });
	CHECK_FALSE(c->busy());
}

TEST_CASE("a connection holds no heap for its send queue while nothing waits to be sent",
	  "[conn]")
{
	// A session has five connections, idle most of their lives: an empty
	// send queue must cost nothing (a std::deque took 568 B each). No
	// CHECK between the readings: Catch2 allocates for its assertions.
	auto agent = make_agent();
	Owner owner;
	const std::string msg(100, 'x');
	// True if the peer got msg whole.
	auto send_all = [&](Conn &c, int peer) {
		c.send(std::as_bytes(std::span(msg)));
		run_until(*agent, [&] { return c.queued() == 0 && !c.busy(); });
		char buf[256];
		return c.queued() == 0 &&
		       recv(peer, buf, sizeof(buf), 0) == static_cast<ssize_t>(msg.size());
	};
	{
		// Once first: the block pool keeps the block it lends.
		Pair p;
		Conn c(*agent, owner, p.a, true);
		REQUIRE(send_all(c, p.b));
	}
	Pair p;
	std::size_t before = test_support::heap_live_bytes();
	Conn c(*agent, owner, p.a, true);
	std::size_t made = test_support::heap_live_bytes();
	bool sent = send_all(c, p.b) && send_all(c, p.b);
	std::size_t after = test_support::heap_live_bytes();
	REQUIRE(sent);
	CHECK(made == before);
	CHECK(after == before);
}
