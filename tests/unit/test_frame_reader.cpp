// SPDX-License-Identifier: MIT
// A stream's frames read a piece at a time (pull mode), over a socketpair:
// headers split across reads, bytes a source held, payloads into memory,
// into a pipe or skipped, and where an end of stream falls.
#include "../../libagent/src/frame_reader.hpp"

#include "agent/net.hpp"

#include <catch2/catch_test_macros.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

using agent::FrameReader;
namespace wire = agent::wire;

namespace {

struct SocketPair {
	int ours = -1, peer = -1;
	SocketPair()
	{
		int fds[2];
		REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
		ours = fds[0];
		peer = fds[1];
		REQUIRE(agent::set_nonblocking(ours));
	}
	~SocketPair()
	{
		close(ours);
		if (peer >= 0)
			close(peer);
	}
	void write(const std::vector<std::byte> &b) const
	{
		REQUIRE(::write(peer, b.data(), b.size()) == static_cast<ssize_t>(b.size()));
	}
	void close_peer()
	{
		close(peer);
		peer = -1;
	}
};

// One DATA frame: header and payload.
std::vector<std::byte> data_frame(std::uint64_t seq, const std::string &payload)
{
	wire::Header h;
	h.type = wire::Type::data;
	h.seq = seq;
	h.length = static_cast<std::uint32_t>(payload.size());
	std::vector<std::byte> out(wire::kHeaderSize);
	wire::encode_header(h, out.data());
	for (char c : payload)
		out.push_back(std::byte(c));
	return out;
}

std::vector<std::byte> slice(const std::vector<std::byte> &v, std::size_t from, std::size_t to)
{
	return {v.begin() + from, v.begin() + to};
}

std::string text(std::span<const std::byte> b)
{
	return {reinterpret_cast<const char *>(b.data()), b.size()};
}

std::string drain(agent::Pipe &p)
{
	std::string s(p.bytes(), '\0');
	REQUIRE(p.read_into(s.data(), s.size()) == static_cast<ssize_t>(s.size()));
	return s;
}

} // namespace

TEST_CASE("a header split over two reads is taken once it is whole", "[frame_reader]")
{
	SocketPair sp;
	FrameReader r(sp.ours);
	auto f = data_frame(7, "hello");
	auto s = wire::Status::ok;
	sp.write(slice(f, 0, 5));
	CHECK(r.read_header(&s) == 5);
	CHECK(!r.head());
	CHECK(r.state() == FrameReader::State::header);
	CHECK(r.inside_frame());
	CHECK(r.read_header(&s) == -EAGAIN);
	sp.write(slice(f, 5, f.size()));
	CHECK(r.read_header(&s) == 11); // the header's rest, not the payload
	REQUIRE(s == wire::Status::ok);
	REQUIRE(r.head());
	CHECK(r.state() == FrameReader::State::payload);
	CHECK(r.head()->seq == 7);
	CHECK(r.payload_left() == 5);
	CHECK(r.read_payload() == 5);
	CHECK(r.payload_left() == 0);
	CHECK(text(r.take_payload()) == "hello");
	CHECK(r.state() == FrameReader::State::header);
	CHECK(!r.inside_frame());
}

TEST_CASE("bytes a source held come before the socket's", "[frame_reader]")
{
	SocketPair sp;
	FrameReader r(sp.ours);
	auto f = data_frame(3, "abcdefgh");
	r.held = slice(f, 0, 10); // ends inside the header
	sp.write(slice(f, 10, f.size()));
	auto s = wire::Status::ok;
	CHECK(r.read_header(&s) == 10);
	CHECK(r.read_header(&s) == 6);
	REQUIRE(r.head());
	CHECK(r.head()->seq == 3);
	r.read_payload();
	CHECK(text(r.payload()) == "abcdefgh");
}

TEST_CASE("a payload read into memory in pieces waits for the rest", "[frame_reader]")
{
	SocketPair sp;
	FrameReader r(sp.ours);
	auto f = data_frame(1, std::string(1000, 'x'));
	sp.write(slice(f, 0, 300));
	auto s = wire::Status::ok;
	REQUIRE(r.read_header(&s) == 16);
	CHECK(r.read_payload() == -EAGAIN);
	CHECK(r.payload_left() == 1000 - 284);
	CHECK(r.payload().size() == 284);
	sp.write(slice(f, 300, f.size()));
	CHECK(r.read_payload() > 0);
	CHECK(r.payload_left() == 0);
	CHECK(text(r.take_payload()) == std::string(1000, 'x'));
}

