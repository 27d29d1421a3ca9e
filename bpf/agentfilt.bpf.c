// SPDX-License-Identifier: GPL-2.0
/*
 * agentfilt.bpf.c: the agentfilt filter as a CO-RE eBPF program.
 *
 * It observes the TCP sockets user space registered in the SK_STORAGE map
 * "watched" and counts every signaling event of theirs by type:
 *
 *   data_ready    tp_btf/sk_data_ready (6.3+), else fentry/sock_def_readable
 *   state_change  tp_btf/inet_sock_set_state (every TCP state transition)
 *   error_report  tp_btf/inet_sk_error_report
 *   write_space   tp_btf/tcp_probe, counted when an incoming ACK advances
 *                 snd_una while the writer waits for space (SOCK_NOSPACE):
 *                 that is when tcp_check_space() calls sk_write_space().
 *                 There is no write-space tracepoint and hosts that refuse
 *                 fentry still allow this one (see bpf/README.md).
 *
 * Only data arrival passes: it writes one struct agentfilt_event
 * {token, bytes queued} into the ring buffer "events", at most one pending
 * per socket (the socket's word in "pending" is set until user space takes
 * the record; arrivals meanwhile are counted as coalesced). If the ring is
 * full the reservation fails: the program sets "overflow" and user space
 * re-reads every watched socket, so nothing is lost.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "agentfilt.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * Bit number in struct socket::flags: a #define in include/linux/net.h, so
 * not in BTF and out of CO-RE's reach; unchanged since 2.6.
 */
#define AF_SOCK_NOSPACE	2

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct agentfilt_sk);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, AGENTFILT_BPF_RING_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, AGENTFILT_BPF_SLOTS);
} pending SEC(".maps");

/* Read (and overflow cleared) by user space through the mmapped .bss. */
struct agentfilt_totals totals;
__u32 overflow;

static __always_inline struct agentfilt_sk *lookup(const struct sock *sk)
{
	return bpf_sk_storage_get(&watched, (void *)sk, NULL, 0);
}

static __always_inline bool post(__u64 token, __u32 bytes, __u32 flags)
{
	struct agentfilt_event *ev;

	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev)
		return false;
	ev->token = token;
	ev->bytes = bytes;
	ev->flags = flags;
	bpf_ringbuf_submit(ev, 0);
	return true;
}

static __always_inline void data_ready(const struct sock *sk)
{
	struct agentfilt_sk *st;
	struct tcp_sock *tp;
	__u32 slot, bytes = 0;
	__u64 *p;

	st = lookup(sk);
	if (!st)
		return;
	__sync_fetch_and_add(&st->counters.data_ready, 1);
	__sync_fetch_and_add(&totals.counters.data_ready, 1);

	slot = st->slot;
	p = bpf_map_lookup_elem(&pending, &slot);
	if (!p)
		return;
	if (__sync_val_compare_and_swap(p, 0, 1) != 0) {
		/* A record is queued and not yet taken: merge into it. */
		__sync_fetch_and_add(&st->counters.coalesced, 1);
		__sync_fetch_and_add(&totals.counters.coalesced, 1);
		return;
	}

	tp = bpf_skc_to_tcp_sock((void *)sk);
	if (tp)
		bytes = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);

	if (!post(st->token, bytes, 0)) {
		/*
		 * Ring full. Flag it first, then try once more: if the retry
		 * fails too, the ring still holds records user space has not
		 * consumed, and it reads the flag after consuming them; if it
		 * succeeds, the record itself wakes user space. The slot stays
		 * pending until user space re-reads every socket.
		 */
		__sync_fetch_and_add(&st->overflows, 1);
		__sync_fetch_and_add(&totals.overflows, 1);
		__sync_lock_test_and_set(&overflow, 1);
		if (!post(st->token, bytes, AGENTFILT_EV_OVERFLOW))
			return;
	}
	__sync_fetch_and_add(&st->counters.passed, 1);
	__sync_fetch_and_add(&totals.counters.passed, 1);
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(af_data_ready, const struct sock *sk)
{
	data_ready(sk);
	return 0;
}

/* Kernels before 6.3 have no sk_data_ready tracepoint (chosen at load). */
SEC("fentry/sock_def_readable")
int BPF_PROG(af_data_ready_fentry, struct sock *sk)
{
	data_ready(sk);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(af_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct agentfilt_sk *st = lookup(sk);

	if (!st)
		return 0;
	__sync_fetch_and_add(&st->counters.state_change, 1);
	__sync_fetch_and_add(&totals.counters.state_change, 1);
	return 0;
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(af_error_report, const struct sock *sk)
{
	struct agentfilt_sk *st = lookup(sk);

	if (!st)
		return 0;
	__sync_fetch_and_add(&st->counters.error_report, 1);
	__sync_fetch_and_add(&totals.counters.error_report, 1);
	return 0;
}

/* Called for every segment tcp_rcv_established() takes, before processing. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(af_tcp_probe, struct sock *sk, struct sk_buff *skb)
{
	struct agentfilt_sk *st;
	struct tcp_sock *tp;
	struct tcphdr *th;
	struct socket *so;
	__u32 ack;

	st = lookup(sk);
	if (!st)
		return 0;
	so = BPF_CORE_READ(sk, sk_socket);
	if (!so || !(BPF_CORE_READ(so, flags) & (1UL << AF_SOCK_NOSPACE)))
		return 0;
	/* tcp_rcv_established() traces with skb->data at the TCP header. */
	th = (struct tcphdr *)BPF_CORE_READ(skb, data);
	if (!th || !BPF_CORE_READ_BITFIELD_PROBED(th, ack))
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	ack = bpf_ntohl(BPF_CORE_READ(th, ack_seq));
	if ((__s32)(ack - BPF_CORE_READ(tp, snd_una)) <= 0)
		return 0;
	__sync_fetch_and_add(&st->counters.write_space, 1);
	__sync_fetch_and_add(&totals.counters.write_space, 1);
	return 0;
}
