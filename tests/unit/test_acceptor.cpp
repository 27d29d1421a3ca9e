// SPDX-License-Identifier: MIT
// The acceptor out of descriptors: it pauses instead of spinning on EMFILE,
// and accepts again once descriptors are free; stop() cancels the accept.
#include "../../libagent/src/acceptor.hpp"
#include "agent/agent.hpp"
#include "agent/net.hpp"
#include "support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

using namespace agent;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<Agent> make_agent() { return test_support::uring_agent(); }

int listener(sockaddr_in &sa) { return test_support::loopback_listener(sa); }

void run_for(Agent &agent, int ms)
{
	test_support::run_until(agent, [] { return false; }, ms);
}

} // namespace

TEST_CASE("accept pauses at EMFILE instead of spinning, and resumes", "[acceptor]")
{
#ifdef __SANITIZE_ADDRESS__
	// The sanitizers probe memory through a pipe of their own (UBSan's
	// vptr check, first call of a type): out of descriptors they report
	// every object invalid. The plain unit suite runs this test.
	SKIP("a sanitizer build cannot itself run out of descriptors");
#endif
	auto agent = make_agent();
	sockaddr_in sa;
	int l = listener(sa);
	std::vector<int> accepted;
	Acceptor acc(*agent, l, [&](int fd) { accepted.push_back(fd); });

	// Clients first (their sockets count against our limit too).
	std::vector<int> clients;
	for (int i = 0; i < 4; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		REQUIRE(connect(c, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0);
		clients.push_back(c);
	}
	// Then no descriptor left: every accept fails with EMFILE.
	// A limit just above what is open now, then every slot below it taken.
	rlimit saved{};
	REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
	int lowest_free = dup(0);
	REQUIRE(lowest_free >= 0);
	close(lowest_free);
	rlimit tight = saved;
	tight.rlim_cur = lowest_free + 16;
	REQUIRE(setrlimit(RLIMIT_NOFILE, &tight) == 0);
	std::vector<int> hog;
	for (int fd = dup(0); fd >= 0; fd = dup(0))
		hog.push_back(fd);
	REQUIRE(errno == EMFILE);

	std::uint64_t before = agent->ring().completions();
	run_for(*agent, 500);
	std::uint64_t spent = agent->ring().completions() - before;
	CHECK(accepted.empty());
	// Paused: a retry every 100 ms (an accept failure and a cancel each),
	// not a completion per turn of the loop.
	CHECK(spent < 60);

	for (int fd : hog)
		close(fd);
	REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
	run_for(*agent, 500);
	CHECK(accepted.size() == clients.size());

	acc.stop();
	run_for(*agent, 100);
	CHECK_FALSE(acc.busy());
	for (int fd : accepted)
		close(fd);
	for (int c : clients)
		close(c);
}
