/* SPDX-License-Identifier: GPL-2.0 */
/*
 * agentfilt: internal declarations shared by the device (af_dev.c), socket
 * (af_sock.c) and per-user accounting (af_user.c) parts of the module.
 *
 * Locking order: af_file.lock (mutex) -> lock_sock -> sk_callback_lock ->
 * af_file.qlock (irq-safe spinlock); af_orphan_lock (mutex) -> lock_sock.
 * The socket callbacks only ever take qlock (and, when the socket reaches
 * TCP_CLOSE, sk_callback_lock: they run with the socket locked then), under
 * rcu_read_lock(); watches and files are freed after an RCU grace period
 * so a callback racing with unwatch or close never touches freed memory.
 */
#ifndef AF_H
#define AF_H

#include <linux/atomic.h>
#include <linux/hashtable.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/uidgid.h>
#include <linux/wait.h>

#include <agentfilt.h>	/* the uapi header, see Kbuild */

#define AF_HASH_BITS	8

struct sock;

struct af_counters {
	atomic64_t data_ready;
	atomic64_t state_change;
	atomic64_t write_space;
	atomic64_t error_report;
	atomic64_t passed;
	atomic64_t coalesced;
};

/*
 * The watches of one user (by the opener's effective uid), over all of its
 * open files and orphans: bounded by the max_user_watches parameter.
 */
struct af_user {
	kuid_t uid;
	refcount_t ref;			/* files and orphans of this user */
	atomic_t watches;
	struct hlist_node node;		/* in af_users, under af_users_lock */
};

/* One open file of /dev/agentfilt. */
struct af_file {
	struct mutex lock;		/* watches, nwatches, past */
	DECLARE_HASHTABLE(watches, AF_HASH_BITS);
	u32 nwatches;
	struct agentfilt_counters past;	/* of watches already gone */
	struct af_user *user;

	spinlock_t qlock;		/* ready, af_watch.pending/bytes/detached */
	struct list_head ready;		/* watches with a pending event */
	wait_queue_head_t wq;

	struct rcu_head rcu;
};

/* One watched socket. sk_user_data of the socket points here. */
struct af_watch {
	struct sock *sk;		/* holds a reference */
	struct af_file *af;		/* NULL once orphaned (see af_detach) */
	struct af_user *user;		/* charged one watch */
	u64 token;
	struct hlist_node hnode;	/* in af->watches, under af->lock */
	struct list_head onode;		/* in af_orphans, under af_orphan_lock */

	struct list_head rnode;		/* in af->ready, under af->qlock */
	bool pending;
	bool detached;
	u32 bytes;
	int err_seen;			/* sk_err at the last error report */

	struct af_counters cnt;
	struct rcu_head rcu;
};

/* af_sock.c */
int af_sock_init(void);
void af_sock_exit(void);
int af_attach(struct af_file *af, struct af_watch *w, int fd);
void af_detach(struct af_file *af, struct af_watch *w);
void af_counters_read(const struct af_counters *c, struct agentfilt_counters *out);
void af_counters_add(struct agentfilt_counters *sum, const struct agentfilt_counters *c);
extern atomic_t af_live_watches;

/* af_user.c */
struct af_user *af_user_get(kuid_t uid);
void af_user_put(struct af_user *u);
int af_user_charge(struct af_user *u);
void af_user_uncharge(struct af_user *u);

#endif /* AF_H */
