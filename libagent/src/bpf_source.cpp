// SPDX-License-Identifier: MIT
// The bpf event source: agentfilt.bpf.c (embedded as a skeleton) counts the
// signaling events of the watched sockets and writes coalesced data-arrival
// records {token, bytes} into a BPF ring buffer. The ring buffer's fd is a
// multishot poll in the agent's io_uring; on its completion we drain the
// ring (then a full fence and a re-check, so a wakeup the producer skipped
// is not lost) and recv() every socket named until EAGAIN, without polling
// it first.
//
// Per watch:
//   - a slot in the mmapped "pending" array: 1 while a record is queued.
//     We clear it before reading, so data arriving after our last recv
//     posts a new record. The token is (generation << 32) | slot.
//   - a fault poll (prep_fault_poll: multishot, edge-triggered, errors and
//     hang-ups only): a reset is not a data arrival (the filter passes no
//     record for it), yet the reader must learn of it, paused or not. A
//     half-close completes it once, so an idle half-closed socket costs
//     nothing. See bpf/README.md.
//
// Overflow: if the ring was full the program sets a flag; after draining we
// see it and re-read every watched socket.
#include "bpf_source.hpp"
#include "sources.hpp"

#include "agent/net.hpp"

#include "../../bpf/agentfilt.h"
#include "agentfilt.skel.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace agent {
namespace {

constexpr std::size_t kBufSize = 64 * 1024; // one recv
constexpr int kBudget = 16;                 // recvs per socket per turn
constexpr int kMaxDepth = 8;                // nested deliveries (resume inside a callback)
constexpr int kMaxRounds = 32;              // drain rounds before yielding to the ring
constexpr std::uint64_t kSlotMask = 0xffffffffu;

class BpfSource;

// One io_uring operation of the source. Orphaned (src == null) when the
// source goes away while it is in flight; it frees itself on its last CQE.
struct Op final : Completion {
	enum Kind { rb_poll, err_poll, kick, miss_check } kind;
	BpfSource *src;
	std::uint64_t token = 0; // err_poll: its watch; 0 once detached
	bool armed = false;

	Op(Kind k, BpfSource *s) : kind(k), src(s) {}
	void on_complete(int res, unsigned flags) override;
};

// Operations still in flight when their source went away. Each frees
// itself on its last CQE; if the ring is torn down first there is none, and
// they stay here (reachable, a few bytes each) until the process exits.
// (Never destroyed, so no exit-time destructor races a late CQE.)
std::mutex &orphans_lock = *new std::mutex;
std::unordered_set<Op *> &orphans = *new std::unordered_set<Op *>;

struct Watch {
	int fd;
	std::uint64_t token;
	std::uint32_t slot;
	StreamReader *reader;
	bool paused = false;
	bool ended = false;  // on_end delivered: nothing more
	int fail = 0;        // watch() failed: on_end(fail) is delivered
	Op *errpoll = nullptr;
	std::uint64_t bytes = 0;
	std::uint64_t completions = 0;
};

int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	static const bool verbose = getenv("AGENTMUX_BPF_VERBOSE") != nullptr;
	if (!verbose || level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

bool kernel_has_tracepoint(const char *name)
{
	btf *vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux)
		return true; // let the load tell
	std::string tn = std::string("btf_trace_") + name;
	bool ok = btf__find_by_name_kind(vmlinux, tn.c_str(), BTF_KIND_TYPEDEF) >= 0;
	btf__free(vmlinux);
	return ok;
}

// What agentfilt.ko refuses, refused here too: anything but a TCP socket over
// IPv4 or IPv6, and a socket with a ULP (kTLS) whose records are not the
// bytes a recv returns. 0 or -errno.
int refusal(int fd)
{
	int v = 0;
	socklen_t len = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len) != 0)
		return -errno;
	if (v != IPPROTO_TCP)
		return -EPROTONOSUPPORT;
	len = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0)
		return -errno;
	if (v != AF_INET && v != AF_INET6)
		return -EPROTONOSUPPORT;
	char ulp[16] = {};
	len = sizeof(ulp);
	if (getsockopt(fd, IPPROTO_TCP, TCP_ULP, ulp, &len) == 0 && ulp[0])
		return -EBUSY;
	return 0;
}

