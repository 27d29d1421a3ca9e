// SPDX-License-Identifier: MIT
// The stripe <-> join wire format, as docs/wire-format.md specifies it (the
// one description; this header follows it). Every frame starts with a
// 16-byte little-endian header:
//   u8 type | u8 flags | u16 reserved (0) | u32 length | u64 seq
// A stream opens with a three-frame handshake (wire v2):
//   stripe -> join  HELLO (56 bytes):
//     u32 magic "AGMX" | u16 version (newest spoken) | u16 flags | u64 session |
//     u16 index | u16 count | u16 min_version (oldest spoken; 0 in v1: =
//     version) | u16 reserved (0) | u8 tag[32] (HMAC-SHA256 of the first 24
//     bytes under the shared key, zero without a key)
//   join -> stripe  HELLO-ACK (32 bytes):
//     u32 magic | u16 version (the one chosen) | u16 features (0) |
//     u8 nonce[16] (fresh per stream) | u64 reserved (0)
//   stripe -> join  AUTH (32 bytes): HMAC-SHA256 over the HELLO's first 24
//     bytes and the HELLO-ACK's 32, so a captured HELLO and AUTH are
//     worthless on any other stream (zero without a key)
// DATA carries chunk seq of its direction; FIN, sent once on every stream,
// carries the final seq of its direction; ACK (no payload) carries how many
// DATA frames of the other direction were delivered; ERROR carries u32 code
// + text.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace agent::wire {

inline constexpr std::uint32_t kMagic = 0x584d4741; // "AGMX"
inline constexpr std::uint16_t kVersion = 2;    // the newest version spoken here
inline constexpr std::uint16_t kMinVersion = 2; // the oldest accepted (v1 is replayable)
inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::size_t kHelloSize = 56;
inline constexpr std::size_t kHelloSignedSize = 24;
inline constexpr std::size_t kTagSize = 32;
inline constexpr std::size_t kHelloAckSize = 32;
inline constexpr std::size_t kNonceSize = 16;
inline constexpr std::size_t kAuthSize = kTagSize;
inline constexpr std::uint32_t kMaxPayload = 1u << 20;
inline constexpr std::uint32_t kMaxErrorText = 512;
inline constexpr unsigned kMaxStreams = 64;
inline constexpr std::uint16_t kHelloFlagAuth = 1;
// A replacement for a lost stream of a live session (docs/wire-format.md).
inline constexpr std::uint16_t kHelloFlagRejoin = 2;
// ACK: the receiver has waited for DATA seq a while, with later frames in hand.
inline constexpr std::uint8_t kAckFlagWaiting = 1;

enum class Type : std::uint8_t {
	hello = 1,
	data = 2,
	fin = 3,
	ack = 4, // seq: DATA frames of the other direction delivered
	error = 5,
	hello_ack = 6,
	auth = 7,
};

enum class ErrorCode : std::uint32_t {
	reset = 1,       // the plain end was reset
	protocol = 2,    // a malformed or unexpected frame
	unreachable = 3, // the target could not be reached
	stream_lost = 4, // a stream of the session ended early
	internal = 5,
	timeout = 6,     // no progress, or a connect, within its time
};

struct Header {
	Type type = Type::data;
	std::uint8_t flags = 0;
	std::uint32_t length = 0;
	std::uint64_t seq = 0;
};

struct Hello {
	std::uint16_t version = kVersion;
	std::uint16_t min_version = kMinVersion;
	std::uint16_t flags = 0;
	std::uint64_t session = 0;
	std::uint16_t index = 0;
	std::uint16_t count = 0;
	std::array<std::uint8_t, kTagSize> tag{};
};

struct HelloAck {
	std::uint16_t version = kVersion;
	std::uint16_t features = 0;
	std::array<std::uint8_t, kNonceSize> nonce{};
};

enum class Status {
	ok,
	bad_type,
	bad_reserved,
	too_long,
	bad_length, // a length that does not fit the type
	bad_magic,
	bad_version,
	bad_stream, // index/count out of range
};

std::string_view describe(Status s);

void encode_header(const Header &h, std::byte out[kHeaderSize]);
Status decode_header(std::span<const std::byte, kHeaderSize> in, Header &out);

// The signed part is out[0, kHelloSignedSize); the tag follows it.
void encode_hello(const Hello &h, std::byte out[kHelloSize]);
Status decode_hello(std::span<const std::byte, kHelloSize> in, Hello &out);

void encode_hello_ack(const HelloAck &a, std::byte out[kHelloAckSize]);

// An ERROR frame's payload: code, then text cut to kMaxErrorText.
std::vector<std::byte> error_payload(ErrorCode code, std::string_view text);
Status decode_hello_ack(std::span<const std::byte, kHelloAckSize> in, HelloAck &out);

// The oldest version a HELLO's sender speaks (v1 HELLOs have 0 in the
// min_version field: just their version).
std::uint16_t oldest_version(const Hello &h);
// The version a join side answers a HELLO with: the newest both speak, or 0
// when they share none (a v1-only peer, say).
std::uint16_t negotiate(const Hello &h);

} // namespace agent::wire
