// SPDX-License-Identifier: GPL-2.0
/*
 * agentfilt: wrapping the signaling callbacks of a watched TCP socket.
 *
 * Every callback is counted and always chained to the callback it replaced.
 * Only data arrival (sk_data_ready) queues an event on the watching file,
 * and at most one per watch: a data arrival while an event is pending only
 * refreshes its byte count and is counted as coalesced.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/slab.h>
#include <net/inet_connection_sock.h>
#include <net/sock.h>
#include <net/tcp.h>

#include "af.h"
#include "compat.h"

atomic_t af_live_watches = ATOMIC_INIT(0);

/*
 * The callbacks of an unwrapped kernel TCP socket, learnt once at load
 * time. Only sockets that still have exactly these are watched, so these
 * are also what a callback chains to when it no longer finds its watch.
 */
static struct {
	void (*data_ready)(struct sock *sk);
	void (*state_change)(struct sock *sk);
	void (*write_space)(struct sock *sk);
	void (*error_report)(struct sock *sk);
} af_def;

int af_sock_init(void)
{
	struct socket *sock;
	int err;

	err = sock_create_kern(&init_net, AF_INET, SOCK_STREAM, IPPROTO_TCP, &sock);
	if (err)
		return err;
	af_def.data_ready = sock->sk->sk_data_ready;
	af_def.state_change = sock->sk->sk_state_change;
	af_def.write_space = sock->sk->sk_write_space;
	af_def.error_report = sock->sk->sk_error_report;
	sock_release(sock);
	return 0;
}

void af_counters_read(const struct af_counters *c, struct agentfilt_counters *out)
{
	out->data_ready = atomic64_read(&c->data_ready);
	out->state_change = atomic64_read(&c->state_change);
	out->write_space = atomic64_read(&c->write_space);
	out->error_report = atomic64_read(&c->error_report);
	out->passed = atomic64_read(&c->passed);
	out->coalesced = atomic64_read(&c->coalesced);
}

void af_counters_add(struct agentfilt_counters *sum, const struct agentfilt_counters *c)
{
	sum->data_ready += c->data_ready;
	sum->state_change += c->state_change;
	sum->write_space += c->write_space;
	sum->error_report += c->error_report;
	sum->passed += c->passed;
	sum->coalesced += c->coalesced;
}

static struct af_watch *af_watch_of(const struct sock *sk)
{
	return __rcu_dereference_sk_user_data_with_flags(sk, SK_USER_DATA_NOCOPY);
}

static void af_data_ready(struct sock *sk);
static void af_state_change(struct sock *sk);
static void af_write_space(struct sock *sk);
static void af_error_report(struct sock *sk);

/*
 * A callback of ours ran but the socket no longer points at a watch: it
 * raced with af_detach() (which restored the callbacks before clearing
 * sk_user_data, so the reload below finds the original), or the socket is
 * a clone of a watched one (a watched socket whose connect failed and that
 * then listened). A clone gets the original callbacks back.
 */
static void af_orphan_clone(struct sock *sk)
{
	cmpxchg(&sk->sk_data_ready, af_data_ready, af_def.data_ready);
	cmpxchg(&sk->sk_state_change, af_state_change, af_def.state_change);
	cmpxchg(&sk->sk_write_space, af_write_space, af_def.write_space);
	cmpxchg(&sk->sk_error_report, af_error_report, af_def.error_report);
}

enum af_cb {
	AF_CB_DATA_READY,
	AF_CB_STATE_CHANGE,
	AF_CB_WRITE_SPACE,
	AF_CB_ERROR_REPORT,
};

static void af_chain_lost(struct sock *sk, enum af_cb kind)
{
	void (*cb)(struct sock *sk);

	smp_rmb(); /* pairs with smp_wmb() in af_detach() */
	switch (kind) {
	case AF_CB_DATA_READY:
		cb = READ_ONCE(sk->sk_data_ready);
		if (cb != af_data_ready)
			break;
		af_orphan_clone(sk);
		cb = af_def.data_ready;
		break;
	case AF_CB_STATE_CHANGE:
		cb = READ_ONCE(sk->sk_state_change);
		if (cb != af_state_change)
			break;
		af_orphan_clone(sk);
		cb = af_def.state_change;
		break;
	case AF_CB_WRITE_SPACE:
		cb = READ_ONCE(sk->sk_write_space);
		if (cb != af_write_space)
			break;
		af_orphan_clone(sk);
		cb = af_def.write_space;
		break;
	case AF_CB_ERROR_REPORT:
	default:
		cb = READ_ONCE(sk->sk_error_report);
		if (cb != af_error_report)
			break;
		af_orphan_clone(sk);
		cb = af_def.error_report;
		break;
	}
	cb(sk);
}

