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

#include <unordered_map>

namespace agent {

class JoinServer::Impl final : public SessionHost, public StreamHandler {
public:
	Impl(Agent &agent, SessionConfig cfg, int listen_fd, std::optional<Address> target,
	     AppFactory app)
		: agent_(agent), cfg_(std::move(cfg)), target_(target), app_(std::move(app)),
		  acceptor_(agent.ring(), listen_fd, [this](int fd) { accept(fd); })
	{
		agent.on_tick([this](Agent::Clock::time_point now) { tick(now); });
	}

	void accept(int fd)
	{
		if (pending_.size() + sessions_.size() >= cfg_.max_sessions) {
			if (!full_logged_)
				log(LogLevel::warn, "refusing connections: {} sessions and handshakes "
						    "open (--max-sessions)", cfg_.max_sessions);
			full_logged_ = true;
			stats_.streams_refused++;
			::close(fd);
			return;
		}
		full_logged_ = false;
		auto st = std::make_unique<Stream>(agent_, this, fd, true, 0);
		st->peer = peer_address(fd);
		// Pull mode reads exactly the HELLO, so that the session reads
		// everything after it itself (and splices its payloads).
		st->pull = cfg_.splice && set_nonblocking(fd);
		Stream *p = st.get();
		pending_.emplace(p, std::move(st));
		p->watch();
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
		while (pending_.count(&st)) {
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
		auto node = pending_.extract(&st);
		std::unique_ptr<Stream> owned = std::move(node.mapped());
		bool fresh = !s;
		if (fresh) {
			auto ns = std::make_unique<Session>(agent_, cfg_, *this, stats_,
							    hello.session, hello.count);
			s = ns.get();
			sessions_.emplace(hello.session, s);
			owned_.emplace(s, std::move(ns));
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
		auto node = pending_.extract(&st);
		closing_.emplace(&st, std::move(node.mapped()));
	}

	void stream_end(Stream &st, int err) override
	{
		log(LogLevel::info, "stream from {} ended during the handshake{}", st.peer,
		    err ? fmt::format(" ({})", strerror(-err)) : "");
		drop(st);
	}

	void stream_conn_event(Stream &st) override
	{
		if (!st.conn.busy() && closing_.count(&st))
			closing_.erase(&st);
	}

	void session_finished(Session *s) override
	{
		if (auto it = sessions_.find(s->id()); it != sessions_.end() && it->second == s)
			sessions_.erase(it);
		owned_.erase(s);
	}

	void tick(Agent::Clock::time_point now)
	{
		acceptor_.tick();
		std::vector<Stream *> late;
		for (auto &[p, st] : pending_)
			if (now - st->since > cfg_.handshake_timeout)
				late.push_back(p);
		for (Stream *p : late)
			refuse(*p, fmt::format("no HELLO within {} ms (handshake timeout)",
					       cfg_.handshake_timeout.count()));
		std::vector<Session *> stale;
		for (auto &[id, s] : sessions_)
			if (!s->complete() && !s->closing() &&
			    now - s->created() > cfg_.handshake_timeout)
				stale.push_back(s);
		for (Session *s : stale)
			s->abort(wire::ErrorCode::stream_lost,
				 fmt::format("not all {} streams arrived within {} ms", s->count(),
					     cfg_.handshake_timeout.count()));
	}

	Agent &agent_;
	SessionConfig cfg_;
	std::optional<Address> target_;
	AppFactory app_;
	ProxyStats stats_;
	bool full_logged_ = false;
	std::unordered_map<Stream *, std::unique_ptr<Stream>> pending_, closing_;
	std::unordered_map<std::uint64_t, Session *> sessions_;
	std::unordered_map<Session *, std::unique_ptr<Session>> owned_;
	Acceptor acceptor_;
};

JoinServer::JoinServer(Agent &agent, SessionConfig cfg, int listen_fd, Address target)
	: impl_(std::make_unique<Impl>(agent, std::move(cfg), listen_fd, target, nullptr))
{
}

JoinServer::JoinServer(Agent &agent, SessionConfig cfg, int listen_fd, AppFactory app)
	: impl_(std::make_unique<Impl>(agent, std::move(cfg), listen_fd, std::nullopt,
				       std::move(app)))
{
}

JoinServer::~JoinServer() = default;
const ProxyStats &JoinServer::stats() const { return impl_->stats_; }

} // namespace agent
