// SPDX-License-Identifier: MIT
/*
 * bench_delayline: a wide-area path between two veth ends, for hosts without netem.
 *
 *   bench_delayline --a IF --b IF --delay-ms MS [--delay-ba-ms MS] [--loss P] [--seed N]
 *
 * Bridges interface A and interface B (both in the caller's network namespace): every
 * frame that arrives on A leaves on B after --delay-ms, and every frame that arrives on B
 * leaves on A after --delay-ba-ms (default: the same). Frames are read and written with
 * AF_PACKET and PACKET_VNET_HDR, so a TSO/GSO burst of up to 64 KiB crosses as one frame
 * with its offload header (gso_size, checksum offsets) intact, as it would through a tap.
 *
 * Loss is drawn per TCP segment, not per frame: a GSO burst of k segments is k draws. When
 * one of them is lost, the burst is cut into its segments here (IPv4 headers, sequence
 * numbers and checksum seeds fixed up as the kernel's tcp_gso_segment would) and only the
 * lost ones are left out; a burst with no loss goes on whole. Frames that are not IPv4 TCP
 * bursts are one draw each; ARP is never dropped.
 *
 * One thread per direction; each holds its frames in a byte ring (FIFO: the delay is the
 * same for every frame of a direction, so the order is the order of arrival). SIGUSR1
 * prints the counters as one JSON line on stdout; SIGTERM/SIGINT print them and exit.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME_MAX (256 * 1024)       /* a GSO burst (64 KiB) with room to spare */
#define RING_BYTES (64u << 20)       /* per direction: 64 MiB = 500 ms at 1 Gbit/s */
#define HDR sizeof(struct virtio_net_hdr)

struct counters {
	_Atomic uint64_t frames_in, bytes_in, segments, segments_lost, frames_lost;
	_Atomic uint64_t bursts_cut, frames_out, ring_full, send_errors, truncated;
	_Atomic uint64_t max_queued;
};

struct entry {                       /* a frame in the ring, followed by its bytes */
	uint64_t due_ns;
	uint32_t len;                /* virtio_net_hdr + frame */
	uint32_t skip;               /* 1: padding to the ring's end, go back to 0 */
};

struct direction {
	const char *name;
	int rx, tx;                  /* packet sockets on the in and the out interface */
	uint64_t delay_ns;
	uint64_t loss_threshold;     /* a draw below it is a loss */
	uint64_t rng;
	unsigned char *ring;
	size_t head, tail, queued;   /* byte offsets; queued = bytes held */
	struct counters c;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint64_t draw(struct direction *d)   /* xorshift64* */
{
	d->rng ^= d->rng >> 12;
	d->rng ^= d->rng << 25;
	d->rng ^= d->rng >> 27;
	return d->rng * 2685821657736338717ull;
}

static int lost(struct direction *d)
{
	return d->loss_threshold && draw(d) < d->loss_threshold;
}

static int open_if(const char *ifname)
{
	int one = 1, buf = 16 << 20;
	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };

	if (fd < 0) {
		perror("socket(AF_PACKET)");
		exit(1);
	}
	sll.sll_ifindex = if_nametoindex(ifname);
	if (!sll.sll_ifindex) {
		fprintf(stderr, "delayline: no interface %s\n", ifname);
		exit(1);
	}
	/* The offload header must be asked for before bind. */
	if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sll, sizeof(sll))) {
		perror("delayline: packet socket setup");
		exit(1);
	}
	/* Big buffers: a burst arriving while the thread sends must not be dropped here. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	return fd;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static uint32_t sum16(const unsigned char *p, size_t n, uint32_t sum)
{
	for (; n > 1; p += 2, n -= 2)
		sum += (uint32_t)p[0] << 8 | p[1];
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

/* Puts one frame (offload header + bytes) at the ring's tail, due at due_ns. */
static void enqueue(struct direction *d, const struct virtio_net_hdr *vh,
		    const unsigned char *frame, size_t flen, uint64_t due_ns)
{
	size_t need = (sizeof(struct entry) + HDR + flen + 7) & ~(size_t)7;
	struct entry *e;

	/* Invariants: an entry header always fits at the tail (room for a wrap marker), and
	 * a non-empty ring never has tail == head. */
	if (!d->queued)
		d->head = d->tail = 0;
	if (d->tail >= d->head && d->tail + need + sizeof(struct entry) > RING_BYTES) {
		if (need >= d->head) {
			d->c.ring_full++;
			return;
		}
		e = (struct entry *)(d->ring + d->tail);
		e->skip = 1;
		d->queued += RING_BYTES - d->tail;
		d->tail = 0;
	}
	if (d->tail < d->head && d->tail + need + sizeof(struct entry) >= d->head) {
		d->c.ring_full++;
		return;
	}
	e = (struct entry *)(d->ring + d->tail);
	e->due_ns = due_ns;
	e->len = HDR + flen;
	e->skip = 0;
	memcpy(e + 1, vh, HDR);
	memcpy((unsigned char *)(e + 1) + HDR, frame, flen);
	d->tail += need;
	d->queued += need;
	if (d->queued > d->c.max_queued)
		d->c.max_queued = d->queued;
}

