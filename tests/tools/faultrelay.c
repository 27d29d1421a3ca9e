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
 * See usage() for the flags and the event lines it prints.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include <sys/stat.h>
#include <unistd.h>

#define PIPE_BYTES (1 << 20)         /* bytes in flight per direction */
#define CAPTURE_BYTES 200            /* what --capture keeps of each connection */
#define MAX_FAULTS 1024
#define MAX_EVENTS 64

enum fault_kind { FAULT_NONE, FAULT_RESET, FAULT_STALL, FAULT_BLACKHOLE };
static const char *const fault_names[] = { "none", "reset", "stall", "blackhole" };

/* A connection only moves forward through these. */
enum conn_state {
	CONN_CONNECTING,             /* accepted; the upstream connect is under way */
	CONN_RELAYING,               /* forwarding both ways */
	CONN_STALLED,                /* fault stall: nothing read, written or closed */
	CONN_BLACKHOLED,             /* fault blackhole: both sides read and dropped */
	CONN_CLOSED,                 /* sockets closed; freed after this batch of events */
};
static const char *const conn_state_names[] = { "connecting", "relaying", "stalled",
						"blackholed", "closed" };

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
	int capture_fd;              /* -1: not capturing (any more) */
	size_t captured;
	struct conn *next_dead;
};

struct fault {
	unsigned conn;
	enum fault_kind kind;
	uint64_t at;
};

static struct fault faults[MAX_FAULTS];
static unsigned n_faults;
static const char *capture_dir;
static struct addrinfo *upstream;
static int epfd;
static struct conn **conns;          /* by id; NULL once freed */
static unsigned n_conns, conns_cap;
static struct conn *dead;            /* closed in this batch; freed after it */
static char scratch[256 * 1024];     /* blackholed bytes land here */

static void usage(FILE *f)
{
	fprintf(f,
"usage: faultrelay --listen HOST:PORT --upstream HOST:PORT [--fault CONN:KIND:AT]...\n"
"                  [--random-faults K:KIND --seed S --span BYTES [--among N]]\n"
"                  [--capture DIR]\n"
"\n"
"A TCP relay that injects faults, for the failover tests: accepts on --listen, connects\n"
"each accepted connection to --upstream and forwards both ways (splice through a 1 MiB\n"
"pipe per direction: a side that stops reading stops the relay reading its peer). EOF on\n"
"one side is passed on as a shutdown of the write side; a reset or error on one side\n"
"resets the other. Connections are numbered in accept order from 0.\n"
"\n"
"  --listen HOST:PORT     address to accept on (port 0: any free port; see 'listening')\n"
"  --upstream HOST:PORT   where each accepted connection is relayed to\n"
"  --fault CONN:KIND:AT   on connection CONN, once AT bytes (the two directions together,\n"
"                         suffixes K, M, G) have been forwarded, apply KIND; the relay\n"
"                         reads no more than AT bytes of it before then. AT 0: as soon as\n"
"                         the upstream connection is made. Repeatable, one per connection.\n"
"                         KIND is one of:\n"
"                           reset      SO_LINGER 0 and close both sockets: an RST each way\n"
"                           stall      stop reading and writing both ways, close nothing\n"
"                                      (the sockets stay open until the relay exits)\n"
"                           blackhole  keep reading both sides and drop the bytes; forward\n"
"                                      nothing, close nothing\n"
"  --random-faults K:KIND also K faults of KIND on K distinct connections drawn among the\n"
"                         first --among, each at a point drawn in [1, --span)\n"
"  --seed S               seed of those draws (default 1); the same seed, the same plan\n"
"  --span BYTES           upper bound of the random points (needed by --random-faults)\n"
"  --among N              connections the random faults are drawn among (default 4: the\n"
"                         streams a stripe side opens first)\n"
"  --capture DIR          write the first %d bytes the client side sends on connection N\n"
"                         to DIR/conn-N.bin (a stripe side's HELLO and AUTH frames)\n"
"  -h, --help             this text\n"
"\n"
"Prints one line per event on stdout, flushed:\n"
"  plan conn N KIND at BYTES          each planned fault, before listening\n"
"  listening PORT\n"
"  conn N accepted\n"
"  conn N connect failed: REASON      (then conn N closed)\n"
"  conn N fault KIND at BYTES\n"
"  conn N error: REASON               a socket error; both sides are reset\n"
"  conn N closed                      the relay closed both sockets (also after a reset)\n"
"SIGUSR1 prints 'conn N STATE up BYTES down BYTES' for every connection still held\n"
"(STATE: connecting, relaying, stalled or blackholed), then 'held N'.\n"
"Exit status: 0 never (it runs until killed), 1 on a setup error, 2 on a bad flag.\n",
		CAPTURE_BYTES);
}

