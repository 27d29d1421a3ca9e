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
	: agent(a), handler(h), conn(a, *this, fd, connected), index(idx),
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
	  rx_(cfg.reorder_budget, 1u << 20), rejoins_(count)
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
	agent_.memory().give(rx_.held_bytes());
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
	if (closing() || tx_fin_)
		return;
	while (!bytes.empty()) {
		auto chunk = bytes.first(std::min(bytes.size(), cfg_.chunk));
		std::uint64_t seq = tx_seq_++;
		// With no stream open (all lost, replacements coming) the frame
		// waits in the retention for the first that opens.
		Stream *st = least_queued();
		if (st) {
			send_frame(*st, wire::Type::data, seq, chunk);
			keep_sent(st->index, seq, chunk);
		} else {
			keep_sent(count_, seq, chunk);
			resend_.push_back(seq);
		}
		stats_.bytes_in += chunk.size();
		progress();
		bytes = bytes.subspan(chunk.size());
	}
	update_plain_pause();
}

std::size_t Session::queued() const
{
	std::size_t n = 0;
	for (auto &st : streams_)
		if (st)
			n += st->conn.queued();
	return n;
}

Stream *Session::least_queued(bool kernel_too, const Stream *besides) const
{
	std::size_t queued[wire::kMaxStreams];
	bool any = false;
	for (unsigned i = 0; i < count_; i++) {
		const Stream *st = streams_[i].get();
		queued[i] = SIZE_MAX;
		if (!st || !st->open() || st == besides)
			continue;
		queued[i] = st->conn.queued() + (kernel_too ? unsent_bytes(st->conn.fd()) : 0);
		any = true;
	}
	if (!any)
		return nullptr;
	return streams_[const_cast<Scheduler &>(sched_).pick({queued, count_})].get();
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
		for (auto &st : streams_)
			any = any || (st && st->open() && st->conn.can_send_direct());
		full = !any || pipe_wait_;
		roomy = any && !pipe_wait_;
	} else {
		std::size_t least = SIZE_MAX;
		for (auto &st : streams_)
			if (st && st->open())
				least = std::min(least, st->conn.queued());
		// Past the agent's memory cap, reading waits for room.
		bool over = agent_.memory().over();
		full = least >= cfg_.send_limit || over;
		roomy = least < cfg_.send_limit / 2 && !over;
	}
	full = full || retention_.bytes() + cfg_.chunk > cfg_.retention;
	roomy = roomy && retention_.bytes() + cfg_.chunk <= cfg_.retention;
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
	if (tx_fin_)
		return;
	tx_fin_ = true;
	// FIN goes on every stream (a replacement gets it when it opens): any
	// one that arrives tells the end. The write sides are shut only once
	// the session is over both ways (check_done): frames may have to go
	// again until everything is acknowledged.
	for (auto &st : streams_)
		if (st && st->open())
			send_frame(*st, wire::Type::fin, tx_seq_, {});
	check_done();
}

// ---- streams -> plain end ---------------------------------------------------

void Session::stream_data(Stream &st, std::span<const std::byte> bytes)
{
	if (closing())
		return;
	if (phase_ == Phase::setup || st.pull) {
		// In pull mode these are bytes a source read before the mode
		// changed: they come first.
		st.in.insert(st.in.end(), bytes.begin(), bytes.end());
		if (phase_ == Phase::setup)
			st.pause();
		else
			stream_readable(st);
		return;
	}
	if (st.in.empty()) {
		std::size_t n = consume(st, bytes);
		if (n < bytes.size() && !closing())
			st.in.assign(bytes.begin() + n, bytes.end());
	} else {
		st.in.insert(st.in.end(), bytes.begin(), bytes.end());
		std::size_t n = consume(st, st.in);
		if (!closing())
			st.in.erase(st.in.begin(), st.in.begin() + n);
	}
	pump();
}

