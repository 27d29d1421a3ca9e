// SPDX-License-Identifier: MIT
/*
 * relay: the benchmark's naive TCP relay, the baseline agentproxy must beat.
 *
 *   bench_relay LISTEN_PORT TARGET_PORT [BUFFER_BYTES]
 *
 * Accepts on 127.0.0.1:LISTEN_PORT; for each client it connects to
 * 127.0.0.1:TARGET_PORT and copies bytes with plain blocking read()/write()
 * through a 1 MiB buffer, one thread per direction. EOF on one side becomes
 * shutdown(SHUT_WR) on the other; the pair is closed when both directions are
 * done. No epoll, no splice, no tuning: the simplest correct relay.
 * It only ever talks to 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t buf_size = 1u << 20;
static struct sockaddr_in target;

struct pair {
	int client, server;
	atomic_int live; /* directions still copying */
};

struct dir {
	struct pair *p;
	int from, to;
};

static void pair_put(struct pair *p)
{
	if (atomic_fetch_sub(&p->live, 1) == 1) {
		close(p->client);
		close(p->server);
		free(p);
	}
}

static void *copy(void *arg)
{
	struct dir *d = arg;
	char *buf = malloc(buf_size);

	if (buf) {
		for (;;) {
			ssize_t n = read(d->from, buf, buf_size);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				/* EOF passes through; an error resets both ends. */
				if (n < 0) {
					struct linger lg = { 1, 0 };

					setsockopt(d->to, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
					shutdown(d->to, SHUT_RDWR);
					shutdown(d->from, SHUT_RDWR);
				} else {
					shutdown(d->to, SHUT_WR);
				}
				break;
			}
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(d->to, buf + off, (size_t)(n - off));

				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0) {
					shutdown(d->from, SHUT_RDWR);
					shutdown(d->to, SHUT_RDWR);
					goto out;
				}
				off += w;
			}
		}
	}
out:
	free(buf);
	pair_put(d->p);
	free(d);
	return NULL;
}

static int start(struct pair *p, int from, int to)
{
	struct dir *d = malloc(sizeof(*d));
	pthread_t t;
	pthread_attr_t at;

	if (!d)
		return -1;
	d->p = p;
	d->from = from;
	d->to = to;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 64 * 1024);
	if (pthread_create(&t, &at, copy, d) != 0) {
		free(d);
		pthread_attr_destroy(&at);
		return -1;
	}
	pthread_attr_destroy(&at);
	return 0;
}

static int port_arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return (*end || v <= 0 || v > 65535) ? -1 : (int)v;
}

int main(int argc, char **argv)
{
	struct sockaddr_in la = { .sin_family = AF_INET };
	int lport, tport, lfd, one = 1;

	if (argc < 3 || argc > 4 || (lport = port_arg(argv[1])) < 0 ||
	    (tport = port_arg(argv[2])) < 0) {
		fprintf(stderr, "usage: %s LISTEN_PORT TARGET_PORT [BUFFER_BYTES]\n", argv[0]);
		return 2;
	}
	if (argc == 4)
		buf_size = strtoul(argv[3], NULL, 0);
	if (buf_size < 1024) {
		fprintf(stderr, "relay: buffer too small\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	la.sin_port = htons((unsigned short)lport);
	target = la;
	target.sin_port = htons((unsigned short)tport);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&la, sizeof(la)) || listen(lfd, 128)) {
		perror("relay: listen");
		return 1;
	}
	fprintf(stderr, "relay: 127.0.0.1:%d -> 127.0.0.1:%d, %zu-byte buffers\n", lport, tport,
		buf_size);
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), s;
		struct pair *p;

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
				continue;
			perror("relay: accept");
			return 1;
		}
		s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&target, sizeof(target))) {
			perror("relay: connect");
			if (s >= 0)
				close(s);
			close(c);
			continue;
		}
		p = malloc(sizeof(*p));
		if (!p) {
			close(s);
			close(c);
			continue;
		}
		p->client = c;
		p->server = s;
		atomic_init(&p->live, 2);
		if (start(p, c, s)) {
			close(s);
			close(c);
			free(p);
			continue;
		}
		if (start(p, s, c)) {
			/* The first thread owns the pair now; end its copy. */
			shutdown(c, SHUT_RDWR);
			shutdown(s, SHUT_RDWR);
			pair_put(p);
		}
	}
}
