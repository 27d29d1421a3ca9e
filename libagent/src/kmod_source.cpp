// SPDX-License-Identifier: MIT
// The kmod event source: agentfilt.ko watches each socket (ioctls on
// /dev/agentfilt) and queues one event per data arrival, coalesced per
// socket. The events are io_uring completions of reads on the device fd: a
// multishot read with provided buffers where the kernel has it (6.7+), else
// a single read re-armed after each completion. On an event the source
// recv()s the socket with MSG_DONTWAIT until EAGAIN; it never polls a
// socket before reading it.
//
// The filter passes data arrival only, and a peer's reset raises no data
// arrival. So each watched socket also has a fault poll (prep_fault_poll:
// multishot, empty event mask, completes only on reset, error or hang-up,
// never on data). A reset reaches the reader at once, paused or not; a
// hang-up is treated as an event (recv until EAGAIN, error or EOF).
#include "sources.hpp"

#include "agent/log.hpp"
#include "agent/net.hpp"

#include <uapi/agentfilt.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace agent {
namespace {

// liburing 2.3 predates IORING_OP_READ_MULTISHOT (kernel 6.7).
constexpr unsigned kOpReadMultishot = 49;
// Buffer group of the multishot read's buffers (the agent's is 0).
constexpr std::uint16_t kBufGroup = 0x4146;
constexpr unsigned kBufCount = 16;
constexpr std::size_t kBufSize = 4096; // 256 records
constexpr std::size_t kRecvSize = 64 * 1024;
// recv()s per event before the rest of the socket waits for a NOP turn.
constexpr int kRecvBurst = 64;

class KmodSource;

// Every operation in flight is its own heap object: the source may go away
// before the kernel posts the last completion, and then the object frees
// itself on that completion.
struct Op : Completion {
	KmodSource *src;
	explicit Op(KmodSource *s) : src(s) {}
	virtual ~Op() = default;
};

// The read of events from /dev/agentfilt.
struct ReadOp final : Op {
	Ring &ring;
	bool multishot;
	io_uring_buf_ring *br = nullptr;
	std::byte *bufs = nullptr;
	std::vector<agentfilt_event> single; // the single read's buffer

	ReadOp(KmodSource *s, Ring &r, bool ms) : Op(s), ring(r), multishot(ms)
	{
		if (!multishot)
			single.resize(kBufSize / sizeof(agentfilt_event));
	}
	~ReadOp() override
	{
		if (br) {
			io_uring_unregister_buf_ring(ring.raw(), kBufGroup);
			munmap(br, ring_bytes());
			delete[] bufs;
		}
	}
	static std::size_t ring_bytes() { return kBufCount * sizeof(io_uring_buf); }

	// Registers the provided buffers of the multishot read.
	bool setup_buffers()
	{
		void *mem = mmap(nullptr, ring_bytes(), PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			return false;
		io_uring_buf_reg reg{};
		reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
		reg.ring_entries = kBufCount;
		reg.bgid = kBufGroup;
		if (io_uring_register_buf_ring(ring.raw(), &reg, 0) != 0) {
			munmap(mem, ring_bytes());
			return false;
		}
		br = static_cast<io_uring_buf_ring *>(mem);
		bufs = new std::byte[kBufCount * kBufSize];
		io_uring_buf_ring_init(br);
		for (unsigned i = 0; i < kBufCount; i++)
			io_uring_buf_ring_add(br, bufs + i * kBufSize, kBufSize, i,
					      io_uring_buf_ring_mask(kBufCount), i);
		io_uring_buf_ring_advance(br, kBufCount);
		return true;
	}

	void recycle(unsigned id)
	{
		io_uring_buf_ring_add(br, bufs + id * kBufSize, kBufSize, id,
				      io_uring_buf_ring_mask(kBufCount), 0);
		io_uring_buf_ring_advance(br, 1);
	}

	void on_complete(int res, unsigned flags) override;
};

// The error/hang-up poll of one watched socket.
struct PollOp final : Op {
	std::uint64_t id;
	PollOp(KmodSource *s, std::uint64_t i) : Op(s), id(i) {}
	void on_complete(int res, unsigned flags) override;
};

// A NOP that brings deferred recvs (after watch, resume, a long burst) back
// to the top of the ring's loop, outside any reader callback.
struct KickOp final : Op {
	using Op::Op;
	void on_complete(int res, unsigned flags) override;
};

struct Watch {
	int fd;
	std::uint64_t id;
	StreamReader *reader;
	bool paused = false;
	bool ended = false;  // on_end delivered
	PollOp *poll = nullptr;
	EventCounters local; // completions and bytes of this socket
};

class KmodSource final : public EventSource {
public:
	KmodSource(Ring &ring, int dev) : ring_(ring), dev_(dev) {}