// The kernel skips a tp_btf/fentry program that is already running on the
// CPU (prog->active: a softirq data_ready interrupting a process-context
// one) and counts it only in bpf_prog_info.recursion_misses: an arrival
// with no record and no overflow flag. Growth is therefore an overflow.
struct RecursionMisses {
	int prog_fd = -1;
	std::uint64_t seen = 0;

	bool grew()
	{
		if (prog_fd < 0)
			return false;
		bpf_prog_info info{};
		std::uint32_t len = sizeof(info);
		if (bpf_prog_get_info_by_fd(prog_fd, &info, &len) != 0)
			return false;
		bool more = info.recursion_misses != seen;
		seen = info.recursion_misses;
		return more;
	}
};

class BpfSource final : public EventSource {
public:
	explicit BpfSource(Ring &ring) : ring_(ring) { bufs_.reserve(kMaxDepth); }

	~BpfSource() override
	{
		// In-flight operations outlive us as orphans; cancel them.
		for (Op *op : ops_) {
			if (op->armed) {
				op->src = nullptr;
				{
					std::lock_guard<std::mutex> g(orphans_lock);
					orphans.insert(op);
				}
				io_uring_sqe *sqe = ring_.sqe(nullptr);
				io_uring_prep_cancel(sqe, op, 0);
			} else {
				delete op;
			}
		}
		if (!ops_.empty())
			ring_.submit();
		ops_.clear();
		if (rb_)
			ring_buffer__free(rb_);
		if (pending_)
			munmap(const_cast<std::uint64_t *>(pending_), pending_len_);
		if (skel_)
			agentfilt__destroy(skel_);
	}

	bool load(const BpfOptions &opts, std::string *err);

	std::string_view name() const override { return "bpf"; }

	void watch(int fd, StreamReader &reader) override;
	void pause(int fd) override
	{
		if (Watch *w = find_fd(fd))
			w->paused = true;
	}
	void resume(int fd) override;
	void unwatch(int fd) override;

	EventCounters counters() const override;
	EventCounters counters(int fd) const override;

	void complete(Op *op, int res, unsigned flags);

private:
	static int on_record(void *ctx, void *data, std::size_t size)
	{
		auto *self = static_cast<BpfSource *>(ctx);
		if (size >= sizeof(agentfilt_event))
			self->batch_.push_back(*static_cast<const agentfilt_event *>(data));
		return 0;
	}

	Watch *find_token(std::uint64_t token) const
	{
		std::uint64_t slot = token & kSlotMask;
		if (slot >= slots_.size())
			return nullptr;
		Watch *w = slots_[slot].get();
		return w && w->token == token ? w : nullptr;
	}
	Watch *find_fd(int fd) const
	{
		auto it = by_fd_.find(fd);
		return it == by_fd_.end() ? nullptr : slots_[it->second].get();
	}
	void clear_pending(std::uint32_t slot)
	{
		if (slot < max_slots_)
			__atomic_store_n(&pending_[slot], 0, __ATOMIC_RELAXED);
	}

	void arm_rb_poll();
	void arm_miss_check();
	void arm_err(Watch *w);
	void schedule_kick();
	void drain();
	void take(const std::vector<agentfilt_event> &recs, bool all);
	void deliver(std::uint64_t token);
	void defer(std::uint64_t token);
	void run_ready();

	Ring &ring_;
	agentfilt *skel_ = nullptr;
	ring_buffer *rb_ = nullptr;
	ring *rbring_ = nullptr;
	int rb_fd_ = -1;
	int sk_map_fd_ = -1;
	std::uint64_t *pending_ = nullptr;
	std::size_t pending_len_ = 0;
	std::uint32_t max_slots_ = 0;

	std::vector<std::unique_ptr<Watch>> slots_;
	std::vector<std::uint32_t> free_;
	std::unordered_map<int, std::uint32_t> by_fd_;
	std::uint32_t gen_ = 0;

