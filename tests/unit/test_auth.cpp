// SPDX-License-Identifier: MIT
#include "agent/auth.hpp"

#include <catch2/catch_test_macros.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <unistd.h>

using namespace agent;

namespace {
AuthKey key_of(const char *s)
{
	return AuthKey(std::vector<unsigned char>(s, s + std::strlen(s)));
}
} // namespace

TEST_CASE("a signed hello verifies under the same key only", "[auth]")
{
	AuthKey k = key_of("0123456789abcdef-secret");
	wire::Hello h;
	h.session = 42;
	h.index = 1;
	h.count = 4;
	k.sign(h);
	CHECK(h.flags & wire::kHelloFlagAuth);
	CHECK(k.verify(h));
	CHECK_FALSE(key_of("0123456789abcdef-other!").verify(h));

	// The tag covers the session id and the stream index and count.
	wire::Hello t = h;
	t.session = 43;
	CHECK_FALSE(k.verify(t));
	t = h;
	t.index = 2;
	CHECK_FALSE(k.verify(t));
	t = h;
	t.count = 5;
	CHECK_FALSE(k.verify(t));
	t = h;
	t.tag[7] ^= 1;
	CHECK_FALSE(k.verify(t));
}

TEST_CASE("the tag matches an independent HMAC-SHA256 of the signed bytes", "[auth]")
{
	// HMAC-SHA256(key, encoded hello[0, 24)) computed independently:
	// python3 -c 'import hmac,hashlib,struct; print(hmac.new(b"0123456789abcdef",
	//   struct.pack("<IHHQHHHH",0x584d4741,2,1,7,0,1,2,0),hashlib.sha256).hexdigest())'
	AuthKey k = key_of("0123456789abcdef");
	wire::Hello h;
	h.session = 7;
	h.index = 0;
	h.count = 1;
	k.sign(h);
	char hex[65];
	for (int i = 0; i < 32; i++)
		std::snprintf(hex + 2 * i, 3, "%02x", h.tag[i]);
	CHECK(std::string(hex) ==
	      "2b181de0c17e42fc3df2575c3817e13d33ff1cd05feb26169fd0366aa84ae972");
}

TEST_CASE("an unsigned hello never verifies", "[auth]")
{
	wire::Hello h;
	h.session = 1;
	h.count = 1;
	CHECK_FALSE(key_of("0123456789abcdef").verify(h));
}

TEST_CASE("key files: short or missing keys are refused", "[auth]")
{
	std::string err;
	CHECK_FALSE(AuthKey::from_file("/nonexistent/key", &err));
	CHECK(err.find("cannot read") != std::string::npos);
	char path[] = "/tmp/agentkeyXXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, "short\n", 6) == 6);
	close(fd);
	CHECK_FALSE(AuthKey::from_file(path, &err));
	CHECK(err.find("fewer than 16") != std::string::npos);
	std::ofstream(path) << "0123456789abcdef\n";
	CHECK(AuthKey::from_file(path, &err));
	unlink(path);
}

TEST_CASE("AUTH proves the key for one nonce only: a replay on a new stream fails", "[auth]")
{
	AuthKey k = key_of("0123456789abcdef");
	wire::Hello h;
	h.session = 7;
	h.count = 1;
	k.sign(h);
	std::array<std::byte, wire::kHelloAckSize> ack1{}, ack2{};
	wire::HelloAck a;
	a.nonce[0] = 1;
	wire::encode_hello_ack(a, ack1.data());
	a.nonce[0] = 2;
	wire::encode_hello_ack(a, ack2.data());
	auto proof = k.prove(h, ack1);
	auto bytes = std::as_bytes(std::span(proof));
	CHECK(k.verify_proof(h, ack1, bytes.first<wire::kAuthSize>()));
	// The same AUTH, captured and replayed to a stream with another nonce.
	CHECK_FALSE(k.verify_proof(h, ack2, bytes.first<wire::kAuthSize>()));
	// Another key proves nothing.
	CHECK_FALSE(key_of("fedcba9876543210").verify_proof(h, ack1, bytes.first<wire::kAuthSize>()));
}
