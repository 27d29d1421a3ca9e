// SPDX-License-Identifier: MIT
/*
 * faultrelay: a TCP relay that breaks chosen connections at chosen points, for the
 * failover tests (tests/e2e/cases_failover.py): it sits between `agentproxy stripe` and
 * `agentproxy join` and plays the middlebox that resets, freezes or swallows a stream.
 *
 * One thread, epoll (edge-triggered), non-blocking sockets. Each direction of a connection
 * moves through a pipe with splice(2): the bytes never reach user space, and a direction
 * holds at most one pipe (1 MiB) in flight, so a side that stops reading stops the relay
 * reading its peer (backpressure, nothing buffered without bound). EOF on one side becomes
 * shutdown(SHUT_WR) on the other; a reset or an error on one side resets the other.
 *
 * Connections are numbered in accept order from 0. A fault is planned for a connection and a
 * byte count AT (both directions together): the relay reads no more than AT bytes from that
 * connection, forwards them, and then, with exactly AT bytes forwarded, applies the fault.
 * See usage() in faultrelay_plan.c for the flags and the event lines it prints.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "faultrelay.h"

#define PIPE_BYTES (1 << 20)         /* bytes in flight per direction */
#define MAX_EVENTS 64

/* A connection only moves forward through these. */
enum conn_state {
	CONN_CONNECTING,             /* accepted; the upstream connect is under way */
	CONN_RELAYING,               /* forwarding both ways */
	CONN_STALLED,                /* fault stall: nothing read, written or closed */
	CONN_BLACKHOLED,             /* fault blackhole: both sides read and dropped */
	CONN_DELAYED,                /* fault delay: nothing moves until resume_at, then relaying */
	CONN_CLOSED,                 /* sockets closed; freed after this batch of events */
};
static const char *const conn_state_names[] = { "connecting", "relaying", "stalled",
						"blackholed", "delayed", "closed" };

enum dir_state {
	DIR_OPEN,                    /* reading the source */
	DIR_DRAINING,                /* the source ended: empty the pipe, then shut */
	DIR_SHUT,                    /* the destination got its shutdown(SHUT_WR) */
};

enum side { SIDE_CLIENT, SIDE_UPSTREAM };
static const char *const side_names[] = { "client", "upstream" };

struct conn;

/* One socket of a connection; its address is the epoll cookie. */
struct endpoint {
	struct conn *conn;
	enum side side;
	int fd;
	int watched;                 /* registered with epoll */
};

/* One direction: src's bytes to dst through a pipe. */
struct direction {
	enum side src, dst;
	enum dir_state state;
	int pipe_rd, pipe_wr;
	size_t pipe_cap;
	size_t in_pipe;
	int pipe_full;               /* the pipe refused more (its slots, not bytes): write first */
	uint64_t read, written;
};

struct conn {
	unsigned id;
	enum conn_state state;
	struct endpoint ep[2];
	struct direction dir[2];     /* [SIDE_CLIENT]: client -> upstream; [SIDE_UPSTREAM]: back */
	enum fault_kind fault;
	uint64_t fault_at;
	uint64_t resume_at;          /* CONN_DELAYED: when it relays again (now_ms()) */
	int capture_fd;              /* -1: not capturing (any more) */
	size_t captured;
	struct conn *next_dead;
};

static struct relay_config cfg;
static int epfd;
static struct conn **conns;          /* by id; NULL once freed */
static unsigned n_conns, conns_cap;
static struct conn *dead;            /* closed in this batch; freed after it */
static char scratch[256 * 1024];     /* blackholed bytes land here */
static unsigned n_delayed;           /* connections in CONN_DELAYED */

static void die(const char *what)
{
	fprintf(stderr, "faultrelay: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void event(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* ---- connections -------------------------------------------------------------- */

static void watch(struct endpoint *ep)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				  .data.ptr = ep };

	if (epoll_ctl(epfd, EPOLL_CTL_ADD, ep->fd, &ev) < 0)
		die("epoll_ctl add");
	ep->watched = 1;
}

static void unwatch(struct endpoint *ep)
{
	if (ep->watched && ep->fd >= 0)
		epoll_ctl(epfd, EPOLL_CTL_DEL, ep->fd, NULL);
	ep->watched = 0;
}

static void close_pipes(struct conn *c)
{
	for (int d = 0; d < 2; d++) {
		struct direction *dir = &c->dir[d];

		if (dir->pipe_rd >= 0) {
			close(dir->pipe_rd);
			close(dir->pipe_wr);
		}
		dir->pipe_rd = dir->pipe_wr = -1;
		dir->in_pipe = 0;
	}
}

static void stop_capture(struct conn *c)
{
	if (c->capture_fd >= 0)
		close(c->capture_fd);
	c->capture_fd = -1;
}

