// SPDX-License-Identifier: MIT
/*
 * chatter: the event-path benchmark's workload: many sessions, each a
 * lock-step ping-pong of small messages, so that every message is one
 * data-arrival event at every hop and nothing is batched into a bigger read.
 *
 *   bench_chatter serve PORT             echo every byte back (epoll, one thread)
 *   bench_chatter hold PORT              the same, and prints how many connections it
 *                                        holds (one line each time that changes): the
 *                                        far end of the idle-sessions scenario
 *   bench_chatter run PORT SESSIONS SECONDS SIZE [PID...]
 *                        SESSIONS connections, each sending SIZE bytes and waiting
 *                        for their echo, again and again, for SECONDS; prints one
 *                        JSON line. For each PID (the proxies under test) it reads
 *                        the CPU time (/proc/PID/stat, all threads) at the start and
 *                        the end of exactly that interval and sends it SIGUSR1 at both
 *                        (agentproxy prints its counters on SIGUSR1), and it reads the
 *                        whole machine's busy and total time (/proc/stat) too.
 *
 * TCP_NODELAY on every socket. Both ends are single-threaded epoll loops so
 * that the workload itself costs little CPU next to the proxy it drives.
 * It only ever talks to 127.0.0.1. Static-linkable (the qemu guest has no libc).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE 65536

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* utime + stime of a process, all its threads, in clock ticks; -1 if gone. */
static long long proc_ticks(int pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

/* The whole machine: busy (not idle, not iowait) and total clock ticks. */
static void machine_ticks(unsigned long long *busy, unsigned long long *total)
{
	unsigned long long v[10] = { 0 };
	FILE *f = fopen("/proc/stat", "r");

	*busy = *total = 0;
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 4) {
		/* guest and guest_nice (8, 9) are already in user and nice */
		for (int i = 0; i < 8; i++)
			*total += v[i];
		*busy = *total - v[3] - v[4];
	}
	fclose(f);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The echo end: what a connection sends comes back; a reader that does not
 * read stalls only itself (its writes are blocking, as the workload is
 * lock-step and never has more than SIZE bytes in flight per connection). */
static int serve(int port, int report)
{
	long open = 0, told = -1;

	struct sockaddr_in a = loopback(port);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0), ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN }, evs[256];
	static char buf[MAX_SIZE];

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1024)) {
		perror("chatter: listen");
		return 1;
	}
	ev.data.fd = l;
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == l) {
				int c = accept(l, NULL, NULL);

				if (c < 0)
					continue;
				nodelay(c);
				ev.data.fd = c;
				epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				open++;
				continue;
			}
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r <= 0) {
				close(fd);
				open--;
				continue;
			}
			for (ssize_t off = 0; off < r;) {
				ssize_t w = write(fd, buf + off, r - off);

				if (w <= 0) {
					close(fd);
					open--;
					break;
				}
				off += w;
			}
		}
		if (report && open != told) {
			printf("%ld\n", open);
			fflush(stdout);
			told = open;
		}
	}
}

struct conn {
	int fd;
	int got;            /* bytes of the current echo received */
	unsigned long trips; /* round trips on this connection */
};

struct load {
	int port, sessions, size;
	double seconds;
	unsigned long reconnect; /* 0: never; else a new connection after this many trips */
};

