// SPDX-License-Identifier: MIT
#include "agent/frame.hpp"

#include <catch2/catch_test_macros.hpp>

#include <cstring>
#include <string>

using namespace agent::wire;

namespace {
std::array<std::byte, kHeaderSize> enc(const Header &h)
{
	std::array<std::byte, kHeaderSize> b;
	encode_header(h, b.data());
	return b;
}
} // namespace

TEST_CASE("frame header round-trips and is little-endian", "[frame]")
{
	Header h;
	h.type = Type::data;
	h.length = 0x1234;
	h.seq = 0x0102030405060708ull;
	auto b = enc(h);
	CHECK(b[0] == std::byte{2});
	CHECK(b[4] == std::byte{0x34});
	CHECK(b[5] == std::byte{0x12});
	CHECK(b[8] == std::byte{0x08});
	CHECK(b[15] == std::byte{0x01});
	Header out;
	REQUIRE(decode_header(b, out) == Status::ok);
	CHECK(out.type == Type::data);
	CHECK(out.length == 0x1234);
	CHECK(out.seq == h.seq);
}

TEST_CASE("frame header rejects what does not fit", "[frame]")
{
	Header h;
	Header out;
	h.type = Type::data;
	h.length = kMaxPayload + 1;
	CHECK(decode_header(enc(h), out) == Status::too_long);
	h.length = 0;
	CHECK(decode_header(enc(h), out) == Status::bad_length);
	h.type = Type::fin;
	h.length = 1;
	CHECK(decode_header(enc(h), out) == Status::bad_length);
	h.type = Type::hello;
	h.length = kHelloSize - 1;
	CHECK(decode_header(enc(h), out) == Status::bad_length);
	h.type = Type::error;
	h.length = 2;
	CHECK(decode_header(enc(h), out) == Status::bad_length);

	h.type = Type::data;
	h.length = 10;
	auto b = enc(h);
	b[0] = std::byte{0};
	CHECK(decode_header(b, out) == Status::bad_type);
	b[0] = std::byte{8};
	CHECK(decode_header(b, out) == Status::bad_type);
	h.type = Type::hello_ack;
	h.length = kHelloAckSize + 1;
	CHECK(decode_header(enc(h), out) == Status::bad_length);
	h.type = Type::auth;
	h.length = kAuthSize - 1;
	CHECK(decode_header(enc(h), out) == Status::bad_length);
	h.type = Type::data;
	b = enc(h);
	b[2] = std::byte{1};
	CHECK(decode_header(b, out) == Status::bad_reserved);
	b = enc(h);
	b[1] = std::byte{0x80};
	CHECK(decode_header(b, out) == Status::bad_reserved);
}

TEST_CASE("hello round-trips and checks magic, version, index and count", "[frame]")
{
	Hello h;
	h.session = 0xdeadbeefcafef00dull;
	h.index = 3;
	h.count = 8;
	h.tag[0] = 0xaa;
	h.tag[31] = 0x55;
	std::array<std::byte, kHelloSize> b;
	encode_hello(h, b.data());
	Hello out;
	REQUIRE(decode_hello(b, out) == Status::ok);
	CHECK(out.session == h.session);
	CHECK(out.index == 3);
	CHECK(out.count == 8);
	CHECK(out.tag == h.tag);

	auto bad = b;
	bad[0] = std::byte{'X'};
	CHECK(decode_hello(bad, out) == Status::bad_magic);
	bad = b;
	bad[4] = std::byte{0}; // version 0
	CHECK(decode_hello(bad, out) == Status::bad_version);
	bad = b;
	bad[20] = std::byte{3}; // min_version 3 > version 2
	CHECK(decode_hello(bad, out) == Status::bad_version);

	h.index = 8; // == count
	encode_hello(h, b.data());
	CHECK(decode_hello(b, out) == Status::bad_stream);
	h.index = 0;
	h.count = 0;
	encode_hello(h, b.data());
	CHECK(decode_hello(b, out) == Status::bad_stream);
	h.count = kMaxStreams + 1;
	encode_hello(h, b.data());
	CHECK(decode_hello(b, out) == Status::bad_stream);
}

