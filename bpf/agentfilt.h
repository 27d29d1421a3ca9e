/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * agentfilt (eBPF): definitions shared by agentfilt.bpf.c and libagent's
 * BpfSource, beyond the common ABI in include/uapi/agentfilt.h (whose
 * struct agentfilt_event is the ring-buffer record and whose struct
 * agentfilt_counters holds the event counts).
 *
 * Registration: user space stores a struct agentfilt_sk in the SK_STORAGE
 * map "watched" with the socket fd as key. The value frees itself when the
 * socket closes. Each watch owns a slot of the mmapable array "pending";
 * its word is 1 while a data-arrival record is queued and not yet taken by
 * user space (coalescing: later arrivals only count).
 */
#ifndef AGENTFILT_BPF_H
#define AGENTFILT_BPF_H

#ifdef __bpf__
/* vmlinux.h already has the __u* types; keep the uapi header's includes out. */
#define _LINUX_TYPES_H
#define _LINUX_IOCTL_H
#endif
#include "uapi/agentfilt.h"

/* Default sizes; user space may change both before loading. */
#define AGENTFILT_BPF_RING_BYTES	(256 * 1024)	/* power of 2, >= page */
#define AGENTFILT_BPF_SLOTS		65536		/* max watched sockets */

/* The SK_STORAGE value of a watched socket. */
struct agentfilt_sk {
	__u64 token;		/* written by user space: bits 0-31 are the slot */
	__u32 slot;		/* index into "pending" */
	__u32 flags;		/* must be 0 */
	struct agentfilt_counters counters;
	__u64 overflows;	/* ring buffer reservations that failed */
};

/* Totals over every registered socket, past and present (in .bss). */
struct agentfilt_totals {
	struct agentfilt_counters counters;
	__u64 overflows;
};

#endif /* AGENTFILT_BPF_H */