/*
 * A GSO TCP/IPv4 burst with at least one lost segment: cut it into its segments and
 * queue the ones that survive. Returns 0 if the burst is not one we can cut (the caller
 * then draws once for the whole frame).
 */
static int cut_burst(struct direction *d, const struct virtio_net_hdr *vh,
		     const unsigned char *f, size_t flen, const unsigned char *lostmap,
		     unsigned nseg, uint64_t due_ns)
{
	static __thread unsigned char seg[FRAME_MAX];
	size_t l3 = sizeof(struct ether_header);
	const struct iphdr *ip = (const struct iphdr *)(f + l3);
	size_t ihl = ip->ihl * 4, l4 = l3 + ihl;
	const struct tcphdr *th = (const struct tcphdr *)(f + l4);
	size_t thl = th->doff * 4, hl = l4 + thl, mss = vh->gso_size;
	uint32_t seq = ntohl(th->seq);
	uint16_t id = ntohs(ip->id);
	struct virtio_net_hdr sh = { 0 };

	sh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	sh.gso_type = VIRTIO_NET_HDR_GSO_NONE;
	sh.csum_start = l4;
	sh.csum_offset = offsetof(struct tcphdr, check);
	for (unsigned i = 0; i < nseg; i++) {
		size_t off = hl + i * mss;
		size_t plen = flen - off < mss ? flen - off : mss;
		struct iphdr *sip = (struct iphdr *)(seg + l3);
		struct tcphdr *sth = (struct tcphdr *)(seg + l4);
		uint32_t s;

		if (lostmap[i])
			continue;
		memcpy(seg, f, hl);
		memcpy(seg + hl, f + off, plen);
		sip->tot_len = htons(ihl + thl + plen);
		sip->id = htons(id + i);
		sip->check = 0;
		sip->check = htons(~fold(sum16((unsigned char *)sip, ihl, 0)) & 0xffff);
		sth->seq = htonl(seq + i * mss);
		if (i + 1 < nseg)  /* only the last segment carries FIN and PSH */
			seg[l4 + 13] &= ~(TH_FIN | TH_PUSH);
		if (i > 0)         /* only the first carries CWR (as tcp_gso_segment does) */
			seg[l4 + 13] &= ~0x80;
		/* Checksum seed = pseudo-header sum, the device (here: the kernel) adds the rest. */
		s = sum16((const unsigned char *)&ip->saddr, 8, 0) + IPPROTO_TCP + thl + plen;
		sth->check = htons(fold(s));
		enqueue(d, &sh, seg, hl + plen, due_ns);
	}
	d->c.bursts_cut++;
	return 1;
}

