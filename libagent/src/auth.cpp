// SPDX-License-Identifier: MIT
#include "agent/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>
#include <fstream>
#include <iterator>

namespace agent {

std::optional<AuthKey> AuthKey::from_file(const std::string &path, std::string *err)
{
	std::ifstream in(path, std::ios::binary);
	if (!in) {
		*err = "cannot read key file " + path;
		return std::nullopt;
	}
	std::vector<unsigned char> key((std::istreambuf_iterator<char>(in)),
				       std::istreambuf_iterator<char>());
	while (!key.empty() && (key.back() == '\n' || key.back() == '\r'))
		key.pop_back();
	if (key.size() < 16) {
		*err = "key file " + path + " holds fewer than 16 bytes";
		return std::nullopt;
	}
	return AuthKey(std::move(key));
}

std::array<std::uint8_t, wire::kTagSize> AuthKey::tag_of(const wire::Hello &hello) const
{
	std::byte buf[wire::kHelloSize];
	wire::Hello h = hello;
	h.flags |= wire::kHelloFlagAuth;
	wire::encode_hello(h, buf);
	std::array<std::uint8_t, wire::kTagSize> tag{};
	unsigned len = tag.size();
	HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
	     reinterpret_cast<const unsigned char *>(buf), wire::kHelloSignedSize, tag.data(), &len);
	return tag;
}

void AuthKey::sign(wire::Hello &hello) const
{
	hello.flags |= wire::kHelloFlagAuth;
	hello.tag = tag_of(hello);
}

bool AuthKey::verify(const wire::Hello &hello) const
{
	if (!(hello.flags & wire::kHelloFlagAuth))
		return false;
	auto want = tag_of(hello);
	return CRYPTO_memcmp(want.data(), hello.tag.data(), want.size()) == 0;
}

std::array<std::uint8_t, wire::kTagSize>
AuthKey::prove(const wire::Hello &hello, std::span<const std::byte, wire::kHelloAckSize> ack) const
{
	std::byte buf[wire::kHelloSignedSize + wire::kHelloAckSize];
	std::byte enc[wire::kHelloSize];
	wire::Hello h = hello;
	h.flags |= wire::kHelloFlagAuth;
	wire::encode_hello(h, enc);
	std::memcpy(buf, enc, wire::kHelloSignedSize);
	std::memcpy(buf + wire::kHelloSignedSize, ack.data(), ack.size());
	std::array<std::uint8_t, wire::kTagSize> tag{};
	unsigned len = tag.size();
	HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
	     reinterpret_cast<const unsigned char *>(buf), sizeof(buf), tag.data(), &len);
	return tag;
}

bool AuthKey::verify_proof(const wire::Hello &hello,
			   std::span<const std::byte, wire::kHelloAckSize> ack,
			   std::span<const std::byte, wire::kAuthSize> tag) const
{
	auto want = prove(hello, ack);
	return CRYPTO_memcmp(want.data(), tag.data(), want.size()) == 0;
}

} // namespace agent