static void set_reset_linger(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

/* Closes both sockets (with an RST if reset) and queues the connection to be freed. */
static void conn_close(struct conn *c, int reset)
{
	for (int s = 0; s < 2; s++) {
		struct endpoint *ep = &c->ep[s];

		unwatch(ep);
		if (ep->fd >= 0) {
			if (reset)
				set_reset_linger(ep->fd);
			close(ep->fd);
		}
		ep->fd = -1;
	}
	close_pipes(c);
	stop_capture(c);
	c->state = CONN_CLOSED;
	c->next_dead = dead;
	dead = c;
	event("conn %u closed", c->id);
}

static void conn_error(struct conn *c, enum side side, const char *what, int err)
{
	event("conn %u error: %s %s: %s", c->id, side_names[side], what, strerror(err));
	conn_close(c, 1);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t forwarded(const struct conn *c)
{
	return c->dir[0].written + c->dir[1].written;
}

/* Bytes the relay may still read from this connection before its fault. */
static uint64_t read_allowance(const struct conn *c)
{
	if (c->fault == FAULT_NONE)
		return UINT64_MAX;
	return c->fault_at - (c->dir[0].read + c->dir[1].read);
}

static void blackhole_read(struct endpoint *ep)
{
	for (;;) {
		ssize_t n = recv(ep->fd, scratch, sizeof(scratch), 0);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		/* EOF or an error: nothing more to swallow here. The socket stays open
		 * (a blackhole passes on no close either). */
		unwatch(ep);
		return;
	}
}

static void apply_fault(struct conn *c)
{
	enum fault_kind k = c->fault;

	c->fault = FAULT_NONE;
	event("conn %u fault %s at %" PRIu64, c->id, fault_names[k], forwarded(c));
	switch (k) {
	case FAULT_RESET:
		conn_close(c, 1);
		break;
	case FAULT_STALL:
		/* No more events: the sockets sit there, their buffers fill, their windows
		 * close; the peers see a path that neither fails nor moves. */
		unwatch(&c->ep[0]);
		unwatch(&c->ep[1]);
		close_pipes(c);
		stop_capture(c);
		c->state = CONN_STALLED;
		break;
	case FAULT_BLACKHOLE:
		close_pipes(c);
		stop_capture(c);
		c->state = CONN_BLACKHOLED;
		/* What already waits was announced by an edge that is spent: read it now,
		 * or a peer that has sent all it will would see a stall. */
		blackhole_read(&c->ep[0]);
		blackhole_read(&c->ep[1]);
		break;
	case FAULT_DELAY:
		/* The sockets stay watched; their events are ignored until the resume, which
		 * reads and writes until each would block (so no edge is lost). */
		c->state = CONN_DELAYED;
		c->resume_at = now_ms() + cfg.delay_ms;
		n_delayed++;
		break;
	case FAULT_NONE:
		break;
	}
}

/* Reads the first bytes of the client's direction through user space to keep them. */
static ssize_t capture_read(struct conn *c, int src, size_t len)
{
	struct direction *dir = &c->dir[SIDE_CLIENT];
	char buf[CAPTURE_BYTES];
	ssize_t n;

	if (len > CAPTURE_BYTES - c->captured)
		len = CAPTURE_BYTES - c->captured;
	n = read(src, buf, len);
	if (n <= 0)
		return n;
	if (write(c->capture_fd, buf, (size_t)n) != n)
		fprintf(stderr, "faultrelay: conn %u: capture write: %s\n", c->id, strerror(errno));
	c->captured += (size_t)n;
	if (c->captured == CAPTURE_BYTES)
		stop_capture(c);
	/* The pipe is empty (capture_read runs only then) and n <= PIPE_BUF: it fits. */
	if (write(dir->pipe_wr, buf, (size_t)n) != n)
		die("write to a pipe");
	return n;
}

/* Moves what it can in one direction. Returns 1 if anything moved or changed, 0 if
 * not, -1 if the connection ended. */
static int move(struct conn *c, struct direction *dir)
{
	int src = c->ep[dir->src].fd, dst = c->ep[dir->dst].fd;
	int moved = 0;

	if (dir->in_pipe > 0) {
		ssize_t n = splice(dir->pipe_rd, NULL, dst, NULL, dir->in_pipe,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);

		if (n > 0) {
			dir->in_pipe -= (size_t)n;
			dir->written += (uint64_t)n;
			dir->pipe_full = 0;
			moved = 1;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			conn_error(c, dir->dst, "write", errno);
			return -1;
		}
	}
	if (dir->state == DIR_OPEN && !dir->pipe_full) {
		uint64_t len = dir->pipe_cap - dir->in_pipe, allow = read_allowance(c);
		ssize_t n = -1;

		if (len > allow)
			len = allow;
		if (len > 0) {
			errno = EAGAIN;
			if (dir->src == SIDE_CLIENT && c->capture_fd >= 0) {
				if (dir->in_pipe == 0)
					n = capture_read(c, src, (size_t)len);
			} else {
				n = splice(src, NULL, dir->pipe_wr, NULL, (size_t)len,
					   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			}
			if (n > 0) {
				dir->in_pipe += (size_t)n;
				dir->read += (uint64_t)n;
				moved = 1;
			} else if (n == 0) {
				dir->state = DIR_DRAINING;
				moved = 1;
			} else if (errno == EAGAIN || errno == EINTR) {
				/* Either the source is empty or the pipe's slots are used up
				 * (a slot holds a socket fragment, not a page). Only the
				 * pipe could be the cause if it holds bytes: write first. */
				if (dir->in_pipe > 0)
					dir->pipe_full = 1;
			} else {
				conn_error(c, dir->src, "read", errno);
				return -1;
			}
		}
	}
	if (dir->state == DIR_DRAINING && dir->in_pipe == 0) {
		if (shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN) {
			conn_error(c, dir->dst, "shutdown", errno);
			return -1;
		}
		dir->state = DIR_SHUT;
		moved = 1;
	}
	return moved;
}

/* Forwards until nothing moves (edge-triggered: every socket is read and written until it
 * would block, or until the pipe or the fault's allowance stops it). */
static void pump(struct conn *c)
{
	int moved = 1;

	while (moved && c->state == CONN_RELAYING) {
		moved = 0;
		for (int d = 0; d < 2; d++) {
			int r = move(c, &c->dir[d]);

			if (r < 0)
				return;
			moved |= r;
		}
		if (c->fault != FAULT_NONE && forwarded(c) == c->fault_at) {
			apply_fault(c);
			return;
		}
	}
	if (c->state == CONN_RELAYING && c->dir[0].state == DIR_SHUT &&
	    c->dir[1].state == DIR_SHUT)
		conn_close(c, 0);
}

static int sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

static void connected(struct conn *c)
{
	int err = sock_error(c->ep[SIDE_UPSTREAM].fd);

	if (err) {
		event("conn %u connect failed: %s", c->id, strerror(err));
		conn_close(c, 1);
		return;
	}
	c->state = CONN_RELAYING;
	if (c->fault != FAULT_NONE && c->fault_at == 0) {
		apply_fault(c);
		return;
	}
	pump(c);
}

static void on_event(struct endpoint *ep, uint32_t events)
{
	struct conn *c = ep->conn;

	switch (c->state) {
	case CONN_CONNECTING:
		if (ep->side == SIDE_UPSTREAM && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			connected(c);
		else if (ep->side == SIDE_CLIENT && (events & EPOLLERR))
			conn_error(c, SIDE_CLIENT, "socket", sock_error(ep->fd));
		/* client bytes wait until the upstream connection is made */
		break;
	case CONN_RELAYING:
		if (events & EPOLLERR) {
			int err = sock_error(ep->fd);

			if (err) {
				conn_error(c, ep->side, "socket", err);
				break;
			}
		}
		pump(c);
		break;
	case CONN_BLACKHOLED:
		blackhole_read(ep);
		break;
	case CONN_DELAYED:
	case CONN_STALLED:
	case CONN_CLOSED:
		break;
	}
}

/* Delayed connections whose time is up relay again. Returns the epoll_wait timeout until
 * the next one (-1: none; then no scan). */
static int resume_delayed(void)
{
	uint64_t now, next = UINT64_MAX;

	if (!n_delayed)
		return -1;
	now = now_ms();
	for (unsigned i = 0; i < n_conns; i++) {
		struct conn *c = conns[i];

		if (!c || c->state != CONN_DELAYED)
			continue;
		if (c->resume_at <= now) {
			event("conn %u resumed", c->id);
			c->state = CONN_RELAYING;
			n_delayed--;
			pump(c);
		} else if (c->resume_at < next) {
			next = c->resume_at;
		}
	}
	return next == UINT64_MAX ? -1 : (int)(next - now);
}

static void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void open_pipe(struct direction *dir)
{
	int p[2];
	int cap;

	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		die("pipe2");
	fcntl(p[1], F_SETPIPE_SZ, PIPE_BYTES);  /* may be refused: the size it has then */
	cap = fcntl(p[1], F_GETPIPE_SZ);
	dir->pipe_rd = p[0];
	dir->pipe_wr = p[1];
	dir->pipe_cap = cap > 0 ? (size_t)cap : 65536;
}

static void accept_one(int cfd)
{
	struct conn *c = calloc(1, sizeof(*c));
	int ufd;

	if (!c)
		die("calloc");
	if (n_conns == conns_cap) {
		conns_cap = conns_cap ? 2 * conns_cap : 64;
		conns = realloc(conns, conns_cap * sizeof(*conns));
		if (!conns)
			die("realloc");
	}
	c->id = n_conns;
	conns[n_conns++] = c;
	c->state = CONN_CONNECTING;
	c->capture_fd = -1;
	for (unsigned i = 0; i < cfg.n_faults; i++)
		if (cfg.faults[i].conn == c->id) {
			c->fault = cfg.faults[i].kind;
			c->fault_at = cfg.faults[i].at;
		}
	for (int d = 0; d < 2; d++) {
		c->dir[d].src = (enum side)d;
		c->dir[d].dst = (enum side)!d;
		c->dir[d].state = DIR_OPEN;
		open_pipe(&c->dir[d]);
	}
	event("conn %u accepted", c->id);
	if (cfg.capture_dir) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/conn-%u.bin", cfg.capture_dir, c->id);
		c->capture_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (c->capture_fd < 0)
			fprintf(stderr, "faultrelay: %s: %s\n", path, strerror(errno));
	}
	set_nodelay(cfd);
	c->ep[SIDE_CLIENT] = (struct endpoint){ c, SIDE_CLIENT, cfd, 0 };
	ufd = socket(cfg.upstream->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->ep[SIDE_UPSTREAM] = (struct endpoint){ c, SIDE_UPSTREAM, ufd, 0 };
	watch(&c->ep[SIDE_CLIENT]);
	if (ufd < 0) {
		event("conn %u connect failed: %s", c->id, strerror(errno));
		conn_close(c, 1);
		return;
	}
	set_nodelay(ufd);
	if (connect(ufd, cfg.upstream->ai_addr, cfg.upstream->ai_addrlen) < 0 && errno != EINPROGRESS) {
		event("conn %u connect failed: %s", c->id, strerror(errno));
		conn_close(c, 1);
		return;
	}
	watch(&c->ep[SIDE_UPSTREAM]);
}

static void dump_conns(void)
{
	unsigned held = 0;

	for (unsigned i = 0; i < n_conns; i++) {
		struct conn *c = conns[i];

		if (c) {
			event("conn %u %s up %" PRIu64 " down %" PRIu64, c->id,
			      conn_state_names[c->state], c->dir[0].written, c->dir[1].written);
			held++;
		}
	}
	event("held %u", held);
}

static void free_dead(void)
{
	while (dead) {
		struct conn *c = dead;

		dead = c->next_dead;
		conns[c->id] = NULL;
		free(c);
	}
}

int main(int argc, char **argv)
{
	struct addrinfo *la;
	int lfd, sfd, one = 1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	sigset_t mask;

	parse_flags(argc, argv, &cfg);
	la = cfg.listen;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || epfd < 0)
		die("signalfd/epoll");

	lfd = socket(la->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, la->ai_addr, la->ai_addrlen) < 0) {
		fprintf(stderr, "faultrelay: cannot listen on %s: %s\n", cfg.listen_arg, strerror(errno));
		return 1;
	}
	if (listen(lfd, 1024) < 0 || getsockname(lfd, (struct sockaddr *)&ss, &sl) < 0)
		die("listen");
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &lfd };
		struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &sfd };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0 ||
		    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &sev) < 0)
			die("epoll_ctl");
	}
	for (unsigned i = 0; i < cfg.n_faults; i++)
		event("plan conn %u %s at %" PRIu64, cfg.faults[i].conn, fault_names[cfg.faults[i].kind],
		      cfg.faults[i].at);
	event("listening %u", ntohs(ss.ss_family == AF_INET6 ?
				    ((struct sockaddr_in6 *)&ss)->sin6_port :
				    ((struct sockaddr_in *)&ss)->sin_port));

	for (;;) {
		struct epoll_event evs[MAX_EVENTS];
		int n = epoll_wait(epfd, evs, MAX_EVENTS, resume_delayed());

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &lfd) {
				int cfd;

				while ((cfd = accept4(lfd, NULL, NULL,
						      SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
					accept_one(cfd);
				if (errno == EMFILE || errno == ENFILE) {
					/* level-triggered: it would come back at once */
					fprintf(stderr, "faultrelay: accept: %s\n", strerror(errno));
					usleep(100 * 1000);
				}
			} else if (evs[i].data.ptr == &sfd) {
				struct signalfd_siginfo si;

				while (read(sfd, &si, sizeof(si)) == sizeof(si))
					dump_conns();
			} else {
				on_event(evs[i].data.ptr, evs[i].events);
			}
		}
		free_dead();
	}
}

