// SPDX-License-Identifier: MIT
// Stream authentication: HELLO carries HMAC-SHA256(key, signed hello bytes)
// so a join side with a key accepts only streams of peers that share it.
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

private:
	std::array<std::uint8_t, wire::kTagSize> tag_of(const wire::Hello &hello) const;
	std::vector<unsigned char> key_;
};

} // namespace agent
