// SPDX-License-Identifier: GPL-2.0
/*
 * agentfilt: an in-kernel filter of TCP socket signaling events.
 *
 * /dev/agentfilt: each open file watches sockets of its opener (ioctls) and
 * hands out data-arrival events as whole struct agentfilt_event records
 * through read(). The file is pollable and honours non-blocking reads, so
 * io_uring can read it with a multishot read (6.7+) or re-armed reads.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/uio.h>

#include "af.h"
#include "compat.h"

static int group = -1;
module_param(group, int, 0444);
MODULE_PARM_DESC(group, "gid allowed to open /dev/agentfilt (mode 0660); -1: root only (0600)");

static unsigned int max_watches = 65536;
module_param(max_watches, uint, 0644);
MODULE_PARM_DESC(max_watches, "most sockets one open file may watch");

/* What this module implements (see the uapi header). */
#define AF_FEATURES	(AGENTFILT_FEAT_EVENTS | AGENTFILT_FEAT_STATS_FILE | \
			 AGENTFILT_FEAT_USER_LIMIT)

static int af_live_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&af_live_watches));
}

static int af_live_set(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static const struct kernel_param_ops af_live_ops = {
	.set = af_live_set,
	.get = af_live_get,
};
module_param_cb(watches, &af_live_ops, NULL, 0400);
MODULE_PARM_DESC(watches, "watches currently open (read only)");

/* Records handed out per copy to user space. */
#define AF_READ_BATCH	16

static struct af_watch *af_find(struct af_file *af, u64 token)
{
	struct af_watch *w;

	hash_for_each_possible(af->watches, w, hnode, token)
		if (w->token == token)
			return w;
	return NULL;
}

static int af_open(struct inode *inode, struct file *file)
{
	struct af_file *af;

	af = kzalloc(sizeof(*af), GFP_KERNEL_ACCOUNT);
	if (!af)
		return -ENOMEM;
	af->user = af_user_get(file->f_cred->euid);
	if (!af->user) {
		kfree(af);
		return -ENOMEM;
	}
	mutex_init(&af->lock);
	hash_init(af->watches);
	spin_lock_init(&af->qlock);
	INIT_LIST_HEAD(&af->ready);
	init_waitqueue_head(&af->wq);
	file->private_data = af;
	af_file_set_nowait(file);
	return stream_open(inode, file);
}

static int af_release(struct inode *inode, struct file *file)
{
	struct af_file *af = file->private_data;
	struct hlist_node *tmp;
	struct af_watch *w;
	int bkt;

	mutex_lock(&af->lock);
	hash_for_each_safe(af->watches, bkt, tmp, w, hnode)
		af_detach(af, w);
	mutex_unlock(&af->lock);
	mutex_destroy(&af->lock);
	af_user_put(af->user);
	/* Callbacks that found a watch of ours may still look at af. */
	kfree_rcu(af, rcu);
	return 0;
}

static bool af_has_events(struct af_file *af)
{
	bool ret;

	spin_lock_irq(&af->qlock);
	ret = !list_empty(&af->ready);
	spin_unlock_irq(&af->qlock);
	return ret;
}

/*
 * Takes up to max pending events off the ready list, noting their watches
 * in ws (valid while af->lock is held: only detach frees a watch).
 */
static unsigned int af_pop(struct af_file *af, struct agentfilt_event *ev,
			   struct af_watch **ws, unsigned int max)
{
	struct af_watch *w;
	unsigned int n = 0;

	spin_lock_irq(&af->qlock);
	while (n < max && !list_empty(&af->ready)) {
		w = list_first_entry(&af->ready, struct af_watch, rnode);
		list_del_init(&w->rnode);
		w->pending = false;
		ev[n].token = w->token;
		ev[n].bytes = w->bytes;
		ev[n].flags = 0;
		ws[n] = w;
		n++;
	}
	spin_unlock_irq(&af->qlock);
	return n;
}

/*
 * Puts back at the head of the ready list, in their order, the popped
 * events that did not reach user space (its buffer faulted). A watch that
 * has queued a newer event meanwhile keeps that one.
 */
static void af_unpop(struct af_file *af, struct af_watch **ws, unsigned int n)
{
	spin_lock_irq(&af->qlock);
	while (n--) {
		struct af_watch *w = ws[n];

		if (w->detached || w->pending)
			continue;
		w->pending = true;
		list_add(&w->rnode, &af->ready);
	}
	spin_unlock_irq(&af->qlock);
}

static ssize_t af_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct af_file *af = iocb->ki_filp->private_data;
	bool nowait = (iocb->ki_flags & IOCB_NOWAIT) || (iocb->ki_filp->f_flags & O_NONBLOCK);
	struct agentfilt_event ev[AF_READ_BATCH];
	struct af_watch *ws[AF_READ_BATCH];
	size_t room = iov_iter_count(to) / sizeof(ev[0]);
	ssize_t done = 0;
	unsigned int n, whole;
	size_t len, copied;
	int err;

	if (!room)
		return -EINVAL;
	for (;;) {
		/* Held over the copy, so the popped watches stay alive. */
		if (nowait) {
			if (!mutex_trylock(&af->lock))
				return -EAGAIN;
		} else if (mutex_lock_interruptible(&af->lock)) {
			return -ERESTARTSYS;
		}
		n = af_pop(af, ev, ws, min_t(size_t, room, AF_READ_BATCH));
		if (n)
			break;
		mutex_unlock(&af->lock);
		if (nowait)
			return -EAGAIN;
		err = wait_event_interruptible(af->wq, af_has_events(af));
		if (err)
			return err;
	}
	while (n) {
		len = n * sizeof(ev[0]);
		copied = copy_to_iter(ev, len, to);
		whole = copied / sizeof(ev[0]);
		done += whole * sizeof(ev[0]);
		if (copied != len) {
			/* The caller's buffer faulted: keep what it did not get. */
			af_unpop(af, ws + whole, n - whole);
			mutex_unlock(&af->lock);
			return done ? done : -EFAULT;
		}
		room -= n;
		n = room ? af_pop(af, ev, ws, min_t(size_t, room, AF_READ_BATCH)) : 0;
	}
	mutex_unlock(&af->lock);
	return done;
}

