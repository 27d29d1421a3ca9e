// SPDX-License-Identifier: MIT
// The client side of HTTP mode: requests in, responses out in request order.
#include "agent/log.hpp"
#include "http_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cassert>
#include <cstring>

namespace agent {
namespace {

const char *status_text(unsigned status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	case 504: return "Gateway Timeout";
	default: return "Error";
	}
}

std::string ip_of(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	if (getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len) < 0)
		return "unknown";
	char buf[INET6_ADDRSTRLEN] = "unknown";
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(&ss)->sin_addr, buf, sizeof(buf));
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_addr, buf,
			  sizeof(buf));
	return buf;
}

// The input kept while requests wait (a barrier, a full pipeline): past it
// the client is not read.
constexpr std::size_t kInputLimit = 256 * 1024;

} // namespace

std::string error_response(unsigned status, const std::string &why)
{
	std::string body = fmt::format("{} {}: {}\n", status, status_text(status), why);
	return fmt::format("HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n"
			   "Connection: close\r\nVia: 1.1 agentproxy\r\n\r\n{}",
			   status, status_text(status), body.size(), body);
}

ClientConn::ClientConn(Agent &agent, const HttpConfig &cfg, HttpStats &stats, Pool &pool,
		       ClientHost &host, int fd)
	: agent_(agent), cfg_(cfg), stats_(stats), pool_(pool), host_(host),
	  conn_(agent, *this, fd, true), peer_ip_(ip_of(fd)), peer_(peer_address(fd)),
	  reader_(MessageReader::Kind::request, cfg.max_header, cfg.max_body)
{
	// A response's head and body go out in separate sends: Nagle would
	// hold the second for the client's delayed ACK (40 ms a request).
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

ClientConn::~ClientConn()
{
	assert(closed_ || agent_.tearing_down());
	if (watching_)
		agent_.events().unwatch(conn_.fd());
}

void ClientConn::start()
{
	stats_.clients_opened++;
	stats_.clients_active++;
	watching_ = true;
	agent_.events().watch(conn_.fd(), *this);
	idle_timer_.arm(agent_.timers(), cfg_.idle_timeout);
}

void ClientConn::on_data(std::span<const std::byte> bytes)
{
	if (closing_)
		return;
	if (in_off_ > 0 && in_off_ == in_.size()) {
		in_.clear();
		in_off_ = 0;
	}
	in_.insert(in_.end(), bytes.begin(), bytes.end());
	idle_timer_.arm(agent_.timers(), cfg_.idle_timeout);
	kick();
}

void ClientConn::on_end(int err)
{
	if (closing_)
		return;
	if (err < 0) {
		finish(true, true, "client connection failed");
		return;
	}
	peer_eof_ = true;
	kick();
}

void ClientConn::conn_sent(Conn &)
{
	idle_timer_.arm(agent_.timers(), cfg_.idle_timeout);
	kick();
}

void ClientConn::conn_failed(Conn &, int)
{
	if (!closed_)
		finish(true, true, "send to the client failed");
}

void ClientConn::conn_op_done(Conn &)
{
	if (closed_ && !conn_.busy() && !reported_) {
		reported_ = true;
		host_.client_finished(this);
	}
}

void ClientConn::kick()
{
	if (in_work_) {
		again_ = true;
		return;
	}
	in_work_ = true;
	do {
		again_ = false;
		work();
	} while (again_ && !closing_);
	in_work_ = false;
}

void ClientConn::work()
{
	if (closing_)
		return;
	pump();
	if (closing_)
		return;
	read_requests();
	if (closing_)
		return;
	pump();
	if (closing_)
		return;
	if ((peer_eof_ || stop_reading_) && !has_pending() && !reading_) {
		// Nothing more will be asked, and everything has been answered.
		bool clean = peer_eof_ && reader_.between_messages();
		finish(!clean && !stop_reading_, false, "done");
		return;
	}
	if (peer_eof_ && reading_) {
		finish(true, true, "the client closed inside a request");
		return;
	}
	update_watch();
	update_timers();
}

void ClientConn::read_requests()
{
	while (!closing_ && !stop_reading_ && in_off_ < in_.size()) {
		bool early = false;
		if (reading_) {
			// A body goes only to its own connection; its first bytes are
			// checked (and kept) before it has one.
			if (!reading_->backend) {
				if (reading_->body_checked)
					break;
				early = true;
			} else if (reading_->backend->state() == BackendConn::State::closed) {
				break;
			} else if (reading_->backend->send_full()) {
				break;
			}
		} else if (exchanges_.size() >= cfg_.max_pipeline) {
			break;
		}
		std::span<const std::byte> in(in_.data() + in_off_, in_.size() - in_off_);
		// Bounded steps: a body's backend queue is checked in between.
		if (reading_ && in.size() > (early ? 64 : 256) * 1024)
			in = in.first((early ? 64 : 256) * 1024);
		MessageReader::Step s = reader_.step(in);
		in_off_ += s.used;
		if (s.error) {
			stop_reading_ = true;
			if (reading_ && reading_->emitted) {
				// Its response has begun: nothing else can follow it.
				reading_->close_after = true;
				if (reading_->backend)
					reading_->backend->detach();
				reading_ = nullptr;
				finish(true, true, "bad request body");
				return;
			}
			if (reading_) {
				// The request's body was bad: a backend connection that
				// saw part of it cannot be reused.
				Exchange *ex = reading_;
				reading_ = nullptr;
				if (ex->backend)
					ex->backend->detach();
				ex->backend = nullptr;
				pool_.cancel(ex);
				ex->state = Exchange::State::finished;
				put_error(*ex, reader_.status(), reader_.reason());
				stats_.local_errors++;
				log(LogLevel::info, "{}: {} {}", peer_, reader_.status(), reader_.reason());
			} else {
				local_response(reader_.status(), reader_.reason());
			}
			return;
		}
		if (s.head) {
			new_request();
			if (s.complete)
				request_complete();
			continue;
		}
		if (!s.body.empty() && reading_) {
			if (early)
				reading_->early_body.insert(reading_->early_body.end(), s.body.begin(),
							    s.body.end());
			else if (reading_->backend)
				reading_->backend->send_body(s.body);
		}
		if (early && reading_)
			reading_->body_checked = true;
		if (s.complete)
			request_complete();
	}
	if (in_off_ == in_.size()) {
		in_.clear();
		in_off_ = 0;
	} else if (in_off_ > kInputLimit) {
		in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(in_off_));
		in_off_ = 0;
	}
}

