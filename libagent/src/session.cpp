// SPDX-License-Identifier: MIT
#include "session.hpp"

#include "agent/log.hpp"

#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>

namespace agent {

namespace {

// socket_for's error; a congestion control that worked at startup can stop
// working (its module unloaded, a sysctl changed), and is then named.
std::string socket_error(int err, const SessionConfig &cfg)
{
	if (!cfg.congestion.empty() && (err == -ENOENT || err == -EPERM))
		return congestion_error(err, cfg.congestion);
	return strerror(-err);
}

} // namespace

// ---- Stream ---------------------------------------------------------------

Stream::Stream(Agent &a, StreamHandler *h, int fd, bool connected, unsigned idx)
	: agent(a), handler(h), conn(a, *this, fd, connected), index(idx), reader(fd),
	  since(Agent::Clock::now())
{
}

Stream::~Stream() { unwatch(); }

void Stream::conn_connected(Conn &) { connected_event = true; }
void Stream::conn_sent(Conn &) { sent_event = true; }
void Stream::conn_failed(Conn &, int err) { conn_error = err; }

void Stream::watch()
{
	if (watching)
		return;
	watching = true;
	paused = false;
	agent.events().watch(conn.fd(), *this);
}

void Stream::unwatch()
{
	if (!watching)
		return;
	watching = false;
	agent.events().unwatch(conn.fd());
}

void Stream::pause()
{
	if (watching && !paused) {
		paused = true;
		agent.events().pause(conn.fd());
	}
}

void Stream::resume()
{
	if (watching && paused) {
		paused = false;
		agent.events().resume(conn.fd());
	}
}

// ---- Session: setup -------------------------------------------------------

Session::Session(Agent &agent, const SessionConfig &cfg, SessionHost &host, ProxyStats &stats,
		 std::uint64_t id, unsigned count)
	: agent_(agent), cfg_(cfg), host_(host), stats_(stats), id_(id), count_(count),
	  created_(Agent::Clock::now()), streams_(count),
	  // The window bounds how far ahead a seq may be; the budget bounds bytes.
	  tx_(cfg.retention),
	  rx_(cfg.reorder_budget, 1u << 20, cfg.retention / 4), rejoins_(count)
{
	stats_.sessions_opened++;
	stats_.active++;
	progress();
}

Session::~Session()
{
	// Freed only once closed and idle (maybe_free): no source still
	// delivers to it, no operation still points into it. Only an agent
	// being torn down (whose ring runs no more) frees sessions as they are.
	assert((phase_ == Phase::freed && !plain_watching_ && idle()) || agent_.tearing_down());
	if (plain_watching_)
		agent_.events().unwatch(plain_->fd());
	agent_.memory().forget(*this);
	agent_.memory().give(rx_.reorder().held_bytes());
}

void Session::memory_available()
{
	if (closing())
		return;
	update_plain_pause();
	pump();
}

std::string Session::tag() const { return fmt::format("session {:016x}", id_); }

void Session::start_stripe(int client_fd, const Address &peer)
{
	side_ = Side::stripe;
	plain_ = std::make_unique<Conn>(agent_, *this, client_fd, true);
	plain_name_ = "client " + peer_address(client_fd);
	peer_ = peer;
	splice_ = cfg_.splice && set_nonblocking(client_fd);
	for (unsigned i = 0; i < count_; i++) {
		std::string err;
		auto st = open_stream(i, false, &err);
		if (!st) {
			abort(wire::ErrorCode::internal, err, false);
			return;
		}
		streams_[i] = std::move(st);
		attached_++;
	}
	phase_ = Phase::running;
	arm_idle();
	// The client is read once every stream's handshake is over.
	expect_streams(cfg_.handshake_timeout);
}

// Stripe: a stream to the join side, connecting, its HELLO queued (REJOIN:
// a replacement for index of this live session). Null (and err) if no
// socket can be had.
std::unique_ptr<Stream> Session::open_stream(unsigned index, bool rejoin, std::string *err)
{
	int fd = socket_for(peer_, cfg_.congestion);
	if (fd < 0) {
		*err = fmt::format("cannot create a stream socket: {}", socket_error(fd, cfg_));
		return nullptr;
	}
	set_keepalive(fd, cfg_.keepalive);
	auto st = std::make_unique<Stream>(agent_, this, fd, false, index);
	st->peer = peer_.str();
	st->pull = splice_; // O_NONBLOCK once connected
	st->conn.connect(peer_, cfg_.connect_timeout);
	st->hello.session = id_;
	st->hello.index = index;
	st->hello.count = count_;
	if (rejoin)
		st->hello.flags |= wire::kHelloFlagRejoin;
	if (cfg_.key)
		cfg_.key->sign(st->hello);
	std::byte body[wire::kHelloSize];
	wire::encode_hello(st->hello, body);
	send_frame(*st, wire::Type::hello, 0, body);
	return st;
}

bool Session::add_stream(std::unique_ptr<Stream> st, std::span<const std::byte> leftover)
{
	unsigned i = st->index;
	if (i >= count_ || streams_[i])
		return false;
	st->handler = this;
	st->state = Stream::State::open; // the join server saw its AUTH
	Stream &ref = *st;
	streams_[i] = std::move(st);
	attached_++;
	acked_++;
	live_++;
	if (!leftover.empty())
		stream_data(ref, leftover);
	else if (phase_ == Phase::setup)
		ref.pause();
	return true;
}

bool Session::complete() const { return attached_ == count_; }

void Session::start_target(const Address &target)
{
	int fd = socket_for(target, cfg_.congestion);
	if (fd < 0) {
		abort(wire::ErrorCode::internal,
		      fmt::format("cannot create a target socket: {}", socket_error(fd, cfg_)));
		return;
	}
	plain_ = std::make_unique<Conn>(agent_, *this, fd, false);
	plain_name_ = "target " + target.str();
	splice_ = cfg_.splice; // O_NONBLOCK once connected
	plain_->connect(target, cfg_.connect_timeout);
	phase_ = Phase::running;
	handshake_timer_.cancel();
	arm_idle();
	for (auto &st : streams_)
		if (st)
			apply_pause(*st);
	pump();
}

void Session::start_app(std::unique_ptr<SessionApp> app)
{
	app_ = std::move(app);
	plain_name_ = "application";
	phase_ = Phase::running;
	handshake_timer_.cancel();
	arm_idle();
	app_->on_open(*this);
	for (auto &st : streams_)
		if (st)
			apply_pause(*st);
	pump();
}

// ---- plain end -> streams ---------------------------------------------------

void Session::send_frame(Stream &st, wire::Type type, std::uint64_t seq,
			 std::span<const std::byte> payload)
{
	std::byte hdr[wire::kHeaderSize];
	wire::Header h;
	h.type = type;
	h.length = payload.size();
	h.seq = seq;
	wire::encode_header(h, hdr);
	st.conn.send(hdr, payload);
	stats_.frames_sent++;
}

void Session::send_up(std::span<const std::byte> bytes)
{
	if (closing() || tx_.ended())
		return;
	while (!bytes.empty()) {
		auto chunk = bytes.first(std::min(bytes.size(), frame_size()));
		std::uint64_t seq = tx_.take_seq();
		// With no stream open (all lost, replacements coming) the frame
		// waits in the retention for the first that opens.
		Stream *st = least_queued();
		if (st) {
			send_frame(*st, wire::Type::data, seq, chunk);
			keep_sent(st->index, seq, chunk);
		} else {
			keep_sent(count_, seq, chunk);
			tx_.resend_later(seq);
		}
		stats_.bytes_in += chunk.size();
		progress();
		bytes = bytes.subspan(chunk.size());
	}
	update_plain_pause();
}

// The payload of the next DATA frame: --chunk, or --long-path-chunk while
// the open streams' mean minimum RTT (the path's: under load, loopback's
// smoothed RTT reaches 5 ms of queueing) is SessionConfig::kLongPathRtt or
// more (sampled every 100 ms). Over 40 ms with 0.1% loss, 8 streams moved
// 1.16x as much with 256 KiB frames as with 1 MiB ones (medians of four
// paired runs of bench/paths.py, themselves spread 0.93-2.1x); on loopback
// 256 KiB frames cost 1.5x the CPU per byte.
std::size_t Session::frame_size()
{
	constexpr std::chrono::milliseconds kResample{100};
	if (cfg_.long_path_chunk == 0 || cfg_.long_path_chunk >= cfg_.chunk)
		return cfg_.chunk;
	auto now = agent_.now();
	if (frame_size_ != 0 && now - frame_sized_at_ < kResample)
		return frame_size_;
	std::uint64_t sum = 0, n = 0;
	for (auto &st : streams_)
		if (st && st->open()) {
			sum += min_rtt_us(st->conn.fd());
			n++;
		}
	bool long_path = n && sum / n >= std::uint64_t(SessionConfig::kLongPathRtt.count());
	frame_size_ = long_path ? cfg_.long_path_chunk : cfg_.chunk;
	frame_sized_at_ = now;
	return frame_size_;
}

std::size_t Session::queued() const
{
	std::size_t n = 0;
	for (auto &st : streams_)
		if (st)
			n += st->conn.queued();
	return n;
}

Stream *Session::least_queued(bool kernel_too, const Stream *besides)
{
	std::size_t queued[wire::kMaxStreams];
	bool any = false;
	unsigned held = holding_up();
	for (unsigned i = 0; i < count_; i++) {
		const Stream *st = streams_[i].get();
		queued[i] = SIZE_MAX;
		if (!st || !st->open() || st == besides || i == held)
			continue;
		queued[i] = st->conn.queued() + (kernel_too ? unsent_bytes(st->conn.fd()) : 0);
		any = true;
	}
	if (!any)
		return nullptr;
	return streams_[sched_.pick({queued, count_})].get();
}

// Stops reading the plain end while every stream holds send_limit bytes,
// or the retention is full (the peer has not acknowledged enough); reads
// again once a stream has drained to half and a chunk fits the retention.
void Session::update_plain_pause()
{
	bool full, roomy;
	if (splice_) {
		// Spliced: a stream takes one frame at a time (and each needs a
		// pipe: none to be had, reading waits for pipe_retry_).
		bool any = false;
		for (unsigned i = 0; i < count_; i++)
			any = any || sendable(i);
		full = !any || pipe_wait_;
		roomy = any && !pipe_wait_;
	} else {
		std::size_t least = SIZE_MAX;
		unsigned held = holding_up();
		for (unsigned i = 0; i < count_; i++)
			if (i != held && streams_[i] && streams_[i]->open())
				least = std::min(least, streams_[i]->conn.queued());
		// Past the agent's memory cap, reading waits for room.
		bool over = agent_.memory().over();
		full = least >= cfg_.send_limit || over;
		roomy = least < cfg_.send_limit / 2 && !over;
	}
	// A read may overshoot the retention by one chunk: waiting for room
	// for a whole chunk would stall a retention of a chunk or two.
	full = full || tx_.full();
	roomy = roomy && !tx_.full();
	if (app_) {
		// An application cannot be paused: stop feeding it instead.
		update_ingress_pause();
		return;
	}
	if (!plain_watching_)
		return;
	if (!plain_paused_ && full) {
		plain_paused_ = true;
		stats_.backpressure_pauses++;
		agent_.events().pause(plain_->fd());
	} else if (plain_paused_ && roomy) {
		plain_paused_ = false;
		agent_.events().resume(plain_->fd());
	}
	if (plain_paused_ && agent_.memory().over())
		agent_.memory().wait(*this);
}

void Session::plain_read_ended(int err)
{
	if (closing())
		return;
	if (err < 0) {
		abort(wire::ErrorCode::reset,
		      fmt::format("{} reset the connection ({})", plain_name_, strerror(-err)));
		return;
	}
	if (!tx_.finish())
		return;
	// FIN goes on every stream (a replacement gets it when it opens): any
	// one that arrives tells the end. The write sides are shut only once
	// the session is over both ways (check_done): frames may have to go
	// again until everything is acknowledged.
	for (auto &st : streams_)
		if (st && st->open())
			send_frame(*st, wire::Type::fin, tx_.next_seq(), {});
	check_done();
}

// ---- the plain socket's connection events ----------------------------------

void Session::conn_connected(Conn &)
{
	if (closing())
		return;
	if (splice_)
		splice_ = set_nonblocking(plain_->fd());
	plain_watching_ = true;
	agent_.events().watch(plain_->fd(), *this);
	update_ingress_pause();
	log(LogLevel::debug, "{}: connected to {}", tag(), plain_name_);
}

void Session::conn_sent(Conn &)
{
	if (closing())
		return;
	update_ingress_pause();
	pump(); // what waited in the streams' buffers while paused
	check_done();
}

void Session::conn_failed(Conn &c, int err)
{
	if (closing())
		return;
	if (!c.connected())
		abort(wire::ErrorCode::unreachable,
		      fmt::format("cannot connect to {}: {}", plain_name_, strerror(-err)));
	else
		abort(wire::ErrorCode::reset,
		      fmt::format("{}: send failed: {}", plain_name_, strerror(-err)));
}

} // namespace agent
