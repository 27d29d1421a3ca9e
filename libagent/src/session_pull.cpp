// SPDX-License-Identifier: MIT
// A session's zero-copy path. The plain socket's bytes are spliced into a
// pipe, a frame header is sent, and the pipe is spliced into the stream the
// scheduler picks (a small message, read into memory first, goes copied).
// Streams are read a frame at a time: the header with a 16-byte recv, then
// the DATA payload spliced into a pipe and on into the plain socket (a
// small one copied). Frames are not reordered in memory: a stream whose next
// DATA frame is not the next in sequence is simply not read (parked) until
// its turn comes, and its bytes wait in its socket's receive buffer. New
// frames go out in order on each stream, so the frame that is due heads
// some stream; a frame sent again after a loss may queue behind later ones,
// and when nothing moves for a while the parked frames are read into the
// reorder buffer (session_failover.cpp, spill_parked) so the streams go on.
// A frame is spliced in pieces: if its stream is lost in the middle, its
// copy from the sender skips what was delivered (rx_partial_).
#include "session.hpp"

#include "agent/log.hpp"

#include <cerrno>
#include <cstring>

namespace agent {
namespace {

// Bytes one turn of a reader moves before letting other sockets go first.
constexpr std::size_t kTurnBudget = 1 << 20;
// What a turn on the plain socket reads into memory first (plain_pull), and
// the largest DATA a stream's reader takes into memory, not spliced.
constexpr std::size_t kFirstRead = kSmallMessage;
constexpr std::size_t kSmallFrame = kSmallMessage;
// A turn on the plain socket that moves this much makes the next one skip
// the read into memory.
constexpr std::size_t kBulkTurn = 64 * 1024;


} // namespace

// ---- plain socket -> streams ------------------------------------------------

StreamReader::Pulled Session::plain_pull()
{
	Pulled r;
	while (!closing() && !tx_.ended()) {
		if (r.bytes >= kTurnBudget) {
			r.drained = false;
			break;
		}
		unsigned open = 0;
		for (unsigned i = 0; i < count_; i++)
			open += sendable(i);
		if (open == 0 || tx_.full()) {
			// Every stream still holds a frame (or is connecting), or
			// the retention is full until the peer acknowledges more:
			// read again once there is room (update_plain_pause).
			update_plain_pause();
			break;
		}
		// After a turn that moved little, a turn starts with a read
		// into memory. Most of what a request/response peer sends
		// fits: it goes out copied, with its header, in one send the
		// ring issues with its next wait (one system call where
		// splicing takes five). A full read means more is waiting: its
		// bytes lead a spliced frame. Bulk turns skip it (a copy and
		// two system calls more per turn).
		std::byte first[kFirstRead];
		const std::size_t size = frame_size();
		ssize_t got = 0;
		if (r.bytes == 0 && !plain_bulk_) {
			std::size_t want = std::min(sizeof first, size);
			got = read_plain(first, want);
			if (got <= 0)
				break;
			if (got < static_cast<ssize_t>(want)) {
				r.bytes += got;
				send_copied(pick_stream(open), std::span(first).first(got));
				continue;
			}
		}
		Pipe pipe;
		if (!take_pipe(pipe, cfg_.chunk)) {
			if (got > 0) // it is read: it goes copied
				send_copied(pick_stream(open), std::span(first).first(got));
			break;
		}
		ssize_t n = got;
		if (got > 0 && pipe.fill_copy(first, got) != got) {
			Pipe::release(std::move(pipe));
			abort(wire::ErrorCode::internal, "cannot copy a read into a pipe");
			break;
		}
		ssize_t more = static_cast<std::size_t>(got) < size
				       ? pipe.fill_from(plain_->fd(), size - got)
				       : -EAGAIN; // a whole frame read already
		more = reset_if_closed(more);
		if (more > 0)
			n += more;
		if (n <= 0) {
			Pipe::release(std::move(pipe));
			if (more != -EAGAIN)
				plain_read_ended(static_cast<int>(more));
			break;
		}
		r.bytes += n;
		unsigned pick = pick_stream(open);
		stats_.bytes_in += n;
		progress();
		std::byte hdr[wire::kHeaderSize];
		wire::Header h;
		h.type = wire::Type::data;
		h.length = static_cast<std::uint32_t>(n);
		h.seq = tx_.take_seq();
		wire::encode_header(h, hdr);
		Conn &out = streams_[pick]->conn;
		if (tx_.retention().keep_tee(h.seq, pick, agent_.now(), pipe)) {
			watch_unanswered();
			out.send_direct(hdr, std::move(pipe));
		} else {
			// No pipe for the duplicate (descriptors, pipe pages):
			// this frame goes copied, and is kept as bytes.
			std::vector<std::byte> bytes(n);
			if (pipe.read_into(bytes.data(), bytes.size()) != n) {
				abort(wire::ErrorCode::internal, "cannot read back a spliced chunk");
				break;
			}
			Pipe::release(std::move(pipe));
			out.send(hdr, bytes);
			keep_sent(pick, h.seq, bytes);
		}
		stats_.frames_sent++;
		if (more <= 0 && more != -EAGAIN) {
			// The end of the stream (or an error) behind the bytes
			// just framed.
			plain_read_ended(static_cast<int>(more));
			break;
		}
	}
	plain_bulk_ = r.bytes >= kBulkTurn;
	return r;
}

// Reads up to n of the plain socket's bytes into memory: the bytes read, or
// 0 when nothing is there now or the reading has ended (plain_read_ended()).
ssize_t Session::read_plain(std::byte *into, std::size_t n)
{
	ssize_t got;
	do
		got = ::recv(plain_->fd(), into, n, MSG_DONTWAIT);
	while (got < 0 && errno == EINTR);
	if (got > 0)
		return got;
	int err = static_cast<int>(reset_if_closed(got < 0 ? -errno : 0));
	if (err != -EAGAIN)
		plain_read_ended(err);
	return 0;
}

// A read of the plain socket that returned res (bytes or -errno): an end
// of stream is -ECONNRESET if the peer reset it (with our side still open,
// only a reset leaves the socket CLOSE at end of stream).
ssize_t Session::reset_if_closed(ssize_t res) const
{
	if (res == 0 && !plain_->write_shut() && was_reset(plain_->fd()))
		return -ECONNRESET;
	return res;
}

// The stream the next DATA frame goes on, among the open sendable ones.
unsigned Session::pick_stream(unsigned open)
{
	// Asked only with bytes in hand and a choice to make (a turn ends
	// with a read that finds nothing), and only until a stream with
	// nothing unsent turns up: one ioctl per small message.
	return static_cast<unsigned>(sched_.pick(count_, [&](std::size_t i) -> std::size_t {
		if (!sendable(i))
			return SIZE_MAX;
		return open > 1 ? unsent_bytes(streams_[i]->conn.fd()) : 0;
	}));
}

// DATA of bytes, the plain end's next, on stream pick: copied, and kept so.
void Session::send_copied(unsigned pick, std::span<const std::byte> bytes)
{
	stats_.bytes_in += bytes.size();
	progress();
	std::uint64_t seq = tx_.take_seq();
	send_frame(*streams_[pick], wire::Type::data, seq, bytes);
	streams_[pick]->conn.flush();
	keep_sent(pick, seq, bytes);
}

// ---- streams -> plain socket ------------------------------------------------

StreamReader::Pulled Session::stream_readable(Stream &st)
{
	Pulled r;
	// Follows the sequence: when cur stops and the next frame heads
	// another stream (unparked by data_done()), that one is read now, not
	// on its event.
	Stream *cur = &st;
	while (phase_ == Phase::running && (!ingress_paused_ || !cur->open()) &&
	       (attached(*cur) || is_rejoining(*cur))) {
		if (r.bytes >= kTurnBudget) {
			r.drained = cur != &st; // else st has more to read
			break;
		}
		if (!cur->eof && !cur->parked && pull_frame(*cur, r))
			continue;
		Stream *due = splice_ ? due_stream(cur) : nullptr;
		if (!due)
			break;
		apply_pause(*cur);
		cur = due;
	}
	if (!closing()) {
		apply_pause(*cur);
		apply_pause(st);
	}
	return r;
}

// Reads the stream's next frame, or as much of it as is there. True when
// it may be called again at once.
bool Session::pull_frame(Stream &st, Pulled &r)
{
	FrameReader &in = st.reader;
	if (in.state() == FrameReader::State::header) {
		auto s = wire::Status::ok;
		bool inside = in.inside_frame();
		ssize_t n = in.read_header(&s);
		if (n <= 0) {
			pull_failed(st, n, inside);
			return false;
		}
		r.bytes += n;
		if (s != wire::Status::ok) {
			abort(wire::ErrorCode::protocol,
			      fmt::format("stream {} from {}: bad frame: {}", st.index, st.peer,
					  wire::describe(s)));
			return false;
		}
		if (!in.head())
			return true; // the rest of the header is still to come
		if (std::string bad = head_error(st, *in.head()); !bad.empty()) {
			abort(wire::ErrorCode::protocol,
			      fmt::format("stream {} from {}: {}", st.index, st.peer, bad));
			return false;
		}
	}
	const wire::Header h = *in.head();
	if (h.type == wire::Type::data && splice_ && h.seq > rx_.next() &&
	    !(spilling_ && fits_reorder(h))) {
		st.parked = true; // data_done() unparks it in its turn
		watch_rx_stuck();
		return false;
	}
	// A small frame is cheaper read into memory and sent on copied (with
	// the ring's next wait) than spliced through a pipe: a system call
	// and a pipe less. None of it is ever spliced, so it has no part
	// delivered by a lost stream to skip (rx_partial_).
	if (h.type == wire::Type::data && splice_ && h.seq == rx_.next() &&
	    h.length > kSmallFrame)
		return splice_data(st, h, r);
	// Control frames, small DATA, and DATA for an application: into memory.
	std::size_t before = in.payload_left();
	ssize_t n = in.read_payload();
	r.bytes += before - in.payload_left();
	if (in.payload_left() > 0) {
		pull_failed(st, n, true);
		return false;
	}
	if (h.type == wire::Type::data && !fits_reorder(h)) {
		// handle_frame() would refuse it for now: keep it and stop.
		st.blocked = true;
		if (agent_.memory().over())
			agent_.memory().wait(*this);
		return false;
	}
	std::vector<std::byte> payload = in.take_payload();
	const std::uint64_t next = rx_.next();
	bool more = handle_frame(st, h, payload);
	if (more && h.type == wire::Type::data)
		drain_reorder();
	if (splice_ && rx_.next() != next)
		unpark_due(); // as data_done() after a spliced frame
	return more && !closing() && (attached(st) || is_rejoining(st));
}

// What is wrong with frame h heading st (empty if nothing).
std::string Session::head_error(const Stream &st, const wire::Header &h) const
{
	if (!st.open() && h.type != wire::Type::hello_ack && h.type != wire::Type::error)
		return "a frame before the HELLO-ACK";
	if (h.type != wire::Type::data)
		return {};
	// Past the end, or too far ahead. (A copy of a frame delivered or at
	// another stream's head is no error: it is dropped in its turn.)
	std::string bad = data_seq_error(st, h.seq);
	if (bad.empty() && h.seq > rx_.next() && h.seq - rx_.next() >= rx_.reorder().window())
		bad = fmt::format("DATA seq {} outside the window (next {})", h.seq, rx_.next());
	return bad;
}

// DATA h, the next in sequence, heads st: its payload is spliced on into the
// plain socket, as far as it goes now.
bool Session::splice_data(Stream &st, const wire::Header &h, Pulled &r)
{
	FrameReader &in = st.reader;
	if (rx_owner_ && rx_owner_ != &st) {
		st.parked = true; // a copy: the other stream is delivering it
		watch_rx_stuck(); // ...unless it has stalled
		return false;
	}
	if (!rx_owner_) {
		// A lost stream delivered the start of this frame: its copy
		// skips that much.
		if (rx_partial_ >= h.length) {
			abort(wire::ErrorCode::protocol,
			      fmt::format("stream {} from {}: DATA seq {} is shorter than what was "
					  "delivered of it", st.index, st.peer, h.seq));
			return false;
		}
		rx_owner_ = &st;
		st.discard = rx_partial_;
	}
	while (st.discard > 0) {
		ssize_t n = in.skip_payload(st.discard);
		if (n <= 0) {
			pull_failed(st, n, true);
			return false;
		}
		r.bytes += n;
		st.discard -= n;
	}
	if (in.payload_left() > 0) {
		if (!plain_->can_send_direct()) {
			update_ingress_pause(); // resumes on conn_sent
			return false;
		}
		Pipe pipe;
		if (!take_pipe(pipe, wire::kMaxPayload))
			return false;
		ssize_t n = in.splice_payload(pipe, in.payload_left());
		if (n <= 0) {
			Pipe::release(std::move(pipe));
			pull_failed(st, n, true);
			return false;
		}
		r.bytes += n;
		rx_partial_ += n;
		stats_.bytes_out += n;
		progress();
		plain_->send_direct({}, std::move(pipe));
		if (in.payload_left() > 0)
			return true;
	}
	rx_owner_ = nullptr;
	rx_partial_ = 0;
	data_done(st, h.seq);
	delivered(h.length);
	update_ingress_pause();
	return attached(st);
}

// A read returned res <= 0: wait (EAGAIN), or the stream ended.
void Session::pull_failed(Stream &st, ssize_t res, bool inside_frame)
{
	if (res == -EAGAIN || closing())
		return;
	if (res == 0 && inside_frame && attached(st) && phase_ == Phase::running) {
		st.eof = true;
		lose_stream(st, "closed inside a frame");
		return;
	}
	if (res == 0 && inside_frame && !is_rejoining(st)) {
		st.eof = true;
		abort(wire::ErrorCode::stream_lost,
		      fmt::format("stream {} from {} closed inside a frame", st.index, st.peer));
		return;
	}
	stream_end(st, static_cast<int>(res));
}

// DATA seq has gone to the plain socket: the next frame may be parked.
void Session::data_done(Stream &st, std::uint64_t seq)
{
	st.reader.frame_done();
	rx_.reorder().advance();
	spilling_ = false;
	note_data(st, seq);
	unpark_due();
	drain_reorder(); // nothing is held; it notices the FIN
}

// The next frame's stream goes on, and so does one whose head is a copy of
// a frame delivered (it is dropped).
void Session::unpark_due()
{
	for (auto &sp : streams_) {
		if (!sp)
			continue;
		Stream &o = *sp;
		if (o.parked && o.reader.head() && o.reader.head()->seq <= rx_.next()) {
			o.parked = false;
			apply_pause(o);
		}
	}
}

// A pipe for bytes on their way. Out of descriptors (other sessions, or a
// burst of accepts, hold them for now) the session waits: its readers pause
// and try again in a moment (pipe_retry_); anything else ends the session.
bool Session::take_pipe(Pipe &pipe, std::size_t capacity)
{
	pipe = Pipe::acquire(capacity);
	if (pipe.valid())
		return true;
	int e = errno;
	if (e != EMFILE && e != ENFILE) {
		abort(wire::ErrorCode::internal, fmt::format("cannot create a pipe: {}", strerror(e)));
		return false;
	}
	thread_local LogEverySecond waiting;
	if (std::uint64_t n; waiting.due(agent_.now(), &n))
		log(LogLevel::warn, "{}: no descriptor for a pipe ({}): waiting {} ms ({}x in the last "
				    "second)", tag(), strerror(e), kPipeRetry.count(), n);
	if (!pipe_wait_) {
		pipe_wait_ = true;
		pipe_retry_.arm(agent_.timers(), kPipeRetry);
		update_plain_pause();
		for (auto &sp : streams_)
			if (sp)
				apply_pause(*sp);
	}
	return false;
}

void Session::on_pipe_retry()
{
	if (closing() || !pipe_wait_)
		return;
	pipe_wait_ = false;
	update_plain_pause();
	for (auto &sp : streams_)
		if (sp)
			apply_pause(*sp);
}

// Stream i may take the next frame now: open, its last frame gone to the
// kernel, and not the one the peer's ACKs wait on (holding_up()).
bool Session::sendable(unsigned i) const
{
	return streams_[i] && streams_[i]->open() && streams_[i]->conn.can_send_direct() &&
	       i != holding_up();
}

// The stream, other than besides, whose head frame is the next DATA in
// sequence (or a copy of one delivered) and which may be read now.
Stream *Session::due_stream(const Stream *besides) const
{
	for (auto &sp : streams_) {
		if (!sp)
			continue;
		Stream &o = *sp;
		const auto &head = o.reader.head();
		if (&o != besides && head && head->type == wire::Type::data &&
		    head->seq <= rx_.next() && !o.parked && !o.eof &&
		    (!rx_owner_ || rx_owner_ == &o))
			return &o;
	}
	return nullptr;
}

} // namespace agent
