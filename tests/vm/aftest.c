// SPDX-License-Identifier: GPL-2.0
/*
 * aftest: guest-side tests of agentfilt.ko (run inside qemu by tests/vm).
 * Prints one TAP line per test, without numbers (`ok - name`), which the
 * host numbers. `aftest` runs everything; `aftest smoke` a short check.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agentfilt.h"
#include "afutil.h"

/* ---- ioctl tests ---- */

static int t_version(void)
{
	struct agentfilt_version v = { 0 };
	int dev = dev_open();

	CHECK(dev >= 0, "open: %s", strerror(errno));
	CHECK(!ioctl(dev, AGENTFILT_IOC_VERSION, &v), "VERSION: %s", strerror(errno));
	CHECK(v.abi == AGENTFILT_ABI_VERSION && v.event_size == sizeof(struct agentfilt_event),
	      "abi %u size %u", v.abi, v.event_size);
	CHECK((v.features & (AGENTFILT_FEAT_EVENTS | AGENTFILT_FEAT_STATS_FILE |
			     AGENTFILT_FEAT_USER_LIMIT)) ==
	      (AGENTFILT_FEAT_EVENTS | AGENTFILT_FEAT_STATS_FILE | AGENTFILT_FEAT_USER_LIMIT) &&
	      !v.reserved[0] && !v.reserved[1], "features %llx",
	      (unsigned long long)v.features);
	close(dev);
	return 0;
}

static int t_devnode(void)
{
	struct stat st;

	CHECK(!stat(AGENTFILT_DEVICE, &st), "stat: %s", strerror(errno));
	CHECK(S_ISCHR(st.st_mode) && (st.st_mode & 07777) == 0600 && st.st_gid == 0,
	      "mode %o gid %u", st.st_mode & 07777, st.st_gid);
	return 0;
}

static int t_nonroot(void)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(2);
		_exit(open(AGENTFILT_DEVICE, O_RDWR) < 0 && errno == EACCES ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "non-root open not refused (%d)",
	      status);
	return 0;
}

static int t_bad_fd(void)
{
	int dev = dev_open();
	int r1 = watch(dev, -1, 1), r2 = watch(dev, 100000, 1), r3 = watch(dev, 0x7fffffff, 1);
	int r4 = watch(dev, (int)0x80000000, 1);

	close(dev);
	CHECK(r1 == -EBADF && r2 == -EBADF && r3 == -EBADF && r4 == -EBADF,
	      "got %d %d %d %d", r1, r2, r3, r4);
	return 0;
}

static int t_not_socket(void)
{
	int p[2], dev = dev_open(), r1, r2, r3;

	CHECK(!pipe(p), "pipe");
	r1 = watch(dev, p[0], 1);
	r2 = watch(dev, dev, 2);
	r3 = watch(dev, 1, 3); /* the serial console */
	close(p[0]);
	close(p[1]);
	close(dev);
	CHECK(r1 == -ENOTSOCK && r2 == -ENOTSOCK && r3 == -ENOTSOCK, "got %d %d %d", r1, r2, r3);
	return 0;
}

static int t_not_tcp(void)
{
	int dev = dev_open(), u = socket(AF_INET, SOCK_DGRAM, 0), sp[2], r1, r2, r3;
	int u6 = socket(AF_INET6, SOCK_DGRAM, 0);

	CHECK(!socketpair(AF_UNIX, SOCK_STREAM, 0, sp), "socketpair");
	r1 = watch(dev, u, 1);
	r2 = watch(dev, sp[0], 2);
	r3 = u6 >= 0 ? watch(dev, u6, 3) : -EPROTONOSUPPORT;
	close(u);
	close(u6);
	close(sp[0]);
	close(sp[1]);
	close(dev);
	CHECK(r1 == -EPROTONOSUPPORT && r2 == -EPROTONOSUPPORT && r3 == -EPROTONOSUPPORT,
	      "udp %d unix %d udp6 %d", r1, r2, r3);
	return 0;
}

static int t_listening(void)
{
	int port, dev = dev_open(), l = listener(&port), r;

	r = watch(dev, l, 1);
	close(l);
	close(dev);
	CHECK(r == -EOPNOTSUPP, "got %d", r);
	return 0;
}

static int t_unconnected(void)
{
	int dev = dev_open(), s = socket(AF_INET, SOCK_STREAM, 0), r;

	r = watch(dev, s, 1);
	close(s);
	close(dev);
	CHECK(r == -ENOTCONN, "got %d", r);
	return 0;
}

