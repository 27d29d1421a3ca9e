// SPDX-License-Identifier: MIT
// Stream authentication: HELLO carries HMAC-SHA256(key, signed hello bytes)
// so a join side with a key refuses a stranger at once; AUTH carries the
// HMAC over the HELLO and the join side's HELLO-ACK (its fresh nonce), so
// only a peer holding the key can open a stream, and nothing captured can be
// replayed.
#pragma once

#include "agent/frame.hpp"

#include <optional>
#include <string>
#include <vector>

namespace agent {

class AuthKey {
public:
	// Reads the key from a file (trailing newlines dropped). Null with *err
	// set if the file cannot be read or holds fewer than 16 bytes.
	static std::optional<AuthKey> from_file(const std::string &path, std::string *err);
	explicit AuthKey(std::vector<unsigned char> key) : key_(std::move(key)) {}

	// Fills hello.tag (and sets the auth flag) over the encoded hello.
	void sign(wire::Hello &hello) const;
	// True if hello's tag is the right one; constant-time.
	bool verify(const wire::Hello &hello) const;

	// The AUTH frame's tag for this stream: hello as sent, ack as received
	// (its encoded bytes).
	std::array<std::uint8_t, wire::kTagSize>
	prove(const wire::Hello &hello, std::span<const std::byte, wire::kHelloAckSize> ack) const;
	bool verify_proof(const wire::Hello &hello,
			  std::span<const std::byte, wire::kHelloAckSize> ack,
			  std::span<const std::byte, wire::kAuthSize> tag) const;

private:
	std::array<std::uint8_t, wire::kTagSize> tag_of(const wire::Hello &hello) const;
	std::vector<unsigned char> key_;
};

} // namespace agent
