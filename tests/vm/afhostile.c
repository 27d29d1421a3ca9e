// SPDX-License-Identifier: GPL-2.0
/*
 * afhostile: guest tests of agentfilt.ko under hostile use (issue 10): kTLS
 * and sockmap on watched sockets, TLS_TX racing UNWATCH, reads into
 * faulting buffers, IPv6, the per-user limit, leaks counted in the TCP
 * slab caches, and rmmod while formerly watched sockets (and clones of
 * them) carry traffic. Prints unnumbered TAP lines like aftest.
 *
 *   afhostile           everything but the unload tests
 *   afhostile unload    the unload tests: they rmmod and insmod agentfilt
 *                       (module path in $AGENTFILT_KO), so no other user of
 *                       /dev/agentfilt may be running
 */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <linux/tls.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "afutil.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif
#ifndef SOL_TLS
#define SOL_TLS 282
#endif

/* ---- kTLS ---- */

static int set_ulp_tls(int fd)
{
	return setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) ? -errno : 0;
}

static int set_tls(int fd, int dir)
{
	struct tls12_crypto_info_aes_gcm_128 ci = { 0 };

	ci.info.version = TLS_1_2_VERSION;
	ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
	memset(ci.key, 0x42, sizeof(ci.key));
	memset(ci.iv, 0x17, sizeof(ci.iv));
	memset(ci.salt, 0x5a, sizeof(ci.salt));
	return setsockopt(fd, SOL_TLS, dir, &ci, sizeof(ci)) ? -errno : 0;
}

/* Whether this kernel can do kTLS at all (tls.ko and gcm(aes) loaded). */
static int have_ktls(void)
{
	int c, s, ok;

	if (tcp_pair(&c, &s))
		return 0;
	ok = set_ulp_tls(s) == 0 && set_tls(s, TLS_TX) == 0;
	close_pair(c, s);
	return ok;
}

/*
 * Makes s wait for send space (fills its send buffer towards c), then
 * drains c: the ACKs raise sk_write_space on s. Returns bytes drained.
 */
static long write_space_cycle(int c, int s)
{
	static char buf[65536];
	long sent = 0, got = 0;
	int fl = fcntl(s, F_GETFL);

	fcntl(s, F_SETFL, fl | O_NONBLOCK);
	for (int i = 0; i < 4096; i++) {
		ssize_t n = send(s, buf, sizeof(buf), 0);

		if (n <= 0)
			break;
		sent += n;
	}
	fcntl(s, F_SETFL, fl);
	while (got < sent / 2) {
		ssize_t n;

		if (wait_readable(c, 2000) != 1)
			break;
		n = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0)
			break;
		got += n;
	}
	return got;
}

static int t_tls_before_watch(void)
{
	int dev = dev_open(), c, s, r1, r2;

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(set_ulp_tls(s) == 0, "TCP_ULP tls: %s (tls.ko not loaded?)", strerror(errno));
	r1 = watch(dev, s, 1);
	CHECK(set_tls(s, TLS_TX) == 0, "TLS_TX");
	r2 = watch(dev, s, 2);
	close_pair(c, s);
	close(dev);
	CHECK(r1 == -EBUSY && r2 == -EBUSY, "watch of a kTLS socket: %d, with TLS_TX: %d", r1, r2);
	return 0;
}

/*
 * kTLS set up on a socket after WATCH wraps our callbacks. They keep
 * chaining (no recursion through tls_write_space), UNWATCH succeeds, and
 * the watch it leaves behind is gone once the socket closes.
 */
