// SPDX-License-Identifier: MIT
// min_rtt_us() apart from net.cpp: glibc's <netinet/tcp.h> struct tcp_info
// stops before tcpi_min_rtt, and it cannot be included with the kernel's
// <linux/tcp.h>, which has it.
#include "agent/net.hpp"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace agent {

unsigned min_rtt_us(int fd)
{
	tcp_info ti{};
	socklen_t len = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
	    len < offsetof(tcp_info, tcpi_min_rtt) + sizeof(ti.tcpi_min_rtt))
		return 0;
	return ti.tcpi_min_rtt;
}

} // namespace agent
