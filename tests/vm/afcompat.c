// SPDX-License-Identifier: GPL-2.0
/*
 * afcompat: the ioctls and reads of agentfilt.ko from a 32-bit process
 * (built with -m32: the compat ioctl path). Unnumbered TAP like aftest.
 */
#define _GNU_SOURCE
#include "afutil.h"

static int t_compat(void)
{
	struct agentfilt_version v = { 0 };
	struct agentfilt_event ev[2];
	struct agentfilt_stats st;
	int dev = dev_open(), c, s, n;

	CHECK(sizeof(void *) == 4, "not a 32-bit build (pointer size %zu)", sizeof(void *));
	CHECK(dev >= 0, "open: %s", strerror(errno));
	CHECK(!ioctl(dev, AGENTFILT_IOC_VERSION, &v), "VERSION: %s", strerror(errno));
	CHECK(v.abi == AGENTFILT_ABI_VERSION && v.event_size == sizeof(ev[0]) &&
	      (v.features & AGENTFILT_FEAT_EVENTS), "abi %u size %u features %llx", v.abi,
	      v.event_size, (unsigned long long)v.features);
	CHECK(!tcp_pair(&c, &s), "pair");
	CHECK(watch(dev, s, 0xfedcba9876543210ULL) == 0, "WATCH: %s", strerror(errno));
	CHECK(write(c, "thirty-two", 10) == 10, "write");
	CHECK(wait_readable(dev, 2000) == 1, "no event");
	n = read_events(dev, ev, 2);
	CHECK(n == 1 && ev[0].token == 0xfedcba9876543210ULL && ev[0].bytes == 10,
	      "n %d token %llx bytes %u", n, (unsigned long long)ev[0].token, ev[0].bytes);
	CHECK(stats(dev, 0xfedcba9876543210ULL, 0, &st) == 0 && st.counters.passed == 1 &&
	      st.counters.data_ready == 1 && st.watches == 1, "STATS");
	CHECK(unwatch(dev, 0xfedcba9876543210ULL) == 0, "UNWATCH: %s", strerror(errno));
	CHECK(unwatch(dev, 1) == -ENOENT, "UNWATCH of an unknown token");
	close_pair(c, s);
	close(dev);
	return 0;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	run("compat: 32-bit process: version, watch, event, stats, unwatch", t_compat);
	return failures ? 1 : 0;
}