static int t_tls_after_watch(void)
{
	int dev = dev_open(), c, s, base = live_watches();
	long objs0 = tcp_slab_objs(), got;
	struct agentfilt_stats st;
	char buf[256];

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 1) == 0, "watch");
	CHECK(set_ulp_tls(s) == 0, "TCP_ULP tls after WATCH: %s", strerror(errno));
	CHECK(set_tls(s, TLS_TX) == 0, "TLS_TX after WATCH: %s", strerror(errno));
	CHECK(set_tls(s, TLS_RX) == 0, "TLS_RX after WATCH: %s", strerror(errno));
	got = write_space_cycle(c, s);
	CHECK(got > 0, "no TLS bytes reached the peer while watched");
	CHECK(stats(dev, 1, 0, &st) == 0 && st.counters.write_space > 0,
	      "write space through tls_write_space not counted (%llu)",
	      (unsigned long long)st.counters.write_space);
	CHECK(unwatch(dev, 1) == 0, "unwatch under kTLS: %s", strerror(errno));
	CHECK(write_space_cycle(c, s) > 0, "no TLS bytes after UNWATCH");
	CHECK(send(s, "rec", 3, 0) == 3 && wait_readable(c, 2000) == 1 &&
	      recv(c, buf, sizeof(buf), 0) > 3, "peer of the kTLS socket got no record");
	CHECK(live_watches() == base + 1, "the kTLS socket's watch: live %d, want %d",
	      live_watches(), base + 1);
	close_pair(c, s);
	close(dev);
	CHECK(wait_live(base, 3000) == base, "watch of the closed kTLS socket still live (%d)",
	      live_watches());
	CHECK(wait_tcp_slab(objs0 + 16, 3000) <= objs0 + 16, "TCP objects %ld, were %ld",
	      tcp_slab_objs(), objs0);
	return 0;
}

/* TLS_TX on one CPU while UNWATCH runs on the other, 1,000 rounds. */
struct tls_racer {
	pthread_barrier_t go, done;
	int fd;
	int ret;
	volatile int stop;
};

static void *tls_tx_thread(void *arg)
{
	struct tls_racer *r = arg;

	for (;;) {
		pthread_barrier_wait(&r->go);
		if (r->stop)
			return NULL;
		r->ret = set_tls(r->fd, TLS_TX);
		pthread_barrier_wait(&r->done);
	}
}

static int t_tls_race_1000(void)
{
	enum { ROUNDS = 1000 };
	struct tls_racer r = { .fd = -1 };
	int dev = dev_open(), base = live_watches(), port = 0, l = listener(&port), bad = 0;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(port) };
	long objs0 = tcp_slab_objs(), objs;
	char buf[64];
	pthread_t th;

	CHECK(l >= 0 && dev >= 0, "setup");
	pthread_barrier_init(&r.go, NULL, 2);
	pthread_barrier_init(&r.done, NULL, 2);
	pthread_create(&th, NULL, tls_tx_thread, &r);
	for (int i = 0; i < ROUNDS && !bad; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0), s, w, u;

		if (c < 0 || connect(c, (void *)&a, sizeof(a)) ||
		    (s = accept(l, NULL, NULL)) < 0) {
			bad = fail("round %d: pair: %s", i, strerror(errno));
			break;
		}
		w = watch(dev, s, i);
		if (w || set_ulp_tls(s)) {
			bad = fail("round %d: watch %d, ulp %s", i, w, strerror(errno));
			close_pair(c, s);
			break;
		}
		r.fd = s;
		pthread_barrier_wait(&r.go);
		/* Land the unwatch at a different point of TLS_TX each round. */
		for (volatile int spin = 0; spin < (i % 50) * 200; spin++)
			;
		u = unwatch(dev, i);
		pthread_barrier_wait(&r.done);
		if (u || r.ret) {
			bad = fail("round %d: unwatch %d, TLS_TX %d", i, u, r.ret);
		} else if (send(s, "tls", 3, 0) != 3 || wait_readable(c, 2000) != 1 ||
			   recv(c, buf, sizeof(buf), 0) <= 0) {
			bad = fail("round %d: no TLS record reached the peer", i);
		}
		close_pair(c, s);
	}
	r.stop = 1;
	pthread_barrier_wait(&r.go);
	pthread_join(th, NULL);
	close(l);
	close(dev);
	if (bad)
		return -1;
	CHECK(wait_live(base, 5000) == base, "live watches %d after %d rounds, want %d",
	      live_watches(), ROUNDS, base);
	objs = wait_tcp_slab(objs0 + 32, 5000);
	CHECK(objs <= objs0 + 32, "TCP objects %ld after %d rounds, were %ld", objs, ROUNDS, objs0);
	printf("# tls race: %d rounds, TCP objects %ld -> %ld\n", ROUNDS, objs0, objs);
	return 0;
}

/* ---- sockmap ---- */