std::size_t Session::consume(Stream &st, std::span<const std::byte> buf)
{
	// A frame may lose a stream (an ACK WAITING), which pumps: that pump
	// must not consume st.in under this loop. The caller pumps after.
	bool outer = !consuming_;
	consuming_ = true;
	std::size_t off = consume_frames(st, buf);
	if (outer)
		consuming_ = false;
	return off;
}

std::size_t Session::consume_frames(Stream &st, std::span<const std::byte> buf)
{
	std::size_t off = 0;
	// Paused, the rest waits in st.in (pump() takes it up): a receive
	// buffer's worth of frames past the pause would overshoot the budgets.
	while (!closing() && !ingress_paused_ && buf.size() - off >= wire::kHeaderSize) {
		wire::Header h;
		auto s = wire::decode_header(buf.subspan(off).first<wire::kHeaderSize>(), h);
		if (s != wire::Status::ok) {
			abort(wire::ErrorCode::protocol,
			      fmt::format("stream {} from {}: bad frame: {}", st.index, st.peer,
					  wire::describe(s)));
			break;
		}
		if (buf.size() - off - wire::kHeaderSize < h.length)
			break;
		if (!handle_frame(st, h, buf.subspan(off + wire::kHeaderSize, h.length)))
			break;
		off += wire::kHeaderSize + h.length;
	}
	return off;
}

// What is wrong with DATA seq arriving on st (empty if nothing): at or past
// the end FIN named. A seq already delivered or held is no error: frames
// are sent again after a stream is lost, and the copies are dropped.
std::string Session::data_seq_error(const Stream &, std::uint64_t seq) const
{
	if (rx_fin_seq_ && seq >= *rx_fin_seq_)
		return fmt::format("DATA seq {} after FIN (seq {})", seq, *rx_fin_seq_);
	return {};
}

// Whether the reorder buffer would take DATA h now (the next in sequence
// always goes through; a duplicate is dropped).
bool Session::fits_reorder(const wire::Header &h) const
{
	return h.seq <= rx_.next() ||
	       (rx_.held_bytes() + h.length <= rx_.budget() && !agent_.memory().over());
}

bool Session::handle_frame(Stream &st, const wire::Header &h, std::span<const std::byte> payload)
{
	auto bad = [&](std::string what) {
		abort(wire::ErrorCode::protocol,
		      fmt::format("stream {} from {}: {}", st.index, st.peer, what));
		return false;
	};
	if (!st.open() && h.type != wire::Type::hello_ack && h.type != wire::Type::error)
		return bad("a frame before the HELLO-ACK");
	// A frame on a replacement proves the join side took it: its index may
	// be replaced as many times again.
	if (st.open() && rejoins_[st.index])
		rejoins_[st.index]->tries = 0;
	switch (h.type) {
	case wire::Type::hello_ack:
		if (st.open())
			return bad("an unexpected HELLO-ACK");
		return take_hello_ack(st, payload) && !closing() && attached(st);
	case wire::Type::auth:
		return bad("AUTH after the handshake");
	case wire::Type::data: {
		if (std::string e = data_seq_error(st, h.seq); !e.empty())
			return bad(e);
		note_data(st, h.seq);
		if (h.seq < rx_.next()) {
			stats_.duplicates_dropped++;
			return true;
		}
		if (h.seq != rx_.next() && agent_.memory().over()) {
			// Out of order past the agent's cap: as at our own budget.
			st.blocked = true;
			apply_pause(st);
			agent_.memory().wait(*this);
			watch_rx_stuck();
			return false;
		}
		switch (rx_.offer(h.seq, payload)) {
		case ReorderBuffer::Verdict::in_order:
			rx_.advance();
			deliver(payload);
			drain_reorder();
			break;
		case ReorderBuffer::Verdict::stored:
			agent_.memory().take(payload.size());
			watch_rx_stuck();
			break;
		case ReorderBuffer::Verdict::duplicate:
			stats_.duplicates_dropped++;
			break;
		case ReorderBuffer::Verdict::out_of_window:
			return bad(fmt::format("DATA seq {} outside the window (next {})", h.seq,
					       rx_.next()));
		case ReorderBuffer::Verdict::no_room:
			// Backpressure: stop reading this stream until the
			// frames before it arrive and free the budget.
			st.blocked = true;
			apply_pause(st);
			watch_rx_stuck();
			return false;
		}
		st.blocked = false;
		return !closing();
	}
	case wire::Type::fin:
		if (st.fin_seen)
			return bad("second FIN");
		if ((rx_fin_seq_ && *rx_fin_seq_ != h.seq) || h.seq < rx_.next() ||
		    (st.any_data && h.seq <= st.max_seq))
			return bad(fmt::format("FIN seq {} does not fit the data", h.seq));
		rx_fin_seq_ = h.seq;
		st.fin_seen = true;
		stats_.frames_received++;
		drain_reorder();
		return !closing();
	case wire::Type::error: {
		std::uint32_t code = 0;
		for (int i = 0; i < 4; i++)
			code |= std::to_integer<std::uint32_t>(payload[i]) << (8 * i);
		std::string text(reinterpret_cast<const char *>(payload.data()) + 4,
				 payload.size() - 4);
		for (char &c : text)
			if (c < 32 || c > 126)
				c = '?';
		abort(wire::ErrorCode(code), fmt::format("peer ended the session: {}", text), false);
		return false;
	}
	case wire::Type::ack:
		stats_.frames_received++;
		return take_ack(st, h) && !closing() && attached(st);
	case wire::Type::hello:
		return bad("HELLO after the handshake");
	}
	return bad("unknown frame");
}

