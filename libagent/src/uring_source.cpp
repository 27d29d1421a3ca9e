// SPDX-License-Identifier: MIT
// The uring event source: a recv per watched socket that selects its buffer
// from the shared provided-buffer ring. The kernel posts the completion only
// when data arrived, with the data already in a buffer, so the completion is
// the event and no poll ever precedes a read.
//
// The recv is re-armed after each completion rather than multishot: a
// multishot recv on a socket that keeps receiving cannot be stopped (the
// kernel retries it from task work, where a cancel misses it with -ENOENT;
// measured: 12 MB piled up behind a pause). Re-arming makes pause() exact
// (at most one buffer arrives after it) and costs one SQE per buffer,
// submitted in the same io_uring_enter as everything else.
//
// In pull mode (StreamReader::pulls()) the recv is a one-byte MSG_PEEK into
// the watch: its completion says data arrived without taking any, and the
// reader splices the bytes itself.
//
// A paused socket has no recv armed, so each watch also has a fault poll
// (prep_fault_poll): a reset reaches the reader at once, paused or not.
#include "sources.hpp"

#include <cerrno>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace agent {
namespace {

class UringSource;

// One watched socket. Lives until its recv has completed, which
// may be after unwatch() (then it is detached and its data dropped).
struct Watch final : Completion {
	UringSource *src;
	int fd;
	StreamReader *reader;
	bool armed = false;    // a recv is outstanding
	bool peeking = false;  // ... and it is a pull mode MSG_PEEK
	std::byte peek_byte{};
	bool paused = false;
	bool detached = false; // unwatched: nothing is delivered any more
	bool busy = false;     // inside on_complete
	bool kick_pending = false; // a NOP is on its way to deliver held bytes
	bool cancel_inflight = false; // unwatch()'s cancel has not completed
	bool ended = false;    // on_end delivered or pending
	bool fault_armed = false; // the fault poll is in flight
	int pending_end = 1;   // 1: none; else the on_end value held while paused
	std::vector<std::byte> held; // bytes that arrived while paused
	EventCounters counters;

	Watch(UringSource *s, int f, StreamReader *r) : src(s), fd(f), reader(r) {}
	void on_complete(int res, unsigned flags) override;
	void on_kick();
	void on_fault(int res, unsigned flags);
	void arm_fault();
	void fail(int err);
	void pull(int res);
	void queue_kick();

	struct Fault final : Completion {
		Watch *w;
		explicit Fault(Watch *watch) : w(watch) {}
		void on_complete(int res, unsigned flags) override { w->on_fault(res, flags); }
	} fault{this};

	// Completes the NOP that resume() queues so held bytes are delivered
	// from the ring, never from inside resume().
	struct Kick final : Completion {
		Watch *w;
		explicit Kick(Watch *watch) : w(watch) {}
		void on_complete(int, unsigned) override { w->on_kick(); }
	} kick{this};

	// unwatch() cancels the recv in flight; a cancel that races with its
	// completion misses (-ENOENT), and the completion ends it anyway.
	// The watch lives until both have come back.
	struct Cancel final : Completion {
		Watch *w;
		explicit Cancel(Watch *watch) : w(watch) {}
		void on_complete(int res, unsigned) override;
	} canceller{this};
};

class UringSource final : public EventSource {
public:
	UringSource(Ring &ring, BufferRing &buffers) : ring_(ring), buffers_(buffers) {}

	~UringSource() override
	{
		// The ring outlives nothing we own past this point; leftover
		// watches are freed with the source.
		for (auto &[fd, w] : watches_)
			delete w;
		for (Watch *w : graveyard_)
			delete w;
	}

	std::string_view name() const override { return "uring"; }

	void watch(int fd, StreamReader &reader) override
	{
		auto *w = new Watch(this, fd, &reader);
		watches_[fd] = w;
		arm(w);
		w->arm_fault();
	}

	void pause(int fd) override
	{
		Watch *w = find(fd);
		if (!w || w->paused)
			return;
		// The recv in flight completes into held; none follows it.
		w->paused = true;
	}

	void resume(int fd) override
	{
		Watch *w = find(fd);
		if (!w || !w->paused)
			return;
		w->paused = false;
		// A pull mode reader may have left bytes in the socket.
		if (!w->held.empty() || w->pending_end != 1 || w->reader->pulls()) {
			w->queue_kick();
			return;
		}
		if (!w->armed && !w->ended)
			arm(w);
	}

	void unwatch(int fd) override
	{
		auto it = watches_.find(fd);
		if (it == watches_.end())
			return;
		Watch *w = it->second;
		watches_.erase(it);
		w->detached = true;
		graveyard_.insert(w);
		cancel(w);
		if (w->fault_armed)
			io_uring_prep_poll_remove(ring_.sqe(nullptr),
						  reinterpret_cast<std::uintptr_t>(&w->fault));
		reap(w);
	}

	EventCounters counters() const override
	{
		EventCounters c = retired_;
		for (auto &[fd, w] : watches_)
			c += w->counters;
		for (Watch *w : graveyard_)
			c += w->counters;
		return c;
	}

	EventCounters counters(int fd) const override
	{
		auto it = watches_.find(fd);
		return it == watches_.end() ? EventCounters{} : it->second->counters;
	}

	void arm(Watch *w)
	{
		io_uring_sqe *sqe = ring_.sqe(w);
		w->peeking = w->reader->pulls();
		if (w->peeking) {
			io_uring_prep_recv(sqe, w->fd, &w->peek_byte, 1, MSG_PEEK);
		} else {
			io_uring_prep_recv(sqe, w->fd, nullptr, buffers_.buffer_size(), 0);
			sqe->flags |= IOSQE_BUFFER_SELECT;
			sqe->buf_group = buffers_.group();
		}
		w->armed = true;
	}