/* A frame that just arrived: draw its losses and queue what survives. */
static void admit(struct direction *d, const unsigned char *buf, size_t n, uint64_t due_ns)
{
	const struct virtio_net_hdr *vh = (const struct virtio_net_hdr *)buf;
	const unsigned char *f = buf + HDR;
	size_t flen = n - HDR;
	const struct ether_header *eh = (const struct ether_header *)f;
	int gso = vh->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	unsigned nseg = 1;

	d->c.frames_in++;
	d->c.bytes_in += flen;
	if (flen < sizeof(*eh) || ntohs(eh->ether_type) == ETHERTYPE_ARP) {
		enqueue(d, vh, f, flen, due_ns);
		return;
	}
	if (gso == VIRTIO_NET_HDR_GSO_TCPV4 && vh->gso_size &&
	    ntohs(eh->ether_type) == ETHERTYPE_IP && flen > sizeof(*eh) + 40) {
		const struct iphdr *ip = (const struct iphdr *)(f + sizeof(*eh));
		size_t hl = sizeof(*eh) + ip->ihl * 4;
		unsigned char lostmap[FRAME_MAX / 64];
		unsigned nlost = 0;

		if (ip->protocol == IPPROTO_TCP && flen > hl + sizeof(struct tcphdr)) {
			hl += ((const struct tcphdr *)(f + hl))->doff * 4;
			if (flen > hl) {
				nseg = (flen - hl + vh->gso_size - 1) / vh->gso_size;
				if (nseg > sizeof(lostmap))
					nseg = sizeof(lostmap);
				for (unsigned i = 0; i < nseg; i++)
					nlost += lostmap[i] = lost(d);
				d->c.segments += nseg;
				d->c.segments_lost += nlost;
				if (!nlost)
					enqueue(d, vh, f, flen, due_ns);
				else if (nlost < nseg)
					cut_burst(d, vh, f, flen, lostmap, nseg, due_ns);
				return;
			}
		}
	}
	if (vh->gso_size && flen > 64)  /* a burst we do not cut: k draws, all or nothing */
		nseg = (flen - 54 + vh->gso_size - 1) / vh->gso_size;
	d->c.segments += nseg;
	for (unsigned i = 0; i < nseg; i++) {
		if (lost(d)) {
			d->c.segments_lost += nseg;
			d->c.frames_lost++;
			return;
		}
	}
	enqueue(d, vh, f, flen, due_ns);
}

/* Sends every frame whose time has come; returns the next due time (0: none). */
static uint64_t release(struct direction *d, uint64_t now)
{
	while (d->queued) {
		struct entry *e = (struct entry *)(d->ring + d->head);
		size_t need;

		if (e->skip) {
			d->queued -= RING_BYTES - d->head;
			d->head = 0;
			continue;
		}
		if (e->due_ns > now)
			return e->due_ns;
		if (send(d->tx, e + 1, e->len, 0) < 0) {
			if (errno == ENOBUFS || errno == EAGAIN)
				return now + 20000;  /* the out device is busy: try again in 20 us */
			d->c.send_errors++;
		} else {
			d->c.frames_out++;
		}
		need = (sizeof(struct entry) + e->len + 7) & ~(size_t)7;
		d->head += need;
		d->queued -= need;
	}
	return 0;
}

static void *run(void *arg)
{
	struct direction *d = arg;
	static __thread unsigned char buf[HDR + FRAME_MAX];
	struct pollfd pfd = { .fd = d->rx, .events = POLLIN };

	for (;;) {
		uint64_t now = now_ns(), next = release(d, now);
		struct timespec ts, *tsp = NULL;

		if (next) {
			uint64_t wait = next > now ? next - now : 0;

			ts.tv_sec = wait / 1000000000u;
			ts.tv_nsec = wait % 1000000000u;
			tsp = &ts;
		}
		if (ppoll(&pfd, 1, tsp, NULL) < 0 && errno != EINTR) {
			perror("delayline: ppoll");
			exit(1);
		}
		for (int k = 0; k < 256; k++) {
			ssize_t n = recv(d->rx, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);

			if (n < 0)
				break;
			if ((size_t)n > sizeof(buf) || (size_t)n < HDR) {
				d->c.truncated++;
				continue;
			}
			admit(d, buf, n, now_ns() + d->delay_ns);
		}
	}
	return NULL;
}

