// SPDX-License-Identifier: MIT
// The HTTP mode's message reader: framing from http-parser, and the checks
// it adds where the parser's non-strict build lets smuggling through.
#include "../../libagent/src/http_message.hpp"

#include <catch2/catch_test_macros.hpp>

#include <string>
#include <string_view>

using agent::MessageReader;

namespace {

struct Parsed {
	bool error = false;
	unsigned status = 0;
	int heads = 0, messages = 0;
	std::string body; // forwarded body bytes (framing included)
};

// Feeds text in pieces of `piece` bytes, as a socket would deliver it.
Parsed parse(std::string_view text, std::size_t piece = 1 << 20,
	     MessageReader::Kind kind = MessageReader::Kind::request)
{
	MessageReader r(kind, 1024, 1 << 20);
	Parsed out;
	std::string in;
	std::size_t fed = 0;
	while (fed < text.size() || !in.empty()) {
		if (fed < text.size()) {
			std::size_t n = std::min(piece, text.size() - fed);
			in.append(text.substr(fed, n));
			fed += n;
		}
		std::size_t used_total = 0;
		while (used_total < in.size()) {
			auto s = r.step(std::as_bytes(std::span(in.data() + used_total,
								 in.size() - used_total)));
			if (s.error) {
				out.error = true;
				out.status = r.status();
				return out;
			}
			used_total += s.used;
			out.heads += s.head;
			out.messages += s.complete;
			out.body.append(reinterpret_cast<const char *>(s.body.data()), s.body.size());
			if (s.used == 0 && !s.complete)
				break;
		}
		in.erase(0, used_total);
		if (fed == text.size() && !in.empty() && used_total == 0)
			break;
	}
	return out;
}

} // namespace

TEST_CASE("pipelined requests are framed one by one, bodies forwarded as they came",
	  "[http]")
{
	std::string chunked = "POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "3;ext=\"q\\\"x\"\r\nabc\r\n0\r\nTrailer-A: 1\r\n\r\n";
	std::string text = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n" + chunked +
			   "POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nxyGET / HTTP/1.1\r\nHost: h\r\n\r\n";
	for (std::size_t piece : {std::size_t(1), std::size_t(7), std::size_t(1 << 20)}) {
		Parsed p = parse(text, piece);
		CHECK_FALSE(p.error);
		CHECK(p.heads == 4);
		CHECK(p.messages == 4);
		CHECK(p.body == "3;ext=\"q\\\"x\"\r\nabc\r\n0\r\nTrailer-A: 1\r\n\r\nxy");
	}
}

TEST_CASE("smuggling classes are refused with 400", "[http]")
{
	const char *bad[] = {
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\na",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\nHost: h\n\n",
		"GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
	};
	for (const char *b : bad) {
		for (std::size_t piece : {std::size_t(1), std::size_t(1 << 20)}) {
			Parsed p = parse(b, piece);
			INFO(b);
			CHECK(p.error);
			CHECK(p.status == 400);
		}
	}
}

TEST_CASE("limits: 431 for a large head, 413 for a large body", "[http]")
{
	std::string big = "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(2000, 'a') + "\r\n\r\n";
	CHECK(parse(big).status == 431);
	CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n").status == 413);
}

TEST_CASE("a response with both lengths is refused with 502", "[http]")
{
	Parsed p = parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "0\r\n\r\n",
			 1 << 20, MessageReader::Kind::response);
	CHECK(p.error);
	CHECK(p.status == 502);
	Parsed ok = parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
			  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
			  3, MessageReader::Kind::response);
	CHECK_FALSE(ok.error);
	CHECK(ok.messages == 3);
	CHECK(ok.body == "hi");
}
