// SPDX-License-Identifier: GPL-2.0
/*
 * agentfilt: wrapping the signaling callbacks of a watched TCP socket.
 *
 * Every callback is counted and always chained to the TCP default it
 * replaced: only sockets that still have the defaults are watched, so the
 * defaults are what we chain to, never whatever the socket has installed
 * now (a layer stacked on top of us, e.g. kTLS, calls us in turn: chaining
 * to the current pointer would recurse). Only data arrival
 * (sk_data_ready) queues an event on the watching file, and at most one per
 * watch: a data arrival while an event is pending only refreshes its byte
 * count and is counted as coalesced.
 *
 * Our callbacks must never outlive the module. They live on watched
 * sockets only: a socket that reaches TCP_CLOSE gets the defaults back at
 * once (a closed socket may listen() next, and its children would be
 * clones carrying our pointers); unwatching restores them; and a socket
 * on which another layer wrapped ours after WATCH (kTLS does, under
 * lock_sock only) keeps an orphaned watch, with a module reference, until
 * that layer lets go of our pointers (kTLS: when the socket is closed).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/slab.h>
#include <linux/workqueue.h>
#include <net/inet_connection_sock.h>
#include <net/sock.h>
#include <net/tcp.h>

#include "af.h"
#include "compat.h"

atomic_t af_live_watches = ATOMIC_INIT(0);

/*
 * The callbacks of an unwrapped kernel TCP socket, learnt once at load
 * time. Only sockets that still have exactly these are watched, so these
 * are also what every callback chains to.
 */
static struct {
	void (*data_ready)(struct sock *sk);
	void (*state_change)(struct sock *sk);
	void (*write_space)(struct sock *sk);
	void (*error_report)(struct sock *sk);
} af_def;

/* Watches unwatched while another layer held our callbacks (af_detach). */
static LIST_HEAD(af_orphans);
static DEFINE_MUTEX(af_orphan_lock);
static void af_reap(struct work_struct *work);
static DECLARE_DELAYED_WORK(af_reap_work, af_reap);
#define AF_REAP_INTERVAL	(HZ / 10)

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

