// SPDX-License-Identifier: MIT
#include "agent/frame.hpp"

#include <algorithm>
#include <cstring>

namespace agent::wire {
namespace {

template <typename T>
void put(std::byte *p, T v)
{
	for (std::size_t i = 0; i < sizeof(T); i++)
		p[i] = std::byte((v >> (8 * i)) & 0xff);
}

template <typename T>
T get(const std::byte *p)
{
	T v = 0;
	for (std::size_t i = 0; i < sizeof(T); i++)
		v |= T(std::to_integer<std::uint8_t>(p[i])) << (8 * i);
	return v;
}

} // namespace

std::string_view describe(Status s)
{
	switch (s) {
	case Status::ok:
		return "ok";
	case Status::bad_type:
		return "unknown frame type";
	case Status::bad_reserved:
		return "reserved header bits set";
	case Status::too_long:
		return "frame length over the maximum";
	case Status::bad_length:
		return "frame length does not fit its type";
	case Status::bad_magic:
		return "wrong magic";
	case Status::bad_version:
		return "unsupported version";
	case Status::bad_stream:
		return "stream index or count out of range";
	}
	return "?";
}

void encode_header(const Header &h, std::byte out[kHeaderSize])
{
	out[0] = std::byte(h.type);
	out[1] = std::byte(h.flags);
	put<std::uint16_t>(out + 2, 0);
	put<std::uint32_t>(out + 4, h.length);
	put<std::uint64_t>(out + 8, h.seq);
}

Status decode_header(std::span<const std::byte, kHeaderSize> in, Header &out)
{
	const std::byte *p = in.data();
	auto type = std::to_integer<std::uint8_t>(p[0]);
	if (type < std::uint8_t(Type::hello) || type > std::uint8_t(Type::auth))
		return Status::bad_type;
	// Only ACK has a flag (WAITING); every other bit is reserved.
	auto flags = std::to_integer<std::uint8_t>(p[1]);
	std::uint8_t allowed = Type(type) == Type::ack ? kAckFlagWaiting : 0;
	if (get<std::uint16_t>(p + 2) != 0 || (flags & ~allowed) != 0)
		return Status::bad_reserved;
	out.type = Type(type);
	out.flags = flags;
	out.length = get<std::uint32_t>(p + 4);
	out.seq = get<std::uint64_t>(p + 8);
	if (out.length > kMaxPayload)
		return Status::too_long;
	switch (out.type) {
	case Type::hello:
		return out.length == kHelloSize ? Status::ok : Status::bad_length;
	case Type::fin:
	case Type::ack:
		return out.length == 0 ? Status::ok : Status::bad_length;
	case Type::error:
		return out.length >= 4 && out.length <= 4 + kMaxErrorText ? Status::ok
									 : Status::bad_length;
	case Type::data:
		return out.length > 0 ? Status::ok : Status::bad_length;
	case Type::hello_ack:
		return out.length == kHelloAckSize ? Status::ok : Status::bad_length;
	case Type::auth:
		return out.length == kAuthSize ? Status::ok : Status::bad_length;
	}
	return Status::bad_type;
}

void encode_hello(const Hello &h, std::byte out[kHelloSize])
{
	put<std::uint32_t>(out, kMagic);
	put<std::uint16_t>(out + 4, h.version);
	put<std::uint16_t>(out + 6, h.flags);
	put<std::uint64_t>(out + 8, h.session);
	put<std::uint16_t>(out + 16, h.index);
	put<std::uint16_t>(out + 18, h.count);
	put<std::uint16_t>(out + 20, h.min_version);
	put<std::uint16_t>(out + 22, 0);
	std::memcpy(out + kHelloSignedSize, h.tag.data(), kTagSize);
}

Status decode_hello(std::span<const std::byte, kHelloSize> in, Hello &out)
{
	const std::byte *p = in.data();
	if (get<std::uint32_t>(p) != kMagic)
		return Status::bad_magic;
	out.version = get<std::uint16_t>(p + 4);
	// Kept as sent (the HMAC covers the bytes): v1 has a zero here.
	out.min_version = get<std::uint16_t>(p + 20);
	if (out.version == 0 || oldest_version(out) > out.version)
		return Status::bad_version;
	out.flags = get<std::uint16_t>(p + 6);
	if (out.flags & ~(kHelloFlagAuth | kHelloFlagRejoin) || get<std::uint16_t>(p + 22) != 0)
		return Status::bad_reserved;
	out.session = get<std::uint64_t>(p + 8);
	out.index = get<std::uint16_t>(p + 16);
	out.count = get<std::uint16_t>(p + 18);
	if (out.count == 0 || out.count > kMaxStreams || out.index >= out.count)
		return Status::bad_stream;
	std::memcpy(out.tag.data(), p + kHelloSignedSize, kTagSize);
	return Status::ok;
}

void encode_hello_ack(const HelloAck &a, std::byte out[kHelloAckSize])
{
	put<std::uint32_t>(out, kMagic);
	put<std::uint16_t>(out + 4, a.version);
	put<std::uint16_t>(out + 6, a.features);
	std::memcpy(out + 8, a.nonce.data(), kNonceSize);
	put<std::uint64_t>(out + 8 + kNonceSize, 0);
}

Status decode_hello_ack(std::span<const std::byte, kHelloAckSize> in, HelloAck &out)
{
	const std::byte *p = in.data();
	if (get<std::uint32_t>(p) != kMagic)
		return Status::bad_magic;
	out.version = get<std::uint16_t>(p + 4);
	if (out.version < kMinVersion || out.version > kVersion)
		return Status::bad_version;
	out.features = get<std::uint16_t>(p + 6);
	if (out.features != 0 || get<std::uint64_t>(p + 8 + kNonceSize) != 0)
		return Status::bad_reserved;
	std::memcpy(out.nonce.data(), p + 8, kNonceSize);
	return Status::ok;
}

std::uint16_t oldest_version(const Hello &h) { return h.min_version ? h.min_version : h.version; }

std::uint16_t negotiate(const Hello &h)
{
	std::uint16_t v = std::min(h.version, kVersion);
	return v >= std::max(oldest_version(h), kMinVersion) ? v : 0;
}

std::vector<std::byte> error_payload(ErrorCode code, std::string_view text)
{
	text = text.substr(0, kMaxErrorText);
	std::vector<std::byte> out(4 + text.size());
	put<std::uint32_t>(out.data(), static_cast<std::uint32_t>(code));
	std::memcpy(out.data() + 4, text.data(), text.size());
	return out;
}

} // namespace agent::wire