static int t_double(void)
{
	int dev = dev_open(), dev2 = dev_open(), c, s, c2, s2, r1, r2, r3, r4, r5;

	CHECK(!tcp_pair(&c, &s) && !tcp_pair(&c2, &s2), "pair");
	r1 = watch(dev, c, 7);
	r2 = watch(dev, c, 8);		/* same socket, same file */
	r3 = watch(dev, s, 7);		/* same token */
	r4 = watch(dev2, c, 9);		/* same socket, another file */
	r5 = watch(dev, s, 8);
	close_pair(c, s);
	close_pair(c2, s2);
	close(dev);
	close(dev2);
	CHECK(r1 == 0 && r2 == -EALREADY && r3 == -EEXIST && r4 == -EBUSY && r5 == 0,
	      "got %d %d %d %d %d", r1, r2, r3, r4, r5);
	return 0;
}

static int t_unknown(void)
{
	struct agentfilt_stats st;
	int dev = dev_open(), r1, r2, r3, r4;

	r1 = unwatch(dev, 42);
	r2 = stats(dev, 42, 0, &st);
	r3 = unwatch(dev, ~0ULL);
	r4 = stats(dev, 0, AGENTFILT_STATS_FILE, &st);
	close(dev);
	CHECK(r1 == -ENOENT && r2 == -ENOENT && r3 == -ENOENT && r4 == 0 && st.watches == 0,
	      "got %d %d %d %d", r1, r2, r3, r4);
	return 0;
}

static int t_bad_values(void)
{
	struct agentfilt_watch w = { 0 };
	struct agentfilt_unwatch u = { 0 };
	struct agentfilt_stats st;
	struct agentfilt_event ev;
	char small[8];
	int dev = dev_open(), c, s, r[14];

	CHECK(!tcp_pair(&c, &s), "pair");
	w.fd = c;
	w.flags = 1;
	r[0] = ioctl(dev, AGENTFILT_IOC_WATCH, &w) ? -errno : 0;
	w.flags = 0x80000000;
	r[1] = ioctl(dev, AGENTFILT_IOC_WATCH, &w) ? -errno : 0;
	r[2] = stats(dev, 0, 0x80, &st);
	r[3] = ioctl(dev, AGENTFILT_IOC_WATCH, (void *)16) ? -errno : 0;
	r[4] = ioctl(dev, AGENTFILT_IOC_STATS, (void *)-1L) ? -errno : 0;
	r[5] = ioctl(dev, _IO(AGENTFILT_IOC_MAGIC, 99)) ? -errno : 0;
	r[6] = read(dev, small, sizeof(small)) < 0 ? -errno : 0;
	r[7] = watch(dev, c, ~0ULL);		/* the largest token is fine */
	r[8] = stats(dev, ~0ULL, 0, &st);
	r[9] = read_events(dev, &ev, 1);	/* nothing pending: EAGAIN */
	/* Reserved fields must be zero: room for the ABI to grow. */
	w.flags = 0;
	w.token = 5;
	w.reserved[1] = 1;
	r[10] = ioctl(dev, AGENTFILT_IOC_WATCH, &w) ? -errno : 0;
	u.token = ~0ULL;
	u.reserved = 1;
	r[11] = ioctl(dev, AGENTFILT_IOC_UNWATCH, &u) ? -errno : 0;
	u.reserved = 0;
	u.flags = 2;
	r[12] = ioctl(dev, AGENTFILT_IOC_UNWATCH, &u) ? -errno : 0;
	memset(&st, 0, sizeof(st));
	st.token = ~0ULL;
	st.reserved[3] = 1;
	r[13] = ioctl(dev, AGENTFILT_IOC_STATS, &st) ? -errno : 0;
	close_pair(c, s);
	close(dev);
	CHECK(r[0] == -EINVAL && r[1] == -EINVAL && r[2] == -EINVAL && r[3] == -EFAULT &&
	      r[4] == -EFAULT && r[5] == -ENOTTY && r[6] == -EINVAL && r[7] == 0 && r[8] == 0 &&
	      r[9] == 0, "got %d %d %d %d %d %d %d %d %d %d", r[0], r[1], r[2], r[3], r[4], r[5],
	      r[6], r[7], r[8], r[9]);
	CHECK(r[10] == -EINVAL && r[11] == -EINVAL && r[12] == -EINVAL && r[13] == -EINVAL,
	      "reserved fields: %d %d %d %d", r[10], r[11], r[12], r[13]);
	return 0;
}