static __poll_t af_poll(struct file *file, poll_table *pt)
{
	struct af_file *af = file->private_data;

	poll_wait(file, &af->wq, pt);
	return af_has_events(af) ? EPOLLIN | EPOLLRDNORM : 0;
}

static int af_ioc_watch(struct af_file *af, void __user *argp)
{
	struct agentfilt_watch req;
	struct af_watch *w;
	int err;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved[0] || req.reserved[1])
		return -EINVAL;
	if (req.fd < 0)
		return -EBADF;

	w = kzalloc(sizeof(*w), GFP_KERNEL_ACCOUNT);
	if (!w)
		return -ENOMEM;
	w->token = req.token;
	w->user = af->user;
	INIT_LIST_HEAD(&w->rnode);
	INIT_LIST_HEAD(&w->onode);

	mutex_lock(&af->lock);
	err = -ENOSPC;
	if (af->nwatches >= READ_ONCE(max_watches))
		goto err_unlock;
	err = -EEXIST;
	if (af_find(af, req.token))
		goto err_unlock;
	err = af_user_charge(af->user);
	if (err)
		goto err_unlock;
	err = af_attach(af, w, req.fd);
	if (err)
		goto err_uncharge;
	/* The watch may outlive the file as an orphan: it holds the user. */
	refcount_inc(&af->user->ref);
	hash_add(af->watches, &w->hnode, w->token);
	af->nwatches++;
	mutex_unlock(&af->lock);
	return 0;

err_uncharge:
	af_user_uncharge(af->user);
err_unlock:
	mutex_unlock(&af->lock);
	kfree(w);
	return err;
}

static int af_ioc_unwatch(struct af_file *af, void __user *argp)
{
	struct agentfilt_unwatch req;
	struct af_watch *w;
	int err = -ENOENT;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved)
		return -EINVAL;
	mutex_lock(&af->lock);
	w = af_find(af, req.token);
	if (w) {
		af_detach(af, w);
		err = 0;
	}
	mutex_unlock(&af->lock);
	return err;
}

/*
 * The counters of one watch, read under qlock as af_queue() updates them:
 * data_ready == passed + coalesced holds in every answer.
 */
static void af_counters_read_watch(struct af_file *af, struct af_watch *w,
				   struct agentfilt_counters *out)
{
	spin_lock_irq(&af->qlock);
	af_counters_read(&w->cnt, out);
	spin_unlock_irq(&af->qlock);
}