	std::unordered_set<Op *> ops_;
	Op *rbpoll_ = nullptr;
	Op *kick_ = nullptr;
	Op *miss_check_ = nullptr; // a timeout: recursion misses with no record after
	__kernel_timespec miss_check_ts_{};
	std::vector<agentfilt_event> batch_;
	std::deque<std::uint64_t> ready_;
	bool redrain_ = false;
	int depth_ = 0;
	std::vector<std::vector<std::byte>> bufs_;

	std::uint64_t completions_ = 0;
	std::uint64_t bytes_ = 0;
	std::uint64_t sweeps_ = 0;
	int rb_errors_ = 0;
	RecursionMisses misses_;
};

void Op::on_complete(int res, unsigned flags)
{
	if (!src) {
		if (!(flags & IORING_CQE_F_MORE)) {
			std::lock_guard<std::mutex> g(orphans_lock);
			orphans.erase(this);
			delete this;
		}
		return;
	}
	src->complete(this, res, flags);
}

bool BpfSource::load(const BpfOptions &opts, std::string *err)
{
	static std::once_flag once;
	std::call_once(once, [] { libbpf_set_print(libbpf_quiet); });

	long page = sysconf(_SC_PAGESIZE);
	std::size_t ring_bytes = static_cast<std::size_t>(page);
	while (ring_bytes < opts.ring_bytes)
		ring_bytes <<= 1;
	max_slots_ = opts.max_watches ? opts.max_watches : 1;

	skel_ = agentfilt__open();
	if (!skel_) {
		*err = std::string("bpf: opening the filter failed: ") + strerror(errno);
		return false;
	}
	int ret = bpf_map__set_max_entries(skel_->maps.events, ring_bytes);
	if (!ret)
		ret = bpf_map__set_max_entries(skel_->maps.pending, max_slots_);
	// sk_data_ready has a tracepoint from 6.3 on; before, fentry.
	bool tp = kernel_has_tracepoint("sk_data_ready");
	if (!ret)
		ret = bpf_program__set_autoload(skel_->progs.af_data_ready, tp);
	if (!ret)
		ret = bpf_program__set_autoload(skel_->progs.af_data_ready_fentry, !tp);
	if (ret) {
		*err = std::string("bpf: configuring the filter failed: ") + strerror(-ret);
		return false;
	}

	ret = agentfilt__load(skel_);
	if (ret) {
		int e = -ret;
		if (e == EPERM || e == EACCES)
			*err = std::string("bpf: loading the filter needs CAP_BPF and CAP_PERFMON (or root): ") +
			       strerror(e);
		else
			*err = std::string("bpf: loading the filter failed: ") + strerror(e) +
			       " (AGENTMUX_BPF_VERBOSE=1 shows the libbpf log)";
		return false;
	}

	struct {
		bpf_program *prog;
		bpf_link **link;
		const char *what;
	} progs[] = {
		{tp ? skel_->progs.af_data_ready : skel_->progs.af_data_ready_fentry,
		 tp ? &skel_->links.af_data_ready : &skel_->links.af_data_ready_fentry,
		 tp ? "tp_btf/sk_data_ready" : "fentry/sock_def_readable"},
		{skel_->progs.af_set_state, &skel_->links.af_set_state, "tp_btf/inet_sock_set_state"},
		{skel_->progs.af_error_report, &skel_->links.af_error_report,
		 "tp_btf/inet_sk_error_report"},
		{skel_->progs.af_tcp_probe, &skel_->links.af_tcp_probe, "tp_btf/tcp_probe"},
	};
	for (auto &p : progs) {
		*p.link = bpf_program__attach(p.prog);
		if (!*p.link) {
			int e = errno;
			*err = std::string("bpf: attaching ") + p.what + " failed: " + strerror(e);
			return false;
		}
	}

	misses_.prog_fd = bpf_program__fd(progs[0].prog);
	sk_map_fd_ = bpf_map__fd(skel_->maps.watched);
	rb_fd_ = bpf_map__fd(skel_->maps.events);
	rb_ = ring_buffer__new(rb_fd_, on_record, this, nullptr);
	if (!rb_) {
		*err = std::string("bpf: ring buffer setup failed: ") + strerror(errno);
		return false;
	}
	rbring_ = ring_buffer__ring(rb_, 0);

	std::size_t len = std::size_t(max_slots_) * sizeof(std::uint64_t);
	pending_len_ = (len + page - 1) / page * page;
	void *p = mmap(nullptr, pending_len_, PROT_READ | PROT_WRITE, MAP_SHARED,
		       bpf_map__fd(skel_->maps.pending), 0);
	if (p == MAP_FAILED) {
		pending_len_ = 0;
		*err = std::string("bpf: mapping the pending flags failed: ") + strerror(errno);
		return false;
	}
	pending_ = static_cast<std::uint64_t *>(p);

	rbpoll_ = new Op(Op::rb_poll, this);
	kick_ = new Op(Op::kick, this);
	miss_check_ = new Op(Op::miss_check, this);
	ops_.insert(miss_check_);
	arm_miss_check();
	ops_.insert(rbpoll_);
	ops_.insert(kick_);
	arm_rb_poll();
	return true;
}

