// SPDX-License-Identifier: MIT
// kmodsrc_test: guest-side tests of libagent's KmodSource (the kmod event
// source) on a loaded agentfilt.ko. One unnumbered TAP line per test.
#include "agent/buffer_ring.hpp"
#include "agent/event_source.hpp"
#include "agent/ring.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace agent;
using Clock = std::chrono::steady_clock;

namespace {

int failures;

struct Fail {
	std::string why;
};

#define CHECK(cond, ...)                                                                      \
	do {                                                                                  \
		if (!(cond)) {                                                                \
			char b_[256];                                                         \
			std::snprintf(b_, sizeof(b_), __VA_ARGS__);                           \
			throw Fail{b_};                                                       \
		}                                                                             \
	} while (0)

void run(const char *name, const std::function<void()> &fn)
{
	try {
		fn();
		std::printf("ok - %s\n", name);
	} catch (const Fail &f) {
		std::printf("not ok - %s # %s\n", name, f.why.c_str());
		failures++;
	} catch (const std::exception &e) {
		std::printf("not ok - %s # exception: %s\n", name, e.what());
		failures++;
	}
	std::fflush(stdout);
}

void tcp_pair(int &c, int &s)
{
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(l >= 0 && bind(l, (sockaddr *)&a, sizeof(a)) == 0 && listen(l, 8) == 0, "listen");
	getsockname(l, (sockaddr *)&a, &len);
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(connect(c, (sockaddr *)&a, sizeof(a)) == 0, "connect");
	s = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
	CHECK(s >= 0, "accept");
	close(l);
}

unsigned char pattern(std::size_t i) { return static_cast<unsigned char>((i * 131 + i / 7) & 0xff); }

// Collects a stream and checks it against pattern().
struct Collector : StreamReader {
	std::size_t got = 0;
	bool bad = false;
	int ended = 1; // 1: not yet
	int calls_after_end = 0;
	std::function<void(Collector &)> hook;

	void on_data(std::span<const std::byte> b) override
	{
		if (ended != 1)
			calls_after_end++;
		for (std::size_t i = 0; i < b.size(); i++)
			if (static_cast<unsigned char>(b[i]) != pattern(got + i))
				bad = true;
		got += b.size();
		if (hook)
			hook(*this);
	}
	void on_end(int err) override
	{
		if (ended != 1)
			calls_after_end++;
		ended = err;
	}
};

// Sends n pattern bytes starting at offset off (blocking).
void send_pattern(int fd, std::size_t off, std::size_t n)
{
	std::vector<unsigned char> b(n);
	for (std::size_t i = 0; i < n; i++)
		b[i] = pattern(off + i);
	std::size_t done = 0;
	while (done < n) {
		ssize_t k = send(fd, b.data() + done, n - done, 0);
		CHECK(k > 0, "send: %s", strerror(errno));
		done += k;
	}
}

// Runs the ring until pred() or ms pass.
bool spin(Ring &ring, const std::function<bool()> &pred, int ms = 3000)
{
	auto end = Clock::now() + std::chrono::milliseconds(ms);
	while (!pred()) {
		if (Clock::now() > end)
			return false;
		ring.run_once(20);
	}
	return true;
}

std::unique_ptr<EventSource> kmod(Ring &ring, BufferRing &buffers)
{
	std::string err;
	auto src = make_event_source(EventKind::kmod, ring, buffers, &err);
	CHECK(src, "make kmod source: %s", err.c_str());
	return src;
}

void t_auto_picks_kmod()
{
	Ring ring;
	BufferRing buffers(ring, 0, 64, 4096);
	std::string err;
	auto src = make_event_source(EventKind::automatic, ring, buffers, &err);
	CHECK(src && src->name() == "kmod", "auto picked %s",
	      src ? std::string(src->name()).c_str() : err.c_str());
}

void t_transfer()
{
	Ring ring;
	BufferRing buffers(ring, 0, 64, 4096);
	auto src = kmod(ring, buffers);
	int c, s;
	tcp_pair(c, s);
	send_pattern(c, 0, 1000); // queued before the watch: still delivered
	Collector r;
	src->watch(s, r);
	const std::size_t total = 4 << 20;
	std::size_t sent = 1000;
	while (sent < total) {
		std::size_t n = std::min<std::size_t>(total - sent, 96 * 1024);
		send_pattern(c, sent, n);
		sent += n;
		spin(ring, [&] { return r.got >= sent; }, 3000);
	}
	shutdown(c, SHUT_WR);
	CHECK(spin(ring, [&] { return r.ended != 1; }), "no end of stream (got %zu)", r.got);
	CHECK(r.got == total && !r.bad && r.ended == 0, "got %zu of %zu, bad %d, end %d", r.got,
	      total, r.bad, r.ended);
	EventCounters k = src->counters(s), t = src->counters();
	CHECK(k.passed > 0 && k.data_ready >= k.passed && k.bytes == total && k.completions > 0,
	      "passed %llu data_ready %llu bytes %llu", (unsigned long long)k.passed,
	      (unsigned long long)k.data_ready, (unsigned long long)k.bytes);
	CHECK(k.filtered == k.data_ready + k.state_change + k.write_space + k.error_report - k.passed,
	      "filtered %llu", (unsigned long long)k.filtered);
	CHECK(t.passed >= k.passed && t.bytes >= total && t.completions >= k.passed,
	      "totals passed %llu/%llu bytes %llu completions %llu/%llu",
	      (unsigned long long)t.passed, (unsigned long long)k.passed,
	      (unsigned long long)t.bytes, (unsigned long long)t.completions,
	      (unsigned long long)k.completions);
	src->unwatch(s);
	close(c);
	close(s);
}

void t_reset()
{
	Ring ring;
	BufferRing buffers(ring, 0, 64, 4096);
	auto src = kmod(ring, buffers);
	int c, s;
	tcp_pair(c, s);
	Collector r;
	src->watch(s, r);
	send_pattern(c, 0, 100);
	CHECK(spin(ring, [&] { return r.got == 100; }), "data: got %zu", r.got);
	linger lg{1, 0};
	setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c);
	CHECK(spin(ring, [&] { return r.ended != 1; }), "reset not reported");
	CHECK(r.ended == -ECONNRESET, "on_end(%d)", r.ended);
	EventCounters k = src->counters(s);
	CHECK(k.error_report >= 1, "error_report %llu", (unsigned long long)k.error_report);
	src->unwatch(s);
	close(s);
}

