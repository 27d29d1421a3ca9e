// SPDX-License-Identifier: MIT
// Conn lifetimes: a close cancels what is in flight, so a peer that never
// reads cannot keep the socket (or its reset) alive; a close that cannot
// flush is reset after the linger time; a connect that does not complete
// fails with ETIMEDOUT.
#include "../../libagent/src/conn.hpp"
#include "agent/agent.hpp"
#include "agent/net.hpp"

#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
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
	Pair()
	{
		int l = socket(AF_INET, SOCK_STREAM, 0);
		sockaddr_in sa{};
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t len = sizeof(sa);
		REQUIRE(bind(l, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0);
		REQUIRE(listen(l, 1) == 0);
		REQUIRE(getsockname(l, reinterpret_cast<sockaddr *>(&sa), &len) == 0);
		a = socket(AF_INET, SOCK_STREAM, 0);
		REQUIRE(connect(a, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0);
		b = accept(l, nullptr, nullptr);
		REQUIRE(b >= 0);
		close(l);
	}
	~Pair()
	{
		if (b >= 0)
			close(b);
	}
};

std::unique_ptr<Agent> make_agent()
{
	std::string err;
	AgentOptions o;
	o.events = EventKind::uring;
	o.buffer_count = 64;
	o.buffer_size = 4096;
	auto a = Agent::create(o, &err);
	REQUIRE(a);
	return a;
}

int tcp_state(int fd)
{
	tcp_info ti{};
	socklen_t len = sizeof(ti);
	REQUIRE(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0);
	return ti.tcpi_state;
}

void spin_until(Agent &agent, const std::function<bool()> &done, int ms = 3000)
{
	for (int i = 0; i < ms / 10 && !done(); i++)
		agent.ring().run_once(10);
}

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
	spin_until(*agent, [] { return false; }, 300);
	REQUIRE(c->busy());
	c->close(true);
	spin_until(*agent, [&] { return !c->busy(); });
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
	auto t0 = Agent::Clock::now();
	while (c->busy() && Agent::Clock::now() - t0 < 5s) {
		agent->ring().run_once(10);
		agent->timers().advance(Agent::Clock::now());
	}
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
	auto t0 = Agent::Clock::now();
	while (owner.failed == 0 && Agent::Clock::now() - t0 < 5s) {
		agent->ring().run_once(10);
		agent->timers().advance(Agent::Clock::now());
	}
	// Either our timer (ETIMEDOUT) or the kernel's quick answer (no route).
	CHECK(owner.failed != 0);
	if (owner.failed == -ETIMEDOUT)
		CHECK(c->state() == Conn::State::connecting);
	c->close(false);
	spin_until(*agent, [&] { return !c->busy(); });
	CHECK_FALSE(c->busy());
}
