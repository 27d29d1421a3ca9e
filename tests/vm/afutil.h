/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The helpers of the guest test programs of agentfilt.ko (aftest.c,
 * afhostile.c): TAP output, ioctl wrappers, loopback pairs, waiting.
 * Each program is one translation unit that includes this once.
 */
#ifndef AFUTIL_H
#define AFUTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agentfilt.h"

static int failures;
static char why[512];

/* Records why the current test failed; returns -1. */
static inline int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return -1;
}

#define CHECK(cond, ...) do { if (!(cond)) return fail(__VA_ARGS__); } while (0)

static inline void run(const char *name, int (*fn)(void))
{
	int ret;

	why[0] = 0;
	ret = fn();
	if (ret == 0)
		printf("ok - %s\n", name);
	else if (ret == 1)
		printf("ok - %s # SKIP %s\n", name, why);
	else {
		printf("not ok - %s # %s\n", name, why);
		failures++;
	}
	fflush(stdout);
}

static inline int dev_open(void)
{
	return open(AGENTFILT_DEVICE, O_RDWR | O_CLOEXEC);
}

static inline int watch(int dev, int fd, uint64_t token)
{
	struct agentfilt_watch w = { .fd = fd, .token = token };

	return ioctl(dev, AGENTFILT_IOC_WATCH, &w) ? -errno : 0;
}

static inline int unwatch(int dev, uint64_t token)
{
	struct agentfilt_unwatch u = { .token = token };

	return ioctl(dev, AGENTFILT_IOC_UNWATCH, &u) ? -errno : 0;
}

static inline int stats(int dev, uint64_t token, uint32_t flags, struct agentfilt_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->token = token;
	st->flags = flags;
	return ioctl(dev, AGENTFILT_IOC_STATS, st) ? -errno : 0;
}

static inline int listener(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (void *)&a, sizeof(a)) || listen(l, 4096) ||
	    getsockname(l, (void *)&a, &len))
		return -1;
	*port = ntohs(a.sin_port);
	return l;
}

/* A connected loopback pair: c (client) and s (accepted). */
static inline int tcp_pair(int *c, int *s)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1;
	int port;
	int l = listener(&port);

	if (l < 0)
		return -1;
	a.sin_port = htons(port);
	*c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*c < 0 || connect(*c, (void *)&a, sizeof(a)))
		return -1;
	*s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	close(l);
	if (*s < 0)
		return -1;
	setsockopt(*c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

static inline void close_pair(int c, int s)
{
	close(c);
	close(s);
}

static inline void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Reads events without blocking; returns the count (or -errno). */
static inline int read_events(int dev, struct agentfilt_event *ev, int max)
{
	ssize_t n;
	int fl = fcntl(dev, F_GETFL);

	fcntl(dev, F_SETFL, fl | O_NONBLOCK);
	n = read(dev, ev, sizeof(*ev) * max);
	fcntl(dev, F_SETFL, fl);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	return n / sizeof(*ev);
}

static inline long ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * 1 if fd is readable or becomes so within ms. At its timeout poll() finds
 * readiness even without a wakeup: that counts as not woken (0).
 */
static inline int wait_event_on(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	struct timespec t0;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = poll(&p, 1, ms);
	if (r == 1 && ms > 0 && ms_since(&t0) >= ms)
		return 0;
	return r;
}

static inline int wait_readable(int fd, int ms)
{
	return wait_event_on(fd, POLLIN, ms);
}

/* Is a poll() on s woken when c writes to it 200 ms later? */
static inline int woken_by_peer(int c, int s)
{
	char buf[16];
	pid_t pid = fork();
	int r;

	if (pid == 0) {
		msleep(200);
		_exit(write(c, "x", 1) != 1);
	}
	r = wait_readable(s, 3000);
	waitpid(pid, NULL, 0);
	return r == 1 && read(s, buf, sizeof(buf)) == 1;
}

static inline int live_watches(void)
{
	char buf[32] = "";
	int fd = open("/sys/module/agentfilt/parameters/watches", O_RDONLY);

	if (fd < 0)
		return -1;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = 0;
	close(fd);
	return atoi(buf);
}

/* Waits up to ms for the live watch count to reach want. */
static inline int wait_live(int want, int ms)
{
	int n = -1;

	for (int t = 0; t <= ms; t += 10) {
		n = live_watches();
		if (n == want)
			break;
		msleep(10);
	}
	return n;
}


/*
 * Full TCP sockets allocated (the "TCP" and "TCPv6" slab caches): what a
 * leaked sock_hold keeps. (sockstat's "alloc" drops at tcp_v4_destroy_sock,
 * before the last sock_put.) The caches are shrunk first so that free
 * objects parked on per-CPU slabs do not count as active.
 */
static inline long tcp_slab_objs(void)
{
	static const char *const caches[] = { "TCP", "TCPv6" };
	char line[512], name[64];
	long total = 0, active;
	FILE *f;

	for (unsigned int i = 0; i < sizeof(caches) / sizeof(caches[0]); i++) {
		int fd;

		snprintf(name, sizeof(name), "/sys/kernel/slab/%s/shrink", caches[i]);
		fd = open(name, O_WRONLY);
		if (fd >= 0) {
			if (write(fd, "1", 1) != 1) {
				/* best effort: the counts are then less exact */
			}
			close(fd);
		}
	}
	f = fopen("/proc/slabinfo", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s %ld", name, &active) != 2)
			continue;
		if (!strcmp(name, "TCP") || !strcmp(name, "TCPv6"))
			total += active;
	}
	fclose(f);
	return total;
}

/* Waits up to ms for the TCP slab objects to drop to at most want. */
static inline long wait_tcp_slab(long want, int ms)
{
	long n = -1;

	for (int t = 0; t <= ms; t += 20) {
		n = tcp_slab_objs();
		if (n >= 0 && n <= want)
			break;
		msleep(20);
	}
	return n;
}

/* Sets a module parameter; 0 or -errno. */
static inline int set_param(const char *name, const char *val)
{
	char path[128];
	int fd, r = 0;

	snprintf(path, sizeof(path), "/sys/module/agentfilt/parameters/%s", name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		r = -errno;
	close(fd);
	return r;
}

#endif /* AFUTIL_H */
