// SPDX-License-Identifier: MIT
// Pipes for the zero-copy data path. splice(2) moves bytes between a socket
// and a pipe by reference to the socket buffers' pages; two splices through
// a pipe relay a socket's bytes to another socket with no copy at all.
// Each agent thread keeps a few empty pipes for reuse: a session holds one
// only while bytes sit in it.
#pragma once

#include <cstddef>
#include <sys/types.h>

namespace agent {

class Pipe {
public:
	Pipe() = default;
	Pipe(Pipe &&o) noexcept;
	Pipe &operator=(Pipe &&o) noexcept;
	Pipe(const Pipe &) = delete;
	Pipe &operator=(const Pipe &) = delete;
	~Pipe();

	// An empty pipe of at least capacity bytes from this thread's pool, or
	// a new one of about capacity bytes (less where the system's limits
	// say so). Invalid (and errno set) when none can be made.
	static Pipe acquire(std::size_t capacity);
	// Returns an empty pipe to the pool; closes one that holds bytes.
	static void release(Pipe p);
	// Opens what discard() needs (/dev/null), once per process: called
	// before the first session, so that every descriptor opened later
	// belongs to a session and goes with it.
	static void prepare();

	bool valid() const { return rd_ >= 0; }
	// Bytes in the pipe (as counted by the splices below).
	std::size_t bytes() const { return bytes_; }
	// Bytes it holds at most (as the kernel sized it).
	std::size_t capacity() const { return capacity_; }

	// Moves up to n bytes from socket fd into the pipe, without waiting.
	// Returns the bytes moved, 0 at end of stream, or -errno (-EAGAIN:
	// nothing to read now, or no room in the pipe).
	ssize_t fill_from(int fd, std::size_t n);
	// Copies bytes into the pipe (what a source had already read).
	ssize_t fill_copy(const void *data, std::size_t n);
	// Moves the pipe's bytes into socket fd, without waiting: bytes moved
	// or -errno (-EAGAIN: the socket has no room).
	ssize_t drain_to(int fd);
	// Duplicates this pipe's bytes into dst (tee(2): the same pages, no
	// copy; they stay here too): bytes duplicated or -errno.
	ssize_t tee_to(Pipe &dst) const;
	// Drops the pipe's bytes (spliced to /dev/null: the pages' references
	// go, nothing is copied), so that release() can pool it. False if
	// some remain.
	bool discard();
	// Drops the first n bytes (all there are if fewer) the same way: false
	// if it could not.
	bool drop(std::size_t n);
	// Reads up to n of the pipe's bytes into memory: bytes read or -errno.
	ssize_t read_into(void *data, std::size_t n);

private:
	void close_fds();

	int rd_ = -1, wr_ = -1;
	std::size_t bytes_ = 0;
	std::size_t capacity_ = 0; // what the kernel made it (F_SETPIPE_SZ)
};

} // namespace agent