void ClientConn::new_request()
{
	const HttpHead &h = reader_.head();
	auto ex = std::make_unique<Exchange>();
	ex->client = this;
	ex->method = h.method;
	ex->url = h.url;
	ex->has_body = h.chunked || (h.content_length && *h.content_length > 0);
	ex->safe = is_safe_method(h.method) && !ex->has_body;
	ex->started = agent_.now();
	if (!h.keep_alive) {
		ex->close_after = true;
		stop_reading_ = true;
	}
	std::string &out = ex->request_head;
	out = fmt::format("{} {} HTTP/1.1\r\n", http_method_str(static_cast<http_method>(h.method)),
			  h.url);
	std::string xff;
	for (const HttpField &f : h.fields) {
		if (is_hop_by_hop(f.name, h))
			continue;
		if (iequals(f.name, "x-forwarded-for")) {
			if (!xff.empty())
				xff += ", ";
			xff += f.value;
			continue;
		}
		out += f.name;
		out += ": ";
		out += f.value;
		out += "\r\n";
	}
	if (!xff.empty())
		xff += ", ";
	xff += peer_ip_;
	out += fmt::format("Via: {}.{} agentproxy\r\nX-Forwarded-For: {}\r\n\r\n", h.major,
			   h.minor, xff);
	stats_.requests++;
	header_timer_.cancel();
	Exchange *p = ex.get();
	exchanges_.push_back(std::move(ex));
	if (const std::string *e = h.find("expect"); e && iequals(*e, "100-continue"))
		p->expect_continue = true;
	reading_ = p->has_body ? p : nullptr;
	if (!p->has_body)
		p->request_done = true;
}

