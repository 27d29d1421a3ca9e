// SPDX-License-Identifier: MIT
#include "http_message.hpp"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstring>

namespace agent {
namespace {

bool is_tchar(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return true;
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
		return true;
	return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

std::string_view trim(std::string_view s)
{
	while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
		s.remove_prefix(1);
	while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
		s.remove_suffix(1);
	return s;
}

// Calls fn for each trimmed element of a comma list.
template <typename F>
void each_element(std::string_view v, F fn)
{
	while (true) {
		std::size_t comma = v.find(',');
		fn(trim(v.substr(0, comma)));
		if (comma == std::string_view::npos)
			return;
		v.remove_prefix(comma + 1);
	}
}

MessageReader *self(http_parser *p) { return static_cast<MessageReader *>(p->data); }

} // namespace

bool iequals(std::string_view a, std::string_view b)
{
	if (a.size() != b.size())
		return false;
	for (std::size_t i = 0; i < a.size(); i++)
		if ((a[i] | 0x20) != (b[i] | 0x20) && !(a[i] == b[i]))
			return false;
	return true;
}

const std::string *HttpHead::find(std::string_view name) const
{
	for (const HttpField &f : fields)
		if (iequals(f.name, name))
			return &f.value;
	return nullptr;
}

bool is_safe_method(unsigned m) { return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS; }

bool is_hop_by_hop(std::string_view name, const HttpHead &h)
{
	for (const char *n : {"connection", "keep-alive", "proxy-connection", "te", "trailer",
			      "upgrade"})
		if (iequals(name, n))
			return true;
	bool named = false;
	for (const HttpField &f : h.fields)
		if (iequals(f.name, "connection"))
			each_element(f.value, [&](std::string_view e) {
				if (iequals(e, name))
					named = true;
			});
	return named;
}

// ---- LineChecker ------------------------------------------------------------

void LineChecker::reset(bool start_line)
{
	*this = LineChecker();
	start_line_ = start_line;
	any_line_ = !start_line;
}

LineChecker::Result LineChecker::feed(unsigned char c)
{
	if (prev_cr_) {
		prev_cr_ = false;
		if (c != '\n') {
			error_ = "bare CR in a line end";
			return Result::error;
		}
		if (line_len_ == 0) {
			// Empty lines before the start line are ignored (RFC 9112 2.2).
			if (!any_line_)
				return Result::more;
			return Result::end;
		}
		any_line_ = true;
		start_line_ = false;
		line_len_ = 0;
		return Result::line;
	}
	if (c == '\r') {
		prev_cr_ = true;
		return Result::more;
	}
	if (c == '\n') {
		error_ = "bare LF as a line end";
		return Result::error;
	}
	if (line_len_ == 0 && !start_line_) {
		if (c == ' ' || c == '\t') {
			error_ = "obs-fold (a line starting with whitespace)";
			return Result::error;
		}
		in_name_ = true;
	}
	if (is_ctl(c) && (c != '\t' || start_line_)) {
		error_ = "a control byte in the head";
		return Result::error;
	}
	if (in_name_) {
		if (c == ':') {
			if (line_len_ == 0) {
				error_ = "an empty field name";
				return Result::error;
			}
			in_name_ = false;
		} else if (!is_tchar(c)) {
			error_ = c == ' ' || c == '\t' ? "whitespace in a field name or before its colon"
						       : "a field name that is not a token";
			return Result::error;
		}
	}
	line_len_++;
	return Result::more;
}

// ---- ChunkChecker -------------------------------------------------------------

void ChunkChecker::reset()
{
	state_ = State::size_line;
	line_.clear();
	zero_ = false;
	error_ = nullptr;
}

// chunk-size [ chunk-ext ] CRLF, where
//   chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )
bool ChunkChecker::check_size_line()
{
	std::string_view s(line_);
	if (s.size() < 2 || s.substr(s.size() - 2) != "\r\n") {
		error_ = "a chunk line not ended by CRLF";
		return false;
	}
	s.remove_suffix(2);
	std::size_t i = 0;
	zero_ = true;
	while (i < s.size() && std::isxdigit(static_cast<unsigned char>(s[i]))) {
		if (s[i] != '0')
			zero_ = false;
		i++;
	}
	if (i == 0) {
		error_ = "a chunk size that is not hex digits";
		return false;
	}
	auto ws = [&] {
		while (i < s.size() && (s[i] == ' ' || s[i] == '\t'))
			i++;
	};
	auto token = [&] {
		std::size_t b = i;
		while (i < s.size() && is_tchar(s[i]))
			i++;
		return i > b;
	};
	while (true) {
		ws();
		if (i == s.size())
			return true;
		if (s[i] != ';') {
			error_ = "a bad chunk size or extension";
			return false;
		}
		i++;
		ws();
		if (!token()) {
			error_ = "a chunk extension without a name";
			return false;
		}
		ws();
		if (i < s.size() && s[i] == '=') {
			i++;
			ws();
			if (i < s.size() && s[i] == '"') {
				i++;
				bool closed = false;
				while (i < s.size()) {
					unsigned char c = s[i];
					if (c == '"') {
						closed = true;
						i++;
						break;
					}
					if (c == '\\') {
						if (i + 1 >= s.size() || (is_ctl(s[i + 1]) && s[i + 1] != '\t'))
							break;
						i += 2;
						continue;
					}
					if (is_ctl(c) && c != '\t')
						break;
					i++;
				}
				if (!closed) {
					error_ = "a bad quoted chunk extension value";
					return false;
				}
			} else if (!token()) {
				error_ = "a chunk extension without a value after '='";
				return false;
			}
		}
	}
}

bool ChunkChecker::framing(std::span<const std::byte> bytes)
{
	constexpr std::size_t kMaxLine = 4096;
	for (std::byte b : bytes) {
		unsigned char c = static_cast<unsigned char>(b);
		switch (state_) {
		case State::size_line:
			line_.push_back(static_cast<char>(c));
			if (line_.size() > kMaxLine) {
				error_ = "a chunk line too long";
				return false;
			}
			if (c == '\n') {
				if (!check_size_line())
					return false;
				line_.clear();
				if (zero_) {
					state_ = State::trailers;
					trailers_.reset(false);
				} else {
					state_ = State::data;
					data_seen_ = false;
				}
			}
			break;
		case State::data:
			// The parser reports a chunk's data in as many pieces as
			// the input came in; framing after it means it is over.
			if (!data_seen_) {
				error_ = "chunk framing where data was due";
				return false;
			}
			state_ = State::data_crlf;
			[[fallthrough]];
		case State::data_crlf:
			line_.push_back(static_cast<char>(c));
			if (line_.size() == 2) {
				if (line_ != "\r\n") {
					error_ = "chunk data not followed by CRLF";
					return false;
				}
				line_.clear();
				state_ = State::size_line;
			}
			break;
		case State::trailers:
			switch (trailers_.feed(c)) {
			case LineChecker::Result::error:
				error_ = trailers_.error();
				return false;
			case LineChecker::Result::end:
				state_ = State::done;
				break;
			default:
				break;
			}
			break;
		case State::done:
			error_ = "bytes after the last chunk";
			return false;
		}
	}
	return true;
}

bool ChunkChecker::data()
{
	if (state_ != State::data) {
		error_ = "chunk data where framing was due";
		return false;
	}
	data_seen_ = true;
	return true;
}

// ---- MessageReader -------------------------------------------------------------

MessageReader::MessageReader(Kind kind, std::size_t max_header, std::uint64_t max_body)
	: kind_(kind), max_header_(max_header), max_body_(max_body)
{
	http_parser_init(&parser_, kind == Kind::request ? HTTP_REQUEST : HTTP_RESPONSE);
	parser_.data = this;
	http_parser_settings_init(&settings_);
	settings_.on_url = on_url;
	settings_.on_status = on_status;
	settings_.on_header_field = on_field;
	settings_.on_header_value = on_value;
	settings_.on_headers_complete = on_headers_complete;
	settings_.on_body = on_body;
	settings_.on_message_complete = on_message_complete;
	start_message();
}

void MessageReader::start_message()
{
	phase_ = Phase::head;
	lines_.reset(true);
	chunks_.reset();
	head_bytes_ = 0;
	head_ = HttpHead();
	last_was_value_ = false;
	completed_ = false;
	body_bytes_ = 0;
}

bool MessageReader::until_eof() const
{
	// RFC 9112 6.3: no length, and a status that may have a body.
	unsigned st = head_.status;
	return kind_ == Kind::response && phase_ == Phase::body && !completed_ && !no_body_ &&
	       !head_.chunked && !head_.content_length && st >= 200 && st != 204 && st != 304;
}

int MessageReader::on_url(http_parser *p, const char *at, std::size_t n)
{
	self(p)->head_.url.append(at, n);
	return 0;
}

int MessageReader::on_status(http_parser *p, const char *at, std::size_t n)
{
	self(p)->head_.reason.append(at, n);
	return 0;
}

int MessageReader::on_field(http_parser *p, const char *at, std::size_t n)
{
	MessageReader *r = self(p);
	if (r->last_was_value_ || r->head_.fields.empty())
		r->head_.fields.emplace_back();
	r->last_was_value_ = false;
	r->head_.fields.back().name.append(at, n);
	return 0;
}

int MessageReader::on_value(http_parser *p, const char *at, std::size_t n)
{
	MessageReader *r = self(p);
	r->last_was_value_ = true;
	r->head_.fields.back().value.append(at, n);
	return 0;
}

int MessageReader::on_headers_complete(http_parser *p)
{
	MessageReader *r = self(p);
	if (r->phase_ != Phase::head)
		return 0; // trailers
	HttpHead &h = r->head_;
	h.method = p->method;
	h.status = p->status_code;
	h.major = p->http_major;
	h.minor = p->http_minor;
	h.chunked = (p->flags & F_CHUNKED) != 0;
	if (p->content_length != ULLONG_MAX && !h.chunked)
		h.content_length = p->content_length;
	h.keep_alive = http_should_keep_alive(p) != 0;
	h.upgrade = p->upgrade != 0;
	r->phase_ = Phase::body;
	return r->kind_ == Kind::response && r->no_body_ ? 1 : 0;
}

int MessageReader::on_body(http_parser *p, const char *at, std::size_t n)
{
	MessageReader *r = self(p);
	r->data_.emplace_back(at - r->base_, n);
	r->body_bytes_ += n;
	return 0;
}

int MessageReader::on_message_complete(http_parser *p)
{
	MessageReader *r = self(p);
	r->completed_ = true;
	// Stop here: the next message is the caller's to start.
	http_parser_pause(p, 1);
	return 0;
}

MessageReader::Step MessageReader::fail(Step s, unsigned status, std::string reason)
{
	phase_ = Phase::failed;
	status_ = kind_ == Kind::response ? 502 : status;
	reason_ = std::move(reason);
	s.error = true;
	s.body = {};
	return s;
}

// What the parser lets through and a proxy must not.
bool MessageReader::check_head()
{
	HttpHead &h = head_;
	if (h.major != 1 || h.minor > 1) {
		reason_ = "HTTP version not 1.0 or 1.1";
		return false;
	}
	// Transfer-Encoding: chunked must be there once, and last.
	bool any_te = false;
	int chunked = 0;
	bool last_chunked = false;
	unsigned hosts = 0;
	for (const HttpField &f : h.fields) {
		if (iequals(f.name, "transfer-encoding")) {
			any_te = true;
			each_element(f.value, [&](std::string_view e) {
				last_chunked = iequals(e, "chunked");
				chunked += last_chunked;
			});
		} else if (iequals(f.name, "host")) {
			hosts++;
		}
	}
	if (any_te && (chunked != 1 || !last_chunked)) {
		if (kind_ == Kind::request || chunked > 0) {
			reason_ = "Transfer-Encoding other than one final chunked";
			return false;
		}
	}
	if (kind_ == Kind::request) {
		if (h.minor == 1 && hosts != 1) {
			reason_ = hosts ? "more than one Host" : "no Host";
			return false;
		}
		if (hosts > 1) {
			reason_ = "more than one Host";
			return false;
		}
		if (h.upgrade) {
			reason_ = "protocol upgrades and CONNECT are not supported";
			return false;
		}
	}
	return true;
}

MessageReader::Step MessageReader::step(std::span<const std::byte> in)
{
	Step s;
	if (phase_ == Phase::failed) {
		s.error = true;
		return s;
	}
	if (completed_)
		start_message();
	if (phase_ == Phase::head) {
		// The head goes through the line rules first; the parser gets
		// exactly the head's bytes, so it never runs past its end.
		std::size_t n = 0;
		bool end = false;
		while (n < in.size() && !end) {
			unsigned char c = static_cast<unsigned char>(in[n]);
			n++;
			if (++head_bytes_ > max_header_)
				return fail(s, 431, "head larger than the limit");
			switch (lines_.feed(c)) {
			case LineChecker::Result::error:
				return fail(s, 400, lines_.error());
			case LineChecker::Result::end:
				end = true;
				break;
			default:
				break;
			}
		}
		base_ = reinterpret_cast<const char *>(in.data());
		data_.clear();
		std::size_t got = http_parser_execute(&parser_, &settings_, base_, n);
		enum http_errno e = HTTP_PARSER_ERRNO(&parser_);
		if (e != HPE_OK && e != HPE_PAUSED)
			return fail(s, e == HPE_HEADER_OVERFLOW ? 431 : 400, http_errno_description(e));
		if (e == HPE_PAUSED)
			http_parser_pause(&parser_, 0);
		s.used = n;
		if (got != n && e != HPE_PAUSED)
			return fail(s, 400, "the head did not parse to its end");
		if (!end)
			return s;
		if (phase_ != Phase::body)
			return fail(s, 400, "the head did not parse to its end");
		if (!check_head())
			return fail(s, 400, reason_);
		if (kind_ == Kind::request && h_cl_over())
			return fail(s, 413, "Content-Length over the body limit");
		s.head = true;
		s.complete = completed_;
		return s;
	}
	// The body: the parser pauses at the message's end.
	base_ = reinterpret_cast<const char *>(in.data());
	data_.clear();
	std::size_t got = http_parser_execute(&parser_, &settings_, base_, in.size());
	enum http_errno e = HTTP_PARSER_ERRNO(&parser_);
	if (e != HPE_OK && e != HPE_PAUSED)
		return fail(s, 400, http_errno_description(e));
	if (e == HPE_PAUSED)
		http_parser_pause(&parser_, 0);
	s.used = got;
	if (kind_ == Kind::request && body_bytes_ > max_body_)
		return fail(s, 413, "body over the limit");
	if (head_.chunked) {
		std::size_t at = 0;
		for (auto [off, len] : data_) {
			if (!chunks_.framing(in.subspan(at, off - at)) || !chunks_.data())
				return fail(s, 400, chunks_.error());
			at = off + len;
		}
		if (!chunks_.framing(in.subspan(at, got - at)))
			return fail(s, 400, chunks_.error());
	}
	s.body = in.subspan(0, got);
	s.complete = completed_;
	return s;
}

bool MessageReader::h_cl_over() const
{
	return head_.content_length && *head_.content_length > max_body_;
}

bool MessageReader::finish()
{
	if (phase_ == Phase::failed)
		return false;
	if (phase_ == Phase::head)
		return head_bytes_ == 0;
	if (completed_)
		return true;
	http_parser_execute(&parser_, &settings_, nullptr, 0);
	enum http_errno e = HTTP_PARSER_ERRNO(&parser_);
	if (e == HPE_PAUSED)
		http_parser_pause(&parser_, 0);
	return completed_;
}

} // namespace agent
