// SPDX-License-Identifier: MIT
// A join-side session's two directions driven over socketpairs by a
// scripted event source: the test plays the stripe side, writing frames
// into the streams' far ends and reading what the session sends back.
// Receiver: frames from several streams delivered in sequence (copied to an
// application, or spliced into a target socket), duplicates dropped, ACKs
// sent, a forged frame ending the session. Sender: an application's bytes
// framed over the streams, and the frames of a lost stream sent again on
// the others.
#include "../../libagent/src/pipe.hpp"
#include "../../libagent/src/session.hpp"

#include "agent/net.hpp"
#include "scripted_source.hpp"
#include "support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

using namespace agent;
using test_support::ScriptedSource;

namespace {

struct Frame {
	wire::Header h;
	std::string payload;
};

// The stripe side's end of one stream: writes frames (queued, written as
// the session reads), reads the session's.
struct FarEnd {
	int fd = -1;
	std::vector<std::byte> buf, out;
	bool eof = false;

	// A frame, or only its first `cut` payload bytes (a stream that stalls
	// inside it).
	void send(wire::Type type, std::uint64_t seq, const std::string &payload = {},
		  std::size_t cut = SIZE_MAX, std::uint8_t flags = 0)
	{
		wire::Header h;
		h.type = type;
		h.flags = flags;
		h.seq = seq;
		h.length = static_cast<std::uint32_t>(payload.size());
		std::byte hdr[wire::kHeaderSize];
		wire::encode_header(h, hdr);
		out.insert(out.end(), hdr, hdr + wire::kHeaderSize);
		for (char c : payload.substr(0, cut))
			out.push_back(std::byte(c));
		flush();
	}
	// The stripe side closes this stream (no FIN frame).
	void close_now()
	{
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	void flush()
	{
		ssize_t n = out.empty() ? 0 : ::send(fd, out.data(), out.size(), MSG_DONTWAIT);
		if (n > 0)
			out.erase(out.begin(), out.begin() + n);
	}
	// Every whole frame that has arrived.
	std::vector<Frame> frames()
	{
		std::byte tmp[65536];
		for (;;) {
			ssize_t n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
			if (n == 0)
				eof = true;
			if (n <= 0)
				break;
			buf.insert(buf.end(), tmp, tmp + n);
		}
		std::vector<Frame> out;
		std::size_t off = 0;
		while (buf.size() - off >= wire::kHeaderSize) {
			Frame f;
			REQUIRE(wire::decode_header(std::span(buf).subspan(off).first<wire::kHeaderSize>(),
						    f.h) == wire::Status::ok);
			if (buf.size() - off - wire::kHeaderSize < f.h.length)
				break;
			auto *p = reinterpret_cast<const char *>(buf.data() + off + wire::kHeaderSize);
			f.payload.assign(p, f.h.length);
			out.push_back(std::move(f));
			off += wire::kHeaderSize + f.h.length;
		}
		buf.erase(buf.begin(), buf.begin() + off);
		return out;
	}
};

struct App final : SessionApp {
	SessionHandle *handle = nullptr;
	std::string got;
	bool fin = false, closed = false;
	std::string reason;
	void on_open(SessionHandle &h) override { handle = &h; }
	void on_data(SessionHandle &, std::span<const std::byte> b) override
	{
		got.append(reinterpret_cast<const char *>(b.data()), b.size());
	}
	void on_fin(SessionHandle &) override { fin = true; }
	void on_close(SessionHandle &, std::string_view why) override
	{
		closed = true;
		reason = why;
	}
};

struct Harness final : SessionHost {
	ScriptedSource *source = nullptr;
	std::unique_ptr<Agent> agent = ScriptedSource::agent(&source);
	SessionConfig cfg;
	ProxyStats stats;
	std::unique_ptr<Session> session;
	std::vector<FarEnd> far;
	bool finished = false;
	App *short_app = nullptr; // the application start_short() gave it

	void session_finished(Session *) override { finished = true; }
	// As the join server does: the session starts with the streams it has.
	bool start_short(Session &) override
	{
		short_app = &start_app();
		return true;
	}

