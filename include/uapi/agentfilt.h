/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * agentfilt: the ABI shared by the kernel module (kmod/), the eBPF filter
 * (bpf/) and libagent. One header, so the three cannot drift apart.
 *
 * A watched TCP socket reports every signaling callback to the filter; only
 * data arrival becomes an event record, coalesced to one pending record per
 * socket. Records are read whole from /dev/agentfilt (kmod) or a BPF ring
 * buffer (bpf).
 *
 * Growing the ABI: AGENTFILT_ABI_VERSION changes only when an existing
 * structure or meaning changes incompatibly. Additions get a feature bit in
 * agentfilt_version.features and use reserved fields, which callers set to
 * zero and the module refuses (EINVAL) when they are not.
 */
#ifndef _UAPI_LINUX_AGENTFILT_H
#define _UAPI_LINUX_AGENTFILT_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define AGENTFILT_DEVICE	"/dev/agentfilt"
#define AGENTFILT_ABI_VERSION	2

/* agentfilt_version.features: what this module implements. */
#define AGENTFILT_FEAT_EVENTS		(1ULL << 0)	/* read() of agentfilt_event */
#define AGENTFILT_FEAT_STATS_FILE	(1ULL << 1)	/* AGENTFILT_STATS_FILE */
#define AGENTFILT_FEAT_USER_LIMIT	(1ULL << 2)	/* ENOSPC past max_user_watches */

/* One data-arrival event. bytes is what the socket had queued to read. */
struct agentfilt_event {
	__u64 token;
	__u32 bytes;
	__u32 flags;		/* AGENTFILT_EV_* */
};

/* Set on a record when events were lost (bpf ring full): re-read all. */
#define AGENTFILT_EV_OVERFLOW	(1U << 0)

/* Callbacks seen and what became of them. */
struct agentfilt_counters {
	__u64 data_ready;	/* sk_data_ready calls */
	__u64 state_change;	/* sk_state_change calls */
	__u64 write_space;	/* sk_write_space calls */
	__u64 error_report;	/* sk_error_report calls */
	__u64 passed;		/* events queued for user space */
	__u64 coalesced;	/* data arrivals merged into a pending event */
};

/* AGENTFILT_IOC_WATCH: watch socket fd of the caller; events carry token. */
struct agentfilt_watch {
	__s32 fd;
	__u32 flags;		/* must be 0 */
	__u64 token;		/* must be unique per open file */
	__u64 reserved[2];	/* must be 0 */
};

/* AGENTFILT_IOC_UNWATCH: stop watching the socket of token. */
struct agentfilt_unwatch {
	__u64 token;
	__u32 flags;		/* must be 0 */
	__u32 reserved;		/* must be 0 */
};

/*
 * AGENTFILT_IOC_STATS: in: token and flags; out: counters. With
 * AGENTFILT_STATS_FILE set, token is ignored and the file's totals
 * (all watches, past and present) are returned.
 */
struct agentfilt_stats {
	__u64 token;
	__u32 flags;		/* AGENTFILT_STATS_* */
	__u32 watches;		/* out: watches open on the file */
	struct agentfilt_counters counters;
	__u64 reserved[4];	/* in: must be 0; out: 0 */
};

#define AGENTFILT_STATS_FILE	(1U << 0)

struct agentfilt_version {
	__u32 abi;		/* AGENTFILT_ABI_VERSION */
	__u32 event_size;	/* sizeof(struct agentfilt_event) */
	__u64 features;		/* AGENTFILT_FEAT_* */
	__u64 reserved[2];	/* 0 */
};

/* 0xBA is free in Documentation/userspace-api/ioctl/ioctl-number.rst. */
#define AGENTFILT_IOC_MAGIC	0xBA
#define AGENTFILT_IOC_VERSION	_IOR(AGENTFILT_IOC_MAGIC, 0, struct agentfilt_version)
#define AGENTFILT_IOC_WATCH	_IOW(AGENTFILT_IOC_MAGIC, 1, struct agentfilt_watch)
#define AGENTFILT_IOC_UNWATCH	_IOW(AGENTFILT_IOC_MAGIC, 2, struct agentfilt_unwatch)
#define AGENTFILT_IOC_STATS	_IOWR(AGENTFILT_IOC_MAGIC, 3, struct agentfilt_stats)

#endif /* _UAPI_LINUX_AGENTFILT_H */
