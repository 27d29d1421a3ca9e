// SPDX-License-Identifier: MIT
// The join side: accepts streams, checks each one's HELLO (format, version,
// HMAC), groups them by session id, and once a session has all its streams
// connects it to the target (or hands it to an application).
#include "acceptor.hpp"
#include "agent/log.hpp"
#include "session.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <list>
#include <unordered_map>

namespace agent {

// Streams whose HELLO is awaited are kept in the order they came, so the
// oldest is at the front: it is the one dropped when the list is full, and
// the one whose handshake timeout is due first (one timer serves them all).
// Sessions are limited apart from them (a HELLO that would open one more
// than --max-sessions is refused): silent connections cannot keep a good
// session out.
class JoinServer::Impl final : public SessionHost, public StreamHandler, public Disposable {
public:
	Impl(Agent &agent, SessionConfig cfg, int listen_fd, std::optional<Address> target,
	     AppFactory app)
		: agent_(agent), cfg_(std::move(cfg)), target_(target), app_(std::move(app)),
		  acceptor_(agent, listen_fd, [this](int fd) { accept(fd); })
	{
	}

	void accept(int fd)
	{
		if (pending_.size() >= cfg_.max_pending) {
			stats_.pending_dropped++;
			Stream &oldest = *pending_.front();
			if (std::uint64_t n; drop_log_.due(agent_.now(), &n))
				log(LogLevel::warn, "dropped the oldest handshake (from {}) for a new one: "
						    "{} pending (--max-pending); {} dropped in the last second",
				    oldest.peer, pending_.size(), n);
			drop(oldest);
		}
		auto st = std::make_unique<Stream>(agent_, this, fd, true, 0);
		st->peer = peer_address(fd);
		// Pull mode reads exactly the HELLO, so that the session reads
		// everything after it itself (and splices its payloads).
		st->pull = cfg_.splice && set_nonblocking(fd);
		Stream *p = st.get();
		pending_.push_back(std::move(st));
		pending_at_.emplace(p, std::prev(pending_.end()));
		if (!handshake_timer_.armed())
			handshake_timer_.arm(agent_.timers(), cfg_.handshake_timeout);
		p->watch();
	}

	bool is_pending(Stream &st) const { return pending_at_.count(&st) != 0; }

	// Takes st off the pending list: its owner is the caller now.
	std::unique_ptr<Stream> take_pending(Stream &st)
	{
		auto it = pending_at_.at(&st);
		std::unique_ptr<Stream> owned = std::move(*it);
		pending_.erase(it);
		pending_at_.erase(&st);
		return owned;
	}

	// Handshake: the first frame must be a HELLO.
	void stream_data(Stream &st, std::span<const std::byte> bytes) override
	{
		constexpr std::size_t need = wire::kHeaderSize + wire::kHelloSize;
		st.in.insert(st.in.end(), bytes.begin(), bytes.end());
		if (st.in.size() >= wire::kHeaderSize) {
			// Check the header as soon as it is here: garbage is
			// refused without waiting for a whole HELLO.
			wire::Header h;
			auto s = wire::decode_header(std::span(st.in).first<wire::kHeaderSize>(), h);
			if (s != wire::Status::ok)
				return refuse(st, fmt::format("bad frame: {}", wire::describe(s)));
			if (h.type != wire::Type::hello)
				return refuse(st, "first frame is not a HELLO");
		}
		if (st.in.size() < need)
			return;
		wire::Hello hello;
		auto s = wire::decode_hello(std::span(st.in).subspan(wire::kHeaderSize)
						    .first<wire::kHelloSize>(),
					    hello);
		if (s != wire::Status::ok)
			return refuse(st, fmt::format("bad HELLO: {}", wire::describe(s)));
		if (cfg_.key && !cfg_.key->verify(hello))
			return refuse(st, "HELLO failed authentication (bad or missing HMAC)");
		attach(st, hello, need);
	}

	// Pull mode: reads the header, then the rest of the HELLO, never more.
	StreamReader::Pulled stream_readable(Stream &st) override
	{
		constexpr std::size_t need = wire::kHeaderSize + wire::kHelloSize;
		StreamReader::Pulled r;
		while (is_pending(st)) {
			std::byte buf[need];
			std::size_t want = (st.in.size() < wire::kHeaderSize ? wire::kHeaderSize
									   : need) -
					   st.in.size();
			ssize_t n = recv_now(st.conn.fd(), buf, want);
			if (n == -EAGAIN)
				break;
			if (n <= 0) {
				stream_end(st, static_cast<int>(n));
				break;
			}
			r.bytes += n;
			stream_data(st, {buf, static_cast<std::size_t>(n)});
		}
		return r;
	}

