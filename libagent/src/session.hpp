// SPDX-License-Identifier: MIT
// One striped session, the same on both sides: a plain end (the client's
// socket on the stripe side; the target's socket or an application on the
// join side) and N streams. Bytes from the plain end are cut into sequenced
// DATA frames and spread over the streams; frames from the streams are
// reordered and written to the plain end. Each direction's receiver ACKs
// what it delivered; the sender keeps what is not acknowledged (Retention)
// and sends it again when a stream is lost, which the stripe side replaces.
// Each direction's state and its rules are apart, tested alone: Sender
// (seqs, FIN, ACKs taken, retention, resends) and Receiver (reorder, FIN,
// ACKs owed, the stuck watch); the Session does their I/O.
// Files: session.cpp (setup, plain end -> streams), session_rx.cpp
// (streams -> plain end), session_pull.cpp (the zero-copy path),
// session_failover.cpp (ACKs, losing and replacing streams),
// session_life.cpp (handshake, timeouts, the end).
#pragma once

#include "agent/proxy.hpp"
#include "agent/scheduler.hpp"
#include "conn.hpp"
#include "frame_reader.hpp"
#include "receiver.hpp"
#include "sender.hpp"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace agent {

class Stream;

// A message of at most this much goes copied rather than spliced (a system
// call and a pipe less), and is flushed to the kernel at once (Conn::flush):
// a request/response peer waits for it.
inline constexpr std::size_t kSmallMessage = 4096;

// Aborts every session of a server's map (Session * -> owner), which
// shrinks as they finish: a server going away ends them all.
template <typename Map>
void abort_all(Map &sessions, const std::string &reason);

// cfg if validate() accepts it; else closes listen_fd (which the server
// took) and throws std::invalid_argument with validate()'s reason.
SessionConfig checked_config(SessionConfig cfg, int listen_fd);

// Whoever currently handles a stream's bytes: the join server while the
// HELLO is awaited, then the session.
class StreamHandler {
public:
	virtual void stream_data(Stream &st, std::span<const std::byte> bytes) = 0;
	virtual void stream_end(Stream &st, int err) = 0;
	virtual void stream_conn_event(Stream &st) = 0; // an op of st.conn completed
	// Pull mode: data arrived; the handler reads it (see StreamReader).
	virtual StreamReader::Pulled stream_readable(Stream &st) = 0;

protected:
	~StreamHandler() = default;
};

// One TCP stream of a session.
class Stream final : public StreamReader, public ConnOwner, public Disposable {
public:
	Stream(Agent &agent, StreamHandler *h, int fd, bool connected, unsigned index);
	~Stream() override;
	bool idle() const override { return !conn.busy(); }

	void on_data(std::span<const std::byte> bytes) override { handler->stream_data(*this, bytes); }
	void on_end(int err) override { handler->stream_end(*this, err); }
	bool pulls() const override { return pull; }
	Pulled on_readable() override { return handler->stream_readable(*this); }
	void conn_connected(Conn &) override;
	void conn_sent(Conn &) override;
	void conn_failed(Conn &, int err) override;
	void conn_op_done(Conn &) override { handler->stream_conn_event(*this); }

	void watch();
	void unwatch();
	void pause();
	void resume();

	Agent &agent;
	StreamHandler *handler;
	Conn conn;
	unsigned index;
	std::string peer;
	// Bytes received and not yet consumed (reader.held), and in pull mode
	// (the handler reads the socket itself) the frame being read.
	FrameReader reader;
	bool pull = false;
	bool parked = false;  // its DATA frame waits for the frames before it
	std::size_t discard = 0; // bytes of its frame delivered by a lost stream

	// The handshake (docs/wire-format.md): the HELLO sent (stripe) or
	// received (join), and the HELLO-ACK whose nonce AUTH proves.
	wire::Hello hello;
	std::array<std::byte, wire::kHelloAckSize> ack{};
	bool hello_seen = false; // join: HELLO taken, HELLO-ACK sent
	enum class State {
		handshake, // HELLO-ACK (stripe) or AUTH (join) awaited
		open,      // frames flow
	} state = State::handshake;
	bool open() const { return state == State::open; }

