// SPDX-License-Identifier: MIT
/*
 * pingpong: the benchmark's latency probe.
 *
 *   bench_pingpong serve PORT            echo every byte back (a thread per client)
 *   bench_pingpong ping PORT COUNT SIZE  COUNT round trips of SIZE bytes; prints
 *                                        one JSON line of percentiles in microseconds
 *
 * TCP_NODELAY on every socket; the first 10% of round trips warm up and are not
 * counted. It only ever talks to 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static void *echo(void *arg)
{
	int fd = (int)(long)arg;
	char buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, n - off);

			if (w <= 0)
				goto out;
			off += w;
		}
	}
out:
	close(fd);
	return NULL;
}

static int serve(int port)
{
	struct sockaddr_in a = loopback(port);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 128)) {
		perror("pingpong: listen");
		return 1;
	}
	for (;;) {
		int c = accept(l, NULL, NULL);
		pthread_t t;

		if (c < 0)
			continue;
		nodelay(c);
		if (pthread_create(&t, NULL, echo, (void *)(long)c) == 0)
			pthread_detach(t);
		else
			close(c);
	}
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int ping(int port, int count, int size)
{
	struct sockaddr_in a = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM, 0), warm = count / 10;
	double *lat = calloc(count, sizeof(double));
	char *buf = malloc(size);

	if (!lat || !buf || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		perror("pingpong: connect");
		return 1;
	}
	nodelay(fd);
	memset(buf, 'p', size);
	for (int i = 0; i < warm + count; i++) {
		double t0 = now_us();

		if (write(fd, buf, size) != size) {
			perror("pingpong: write");
			return 1;
		}
		for (int got = 0; got < size;) {
			ssize_t n = read(fd, buf + got, size - got);

			if (n <= 0) {
				fprintf(stderr, "pingpong: read: %s\n", n ? strerror(errno) : "EOF");
				return 1;
			}
			got += n;
		}
		if (i >= warm)
			lat[i - warm] = now_us() - t0;
	}
	qsort(lat, count, sizeof(double), cmp);
	printf("{\"count\": %d, \"size\": %d, \"p50_us\": %.1f, \"p90_us\": %.1f, "
	       "\"p99_us\": %.1f, \"max_us\": %.1f}\n",
	       count, size, lat[count / 2], lat[count * 9 / 10], lat[count * 99 / 100],
	       lat[count - 1]);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "ping"))
		return ping(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	fprintf(stderr, "usage: bench_pingpong serve PORT | ping PORT COUNT SIZE\n");
	return 2;
}
