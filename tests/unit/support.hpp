// SPDX-License-Identifier: MIT
// What several unit tests need: an agent on the uring source with a small
// buffer pool, a listener on 127.0.0.1, a connected TCP pair, a reset.
#pragma once

#include "agent/agent.hpp"

#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace test_support {

inline std::unique_ptr<agent::Agent> uring_agent()
{
	std::string err;
	agent::AgentOptions o;
	o.events = agent::EventKind::uring;
	o.buffer_count = 64;
	o.buffer_size = 4096;
	auto a = agent::Agent::create(o, &err);
	REQUIRE(a);
	return a;
}

// A listening socket on 127.0.0.1 (a free port); sa gets its address.
inline int loopback_listener(sockaddr_in &sa, int backlog = 64)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	sa = {};
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	REQUIRE(bind(l, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0);
	REQUIRE(listen(l, backlog) == 0);
	REQUIRE(getsockname(l, reinterpret_cast<sockaddr *>(&sa), &len) == 0);
	return l;
}

// A connected TCP pair on loopback: ours is the accepted end, peer the
// connecting one.
inline void tcp_pair(int &ours, int &peer)
{
	sockaddr_in sa;
	int l = loopback_listener(sa, 1);
	peer = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(connect(peer, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0);
	ours = accept(l, nullptr, nullptr);
	REQUIRE(ours >= 0);
	close(l);
}

// Runs the agent's ring and timers until done() or ms have passed.
inline void run_until(agent::Agent &a, const std::function<bool()> &done, int ms = 3000)
{
	auto end = agent::Agent::Clock::now() + std::chrono::milliseconds(ms);
	while (!done() && agent::Agent::Clock::now() < end) {
		a.ring().run_once(10);
		a.timers().advance(agent::Agent::Clock::now());
	}
}

// Closes fd with an RST (SO_LINGER 0).
inline void reset_close(int fd)
{
	linger l{1, 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

} // namespace test_support