static int bpf_sys(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int sockmap_new(void)
{
	union bpf_attr attr = { 0 };

	attr.map_type = BPF_MAP_TYPE_SOCKMAP;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 4;
	return bpf_sys(BPF_MAP_CREATE, &attr);
}

static int sockmap_put(int map, uint32_t key, int fd)
{
	union bpf_attr attr = { 0 };
	uint32_t val = fd;

	attr.map_fd = map;
	attr.key = (uintptr_t)&key;
	attr.value = (uintptr_t)&val;
	attr.flags = BPF_ANY;
	return bpf_sys(BPF_MAP_UPDATE_ELEM, &attr) ? -errno : 0;
}

static int t_sockmap(void)
{
	int dev = dev_open(), map = sockmap_new(), c, s, c2, s2, r1, r2, r3;

	CHECK(map >= 0, "sockmap: %s", strerror(errno));
	CHECK(!tcp_pair(&c, &s) && !tcp_pair(&c2, &s2), "pair");
	CHECK(sockmap_put(map, 0, s) == 0, "sockmap update: %s", strerror(errno));
	r1 = watch(dev, s, 1);			/* sockmap first */
	CHECK(watch(dev, s2, 2) == 0, "watch");
	r2 = sockmap_put(map, 1, s2);		/* watch first */
	CHECK(woken_by_peer(c2, s2), "watched socket refused by sockmap no longer woken");
	r3 = unwatch(dev, 2);
	close(map);
	close_pair(c, s);
	close_pair(c2, s2);
	close(dev);
	CHECK(r1 == -EBUSY, "watch of a socket in a sockmap: %d, want EBUSY", r1);
	CHECK(r2 == -EBUSY, "sockmap update of a watched socket: %d, want EBUSY", r2);
	CHECK(r3 == 0, "unwatch %d", r3);
	return 0;
}

/* ---- reads ---- */

/* A read whose buffer faults part-way hands out no record it drops. */
static int t_faulting_read(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct agentfilt_event ev[4];
	char *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	int dev = dev_open(), c[3], s[3], n, seen = 0;
	ssize_t r;

	CHECK(map != MAP_FAILED, "mmap");
	CHECK(!mprotect(map + page, page, PROT_NONE), "mprotect");
	for (int i = 0; i < 3; i++) {
		CHECK(!tcp_pair(&c[i], &s[i]), "pair");
		CHECK(watch(dev, s[i], 100 + i) == 0, "watch");
		CHECK(write(c[i], "x", 1) == 1, "write");
	}
	msleep(100);
	/* Non-blocking: a lost record shows as EAGAIN, not as a hang. */
	fcntl(dev, F_SETFL, O_NONBLOCK);
	/* Wholly unmapped: EFAULT, nothing taken. */
	r = read(dev, map + page, 3 * sizeof(ev[0]));
	CHECK(r < 0 && errno == EFAULT, "read into PROT_NONE: %zd (%s)", r, strerror(errno));
	/* Room for one record before the hole: one record. */
	r = read(dev, map + page - sizeof(ev[0]), 3 * sizeof(ev[0]));
	CHECK(r == (ssize_t)sizeof(ev[0]), "read across the hole returned %zd (%s)", r,
	      r < 0 ? strerror(errno) : "short");
	memcpy(&ev[0], map + page - sizeof(ev[0]), sizeof(ev[0]));
	seen |= 1 << (ev[0].token - 100);
	n = read_events(dev, ev + 1, 3);
	CHECK(n == 2, "after the faults %d records are left, want 2", n);
	for (int i = 1; i <= n; i++)
		seen |= 1 << (ev[i].token - 100);
	CHECK(seen == 7, "tokens seen %x, want all three", seen);
	for (int i = 0; i < 3; i++)
		close_pair(c[i], s[i]);
	close(dev);
	munmap(map, 2 * page);
	return 0;
}

/* ---- IPv6 ---- */

static int tcp6_pair(int *c, int *s)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET6, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (void *)&a, sizeof(a)) || listen(l, 8) ||
	    getsockname(l, (void *)&a, &len))
		return -1;
	*c = socket(AF_INET6, SOCK_STREAM, 0);
	if (*c < 0 || connect(*c, (void *)&a, sizeof(a)))
		return -1;
	*s = accept(l, NULL, NULL);
	close(l);
	return *s < 0 ? -1 : 0;
}