void ClientConn::request_complete()
{
	if (reading_) {
		reading_->request_done = true;
		reading_ = nullptr;
	}
}

bool ClientConn::emit(Exchange &ex, std::span<const std::byte> bytes)
{
	if (closing_)
		return false;
	put(ex, bytes);
	return ex.flushed ? conn_.queued() < cfg_.send_limit : held_total_ < cfg_.hold_budget;
}

void ClientConn::put(Exchange &ex, std::span<const std::byte> bytes)
{
	if (ex.flushed) {
		conn_.send(bytes);
		return;
	}
	ex.held.insert(ex.held.end(), bytes.begin(), bytes.end());
	held_total_ += bytes.size();
}

void ClientConn::put_error(Exchange &ex, unsigned status, const std::string &why)
{
	std::string r = error_response(status, why);
	put(ex, std::as_bytes(std::span(r)));
	ex.emitted = true;
	ex.status = status;
	ex.close_after = true;
	stop_reading_ = true;
}

// A request may go to a backend: a body's first bytes have been checked,
// or the client waits for a 100 Continue before it sends them.
bool ClientConn::ready(const Exchange &ex) const
{
	return !ex.has_body || ex.body_checked || ex.request_done || ex.expect_continue;
}

void ClientConn::response_done(Exchange &ex)
{
	ex.state = Exchange::State::finished;
	ex.backend = nullptr;
	kick();
}

void ClientConn::response_failed(Exchange &ex, unsigned status, const std::string &why)
{
	ex.backend = nullptr;
	ex.state = Exchange::State::finished;
	if (status == 504)
		stats_.gateway_timeouts++;
	else
		stats_.bad_gateway++;
	log(LogLevel::warn, "{}: {} for {} {}: {}", peer_, status,
	    http_method_str(static_cast<http_method>(ex.method)), ex.url, why);
	if (&ex == reading_) {
		// Its body cannot be read any further.
		reading_ = nullptr;
		stop_reading_ = true;
		ex.close_after = true;
	}
	if (!ex.emitted) {
		put_error(ex, status, why);
	} else {
		// Part of a response went out: the client can only see it end.
		ex.close_after = true;
		stop_reading_ = true;
	}
	kick();
}

void ClientConn::local_response(unsigned status, const std::string &why)
{
	auto ex = std::make_unique<Exchange>();
	ex->client = this;
	ex->state = Exchange::State::finished;
	ex->status = status;
	ex->method = HTTP_GET;
	ex->close_after = true;
	ex->request_done = true;
	ex->started = agent_.now();
	Exchange &e = *ex;
	exchanges_.push_back(std::move(ex));
	put_error(e, status, why);
	stats_.local_errors++;
	log(LogLevel::info, "{}: {} {}", peer_, status, why);
}

void ClientConn::pump()
{
	// The due responses: what was held goes out, the rest streams.
	while (!exchanges_.empty() && !closing_) {
		Exchange &f = *exchanges_.front();
		if (!f.flushed) {
			f.flushed = true;
			if (!f.held.empty()) {
				conn_.send(f.held);
				held_total_ -= f.held.size();
				std::vector<std::byte>().swap(f.held);
			}
		}
		if (f.state != Exchange::State::finished)
			break;
		stats_.responses++;
		if (cfg_.access_log)
			log_access(f);
		bool close = f.close_after;
		exchanges_.pop_front();
		if (close) {
			stop_reading_ = true;
			// What follows it is not answered.
			for (auto &e : exchanges_) {
				if (e->backend)
					e->backend->detach();
				pool_.cancel(e.get());
			}
			exchanges_.clear();
			reading_ = nullptr;
			finish(false, false, "Connection: close");
			return;
		}
	}
	if (closing_)
		return;
	// Dispatch: safe requests at once; a barrier when it is due, and
	// nothing after it until it is answered.
	unsigned at_backends = 0;
	bool first = true;
	for (auto &e : exchanges_) {
		Exchange &ex = *e;
		if (ex.state == Exchange::State::parsed) {
			if (!ex.safe && (!first || !ready(ex)))
				break;
			pool_.submit(&ex);
			if (closing_)
				return;
		}
		if (ex.state == Exchange::State::at_backend)
			at_backends++;
		if (!ex.safe && ex.state != Exchange::State::finished)
			break;
		first = false;
	}
	if (at_backends > stats_.max_parallel)
		stats_.max_parallel = at_backends;
	resume_backends();
}