/* A socket fd number that is open only in another process is not ours. */
static int t_other_process(void)
{
	int dev = dev_open(), c, s, p[2], status, r1, r2 = 0;
	char fdno[16] = "";
	pid_t pid;

	CHECK(!pipe(p), "pipe");
	pid = fork();
	if (pid == 0) {
		int cc, ss;

		if (tcp_pair(&cc, &ss))
			_exit(1);
		/* Make the number something the parent has not got open. */
		int hi = dup2(cc, 900);

		snprintf(fdno, sizeof(fdno), "%d", hi);
		if (write(p[1], fdno, sizeof(fdno)) != sizeof(fdno))
			_exit(1);
		pause();
		_exit(0);
	}
	if (read(p[0], fdno, sizeof(fdno)) != sizeof(fdno))
		return fail("child");
	r1 = watch(dev, atoi(fdno), 1);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);

	/* A socket shared with a child: the child's own file is refused. */
	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, c, 2) == 0, "watch");
	pid = fork();
	if (pid == 0) {
		int d2 = dev_open();

		_exit(watch(d2, c, 3) == -EBUSY ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	r2 = WIFEXITED(status) ? WEXITSTATUS(status) : 99;
	close_pair(c, s);
	close(dev);
	close(p[0]);
	close(p[1]);
	CHECK(r1 == -EBADF && r2 == 0, "other's fd %d, child's watch status %d", r1, r2);
	return 0;
}

/* ---- event tests ---- */

static int t_data_passes(void)
{
	struct agentfilt_event ev[4];
	struct agentfilt_stats st;
	int dev = dev_open(), c, s, n;

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 0x1234567890ULL) == 0, "watch");
	CHECK(read_events(dev, ev, 4) == 0, "event before data");
	CHECK(write(c, "hello, filter", 13) == 13, "write");
	CHECK(wait_readable(dev, 2000) == 1, "device not readable");
	n = read_events(dev, ev, 4);
	CHECK(n == 1 && ev[0].token == 0x1234567890ULL && ev[0].bytes == 13 && ev[0].flags == 0,
	      "n %d token %llx bytes %u", n, (unsigned long long)ev[0].token, ev[0].bytes);
	CHECK(stats(dev, 0x1234567890ULL, 0, &st) == 0, "stats");
	CHECK(st.counters.data_ready == 1 && st.counters.passed == 1 && st.watches == 1,
	      "data_ready %llu passed %llu", (unsigned long long)st.counters.data_ready,
	      (unsigned long long)st.counters.passed);
	close_pair(c, s);
	close(dev);
	return 0;
}

/* Other readers keep working: the original callbacks are chained. */
static int t_chained(void)
{
	int dev = dev_open(), c, s;

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 1) == 0 && watch(dev, c, 2) == 0, "watch");
	CHECK(woken_by_peer(c, s), "poll on the watched socket was not woken");
	close_pair(c, s);
	close(dev);
	return 0;
}

static int t_connect_counted(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct agentfilt_event ev;
	struct agentfilt_stats st;
	int dev = dev_open(), port, l, first, c, acc, r;

	/* A full accept queue drops the SYN: c stays in SYN_SENT. */
	l = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(!bind(l, (void *)&a, sizeof(a)) && !listen(l, 0), "listen");
	socklen_t len = sizeof(a);

	getsockname(l, (void *)&a, &len);
	port = ntohs(a.sin_port);
	(void)port;
	first = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(!connect(first, (void *)&a, sizeof(a)), "first connect");
	msleep(50);
	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	r = connect(c, (void *)&a, sizeof(a));
	CHECK(r < 0 && errno == EINPROGRESS, "connect did not stay in progress");
	r = watch(dev, c, 5);
	CHECK(r == 0, "watch in SYN_SENT: %d", r);
	acc = accept(l, NULL, NULL);	/* makes room: the SYN retransmit gets in */
	/* The connecting task is woken by the (chained) sk_state_change. */
	CHECK(wait_event_on(c, POLLOUT, 5000) == 1, "connect did not complete");
	msleep(50);
	CHECK(stats(dev, 5, 0, &st) == 0, "stats");
	CHECK(st.counters.state_change >= 1 && st.counters.passed == 0 &&
	      read_events(dev, &ev, 1) == 0, "state_change %llu passed %llu",
	      (unsigned long long)st.counters.state_change,
	      (unsigned long long)st.counters.passed);
	close(acc);
	close(first);
	close(c);
	close(l);
	close(dev);
	return 0;
}