	~KmodSource() override
	{
		for (Op *op : ops_) {
			op->src = nullptr;
			io_uring_prep_cancel(ring_.sqe(nullptr), op, 0);
		}
		ring_.submit();
		// The ring keeps the device file open until the read is
		// cancelled; closing it then detaches every watch.
		close(dev_);
	}

	bool start(std::string *err)
	{
		bool ms = false;
		if (io_uring_probe *p = io_uring_get_probe_ring(ring_.raw())) {
			ms = io_uring_opcode_supported(p, kOpReadMultishot);
			io_uring_free_probe(p);
		}
		auto *op = new ReadOp(this, ring_, ms);
		if (ms && !op->setup_buffers()) {
			delete op;
			op = new ReadOp(this, ring_, false);
		}
		(void)err;
		read_ = op;
		ops_.insert(op);
		arm_read();
		log(LogLevel::debug, "kmod events: {} reads of /dev/agentfilt",
		    op->multishot ? "multishot" : "single");
		return true;
	}

	std::string_view name() const override { return "kmod"; }

	void watch(int fd, StreamReader &reader) override
	{
		if (auto it = by_fd_.find(fd); it != by_fd_.end())
			unwatch(fd);
		auto w = std::make_unique<Watch>();
		w->fd = fd;
		w->id = next_id_++;
		w->reader = &reader;
		agentfilt_watch req{};
		req.fd = fd;
		req.token = w->id;
		if (ioctl(dev_, AGENTFILT_IOC_WATCH, &req) != 0) {
			int e = errno;
			log(LogLevel::warn, "agentfilt cannot watch fd {}: {}", fd, strerror(e));
			// Nothing will ever arrive: end the stream on the next turn.
			w->ended = true;
			failed_.push_back({w->id, -e});
		} else {
			arm_poll(w.get());
			// Bytes queued before the watch raise no event.
			defer(w->id);
		}
		by_id_[w->id] = w.get();
		by_fd_[fd] = std::move(w);
		if (!failed_.empty())
			kick();
	}

	void pause(int fd) override
	{
		if (Watch *w = find_fd(fd))
			w->paused = true;
	}

	void resume(int fd) override
	{
		Watch *w = find_fd(fd);
		if (!w || !w->paused)
			return;
		w->paused = false;
		// Events may have come and gone while paused: try a recv.
		defer(w->id);
	}

	void unwatch(int fd) override
	{
		auto it = by_fd_.find(fd);
		if (it == by_fd_.end())
			return;
		Watch *w = it->second.get();
		agentfilt_unwatch req{};
		req.token = w->id;
		ioctl(dev_, AGENTFILT_IOC_UNWATCH, &req); // ENOENT if never watched
		if (w->poll) {
			w->poll->id = 0;
			io_uring_prep_poll_remove(ring_.sqe(nullptr),
						  reinterpret_cast<std::uintptr_t>(w->poll));
		}
		retired_.completions += w->local.completions;
		retired_.bytes += w->local.bytes;
		by_id_.erase(w->id);
		by_fd_.erase(it);
	}

	EventCounters counters() const override
	{
		agentfilt_stats st{};
		st.flags = AGENTFILT_STATS_FILE;
		EventCounters c;
		if (ioctl(dev_, AGENTFILT_IOC_STATS, &st) == 0)
			c = from_filter(st.counters);
		c.completions = completions_;
		c.bytes = retired_.bytes;
		for (auto &[fd, w] : by_fd_)
			c.bytes += w->local.bytes;
		c.overflows = overflows_;
		return c;
	}

	EventCounters counters(int fd) const override
	{
		auto it = by_fd_.find(fd);
		if (it == by_fd_.end())
			return {};
		const Watch &w = *it->second;
		agentfilt_stats st{};
		st.token = w.id;
		EventCounters c;
		if (ioctl(dev_, AGENTFILT_IOC_STATS, &st) == 0)
			c = from_filter(st.counters);
		c.completions = w.local.completions;
		c.bytes = w.local.bytes;
		return c;
	}