static int af_ioc_stats(struct af_file *af, void __user *argp)
{
	struct agentfilt_counters c;
	struct agentfilt_stats st;
	struct af_watch *w;
	int err = 0;
	int bkt;

	if (copy_from_user(&st, argp, sizeof(st)))
		return -EFAULT;
	if ((st.flags & ~AGENTFILT_STATS_FILE) || memchr_inv(st.reserved, 0, sizeof(st.reserved)))
		return -EINVAL;
	memset(&st.counters, 0, sizeof(st.counters));

	mutex_lock(&af->lock);
	st.watches = af->nwatches;
	if (st.flags & AGENTFILT_STATS_FILE) {
		st.counters = af->past;
		hash_for_each(af->watches, bkt, w, hnode) {
			af_counters_read_watch(af, w, &c);
			af_counters_add(&st.counters, &c);
		}
	} else {
		w = af_find(af, st.token);
		if (w)
			af_counters_read_watch(af, w, &st.counters);
		else
			err = -ENOENT;
	}
	mutex_unlock(&af->lock);
	if (err)
		return err;
	if (copy_to_user(argp, &st, sizeof(st)))
		return -EFAULT;
	return 0;
}

static long af_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct af_file *af = file->private_data;
	void __user *argp = (void __user *)arg;
	struct agentfilt_version ver = {
		.abi = AGENTFILT_ABI_VERSION,
		.event_size = sizeof(struct agentfilt_event),
		.features = AF_FEATURES,
	};

	switch (cmd) {
	case AGENTFILT_IOC_VERSION:
		return copy_to_user(argp, &ver, sizeof(ver)) ? -EFAULT : 0;
	case AGENTFILT_IOC_WATCH:
		return af_ioc_watch(af, argp);
	case AGENTFILT_IOC_UNWATCH:
		return af_ioc_unwatch(af, argp);
	case AGENTFILT_IOC_STATS:
		return af_ioc_stats(af, argp);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations af_fops = {
	.owner = THIS_MODULE,
	.open = af_open,
	.release = af_release,
	.read_iter = af_read_iter,
	.poll = af_poll,
	.unlocked_ioctl = af_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

/*
 * A plain char device rather than a misc device: only a device_type's
 * devnode() can give the devtmpfs node a group, and misc devices have none.
 */
static char *af_devnode(AF_DEVNODE_CONST struct device *dev, umode_t *mode,
			kuid_t *uid, kgid_t *gid)
{
	if (mode)
		*mode = group >= 0 ? 0660 : 0600;
	if (gid && group >= 0)
		*gid = make_kgid(&init_user_ns, group);
	return NULL;
}

static const struct device_type af_dev_type = {
	.name = "agentfilt",
	.devnode = af_devnode,
};

/* A class, so the device is /sys/class/agentfilt/agentfilt for udev rules. */
static struct class af_class = {
	.name = KBUILD_MODNAME,
};

static dev_t af_devt;
static struct cdev af_cdev;
static struct device *af_dev;

static void af_dev_release(struct device *dev)
{
	kfree(dev);
}

static int __init af_init(void)
{
	int err;

	if (group >= 0 && !gid_valid(make_kgid(&init_user_ns, group)))
		return -EINVAL;
	err = af_sock_init();
	if (err)
		return err;
	err = class_register(&af_class);
	if (err)
		return err;
	err = alloc_chrdev_region(&af_devt, 0, 1, KBUILD_MODNAME);
	if (err)
		goto err_class;
	af_dev = kzalloc(sizeof(*af_dev), GFP_KERNEL);
	if (!af_dev) {
		err = -ENOMEM;
		goto err_region;
	}
	device_initialize(af_dev);
	af_dev->devt = af_devt;
	af_dev->class = &af_class;
	af_dev->type = &af_dev_type;
	af_dev->release = af_dev_release;
	err = dev_set_name(af_dev, KBUILD_MODNAME);
	if (err)
		goto err_dev;
	cdev_init(&af_cdev, &af_fops);
	af_cdev.owner = THIS_MODULE;
	err = cdev_device_add(&af_cdev, af_dev);
	if (err)
		goto err_dev;
	pr_info("ready (abi %u)\n", AGENTFILT_ABI_VERSION);
	return 0;

err_dev:
	put_device(af_dev);
err_region:
	unregister_chrdev_region(af_devt, 1);
err_class:
	class_unregister(&af_class);
	return err;
}

static void __exit af_exit(void)
{
	cdev_device_del(&af_cdev, af_dev);
	put_device(af_dev);
	unregister_chrdev_region(af_devt, 1);
	class_unregister(&af_class);
	af_sock_exit();
	/*
	 * No file is open, so no socket points at our callbacks any more; wait
	 * for callbacks that loaded a pointer to one before it was restored
	 * (even if preempted since), then for the deferred frees.
	 */
	synchronize_rcu();
	synchronize_rcu_tasks();
	rcu_barrier();
	if (atomic_read(&af_live_watches))
		pr_err("leak: %d watches still live\n", atomic_read(&af_live_watches));
}

module_init(af_init);
module_exit(af_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("agentmux");
MODULE_DESCRIPTION("Filter of TCP socket signaling events for io_uring agents");