/* Queues the one pending event of w, or merges into it. */
static void af_queue(struct af_watch *w, struct sock *sk)
{
	struct af_file *af = READ_ONCE(w->af);
	unsigned long flags;
	bool wake = false;
	int inq;

	if (!af)
		return;
	inq = tcp_inq(sk);
	spin_lock_irqsave(&af->qlock, flags);
	if (!w->detached) {
		w->bytes = inq > 0 ? inq : 0;
		if (w->pending) {
			atomic64_inc(&w->cnt.coalesced);
		} else {
			w->pending = true;
			list_add_tail(&w->rnode, &af->ready);
			atomic64_inc(&w->cnt.passed);
			wake = true;
		}
	}
	spin_unlock_irqrestore(&af->qlock, flags);
	if (wake)
		wake_up_interruptible_poll(&af->wq, EPOLLIN | EPOLLRDNORM);
}

static void af_data_ready(struct sock *sk)
{
	struct af_watch *w;

	rcu_read_lock();
	w = af_watch_of(sk);
	if (likely(w)) {
		atomic64_inc(&w->cnt.data_ready);
		w->saved_data_ready(sk);
		af_queue(w, sk);
	} else {
		af_chain_lost(sk, AF_CB_DATA_READY);
	}
	rcu_read_unlock();
}

static void af_state_change(struct sock *sk)
{
	struct af_watch *w;

	rcu_read_lock();
	w = af_watch_of(sk);
	if (likely(w)) {
		atomic64_inc(&w->cnt.state_change);
		w->saved_state_change(sk);
	} else {
		af_chain_lost(sk, AF_CB_STATE_CHANGE);
	}
	rcu_read_unlock();
}

static void af_write_space(struct sock *sk)
{
	struct af_watch *w;

	rcu_read_lock();
	w = af_watch_of(sk);
	if (likely(w)) {
		atomic64_inc(&w->cnt.write_space);
		w->saved_write_space(sk);
	} else {
		af_chain_lost(sk, AF_CB_WRITE_SPACE);
	}
	rcu_read_unlock();
}

static void af_error_report(struct sock *sk)
{
	struct af_watch *w;

	rcu_read_lock();
	w = af_watch_of(sk);
	if (likely(w)) {
		atomic64_inc(&w->cnt.error_report);
		w->saved_error_report(sk);
	} else {
		af_chain_lost(sk, AF_CB_ERROR_REPORT);
	}
	rcu_read_unlock();
}

static bool af_is_ours(const struct sock *sk)
{
	return sk->sk_data_ready == af_data_ready;
}

static bool af_has_defaults(const struct sock *sk)
{
	return sk->sk_data_ready == af_def.data_ready &&
	       sk->sk_state_change == af_def.state_change &&
	       sk->sk_write_space == af_def.write_space &&
	       sk->sk_error_report == af_def.error_report;
}

/* Is sk a TCP socket over IPv4 or IPv6 (not MPTCP, not raw)? */
static bool af_is_tcp(const struct sock *sk)
{
	return (sk->sk_family == AF_INET || sk->sk_family == AF_INET6) &&
	       sk->sk_type == SOCK_STREAM && sk->sk_protocol == IPPROTO_TCP;
}

/* Caller holds lock_sock(sk) and sk_callback_lock for writing. */
static int af_check_sock(struct af_file *af, struct sock *sk)
{
	struct af_watch *other;

	if (af_is_ours(sk)) {
		other = rcu_dereference_protected(__sk_user_data(sk), 1);
		other = (void *)((uintptr_t)other & SK_USER_DATA_PTRMASK);
		return other && other->af == af ? -EALREADY : -EBUSY;
	}
	if (sk->sk_state == TCP_LISTEN)
		return -EOPNOTSUPP;
	if (sk->sk_state == TCP_CLOSE || sock_flag(sk, SOCK_DEAD))
		return -ENOTCONN;
	if (rcu_access_pointer(__sk_user_data(sk)) || inet_csk(sk)->icsk_ulp_ops ||
	    !af_has_defaults(sk))
		return -EBUSY;
	return 0;
}