TEST_CASE("a payload spliced into a pipe stops at the frame's end", "[frame_reader]")
{
	SocketPair sp;
	FrameReader r(sp.ours);
	auto a = data_frame(0, "first-payload"), b = data_frame(1, "second");
	a.insert(a.end(), b.begin(), b.end());
	sp.write(a);
	auto s = wire::Status::ok;
	REQUIRE(r.read_header(&s) == 16);
	agent::Pipe pipe = agent::Pipe::acquire(1 << 16);
	REQUIRE(pipe.valid());
	CHECK(r.splice_payload(pipe, 1 << 16) == 13);
	CHECK(r.payload_left() == 0);
	CHECK(drain(pipe) == "first-payload");
	r.frame_done();
	REQUIRE(r.read_header(&s) == 16);
	REQUIRE(r.head());
	CHECK(r.head()->seq == 1);
	CHECK(r.head()->length == 6);
}

TEST_CASE("held payload bytes are copied into the pipe first", "[frame_reader]")
{
	SocketPair sp;
	FrameReader r(sp.ours);
	auto f = data_frame(5, "0123456789");
	r.held = slice(f, 0, 20); // the header and 4 payload bytes
	sp.write(slice(f, 20, f.size()));
	auto s = wire::Status::ok;
	REQUIRE(r.read_header(&s) == 16);
	agent::Pipe pipe = agent::Pipe::acquire(1 << 16);
	CHECK(r.splice_payload(pipe, 100) == 4);
	CHECK(r.held.empty());
	CHECK(r.splice_payload(pipe, 100) == 6);
	CHECK(drain(pipe) == "0123456789");
}

TEST_CASE("skip_payload drops what a lost stream already delivered", "[frame_reader]")
{
	SocketPair sp;
	FrameReader r(sp.ours);
	sp.write(data_frame(2, "deliveredREST"));
	auto s = wire::Status::ok;
	REQUIRE(r.read_header(&s) == 16);
	CHECK(r.skip_payload(9) == 9);
	CHECK(r.payload_left() == 4);
	agent::Pipe pipe = agent::Pipe::acquire(1 << 16);
	CHECK(r.splice_payload(pipe, r.payload_left()) == 4);
	CHECK(drain(pipe) == "REST");
}

TEST_CASE("an end of stream is told apart between frames and inside one", "[frame_reader]")
{
	auto s = wire::Status::ok;
	SECTION("between frames") {
		SocketPair sp;
		FrameReader r(sp.ours);
		sp.write(data_frame(0, "ab"));
		sp.close_peer();
		REQUIRE(r.read_header(&s) == 16);
		r.read_payload();
		r.take_payload();
		CHECK(!r.inside_frame());
		CHECK(r.read_header(&s) == 0);
	}
	SECTION("inside a header") {
		SocketPair sp;
		FrameReader r(sp.ours);
		sp.write(slice(data_frame(0, "ab"), 0, 9));
		sp.close_peer();
		CHECK(r.read_header(&s) == 9);
		CHECK(r.inside_frame());
		CHECK(r.read_header(&s) == 0);
	}
	SECTION("inside a payload") {
		SocketPair sp;
		FrameReader r(sp.ours);
		auto f = data_frame(0, "abcdef");
		sp.write(slice(f, 0, 19));
		sp.close_peer();
		REQUIRE(r.read_header(&s) == 16);
		CHECK(r.read_payload() == 0);
		CHECK(r.payload_left() == 3);
		CHECK(r.inside_frame());
	}
}

TEST_CASE("a malformed header is reported and starts no frame", "[frame_reader]")
{
	SocketPair sp;
	FrameReader r(sp.ours);
	sp.write(std::vector<std::byte>(16, std::byte{0xff}));
	auto s = wire::Status::ok;
	CHECK(r.read_header(&s) == 16);
	CHECK(s != wire::Status::ok);
	CHECK(!r.head());
}
