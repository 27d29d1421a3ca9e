// SPDX-License-Identifier: MIT
#include "agent/net.hpp"

#include <catch2/catch_test_macros.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

using namespace agent;

TEST_CASE("addresses parse and print", "[net]")
{
	std::string err;
	auto a = parse_address("127.0.0.1:8080", &err);
	REQUIRE(a);
	CHECK(a->str() == "127.0.0.1:8080");
	a = parse_address("[::1]:443", &err);
	REQUIRE(a);
	CHECK(a->str() == "[::1]:443");
	a = parse_address("localhost:1", &err);
	REQUIRE(a);
	CHECK(a->str() == "127.0.0.1:1");
	a = parse_address(":9000", &err);
	REQUIRE(a);
	CHECK(a->str() == "0.0.0.0:9000");
}

TEST_CASE("bad addresses say why", "[net]")
{
	std::string err;
	CHECK_FALSE(parse_address("127.0.0.1:70000", &err));
	CHECK(err.find("port") != std::string::npos);
	CHECK_FALSE(parse_address("127.0.0.1:", &err));
	CHECK_FALSE(parse_address("127.0.0.1:80x", &err));
	CHECK_FALSE(parse_address("example.com:80", &err));
	CHECK(err.find("numeric") != std::string::npos);
	CHECK_FALSE(parse_address("[::1:80", &err));
}

namespace {

std::string congestion_of(int fd)
{
	char name[16] = {};
	socklen_t len = sizeof(name);
	if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) < 0)
		return "?";
	return std::string(name, strnlen(name, len));
}

} // namespace

TEST_CASE("a socket and what a listener accepts get the congestion control asked for", "[net]")
{
	// reno is built into every kernel and always allowed.
	auto lo = parse_address("127.0.0.1:0", nullptr);
	REQUIRE(lo);
	int lfd = listen_tcp(*lo);
	REQUIRE(lfd >= 0);
	REQUIRE(set_congestion(lfd, "reno") == 0);
	auto bound = parse_address(local_address(lfd), nullptr);
	REQUIRE(bound);

	int cfd = socket_for(*bound, "reno");
	REQUIRE(cfd >= 0);
	CHECK(congestion_of(cfd) == "reno");
	REQUIRE(connect(cfd, bound->sa(), bound->len) == 0);
	int afd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
	REQUIRE(afd >= 0);
	CHECK(congestion_of(afd) == "reno");
	close(afd);
	close(cfd);
	close(lfd);
}

TEST_CASE("an unknown congestion control is refused and named", "[net]")
{
	auto lo = parse_address("127.0.0.1:1", nullptr);
	REQUIRE(lo);
	CHECK(socket_for(*lo, "no-such-cc") == -ENOENT);
	std::string msg = congestion_error(-ENOENT, "no-such-cc");
	CHECK(msg.find("'no-such-cc' is not available") != std::string::npos);
	CHECK(msg.find("reno") != std::string::npos); // the list of what is there
}