static int t_shutdown_counted(void)
{
	struct agentfilt_event ev;
	struct agentfilt_stats st;
	int dev = dev_open(), c, s;

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, c, 1) == 0, "watch");
	CHECK(!shutdown(c, SHUT_WR), "shutdown");
	for (int i = 0; i < 100; i++) {
		stats(dev, 1, 0, &st);
		if (st.counters.state_change)
			break;
		msleep(10);
	}
	CHECK(st.counters.state_change >= 1 && st.counters.passed == 0 &&
	      read_events(dev, &ev, 1) == 0, "state_change %llu passed %llu",
	      (unsigned long long)st.counters.state_change,
	      (unsigned long long)st.counters.passed);
	close_pair(c, s);
	close(dev);
	return 0;
}

static int t_write_space_counted(void)
{
	static char buf[65536];
	struct agentfilt_event ev;
	struct agentfilt_stats st;
	int dev = dev_open(), c, s, sz = 16384;

	CHECK(!tcp_pair(&c, &s), "pair");
	setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	CHECK(watch(dev, c, 1) == 0, "watch");
	fcntl(c, F_SETFL, O_NONBLOCK);
	while (send(c, buf, sizeof(buf), 0) > 0)
		;
	CHECK(errno == EAGAIN, "send: %s", strerror(errno));
	pid_t pid = fork();

	if (pid == 0) {
		msleep(200);
		for (int i = 0; i < 100; i++) {
			while (recv(s, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				;
			msleep(10);
		}
		_exit(0);
	}
	/* The blocked writer is woken by the (chained) sk_write_space. */
	int woken = wait_event_on(c, POLLOUT, 3000);

	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	CHECK(woken == 1, "the writer was not woken");
	stats(dev, 1, 0, &st);
	CHECK(st.counters.write_space >= 1 && st.counters.passed == 0 &&
	      read_events(dev, &ev, 1) == 0, "write_space %llu passed %llu",
	      (unsigned long long)st.counters.write_space,
	      (unsigned long long)st.counters.passed);
	close_pair(c, s);
	close(dev);
	return 0;
}

static int t_reset_counted(void)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct agentfilt_event ev;
	struct agentfilt_stats st;
	int dev = dev_open(), c, s, err = 0;
	socklen_t len = sizeof(err);

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 1) == 0, "watch");
	setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c);	/* sends a RST */
	for (int i = 0; i < 100; i++) {
		stats(dev, 1, 0, &st);
		if (st.counters.error_report)
			break;
		msleep(10);
	}
	getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
	CHECK(st.counters.error_report >= 1 && st.counters.state_change >= 1 &&
	      st.counters.passed == 0 && read_events(dev, &ev, 1) == 0 && err == ECONNRESET,
	      "error_report %llu state_change %llu passed %llu so_error %d",
	      (unsigned long long)st.counters.error_report,
	      (unsigned long long)st.counters.state_change,
	      (unsigned long long)st.counters.passed, err);
	close(s);
	close(dev);
	return 0;
}

static int t_coalesce(void)
{
	struct agentfilt_event ev[4];
	struct agentfilt_stats st;
	int dev = dev_open(), c, s, n;

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 3) == 0, "watch");
	for (int i = 0; i < 10; i++) {
		CHECK(write(c, "0123456789", 10) == 10, "write");
		msleep(5);
	}
	msleep(50);
	n = read_events(dev, ev, 4);
	CHECK(stats(dev, 3, 0, &st) == 0, "stats");
	CHECK(n == 1 && ev[0].token == 3 && ev[0].bytes == 100, "n %d bytes %u", n, ev[0].bytes);
	CHECK(st.counters.passed == 1 && st.counters.data_ready >= 2 &&
	      st.counters.coalesced == st.counters.data_ready - 1,
	      "data_ready %llu passed %llu coalesced %llu",
	      (unsigned long long)st.counters.data_ready, (unsigned long long)st.counters.passed,
	      (unsigned long long)st.counters.coalesced);
	/* Once read, the next arrival is a new event. */
	CHECK(write(c, "x", 1) == 1 && wait_readable(dev, 2000) == 1, "second event");
	n = read_events(dev, ev, 4);
	CHECK(n == 1 && ev[0].bytes == 101, "n %d bytes %u", n, ev[0].bytes);
	close_pair(c, s);
	close(dev);
	return 0;
}