TEST_CASE("versions are negotiated: the newest both speak, none with a v1-only peer", "[frame]")
{
	Hello h;
	CHECK(negotiate(h) == kVersion);
	h.version = 1;
	h.min_version = 1;
	CHECK(negotiate(h) == 0); // v1 HELLOs can be replayed: refused
	h.version = 9;
	h.min_version = 1;
	CHECK(negotiate(h) == kVersion); // a newer peer that still speaks ours
	h.min_version = kVersion + 1;
	CHECK(negotiate(h) == 0);

	// A v1 HELLO (zeros where min_version is) decodes as speaking 1 only.
	std::array<std::byte, kHelloSize> b;
	Hello v1;
	v1.version = 1;
	v1.min_version = 0;
	v1.count = 1;
	encode_hello(v1, b.data());
	Hello out;
	REQUIRE(decode_hello(b, out) == Status::ok);
	CHECK(oldest_version(out) == 1);
	CHECK(negotiate(out) == 0);
}

TEST_CASE("hello-ack round-trips and checks magic, version, reserved", "[frame]")
{
	HelloAck a;
	for (std::size_t i = 0; i < kNonceSize; i++)
		a.nonce[i] = static_cast<std::uint8_t>(i * 7 + 1);
	std::array<std::byte, kHelloAckSize> b;
	encode_hello_ack(a, b.data());
	HelloAck out;
	REQUIRE(decode_hello_ack(b, out) == Status::ok);
	CHECK(out.version == kVersion);
	CHECK(out.nonce == a.nonce);
	auto bad = b;
	bad[0] = std::byte{'X'};
	CHECK(decode_hello_ack(bad, out) == Status::bad_magic);
	bad = b;
	bad[4] = std::byte{1};
	CHECK(decode_hello_ack(bad, out) == Status::bad_version);
	bad = b;
	bad[31] = std::byte{1};
	CHECK(decode_hello_ack(bad, out) == Status::bad_reserved);
}

TEST_CASE("ACK may carry WAITING; every other frame's flags are reserved", "[frame]")
{
	Header h;
	h.type = Type::ack;
	h.flags = kAckFlagWaiting;
	h.seq = 41;
	Header out;
	REQUIRE(decode_header(enc(h), out) == Status::ok);
	CHECK(out.flags == kAckFlagWaiting);
	CHECK(out.seq == 41);
	h.flags = 2;
	CHECK(decode_header(enc(h), out) == Status::bad_reserved);
	h.type = Type::data;
	h.length = 10;
	h.flags = kAckFlagWaiting;
	CHECK(decode_header(enc(h), out) == Status::bad_reserved);
	h.type = Type::ack;
	h.flags = 0;
	h.length = 1; // ACK has no payload
	CHECK(decode_header(enc(h), out) == Status::bad_length);
}

TEST_CASE("HELLO's REJOIN flag round-trips; unknown flags are refused", "[frame]")
{
	Hello h;
	h.session = 9;
	h.index = 3;
	h.count = 4;
	h.flags = kHelloFlagRejoin;
	std::byte b[kHelloSize];
	encode_hello(h, b);
	Hello out;
	REQUIRE(decode_hello(std::span<const std::byte, kHelloSize>(b), out) == Status::ok);
	CHECK(out.flags == kHelloFlagRejoin);
	h.flags = 4;
	encode_hello(h, b);
	CHECK(decode_hello(std::span<const std::byte, kHelloSize>(b), out) == Status::bad_reserved);
}

TEST_CASE("ERROR payload: code little-endian, then the text cut to the maximum", "[frame]")
{
	auto p = error_payload(ErrorCode::stream_lost, "gone");
	REQUIRE(p.size() == 8);
	CHECK(p[0] == std::byte{4});
	CHECK(p[3] == std::byte{0});
	CHECK(std::memcmp(p.data() + 4, "gone", 4) == 0);
	std::string longer(kMaxErrorText + 100, 'x');
	CHECK(error_payload(ErrorCode::internal, longer).size() == 4 + kMaxErrorText);
}
