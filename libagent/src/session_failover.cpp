// SPDX-License-Identifier: MIT
// A session that survives losing streams (docs/wire-format.md, "Losing a
// stream"). Each direction's receiver acknowledges what it has delivered;
// the sender keeps every unacknowledged DATA frame (Retention) and, when a
// stream is lost, sends the frames it carried again on the others. The
// stripe side opens a replacement (a HELLO with REJOIN); the join side puts
// it at the lost index. A receiver whose next frame is stuck on its stream
// while later ones are in hand says so (ACK WAITING): the sender then gives
// up on that stream once the frame has waited --stream-timeout.
#include "session.hpp"

#include "agent/log.hpp"

#include <algorithm>

namespace agent {
namespace {

using std::chrono::milliseconds;

// A delivery no ACK covers yet is acknowledged within this (one or two
// timer slots): the sender's retention drains even when traffic is light.
constexpr milliseconds kAckDelay{100};
// A receiver with later frames in hand that has not seen its next one for
// this long reads parked frames into memory (the zero-copy path)...
constexpr milliseconds kSpillAfter{200};
// ...and for this long tells the sender (WAITING), at most once a period.
constexpr milliseconds kWaitingAfter{500};
constexpr milliseconds kWaitingPeriod{1000};
constexpr milliseconds kRxCheck{100};
// The oldest unacknowledged frame out this long holds the peer up: new
// frames go on the other streams (holding_up()).
constexpr milliseconds kHeldUpAfter{500};
// Replacement tries: 100 ms, then doubling up to this.
constexpr milliseconds kRejoinFirst{100};
constexpr milliseconds kRejoinMax{3200};

class RetiredStreamHandler final : public StreamHandler {
public:
	void stream_data(Stream &, std::span<const std::byte>) override {}
	void stream_end(Stream &, int) override {}
	void stream_conn_event(Stream &) override {}
	StreamReader::Pulled stream_readable(Stream &) override { return {}; }
};

long ms_since(Agent::Clock::time_point t, Agent::Clock::time_point now)
{
	return std::chrono::duration_cast<milliseconds>(now - t).count();
}

} // namespace

StreamHandler &retired_stream_handler()
{
	static RetiredStreamHandler h;
	return h;
}

// ---- acknowledgements (receiving side) -------------------------------------------

void Session::delivered(std::size_t bytes)
{
	if (rx_.delivered(bytes))
		send_ack(0, false);
	else if (!ack_timer_.armed())
		ack_timer_.arm(agent_.timers(), kAckDelay);
}

void Session::on_ack_timer()
{
	if (!closing() && rx_.ack_pending())
		send_ack(0, false);
}

// ACK rx_.next() on the next live stream in turn (a stream that swallows
// bytes silently cannot take them all), or on every one.
void Session::send_ack(std::uint8_t flags, bool every_stream)
{
	std::byte hdr[wire::kHeaderSize];
	wire::Header h;
	h.type = wire::Type::ack;
	h.flags = flags;
	h.seq = rx_.next();
	wire::encode_header(h, hdr);
	auto usable = [](const Stream *st) {
		return st && st->open() && !st->conn.write_shut() && !st->conn.closed();
	};
	bool sent = false;
	for (unsigned k = 0; k < count_; k++) {
		unsigned i = (ack_next_stream_ + k) % count_;
		if (!usable(streams_[i].get()))
			continue;
		streams_[i]->conn.send(hdr);
		stats_.acks_sent++;
		stats_.frames_sent++;
		sent = true;
		if (!every_stream) {
			ack_next_stream_ = i + 1;
			break;
		}
	}
	if (!sent)
		return; // none open: a replacement gets one when it opens
	rx_.acked();
	ack_timer_.cancel();
}

// ---- acknowledgements (sending side) ------------------------------------------------

bool Session::take_ack(Stream &st, const wire::Header &h)
{
	// A frame acknowledged that went on one stream alone: that one delivers.
	for (const Retention::Frame *f = tx_.retention().oldest(); f && f->seq < h.seq;
	     f = tx_.retention().find(f->seq + 1))
		if (f->resends == 0 && f->stream < count_ && streams_[f->stream])
			streams_[f->stream]->unanswered = 0;
	switch (tx_.take_ack(h.seq)) {
	case Sender::Ack::beyond:
		abort(wire::ErrorCode::protocol,
		      fmt::format("stream {} from {}: ACK {} beyond the {} frames sent", st.index,
				  st.peer, h.seq, tx_.next_seq()));
		return false;
	case Sender::Ack::stale: // a lower one than seen before, on a slower stream
		break;
	case Sender::Ack::released:
		update_plain_pause();
		break;
	}
	if ((h.flags & wire::kAckFlagWaiting) && h.seq < tx_.next_seq())
		frame_waited_for(h.seq);
	check_done();
	return true;
}

// The peer has waited for DATA seq a while, with later frames in hand. Past
// --stream-timeout, the stream it first went on is lost; a frame already
// sent again (its new stream may just have a long queue before it) goes
// once more on another stream instead, which costs nobody a stream.
void Session::frame_waited_for(std::uint64_t seq)
{
	Retention::Frame *f = tx_.retention().find(seq);
	if (!f || f->stream >= count_ || !streams_[f->stream])
		return;
	f->peer_waits = true; // on_tx_check may come first at the timeout
	if (agent_.now() - f->sent < cfg_.stream_timeout)
		return;
	if (f->resends == 0) {
		lose_waited_for(*f);
		return;
	}
	Stream *st = least_queued(true, streams_[f->stream].get());
	if (st)
		resend(*f, *st);
}

// The peer waits for f, sent once, on the stream it went on, past
// --stream-timeout: that stream is lost (its frames go on the others).
void Session::lose_waited_for(const Retention::Frame &f)
{
	lose_stream(*streams_[f.stream],
		    fmt::format("the peer has waited for DATA {}, sent on it {} ms ago "
				"(--stream-timeout {})",
				f.seq, ms_since(f.sent, agent_.now()), cfg_.stream_timeout.count()));
}

// The stream that carries the oldest unacknowledged frame, when that frame
// has been out kHeldUpAfter and another stream is open; else count_. The
// peer's ACKs wait on it. New frames go on the others meanwhile: a stream
// that swallows bytes unseen (a blackhole) drains fastest, and would
// otherwise take every new frame, leaving the peer no later frame to show
// that it waits (ACK WAITING), and the session stalled with it.
unsigned Session::holding_up() const
{
	const Retention::Frame *f = tx_.retention().oldest();
	if (!f || f->stream >= count_ || agent_.now() - f->sent < kHeldUpAfter)
		return count_;
	for (unsigned i = 0; i < count_; i++)
		if (i != f->stream && streams_[i] && streams_[i]->open())
			return f->stream;
	return count_;
}

// Sends retained frame f again on st, copied.
bool Session::resend(Retention::Frame &f, Stream &st)
{
	if (!tx_.retention().materialize(f)) {
		abort(wire::ErrorCode::internal, fmt::format("cannot read back retained DATA {}", f.seq));
		return false;
	}
	send_frame(st, wire::Type::data, f.seq, f.bytes);
	f.stream = st.index;
	f.sent = agent_.now();
	f.resends++;
	f.peer_waits = false;
	stats_.frames_resent++;
	return true;
}

void Session::keep_sent(unsigned stream, std::uint64_t seq, std::span<const std::byte> copy)
{
	tx_.retention().keep_copy(seq, stream, agent_.now(), copy);
	watch_unanswered();
}

// ---- a frame nobody answers (sending side) ------------------------------------------

// A stream can swallow frames unseen (a middlebox that keeps the
// connection but forwards nothing), and the peer learns of a frame only
// when it arrives: with no later one in hand (those went on dead streams
// too, or the plain end has sent nothing since) it sends no ACK WAITING,
// and both sides would wait for ever. So the oldest frame still
// unacknowledged --stream-timeout after it went out goes once more on
// another stream, and each time after waits twice as long (a peer whose
// plain end is only slow has it, and drops the copy).
void Session::watch_unanswered()
{
	if (!tx_check_timer_.armed() && !closing())
		tx_check_timer_.arm(agent_.timers(), cfg_.stream_timeout);
}

void Session::on_tx_check()
{
	const Retention::Frame *oldest = tx_.retention().oldest();
	if (closing() || !oldest)
		return; // the next frame kept arms it again
	Retention::Frame &f = *tx_.retention().find(oldest->seq);
	auto wait = [&] { return cfg_.stream_timeout * (1u << std::min(f.resends, 4u)); };
	auto now = agent_.now();
	if (now - f.sent < wait()) {
		tx_check_timer_.arm(agent_.timers(), std::chrono::duration_cast<milliseconds>(
							      wait() - (now - f.sent)));
		return;
	}
	Stream *on = f.stream < count_ ? streams_[f.stream].get() : nullptr;
	Stream *st = on ? least_queued(true, on) : nullptr;
	if (st && f.resends == 0 && f.peer_waits) {
		// The peer's WAITING came before the timeout, this check first
		// at it: the stream is as late as frame_waited_for() loses.
		lose_waited_for(f);
		if (!closing())
			watch_unanswered();
		return;
	}
	if (st && f.resends == 0 && ++on->unanswered >= 2) {
		// Its frames reach the peer no more (which only a lack of
		// ACKs shows when the peer has nothing later in hand).
		lose_stream(*on, fmt::format("a second frame on it, DATA {}, unacknowledged {} ms "
					     "after it went out (--stream-timeout {})",
					     f.seq, ms_since(f.sent, now),
					     cfg_.stream_timeout.count()));
		if (!closing())
			watch_unanswered();
		return;
	}
	if (st) {
		log(LogLevel::info, "{}: DATA {} unacknowledged {} ms after it went on stream {}: "
				    "sent again on stream {}",
		    tag(), f.seq, ms_since(f.sent, now), f.stream, st->index);
		if (!resend(f, *st))
			return;
	}
	// No other stream: a replacement or the failover deadline comes first.
	tx_check_timer_.arm(agent_.timers(), st ? wait() : cfg_.stream_timeout);
}

// ---- a stuck receiver ---------------------------------------------------------------

void Session::watch_rx_stuck()
{
	if (rx_check_timer_.armed() || closing())
		return;
	rx_.watch(agent_.now(), rx_partial_);
	rx_check_timer_.arm(agent_.timers(), kRxCheck);
}

void Session::on_rx_check()
{
	if (closing() || phase_ != Phase::running)
		return;
	bool ahead = rx_.reorder().held_frames() > 0;
	for (auto &sp : streams_)
		ahead = ahead || (sp && (sp->parked || sp->blocked));
	if (!ahead)
		return; // nothing waits for a missing frame: the watch ends
	// Moving, or waiting for the plain end: not stuck (0).
	auto now = agent_.now();
	auto stuck = rx_.stuck_for(now, rx_partial_, plain_holds_next());
	// Armed before acting: a stream spill_parked() parks again (a copy of
	// the frame another stream delivers) would else restart the watch
	// (watch_rx_stuck), and the stuck time never reach kWaitingAfter.
	rx_check_timer_.arm(agent_.timers(), kRxCheck);
	if (splice_ && stuck >= kSpillAfter)
		spill_parked();
	if (!closing() && stuck >= kWaitingAfter)
		drop_stalled_owner();
	if (!closing() && stuck >= kWaitingAfter && rx_.waiting_due(now, kWaitingPeriod))
		send_ack(wire::kAckFlagWaiting, true);
}

// While the plain end takes no more (ingress paused), the streams are not
// read: the next frame may be in one of them, unread, and nothing is stuck.
// Only a stream with bytes unread can hold it (a parked one's are a later
// frame's). With none, the next frame is not here, and waiting for the plain
// end would not bring it: the stuck watch runs (else a plain end slow
// because the other direction waits, as an echo's, keeps this side from
// finding its lost stream, and both wait for ever).
bool Session::plain_holds_next() const
{
	if (!ingress_paused_)
		return false;
	for (auto &sp : streams_)
		if (sp && sp->open() &&
		    !(sp->parked && sp->reader.head() && sp->reader.head()->seq > rx_.next()) &&
		    unread_bytes(sp->conn.fd()) > 0)
			return true;
	return false;
}

// The zero-copy receiver parks a stream whose head frame is not due. A
// frame sent again after a loss can queue behind later ones on its new
// stream; when nothing moves, the parked heads (lowest first) are read into
// the reorder buffer, within its budget, so the streams behind them go on.
void Session::spill_parked()
{
	std::vector<Stream *> parked;
	for (auto &sp : streams_)
		if (sp && sp->parked && sp->reader.head())
			parked.push_back(sp.get());
	std::sort(parked.begin(), parked.end(),
		  [](const Stream *a, const Stream *b) { return a->reader.head()->seq < b->reader.head()->seq; });
	spilling_ = true;
	for (Stream *st : parked) {
		if (closing() || !spilling_ || !attached(*st) || !fits_reorder(*st->reader.head()))
			break;
		st->parked = false;
		stream_readable(*st);
	}
}

// The zero-copy receiver takes a frame from one stream at a time
// (rx_owner_, once it has delivered part of it); a copy of that frame on
// another stream (the sender sent it again: it has given up on the first)
// waits parked. When the owner has stalled inside the frame, it is lost
// here too, and the copy completes the frame past what was delivered
// (rx_partial_). Else neither stream would move: the stalled one holds the
// sequence, the copy waits for it.
void Session::drop_stalled_owner()
{
	Stream *owner = nullptr;
	for (auto &sp : streams_)
		if (sp && sp.get() == rx_owner_)
			owner = sp.get();
	if (!owner)
		return;
	for (auto &sp : streams_) {
		if (!sp || sp.get() == owner || !sp->parked || !sp->reader.head() ||
		    sp->reader.head()->type != wire::Type::data || sp->reader.head()->seq != rx_.next())
			continue;
		lose_stream(*owner, fmt::format("stalled inside DATA {} ({} bytes of it delivered) "
						"while stream {} holds a copy",
						rx_.next(), rx_partial_, sp->index));
		return;
	}
}

// ---- losing a stream --------------------------------------------------------------------

void Session::retire_stream(std::unique_ptr<Stream> st)
{
	if (!st)
		return;
	st->unwatch();
	if (!st->conn.closed())
		st->conn.close(true);
	st->handler = &retired_stream_handler();
	if (rx_owner_ == st.get())
		rx_owner_ = nullptr;
	agent_.retire(std::move(st));
}

bool Session::is_rejoining(const Stream &st) const
{
	return st.index < count_ && rejoins_[st.index] && rejoins_[st.index]->stream.get() == &st;
}

void Session::lose_stream(Stream &st, const std::string &why)
{
	if (closing())
		return;
	if (side_ == Side::join && phase_ == Phase::setup && attached(st) && st.open()) {
		lose_before_start(st, why);
		return;
	}
	if (!attached(st) || phase_ != Phase::running || !st.open()) {
		abort(wire::ErrorCode::stream_lost,
		      fmt::format("stream {} from {}: {}", st.index, st.peer, why));
		return;
	}
	unsigned i = st.index;
	std::string peer = st.peer;
	retire_stream(std::move(streams_[i]));
	live_--;
	if (both_ways_done()) { // nothing was left to lose
		check_done();
		return;
	}
	stats_.streams_lost++;
	std::vector<std::uint64_t> carried = tx_.retention().carried_by(i);
	bool replace = side_ == Side::stripe && cfg_.rejoin_tries > 0;
	log(LogLevel::warn, "{}: stream {} ({}) lost: {}; {} unacknowledged frames go again on {} "
			    "other streams{}",
	    tag(), i, peer, why, carried.size(), live_, replace ? "; a replacement follows" : "");
	tx_.resend_later(carried);
	flush_resends();
	if (closing())
		return;
	// It may have held the start of the next frame: a copy at another
	// stream's head can go now.
	for (auto &sp : streams_)
		if (sp && sp->parked && sp->reader.head() && sp->reader.head()->seq <= rx_.next()) {
			sp->parked = false;
			apply_pause(*sp);
		}
	if (live_ == 0)
		failover_timer_.arm(agent_.timers(), cfg_.failover_deadline);
	if (replace)
		schedule_rejoin(i);
	update_plain_pause();
	pump();
	watch_rx_stuck();
}

// Join side, a stream lost while others have yet to join: the stripe side
// (running since its HELLO-ACKs came) may already have sent frames on it,
// which this side never read, and it sends a replacement (REJOIN) as for any
// lost stream. The index waits for it within a fresh handshake timeout; the
// frames the lost stream held come again, since nothing is acknowledged yet.
void Session::lose_before_start(Stream &st, const std::string &why)
{
	unsigned i = st.index;
	log(LogLevel::warn, "{}: stream {} ({}) lost before all {} streams had joined: {}; its "
			    "index waits for a replacement",
	    tag(), i, st.peer, count_, why);
	retire_stream(std::move(streams_[i]));
	attached_--;
	acked_--;
	live_--;
	stats_.streams_lost++;
	expect_streams(cfg_.handshake_timeout);
}

// The frames of lost streams go again, copied, on the least busy open
// streams (oldest first); with none open they wait for a replacement.
void Session::flush_resends()
{
	while (!closing()) {
		std::optional<std::uint64_t> seq = tx_.next_resend();
		if (!seq)
			break;
		Retention::Frame *f = tx_.retention().find(*seq);
		if (!f) { // acknowledged meanwhile
			tx_.resent();
			continue;
		}
		// The least backlog counting the kernel's queue: a frame sent
		// again is one the peer waits for.
		Stream *st = least_queued(true);
		if (!st || !resend(*f, *st))
			return;
		tx_.resent();
	}
}

void Session::on_failover_deadline()
{
	if (closing() || live_ > 0)
		return;
	stats_.timeouts++;
	abort(wire::ErrorCode::stream_lost,
	      fmt::format("no stream left for {} ms (--failover-deadline)",
			  cfg_.failover_deadline.count()));
}

// ---- replacements -----------------------------------------------------------------------------

void Session::schedule_rejoin(unsigned index)
{
	if (closing() || streams_shut_)
		return;
	auto &rj = rejoins_[index];
	if (!rj)
		rj = std::make_unique<Rejoin>([this, index] { start_rejoin(index); });
	if (rj->stream)
		return; // one is under way
	if (rj->tries >= cfg_.rejoin_tries) {
		bool trying = false;
		for (auto &o : rejoins_)
			trying = trying || (o && (o->stream || o->timer.armed()));
		if (live_ == 0 && !trying) {
			abort(wire::ErrorCode::stream_lost,
			      fmt::format("every stream lost, and no replacement after {} tries each",
					  rj->tries));
			return;
		}
		log(LogLevel::warn, "{}: stream {}: no replacement after {} tries; {} streams left",
		    tag(), index, rj->tries, live_);
		return;
	}
	milliseconds wait = std::min(kRejoinMax, kRejoinFirst * (1u << std::min(rj->tries, 5u)));
	rj->timer.arm(agent_.timers(), wait);
}

// The timer: the next try, or the deadline of the one under way.
void Session::start_rejoin(unsigned index)
{
	Rejoin &rj = *rejoins_[index];
	if (closing())
		return;
	if (rj.stream) {
		rejoin_failed(*rj.stream, fmt::format("no HELLO-ACK within {} ms",
						      cfg_.handshake_timeout.count()));
		return;
	}
	rj.tries++;
	std::string err;
	rj.stream = open_stream(index, true, &err);
	if (!rj.stream) {
		log(LogLevel::warn, "{}: stream {}: replacement try {}: {}", tag(), index, rj.tries,
		    err);
		schedule_rejoin(index);
		return;
	}
	rj.timer.arm(agent_.timers(), cfg_.connect_timeout + cfg_.handshake_timeout);
}

// No more replacements: those under way are reset, no try is due.
void Session::drop_rejoins()
{
	for (auto &rj : rejoins_)
		if (rj) {
			rj->timer.cancel();
			retire_stream(std::move(rj->stream));
		}
}

void Session::rejoin_failed(Stream &st, const std::string &why)
{
	unsigned i = st.index;
	Rejoin &rj = *rejoins_[i];
	log(LogLevel::warn, "{}: stream {}: replacement try {} of {} failed: {}", tag(), i, rj.tries,
	    cfg_.rejoin_tries, why);
	rj.timer.cancel();
	retire_stream(std::move(rj.stream));
	schedule_rejoin(i);
}

// A replacement whose handshake is over takes its index (join: the old
// stream there, if the join side had not noticed its loss yet, goes).
void Session::install_stream(std::unique_ptr<Stream> st)
{
	unsigned i = st->index;
	if (streams_[i])
		lose_stream(*streams_[i], "replaced by a rejoining stream");
	if (closing()) {
		retire_stream(std::move(st));
		return;
	}
	if (rejoins_[i])
		rejoins_[i]->timer.cancel(); // its tries count until a frame comes on it
	stats_.streams_rejoined++;
	log(LogLevel::info, "{}: stream {} ({}) rejoined the session", tag(), i, st->peer);
	streams_[i] = std::move(st);
	live_++;
	failover_timer_.cancel();
	Stream &ns = *streams_[i];
	if (tx_.ended())
		send_frame(ns, wire::Type::fin, tx_.next_seq(), {});
	if (rx_.ever_acked())
		send_ack(0, false);
	flush_resends();
	if (closing())
		return;
	apply_pause(ns);
	update_plain_pause();
	pump();
	check_done();
}

bool Session::rejoin_stream(std::unique_ptr<Stream> &st, std::span<const std::byte> leftover)
{
	if (closing() || st->index >= count_)
		return false;
	if (phase_ == Phase::setup) // a stream lost before the start (lose_before_start)
		return !index_taken(st->index) && add_stream(std::move(st), leftover);
	if (phase_ != Phase::running)
		return false;
	st->handler = this;
	st->state = Stream::State::open; // the join server saw its AUTH
	Stream *ref = st.get();
	install_stream(std::move(st));
	if (!leftover.empty() && attached(*ref))
		stream_data(*ref, leftover);
	return true;
}

} // namespace agent