	// ---- completions ----

	void on_events(ReadOp *op, int res, unsigned flags)
	{
		completions_++;
		bool more = flags & IORING_CQE_F_MORE;
		std::vector<agentfilt_event> evs;
		if (res > 0) {
			const std::byte *p;
			if (op->multishot) {
				unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
				p = op->bufs + bid * kBufSize;
				evs.resize(res / sizeof(agentfilt_event));
				std::memcpy(evs.data(), p, evs.size() * sizeof(agentfilt_event));
				op->recycle(bid);
			} else {
				evs.assign(op->single.begin(),
					   op->single.begin() + res / sizeof(agentfilt_event));
			}
			read_errors_ = 0;
		} else if (res < 0 && res != -ENOBUFS && res != -EINTR && res != -EAGAIN) {
			if (++read_errors_ > 8) {
				// The read has ended (an error never carries F_MORE).
				log(LogLevel::error, "reading /dev/agentfilt: {}; kmod events stop",
				    strerror(-res));
				ops_.erase(op);
				delete op;
				read_ = nullptr;
				return;
			}
		}
		if (!more)
			arm_read();
		for (const agentfilt_event &ev : evs) {
			if (ev.flags & AGENTFILT_EV_OVERFLOW)
				overflows_++;
			deliver(ev.token);
		}
	}

	void on_poll(PollOp *op, int res, unsigned flags)
	{
		std::uint64_t id = op->id;
		bool more = flags & IORING_CQE_F_MORE;
		if (!more) {
			ops_.erase(op);
			delete op;
		}
		completions_++;
		Watch *w = find_id(id);
		if (!w)
			return;
		if (!more)
			w->poll = nullptr;
		w->local.completions++;
		if (int err = socket_failure(w->fd, res); err < 0 && !w->ended) {
			w->ended = true;
			w->reader->on_end(err); // a reset: now, paused or not
		} else if (res > 0) {
			deliver(id); // a hang-up: recv reports it in order
		}
		if ((w = find_id(id)) && !w->poll && !w->ended && res != -ECANCELED)
			arm_poll(w);
	}

	void arm_poll(Watch *w)
	{
		w->poll = new PollOp(this, w->id);
		ops_.insert(w->poll);
		prep_fault_poll(ring_.sqe(w->poll), w->fd);
	}

	void on_kick(KickOp *op)
	{
		ops_.erase(op);
		delete op;
		kick_armed_ = false;
		std::vector<std::pair<std::uint64_t, int>> failed;
		failed.swap(failed_);
		for (auto [id, e] : failed)
			if (Watch *w = find_id(id))
				w->reader->on_end(e);
		std::vector<std::uint64_t> ids;
		ids.swap(deferred_);
		for (std::uint64_t id : ids)
			drain(id);
	}

	void forget(Op *op) { ops_.erase(op); }

private:

	void arm_read()
	{
		ReadOp *op = read_;
		if (!op)
			return;
		io_uring_sqe *sqe = ring_.sqe(op);
		if (op->multishot) {
			io_uring_prep_rw(kOpReadMultishot, sqe, dev_, nullptr, 0, 0);
			sqe->flags |= IOSQE_BUFFER_SELECT;
			sqe->buf_group = kBufGroup;
		} else {
			io_uring_prep_read(sqe, dev_, op->single.data(),
					   op->single.size() * sizeof(agentfilt_event), -1);
		}
	}

	void deliver(std::uint64_t id)
	{
		Watch *w = find_id(id);
		if (!w)
			return; // unwatched since the kernel queued it
		w->local.completions++;
		if (w->paused || w->ended)
			return; // resume() tries a recv anyway
		drain(id);
	}

