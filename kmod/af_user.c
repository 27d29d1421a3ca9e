// SPDX-License-Identifier: GPL-2.0
/*
 * agentfilt: watches per user. Each watch holds its socket (sock_hold)
 * until it is unwatched or its file released, also after the socket's fd
 * was closed; a per-file limit alone would let one user pin sockets
 * without bound by opening more files. So all watches of one uid, over all
 * of its files and orphans, count against max_user_watches.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/hashtable.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>

#include "af.h"

static unsigned int max_user_watches = 65536;
module_param(max_user_watches, uint, 0644);
MODULE_PARM_DESC(max_user_watches, "most sockets one user may watch over all open files");

static DEFINE_HASHTABLE(af_users, 6);
static DEFINE_MUTEX(af_users_lock);

struct af_user *af_user_get(kuid_t uid)
{
	u32 key = from_kuid(&init_user_ns, uid);
	struct af_user *u;

	mutex_lock(&af_users_lock);
	hash_for_each_possible(af_users, u, node, key) {
		if (uid_eq(u->uid, uid)) {
			refcount_inc(&u->ref);
			goto out;
		}
	}
	u = kzalloc(sizeof(*u), GFP_KERNEL);
	if (u) {
		u->uid = uid;
		refcount_set(&u->ref, 1);
		atomic_set(&u->watches, 0);
		hash_add(af_users, &u->node, key);
	}
out:
	mutex_unlock(&af_users_lock);
	return u;
}

void af_user_put(struct af_user *u)
{
	if (!refcount_dec_and_mutex_lock(&u->ref, &af_users_lock))
		return;
	hash_del(&u->node);
	mutex_unlock(&af_users_lock);
	WARN_ON_ONCE(atomic_read(&u->watches));
	kfree(u);
}

/* Takes one watch of the user's allowance: 0, or -ENOSPC past the limit. */
int af_user_charge(struct af_user *u)
{
	if (atomic_inc_return(&u->watches) > READ_ONCE(max_user_watches)) {
		atomic_dec(&u->watches);
		return -ENOSPC;
	}
	return 0;
}

void af_user_uncharge(struct af_user *u)
{
	atomic_dec(&u->watches);
}