static void bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("faultrelay: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	usage(stderr);
	exit(2);
}

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

/* ---- flags ------------------------------------------------------------------ */

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	uint64_t v;

	if (parse_size(s, &v) || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static enum fault_kind parse_kind(const char *s)
{
	for (int k = FAULT_RESET; k <= FAULT_BLACKHOLE; k++)
		if (!strcmp(s, fault_names[k]))
			return (enum fault_kind)k;
	return FAULT_NONE;
}

static struct addrinfo *parse_addr(const char *flag, const char *arg, int passive)
{
	char host[256];
	const char *colon = strrchr(arg, ':');
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	size_t n;
	int rc;

	if (!colon || colon == arg || !colon[1])
		bad_usage("%s %s: want HOST:PORT", flag, arg);
	n = (size_t)(colon - arg);
	if (arg[0] == '[' && colon[-1] == ']') {       /* [v6]:port */
		arg++;
		n -= 2;
	}
	if (n >= sizeof(host))
		bad_usage("%s: host too long", flag);
	memcpy(host, arg, n);
	host[n] = 0;
	if (passive)
		hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc)
		bad_usage("%s %s: %s", flag, arg, gai_strerror(rc));
	return ai;
}

static void add_fault(unsigned conn, enum fault_kind kind, uint64_t at)
{
	for (unsigned i = 0; i < n_faults; i++)
		if (faults[i].conn == conn)
			bad_usage("connection %u has two faults", conn);
	if (n_faults == MAX_FAULTS)
		bad_usage("more than %d faults", MAX_FAULTS);
	faults[n_faults++] = (struct fault){ conn, kind, at };
}

static void parse_fault(const char *arg)
{
	char buf[128], *kind, *at;
	unsigned conn;
	uint64_t bytes;
	enum fault_kind k;

	if (strlen(arg) >= sizeof(buf))
		bad_usage("--fault %s: too long", arg);
	strcpy(buf, arg);
	kind = strchr(buf, ':');
	at = kind ? strchr(kind + 1, ':') : NULL;
	if (!at)
		bad_usage("--fault %s: want CONN:KIND:AT", arg);
	*kind++ = 0;
	*at++ = 0;
	if (parse_uint(buf, UINT_MAX - 1, &conn))
		bad_usage("--fault %s: bad connection number '%s'", arg, buf);
	k = parse_kind(kind);
	if (k == FAULT_NONE)
		bad_usage("--fault %s: KIND is reset, stall or blackhole, not '%s'", arg, kind);
	if (parse_size(at, &bytes))
		bad_usage("--fault %s: bad byte count '%s'", arg, at);
	add_fault(conn, k, bytes);
}