/* Module exit: no orphan is left (each holds a module reference). */
void af_sock_exit(void)
{
	cancel_delayed_work_sync(&af_reap_work);
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

/*
 * The watch sk_user_data points at, if it is one of ours: tagged exactly
 * NOCOPY (sockmap's psock is NOCOPY|PSOCK, reuseport's NOCOPY|BPF) and
 * naming this very socket.
 */
static struct af_watch *af_watch_of(const struct sock *sk)
{
	uintptr_t v = (uintptr_t)rcu_dereference(__sk_user_data(sk));
	struct af_watch *w;

	if ((v & ~SK_USER_DATA_PTRMASK) != SK_USER_DATA_NOCOPY)
		return NULL;
	w = (struct af_watch *)(v & SK_USER_DATA_PTRMASK);
	return w && READ_ONCE(w->sk) == sk ? w : NULL;
}

static void af_data_ready(struct sock *sk);
static void af_state_change(struct sock *sk);
static void af_write_space(struct sock *sk);
static void af_error_report(struct sock *sk);

static bool af_is_ours(const struct sock *sk)
{
	return sk->sk_data_ready == af_data_ready ||
	       sk->sk_state_change == af_state_change ||
	       sk->sk_write_space == af_write_space ||
	       sk->sk_error_report == af_error_report;
}

static bool af_all_ours(const struct sock *sk)
{
	return sk->sk_data_ready == af_data_ready &&
	       sk->sk_state_change == af_state_change &&
	       sk->sk_write_space == af_write_space &&
	       sk->sk_error_report == af_error_report;
}

static bool af_has_defaults(const struct sock *sk)
{
	return sk->sk_data_ready == af_def.data_ready &&
	       sk->sk_state_change == af_def.state_change &&
	       sk->sk_write_space == af_def.write_space &&
	       sk->sk_error_report == af_def.error_report;
}

/*
 * Puts the defaults back where our callbacks are installed and, if the
 * socket then has nothing but defaults, lets go of sk_user_data; leaves a
 * socket alone that another watch owns by now. Returns
 * false if some callback is neither ours nor the default: another layer
 * wrapped ours and may still call it. Caller holds sk_callback_lock for
 * writing and the socket lock.
 */
static bool af_unwrap(struct sock *sk, struct af_watch *w)
{
	struct af_watch *owner = af_watch_of(sk);

	/* Unwrapped at TCP_CLOSE, reconnected and watched anew since. */
	if (owner && owner != w)
		return true;
	if (sk->sk_data_ready == af_data_ready)
		WRITE_ONCE(sk->sk_data_ready, af_def.data_ready);
	if (sk->sk_state_change == af_state_change)
		WRITE_ONCE(sk->sk_state_change, af_def.state_change);
	if (sk->sk_write_space == af_write_space)
		WRITE_ONCE(sk->sk_write_space, af_def.write_space);
	if (sk->sk_error_report == af_error_report)
		WRITE_ONCE(sk->sk_error_report, af_def.error_report);
	if (!af_has_defaults(sk))
		return false;
	if (owner)
		__rcu_assign_sk_user_data_with_flags(sk, NULL, 0);
	return true;
}

/*
 * The socket reached TCP_CLOSE (a failed connect, a reset, a disconnect):
 * give it its defaults back before it can listen() and clone our pointers
 * into children that no watch accounts for. The callers of state_change
 * and error_report at TCP_CLOSE hold the socket lock (or own it in
 * softirq), as lock_sock would. A socket another layer has wrapped keeps
 * its watch as it is: such layers (ULPs) cannot listen.
 */
static void af_closed(struct sock *sk, struct af_watch *w)
{
	int err = READ_ONCE(sk->sk_err);

	if (READ_ONCE(sk->sk_state) != TCP_CLOSE)
		return;
	write_lock_bh(&sk->sk_callback_lock);
	if (af_all_ours(sk) && af_unwrap(sk, w) && err && READ_ONCE(w->err_seen) != err &&
	    READ_ONCE(w->af))
		/*
		 * tcp_done_with_error() reports the error right after the
		 * state change, to the default callback now: count it here.
		 */
		atomic64_inc(&w->cnt.error_report);
	write_unlock_bh(&sk->sk_callback_lock);
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
	/* Counted here, so data_ready == passed + coalesced always holds. */
	if (!w->detached) {
		atomic64_inc(&w->cnt.data_ready);
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

	af_def.data_ready(sk);
	rcu_read_lock();
	w = af_watch_of(sk);
	if (likely(w))
		af_queue(w, sk);
	rcu_read_unlock();
}

static void af_state_change(struct sock *sk)
{
	struct af_watch *w;

	af_def.state_change(sk);
	rcu_read_lock();
	w = af_watch_of(sk);
	if (likely(w)) {
		if (READ_ONCE(w->af))
			atomic64_inc(&w->cnt.state_change);
		af_closed(sk, w);
	}
	rcu_read_unlock();
}

static void af_write_space(struct sock *sk)
{
	struct af_watch *w;

	af_def.write_space(sk);
	rcu_read_lock();
	w = af_watch_of(sk);
	if (likely(w) && READ_ONCE(w->af))
		atomic64_inc(&w->cnt.write_space);
	rcu_read_unlock();
}

static void af_error_report(struct sock *sk)
{
	struct af_watch *w;

	af_def.error_report(sk);
	rcu_read_lock();
	w = af_watch_of(sk);
	if (likely(w)) {
		WRITE_ONCE(w->err_seen, READ_ONCE(sk->sk_err));
		if (READ_ONCE(w->af))
			atomic64_inc(&w->cnt.error_report);
		af_closed(sk, w);
	}
	rcu_read_unlock();
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
		other = af_watch_of(sk);
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
	rcu_read_lock();	/* af_watch_of() in af_check_sock() */
	err = af_check_sock(af, sk);
	rcu_read_unlock();
	if (err)
		goto out_unlock;

	sock_hold(sk);
	w->sk = sk;
	w->af = af;
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

/* Takes the socket's locks as attach and kTLS do, then af_unwrap(). */
static bool af_unwrap_locked(struct sock *sk, struct af_watch *w)
{
	bool clean;

	lock_sock(sk);
	write_lock_bh(&sk->sk_callback_lock);
	rcu_read_lock();	/* af_watch_of() */
	clean = af_unwrap(sk, w);
	rcu_read_unlock();
	write_unlock_bh(&sk->sk_callback_lock);
	release_sock(sk);
	return clean;
}

/* The last step of every watch: after this nothing of it is left. */
static void af_free(struct af_watch *w)
{
	sock_put(w->sk);
	af_user_uncharge(w->user);
	af_user_put(w->user);
	atomic_dec(&af_live_watches);
	kfree_rcu(w, rcu);
}

/*
 * Retries the orphans until the layers on top of them have let go of our
 * callbacks (kTLS restores what it saved when the socket is closed).
 */
static void af_reap(struct work_struct *work)
{
	struct af_watch *w, *tmp;
	LIST_HEAD(done);
	bool more;

	mutex_lock(&af_orphan_lock);
	list_for_each_entry_safe(w, tmp, &af_orphans, onode)
		if (af_unwrap_locked(w->sk, w))
			list_move(&w->onode, &done);
	more = !list_empty(&af_orphans);
	if (more)
		schedule_delayed_work(&af_reap_work, AF_REAP_INTERVAL);
	mutex_unlock(&af_orphan_lock);

	list_for_each_entry_safe(w, tmp, &done, onode) {
		af_free(w);
		/* af_sock_exit() waits for this function to return. */
		module_put(THIS_MODULE);
	}
}

/*
 * Stops watching: restores the callbacks, drops the pending event and the
 * socket reference, folds the counters into the file's and frees the watch
 * after a grace period. Called with af->lock held.
 *
 * If another layer wrapped the socket's callbacks after us (kTLS may be
 * set up on a watched socket), ours cannot be taken out of its chain: the
 * watch is then orphaned. It counts nothing, keeps its socket, its user's
 * charge and a module reference, and af_reap() frees it once that layer
 * has let go of our callbacks.
 */
void af_detach(struct af_file *af, struct af_watch *w)
{
	struct agentfilt_counters c;
	bool clean;

	clean = af_unwrap_locked(w->sk, w);

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

	if (clean) {
		af_free(w);
		return;
	}
	WRITE_ONCE(w->af, NULL);
	__module_get(THIS_MODULE);
	mutex_lock(&af_orphan_lock);
	list_add_tail(&w->onode, &af_orphans);
	mod_delayed_work(system_wq, &af_reap_work, AF_REAP_INTERVAL);
	mutex_unlock(&af_orphan_lock);
}
