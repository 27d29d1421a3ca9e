// SPDX-License-Identifier: MIT
// One direction of an HTTP/1.1 connection as a sequence of messages, parsed
// by http-parser (Node.js's parser, Debian's libhttp-parser) and checked
// further where its non-strict build lets through what smuggling is made
// of: bare CR or LF line ends, obs-fold, whitespace before the colon,
// control bytes, a Transfer-Encoding other than one final chunked, a
// missing or repeated Host, malformed chunk extensions. The parser frames
// the messages; the checks only refuse.
//
// Bodies are not copied: step() says which of the input bytes are body
// (with their chunked framing, forwarded as they came), and pauses at the
// end of each head and each message so the caller decides what comes next.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace agent {

struct HttpField {
	std::string name, value;
};

struct HttpHead {
	unsigned method = 0; // enum http_method (requests)
	std::string url;     // requests
	unsigned status = 0; // responses
	std::string reason;  // responses
	unsigned major = 1, minor = 1;
	std::vector<HttpField> fields;
	bool chunked = false;
	std::optional<std::uint64_t> content_length;
	bool keep_alive = true;
	bool upgrade = false;

	// The first value of a field (case-insensitive name), or null.
	const std::string *find(std::string_view name) const;
};

bool iequals(std::string_view a, std::string_view b);

// Line rules shared by heads and trailers, one byte at a time.
class LineChecker {
public:
	enum class Result { more, line, end, error };
	// start_line: the block starts with a request or status line.
	void reset(bool start_line);
	Result feed(unsigned char c);
	const char *error() const { return error_; }

private:
	bool prev_cr_ = false;
	bool start_line_ = true; // the current line is the start line
	bool in_name_ = false;
	bool any_line_ = false;  // a non-empty line was seen
	std::size_t line_len_ = 0;
	const char *error_ = nullptr;
};

// The chunked framing around the data the parser reports: each chunk line
// (size and extensions), the CRLF after each chunk's data, the trailers.
class ChunkChecker {
public:
	void reset();
	// Framing bytes in order; false on an error (see error()).
	bool framing(std::span<const std::byte> bytes);
	// The parser reported chunk data here.
	bool data();
	const char *error() const { return error_; }

private:
	enum class State { size_line, data, data_crlf, trailers, done };
	bool check_size_line();
	State state_ = State::size_line;
	std::string line_;
	bool zero_ = false;
	bool data_seen_ = false;
	LineChecker trailers_;
	const char *error_ = nullptr;
};

class MessageReader {
public:
	enum class Kind { request, response };
	struct Step {
		std::size_t used = 0;              // input bytes consumed
		std::span<const std::byte> body;   // of them, body bytes to forward
		bool head = false;                 // a head is complete (head())
		bool complete = false;             // the message is complete
		bool error = false;                // see status() and reason()
	};

	MessageReader(Kind kind, std::size_t max_header, std::uint64_t max_body);
	MessageReader(const MessageReader &) = delete;
	MessageReader &operator=(const MessageReader &) = delete;

	// Responses: the next message answers a HEAD (it has no body).
	void expect_no_body(bool v) { no_body_ = v; }
	// Parses from in until a head or a message completes, an error, or
	// the input runs out.
	Step step(std::span<const std::byte> in);
	// The peer closed: completes a response read to end of stream (true),
	// or false if a message was cut short.
	bool finish();
	// No byte of a next message has been seen.
	bool between_messages() const { return phase_ == Phase::head && head_bytes_ == 0; }
	bool in_head() const { return phase_ == Phase::head && head_bytes_ > 0; }
	// Read until the end of stream (a response with no length).
	bool until_eof() const;

	const HttpHead &head() const { return head_; }
	// The status to answer an error with (400, 413, 431; 502 for responses).
	unsigned status() const { return status_; }
	const std::string &reason() const { return reason_; }
	std::uint64_t body_bytes() const { return body_bytes_; }

private:
	enum class Phase { head, body, failed };
	static int on_url(http_parser *p, const char *at, std::size_t n);
	static int on_status(http_parser *p, const char *at, std::size_t n);
	static int on_field(http_parser *p, const char *at, std::size_t n);
	static int on_value(http_parser *p, const char *at, std::size_t n);
	static int on_headers_complete(http_parser *p);
	static int on_body(http_parser *p, const char *at, std::size_t n);
	static int on_message_complete(http_parser *p);
	Step fail(Step s, unsigned status, std::string reason);
	bool check_head();
	bool h_cl_over() const;
	void start_message();

	Kind kind_;
	std::size_t max_header_;
	std::uint64_t max_body_;
	http_parser parser_{};
	http_parser_settings settings_{};
	Phase phase_ = Phase::head;
	LineChecker lines_;
	ChunkChecker chunks_;
	std::size_t head_bytes_ = 0;
	HttpHead head_;
	bool last_was_value_ = false;
	bool no_body_ = false;
	bool completed_ = false; // set by on_message_complete
	// on_body spans during one execute, as offsets into its input.
	std::vector<std::pair<std::size_t, std::size_t>> data_;
	const char *base_ = nullptr;
	std::uint64_t body_bytes_ = 0;
	unsigned status_ = 0;
	std::string reason_;
};

// "GET", "HEAD", "OPTIONS": may be sent at once, beside the others.
bool is_safe_method(unsigned method);
// A field a proxy removes (RFC 9110 7.6.1): Connection and those it names,
// Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade.
bool is_hop_by_hop(std::string_view name, const HttpHead &h);

} // namespace agent