/* Many watches, one event each, the queue bounded by the watches. */
static int t_many_events(void)
{
	enum { N = 64 };
	struct agentfilt_event ev[N + 8];
	int dev = dev_open(), c[N], s[N], n, seen = 0;
	uint64_t mask = 0;

	for (int i = 0; i < N; i++) {
		CHECK(!tcp_pair(&c[i], &s[i]), "pair");
		CHECK(watch(dev, s[i], i) == 0, "watch");
	}
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < N; i++)
			CHECK(write(c[i], "ab", 2) == 2, "write");
	msleep(100);
	n = read(dev, ev, sizeof(ev));
	CHECK(n == N * (int)sizeof(ev[0]), "read %d bytes, want %d", n, N * (int)sizeof(ev[0]));
	for (int i = 0; i < N; i++) {
		mask |= 1ULL << ev[i].token;
		seen += ev[i].bytes == 6;
	}
	CHECK(mask == ~0ULL && seen == N, "tokens %llx, %d with 6 bytes",
	      (unsigned long long)mask, seen);
	for (int i = 0; i < N; i++)
		close_pair(c[i], s[i]);
	close(dev);
	return 0;
}

static int t_file_stats(void)
{
	struct agentfilt_stats st;
	int dev = dev_open(), c, s;

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 1) == 0 && watch(dev, c, 2) == 0, "watch");
	CHECK(write(c, "abc", 3) == 3 && write(s, "de", 2) == 2, "write");
	msleep(50);
	CHECK(unwatch(dev, 1) == 0, "unwatch");
	CHECK(stats(dev, 0, AGENTFILT_STATS_FILE, &st) == 0, "stats");
	CHECK(st.watches == 1 && st.counters.passed == 2 && st.counters.data_ready == 2,
	      "watches %u passed %llu", st.watches, (unsigned long long)st.counters.passed);
	close_pair(c, s);
	close(dev);
	return 0;
}

static int uring_read_once(int dev, int multishot)
{
	struct agentfilt_event ev[8];
	struct io_uring ring;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring_buf_ring *br = NULL;
	int c, s, ret, got = 0;

	CHECK(!io_uring_queue_init(8, &ring, 0), "io_uring");
	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 77) == 0, "watch");
	sqe = io_uring_get_sqe(&ring);
	if (multishot) {
		struct io_uring_buf_reg reg = { 0 };

		br = aligned_alloc(4096, 4096);
		memset(br, 0, 4096);
		reg.ring_addr = (unsigned long)br;
		reg.ring_entries = 8;
		reg.bgid = 1;
		CHECK(!io_uring_register_buf_ring(&ring, &reg, 0), "buf ring");
		io_uring_buf_ring_init(br);
		for (int i = 0; i < 8; i++)
			io_uring_buf_ring_add(br, malloc(256), 256, i, io_uring_buf_ring_mask(8), i);
		io_uring_buf_ring_advance(br, 8);
		io_uring_prep_rw(49 /* IORING_OP_READ_MULTISHOT */, sqe, dev, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = 1;
	} else {
		io_uring_prep_read(sqe, dev, ev, sizeof(ev), -1);
	}
	io_uring_submit(&ring);
	for (int round = 0; round < 3; round++) {
		struct __kernel_timespec ts = { 2, 0 };

		CHECK(write(c, "xyz", 3) == 3, "write");
		ret = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
		CHECK(!ret, "no completion: %s", strerror(-ret));
		CHECK(cqe->res == sizeof(ev[0]), "res %d", cqe->res);
		got++;
		if (multishot)
			CHECK(cqe->flags & IORING_CQE_F_MORE, "multishot ended");
		io_uring_cqe_seen(&ring, cqe);
		{
			char b[16];

			while (recv(s, b, sizeof(b), MSG_DONTWAIT) > 0)
				;
		}
		if (!multishot) {
			sqe = io_uring_get_sqe(&ring);
			io_uring_prep_read(sqe, dev, ev, sizeof(ev), -1);
			io_uring_submit(&ring);
		}
	}
	close_pair(c, s);
	unwatch(dev, 77);
	io_uring_queue_exit(&ring);	/* cancels the armed read */
	CHECK(got == 3, "got %d", got);
	return 0;
}

static int t_uring_read(void)
{
	int dev = dev_open(), r = uring_read_once(dev, 0);

	close(dev);
	return r;
}