void BpfSource::arm_miss_check()
{
	miss_check_ts_.tv_sec = 0;
	miss_check_ts_.tv_nsec = 100 * 1000 * 1000;
	io_uring_prep_timeout(ring_.sqe(miss_check_), &miss_check_ts_, 0, 0);
	miss_check_->armed = true;
}

void BpfSource::arm_rb_poll()
{
	io_uring_sqe *sqe = ring_.sqe(rbpoll_);
	io_uring_prep_poll_multishot(sqe, rb_fd_, POLLIN);
	rbpoll_->armed = true;
}

void BpfSource::arm_err(Watch *w)
{
	if (!w->errpoll) {
		w->errpoll = new Op(Op::err_poll, this);
		w->errpoll->token = w->token;
		ops_.insert(w->errpoll);
	}
	if (w->errpoll->armed)
		return;
	prep_fault_poll(ring_.sqe(w->errpoll), w->fd);
	w->errpoll->armed = true;
}

void BpfSource::schedule_kick()
{
	if (kick_->armed)
		return;
	io_uring_sqe *sqe = ring_.sqe(kick_);
	io_uring_prep_nop(sqe);
	kick_->armed = true;
}

void BpfSource::watch(int fd, StreamReader &reader)
{
	if (by_fd_.count(fd))
		unwatch(fd);
	std::uint32_t slot;
	if (!free_.empty()) {
		slot = free_.back();
		free_.pop_back();
	} else {
		slot = static_cast<std::uint32_t>(slots_.size());
		slots_.emplace_back();
	}
	auto w = std::make_unique<Watch>();
	w->fd = fd;
	w->slot = slot;
	w->reader = &reader;
	w->token = (std::uint64_t(++gen_) << 32) | slot;
	if (slot >= max_slots_) {
		w->fail = -ENOSPC;
	} else if (int e = refusal(fd)) {
		w->fail = e;
	} else {
		clear_pending(slot);
		agentfilt_sk v{};
		v.token = w->token;
		v.slot = slot;
		if (bpf_map_update_elem(sk_map_fd_, &fd, &v, BPF_ANY) < 0)
			w->fail = -errno;
	}
	std::uint64_t token = w->token;
	Watch *raw = w.get();
	slots_[slot] = std::move(w);
	by_fd_[fd] = slot;
	if (!raw->fail)
		arm_err(raw);
	// Data may already be queued (or the watch failed): read once soon.
	defer(token);
}

void BpfSource::unwatch(int fd)
{
	auto it = by_fd_.find(fd);
	if (it == by_fd_.end())
		return;
	std::uint32_t slot = it->second;
	by_fd_.erase(it);
	std::unique_ptr<Watch> w = std::move(slots_[slot]);
	if (slot < max_slots_ && !w->fail)
		bpf_map_delete_elem(sk_map_fd_, &fd);
	if (Op *op = w->errpoll) {
		if (op->armed) {
			op->token = 0; // freed when its CQE comes
			io_uring_sqe *sqe = ring_.sqe(nullptr);
			io_uring_prep_poll_remove(sqe, reinterpret_cast<std::uint64_t>(op));
			// The poll holds the socket open: let it go before close().
			ring_.submit();
		} else {
			ops_.erase(op);
			delete op;
		}
	}
	clear_pending(slot);
	free_.push_back(slot);
}