static int t_ipv6(void)
{
	struct agentfilt_event ev[2];
	struct agentfilt_stats st;
	int dev = dev_open(), c, s, n;

	CHECK(!tcp6_pair(&c, &s), "IPv6 loopback pair: %s", strerror(errno));
	CHECK(watch(dev, s, 6) == 0, "watch IPv6");
	CHECK(write(c, "six", 3) == 3, "write");
	CHECK(wait_readable(dev, 2000) == 1, "no event");
	n = read_events(dev, ev, 2);
	CHECK(n == 1 && ev[0].token == 6 && ev[0].bytes == 3, "n %d bytes %u", n, ev[0].bytes);
	CHECK(stats(dev, 6, 0, &st) == 0 && st.counters.passed == 1, "stats");
	CHECK(unwatch(dev, 6) == 0, "unwatch");
	CHECK(read(s, ev, sizeof(ev)) == 3, "read the bytes");
	CHECK(woken_by_peer(c, s), "IPv6 reader not woken after unwatch");
	close_pair(c, s);
	close(dev);
	return 0;
}

/* ---- limits and leaks ---- */

/*
 * All files of one user share max_user_watches; sockets closed while still
 * watched stay held until UNWATCH or the file's release, and then go.
 */
static int t_user_limit(void)
{
	enum { LIMIT = 8, PAIRS = 64 };
	int dev[3] = { dev_open(), dev_open(), dev_open() }, c, s, r = 0, ok = 0, at = -1;
	long objs0 = tcp_slab_objs(), held;
	char lim[16];

	CHECK(set_param("max_user_watches", "8") == 0, "set max_user_watches");
	for (int i = 0; i < LIMIT + 1; i++) {
		CHECK(!tcp_pair(&c, &s), "pair");
		r = watch(dev[i % 3], s, i);
		close_pair(c, s);	/* the watch keeps s */
		if (r == 0) {
			ok++;
		} else if (i < LIMIT || r != -ENOSPC) {
			at = i;
			break;
		}
	}
	if (at >= 0) {
		set_param("max_user_watches", "65536");
		return fail("watch %d of %d: %d (live %d)", at, LIMIT, r, live_watches());
	}
	r = unwatch(dev[0], 0);
	CHECK(!tcp_pair(&c, &s), "pair");
	r = r ? r : watch(dev[1], s, 100);
	close_pair(c, s);
	snprintf(lim, sizeof(lim), "%d", 65536);
	set_param("max_user_watches", lim);
	CHECK(ok == LIMIT, "%d watches over three files before ENOSPC, want %d", ok, LIMIT);
	CHECK(r == 0, "watch after an unwatch freed room: %d", r);
	/* Watched but closed sockets are held ... */
	for (int i = 0; i < PAIRS; i++) {
		CHECK(!tcp_pair(&c, &s), "pair");
		CHECK(watch(dev[2], s, 1000 + i) == 0, "watch");
		close_pair(c, s);
	}
	held = tcp_slab_objs();
	/* ... until the file goes. */
	for (int i = 0; i < 3; i++)
		close(dev[i]);
	CHECK(held >= objs0 + PAIRS, "closed watched sockets not held (%ld, were %ld)", held,
	      objs0);
	CHECK(wait_tcp_slab(objs0 + 16, 3000) <= objs0 + 16,
	      "TCP objects %ld after release, were %ld (held %ld)", tcp_slab_objs(), objs0, held);
	return 0;
}

/*
 * A watched socket whose connect failed is unwrapped at TCP_CLOSE; it
 * connects again and another file watches it. Unwatching the first watch
 * must leave the second one's callbacks alone.
 */
static int t_rewatch_after_close(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in unspec = { .sin_family = AF_UNSPEC };
	int dev1 = dev_open(), dev2 = dev_open(), port = 0, l, c, s, r;
	struct agentfilt_event ev[2];
	socklen_t len = sizeof(a);

	l = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(!bind(l, (void *)&a, sizeof(a)) && !listen(l, 0), "listen");
	getsockname(l, (void *)&a, &len);
	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	r = connect(c, (void *)&a, sizeof(a));
	CHECK(r == 0 || errno == EINPROGRESS, "connect");
	CHECK(watch(dev1, c, 1) == 0, "first watch");
	close(l);
	CHECK(wait_event_on(c, POLLOUT, 5000) == 1, "connect did not fail");
	len = sizeof(r);
	getsockopt(c, SOL_SOCKET, SO_ERROR, &r, &len);
	connect(c, (void *)&unspec, sizeof(unspec));
	l = listener(&port);
	a.sin_port = htons(port);
	fcntl(c, F_SETFL, 0);
	CHECK(!connect(c, (void *)&a, sizeof(a)), "connect again: %s", strerror(errno));
	s = accept(l, NULL, NULL);
	close(l);
	CHECK(s >= 0, "accept");
	CHECK(watch(dev2, c, 2) == 0, "second watch of the reconnected socket");
	CHECK(unwatch(dev1, 1) == 0, "unwatch the first");
	CHECK(write(s, "again", 5) == 5, "write");
	CHECK(wait_readable(dev2, 2000) == 1, "the second watch lost its callbacks");
	r = read_events(dev2, ev, 2);
	CHECK(r == 1 && ev[0].token == 2, "events %d", r);
	CHECK(unwatch(dev2, 2) == 0, "unwatch the second");
	close_pair(c, s);
	close(dev1);
	close(dev2);
	return 0;
}

