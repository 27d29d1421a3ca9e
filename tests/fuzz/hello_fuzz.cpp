// SPDX-License-Identifier: MIT
// libFuzzer target: the HELLO payload a join side receives (56 bytes), then
// its HMAC check. Input: the payload, then optionally one byte that picks a
// tag byte to flip. Checks decode_hello against the wire rules, and
// AuthKey::verify against HMAC-SHA256 computed here with OpenSSL directly:
// it accepts exactly the HELLOs with the auth flag and the right tag, a
// signed HELLO verifies, and one flipped tag bit is refused.
#include "agent/auth.hpp"
#include "agent/frame.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace agent::wire;

namespace {

// The key of this target; tests/fuzz/seeds.py signs its seeds with it.
constexpr char kKey[] = "agentmux fuzz key: not a secret";

void require(bool ok)
{
	if (!ok)
		std::abort();
}

const agent::AuthKey &key()
{
	static const agent::AuthKey k(
		std::vector<unsigned char>(kKey, kKey + sizeof(kKey) - 1));
	return k;
}

bool right_tag(const std::byte *signed_part, const std::byte *tag)
{
	unsigned char want[kTagSize];
	unsigned len = sizeof(want);
	HMAC(EVP_sha256(), kKey, sizeof(kKey) - 1,
	     reinterpret_cast<const unsigned char *>(signed_part), kHelloSignedSize, want, &len);
	require(len == kTagSize);
	return CRYPTO_memcmp(want, tag, kTagSize) == 0;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	if (size < kHelloSize)
		return 0;
	// Exactly the payload's bytes on the heap: ASan sees a read past them.
	std::vector<std::byte> in(reinterpret_cast<const std::byte *>(data),
				  reinterpret_cast<const std::byte *>(data) + kHelloSize);
	Hello h;
	Status s = decode_hello(std::span<const std::byte, kHelloSize>(in.data(), kHelloSize), h);
	std::uint32_t magic = 0;
	std::memcpy(&magic, data, 4); // the wire is little-endian, as is x86
	std::uint16_t version = std::uint16_t(data[4] | data[5] << 8);
	std::uint16_t flags = std::uint16_t(data[6] | data[7] << 8);
	std::uint16_t index = std::uint16_t(data[16] | data[17] << 8);
	std::uint16_t count = std::uint16_t(data[18] | data[19] << 8);
	std::uint16_t min_version = std::uint16_t(data[20] | data[21] << 8);
	std::uint16_t reserved = std::uint16_t(data[22] | data[23] << 8);
	std::uint16_t oldest = min_version ? min_version : version; // v1: 0 there
	bool good = magic == kMagic && version != 0 && oldest <= version &&
		    !(flags & ~(kHelloFlagAuth | kHelloFlagRejoin)) && reserved == 0 && count >= 1 &&
		    count <= kMaxStreams && index < count;
	require((s == Status::ok) == good);
	if (s != Status::ok)
		return 0;
	require(h.flags == flags && h.index == index && h.count == count);
	require(h.version == version && h.min_version == min_version);
	// Negotiation picks a version both speak, or none.
	std::uint16_t v = negotiate(h);
	require(v == 0 || (v >= kMinVersion && v <= kVersion && v >= oldest && v <= version));

	// AUTH proves the key over this HELLO and one HELLO-ACK only.
	HelloAck ack;
	for (std::size_t i = 0; i < kNonceSize; i++)
		ack.nonce[i] = static_cast<std::uint8_t>(data[24 + i]);
	std::array<std::byte, kHelloAckSize> ack_bytes, other_bytes;
	encode_hello_ack(ack, ack_bytes.data());
	ack.nonce[0] ^= 1;
	encode_hello_ack(ack, other_bytes.data());
	auto proof = key().prove(h, ack_bytes);
	auto proof_bytes = std::as_bytes(std::span(proof)).first<kAuthSize>();
	require(key().verify_proof(h, ack_bytes, proof_bytes));
	require(!key().verify_proof(h, other_bytes, proof_bytes));
	require(std::memcmp(h.tag.data(), data + kHelloSignedSize, kTagSize) == 0);

	// verify() accepts exactly: the auth flag set and the HMAC of the
	// signed 24 bytes as the tag.
	bool want = (flags & kHelloFlagAuth) && right_tag(in.data(), in.data() + kHelloSignedSize);
	require(key().verify(h) == want);

	// Signing makes it verify; its encoding carries the tag.
	Hello signed_h = h;
	key().sign(signed_h);
	require(signed_h.flags & kHelloFlagAuth);
	require(key().verify(signed_h));
	std::byte enc[kHelloSize];
	encode_hello(signed_h, enc);
	require(right_tag(enc, enc + kHelloSignedSize));

	// Any one flipped tag bit is refused, and so is a cleared auth flag.
	unsigned pick = size > kHelloSize ? data[kHelloSize] : 0;
	Hello bad = signed_h;
	bad.tag[pick % kTagSize] ^= std::uint8_t(1u << (pick / kTagSize % 8));
	require(!key().verify(bad));
	bad = signed_h;
	bad.flags &= std::uint16_t(~kHelloFlagAuth);
	require(!key().verify(bad));
	return 0;
}