/*
 * Watches socket fd of the calling task: takes a reference on the socket
 * and wraps its four callbacks. Called with af->lock held.
 */
int af_attach(struct af_file *af, struct af_watch *w, int fd)
{
	struct socket *sock;
	struct sock *sk;
	int err;

	sock = sockfd_lookup(fd, &err);
	if (!sock)
		return err;
	sk = sock->sk;
	err = -EPROTONOSUPPORT;
	if (!sk || !af_is_tcp(sk))
		goto out_put;

	lock_sock(sk);
	write_lock_bh(&sk->sk_callback_lock);
	err = af_check_sock(af, sk);
	if (err)
		goto out_unlock;

	sock_hold(sk);
	w->sk = sk;
	w->af = af;
	w->saved_data_ready = sk->sk_data_ready;
	w->saved_state_change = sk->sk_state_change;
	w->saved_write_space = sk->sk_write_space;
	w->saved_error_report = sk->sk_error_report;
	__rcu_assign_sk_user_data_with_flags(sk, w, SK_USER_DATA_NOCOPY);
	/* A callback that sees one of ours must find the watch. */
	smp_wmb();
	WRITE_ONCE(sk->sk_data_ready, af_data_ready);
	WRITE_ONCE(sk->sk_state_change, af_state_change);
	WRITE_ONCE(sk->sk_write_space, af_write_space);
	WRITE_ONCE(sk->sk_error_report, af_error_report);
	atomic_inc(&af_live_watches);
	err = 0;

out_unlock:
	write_unlock_bh(&sk->sk_callback_lock);
	release_sock(sk);
out_put:
	sockfd_put(sock);
	return err;
}

/* Puts back each callback that is still ours; false if any is not. */
static bool af_restore(struct sock *sk, struct af_watch *w)
{
	bool all = true;

	if (sk->sk_data_ready == af_data_ready)
		WRITE_ONCE(sk->sk_data_ready, w->saved_data_ready);
	else
		all = false;
	if (sk->sk_state_change == af_state_change)
		WRITE_ONCE(sk->sk_state_change, w->saved_state_change);
	else
		all = false;
	if (sk->sk_write_space == af_write_space)
		WRITE_ONCE(sk->sk_write_space, w->saved_write_space);
	else
		all = false;
	if (sk->sk_error_report == af_error_report)
		WRITE_ONCE(sk->sk_error_report, w->saved_error_report);
	else
		all = false;
	return all;
}

/*
 * Stops watching: restores the callbacks, drops the pending event and the
 * socket reference, folds the counters into the file's and frees the watch
 * after a grace period. Called with af->lock held, the watch already
 * removed from nothing else.
 *
 * If something wrapped the socket's callbacks after us (we refuse such
 * sockets, but e.g. a ULP may still be attached later), ours cannot be
 * taken out of its chain: the watch is then orphaned instead of freed. It
 * keeps chaining, counts nothing for anybody and pins the module.
 */
void af_detach(struct af_file *af, struct af_watch *w)
{
	struct agentfilt_counters c;
	struct sock *sk = w->sk;
	bool restored;

	write_lock_bh(&sk->sk_callback_lock);
	restored = af_restore(sk, w);
	if (restored) {
		/* A callback that finds no watch must reload the originals. */
		smp_wmb();
		__rcu_assign_sk_user_data_with_flags(sk, NULL, 0);
	}
	write_unlock_bh(&sk->sk_callback_lock);

	spin_lock_irq(&af->qlock);
	w->detached = true;
	if (w->pending) {
		list_del_init(&w->rnode);
		w->pending = false;
	}
	spin_unlock_irq(&af->qlock);

	hash_del(&w->hnode);
	af->nwatches--;
	af_counters_read(&w->cnt, &c);
	af_counters_add(&af->past, &c);

	if (!restored) {
		WRITE_ONCE(w->af, NULL);
		__module_get(THIS_MODULE);
		pr_warn_ratelimited("socket callbacks wrapped after ours; watch %llu orphaned\n",
				    w->token);
		sock_put(sk);
		return;
	}
	sock_put(sk);
	atomic_dec(&af_live_watches);
	kfree_rcu(w, rcu);
}