void BpfSource::resume(int fd)
{
	Watch *w = find_fd(fd);
	if (!w || !w->paused)
		return;
	w->paused = false;
	if (w->ended)
		return;
	// A record that came while paused left the slot pending: take it.
	clear_pending(w->slot);
	std::atomic_thread_fence(std::memory_order_seq_cst);
	// Never call the reader from inside resume(): it may be mid-parse.
	defer(w->token);
}

void BpfSource::defer(std::uint64_t token)
{
	ready_.push_back(token);
	schedule_kick();
}

// Reads the socket until EAGAIN (or kBudget recvs, then later again).
void BpfSource::deliver(std::uint64_t token)
{
	if (depth_ >= kMaxDepth) {
		defer(token);
		return;
	}
	// Each nesting level has its own buffer: an outer on_data still
	// holds a span of the one below.
	if (bufs_.size() <= static_cast<std::size_t>(depth_))
		bufs_.emplace_back(kBufSize);
	std::byte *buf = bufs_[depth_].data();

	for (int i = 0; i < kBudget; i++) {
		Watch *w = find_token(token);
		if (!w || w->paused || w->ended)
			return;
		int end;
		if (w->fail) {
			end = w->fail;
		} else if (w->reader->pulls()) {
			depth_++;
			StreamReader::Pulled p = w->reader->on_readable();
			depth_--;
			bytes_ += p.bytes;
			if (Watch *x = find_token(token)) {
				x->bytes += p.bytes;
				if (!p.drained && !x->paused)
					defer(token);
			}
			return;
		} else {
			ssize_t n = recv_now(w->fd, buf, kBufSize);
			if (n > 0) {
				w->bytes += n;
				bytes_ += n;
				depth_++;
				w->reader->on_data({buf, static_cast<std::size_t>(n)});
				depth_--;
				continue; // w may be gone: looked up again
			}
			if (n == -EAGAIN)
				return;
			end = static_cast<int>(n);
		}
		w->ended = true;
		depth_++;
		w->reader->on_end(end);
		depth_--;
		return;
	}
	defer(token);
}

void BpfSource::take(const std::vector<agentfilt_event> &recs, bool all)
{
	std::vector<std::uint64_t> tokens;
	if (all)
		sweeps_++;
	auto consider = [&](Watch *w) {
		if (!w || w->paused || w->ended)
			return; // the slot stays pending: no more records meanwhile
		clear_pending(w->slot);
		tokens.push_back(w->token);
	};
	if (all) {
		for (auto &w : slots_)
			consider(w.get());
	} else {
		for (const agentfilt_event &ev : recs) {
			// By slot, not by exact token: a record of an unwatched
			// socket whose slot was reused may have set the new
			// owner's pending word; reading the new owner is harmless.
			std::uint64_t slot = ev.token & kSlotMask;
			if (slot < slots_.size())
				consider(slots_[slot].get());
		}
	}
	// The clears must be visible before we read the sockets.
	std::atomic_thread_fence(std::memory_order_seq_cst);
	for (std::uint64_t t : tokens)
		deliver(t);
}

void BpfSource::drain()
{
	for (int round = 0; round < kMaxRounds; round++) {
		std::vector<agentfilt_event> recs;
		batch_.swap(recs);
		batch_.clear();
		ring_buffer__consume(rb_);
		batch_.swap(recs);
		// Our consumer position must be visible before we read the
		// producer's position and the overflow flag (the producer wakes
		// us only if it sees we consumed everything before its record).
		std::atomic_thread_fence(std::memory_order_seq_cst);
		bool all = __atomic_exchange_n(&skel_->bss->overflow, 0, __ATOMIC_SEQ_CST) != 0;
		all = misses_.grew() || all;
		for (const agentfilt_event &ev : recs)
			if (ev.flags & AGENTFILT_EV_OVERFLOW)
				all = true;
		take(recs, all);
		std::atomic_thread_fence(std::memory_order_seq_cst);
		if (ring__avail_data_size(rbring_) == 0 &&
		    __atomic_load_n(&skel_->bss->overflow, __ATOMIC_SEQ_CST) == 0)
			return;
	}
	// Still busy: come back after the ring's other completions.
	redrain_ = true;
	schedule_kick();
}