/* ---- unload (afhostile unload) ---- */

static int module_unload(int ms)
{
	for (int t = 0; t <= ms; t += 20) {
		if (syscall(__NR_delete_module, "agentfilt", O_NONBLOCK) == 0)
			return 0;
		if (errno != EBUSY && errno != EAGAIN)
			return -errno;
		msleep(20);
	}
	return -EBUSY;
}

static int module_load(void)
{
	const char *ko = getenv("AGENTFILT_KO");
	int fd = open(ko ? ko : "/agentfilt.ko", O_RDONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = syscall(__NR_finit_module, fd, "", 0) ? -errno : 0;
	close(fd);
	return r;
}

struct flow {
	int c[8], s[8];
	volatile int stop;
	long sent, got;
};

static void *flow_send(void *arg)
{
	struct flow *f = arg;
	char buf[256];

	memset(buf, 'f', sizeof(buf));
	for (int i = 0; !f->stop; i++) {
		ssize_t n = send(f->c[i % 8], buf, 1 + i % sizeof(buf), MSG_DONTWAIT);

		if (n > 0)
			f->sent += n;
		else
			usleep(50);
	}
	return NULL;
}

static void flow_drain(struct flow *f, int ms)
{
	char buf[65536];
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ms_since(&t0) < ms) {
		for (int i = 0; i < 8; i++) {
			ssize_t n;

			while ((n = recv(f->s[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
				f->got += n;
		}
		usleep(200);
	}
}

/* rmmod the moment the last file closes, traffic still flowing. */
static int t_unload_under_traffic(void)
{
	struct flow f = { 0 };
	pthread_t th;
	int dev = dev_open(), r;

	for (int i = 0; i < 8; i++) {
		CHECK(!tcp_pair(&f.c[i], &f.s[i]), "pair");
		CHECK(watch(dev, f.s[i], i) == 0, "watch");
	}
	pthread_create(&th, NULL, flow_send, &f);
	flow_drain(&f, 300);
	close(dev);
	r = module_unload(2000);
	flow_drain(&f, 500);
	f.stop = 1;
	pthread_join(th, NULL);
	for (int i = 0; i < 8; i++)
		shutdown(f.c[i], SHUT_WR);
	flow_drain(&f, 300);
	for (int i = 0; i < 8; i++)
		close_pair(f.c[i], f.s[i]);
	CHECK(r == 0, "rmmod right after the last close: %s", strerror(-r));
	CHECK(module_load() == 0, "insmod again");
	CHECK(f.got == f.sent, "received %ld of %ld bytes across the unload", f.got, f.sent);
	return 0;
}

/*
 * A watched socket whose connect failed listens; a client connects (and,
 * with TCP Fast Open, sends data in its SYN); the children wait in the
 * accept queue. Unwatch, close, rmmod: the children must not carry our
 * callbacks into the unloaded module when their data arrives.
 */
static int t_unload_clone_in_queue(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in unspec = { .sin_family = AF_UNSPEC };
	int dev = dev_open(), l, c, d, e, x, y, r, qlen = 8, fo;
	socklen_t len = sizeof(a);
	char buf[16];

	l = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(!bind(l, (void *)&a, sizeof(a)) && !listen(l, 0), "listen");
	getsockname(l, (void *)&a, &len);
	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	r = connect(c, (void *)&a, sizeof(a));
	CHECK(r == 0 || errno == EINPROGRESS, "connect");
	CHECK(watch(dev, c, 1) == 0, "watch");
	close(l);
	CHECK(wait_event_on(c, POLLOUT, 5000) == 1, "connect did not fail");
	connect(c, (void *)&unspec, sizeof(unspec));
	/* Fast Open without cookies, so a SYN carries data at once. */
	fo = open("/proc/sys/net/ipv4/tcp_fastopen", O_WRONLY);
	if (fo >= 0) {
		if (write(fo, "519", 3) != 3) {
			/* then only the plain child below is tested */
		}
		close(fo);
	}
	setsockopt(c, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen));
	a.sin_port = 0;
	CHECK(!listen(c, 8), "listen on the watched socket: %s", strerror(errno));
	len = sizeof(a);
	getsockname(c, (void *)&a, &len);
	d = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(!connect(d, (void *)&a, sizeof(a)), "connect to the former watched socket");
	e = socket(AF_INET, SOCK_STREAM, 0);
	r = sendto(e, "tfo", 3, MSG_FASTOPEN, (void *)&a, sizeof(a));
	CHECK(r == 3, "Fast Open connect: %s", strerror(errno));
	msleep(50);
	CHECK(unwatch(dev, 1) == 0, "unwatch");
	close(dev);
	r = module_unload(2000);
	CHECK(r == 0, "rmmod: %s", strerror(-r));
	/* Data for the children now, with the module gone. */
	CHECK(write(d, "late", 4) == 4 && write(e, "late", 4) == 4, "write");
	fcntl(c, F_SETFL, 0);
	x = accept(c, NULL, NULL);
	y = accept(c, NULL, NULL);
	CHECK(x >= 0 && y >= 0, "accept");
	CHECK(wait_readable(x, 2000) == 1 && recv(x, buf, sizeof(buf), 0) > 0, "first child");
	CHECK(wait_readable(y, 2000) == 1 && recv(y, buf, sizeof(buf), 0) > 0, "second child");
	CHECK(woken_by_peer(d, x) || woken_by_peer(e, x), "child's reader not woken");
	close(x);
	close(y);
	close(d);
	close(e);
	close(c);
	CHECK(module_load() == 0, "insmod again");
	return 0;
}

/* A kTLS socket that was watched pins the module until it closes. */
static int t_unload_tls_pins(void)
{
	int dev = dev_open(), c, s, r1, r2;

	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 1) == 0, "watch");
	CHECK(set_ulp_tls(s) == 0 && set_tls(s, TLS_TX) == 0, "kTLS");
	CHECK(unwatch(dev, 1) == 0, "unwatch");
	close(dev);
	r1 = module_unload(300);
	CHECK(write_space_cycle(c, s) > 0, "kTLS socket stopped");
	close_pair(c, s);
	r2 = module_unload(3000);
	CHECK(r1 == -EBUSY, "rmmod with our callbacks under kTLS: %d, want EBUSY", r1);
	CHECK(r2 == 0, "rmmod after the kTLS socket closed: %s", strerror(-r2));
	CHECK(module_load() == 0, "insmod again");
	return 0;
}

int main(int argc, char **argv)
{
	int ktls;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	ktls = have_ktls();
	if (argc > 1 && !strcmp(argv[1], "unload")) {
		run("unload: rmmod right after the last close, traffic flowing",
		    t_unload_under_traffic);
		run("unload: rmmod with clones of a formerly watched listener queued",
		    t_unload_clone_in_queue);
		if (ktls)
			run("unload: a watched kTLS socket pins the module until closed",
			    t_unload_tls_pins);
		return failures ? 1 : 0;
	}
	if (!ktls)
		printf("not ok - hostile: kTLS available (tls.ko, gcm(aes)) # %s\n",
		       strerror(errno));
	else
		printf("ok - hostile: kTLS available (tls.ko, gcm(aes))\n");
	if (ktls) {
		run("hostile: kTLS socket refused by WATCH", t_tls_before_watch);
		run("hostile: kTLS set up after WATCH, then UNWATCH and close", t_tls_after_watch);
		run("hostile: TLS_TX racing UNWATCH on two CPUs, 1,000 rounds", t_tls_race_1000);
	}
	run("hostile: sockmap and WATCH refuse each other (EBUSY)", t_sockmap);
	run("hostile: a read into a faulting buffer loses no record", t_faulting_read);
	run("hostile: IPv6 sockets", t_ipv6);
	run("hostile: unwatch after TCP_CLOSE spares a newer watch of the socket",
	    t_rewatch_after_close);
	run("hostile: max_user_watches over files; held sockets freed", t_user_limit);
	return failures + !ktls ? 1 : 0;
}