void t_pause_resume()
{
	Ring ring;
	BufferRing buffers(ring, 0, 64, 4096);
	auto src = kmod(ring, buffers);
	int c, s;
	tcp_pair(c, s);
	Collector r;
	r.hook = [&](Collector &me) {
		if (me.got >= 100)
			src->pause(s);
	};
	src->watch(s, r);
	send_pattern(c, 0, 100);
	CHECK(spin(ring, [&] { return r.got >= 100; }), "first bytes");
	r.hook = nullptr;
	send_pattern(c, 100, 5000);
	spin(ring, [] { return false; }, 300);
	CHECK(r.got == 100, "delivered %zu bytes while paused", r.got);
	src->resume(s);
	CHECK(spin(ring, [&] { return r.got == 5100; }), "after resume got %zu", r.got);
	CHECK(!r.bad, "bytes corrupted");
	src->unwatch(s);
	close(c);
	close(s);
}

// The reader unwatches and destroys itself from inside on_data.
void t_unwatch_in_callback()
{
	Ring ring;
	BufferRing buffers(ring, 0, 64, 4096);
	auto src = kmod(ring, buffers);
	int c, s;
	tcp_pair(c, s);
	int calls = 0;
	struct SelfDestruct final : StreamReader {
		EventSource *src;
		int fd;
		int *calls;
		void on_data(std::span<const std::byte>) override
		{
			(*calls)++;
			src->unwatch(fd);
			delete this;
		}
		void on_end(int) override { (*calls)++; }
	};
	auto *r = new SelfDestruct;
	r->src = src.get();
	r->fd = s;
	r->calls = &calls;
	src->watch(s, *r);
	send_pattern(c, 0, 10);
	CHECK(spin(ring, [&] { return calls > 0; }), "no data");
	for (int i = 0; i < 5; i++) {
		send_pattern(c, 10 + i, 1);
		spin(ring, [] { return false; }, 50);
	}
	shutdown(c, SHUT_WR);
	spin(ring, [] { return false; }, 100);
	CHECK(calls == 1, "%d reader calls, want 1", calls);
	close(c);
	close(s);
}

