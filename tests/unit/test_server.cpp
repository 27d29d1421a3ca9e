// SPDX-License-Identifier: MIT
// Servers as a library user sees them: a bad SessionConfig is refused with
// a reason (never a crash), and a server may be destroyed while its agent
// runs and sessions are open: they end, and nothing in flight is left
// pointing at freed memory (the sanitizer build checks that part).
#include "agent/net.hpp"
#include "agent/proxy.hpp"
#include "support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fcntl.h>
#include <stdexcept>

using namespace agent;

namespace {

std::unique_ptr<Agent> make_agent() { return test_support::uring_agent(); }

struct Echo final : SessionApp {
	void on_data(SessionHandle &s, std::span<const std::byte> b) override { s.send(b); }
};

int listener(Address &bound)
{
	std::string err;
	auto any = parse_address("127.0.0.1:0", &err);
	REQUIRE(any);
	int fd = listen_tcp(*any);
	REQUIRE(fd >= 0);
	sockaddr_in sa{};
	socklen_t len = sizeof(sa);
	REQUIRE(getsockname(fd, reinterpret_cast<sockaddr *>(&sa), &len) == 0);
	bound = *parse_address("127.0.0.1:" + std::to_string(ntohs(sa.sin_port)), &err);
	return fd;
}

} // namespace

TEST_CASE("validate() names what is wrong with a SessionConfig", "[config]")
{
	SessionConfig ok;
	CHECK(validate(ok).empty());
	SessionConfig c = ok;
	c.streams = 0;
	CHECK(validate(c).find("streams") != std::string::npos);
	c = ok;
	c.streams = 65;
	CHECK(validate(c).find("streams") != std::string::npos);
	c = ok;
	c.chunk = 0;
	CHECK(validate(c).find("chunk") != std::string::npos);
	c = ok;
	c.chunk = (1u << 20) + 1;
	CHECK(validate(c).find("chunk") != std::string::npos);
	c = ok;
	c.long_path_chunk = (1u << 20) + 1;
	CHECK(validate(c).find("long_path_chunk") != std::string::npos);
	c.long_path_chunk = 0; // off: frames are always chunk
	CHECK(validate(c).empty());
	c = ok;
	c.linger_timeout = std::chrono::milliseconds(0);
	CHECK_FALSE(validate(c).empty());
	c = ok;
	c.max_pending = 0;
	CHECK_FALSE(validate(c).empty());
}

TEST_CASE("a server refuses a config it cannot run, and closes the listener", "[config]")
{
	auto agent = make_agent();
	Address peer;
	int fd = listener(peer);
	SessionConfig c;
	c.streams = 0;
	CHECK_THROWS_AS(StripeServer(*agent, c, fd, peer), std::invalid_argument);
	// The listener was the server's to close.
	CHECK(fcntl(fd, F_GETFD) == -1);
}

TEST_CASE("servers destroyed while the agent runs end their sessions cleanly", "[server]")
{
	auto agent = make_agent();
	Address join_addr, stripe_addr;
	int jfd = listener(join_addr);
	int sfd = listener(stripe_addr);
	SessionConfig cfg;
	cfg.streams = 2;
	auto join = std::make_unique<JoinServer>(*agent, cfg, jfd,
						 [] { return std::make_unique<Echo>(); });
	auto stripe = std::make_unique<StripeServer>(*agent, cfg, sfd, join_addr);

	int c = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(::connect(c, stripe_addr.sa(), stripe_addr.len) == 0);
	REQUIRE(send(c, "ping", 4, 0) == 4);
	char buf[16];
	ssize_t got = 0;
	for (int i = 0; i < 300 && got < 4; i++) {
		agent->ring().run_once(10);
		ssize_t n = recv(c, buf + got, sizeof(buf) - got, MSG_DONTWAIT);
		if (n > 0)
			got += n;
	}
	REQUIRE(got == 4);
	CHECK(std::memcmp(buf, "ping", 4) == 0);
	CHECK(stripe->stats().active == 1);
	CHECK(join->stats().active == 1);

	// Gone while the session is open and operations are in flight.
	join.reset();
	stripe.reset();
	bool ended = false;
	for (int i = 0; i < 300 && !ended; i++) {
		agent->ring().run_once(10);
		ssize_t n = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
		ended = n == 0 || (n < 0 && errno != EAGAIN);
	}
	CHECK(ended);
	close(c);
	// The agent goes on, and frees what the servers left once idle.
	for (int i = 0; i < 30; i++)
		agent->ring().run_once(10);
}
