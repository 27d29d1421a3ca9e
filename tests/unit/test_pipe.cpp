// SPDX-License-Identifier: MIT
// The zero-copy path's pipes against real TCP sockets on loopback.
#include "../../libagent/src/pipe.hpp"

#include "agent/net.hpp"
#include "support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

using agent::Pipe;

namespace {

// A connected TCP pair on 127.0.0.1: a writes, b reads.
struct TcpPair {
	int a = -1, b = -1;
	TcpPair()
	{
		test_support::tcp_pair(b, a); // a connects (writes), b is accepted
		REQUIRE(agent::set_nonblocking(a));
		REQUIRE(agent::set_nonblocking(b));
	}
	~TcpPair()
	{
		close(a);
		close(b);
	}
};

std::string pattern(std::size_t n)
{
	std::string s(n, '\0');
	for (std::size_t i = 0; i < n; i++)
		s[i] = static_cast<char>((i * 131 + i / 4093) & 0xff);
	return s;
}

// Reads what is there now.
void slurp(int fd, std::string &into)
{
	char buf[65536];
	ssize_t n;
	while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		into.append(buf, n);
}

} // namespace

TEST_CASE("pipe relays one socket's bytes to another, in order, none lost", "[pipe]")
{
	TcpPair in, out;
	const std::string data = pattern(3 << 20);
	std::string got;
	std::size_t sent = 0;
	Pipe p = Pipe::acquire(256 << 10);
	REQUIRE(p.valid());
	for (int i = 0; got.size() < data.size() && i < 100000; i++) {
		if (sent < data.size()) {
			ssize_t n = send(in.a, data.data() + sent,
					 std::min<std::size_t>(data.size() - sent, 1 << 20), MSG_DONTWAIT);
			if (n > 0)
				sent += n;
		}
		ssize_t f = p.fill_from(in.b, 256 << 10);
		CHECK((f > 0 || f == -EAGAIN));
		ssize_t d = p.drain_to(out.a);
		CHECK((d >= 0 || d == -EAGAIN));
		slurp(out.b, got);
	}
	CHECK(p.bytes() == 0);
	CHECK(got.size() == data.size());
	CHECK(got == data);
	Pipe::release(std::move(p));
}

TEST_CASE("pipe fill_from: -EAGAIN when nothing is there, 0 at end of stream", "[pipe]")
{
	TcpPair t;
	Pipe p = Pipe::acquire(64 << 10);
	CHECK(p.fill_from(t.b, 4096) == -EAGAIN);
	CHECK(send(t.a, "abc", 3, 0) == 3);
	usleep(10000);
	CHECK(p.fill_from(t.b, 4096) == 3);
	CHECK(p.bytes() == 3);
	shutdown(t.a, SHUT_WR);
	usleep(10000);
	CHECK(p.fill_from(t.b, 4096) == 0);
	CHECK(p.bytes() == 3);
}

TEST_CASE("pipe drain_to keeps what a full socket cannot take", "[pipe]")
{
	TcpPair in, out;
	int small = 16 << 10;
	setsockopt(out.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(out.b, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	const std::string data = pattern(200 << 10);
	Pipe p = Pipe::acquire(1 << 20);
	REQUIRE(p.fill_copy(data.data(), data.size()) == static_cast<ssize_t>(data.size()));
	// Nobody reads out.b: the socket fills and the rest stays in the pipe.
	ssize_t d = p.drain_to(out.a);
	CHECK((d > 0 || d == -EAGAIN));
	CHECK(p.bytes() > 0);
	CHECK(p.bytes() < data.size());
	std::string got;
	// Small windows open again slowly (window updates, the persist
	// timer): allow up to 5 s.
	for (int i = 0; got.size() < data.size() && i < 5000; i++) {
		slurp(out.b, got);
		ssize_t r = p.drain_to(out.a);
		CHECK((r >= 0 || r == -EAGAIN));
		if (r <= 0)
			usleep(1000);
	}
	CHECK(p.bytes() == 0);
	CHECK(got.size() == data.size());
	CHECK((got == data));
}

TEST_CASE("an empty pipe released to the pool is handed out again", "[pipe]")
{
	Pipe p = Pipe::acquire(64 << 10);
	REQUIRE(p.valid());
	Pipe::release(std::move(p));
	Pipe q = Pipe::acquire(64 << 10);
	CHECK(q.valid());
	CHECK(q.bytes() == 0);
}

TEST_CASE("discard empties a pipe that holds bytes, and it is reused clean", "[pipe]")
{
	Pipe p = Pipe::acquire(1 << 20);
	REQUIRE(p.valid());
	std::string data = pattern(300 << 10);
	REQUIRE(p.fill_copy(data.data(), data.size()) == static_cast<ssize_t>(data.size()));
	CHECK(p.discard());
	CHECK(p.bytes() == 0);
	Pipe::release(std::move(p));
	// The pipe the pool hands out next gives back only what is put in it:
	// the discarded bytes are gone from the kernel's pipe too.
	Pipe q = Pipe::acquire(1 << 20);
	REQUIRE(q.valid());
	std::string more(10, '#'); // unlike pattern()'s first bytes
	REQUIRE(q.fill_copy(more.data(), more.size()) == 10);
	std::string got(10, '\0');
	CHECK(q.read_into(got.data(), got.size()) == 10);
	CHECK(got == more);
}

TEST_CASE("the pool hands out only a pipe as large as asked", "[pipe]")
{
	Pipe small = Pipe::acquire(64 << 10);
	REQUIRE(small.valid());
	Pipe large = Pipe::acquire(1 << 20);
	REQUIRE(large.valid());
	std::size_t big = large.capacity();
	REQUIRE(big >= (1u << 20)); // root here: no per-user pipe limit
	Pipe::release(std::move(large));
	Pipe::release(std::move(small)); // the newest in the pool
	Pipe p = Pipe::acquire(1 << 20);
	CHECK(p.capacity() >= big);
	Pipe q = Pipe::acquire(64 << 10);
	CHECK(q.capacity() >= (64u << 10));
}