/* A connected, registered socket for c; 0 or -1 (errno set). */
static int open_conn(int ep, const struct load *ld, struct conn *c)
{
	struct sockaddr_in a = loopback(ld->port);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	c->got = 0;
	c->trips = 0;
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	nodelay(c->fd);
	return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static int run(const struct load *ld, int npids, char **pidv)
{
	int pids[64], size = ld->size;
	long long cpu0[64], cpu1[64];
	unsigned long long busy0, total0, busy1, total1, trips = 0, conns = 0;
	struct conn *cs = calloc(ld->sessions, sizeof(*cs));
	struct epoll_event evs[256];
	static char out[MAX_SIZE], in[MAX_SIZE];
	int ep = epoll_create1(0);

	if (!cs || size < 1 || size > MAX_SIZE || ld->sessions < 1 || ld->seconds <= 0) {
		fprintf(stderr, "chatter: bad arguments\n");
		return 2;
	}
	memset(out, 'c', size);
	for (int i = 0; i < ld->sessions; i++)
		if (open_conn(ep, ld, &cs[i])) {
			perror("chatter: connect");
			return 1;
		}
	/* One warm-up trip per session: every session is made end to end before
	 * the clock starts. */
	for (int i = 0; i < ld->sessions; i++) {
		if (write(cs[i].fd, out, size) != size) {
			perror("chatter: write");
			return 1;
		}
		for (int got = 0; got < size;) {
			ssize_t r = read(cs[i].fd, in, size - got);

			if (r <= 0) {
				fprintf(stderr, "chatter: warm-up read: %s\n", r ? strerror(errno) : "EOF");
				return 1;
			}
			got += r;
		}
	}
	if (npids > 64)
		npids = 64;
	for (int i = 0; i < npids; i++)
		pids[i] = atoi(pidv[i]);
	for (int i = 0; i < npids; i++) {
		kill(pids[i], SIGUSR1);
		cpu0[i] = proc_ticks(pids[i]);
	}
	machine_ticks(&busy0, &total0);
	double t0 = now_s(), end = t0 + ld->seconds, t = t0;

	for (int i = 0; i < ld->sessions; i++)
		if (write(cs[i].fd, out, size) != size) {
			perror("chatter: write");
			return 1;
		}
	while ((t = now_s()) < end) {
		int n = epoll_wait(ep, evs, 256, 100);

		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			ssize_t r = read(c->fd, in, size - c->got);

			if (r <= 0) {
				fprintf(stderr, "chatter: read: %s\n", r ? strerror(errno) : "EOF");
				return 1;
			}
			c->got += r;
			if (c->got < size)
				continue;
			c->got = 0;
			trips++;
			if (ld->reconnect && ++c->trips >= ld->reconnect) {
				close(c->fd); /* also leaves the epoll set */
				conns++;
				if (open_conn(ep, ld, c)) {
					perror("chatter: reconnect");
					return 1;
				}
			}
			if (write(c->fd, out, size) != size) {
				perror("chatter: write");
				return 1;
			}
		}
	}
	machine_ticks(&busy1, &total1);
	for (int i = 0; i < npids; i++) {
		cpu1[i] = proc_ticks(pids[i]);
		kill(pids[i], SIGUSR1);
	}
	printf("{\"sessions\": %d, \"size\": %d, \"reconnect_every\": %lu, \"seconds\": %.3f, "
	       "\"round_trips\": %llu, \"round_trips_per_s\": %.1f, \"new_connections\": %llu, "
	       "\"clk_tck\": %ld, \"machine_busy_ticks\": %llu, \"machine_total_ticks\": %llu, "
	       "\"cpu_ticks\": {",
	       ld->sessions, size, ld->reconnect, t - t0, trips, trips / (t - t0), conns,
	       sysconf(_SC_CLK_TCK), busy1 - busy0, total1 - total0);
	for (int i = 0; i < npids; i++)
		printf("%s\"%d\": %lld", i ? ", " : "", pids[i],
		       cpu0[i] < 0 || cpu1[i] < 0 ? -1 : cpu1[i] - cpu0[i]);
	printf("}}\n");
	for (int i = 0; i < ld->sessions; i++)
		close(cs[i].fd);
	return 0;
}

static const char usage[] =
	"usage: bench_chatter serve PORT | hold PORT\n"
	"       bench_chatter run [-r TRIPS] PORT SESSIONS SECONDS SIZE [PID...]\n"
	"  -r TRIPS  each session closes and reconnects after TRIPS round trips\n"
	"            (default 0: never), so that connects and closes are events too\n";

int main(int argc, char **argv)
{
	struct load ld = { 0 };
	int a = 2;

	signal(SIGPIPE, SIG_IGN);
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]), 0);
	if (argc == 3 && !strcmp(argv[1], "hold"))
		return serve(atoi(argv[2]), 1);
	if (argc >= 2 && !strcmp(argv[1], "run")) {
		if (argc > a + 1 && !strcmp(argv[a], "-r")) {
			ld.reconnect = strtoul(argv[a + 1], NULL, 10);
			a += 2;
		}
		if (argc >= a + 4) {
			ld.port = atoi(argv[a]);
			ld.sessions = atoi(argv[a + 1]);
			ld.seconds = atof(argv[a + 2]);
			ld.size = atoi(argv[a + 3]);
			return run(&ld, argc - a - 4, argv + a + 4);
		}
	}
	fputs(usage, stderr);
	return 2;
}
