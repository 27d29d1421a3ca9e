// SPDX-License-Identifier: MIT
// The backend side of HTTP mode: the pool of keep-alive connections and
// each connection's one exchange at a time.
#include "agent/log.hpp"
#include "http_proxy.hpp"

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cassert>
#include <climits>
#include <cstring>

namespace agent {

// ---- Pool -----------------------------------------------------------------------

Pool::Pool(Agent &a, const HttpConfig &c, HttpStats &s) : agent(a), cfg(c), stats(s)
{
	for (const Address &addr : cfg.backends)
		backends_.push_back(Backend{addr, addr.str(), 0, 0, {}});
}

Pool::~Pool() = default;

void Pool::update_stats()
{
	std::uint64_t idle = 0;
	for (const Backend &b : backends_)
		idle += b.idle.size();
	stats.pool_idle = idle;
	stats.pool_open = conns_.size();
}

void Pool::submit(Exchange *ex)
{
	// Least outstanding first, over all backends that can take it now.
	int best = -1;
	unsigned best_load = UINT_MAX;
	for (std::size_t i = 0; i < backends_.size(); i++) {
		const Backend &b = backends_[i];
		if (b.idle.empty() && b.open >= cfg.pool)
			continue;
		if (b.busy < best_load) {
			best_load = b.busy;
			best = static_cast<int>(i);
		}
	}
	if (best < 0) {
		ex->state = Exchange::State::waiting_conn;
		waiting_.push_back(ex);
		return;
	}
	start_on(static_cast<unsigned>(best), ex);
}

void Pool::start_on(unsigned i, Exchange *ex)
{
	Backend &b = backends_[i];
	BackendConn *c;
	if (!b.idle.empty()) {
		c = b.idle.back();
		b.idle.pop_back();
		stats.backend_reused++;
	} else {
		int fd = socket_for(b.addr);
		if (fd < 0) {
			log(LogLevel::warn, "backend {}: socket: {}", b.name, strerror(-fd));
			ex->state = Exchange::State::at_backend;
			// The client is inside its own pass (kick() makes it another).
			ex->client->response_failed(*ex, 502, "no socket for the backend");
			return;
		}
		int one = 1; // the head and a body go out in separate sends
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		auto owned = std::make_unique<BackendConn>(*this, i, b.name, fd);
		c = owned.get();
		conns_.emplace(c, std::move(owned));
		b.open++;
		stats.backend_opened++;
		c->connect(b.addr);
	}
	b.busy++;
	c->counted = true;
	c->start(ex);
	update_stats();
}

void Pool::cancel(Exchange *ex) { std::erase(waiting_, ex); }

void Pool::conn_free(BackendConn &c)
{
	Backend &b = backends_[c.backend()];
	if (c.counted) {
		c.counted = false;
		b.busy--;
	}
	// A waiting exchange goes to the backend with the least outstanding,
	// which this free connection's backend may not be.
	if (!waiting_.empty()) {
		Exchange *ex = waiting_.front();
		waiting_.pop_front();
		b.busy++;
		c.counted = true;
		if (c.used_before())
			stats.backend_reused++;
		c.start(ex);
	} else {
		b.idle.push_back(&c);
	}
	update_stats();
}

void Pool::note_closed(BackendConn &c)
{
	Backend &b = backends_[c.backend()];
	std::erase(b.idle, &c);
	if (c.counted) {
		c.counted = false;
		b.busy--;
	}
	b.open--;
	update_stats();
	// Room for a waiter now.
	if (!waiting_.empty() && b.open < cfg.pool) {
		Exchange *ex = waiting_.front();
		waiting_.pop_front();
		submit(ex);
	}
}

void Pool::conn_op_done(BackendConn &c)
{
	if (!c.idle())
		return;
	auto node = conns_.extract(&c);
	if (!node.empty())
		agent.dispose(std::move(node.mapped()));
	update_stats();
}

void Pool::shutdown()
{
	waiting_.clear();
	std::vector<BackendConn *> all;
	for (auto &[p, c] : conns_)
		all.push_back(p);
	for (BackendConn *c : all)
		if (c->state() != BackendConn::State::closed)
			c->close(true);
}

// ---- BackendConn ---------------------------------------------------------------------

BackendConn::BackendConn(Pool &pool, unsigned backend, const std::string &name, int fd)
	: pool_(pool), backend_(backend), name_(name), conn_(pool.agent, *this, fd, false),
	  reader_(MessageReader::Kind::response, 64 * 1024, UINT64_MAX)
{
}

BackendConn::~BackendConn()
{
	if (watching_)
		pool_.agent.events().unwatch(conn_.fd());
}

void BackendConn::connect(const Address &to)
{
	state_ = State::connecting;
	conn_.connect(to, pool_.cfg.connect_timeout);
}

void BackendConn::start(Exchange *ex)
{
	ex_ = ex;
	ex->backend = this;
	ex->state = Exchange::State::at_backend;
	ex->backend_name = name_;
	ex->attempts++;
	got_final_head_ = false;
	if (state_ != State::connecting)
		state_ = State::busy;
	reader_.expect_no_body(ex->method == HTTP_HEAD);
	conn_.send(std::as_bytes(std::span(ex->request_head)), ex->early_body);
	std::vector<std::byte>().swap(ex->early_body);
	timer_.arm(pool_.agent.timers(), pool_.cfg.backend_timeout);
	resume_reading();
	ex->client->kick();
}

void BackendConn::send_body(std::span<const std::byte> bytes) { conn_.send(bytes); }

void BackendConn::conn_connected(Conn &)
{
	if (state_ == State::closed)
		return;
	state_ = ex_ ? State::busy : State::idle;
	watching_ = true;
	pool_.agent.events().watch(conn_.fd(), *this);
	if (paused_)
		pool_.agent.events().pause(conn_.fd());
}

void BackendConn::conn_sent(Conn &)
{
	if (!ex_)
		return;
	// The backend takes the request's bytes: a long upload is progress,
	// and the response timeout counts from the last of it.
	if (!got_final_head_)
		timer_.arm(pool_.agent.timers(), pool_.cfg.backend_timeout);
	ex_->client->kick();
}

void BackendConn::conn_failed(Conn &, int err)
{
	if (state_ == State::closed)
		return;
	if (ex_) {
		bool timeout = err == -ETIMEDOUT;
		fail(timeout ? 504 : 502, fmt::format("backend {}: {}", name_, strerror(-err)));
	} else {
		close(true);
	}
}

void BackendConn::pause_reading()
{
	if (paused_)
		return;
	paused_ = true;
	pool_.stats.held_pauses++;
	if (watching_)
		pool_.agent.events().pause(conn_.fd());
}

void BackendConn::resume_reading()
{
	if (!paused_)
		return;
	paused_ = false;
	if (watching_)
		pool_.agent.events().resume(conn_.fd());
}

bool BackendConn::emit(std::span<const std::byte> bytes)
{
	ex_->emitted = true;
	ex_->response_bytes += bytes.size();
	return ex_->client->emit(*ex_, bytes);
}

std::string BackendConn::response_head(const HttpHead &h) const
{
	std::string out = fmt::format("HTTP/{}.{} {} {}\r\n", h.major, h.minor, h.status, h.reason);
	for (const HttpField &f : h.fields) {
		if (is_hop_by_hop(f.name, h))
			continue;
		out += f.name;
		out += ": ";
		out += f.value;
		out += "\r\n";
	}
	out += fmt::format("Via: {}.{} agentproxy\r\n\r\n", h.major, h.minor);
	return out;
}

void BackendConn::on_data(std::span<const std::byte> bytes)
{
	if (state_ == State::closed)
		return;
	if (!ex_) {
		// Nothing was asked: a backend that talks out of turn is not reused.
		log(LogLevel::warn, "backend {}: {} bytes while idle; connection dropped", name_,
		    bytes.size());
		pool_.stats.backend_dropped++;
		close(true);
		return;
	}
	bool want_more = true;
	while (!bytes.empty() && ex_ && state_ != State::closed) {
		MessageReader::Step s = reader_.step(bytes);
		bytes = bytes.subspan(s.used);
		if (s.error) {
			fail(502, fmt::format("backend {}: bad response: {}", name_, reader_.reason()));
			return;
		}
		const HttpHead &h = reader_.head();
		if (s.head) {
			if (h.status >= 200) {
				got_final_head_ = true;
				timer_.cancel();
				ex_->status = h.status;
				if (reader_.until_eof())
					ex_->close_after = true;
			}
			std::string head = response_head(h);
			want_more = emit(std::as_bytes(std::span(head))) && want_more;
		}
		if (!s.body.empty())
			want_more = emit(s.body) && want_more;
		if (s.complete && h.status >= 200) {
			bool reusable = h.keep_alive && bytes.empty() && ex_->request_done;
			if (!bytes.empty())
				log(LogLevel::warn, "backend {}: bytes after a response; connection "
						    "dropped", name_);
			finish_response(reusable);
			return;
		}
	}
	if (!want_more && ex_)
		pause_reading();
}

void BackendConn::finish_response(bool reusable)
{
	Exchange *ex = ex_;
	ex_ = nullptr;
	ex->backend = nullptr;
	served_++;
	timer_.cancel();
	if (reusable) {
		state_ = State::idle;
		resume_reading();
		timer_.arm(pool_.agent.timers(), pool_.cfg.pool_idle_timeout);
		ex->client->response_done(*ex);
		pool_.conn_free(*this);
	} else {
		pool_.stats.backend_dropped++;
		close(false);
		ex->client->response_done(*ex);
	}
}

void BackendConn::fail(unsigned status, const std::string &why)
{
	Exchange *ex = ex_;
	ex_ = nullptr;
	pool_.stats.backend_dropped++;
	close(true);
	if (ex) {
		ex->backend = nullptr;
		ex->client->response_failed(*ex, status, why);
	}
}

void BackendConn::on_end(int err)
{
	if (state_ == State::closed)
		return;
	if (!ex_) {
		close(false); // an idle keep-alive connection the backend closed
		return;
	}
	if (err == 0 && reader_.until_eof() && reader_.finish()) {
		ex_->close_after = true;
		finish_response(false);
		return;
	}
	// A reused connection the backend closed before it saw the request:
	// a safe request goes again, once, on another connection.
	if (!ex_->emitted && served_ > 0 && ex_->safe && ex_->attempts < 2 &&
	    reader_.between_messages()) {
		Exchange *ex = ex_;
		ex_ = nullptr;
		ex->backend = nullptr;
		pool_.stats.retries++;
		close(true);
		pool_.submit(ex);
		return;
	}
	fail(502, fmt::format("backend {}: {} before the response ended", name_,
			      err ? strerror(-err) : "closed"));
}

void BackendConn::on_timer()
{
	if (ex_ && !got_final_head_) {
		fail(504, fmt::format("backend {}: no response within {} ms", name_,
				      pool_.cfg.backend_timeout.count()));
	} else if (!ex_ && state_ == State::idle) {
		close(false);
	}
}

void BackendConn::detach()
{
	if (!ex_)
		return;
	ex_ = nullptr;
	if (state_ != State::closed)
		close(true);
}

void BackendConn::close(bool reset)
{
	if (state_ == State::closed)
		return;
	timer_.cancel();
	if (watching_) {
		watching_ = false;
		pool_.agent.events().unwatch(conn_.fd());
	}
	state_ = State::closed;
	conn_.close(reset);
	pool_.note_closed(*this);
}

} // namespace agent