void Session::deliver(std::span<const std::byte> bytes)
{
	stats_.bytes_out += bytes.size();
	progress();
	if (plain_)
		plain_->send(bytes);
	else if (app_)
		app_->on_data(*this, bytes);
	delivered(bytes.size());
	update_ingress_pause();
}

// DATA seq came on st (a copy or not): what FIN on st is checked against.
void Session::note_data(Stream &st, std::uint64_t seq)
{
	st.max_seq = st.any_data ? std::max(st.max_seq, seq) : seq;
	st.any_data = true;
	stats_.frames_received++;
}

void Session::drain_reorder()
{
	std::vector<std::byte> frame;
	while (!closing() && rx_.pop(frame)) {
		agent_.memory().give(frame.size());
		deliver(frame);
	}
	if (closing() || rx_done_ || !rx_fin_seq_ || rx_.next() != *rx_fin_seq_)
		return;
	rx_done_ = true;
	// The final ACK goes on every stream: the peer shuts its streams only
	// once it has it, so each stream's end comes after it.
	send_ack(0, true);
	if (plain_)
		plain_->shutdown_write();
	else if (app_)
		app_->on_fin(*this);
	check_done();
}

// Streams whose bytes wait (blocked on the budget, or held before the
// session started) get another go; repeats while anything moves.
void Session::pump()
{
	if (pumping_ || consuming_ || phase_ == Phase::setup)
		return;
	pumping_ = true;
	bool progress = true;
	while (progress && !closing()) {
		progress = false;
		for (auto &sp : streams_) {
			if (closing())
				break;
			if (!sp)
				continue;
			Stream &st = *sp;
			if (st.pull) {
				// Read again if what stopped it fits now.
				if (st.blocked && st.head && fits_reorder(*st.head))
					st.blocked = false;
			} else if (!st.in.empty()) {
				st.blocked = false;
				std::size_t n = consume(st, st.in);
				if (closing())
					break;
				st.in.erase(st.in.begin(), st.in.begin() + n);
				progress = progress || n > 0;
			}
			apply_pause(st);
			check_stream_eof(st);
		}
	}
	pumping_ = false;
}

void Session::apply_pause(Stream &st)
{
	bool want = phase_ == Phase::setup || ingress_paused_ || st.blocked || st.parked ||
		    pipe_wait_;
	if (want)
		st.pause();
	else
		st.resume();
}