/* splitmix64: a small, seedable, well-mixed generator */
static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void plan_random(const char *spec, uint64_t seed, uint64_t span, unsigned among)
{
	char buf[64], *kind;
	unsigned k;
	enum fault_kind kd;
	uint64_t rng = seed;
	unsigned picked = 0;

	if (strlen(spec) >= sizeof(buf) || !(kind = strchr(strcpy(buf, spec), ':')))
		bad_usage("--random-faults %s: want K:KIND", spec);
	*kind++ = 0;
	if (parse_uint(buf, MAX_FAULTS, &k) || k == 0)
		bad_usage("--random-faults %s: bad count '%s'", spec, buf);
	kd = parse_kind(kind);
	if (kd == FAULT_NONE)
		bad_usage("--random-faults %s: KIND is reset, stall or blackhole, not '%s'", spec, kind);
	if (span < 2)
		bad_usage("--random-faults needs --span of at least 2");
	if (k > among)
		bad_usage("--random-faults %u among %u connections (--among)", k, among);
	while (picked < k) {
		unsigned c = (unsigned)(next_random(&rng) % among);
		int taken = 0;

		for (unsigned i = 0; i < n_faults; i++)
			taken |= faults[i].conn == c;
		if (taken) {
			/* --fault already chose it: the draw goes on among the others */
			unsigned free_left = 0;

			for (unsigned j = 0; j < among; j++) {
				int t = 0;

				for (unsigned i = 0; i < n_faults; i++)
					t |= faults[i].conn == j;
				free_left += !t;
			}
			if (!free_left)
				bad_usage("--random-faults: no connection among the first %u is free",
					  among);
			continue;
		}
		add_fault(c, kd, 1 + next_random(&rng) % (span - 1));
		picked++;
	}
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
	case CONN_STALLED:
	case CONN_CLOSED:
		break;
	}
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
	for (unsigned i = 0; i < n_faults; i++)
		if (faults[i].conn == c->id) {
			c->fault = faults[i].kind;
			c->fault_at = faults[i].at;
		}
	for (int d = 0; d < 2; d++) {
		c->dir[d].src = (enum side)d;
		c->dir[d].dst = (enum side)!d;
		c->dir[d].state = DIR_OPEN;
		open_pipe(&c->dir[d]);
	}
	event("conn %u accepted", c->id);
	if (capture_dir) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/conn-%u.bin", capture_dir, c->id);
		c->capture_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (c->capture_fd < 0)
			fprintf(stderr, "faultrelay: %s: %s\n", path, strerror(errno));
	}
	set_nodelay(cfd);
	c->ep[SIDE_CLIENT] = (struct endpoint){ c, SIDE_CLIENT, cfd, 0 };
	ufd = socket(upstream->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->ep[SIDE_UPSTREAM] = (struct endpoint){ c, SIDE_UPSTREAM, ufd, 0 };
	watch(&c->ep[SIDE_CLIENT]);
	if (ufd < 0) {
		event("conn %u connect failed: %s", c->id, strerror(errno));
		conn_close(c, 1);
		return;
	}
	set_nodelay(ufd);
	if (connect(ufd, upstream->ai_addr, upstream->ai_addrlen) < 0 && errno != EINPROGRESS) {
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
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "upstream", required_argument, NULL, 'u' },
		{ "fault", required_argument, NULL, 'f' },
		{ "random-faults", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 's' },
		{ "span", required_argument, NULL, 'n' },
		{ "among", required_argument, NULL, 'a' },
		{ "capture", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_arg = NULL, *random_spec = NULL;
	uint64_t seed = 1, span = 0;
	unsigned among = 4;
	struct addrinfo *la;
	int lfd, sfd, one = 1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	sigset_t mask;
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen_arg = optarg; break;
		case 'u': upstream = parse_addr("--upstream", optarg, 0); break;
		case 'f': parse_fault(optarg); break;
		case 'r': random_spec = optarg; break;
		case 's':
			if (parse_size(optarg, &seed))
				bad_usage("--seed %s: not a number", optarg);
			break;
		case 'n':
			if (parse_size(optarg, &span))
				bad_usage("--span %s: not a byte count", optarg);
			break;
		case 'a':
			if (parse_uint(optarg, UINT_MAX - 1, &among) || among == 0)
				bad_usage("--among %s: not a count", optarg);
			break;
		case 'c': capture_dir = optarg; break;
		case 'h': usage(stdout); return 0;
		default:
			bad_usage("unknown flag or missing value: %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument: %s", argv[optind]);
	if (!listen_arg || !upstream)
		bad_usage("--listen and --upstream are needed");
	if (random_spec)
		plan_random(random_spec, seed, span, among);
	if (capture_dir) {
		struct stat st;

		if (stat(capture_dir, &st) < 0 || !S_ISDIR(st.st_mode))
			bad_usage("--capture %s: not a directory", capture_dir);
	}
	la = parse_addr("--listen", listen_arg, 1);

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
		fprintf(stderr, "faultrelay: cannot listen on %s: %s\n", listen_arg, strerror(errno));
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
	for (unsigned i = 0; i < n_faults; i++)
		event("plan conn %u %s at %" PRIu64, faults[i].conn, fault_names[faults[i].kind],
		      faults[i].at);
	event("listening %u", ntohs(ss.ss_family == AF_INET6 ?
				    ((struct sockaddr_in6 *)&ss)->sin6_port :
				    ((struct sockaddr_in *)&ss)->sin_port));

	for (;;) {
		struct epoll_event evs[MAX_EVENTS];
		int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);

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