void ClientConn::resume_backends()
{
	bool room_out = conn_.queued() < cfg_.send_limit;
	bool room_held = held_total_ < cfg_.hold_budget;
	for (auto &e : exchanges_) {
		BackendConn *b = e->backend;
		if (!b || !b->reading_paused())
			continue;
		if (e->flushed ? room_out : room_held)
			b->resume_reading();
	}
}

void ClientConn::update_watch()
{
	if (!watching_)
		return;
	bool want = !stop_reading_ && !peer_eof_ && in_.size() - in_off_ < kInputLimit;
	if (want && paused_) {
		paused_ = false;
		agent_.events().resume(conn_.fd());
	} else if (!want && !paused_) {
		paused_ = true;
		agent_.events().pause(conn_.fd());
	}
}

void ClientConn::update_timers()
{
	if (reader_.in_head() && !header_timer_.armed())
		header_timer_.arm(agent_.timers(), cfg_.header_timeout);
	else if (!reader_.in_head())
		header_timer_.cancel();
}

void ClientConn::on_header_timeout()
{
	if (closing_)
		return;
	stats_.timeouts++;
	if (!has_pending()) {
		local_response(408, "the request head did not arrive in time");
		kick();
		return;
	}
	finish(true, true, "request head timeout");
}

void ClientConn::on_idle_timeout()
{
	if (closing_)
		return;
	// Requests waiting for a response head: the backend timeout decides.
	// A response that has begun and moved nothing since is not waited for.
	bool waiting_heads = false, stalled = false;
	for (auto &e : exchanges_) {
		if (e->state == Exchange::State::finished)
			continue;
		if (e->emitted)
			stalled = true;
		else
			waiting_heads = true;
	}
	if (waiting_heads && !stalled && conn_.queued() == 0) {
		idle_timer_.arm(agent_.timers(), cfg_.idle_timeout);
		return;
	}
	stats_.timeouts++;
	finish(true, conn_.queued() > 0, "idle timeout");
}

void ClientConn::log_access(const Exchange &ex)
{
	auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(agent_.now() - ex.started);
	log(LogLevel::info, "access: {} \"{} {}\" {} {} backend {} {} ms", peer_ip_,
	    http_method_str(static_cast<http_method>(ex.method)), ex.url.empty() ? "-" : ex.url, ex.status,
	    ex.response_bytes, ex.backend_name.empty() ? "-" : ex.backend_name, ms.count());
}

void ClientConn::abort(const char *why) { finish(true, true, why); }

void ClientConn::finish(bool failed, bool reset, const char *why)
{
	if (closing_)
		return;
	closing_ = true;
	for (auto &e : exchanges_) {
		if (e->backend)
			e->backend->detach();
		pool_.cancel(e.get());
	}
	exchanges_.clear();
	reading_ = nullptr;
	idle_timer_.cancel();
	header_timer_.cancel();
	if (watching_) {
		watching_ = false;
		agent_.events().unwatch(conn_.fd());
	}
	if (failed)
		stats_.clients_failed++;
	else
		stats_.clients_done++;
	stats_.clients_active--;
	log(LogLevel::debug, "{}: closed ({})", peer_, why);
	closed_ = true;
	if (reset)
		conn_.close(true);
	else
		conn_.close_when_sent(cfg_.linger_timeout);
	if (!conn_.busy() && !reported_) {
		reported_ = true;
		host_.client_finished(this);
	}
}

} // namespace agent