static int t_uring_multishot(void)
{
	struct io_uring_probe *p = io_uring_get_probe();
	int dev, r;

	if (!p || !io_uring_opcode_supported(p, 49)) {
		free(p);
		snprintf(why, sizeof(why), "kernel has no IORING_OP_READ_MULTISHOT (needs 6.7)");
		return 1;
	}
	free(p);
	dev = dev_open();
	r = uring_read_once(dev, 1);
	close(dev);
	return r;
}

/* ---- lifetime tests ---- */

static int t_close_pending(void)
{
	struct agentfilt_event ev[2];
	int dev = dev_open(), c, s, n, base = live_watches();

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 9) == 0, "watch");
	CHECK(write(c, "pending", 7) == 7, "write");
	msleep(50);
	close(s);		/* event pending, socket gone from the fd table */
	close(c);
	msleep(50);
	n = read_events(dev, ev, 2);
	CHECK(n == 1 && ev[0].token == 9, "n %d", n);
	CHECK(unwatch(dev, 9) == 0, "unwatch after close");
	CHECK(wait_live(base, 1000) == base, "live watches %d, want %d", live_watches(), base);
	/* Again, but close the file with the event still pending. */
	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 10) == 0, "watch");
	CHECK(write(c, "pending", 7) == 7, "write");
	msleep(50);
	close(s);
	close(dev);
	close(c);
	CHECK(wait_live(base, 1000) == base, "live watches %d, want %d", live_watches(), base);
	return 0;
}

/* Closing the file restores the sockets: they keep working. */
static int t_close_file_restores(void)
{
	struct agentfilt_event ev;
	int dev = dev_open(), c, s;

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 1) == 0, "watch");
	close(dev);
	dev = dev_open();
	CHECK(watch(dev, s, 1) == 0, "re-watch after the file closed");
	CHECK(unwatch(dev, 1) == 0, "unwatch");
	CHECK(woken_by_peer(c, s), "socket's reader no longer woken");
	CHECK(read_events(dev, &ev, 1) == 0, "an event after unwatch");
	close_pair(c, s);
	close(dev);
	return 0;
}