// Unwatch, then close: no callback after unwatch, watch again works.
void t_many_sockets()
{
	Ring ring;
	BufferRing buffers(ring, 0, 64, 4096);
	auto src = kmod(ring, buffers);
	const int n = 200;
	std::vector<int> cs(n), ss(n);
	std::vector<Collector> rs(n);
	for (int i = 0; i < n; i++) {
		tcp_pair(cs[i], ss[i]);
		src->watch(ss[i], rs[i]);
	}
	for (int i = 0; i < n; i++) {
		send_pattern(cs[i], 0, 3000);
		shutdown(cs[i], SHUT_WR);
	}
	auto done = [&] {
		for (auto &r : rs)
			if (r.ended == 1)
				return false;
		return true;
	};
	CHECK(spin(ring, done, 10000), "not all streams ended");
	for (int i = 0; i < n; i++) {
		CHECK(rs[i].got == 3000 && !rs[i].bad && rs[i].ended == 0 && !rs[i].calls_after_end,
		      "stream %d: got %zu end %d", i, rs[i].got, rs[i].ended);
		src->unwatch(ss[i]);
		close(cs[i]);
		close(ss[i]);
	}
	EventCounters t = src->counters();
	CHECK(t.bytes == 3000ull * n, "bytes %llu", (unsigned long long)t.bytes);
}

// The source goes away with reads, polls and watches in flight.
void t_destroy_in_flight()
{
	Ring ring;
	BufferRing buffers(ring, 0, 64, 4096);
	int c, s;
	tcp_pair(c, s);
	Collector r;
	{
		auto src = kmod(ring, buffers);
		src->watch(s, r);
		send_pattern(c, 0, 10);
		spin(ring, [&] { return r.got == 10; });
	}
	send_pattern(c, 10, 10);
	spin(ring, [] { return false; }, 200);
	CHECK(r.got == 10, "delivered after the source was destroyed");
	auto src = kmod(ring, buffers); // the device was released: watch again
	src->watch(s, r);
	CHECK(spin(ring, [&] { return r.got == 20; }), "re-watch got %zu", r.got);
	src->unwatch(s);
	close(c);
	close(s);
}

// A reset reaches a reader paused by backpressure at once (the fault poll),
// not on its resume: a session whose other end stalled must still end.
void t_reset_while_paused()
{
	Ring ring;
	BufferRing buffers(ring, 0, 64, 4096);
	auto src = kmod(ring, buffers);
	int c, s;
	tcp_pair(c, s);
	Collector r;
	src->watch(s, r);
	send_pattern(c, 0, 100);
	CHECK(spin(ring, [&] { return r.got == 100; }), "first bytes");
	src->pause(s);
	send_pattern(c, 100, 1000);
	linger l{1, 0};
	setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(c);
	CHECK(spin(ring, [&] { return r.ended != 1; }), "a paused reader never heard of the reset");
	CHECK(r.ended == -ECONNRESET, "on_end(%d)", r.ended);
	src->unwatch(s);
	close(s);
}

// A peer that half-closes and then idles costs no completions while the
// reader waits (the fault poll is edge-triggered), and the end of stream
// comes on resume.
void t_half_close_idle()
{
	Ring ring;
	BufferRing buffers(ring, 0, 64, 4096);
	auto src = kmod(ring, buffers);
	int c, s;
	tcp_pair(c, s);
	Collector r;
	src->watch(s, r);
	src->pause(s);
	shutdown(c, SHUT_WR);
	spin(ring, [] { return false; }, 200);
	std::uint64_t before = ring.completions();
	spin(ring, [] { return false; }, 500);
	std::uint64_t idle = ring.completions() - before;
	CHECK(idle <= 1, "%llu completions in 500 ms of a paused, half-closed socket",
	      (unsigned long long)idle);
	CHECK(r.ended == 1, "the end came while paused (%d)", r.ended);
	src->resume(s);
	CHECK(spin(ring, [&] { return r.ended == 0; }), "no end of stream after resume (%d)",
	      r.ended);
	src->unwatch(s);
	close(c);
	close(s);
}

} // namespace

int main()
{
	run("kmodsrc: auto picks kmod when /dev/agentfilt exists", t_auto_picks_kmod);
	run("kmodsrc: 4 MiB transfer, EOF and counters", t_transfer);
	run("kmodsrc: peer reset reported through the error poll", t_reset);
	run("kmodsrc: pause in on_data, resume delivers the rest", t_pause_resume);
	run("kmodsrc: unwatch and delete the reader inside on_data", t_unwatch_in_callback);
	run("kmodsrc: 200 sockets, data and EOF each", t_many_sockets);
	run("kmodsrc: source destroyed with operations in flight", t_destroy_in_flight);
	run("kmodsrc: a reset reaches a paused reader at once", t_reset_while_paused);
	run("kmodsrc: a paused half-closed socket costs no completions", t_half_close_idle);
	return failures ? 1 : 0;
}
