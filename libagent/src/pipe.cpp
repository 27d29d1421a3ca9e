// SPDX-License-Identifier: MIT
#include "pipe.hpp"

#include "agent/log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <vector>

namespace agent {
namespace {

// Enough for the pipes in use at once by a busy thread (a session's
// retention holds up to Retention::kMaxStores); more are closed.
constexpr std::size_t kPoolCap = 32;
thread_local std::vector<Pipe> g_pipes;
// The largest pipe the kernel has made this thread: past the system's
// limits every new pipe is smaller than asked, and pooled ones of that
// size serve.
thread_local std::size_t g_largest = 0;

// Where discard() sends a pipe's bytes: opened once per process, by
// Pipe::prepare() before the first session (-1 if it cannot be: pipes with
// bytes are then closed, not reused).
int null_fd()
{
	static const int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
	return fd;
}

} // namespace

void Pipe::prepare() { (void)null_fd(); }

Pipe::Pipe(Pipe &&o) noexcept
	: rd_(o.rd_), wr_(o.wr_), bytes_(o.bytes_), capacity_(o.capacity_)
{
	o.rd_ = o.wr_ = -1;
	o.bytes_ = o.capacity_ = 0;
}

Pipe &Pipe::operator=(Pipe &&o) noexcept
{
	if (this != &o) {
		close_fds();
		rd_ = o.rd_;
		wr_ = o.wr_;
		bytes_ = o.bytes_;
		capacity_ = o.capacity_;
		o.rd_ = o.wr_ = -1;
		o.bytes_ = o.capacity_ = 0;
	}
	return *this;
}

Pipe::~Pipe() { close_fds(); }

void Pipe::close_fds()
{
	if (rd_ >= 0) {
		::close(rd_);
		::close(wr_);
	}
	rd_ = wr_ = -1;
	bytes_ = capacity_ = 0;
}

Pipe Pipe::acquire(std::size_t capacity)
{
	// The newest pooled pipe that is large enough: one made smaller (a
	// short frame's duplicate) would cut a full chunk's splice short.
	for (auto it = g_pipes.rbegin(); it != g_pipes.rend(); ++it)
		if (it->capacity_ >= std::min(capacity, g_largest)) {
			Pipe p = std::move(*it);
			g_pipes.erase(std::next(it).base());
			return p;
		}
	int fds[2];
	Pipe p;
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
		return p;
	p.rd_ = fds[0];
	p.wr_ = fds[1];
	// A larger pipe takes a whole frame's worth of socket buffers per
	// splice. Past /proc/sys/fs/pipe-max-size or the per-user page limit
	// this fails, and the default slots still work, in smaller steps
	// (past fs.pipe-user-pages-soft an unprivileged user's new pipes get
	// two pages): sessions slow down, they do not fail.
	int saved = errno;
	int size = fcntl(p.wr_, F_SETPIPE_SZ, static_cast<int>(capacity));
	bool refused = size < 0 && errno == EPERM;
	if (size < 0)
		size = fcntl(p.wr_, F_GETPIPE_SZ);
	p.capacity_ = size > 0 ? static_cast<std::size_t>(size) : 0;
	g_largest = std::max(g_largest, p.capacity_);
	if (refused) {
		thread_local LogEverySecond limited;
		if (std::uint64_t n; limited.due(std::chrono::steady_clock::now(), &n))
			log(LogLevel::warn, "pipes stay small ({}x in the last second): this user "
					    "reached fs.pipe-user-pages-soft; splices go in smaller "
					    "steps", n);
	}
	errno = saved;
	return p;
}

void Pipe::release(Pipe p)
{
	if (p.valid() && p.bytes_ == 0 && g_pipes.size() < kPoolCap)
		g_pipes.push_back(std::move(p));
}

// Runs a call that fills the pipe, retried on EINTR: bytes added, or -errno.
template <typename Call>
static ssize_t filling(std::size_t &bytes, Call call)
{
	for (;;) {
		ssize_t r = call();
		if (r > 0)
			bytes += r;
		if (r >= 0)
			return r;
		if (errno != EINTR)
			return -errno;
	}
}

ssize_t Pipe::fill_from(int fd, std::size_t n)
{
	return filling(bytes_, [&] {
		return splice(fd, nullptr, wr_, nullptr, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	});
}

ssize_t Pipe::fill_copy(const void *data, std::size_t n)
{
	return filling(bytes_, [&] { return ::write(wr_, data, n); });
}

ssize_t Pipe::tee_to(Pipe &dst) const
{
	return filling(dst.bytes_, [&] { return tee(rd_, dst.wr_, bytes_, SPLICE_F_NONBLOCK); });
}

bool Pipe::discard() { return drop(bytes_); }

bool Pipe::drop(std::size_t n)
{
	int fd = null_fd();
	n = std::min(n, bytes_);
	while (n > 0 && fd >= 0) {
		ssize_t r = ::splice(rd_, nullptr, fd, nullptr, n, SPLICE_F_NONBLOCK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		bytes_ -= std::min<std::size_t>(bytes_, r);
		n -= std::min<std::size_t>(n, r);
	}
	return n == 0;
}

ssize_t Pipe::read_into(void *data, std::size_t n)
{
	std::size_t got = 0;
	auto *p = static_cast<std::byte *>(data);
	while (got < n && bytes_ > 0) {
		ssize_t r = ::read(rd_, p + got, std::min(n - got, bytes_));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return got ? static_cast<ssize_t>(got) : (r < 0 ? -errno : 0);
		got += r;
		bytes_ -= r;
	}
	return static_cast<ssize_t>(got);
}

ssize_t Pipe::drain_to(int fd)
{
	std::size_t moved = 0;
	while (bytes_ > 0) {
		ssize_t r = splice(rd_, nullptr, fd, nullptr, bytes_,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (r > 0) {
			bytes_ -= r;
			moved += r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (moved > 0 && r < 0 && errno == EAGAIN)
			break;
		return r < 0 ? -errno : -EPIPE;
	}
	return static_cast<ssize_t>(moved);
}

} // namespace agent
