// SPDX-License-Identifier: MIT
// libFuzzer target: a stream of stripe <-> join frames, walked the way
// Session::consume() and the join handshake walk it: decode a header, stop
// at the first bad one or at a partial frame, else take the payload. Each
// payload is copied into a buffer of exactly its length, so ASan sees any
// read past it. Checks what the readers of a decoded header rely on.
#include "agent/frame.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace agent::wire;

namespace {

void require(bool ok)
{
	if (!ok)
		std::abort();
}

// What session.cpp and join.cpp read of a payload of a good header.
void check_payload(const Header &h, const std::vector<std::byte> &payload)
{
	switch (h.type) {
	case Type::hello: {
		require(payload.size() == kHelloSize);
		Hello hello;
		Status s = decode_hello(std::span<const std::byte, kHelloSize>(payload.data(),
									   kHelloSize),
					hello);
		if (s != Status::ok)
			return;
		require(hello.count >= 1 && hello.count <= kMaxStreams);
		require(hello.index < hello.count);
		require((hello.flags & ~(kHelloFlagAuth | kHelloFlagRejoin)) == 0);
		// A good HELLO is its own encoding.
		std::byte again[kHelloSize];
		encode_hello(hello, again);
		require(std::memcmp(again, payload.data(), kHelloSize) == 0);
		break;
	}
	case Type::hello_ack: {
		require(payload.size() == kHelloAckSize);
		HelloAck ack;
		Status s = decode_hello_ack(
			std::span<const std::byte, kHelloAckSize>(payload.data(), kHelloAckSize), ack);
		if (s != Status::ok)
			return;
		require(ack.version >= kMinVersion && ack.version <= kVersion);
		// A good HELLO-ACK is its own encoding.
		std::byte again[kHelloAckSize];
		encode_hello_ack(ack, again);
		require(std::memcmp(again, payload.data(), kHelloAckSize) == 0);
		break;
	}
	case Type::auth:
		require(payload.size() == kAuthSize);
		break;
	case Type::data:
		require(payload.size() >= 1 && payload.size() <= kMaxPayload);
		break;
	case Type::fin:
	case Type::ack:
		require(payload.empty());
		break;
	case Type::error: {
		// u32 code, then text: the session reads both.
		require(payload.size() >= 4 && payload.size() <= 4 + kMaxErrorText);
		std::uint32_t code = 0;
		for (int i = 0; i < 4; i++)
			code |= std::to_integer<std::uint32_t>(payload[i]) << (8 * i);
		volatile std::uint32_t sink = code;
		(void)sink;
		break;
	}
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	const auto *p = reinterpret_cast<const std::byte *>(data);
	std::size_t off = 0;
	while (size - off >= kHeaderSize) {
		std::vector<std::byte> head(p + off, p + off + kHeaderSize);
		Header h;
		Status s = decode_header(std::span<const std::byte, kHeaderSize>(head.data(),
										 kHeaderSize),
					 h);
		require(!describe(s).empty() && describe(s) != "?");
		if (s != Status::ok)
			return 0;
		require(h.length <= kMaxPayload);
		// Only ACK has a flag (WAITING).
		require(h.flags == 0 || (h.type == Type::ack && h.flags == kAckFlagWaiting));
		// A good header is its own encoding.
		std::byte again[kHeaderSize];
		encode_header(h, again);
		require(std::memcmp(again, head.data(), kHeaderSize) == 0);
		if (size - off - kHeaderSize < h.length)
			return 0; // a partial frame: the reader waits for more
		off += kHeaderSize;
		std::vector<std::byte> payload(p + off, p + off + h.length);
		check_payload(h, payload);
		off += h.length;
	}
	return 0;
}