void BpfSource::run_ready()
{
	if (redrain_) {
		redrain_ = false;
		drain();
	}
	std::deque<std::uint64_t> q;
	q.swap(ready_);
	for (std::uint64_t t : q)
		deliver(t);
}

void BpfSource::complete(Op *op, int res, unsigned flags)
{
	completions_++;
	if (!(flags & IORING_CQE_F_MORE))
		op->armed = false;
	switch (op->kind) {
	case Op::rb_poll:
		drain();
		// A poll that keeps failing would spin: give up after a while
		// (never seen; the ring buffer fd always polls).
		rb_errors_ = res < 0 ? rb_errors_ + 1 : 0;
		if (rb_errors_ == 64)
			std::fprintf(stderr, "bpf: polling the ring buffer fails: %s; events stop\n",
				     strerror(-res));
		if (!op->armed && rb_errors_ < 64)
			arm_rb_poll();
		break;
	case Op::kick:
		run_ready();
		break;
	case Op::miss_check:
		// A miss on a socket that never gets another record would wait
		// for the next drain: look every 100 ms.
		if (misses_.grew()) {
			std::atomic_thread_fence(std::memory_order_seq_cst);
			take({}, true);
		}
		if (!op->armed)
			arm_miss_check();
		break;
	case Op::err_poll: {
		if (op->token == 0) { // detached by unwatch
			if (!op->armed) {
				ops_.erase(op);
				delete op;
			}
			break;
		}
		std::uint64_t token = op->token;
		Watch *w = find_token(token);
		if (!w)
			break;
		w->completions++;
		if (int err = socket_failure(w->fd, res); err < 0 && !w->ended) {
			// A reset: the reader hears of it now, paused or not.
			w->ended = true;
			depth_++;
			w->reader->on_end(err);
			depth_--;
		} else if (res > 0 && !w->paused) {
			deliver(token); // a hang-up: the read reports it in order
		}
		w = find_token(token);
		if (w && !w->ended && !op->armed && res != -ECANCELED)
			arm_err(w);
		break;
	}
	}
}

EventCounters from_kernel(const agentfilt_counters &k, std::uint64_t overflows)
{
	EventCounters c = from_filter(k);
	c.overflows = overflows;
	return c;
}

EventCounters BpfSource::counters() const
{
	agentfilt_totals t;
	const agentfilt_totals &src = skel_->bss->totals;
	t.counters.data_ready = __atomic_load_n(&src.counters.data_ready, __ATOMIC_RELAXED);
	t.counters.state_change = __atomic_load_n(&src.counters.state_change, __ATOMIC_RELAXED);
	t.counters.write_space = __atomic_load_n(&src.counters.write_space, __ATOMIC_RELAXED);
	t.counters.error_report = __atomic_load_n(&src.counters.error_report, __ATOMIC_RELAXED);
	t.counters.passed = __atomic_load_n(&src.counters.passed, __ATOMIC_RELAXED);
	t.counters.coalesced = __atomic_load_n(&src.counters.coalesced, __ATOMIC_RELAXED);
	t.overflows = __atomic_load_n(&src.overflows, __ATOMIC_RELAXED);
	EventCounters c = from_kernel(t.counters, t.overflows);
	c.completions = completions_;
	c.bytes = bytes_;
	c.sweeps = sweeps_;
	return c;
}

EventCounters BpfSource::counters(int fd) const
{
	Watch *w = find_fd(fd);
	if (!w)
		return {};
	EventCounters c;
	agentfilt_sk v{};
	if (!w->fail && bpf_map_lookup_elem(sk_map_fd_, &fd, &v) == 0)
		c = from_kernel(v.counters, v.overflows);
	c.completions = w->completions;
	c.bytes = w->bytes;
	return c;
}

} // namespace

std::unique_ptr<EventSource> make_bpf_source(Ring &ring, const BpfOptions &opts, std::string *err)
{
	auto src = std::make_unique<BpfSource>(ring);
	if (!src->load(opts, err))
		return nullptr;
	return src;
}

std::unique_ptr<EventSource> make_bpf_source(Ring &ring, std::string *err)
{
	return make_bpf_source(ring, BpfOptions{}, err);
}

} // namespace agent
