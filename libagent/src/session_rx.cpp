// SPDX-License-Identifier: MIT
// A session's streams -> plain end path on the copy path (and the frames
// every path reads into memory: control frames, DATA for an application,
// parked frames spilled): frames are decoded from each stream's bytes,
// checked, reordered and delivered; a stream's end is checked against the
// session's. The zero-copy reader (session_pull.cpp) comes here for all but
// the DATA it splices.
#include "session.hpp"

#include "agent/log.hpp"

#include <cstring>

namespace agent {

// ---- streams -> plain end ---------------------------------------------------

void Session::stream_data(Stream &st, std::span<const std::byte> bytes)
{
	if (closing())
		return;
	if (phase_ == Phase::setup || st.pull) {
		// In pull mode these are bytes a source read before the mode
		// changed: they come first.
		st.reader.held.insert(st.reader.held.end(), bytes.begin(), bytes.end());
		if (phase_ == Phase::setup)
			st.pause();
		else
			stream_readable(st);
		return;
	}
	if (st.reader.held.empty()) {
		std::size_t n = consume(st, bytes);
		if (n < bytes.size() && !closing())
			st.reader.held.assign(bytes.begin() + n, bytes.end());
	} else {
		st.reader.held.insert(st.reader.held.end(), bytes.begin(), bytes.end());
		std::size_t n = consume(st, st.reader.held);
		if (!closing())
			st.reader.held.erase(st.reader.held.begin(), st.reader.held.begin() + n);
	}
	pump();
}

std::size_t Session::consume(Stream &st, std::span<const std::byte> buf)
{
	// A frame may lose a stream (an ACK WAITING), which pumps: that pump
	// must not consume st.reader.held under this loop. The caller pumps after.
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
	// Paused, the rest waits in st.reader.held (pump() takes it up): a receive
	// buffer's worth of frames past the pause would overshoot the budgets.
	while (!closing() && (!ingress_paused_ || !st.open()) &&
	       buf.size() - off >= wire::kHeaderSize) {
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
	if (rx_.after_fin(seq))
		return fmt::format("DATA seq {} after FIN (seq {})", seq, *rx_.fin_seq());
	return {};
}

// Whether the reorder buffer would take DATA h now (the next in sequence
// always goes through; a duplicate is dropped).
bool Session::fits_reorder(const wire::Header &h) const
{
	const ReorderBuffer &r = rx_.reorder();
	return h.seq <= rx_.next() ||
	       (r.held_bytes() + h.length <= r.budget() && !agent_.memory().over());
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
			// Sent again: the sender has not seen our ACK (or gave up on
			// its stream). Another ACK, on the next stream in turn.
			stats_.duplicates_dropped++;
			send_ack(0, false);
			return !closing();
		}
		if (h.seq != rx_.next() && agent_.memory().over()) {
			// Out of order past the agent's cap: as at our own budget.
			st.blocked = true;
			apply_pause(st);
			agent_.memory().wait(*this);
			watch_rx_stuck();
			return false;
		}
		switch (rx_.reorder().offer(h.seq, payload)) {
		case ReorderBuffer::Verdict::in_order:
			rx_.reorder().advance();
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
		if ((st.any_data && h.seq <= st.max_seq) || !rx_.take_fin(h.seq))
			return bad(fmt::format("FIN seq {} does not fit the data", h.seq));
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
	if (plain_) {
		plain_->send(bytes);
		if (bytes.size() <= kSmallMessage)
			plain_->flush();
	} else if (app_)
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
	while (!closing() && rx_.reorder().pop(frame)) {
		agent_.memory().give(frame.size());
		deliver(frame);
	}
	if (closing() || !rx_.complete())
		return;
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
				if (st.blocked && st.reader.head() && fits_reorder(*st.reader.head()))
					st.blocked = false;
			} else if (!st.reader.held.empty()) {
				st.blocked = false;
				std::size_t n = consume(st, st.reader.held);
				if (closing())
					break;
				st.reader.held.erase(st.reader.held.begin(), st.reader.held.begin() + n);
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
	// A stream in its handshake (a replacement) is read whatever the
	// data path waits for: its HELLO-ACK carries no data.
	bool want = st.open() && (phase_ == Phase::setup || ingress_paused_ || st.blocked ||
				  st.parked || pipe_wait_);
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
	lose_stream(st, st.reader.held.empty() ? "closed before the end of the session"
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
		} else if (st.conn_error && st.open() &&
			   (phase_ == Phase::running || side_ == Side::join)) {
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

} // namespace agent