	// A join-side session whose count streams are socketpairs; pull: the
	// zero-copy reader (as join.cpp sets it up for a target socket). Only
	// the first `joined` are added (the others have not come).
	Harness(unsigned count, bool pull, std::size_t chunk = 1 << 20, unsigned joined = ~0u)
	{
		REQUIRE(agent);
		cfg.chunk = chunk;
		session = std::make_unique<Session>(*agent, cfg, *this, stats, 42, count);
		for (unsigned i = 0; i < count; i++) {
			far.emplace_back();
			if (i < joined)
				REQUIRE(session->add_stream(new_stream(i, pull), {}));
		}
		REQUIRE(session->complete() == (joined >= count));
	}
	// Stream i over a new socketpair, whose far end is far[i].
	std::unique_ptr<Stream> new_stream(unsigned i, bool pull)
	{
		int fds[2];
		REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
		REQUIRE(set_nonblocking(fds[0]));
		auto st = std::make_unique<Stream>(*agent, nullptr, fds[0], true, i);
		st->pull = pull;
		st->peer = "socketpair";
		st->watch();
		far[i].close_now();
		far[i].fd = fds[1];
		return st;
	}
	~Harness()
	{
		if (!session->closing())
			session->abort(wire::ErrorCode::internal, "test over", false);
		run_until([&] { return session->idle(); }, 1000);
		session.reset();
		for (auto &f : far)
			f.close_now();
	}
	// The plain end is an application (the copy path); the session owns it.
	App &start_app()
	{
		auto app = std::make_unique<App>();
		App &a = *app;
		session->start_app(std::move(app));
		return a;
	}
	// The plain end is a TCP target (the session connects to a listener
	// here): the target's end of that connection, non-blocking.
	int start_target()
	{
		sockaddr_in sa;
		int l = test_support::loopback_listener(sa);
		REQUIRE(set_nonblocking(l));
		auto target = parse_address("127.0.0.1:" + std::to_string(ntohs(sa.sin_port)),
					    nullptr);
		REQUIRE(target);
		session->start_target(*target);
		int fd = -1;
		run_until([&] { return (fd = accept4(l, nullptr, nullptr, SOCK_NONBLOCK)) >= 0; });
		close(l);
		REQUIRE(fd >= 0);
		return fd;
	}
	// What has come to the target's end fd, appended to got.
	static void take(int fd, std::string &got)
	{
		char buf[65536];
		ssize_t n;
		while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
			got.append(buf, n);
	}
	// Events, completions and timers until done() or ms have passed.
	void run_until(const std::function<bool()> &done, int ms = 3000)
	{
		auto end = Agent::Clock::now() + std::chrono::milliseconds(ms);
		while (!done() && Agent::Clock::now() < end) {
			for (auto &f : far)
				f.flush();
			source->deliver();
			agent->ring().run_once(1);
			agent->tick();
		}
	}
};

std::string pattern(std::size_t n, unsigned salt)
{
	std::string s(n, '\0');
	for (std::size_t i = 0; i < n; i++)
		s[i] = static_cast<char>('a' + (i * 7 + salt) % 26);
	return s;
}

std::size_t open_fds()
{
	std::filesystem::directory_iterator dir("/proc/self/fd");
	return static_cast<std::size_t>(std::distance(begin(dir), end(dir)));
}

// The highest cumulative ACK among frames.
std::uint64_t last_ack(const std::vector<Frame> &frames)
{
	std::uint64_t n = 0;
	for (auto &f : frames)
		if (f.h.type == wire::Type::ack)
			n = std::max(n, f.h.seq);
	return n;
}

} // namespace

TEST_CASE("frames from two streams reach the application in sequence, ACKed",
	  "[session_io]")
{
	Harness t(2, false);
	App &a = t.start_app();
	t.far[1].send(wire::Type::data, 1, "second;");
	t.run_until([&] { return false; }, 50);
	CHECK(a.got.empty()); // held: DATA 0 has not come
	t.far[0].send(wire::Type::data, 0, "first;");
	t.far[1].send(wire::Type::data, 0, "first;"); // a copy, as after a loss
	t.far[0].send(wire::Type::fin, 2);
	t.run_until([&] { return a.fin; });
	CHECK(a.got == "first;second;");
	CHECK(a.fin);
	CHECK(t.stats.duplicates_dropped == 1);
	// The final ACK goes on every stream: both ends see DATA 0 and 1 covered.
	std::vector<Frame> f0, f1;
	t.run_until([&] {
		for (auto &f : t.far[0].frames())
			f0.push_back(f);
		for (auto &f : t.far[1].frames())
			f1.push_back(f);
		return last_ack(f0) == 2 && last_ack(f1) == 2;
	});
	CHECK(last_ack(f0) == 2);
	CHECK(last_ack(f1) == 2);
	CHECK(!a.closed);
}

namespace {

using Order = std::vector<std::pair<unsigned, std::uint64_t>>; // (stream, DATA seq)

// Sends DATA seq 0..n-1 (sizes[seq] bytes each) on the streams order says,
// in that order, then a copy of one of them; checks that the target gets
// each once, in sequence, and the copy is dropped.
void check_in_sequence(Harness &t, int tfd, const std::vector<std::size_t> &sizes,
		       const Order &order, std::pair<unsigned, std::uint64_t> copy)
{
	std::map<std::uint64_t, std::string> payload;
	std::string want;
	for (std::uint64_t s = 0; s < sizes.size(); s++) {
		payload[s] = pattern(sizes[s], static_cast<unsigned>(s));
		want += payload[s];
	}
	for (auto [stream, seq] : order)
		t.far[stream].send(wire::Type::data, seq, payload[seq]);
	t.far[copy.first].send(wire::Type::data, copy.second, payload[copy.second]);
	std::string got;
	t.run_until([&] {
		Harness::take(tfd, got);
		return got.size() >= want.size() && t.stats.duplicates_dropped == 1;
	});
	CHECK(got.size() == want.size());
	CHECK(got == want);
	CHECK(t.stats.duplicates_dropped == 1);
	CHECK(!t.session->closing());
}

} // namespace

TEST_CASE("the zero-copy receiver splices frames from parked streams in sequence",
	  "[session_io]")
{
	Harness t(3, true);
	int tfd = t.start_target();
	// Each stream's frames go out in order, but the streams run apart:
	// 2 and 1 arrive before 0, and 5 before 3 and 4.
	check_in_sequence(t, tfd, {100000, 101000, 102000, 103000, 104000, 105000},
			  {{2, 2}, {1, 1}, {2, 5}, {0, 0}, {0, 3}, {1, 4}}, {1, 3});
	close(tfd);
}

TEST_CASE("small frames (copied) and large ones (spliced) reach the target in sequence",
	  "[session_io]")
{
	Harness t(3, true);
	int tfd = t.start_target();
	// Sizes on both sides of the reader's small-frame limit, on streams
	// that run apart: the small ones wait their turn like the others.
	check_in_sequence(t, tfd, {100, 200000, 64, 4096, 4097, 1, 150000, 30},
			  {{1, 1}, {2, 2}, {0, 0}, {2, 5}, {1, 4}, {0, 3}, {0, 6}, {1, 7}}, {2, 4});
	close(tfd);
}

TEST_CASE("a target's small message goes as one frame, a burst after it in sequence",
	  "[session_io]")
{
	Harness t(2, true);
	int tfd = t.start_target();
	std::map<std::uint64_t, std::string> data; // DATA seq -> payload, from both streams
	auto collect = [&] {
		for (auto &f : t.far)
			for (auto &fr : f.frames())
				if (fr.h.type == wire::Type::data) {
					CHECK(data.count(fr.h.seq) == 0);
					data[fr.h.seq] = fr.payload;
				}
	};
	// A 64-byte answer: read into memory whole, one frame (copied).
	const std::string small = pattern(64, 3);
	REQUIRE(::send(tfd, small.data(), small.size(), 0) == 64);
	t.run_until([&] {
		collect();
		return !data.empty();
	});
	REQUIRE(data.size() == 1);
	CHECK(data.begin()->first == 0);
	CHECK(data.begin()->second == small);

	// A burst larger than the first read: its frames follow in sequence.
	const std::string burst = pattern(300000, 5);
	std::size_t off = 0;
	std::string got;
	t.run_until([&] {
		if (off < burst.size()) {
			ssize_t n = ::send(tfd, burst.data() + off, burst.size() - off,
					   MSG_DONTWAIT);
			off += n > 0 ? static_cast<std::size_t>(n) : 0;
		}
		collect();
		got.clear();
		std::uint64_t next = 1;
		for (auto it = data.find(1); it != data.end() && it->first == next; ++it, ++next)
			got += it->second;
		return got.size() >= burst.size();
	});
	CHECK(got == burst);
	CHECK(data.rbegin()->first == data.size() - 1); // seqs 0..n-1, none twice
	CHECK(t.stats.bytes_in == small.size() + burst.size());
	CHECK(t.stats.frames_resent == 0);
	CHECK(!t.session->closing());
	close(tfd);
}

TEST_CASE("a small message is handed to the kernel within the turn that read it, both ways",
	  "[session_io]")
{
	// One turn of the readers and no wait of the ring: a request/response
	// peer must not wait for the session's other sockets' turns.
	Harness t(2, true);
	int tfd = t.start_target();
	const std::string request = pattern(64, 1);
	t.far[1].send(wire::Type::data, 0, request);
	t.source->deliver();
	std::string got;
	Harness::take(tfd, got);
	CHECK(got == request);

	const std::string answer = pattern(100, 2);
	REQUIRE(::send(tfd, answer.data(), answer.size(), 0) == 100);
	t.source->deliver();
	std::vector<Frame> frames;
	for (auto &f : t.far)
		for (auto &fr : f.frames())
			if (fr.h.type == wire::Type::data)
				frames.push_back(fr);
	REQUIRE(frames.size() == 1);
	CHECK(frames[0].h.seq == 0);
	CHECK(frames[0].payload == answer);
	CHECK(!t.session->closing());
	close(tfd);
}

TEST_CASE("a forged frame ends the session, tells the peer, and nothing after it is delivered",
	  "[session_io]")
{
	Pipe::prepare(); // its /dev/null is the process's, opened once, not the session's
	std::size_t fds_before = open_fds();
	auto t = std::make_unique<Harness>(2, false);
	App &a = t->start_app();
	t->far[0].send(wire::Type::data, 0, "good;");
	t->far[1].send(wire::Type::data, 1u << 30, "far outside the window");
	t->far[1].send(wire::Type::data, 1, "never;"); // behind the forged one
	t->run_until([&] { return a.closed; });
	CHECK(a.closed);
	CHECK(a.reason.find("outside the window") != std::string::npos);
	CHECK(a.got.find("never") == std::string::npos);
	CHECK(t->stats.sessions_failed == 1);
	// An ERROR frame goes to the peer, then the streams close.
	bool error_seen = false;
	t->run_until([&] {
		for (auto &far : t->far)
			for (auto &f : far.frames())
				error_seen |= f.h.type == wire::Type::error;
		return error_seen && t->far[0].eof && t->far[1].eof;
	});
	CHECK(error_seen);
	CHECK(t->far[0].eof);
	CHECK(t->far[1].eof);
	t->run_until([&] { return t->finished; });
	CHECK(t->finished);
	// The session, its streams and the agent give back every descriptor.
	t.reset();
	CHECK(open_fds() == fds_before);
}

TEST_CASE("an application's bytes are framed over the streams in sequence", "[session_io]")
{
	Harness t(2, false, 64 * 1024);
	App &a = t.start_app();
	REQUIRE(a.handle);
	std::string sent = pattern(40 * 64 * 1024 + 123, 3);
	a.handle->send(std::as_bytes(std::span(sent)));
	std::map<std::uint64_t, std::string> by_seq;
	unsigned on[2] = {0, 0};
	t.run_until([&] {
		for (unsigned i = 0; i < 2; i++)
			for (auto &f : t.far[i].frames())
				if (f.h.type == wire::Type::data) {
					CHECK(by_seq.count(f.h.seq) == 0);
					by_seq[f.h.seq] = f.payload;
					on[i]++;
				}
		return by_seq.size() == 41;
	});
	std::string got;
	std::uint64_t next = 0;
	for (auto &[seq, p] : by_seq) {
		CHECK(seq == next++);
		got += p;
	}
	CHECK(got == sent);
	CHECK(on[0] > 0);
	CHECK(on[1] > 0);
}

TEST_CASE("a stream stalled inside a frame whose copy heads another is dropped; the copy "
	  "completes it", "[session_io]")
{
	Harness t(3, true);
	int tfd = t.start_target();
	std::string first = pattern(300000, 1), second = pattern(200000, 2);
	// Stream 0 delivers a third of DATA 0 and then nothing; the copy of
	// DATA 0 waits at stream 1's head, parked behind the owner; stream 2
	// has DATA 1. The receiver spills and re-parks the copy every check:
	// that must not restart its stuck watch.
	t.far[0].send(wire::Type::data, 0, first, 100000);
	std::string got;
	t.run_until([&] {
		Harness::take(tfd, got);
		return got.size() == 100000;
	});
	REQUIRE(got.size() == 100000);
	t.far[1].send(wire::Type::data, 0, first);
	t.far[2].send(wire::Type::data, 1, second);
	t.run_until([&] {
		Harness::take(tfd, got);
		return got.size() >= first.size() + second.size();
	});
	CHECK(got == first + second);
	CHECK(t.stats.streams_lost == 1);
	CHECK(!t.session->closing());
	close(tfd);
}

TEST_CASE("the frames a lost stream carried are sent again on the other, once",
	  "[session_io]")
{
	Harness t(2, false, 64 * 1024);
	App &a = t.start_app();
	std::string sent = pattern(20 * 64 * 1024, 5);
	a.handle->send(std::as_bytes(std::span(sent)));
	std::map<std::uint64_t, std::string> by_seq;
	std::map<std::uint64_t, unsigned> copies, first_on;
	auto collect = [&](unsigned i) {
		for (auto &f : t.far[i].frames())
			if (f.h.type == wire::Type::data) {
				if (!copies[f.h.seq]++)
					first_on[f.h.seq] = i;
				CHECK((by_seq.count(f.h.seq) == 0 || by_seq[f.h.seq] == f.payload));
				by_seq[f.h.seq] = f.payload;
			}
	};
	t.run_until([&] {
		collect(0);
		collect(1);
		return by_seq.size() == 20;
	});
	REQUIRE(by_seq.size() == 20);
	// The first 5 are acknowledged; then stream 1 ends without a FIN.
	t.far[0].send(wire::Type::ack, 5);
	t.run_until([&] { return false; }, 50);
	unsigned owed = 0; // stream 1's frames the ACK did not cover
	for (auto &[seq, i] : first_on)
		owed += i == 1 && seq >= 5;
	REQUIRE(owed > 0);
	t.far[1].close_now();
	t.run_until([&] {
		collect(0);
		return t.stats.streams_lost == 1 && t.stats.frames_resent >= owed;
	});
	t.run_until([&] {
		collect(0);
		return false;
	}, 100);
	CHECK(t.stats.streams_lost == 1);
	CHECK(t.stats.frames_resent == owed);
	for (auto &[seq, n] : copies)
		CHECK(n == (first_on[seq] == 1 && seq >= 5 ? 2u : 1u));
	std::string got;
	for (auto &[seq, p] : by_seq)
		got += p;
	CHECK(got == sent);
	CHECK(!t.session->closing()); // it waits for a replacement
	CHECK(!a.closed);
}

TEST_CASE("a stream whose frame the peer waits for is lost at --stream-timeout, though "
	  "the timed resend comes first", "[session_io]")
{
	Harness t(2, false, 64 * 1024);
	t.cfg.stream_timeout = std::chrono::milliseconds(300);
	App &a = t.start_app();
	std::string sent = pattern(4 * 64 * 1024, 6);
	a.handle->send(std::as_bytes(std::span(sent)));
	std::map<std::uint64_t, std::vector<unsigned>> went_on;
	auto collect = [&](unsigned i) {
		for (auto &f : t.far[i].frames())
			if (f.h.type == wire::Type::data)
				went_on[f.h.seq].push_back(i);
	};
	t.run_until([&] {
		collect(0);
		collect(1);
		return went_on.size() == 4;
	});
	REQUIRE(went_on.size() == 4);
	unsigned owner = went_on[0][0];
	// The peer has later frames and waits for DATA 0 (its WAITING comes
	// 500 ms into a stall, before the sender's timeout); nothing is
	// acknowledged after. The sender's timed check then finds DATA 0
	// unanswered: the peer has said why, so its stream is lost, not
	// merely sent a copy (which would keep the dead stream for ever).
	t.far[1 - owner].send(wire::Type::ack, 0, {}, SIZE_MAX, wire::kAckFlagWaiting);
	t.run_until([&] {
		collect(0);
		collect(1);
		return t.stats.streams_lost == 1;
	}, 2000);
	CHECK(t.stats.streams_lost == 1);
	t.run_until([&] {
		collect(1 - owner);
		return went_on[0].size() == 2;
	}, 500);
	REQUIRE(went_on[0].size() == 2);
	CHECK(went_on[0][1] == 1 - owner);
	CHECK(!t.session->closing()); // it waits for a replacement
	CHECK(!a.closed);
}

TEST_CASE("a session whose streams did not all join in time starts with those that did; "
	  "the late one takes its index", "[session_io]")
{
	Harness t(2, false, 1 << 20, 1);
	t.cfg.handshake_timeout = std::chrono::milliseconds(100);
	t.session->expect_streams(t.cfg.handshake_timeout); // as the join server does
	t.run_until([&] { return t.short_app != nullptr; }, 1000);
	REQUIRE(t.short_app);
	CHECK(t.session->started());
	CHECK(!t.session->closing());
	CHECK(t.stats.streams_lost == 1);
	CHECK(t.stats.timeouts == 0);
	// Stream 1 comes late (its AUTH was held up): it fills index 1, and
	// what it carries is delivered in sequence with stream 0's.
	std::string first = pattern(3000, 7), second = pattern(2000, 8);
	auto late = t.new_stream(1, false);
	REQUIRE(t.session->rejoin_stream(late, {}));
	CHECK(t.stats.streams_rejoined == 1);
	t.far[1].send(wire::Type::data, 0, first);
	t.far[0].send(wire::Type::data, 1, second);
	t.run_until([&] { return t.short_app->got.size() == first.size() + second.size(); });
	CHECK(t.short_app->got == first + second);
	CHECK(!t.session->closing());
}
