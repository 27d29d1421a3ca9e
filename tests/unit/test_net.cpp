// SPDX-License-Identifier: MIT
#include "agent/net.hpp"

#include <catch2/catch_test_macros.hpp>

using namespace agent;

TEST_CASE("addresses parse and print", "[net]")
{
	std::string err;
	auto a = parse_address("127.0.0.1:8080", &err);
	REQUIRE(a);
	CHECK(a->str() == "127.0.0.1:8080");
	a = parse_address("[::1]:443", &err);
	REQUIRE(a);
	CHECK(a->str() == "[::1]:443");
	a = parse_address("localhost:1", &err);
	REQUIRE(a);
	CHECK(a->str() == "127.0.0.1:1");
	a = parse_address(":9000", &err);
	REQUIRE(a);
	CHECK(a->str() == "0.0.0.0:9000");
}

TEST_CASE("bad addresses say why", "[net]")
{
	std::string err;
	CHECK_FALSE(parse_address("127.0.0.1:70000", &err));
	CHECK(err.find("port") != std::string::npos);
	CHECK_FALSE(parse_address("127.0.0.1:", &err));
	CHECK_FALSE(parse_address("127.0.0.1:80x", &err));
	CHECK_FALSE(parse_address("example.com:80", &err));
	CHECK(err.find("numeric") != std::string::npos);
	CHECK_FALSE(parse_address("[::1:80", &err));
}
