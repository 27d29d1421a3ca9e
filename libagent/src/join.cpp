// SPDX-License-Identifier: MIT
// The join side: accepts streams, checks each one's HELLO (format, version,
// HMAC), groups them by session id, and once a session has all its streams
// connects it to the target (or hands it to an application).
#include "acceptor.hpp"
#include "agent/log.hpp"
#include "session.hpp"

#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
		set_keepalive(fd, cfg_.keepalive);
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

	// The frame the handshake waits for next on st, and its payload size.
	static std::pair<wire::Type, std::size_t> awaited(const Stream &st)
	{
		return st.hello_seen ? std::pair{wire::Type::auth, wire::kAuthSize}
				     : std::pair{wire::Type::hello, wire::kHelloSize};
	}

	// Handshake (docs/wire-format.md): HELLO, our HELLO-ACK, their AUTH.
	void stream_data(Stream &st, std::span<const std::byte> bytes) override
	{
		st.reader.held.insert(st.reader.held.end(), bytes.begin(), bytes.end());
		auto [type, body] = awaited(st);
		const std::size_t need = wire::kHeaderSize + body;
		if (st.reader.held.size() >= wire::kHeaderSize) {
			// Check the header as soon as it is here: garbage is
			// refused without waiting for a whole frame.
			wire::Header h;
			auto s = wire::decode_header(std::span(st.reader.held).first<wire::kHeaderSize>(), h);
			if (s != wire::Status::ok)
				return refuse(st, fmt::format("bad frame: {}", wire::describe(s)));
			if (h.type != type)
				return refuse(st, st.hello_seen ? "the frame after HELLO is not AUTH"
								: "first frame is not a HELLO");
		}
		if (st.reader.held.size() < need)
			return;
		auto payload = std::span(st.reader.held).subspan(wire::kHeaderSize, body);
		if (!st.hello_seen) {
			wire::Hello hello;
			auto s = wire::decode_hello(payload.first<wire::kHelloSize>(), hello);
			if (s != wire::Status::ok)
				return refuse(st, fmt::format("bad HELLO: {}", wire::describe(s)));
			if (cfg_.key && !cfg_.key->verify(hello))
				return refuse(st, "HELLO failed authentication (bad or missing HMAC)");
			std::uint16_t v = wire::negotiate(hello);
			if (v == 0)
				return refuse(st, fmt::format(
					"the peer speaks wire versions {}..{}, this side {}..{} "
					"(v1 HELLOs can be replayed: upgrade the stripe side)",
					wire::oldest_version(hello), hello.version, wire::kMinVersion,
					wire::kVersion));
			if ((hello.flags & wire::kHelloFlagRejoin) && !sessions_.count(hello.session))
				return refuse_session_gone(st, hello.session);
			st.hello = hello;
			st.hello_seen = true;
			send_hello_ack(st, v);
			st.reader.held.erase(st.reader.held.begin(), st.reader.held.begin() + need);
			if (!st.reader.held.empty())
				stream_data(st, {});
			return;
		}
		if (cfg_.key &&
		    !cfg_.key->verify_proof(st.hello, st.ack, payload.first<wire::kAuthSize>()))
			return refuse(st, "AUTH does not prove the key for this stream's nonce "
					  "(a replayed handshake, or another key)");
		attach(st, st.hello, need);
	}

	void send_hello_ack(Stream &st, std::uint16_t version)
	{
		wire::HelloAck ack;
		ack.version = version;
		while (getrandom(ack.nonce.data(), ack.nonce.size(), 0) !=
		       static_cast<ssize_t>(ack.nonce.size())) {
		}
		wire::encode_hello_ack(ack, st.ack.data());
		std::byte hdr[wire::kHeaderSize];
		wire::Header h;
		h.type = wire::Type::hello_ack;
		h.length = wire::kHelloAckSize;
		wire::encode_header(h, hdr);
		st.conn.send(hdr, st.ack);
	}

	// Pull mode: reads each handshake frame's header, then the rest of it,
	// never more.
	StreamReader::Pulled stream_readable(Stream &st) override
	{
		StreamReader::Pulled r;
		while (is_pending(st)) {
			std::byte buf[wire::kHeaderSize + wire::kHelloSize];
			const std::size_t need = wire::kHeaderSize + awaited(st).second;
			std::size_t want = (st.reader.held.size() < wire::kHeaderSize ? wire::kHeaderSize
									   : need) -
					   st.reader.held.size();
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
		if (hello.flags & wire::kHelloFlagRejoin)
			return rejoin(st, hello, used);
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
		std::vector<std::byte> leftover(st.reader.held.begin() + used, st.reader.held.end());
		st.reader.held.clear();
		st.index = hello.index;
		std::unique_ptr<Stream> owned = take_pending(st);
		if (s && s->started()) {
			// Its session started without it (start_short): it takes
			// its index as a replacement would. Rare: its own timeout
			// (on_handshake_timer), counted from its accept, comes
			// about when its session's does.
			if (!s->rejoin_stream(owned, leftover))
				refuse(std::move(owned), "its session has started without it");
			return;
		}
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
		start_if_complete(*s);
	}

	// The last stream of a new session is here: the target is dialled.
	void start_if_complete(Session &s)
	{
		if (s.complete() && !s.started())
			start(s);
	}

	bool start_short(Session &s) override
	{
		start(s);
		return true;
	}

	void start(Session &s)
	{
		if (target_)
			s.start_target(*target_);
		else
			s.start_app(app_());
	}

	// A replacement for a lost stream (its AUTH checked): it takes its index
	// in the live session, closing the stream there if one is left.
	void rejoin(Stream &st, const wire::Hello &hello, std::size_t used)
	{
		auto it = sessions_.find(hello.session);
		if (it == sessions_.end())
			return refuse(st, fmt::format("REJOIN for session {:016x}, which is not open "
						      "here", hello.session));
		Session *s = it->second;
		if (s->closing() || s->count() != hello.count)
			return refuse(st, fmt::format("REJOIN does not fit session {:016x} (closing, "
						      "or count {} against {})",
						      hello.session, hello.count, s->count()));
		std::vector<std::byte> leftover(st.reader.held.begin() + used, st.reader.held.end());
		st.reader.held.clear();
		st.index = hello.index;
		std::unique_ptr<Stream> owned = take_pending(st);
		if (s->rejoin_stream(owned, leftover))
			start_if_complete(*s);
		else
			refuse(std::move(owned), fmt::format("REJOIN for session {:016x} before it "
							     "started", hello.session));
	}

	// refuse() for a stream no longer pending.
	void refuse(std::unique_ptr<Stream> owned, const std::string &why)
	{
		log(LogLevel::warn, "refused stream from {}: {}", owned->peer, why);
		stats_.streams_refused++;
		owned->unwatch();
		owned->conn.close(true);
		closing_.emplace(owned.get(), std::move(owned));
	}

	// A REJOIN for a session that ended here: the stripe side is told in an
	// ERROR frame (it ends its session at once instead of trying again),
	// then the stream is reset once the frame is through.
	void refuse_session_gone(Stream &st, std::uint64_t session)
	{
		std::string why = fmt::format("REJOIN for session {:016x}, which is not open here",
					      session);
		log(LogLevel::warn, "refused stream from {}: {}", st.peer, why);
		stats_.streams_refused++;
		std::vector<std::byte> err = wire::error_payload(wire::ErrorCode::stream_lost, why);
		std::byte hdr[wire::kHeaderSize];
		wire::Header h;
		h.type = wire::Type::error;
		h.length = static_cast<std::uint32_t>(err.size());
		wire::encode_header(h, hdr);
		st.unwatch();
		st.conn.send(hdr, err);
		st.conn.reset_when_acked(cfg_.linger_timeout);
		closing_.emplace(&st, take_pending(st));
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
			refuse(st, fmt::format("no {} within {} ms (handshake timeout)",
					       st.hello_seen ? "AUTH" : "HELLO",
					       cfg_.handshake_timeout.count()));
		}
	}

	void shutdown()
	{
		acceptor_.stop();
		handshake_timer_.cancel();
		while (!pending_.empty())
			drop(*pending_.front());
		abort_all(owned_, "the join server is shutting down");
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