	Ring &ring() { return ring_; }

	void cancel(Watch *w)
	{
		if (!w->armed || w->cancel_inflight)
			return;
		w->cancel_inflight = true;
		io_uring_sqe *sqe = ring_.sqe(&w->canceller);
		io_uring_prep_cancel(sqe, w, 0);
	}

	// Frees a detached watch once nothing refers to it any more.
	void reap(Watch *w)
	{
		if (!w->detached || w->armed || w->busy || w->kick_pending || w->cancel_inflight ||
		    w->fault_armed)
			return;
		retired_ += w->counters;
		graveyard_.erase(w);
		delete w;
	}

	Watch *find(int fd)
	{
		auto it = watches_.find(fd);
		return it == watches_.end() ? nullptr : it->second;
	}

	BufferRing &buffers() { return buffers_; }

private:
	Ring &ring_;
	BufferRing &buffers_;
	std::unordered_map<int, Watch *> watches_;
	std::unordered_set<Watch *> graveyard_; // detached, awaiting their last CQE
	EventCounters retired_;
};

void Watch::queue_kick()
{
	if (!kick_pending) {
		kick_pending = true;
		io_uring_prep_nop(src->ring().sqe(&kick));
	}
}

// A pull mode turn: the reader reads for itself. res is what the peek
// returned (1 for a turn that no peek started).
void Watch::pull(int res)
{
	busy = true;
	counters.passed++;
	StreamReader::Pulled p = reader->on_readable();
	counters.bytes += p.bytes;
	busy = false;
	if (detached || paused || ended)
		return;
	if (!p.drained)
		queue_kick(); // after the other completions of this batch
	else if (res <= 0)
		ended = true; // the reader met the end or the error itself
	else if (!armed)
		src->arm(this);
}

void Watch::on_complete(int res, unsigned flags)
{
	counters.completions++;
	armed = false; // one recv, one completion
	if (peeking) {
		peeking = false;
		if (res > 0)
			counters.data_ready++;
		if (res < 0 && res != -ECANCELED && res != -ENOBUFS) {
			// The socket failed: the peek took its error (a read now
			// would see a plain end of stream), so it is told here,
			// paused or not.
			fail(res);
			return;
		}
		if (!detached && !paused && !kick_pending && !ended && res != -ECANCELED) {
			// Paused: resume() gives the reader a turn. Nothing was taken.
			pull(res == -ENOBUFS ? 1 : res);
		}
		if (detached)
			src->reap(this);
		return;
	}
	busy = true;

	if (res > 0) {
		auto bytes = src->buffers().data(cqe_buffer_id(flags), res);
		counters.data_ready++;
		counters.passed++;
		counters.bytes += res;
		if (detached || ended) {
			// Dropped: the owner is closing the socket, or it failed.
		} else if (paused || kick_pending) {
			// Behind bytes held earlier: order is kept.
			held.insert(held.end(), bytes.begin(), bytes.end());
		} else {
			reader->on_data(bytes);
		}
		src->buffers().recycle(cqe_buffer_id(flags));
	} else if (res == 0) {
		// End of stream: after what is held, in order.
		if (!detached && !ended) {
			ended = true;
			if (paused || kick_pending)
				pending_end = res;
			else
				reader->on_end(res);
		}
	} else if (res != -ECANCELED && res != -ENOBUFS) {
		busy = false;
		fail(res); // a socket error: now, paused or not
		return;
	}
	// -ECANCELED: unwatched. -ENOBUFS: the pool ran dry for a moment;
	// buffers return as soon as their bytes are consumed.
	busy = false;
	if (detached) {
		src->reap(this);
		return;
	}
	if (!armed && !paused && !ended)
		src->arm(this);
}

void Watch::arm_fault()
{
	prep_fault_poll(src->ring().sqe(&fault), fd);
	fault_armed = true;
}

// A reset or an error reaches the reader now, even while paused (what was
// held for it is dropped: the stream is broken anyway). Reaps a detached
// watch; re-arms what the watch still needs.
void Watch::fail(int err)
{
	if (!detached && !ended) {
		ended = true;
		held.clear();
		pending_end = 1;
		busy = true;
		reader->on_end(err);
		busy = false;
	}
	if (detached)
		src->reap(this);
}

// A hang-up is left to the reads, which report it in order.
void Watch::on_fault(int res, unsigned flags)
{
	counters.completions++;
	if (!(flags & IORING_CQE_F_MORE))
		fault_armed = false;
	if (detached) {
		src->reap(this);
		return;
	}
	if (int err = socket_failure(fd, res); err < 0) {
		fail(err);
		if (detached)
			return;
	}
	if (!fault_armed && !ended && res != -ECANCELED)
		arm_fault();
}

void Watch::Cancel::on_complete(int, unsigned)
{
	w->cancel_inflight = false;
	if (w->detached)
		w->src->reap(w);
}

void Watch::on_kick()
{
	kick_pending = false;
	if (detached || paused) {
		src->reap(this);
		return;
	}
	busy = true;
	if (!held.empty()) {
		std::vector<std::byte> bytes;
		bytes.swap(held);
		reader->on_data(bytes);
	}
	if (!detached && !paused && pending_end != 1) {
		int e = pending_end;
		pending_end = 1;
		reader->on_end(e);
	}
	busy = false;
	if (!detached && !paused && !ended && reader->pulls()) {
		pull(1);
	} else if (!detached && !armed && !paused && !ended) {
		src->arm(this);
	}
	if (detached)
		src->reap(this);
}

} // namespace

std::unique_ptr<EventSource> make_uring_source(Ring &ring, BufferRing &buffers)
{
	return std::make_unique<UringSource>(ring, buffers);
}

} // namespace agent