	// recv()s until EAGAIN, EOF or error, looking the watch up again after
	// every callback: the reader may pause, unwatch or be destroyed.
	void drain(std::uint64_t id)
	{
		if (depth_ >= bufs_.size())
			bufs_.emplace_back(new std::byte[kRecvSize]);
		std::byte *buf = bufs_[depth_].get();
		depth_++;
		for (int i = 0;; i++) {
			Watch *w = find_id(id);
			if (!w || w->paused || w->ended)
				break;
			if (i == kRecvBurst) {
				defer(id); // let other sockets have a turn
				break;
			}
			if (w->reader->pulls()) {
				StreamReader::Pulled p = w->reader->on_readable();
				if ((w = find_id(id))) {
					w->local.bytes += p.bytes;
					if (!p.drained && !w->paused)
						defer(id);
				}
				break;
			}
			ssize_t n = recv_now(w->fd, buf, kRecvSize);
			if (n > 0) {
				w->local.bytes += n;
				w->reader->on_data({buf, static_cast<std::size_t>(n)});
				continue;
			}
			if (n == -EAGAIN)
				break;
			w->ended = true;
			w->reader->on_end(static_cast<int>(n));
			break;
		}
		depth_--;
	}

	void defer(std::uint64_t id)
	{
		deferred_.push_back(id);
		kick();
	}

	void kick()
	{
		if (kick_armed_)
			return;
		kick_armed_ = true;
		auto *op = new KickOp(this);
		ops_.insert(op);
		io_uring_prep_nop(ring_.sqe(op));
	}

	Watch *find_fd(int fd)
	{
		auto it = by_fd_.find(fd);
		return it == by_fd_.end() ? nullptr : it->second.get();
	}

	Watch *find_id(std::uint64_t id)
	{
		auto it = by_id_.find(id);
		return it == by_id_.end() ? nullptr : it->second;
	}

	Ring &ring_;
	int dev_;
	ReadOp *read_ = nullptr;
	std::unordered_set<Op *> ops_; // in flight, ours
	std::unordered_map<int, std::unique_ptr<Watch>> by_fd_;
	std::unordered_map<std::uint64_t, Watch *> by_id_;
	std::uint64_t next_id_ = 1;
	std::vector<std::uint64_t> deferred_;
	std::vector<std::pair<std::uint64_t, int>> failed_;
	bool kick_armed_ = false;
	std::vector<std::unique_ptr<std::byte[]>> bufs_; // one per drain depth
	std::size_t depth_ = 0;
	int read_errors_ = 0;
	std::uint64_t completions_ = 0;
	std::uint64_t overflows_ = 0;
	EventCounters retired_; // completions and bytes of past watches
};

void ReadOp::on_complete(int res, unsigned flags)
{
	if (!src) {
		if (!(flags & IORING_CQE_F_MORE))
			delete this;
		else if (multishot && res > 0)
			recycle(flags >> IORING_CQE_BUFFER_SHIFT);
		return;
	}
	src->on_events(this, res, flags);
}

void PollOp::on_complete(int res, unsigned flags)
{
	if (!src) {
		if (!(flags & IORING_CQE_F_MORE))
			delete this;
		return;
	}
	src->on_poll(this, res, flags);
}

void KickOp::on_complete(int, unsigned)
{
	if (!src) {
		delete this;
		return;
	}
	src->on_kick(this);
}

} // namespace

std::unique_ptr<EventSource> make_kmod_source(Ring &ring, std::string *err)
{
	int dev = open(AGENTFILT_DEVICE, O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		int e = errno;
		if (e == ENOENT)
			*err = "no " AGENTFILT_DEVICE " (load agentfilt.ko)";
		else if (e == EACCES || e == EPERM)
			*err = AGENTFILT_DEVICE ": permission denied (agentfilt.ko group= parameter)";
		else
			*err = std::string(AGENTFILT_DEVICE ": ") + strerror(e);
		return nullptr;
	}
	// The ABI version changes only incompatibly; additions are feature bits.
	constexpr std::uint64_t kNeeded = AGENTFILT_FEAT_EVENTS | AGENTFILT_FEAT_STATS_FILE;
	agentfilt_version v{};
	if (ioctl(dev, AGENTFILT_IOC_VERSION, &v) != 0 || v.abi != AGENTFILT_ABI_VERSION ||
	    v.event_size != sizeof(agentfilt_event) || (v.features & kNeeded) != kNeeded) {
		*err = "agentfilt.ko speaks another ABI version than this libagent (or lacks a feature it needs)";
		close(dev);
		return nullptr;
	}
	auto src = std::make_unique<KmodSource>(ring, dev);
	if (!src->start(err))
		return nullptr;
	return src;
}

} // namespace agent
