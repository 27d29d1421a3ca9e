// SPDX-License-Identifier: GPL-2.0
/*
 * xfer: the end points of the guest's end-to-end transfer (no python3 in
 * the guest).
 *   xfer serve PORT OUT   accept one client, write what it sends to OUT and
 *                         echo it back; on EOF shut down and exit.
 *   xfer send PORT IN OUT connect to 127.0.0.1:PORT (retrying while the
 *                         proxy starts), send IN, shut down the write side,
 *                         and write the echo to OUT until EOF.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int die(const char *what)
{
	fprintf(stderr, "xfer: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			die("write");
		p += k;
		n -= k;
	}
}

static int serve(int port, const char *out)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0), c, o;
	static char buf[65536];
	ssize_t n;

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (void *)&a, sizeof(a)) || listen(l, 4))
		die("listen");
	c = accept(l, NULL, NULL);
	if (c < 0)
		die("accept");
	o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (o < 0)
		die(out);
	while ((n = read(c, buf, sizeof(buf))) > 0) {
		write_all(o, buf, n);
		write_all(c, buf, n);
	}
	if (n < 0)
		die("read");
	shutdown(c, SHUT_WR);
	close(o);
	close(c);
	return 0;
}

static int send_file(int port, const char *in, const char *out)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	static char buf[65536], rbuf[65536];
	size_t have = 0, off = 0;
	int s = -1, i, f, o, eof_in = 0;

	for (i = 0; i < 100; i++) {
		s = socket(AF_INET, SOCK_STREAM, 0);
		if (!connect(s, (void *)&a, sizeof(a)))
			break;
		close(s);
		s = -1;
		usleep(100000);
	}
	if (s < 0)
		die("connect");
	f = open(in, O_RDONLY);
	o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (f < 0 || o < 0)
		die("open");
	fcntl(s, F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		ssize_t n;

		if (!eof_in && off == have) {
			n = read(f, buf, sizeof(buf));
			if (n < 0)
				die("read input");
			if (n == 0) {
				eof_in = 1;
				shutdown(s, SHUT_WR);
			}
			have = n > 0 ? n : 0;
			off = 0;
		}
		if (off < have)
			p.events |= POLLOUT;
		if (poll(&p, 1, 30000) <= 0)
			die("poll timeout");
		if (p.revents & POLLOUT) {
			n = send(s, buf + off, have - off, 0);
			if (n > 0)
				off += n;
			else if (errno != EAGAIN)
				die("send");
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(s, rbuf, sizeof(rbuf), 0);
			if (n == 0)
				break;
			if (n < 0 && errno != EAGAIN)
				die("recv");
			if (n > 0)
				write_all(o, rbuf, n);
		}
	}
	close(o);
	close(s);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]), argv[3]);
	if (argc == 5 && !strcmp(argv[1], "send"))
		return send_file(atoi(argv[2]), argv[3], argv[4]);
	fprintf(stderr, "usage: xfer serve PORT OUT | xfer send PORT IN OUT\n");
	return 2;
}