static void print_counters(struct direction *dirs, double loss)
{
	printf("{\"loss\": %.6f, \"directions\": {", loss);
	for (int i = 0; i < 2; i++) {
		struct counters *c = &dirs[i].c;
		struct tpacket_stats st = { 0 };
		socklen_t sl = sizeof(st);

		/* Reading the socket's statistics also resets them: keep a running sum. */
		getsockopt(dirs[i].rx, SOL_PACKET, PACKET_STATISTICS, &st, &sl);
		static uint64_t sock_drops[2];
		sock_drops[i] += st.tp_drops;
		printf("%s\"%s\": {\"delay_ms\": %.3f, \"frames_in\": %lu, \"bytes_in\": %lu, "
		       "\"segments\": %lu, \"segments_lost\": %lu, \"frames_lost_whole\": %lu, "
		       "\"bursts_cut\": %lu, \"frames_out\": %lu, \"ring_full\": %lu, "
		       "\"send_errors\": %lu, \"truncated\": %lu, \"socket_drops\": %lu, "
		       "\"max_queued_bytes\": %lu}",
		       i ? ", " : "", dirs[i].name, dirs[i].delay_ns / 1e6,
		       (unsigned long)c->frames_in, (unsigned long)c->bytes_in,
		       (unsigned long)c->segments, (unsigned long)c->segments_lost,
		       (unsigned long)c->frames_lost, (unsigned long)c->bursts_cut,
		       (unsigned long)c->frames_out, (unsigned long)c->ring_full,
		       (unsigned long)c->send_errors, (unsigned long)c->truncated,
		       (unsigned long)sock_drops[i], (unsigned long)c->max_queued);
	}
	printf("}}\n");
	fflush(stdout);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_delayline --a IF --b IF --delay-ms MS [--delay-ba-ms MS] "
		"[--loss P (0..1, per segment, each direction)] [--seed N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "a", required_argument, 0, 'a' }, { "b", required_argument, 0, 'b' },
		{ "delay-ms", required_argument, 0, 'd' },
		{ "delay-ba-ms", required_argument, 0, 'D' },
		{ "loss", required_argument, 0, 'l' }, { "seed", required_argument, 0, 's' },
		{ 0, 0, 0, 0 } };
	const char *ifa = NULL, *ifb = NULL;
	double delay = -1, delay_ba = -1, loss = 0;
	uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	struct direction dirs[2];
	pthread_t th[2];
	sigset_t set;
	int o, sig;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *end = NULL;

		switch (o) {
		case 'a': ifa = optarg; break;
		case 'b': ifb = optarg; break;
		case 'd': delay = strtod(optarg, &end); break;
		case 'D': delay_ba = strtod(optarg, &end); break;
		case 'l': loss = strtod(optarg, &end); break;
		case 's': seed = strtoull(optarg, &end, 0); break;
		default: usage();
		}
		if (end && *end) {
			fprintf(stderr, "delayline: bad number: %s\n", optarg);
			usage();
		}
	}
	if (!ifa || !ifb || delay < 0 || loss < 0 || loss > 1 || optind != argc)
		usage();
	if (delay_ba < 0)
		delay_ba = delay;

	/* Workers never take the signals: the main thread waits for them. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	memset(dirs, 0, sizeof(dirs));
	int fa = open_if(ifa), fb = open_if(ifb);
	for (int i = 0; i < 2; i++) {
		struct direction *d = &dirs[i];

		d->name = i ? "b_to_a" : "a_to_b";
		d->rx = i ? fb : fa;
		d->tx = i ? fa : fb;
		d->delay_ns = (uint64_t)((i ? delay_ba : delay) * 1e6);
		d->loss_threshold = loss >= 1 ? UINT64_MAX : (uint64_t)(loss * 18446744073709551616.0);
		d->rng = seed + 0x632be59bd9b4e019ull * (i + 1);
		d->ring = malloc(RING_BYTES);
		if (!d->ring) {
			fprintf(stderr, "delayline: out of memory\n");
			return 1;
		}
		if (pthread_create(&th[i], NULL, run, d)) {
			fprintf(stderr, "delayline: pthread_create failed\n");
			return 1;
		}
	}
	fprintf(stderr, "delayline: %s <-> %s, %.3f ms / %.3f ms, loss %.6f per segment\n",
		ifa, ifb, delay, delay_ba, loss);
	for (;;) {
		if (sigwait(&set, &sig))
			continue;
		print_counters(dirs, loss);
		if (sig != SIGUSR1)
			return 0;
	}
}