static int t_kill_1000(void)
{
	enum { N = 1000 };
	struct rlimit rl = { 4 * N + 64, 4 * N + 64 };
	int base = live_watches(), p[2], status, n = 0;
	long objs0 = tcp_slab_objs(), objs;
	pid_t pid;

	CHECK(!pipe(p), "pipe");
	pid = fork();
	if (pid == 0) {
		int dev = dev_open(), c, s;

		if (setrlimit(RLIMIT_NOFILE, &rl))
			_exit(1);
		for (int i = 0; i < N; i++) {
			if (tcp_pair(&c, &s) || watch(dev, s, i) || write(c, "x", 1) != 1)
				_exit(1);
		}
		if (write(p[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	CHECK(read(p[0], &status, 1) == 1, "child failed to set up");
	close(p[0]);
	n = live_watches();
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	CHECK(n == base + N, "live watches %d before kill, want %d", n, base + N);
	CHECK(wait_live(base, 5000) == base, "live watches %d after kill", live_watches());
	/* What a leaked sock_hold would keep: the TCP slab objects. */
	objs = wait_tcp_slab(objs0 + 16, 10000);
	CHECK(objs <= objs0 + 16, "TCP slab objects %ld, were %ld", objs, objs0);
	return 0;
}

struct blaster {
	int fd;
	volatile int stop;
	long sent;
};

static void *blast(void *arg)
{
	struct blaster *b = arg;
	char buf[1024];

	memset(buf, 'z', sizeof(buf));
	while (!b->stop) {
		ssize_t n = send(b->fd, buf, 1 + (b->sent % sizeof(buf)), MSG_DONTWAIT);

		if (n > 0)
			b->sent += n;
		else
			usleep(100);
	}
	return NULL;
}

static int t_cycles_1000(void)
{
	struct agentfilt_event ev[4];
	struct blaster b = { 0 };
	pthread_t th;
	char buf[65536];
	long got = 0;
	int dev = dev_open(), c, s, base = live_watches(), events = 0;

	CHECK(!tcp_pair(&c, &s), "pair");
	b.fd = c;
	pthread_create(&th, NULL, blast, &b);
	for (int i = 0; i < 1000; i++) {
		ssize_t n;

		CHECK(watch(dev, s, i) == 0, "watch %d: %s", i, strerror(errno));
		/* Every tenth cycle, wait for the traffic to raise an event. */
		if (i % 10 == 0)
			wait_readable(dev, 200);
		events += read_events(dev, ev, 4) > 0;
		while ((n = recv(s, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
			got += n;
		CHECK(unwatch(dev, i) == 0, "unwatch %d", i);
	}
	b.stop = 1;
	pthread_join(th, NULL);
	for (;;) {
		ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0) {
			got += n;
			continue;
		}
		if (got >= b.sent)
			break;
		if (wait_readable(s, 1000) != 1)
			break;
	}
	CHECK(got == b.sent, "received %ld of %ld bytes", got, b.sent);
	CHECK(events > 0 && b.sent > 0, "no events under traffic (%d)", events);
	CHECK(live_watches() == base, "live watches %d", live_watches());
	close_pair(c, s);
	close(dev);
	return 0;
}

/*
 * Callbacks racing with unwatch and with the file's release: 16 pairs
 * carry traffic from a thread on the other CPU while this one watches,
 * unwatches, reads events and closes and reopens the device, for 3 s.
 */
struct racer {
	int c[16];
	volatile int stop;
	long sent;
};

static void *race_traffic(void *arg)
{
	struct racer *r = arg;
	char buf[512];
	int i = 0;

	memset(buf, 'r', sizeof(buf));
	while (!r->stop) {
		ssize_t n = send(r->c[i % 16], buf, 1 + i % sizeof(buf), MSG_DONTWAIT);

		i++;

		if (n > 0)
			r->sent += n;
	}
	return NULL;
}

/* data_ready == passed + coalesced over the file, past and present. */
static int counters_add_up(int dev, const char *when)
{
	struct agentfilt_stats st;

	CHECK(stats(dev, 0, AGENTFILT_STATS_FILE, &st) == 0, "%s: stats", when);
	CHECK(st.counters.data_ready == st.counters.passed + st.counters.coalesced,
	      "%s: data_ready %llu != passed %llu + coalesced %llu", when,
	      (unsigned long long)st.counters.data_ready, (unsigned long long)st.counters.passed,
	      (unsigned long long)st.counters.coalesced);
	return 0;
}

static int t_race(void)
{
	struct agentfilt_event ev[32];
	struct racer r = { 0 };
	struct timespec t0;
	pthread_t th;
	char buf[65536];
	int s[16], dev = dev_open(), base = live_watches(), rounds = 0, watched[16] = { 0 };
	long got = 0;

	for (int i = 0; i < 16; i++) {
		CHECK(!tcp_pair(&r.c[i], &s[i]), "pair");
		fcntl(s[i], F_SETFL, O_NONBLOCK);
	}
	pthread_create(&th, NULL, race_traffic, &r);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ms_since(&t0) < 3000) {
		for (int i = 0; i < 16; i++) {
			int ret = watch(dev, s[i], i), want = watched[i] ? -EEXIST : 0;

			if (ret != want) {
				r.stop = 1;
				pthread_join(th, NULL);
				return fail("round %d: watch %d returned %d, want %d", rounds, i,
					    ret, want);
			}
			watched[i] = 1;
		}
		read_events(dev, ev, 32);
		for (int i = 0; i < 16; i++) {
			ssize_t n;
			int ret;

			while ((n = recv(s[i], buf, sizeof(buf), 0)) > 0)
				got += n;
			if (i % 2 == 0)
				continue;
			ret = unwatch(dev, i);
			watched[i] = 0;
			if (ret) {
				r.stop = 1;
				pthread_join(th, NULL);
				return fail("round %d: unwatch %d returned %d", rounds, i, ret);
			}
		}
		if (++rounds % 8 == 0) {	/* release with watches live */
			if (counters_add_up(dev, "under traffic")) {
				r.stop = 1;
				pthread_join(th, NULL);
				return -1;
			}
			close(dev);
			dev = dev_open();
			memset(watched, 0, sizeof(watched));
		}
	}
	r.stop = 1;
	pthread_join(th, NULL);
	if (counters_add_up(dev, "at the end"))
		return -1;
	close(dev);
	for (int i = 0; i < 16; i++) {
		ssize_t n;

		shutdown(r.c[i], SHUT_WR);
		while ((n = recv(s[i], buf, sizeof(buf), 0)) != 0) {
			if (n > 0)
				got += n;
			else if (wait_readable(s[i], 2000) != 1)
				break;
		}
		close_pair(r.c[i], s[i]);
	}
	CHECK(got == r.sent, "received %ld of %ld bytes", got, r.sent);
	CHECK(wait_live(base, 1000) == base, "live watches %d", live_watches());
	printf("# race: %d rounds, %ld bytes\n", rounds, got);
	return 0;
}

/*
 * A watched socket whose connect fails may listen afterwards; its children
 * are clones with our callbacks and no watch. They must get the original
 * callbacks back and keep working.
 */
static int t_clone_of_watched(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in unspec = { .sin_family = AF_UNSPEC };
	socklen_t len = sizeof(a);
	int dev = dev_open(), base = live_watches(), l, first, c, d, x, err = 0, r;

	l = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(!bind(l, (void *)&a, sizeof(a)) && !listen(l, 0), "listen");
	getsockname(l, (void *)&a, &len);
	first = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(!connect(first, (void *)&a, sizeof(a)), "first connect");
	msleep(50);
	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	r = connect(c, (void *)&a, sizeof(a));
	CHECK(r < 0 && errno == EINPROGRESS, "connect did not stay in progress");
	CHECK(watch(dev, c, 1) == 0, "watch in SYN_SENT");
	close(l);	/* the SYN retransmit meets a closed port */
	CHECK(wait_event_on(c, POLLOUT, 5000) == 1, "connect did not fail");
	len = sizeof(err);
	getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len);
	CHECK(err == ECONNREFUSED, "SO_ERROR %d", err);
	CHECK(!connect(c, (void *)&unspec, sizeof(unspec)), "disconnect: %s", strerror(errno));
	a.sin_port = 0;
	CHECK(!listen(c, 8), "listen on the watched socket: %s", strerror(errno));
	len = sizeof(a);
	getsockname(c, (void *)&a, &len);
	d = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(!connect(d, (void *)&a, sizeof(a)), "connect to the clone's parent");
	fcntl(c, F_SETFL, 0);
	x = accept(c, NULL, NULL);
	CHECK(x >= 0, "accept");
	CHECK(woken_by_peer(d, x), "the clone's reader was not woken");
	CHECK(woken_by_peer(x, d), "the clone's peer was not woken");
	CHECK(unwatch(dev, 1) == 0, "unwatch");
	close(x);
	close(d);
	close(c);
	close(first);
	close(dev);
	CHECK(wait_live(base, 1000) == base, "live watches %d", live_watches());
	return 0;
}

int main(int argc, char **argv)
{
	int smoke = argc > 1 && !strcmp(argv[1], "smoke");

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (smoke) {
		run("smoke: version", t_version);
		run("smoke: data arrival passes", t_data_passes);
		return failures ? 1 : 0;
	}
	run("ioctl: version query", t_version);
	run("ioctl: device node is 0600 root", t_devnode);
	run("ioctl: non-root open refused", t_nonroot);
	run("ioctl: bad, huge and negative fds", t_bad_fd);
	run("ioctl: non-socket fds", t_not_socket);
	run("ioctl: UDP and unix sockets", t_not_tcp);
	run("ioctl: listening socket", t_listening);
	run("ioctl: unconnected socket", t_unconnected);
	run("ioctl: double watch and duplicate token", t_double);
	run("ioctl: unwatch and stats of unknown tokens", t_unknown);
	run("ioctl: bad flags, pointers, sizes, commands; huge token", t_bad_values);
	run("ioctl: socket of another process", t_other_process);
	run("event: data arrival passes", t_data_passes);
	run("event: other readers still woken (chained)", t_chained);
	run("event: connect counted, not passed", t_connect_counted);
	run("event: shutdown counted, not passed", t_shutdown_counted);
	run("event: write space counted, not passed", t_write_space_counted);
	run("event: reset counted, not passed", t_reset_counted);
	run("event: arrivals coalesce into one pending event", t_coalesce);
	run("event: 64 watches, one event each", t_many_events);
	run("event: file totals include past watches", t_file_stats);
	run("event: io_uring read completions", t_uring_read);
	run("event: io_uring multishot read completions", t_uring_multishot);
	run("lifetime: socket closed with an event pending", t_close_pending);
	run("lifetime: closing the file restores the sockets", t_close_file_restores);
	run("lifetime: kill a process with 1,000 watches", t_kill_1000);
	run("lifetime: 1,000 watch/unwatch cycles under traffic", t_cycles_1000);
	run("lifetime: watch, unwatch and close racing with traffic (3 s)", t_race);
	run("lifetime: clones of a watched socket get the original callbacks", t_clone_of_watched);
	return failures ? 1 : 0;
}