	std::uint64_t max_seq = 0; // the highest DATA seq it carried
	bool any_data = false;
	bool fin_seen = false;  // the peer's FIN frame arrived on this stream
	bool eof = false;       // the socket's read side ended
	bool blocked = false;   // its next frame does not fit the reorder budget
	// Frames of it sent again unanswered (on_tx_check) since the peer last
	// acknowledged one that went on it alone: at two, it is lost.
	unsigned unanswered = 0;
	bool watching = false;
	bool paused = false;
	int conn_error = 0;     // set by conn_failed, read by the handler
	bool connected_event = false;
	bool sent_event = false;
	Agent::Clock::time_point since;
};

// Takes the events of a stream that has left its session (lost, replaced)
// while its last operations complete: the session may be gone by then.
StreamHandler &retired_stream_handler();

class SessionHost {
public:
	// Everything of s is released but s itself, and nothing in flight
	// refers to it: the host hands it to Agent::dispose().
	virtual void session_finished(Session *s) = 0;
	// Join side: --handshake-timeout is over with some of s's streams
	// joined, not all. True if the host started s without the rest
	// (start_target() or start_app()); else s ends.
	virtual bool start_short(Session &) { return false; }

protected:
	~SessionHost() = default;
};

class Session final : public StreamHandler,
		      public ConnOwner,
		      public StreamReader,
		      public SessionHandle,
		      public MemoryWaiter,
		      public Disposable {
public:
	Session(Agent &agent, const SessionConfig &cfg, SessionHost &host, ProxyStats &stats,
		std::uint64_t id, unsigned count);
	~Session() override;
	// Nothing in flight points into it (it may be freed).
	bool idle() const override;

	// Stripe side: the client's socket; streams are opened to peer.
	void start_stripe(int client_fd, const Address &peer);
	// Join side: a stream whose HELLO named this session (bytes after the
	// HELLO follow as leftover). False if its index is taken.
	bool add_stream(std::unique_ptr<Stream> st, std::span<const std::byte> leftover);
	bool complete() const;
	bool index_taken(unsigned i) const { return i >= count_ || streams_[i] != nullptr; }
	// Join side, once complete: the target or the application.
	void start_target(const Address &target);
	void start_app(std::unique_ptr<SessionApp> app);

	// Ends the session: logs reason, resets the plain end, tells the peer.
	// tell_peer: send the peer an ERROR frame where a stream can take one.
	void abort(wire::ErrorCode code, const std::string &reason, bool tell_peer = true);

	// Join side: a replacement (HELLO with REJOIN) for the stream at its
	// index, lost or not; before the start, only for an index lost then
	// (complete() may be true after it). False: st is still the caller's.
	bool rejoin_stream(std::unique_ptr<Stream> &st, std::span<const std::byte> leftover);

	// Join side: the rest of the streams must come within timeout.
	void expect_streams(std::chrono::milliseconds timeout);

	bool closing() const { return phase_ >= Phase::closing; }
	bool started() const { return phase_ != Phase::setup; }
	unsigned count() const { return count_; }
	Agent::Clock::time_point created() const { return created_; }

	// SessionHandle (application plain end)
	std::uint64_t id() const override { return id_; }
	void send(std::span<const std::byte> bytes) override { send_up(bytes); }
	std::size_t queued() const override;
	void shutdown() override { plain_read_ended(0); }
	void reset(std::string_view reason) override;

	// StreamHandler (the streams)
	void stream_data(Stream &st, std::span<const std::byte> bytes) override;
	void stream_end(Stream &st, int err) override;
	void stream_conn_event(Stream &st) override;

	Pulled stream_readable(Stream &st) override;

	// StreamReader + ConnOwner (the plain socket)
	void on_data(std::span<const std::byte> bytes) override { send_up(bytes); }
	bool pulls() const override { return splice_; }
	Pulled on_readable() override { return plain_pull(); }
	void on_end(int err) override { plain_read_ended(err); }
	void conn_connected(Conn &) override;
	void conn_sent(Conn &) override;
	void conn_failed(Conn &, int err) override;
	void conn_op_done(Conn &) override { maybe_free(); }

	// The agent's memory budget has room again.
	void memory_available() override;

private:
	// The zero-copy path (session_pull.cpp).
	Pulled plain_pull();
	ssize_t read_plain(std::byte *into, std::size_t n);
	ssize_t reset_if_closed(ssize_t res) const;
	unsigned pick_stream(unsigned open);
	void send_copied(unsigned pick, std::span<const std::byte> bytes);
	bool pull_frame(Stream &st, Pulled &r);
	std::string head_error(const Stream &st, const wire::Header &h) const;
	bool splice_data(Stream &st, const wire::Header &h, Pulled &r);
	void pull_failed(Stream &st, ssize_t res, bool inside_frame);
	void unpark_due();
	void data_done(Stream &st, std::uint64_t seq);
	bool take_pipe(Pipe &pipe, std::size_t capacity);
	void on_pipe_retry();
	Stream *due_stream(const Stream *besides) const;
	bool sendable(unsigned i) const;
	std::string data_seq_error(const Stream &st, std::uint64_t seq) const;
	bool fits_reorder(const wire::Header &h) const;

	std::unique_ptr<Stream> open_stream(unsigned index, bool rejoin, std::string *err);
	void note_data(Stream &st, std::uint64_t seq);
	// st is one of this session's streams (not lost or replaced meanwhile).
	bool attached(const Stream &st) const
	{
		return st.index < count_ && streams_[st.index].get() == &st;
	}
	// Everything sent is acknowledged and everything received delivered:
	// a stream that ends now loses nothing.
	bool both_ways_done() const { return tx_.all_acked() && rx_.done(); }
	// Past both ways done: the peer has shut st and our queue on it is out.
	static bool stream_over(const Stream &st) { return st.eof && !st.conn.queued(); }
	void send_up(std::span<const std::byte> bytes);
	void send_frame(Stream &st, wire::Type type, std::uint64_t seq,
			std::span<const std::byte> payload);
	void plain_read_ended(int err);
	std::size_t consume(Stream &st, std::span<const std::byte> buf);
	std::size_t consume_frames(Stream &st, std::span<const std::byte> buf);
	bool handle_frame(Stream &st, const wire::Header &h, std::span<const std::byte> payload);
	void deliver(std::span<const std::byte> bytes);
	void drain_reorder();
	void pump();
	void update_ingress_pause();
	void update_plain_pause();
	void check_done();
	void finish();
	void close_plain(bool reset, const std::string &reason);
	void check_stream_eof(Stream &st);
	void apply_pause(Stream &st);
	void maybe_free();
	std::string tag() const;
	// Bytes moved one way or the other: the idle timeout starts again.
	void progress() { last_progress_ = agent_.now(); }
	void arm_idle();
	void on_idle();
	void on_streams_late();
	bool start_short();
	bool take_hello_ack(Stream &st, std::span<const std::byte> payload);
	void watch_client();

	// Acknowledgements and losing streams (session_failover.cpp).
	void delivered(std::size_t bytes);
	void send_ack(std::uint8_t flags, bool every_stream);
	void on_ack_timer();
	bool take_ack(Stream &st, const wire::Header &h);
	void keep_sent(unsigned stream, std::uint64_t seq, std::span<const std::byte> copy);
	void lose_stream(Stream &st, const std::string &why);
	void lose_before_start(Stream &st, const std::string &why);
	void retire_stream(std::unique_ptr<Stream> st);
	void flush_resends();
	void frame_waited_for(std::uint64_t seq);
	void lose_waited_for(const Retention::Frame &f);
	bool resend(Retention::Frame &f, Stream &st);
	// The open stream with the least backlog (bytes queued here; with
	// kernel_too, also those unacknowledged in its socket), other than
	// besides; ties round robin. Null if none.
	Stream *least_queued(bool kernel_too = false, const Stream *besides = nullptr);
	unsigned holding_up() const;
	std::size_t frame_size();
	void watch_rx_stuck();
	void on_rx_check();
	bool plain_holds_next() const;
	void watch_unanswered();
	void on_tx_check();
	void spill_parked();
	void drop_stalled_owner();
	void schedule_rejoin(unsigned index);
	void start_rejoin(unsigned index);
	void rejoin_failed(Stream &st, const std::string &why);
	void install_stream(std::unique_ptr<Stream> st);
	void on_failover_deadline();
	bool is_rejoining(const Stream &st) const;
	void shut_streams();
	void on_ends_late();
	void stop_timers();
	void drop_rejoins();

	Agent &agent_;
	const SessionConfig &cfg_;
	enum class Side {
		stripe, // opens the streams (and their replacements)
		join,   // accepts them
	} side_ = Side::join;
	Address peer_; // stripe: the join side
	SessionHost &host_;
	ProxyStats &stats_;
	std::uint64_t id_;
	unsigned count_;
	Agent::Clock::time_point created_;
	// By index; null where a stream was lost and no replacement has come.
	std::vector<std::unique_ptr<Stream>> streams_;
	unsigned attached_ = 0;
	unsigned live_ = 0;  // open streams in streams_
	unsigned acked_ = 0; // stripe: streams whose HELLO-ACK came

	// The plain end: a socket (conn_) or an application (app_).
	std::unique_ptr<Conn> plain_;
	bool plain_watching_ = false;
	bool plain_paused_ = false;
	std::unique_ptr<SessionApp> app_;
	std::string plain_name_;
	// Zero-copy: the plain socket's bytes are spliced, not copied; its
	// streams are read a frame at a time (pull mode).
	bool splice_ = false;
	bool plain_bulk_ = false; // plain_pull's last turn moved kBulkTurn or more

	// plain -> streams: seqs, FIN, retention, resends (Sender), and the
	// stream each frame goes on (sched_, least_queued())
	Sender tx_;
	Scheduler sched_;
	bool streams_shut_ = false; // both ways done: write sides shut
	// streams -> plain: reorder, FIN, ACKs, the stuck watch (Receiver)
	Receiver rx_;
	bool ingress_paused_ = false;
	// Zero-copy: bytes of DATA rx_.next() spliced out so far, and the
	// stream splicing it (null if it was lost: a copy skips that much).
	std::size_t rx_partial_ = 0;
	const Stream *rx_owner_ = nullptr;
	// Stuck (see on_rx_check): frames ahead of the next one are read into
	// the reorder buffer, within its budget, instead of parking their
	// streams, until the next one arrives.
	bool spilling_ = false;
	unsigned ack_next_stream_ = 0; // the stream the next ACK goes on
	std::size_t frame_size_ = 0; // frame_size()'s last answer, and when
	Agent::Clock::time_point frame_sized_at_{};
	Timer ack_timer_{[this] { on_ack_timer(); }};
	Timer rx_check_timer_{[this] { on_rx_check(); }};
	Timer tx_check_timer_{[this] { on_tx_check(); }};

	// Stripe: replacements under way, by index.
	struct Rejoin {
		explicit Rejoin(Timer::Callback fn) : timer(std::move(fn)) {}
		std::unique_ptr<Stream> stream; // connecting / in its handshake
		unsigned tries = 0;
		Timer timer; // the next try; while one is under way, its deadline
	};
	std::vector<std::unique_ptr<Rejoin>> rejoins_;
	Timer failover_timer_{[this] { on_failover_deadline(); }};
	// Over both ways, the streams shut: the peer's ends (EOF) must come
	// within --linger-timeout.
	Timer ends_timer_{[this] { on_ends_late(); }};

	// What the session is doing; it only moves forward.
	enum class Phase {
		setup,   // streams arriving (join) or connecting (stripe)
		running, // bytes may flow (stripe: once the handshakes are done)
		closing, // ended (finish or abort): sockets closing
		freed,   // closed and idle: handed to the host to be freed
	} phase_ = Phase::setup;
	bool pumping_ = false;
	bool consuming_ = false; // inside consume(): pump() waits for the caller

	Agent::Clock::time_point last_progress_;
	Timer idle_timer_{[this] { on_idle(); }};
	// Out of descriptors for a pipe: readers paused until the retry.
	static constexpr std::chrono::milliseconds kPipeRetry{100};
	bool pipe_wait_ = false;
	Timer pipe_retry_{[this] { on_pipe_retry(); }};
	Timer handshake_timer_{[this] { on_streams_late(); }};
};

template <typename Map>
void abort_all(Map &sessions, const std::string &reason)
{
	std::vector<Session *> live;
	for (auto &entry : sessions)
		live.push_back(entry.first);
	for (Session *p : live)
		if (sessions.count(p))
			p->abort(wire::ErrorCode::internal, reason);
}

} // namespace agent
