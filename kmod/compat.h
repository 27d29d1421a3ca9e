/* SPDX-License-Identifier: GPL-2.0 */
/*
 * agentfilt: the kernel-version-specific bits, kept in one place.
 * Tested against the Debian 6.1 and 6.12 kernels.
 */
#ifndef AGENTFILT_COMPAT_H
#define AGENTFILT_COMPAT_H

#include <linux/version.h>
#include <linux/fs.h>

/* 6.2 made the device argument of device_type.devnode const. */
#if LINUX_VERSION_MAJOR > 6 || \
	(LINUX_VERSION_MAJOR == 6 && LINUX_VERSION_PATCHLEVEL >= 2)
#define AF_DEVNODE_CONST const
#else
#define AF_DEVNODE_CONST
#endif

/*
 * io_uring only issues non-blocking reads (and so only arms its poll
 * instead of punting to a worker, and only allows multishot reads) on
 * files that say they honour IOCB_NOWAIT. Newer kernels carry this in the
 * file_operations flags; 6.1 and 6.12 in the open file's mode.
 */
#ifndef FMODE_NOWAIT
#error "no FMODE_NOWAIT: port af_file_set_nowait() (io_uring would punt reads to a worker)"
#endif

static inline void af_file_set_nowait(struct file *file)
{
	file->f_mode |= FMODE_NOWAIT;
}

#endif /* AGENTFILT_COMPAT_H */