// A stream may end only once the session is over both ways (the peer shuts
// its streams then); an earlier end loses the stream, not the session.
void Session::check_stream_eof(Stream &st)
{
	if (closing() || !st.eof || st.blocked || phase_ == Phase::setup || both_ways_done())
		return;
	lose_stream(st, st.in.empty() ? "closed before the end of the session"
				      : "closed inside a frame");
}

// Stops reading the streams while the plain end has send_limit bytes queued
// (or, for an application, while its replies cannot go out).
void Session::update_ingress_pause()
{
	std::size_t q = 0;
	bool over, under;
	if (splice_) {
		// Spliced: one pipe at a time goes to the plain socket.
		over = plain_->queued() > 0 || !plain_->connected();
		under = !over;
	} else {
		if (plain_) {
			q = plain_->queued();
		} else if (app_) {
			q = SIZE_MAX;
			for (auto &st : streams_)
				if (st && st->open())
					q = std::min(q, st->conn.queued());
			if (q == SIZE_MAX)
				q = 0;
		}
		// Past the agent's memory cap, a plain end with bytes still
		// queued takes no more: its queue drains on its own.
		bool mem = agent_.memory().over() && q > 0;
		over = q >= cfg_.send_limit || mem;
		under = q < cfg_.send_limit / 2 && !mem;
	}
	bool was = ingress_paused_;
	if (!ingress_paused_ && over) {
		ingress_paused_ = true;
		stats_.backpressure_pauses++;
	} else if (ingress_paused_ && under) {
		ingress_paused_ = false;
	}
	if (was != ingress_paused_)
		for (auto &st : streams_)
			if (st)
				apply_pause(*st);
}

void Session::stream_end(Stream &st, int err)
{
	if (closing())
		return;
	st.eof = true;
	if (is_rejoining(st)) {
		rejoin_failed(st, err < 0 ? strerror(-err) : "closed before the HELLO-ACK (refused: "
							      "see the join side's log)");
		return;
	}
	if (!st.open()) {
		abort(wire::ErrorCode::unreachable,
		      fmt::format("stream {} to {}: {} before the HELLO-ACK (the join side refused "
				  "it, see its log; or it speaks wire v1 only)",
				  st.index, st.peer, err < 0 ? strerror(-err) : "closed"));
		return;
	}
	if (err < 0) {
		if (both_ways_done()) {
			retire_stream(std::move(streams_[st.index]));
			check_done();
		} else {
			lose_stream(st, strerror(-err));
		}
		return;
	}
	check_stream_eof(st);
	check_done();
}

void Session::stream_conn_event(Stream &st)
{
	if (!closing()) {
		if (st.conn_error && is_rejoining(st)) {
			int e = st.conn_error;
			st.conn_error = 0;
			rejoin_failed(st, strerror(-e));
		} else if (st.conn_error && st.open() && phase_ == Phase::running) {
			int e = st.conn_error;
			st.conn_error = 0;
			lose_stream(st, fmt::format("send failed: {}", strerror(-e)));
		} else if (st.conn_error) {
			int e = st.conn_error;
			st.conn_error = 0;
			abort(st.conn.connected() ? wire::ErrorCode::stream_lost
						  : wire::ErrorCode::unreachable,
			      st.conn.connected()
				      ? fmt::format("stream {} to {}: send failed: {}", st.index,
						    st.peer, strerror(-e))
				      : fmt::format("cannot reach the join side {}: {}", st.peer,
						    strerror(-e)));
		} else {
			if (st.connected_event) {
				st.connected_event = false;
				if (st.pull)
					set_nonblocking(st.conn.fd());
				st.watch();
				apply_pause(st);
				update_plain_pause();
			}
			if (st.sent_event) {
				st.sent_event = false;
				update_plain_pause();
				check_done();
			}
		}
	}
	maybe_free();
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