	void attach(Stream &st, const wire::Hello &hello, std::size_t used)
	{
		Session *s = nullptr;
		if (auto it = sessions_.find(hello.session); it != sessions_.end()) {
			s = it->second;
			if (s->closing())
				return refuse(st, "its session is closing");
			if (s->count() != hello.count)
				return refuse(st, fmt::format("stream count {} differs from the "
							      "session's {}", hello.count,
							      s->count()));
			if (s->index_taken(hello.index))
				return refuse(st, fmt::format("stream index {} is already taken",
							      hello.index));
		}
		std::vector<std::byte> leftover(st.in.begin() + used, st.in.end());
		st.in.clear();
		st.index = hello.index;
		std::unique_ptr<Stream> owned = take_pending(st);
		if (!s) {
			if (owned_.size() >= cfg_.max_sessions) {
				owned->unwatch();
				owned->conn.close(true);
				closing_.emplace(owned.get(), std::move(owned));
				stats_.refused_full++;
				if (std::uint64_t n; full_log_.due(agent_.now(), &n))
					log(LogLevel::warn, "refusing sessions: {} open (--max-sessions); "
							    "{} refused in the last second", owned_.size(), n);
				return;
			}
			auto ns = std::make_unique<Session>(agent_, cfg_, *this, stats_,
							    hello.session, hello.count);
			s = ns.get();
			sessions_.emplace(hello.session, s);
			owned_.emplace(s, std::move(ns));
			s->expect_streams(cfg_.handshake_timeout);
		}
		s->add_stream(std::move(owned), leftover);
		if (s->complete() && !s->closing()) {
			if (target_)
				s->start_target(*target_);
			else
				s->start_app(app_());
		}
	}

	void refuse(Stream &st, const std::string &why)
	{
		log(LogLevel::warn, "refused stream from {}: {}", st.peer, why);
		stats_.streams_refused++;
		drop(st);
	}

	void drop(Stream &st)
	{
		st.unwatch();
		st.conn.close(true);
		closing_.emplace(&st, take_pending(st));
	}

	void stream_end(Stream &st, int err) override
	{
		log(LogLevel::info, "stream from {} ended during the handshake{}", st.peer,
		    err ? fmt::format(" ({})", strerror(-err)) : "");
		drop(st);
	}

	void stream_conn_event(Stream &st) override
	{
		if (!st.conn.busy() && closing_.count(&st)) {
			auto node = closing_.extract(&st);
			agent_.dispose(std::move(node.mapped()));
		}
	}

	void session_finished(Session *s) override
	{
		if (auto it = sessions_.find(s->id()); it != sessions_.end() && it->second == s)
			sessions_.erase(it);
		auto node = owned_.extract(s);
		agent_.dispose(std::move(node.mapped()));
	}

	// The oldest handshakes first: every one that is due now.
	void on_handshake_timer()
	{
		auto now = Agent::Clock::now();
		while (!pending_.empty()) {
			Stream &st = *pending_.front();
			auto waited = now - st.since;
			if (waited < cfg_.handshake_timeout) {
				handshake_timer_.arm(agent_.timers(),
						     std::chrono::duration_cast<std::chrono::milliseconds>(
							     cfg_.handshake_timeout - waited));
				return;
			}
			stats_.timeouts++;
			refuse(st, fmt::format("no HELLO within {} ms (handshake timeout)",
					       cfg_.handshake_timeout.count()));
		}
	}

	void shutdown()
	{
		acceptor_.stop();
		handshake_timer_.cancel();
		while (!pending_.empty())
			drop(*pending_.front());
		std::vector<Session *> live;
		for (auto &[p, s] : owned_)
			live.push_back(p);
		for (Session *p : live)
			if (owned_.count(p))
				p->abort(wire::ErrorCode::internal, "the join server is shutting down");
	}

	bool idle() const override
	{
		return owned_.empty() && pending_.empty() && closing_.empty() && !acceptor_.busy();
	}

	Agent &agent_;
	SessionConfig cfg_;
	std::optional<Address> target_;
	AppFactory app_;
	ProxyStats stats_;
	LogEverySecond full_log_, drop_log_;
	std::list<std::unique_ptr<Stream>> pending_; // oldest first
	std::unordered_map<Stream *, std::list<std::unique_ptr<Stream>>::iterator> pending_at_;
	std::unordered_map<Stream *, std::unique_ptr<Stream>> closing_;
	std::unordered_map<std::uint64_t, Session *> sessions_;
	std::unordered_map<Session *, std::unique_ptr<Session>> owned_;
	Timer handshake_timer_{[this] { on_handshake_timer(); }};
	Acceptor acceptor_;
};

JoinServer::JoinServer(Agent &agent, SessionConfig cfg, int listen_fd, Address target)
	: impl_(std::make_unique<Impl>(agent, checked_config(std::move(cfg), listen_fd), listen_fd,
				       target, nullptr))
{
}

JoinServer::JoinServer(Agent &agent, SessionConfig cfg, int listen_fd, AppFactory app)
	: impl_(std::make_unique<Impl>(agent, checked_config(std::move(cfg), listen_fd), listen_fd,
				       std::nullopt, std::move(app)))
{
}

JoinServer::~JoinServer()
{
	Agent &agent = impl_->agent_;
	impl_->shutdown();
	agent.retire(std::move(impl_));
}
const ProxyStats &JoinServer::stats() const { return impl_->stats_; }

} // namespace agent
