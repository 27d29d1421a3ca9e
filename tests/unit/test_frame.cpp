// SPDX-License-Identifier: MIT
#include "agent/frame.hpp"

#include <catch2/catch_test_macros.hpp>

#include <cstring>

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
	b[0] = std::byte{6};
	CHECK(decode_header(b, out) == Status::bad_type);
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
	bad[4] = std::byte{2};
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
