// SPDX-License-Identifier: MIT
// A session's life outside the data path: the stripe side's handshake (each
// stream's HELLO-ACK, then the client is read), the timeouts (idle, streams
// late), and the end (clean, or aborted with one log line), after which the
// session frees itself once nothing in flight refers to it.
#include "session.hpp"

#include "agent/log.hpp"

#include <cstring>

namespace agent {

// ---- handshake (stripe side) -------------------------------------------------

void Session::expect_streams(std::chrono::milliseconds timeout)
{
	handshake_timer_.arm(agent_.timers(), timeout);
}

void Session::on_streams_late()
{
	if (closing() || acked_ == count_)
		return;
	if (!plain_ && attached_ > 0 && start_short())
		return;
	stats_.timeouts++;
	if (plain_)
		abort(wire::ErrorCode::timeout,
		      fmt::format("the join side answered {} of {} HELLOs within {} ms", acked_,
				  count_, cfg_.handshake_timeout.count()));
	else
		abort(wire::ErrorCode::stream_lost,
		      fmt::format("not all {} streams arrived within {} ms", count_,
				  cfg_.handshake_timeout.count()));
}

// Join side, streams late: those that joined proved the key, and the stripe
// side (running since its HELLO-ACKs came) sends on every stream it has,
// among them the missing ones, whose AUTH a middlebox may have swallowed.
// The session starts without them: their indices wait for a replacement
// as a lost stream's do (the stripe side loses its stream once its frames
// go unanswered, and sends a REJOIN), or for the stream itself, late.
bool Session::start_short()
{
	std::string missing;
	for (unsigned i = 0; i < count_; i++)
		if (!streams_[i])
			missing += fmt::format("{}{}", missing.empty() ? "" : ", ", i);
	unsigned lost = count_ - attached_;
	if (!host_.start_short(*this))
		return false;
	stats_.streams_lost += lost;
	bool one = lost == 1;
	log(LogLevel::warn, "{}: {} of {} streams joined within {} ms; started without {} {}, "
			    "whose {} for a replacement",
	    tag(), attached_, count_, cfg_.handshake_timeout.count(), one ? "stream" : "streams",
	    missing, one ? "index waits" : "indices wait");
	return true;
}

// Stripe: the join side's answer to st's HELLO. AUTH goes back at once;
// once every stream has had its answer the client is read.
bool Session::take_hello_ack(Stream &st, std::span<const std::byte> payload)
{
	wire::HelloAck ack;
	auto s = wire::decode_hello_ack(payload.first<wire::kHelloAckSize>(), ack);
	if (s != wire::Status::ok) {
		abort(wire::ErrorCode::protocol,
		      fmt::format("stream {} to {}: bad HELLO-ACK: {}", st.index, st.peer,
				  wire::describe(s)));
		return false;
	}
	std::memcpy(st.ack.data(), payload.data(), wire::kHelloAckSize);
	std::array<std::uint8_t, wire::kAuthSize> proof{};
	if (cfg_.key)
		proof = cfg_.key->prove(st.hello, st.ack);
	send_frame(st, wire::Type::auth, 0, std::as_bytes(std::span(proof)));
	st.state = Stream::State::open;
	if (is_rejoining(st)) {
		install_stream(std::move(rejoins_[st.index]->stream));
		return true;
	}
	live_++;
	if (++acked_ == count_) {
		handshake_timer_.cancel();
		watch_client();
	}
	return true;
}

void Session::watch_client()
{
	plain_watching_ = true;
	agent_.events().watch(plain_->fd(), *this);
}

// ---- timeouts ------------------------------------------------------------------

void Session::arm_idle()
{
	if (cfg_.idle_timeout.count() > 0)
		idle_timer_.arm(agent_.timers(), cfg_.idle_timeout);
}

// Checked lazily: progress() only stamps the time; the timer looks at the
// stamp when it fires and waits for the rest if bytes moved meanwhile.
void Session::on_idle()
{
	if (closing())
		return;
	auto quiet = std::chrono::duration_cast<std::chrono::milliseconds>(agent_.now() -
									   last_progress_);
	if (quiet < cfg_.idle_timeout) {
		idle_timer_.arm(agent_.timers(), cfg_.idle_timeout - quiet);
		return;
	}
	stats_.timeouts++;
	abort(wire::ErrorCode::timeout,
	      fmt::format("no progress either way for {} ms (idle timeout)", quiet.count()));
}

// ---- the end ---------------------------------------------------------------------

// Over both ways (all sent is acknowledged, all received delivered and
// acknowledged): the streams' write sides are shut, and the session ends
// once the peer has shut its own and everything queued is out.
void Session::check_done()
{
	if (closing() || !both_ways_done())
		return;
	tx_.drop_resends();
	if (!streams_shut_)
		shut_streams();
	for (auto &st : streams_)
		if (st && !stream_over(*st))
			return;
	if (plain_ && plain_->queued())
		return;
	finish();
}

void Session::shut_streams()
{
	streams_shut_ = true;
	drop_rejoins();
	for (auto &st : streams_)
		if (st)
			st->conn.shutdown_write();
	ends_timer_.arm(agent_.timers(), cfg_.linger_timeout);
}

// Everything is acknowledged both ways, so nothing is lost if a stream's
// end never comes (a middlebox that swallows it): the session is done.
void Session::on_ends_late()
{
	if (closing())
		return;
	std::string late;
	for (auto &st : streams_)
		if (st && !stream_over(*st))
			late += fmt::format("{}{}", late.empty() ? "" : ", ", st->index);
	log(LogLevel::info, "{}: done both ways, but no end from the peer on stream(s) {} within "
			    "{} ms (--linger-timeout): closed",
	    tag(), late, cfg_.linger_timeout.count());
	finish();
}

void Session::stop_timers()
{
	idle_timer_.cancel();
	handshake_timer_.cancel();
	pipe_retry_.cancel();
	ack_timer_.cancel();
	rx_check_timer_.cancel();
	tx_check_timer_.cancel();
	failover_timer_.cancel();
	ends_timer_.cancel();
	for (auto &rj : rejoins_)
		if (rj)
			rj->timer.cancel();
}

void Session::finish()
{
	phase_ = Phase::closing;
	stop_timers();
	stats_.sessions_done++;
	stats_.active--;
	log(LogLevel::debug, "{}: done", tag());
	for (auto &st : streams_) {
		if (!st)
			continue;
		st->unwatch();
		st->conn.close(false);
	}
	close_plain(false, "");
}

// The plain end goes last: an application may look at the session in
// on_close. A reset tells a socket peer the stream is incomplete.
void Session::close_plain(bool reset, const std::string &reason)
{
	if (plain_watching_) {
		plain_watching_ = false;
		agent_.events().unwatch(plain_->fd());
	}
	if (plain_)
		plain_->close(reset);
	if (app_)
		app_->on_close(*this, reason);
	maybe_free();
}

void Session::reset(std::string_view reason)
{
	abort(wire::ErrorCode::reset, fmt::format("application reset: {}", reason));
}

void Session::abort(wire::ErrorCode code, const std::string &reason, bool tell_peer)
{
	if (closing())
		return;
	phase_ = Phase::closing;
	stop_timers();
	drop_rejoins();
	stats_.sessions_failed++;
	stats_.active--;
	log(LogLevel::warn, "{}: {}", tag(), reason);
	std::vector<std::byte> err = wire::error_payload(code, reason);
	// The reason goes as an ERROR frame on every stream, behind what is on
	// its way, and each stream is reset once the peer's TCP has taken it all
	// (or --linger-timeout passed): a reading peer has read the reason by
	// then; a paused one (it reads no stream) learns of the end from the
	// reset. (A peer that sees every stream reset cannot tell that from a
	// broken path: it waits --failover-deadline.)
	bool tell = tell_peer;
	for (auto &st : streams_)
		if (st && (!st->conn.connected() || st->conn.write_shut()))
			tell = false;
	for (auto &st : streams_) {
		if (!st)
			continue;
		st->unwatch();
		if (tell) {
			send_frame(*st, wire::Type::error, 0, err);
			st->conn.reset_when_acked(cfg_.linger_timeout);
		} else {
			st->conn.close(true);
		}
	}
	close_plain(true, reason);
}

void Session::maybe_free()
{
	if (phase_ != Phase::closing || !idle())
		return;
	phase_ = Phase::freed;
	host_.session_finished(this);
}

bool Session::idle() const
{
	for (auto &st : streams_)
		if (st && st->conn.busy())
			return false;
	for (auto &rj : rejoins_)
		if (rj && rj->stream && rj->stream->conn.busy())
			return false;
	return !plain_ || !plain_->busy();
}

} // namespace agent
