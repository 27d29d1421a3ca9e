// SPDX-License-Identifier: MIT
#include "agent/net.hpp"

#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <charconv>
#include <fmt/format.h>

namespace agent {

std::string Address::str() const
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (family() == AF_INET) {
		auto *in = reinterpret_cast<const sockaddr_in *>(&ss);
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		return fmt::format("{}:{}", host, ntohs(in->sin_port));
	}
	auto *in6 = reinterpret_cast<const sockaddr_in6 *>(&ss);
	inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
	return fmt::format("[{}]:{}", host, ntohs(in6->sin6_port));
}

std::optional<Address> parse_address(std::string_view s, std::string *err)
{
	std::string host;
	std::string_view port;
	if (!s.empty() && s.front() == '[') {
		auto close = s.find(']');
		if (close == s.npos || close + 1 >= s.size() || s[close + 1] != ':') {
			*err = fmt::format("bad address '{}': want [V6]:PORT", s);
			return std::nullopt;
		}
		host = std::string(s.substr(1, close - 1));
		port = s.substr(close + 2);
	} else if (auto colon = s.rfind(':'); colon != s.npos) {
		host = std::string(s.substr(0, colon));
		port = s.substr(colon + 1);
	} else {
		port = s;
	}
	unsigned p = 0;
	auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
	if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p > 65535) {
		*err = fmt::format("bad address '{}': want HOST:PORT with a port 0-65535", s);
		return std::nullopt;
	}
	if (host == "localhost")
		host = "127.0.0.1";
	Address a;
	auto *in = reinterpret_cast<sockaddr_in *>(&a.ss);
	auto *in6 = reinterpret_cast<sockaddr_in6 *>(&a.ss);
	if (host.empty() || host == "*") {
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_ANY);
		in->sin_port = htons(p);
		a.len = sizeof(*in);
	} else if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(p);
		a.len = sizeof(*in);
	} else if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(p);
		a.len = sizeof(*in6);
	} else {
		*err = fmt::format("bad address '{}': host must be a numeric IP or localhost", s);
		return std::nullopt;
	}
	return a;
}

int set_keepalive(int fd, unsigned idle_seconds)
{
	if (idle_seconds == 0)
		return 0;
	int on = 1;
	int idle = static_cast<int>(idle_seconds);
	int intvl = std::max(1, idle / 3);
	int count = 3;
	// Unacknowledged bytes give up at the same point keepalive would.
	unsigned user_timeout = (idle_seconds + 3u * intvl) * 1000u;
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) != 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) != 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) != 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count)) != 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout)) != 0)
		return -errno;
	return 0;
}

int socket_for(const Address &a, std::string_view congestion)
{
	int fd = socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!congestion.empty()) {
		int r = set_congestion(fd, congestion);
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	return fd;
}

int set_congestion(int fd, std::string_view algorithm)
{
	if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, algorithm.data(), algorithm.size()) < 0)
		return -errno;
	return 0;
}

static std::string sysctl_line(const char *path)
{
	std::string s;
	if (FILE *f = fopen(path, "re")) {
		char buf[256];
		if (fgets(buf, sizeof(buf), f))
			s = buf;
		fclose(f);
	}
	while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
		s.pop_back();
	return s.empty() ? "?" : s;
}

std::string congestion_error(int err, std::string_view algorithm)
{
	if (err == -ENOENT)
		return fmt::format("TCP congestion control '{}' is not available here "
				   "(net.ipv4.tcp_available_congestion_control: {})",
				   algorithm,
				   sysctl_line("/proc/sys/net/ipv4/tcp_available_congestion_control"));
	if (err == -EPERM)
		return fmt::format("TCP congestion control '{}' needs CAP_NET_ADMIN "
				   "(net.ipv4.tcp_allowed_congestion_control: {})",
				   algorithm,
				   sysctl_line("/proc/sys/net/ipv4/tcp_allowed_congestion_control"));
	return fmt::format("TCP congestion control '{}': {}", algorithm, strerror(-err));
}

int listen_tcp(const Address &a, int backlog)
{
	int fd = socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, a.sa(), a.len) < 0 || listen(fd, backlog) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static std::string name_of(int fd, bool peer)
{
	Address a;
	a.len = sizeof(a.ss);
	int r = peer ? getpeername(fd, reinterpret_cast<sockaddr *>(&a.ss), &a.len)
		     : getsockname(fd, reinterpret_cast<sockaddr *>(&a.ss), &a.len);
	return r < 0 ? std::string("?") : a.str();
}

std::string local_address(int fd) { return name_of(fd, false); }
std::string peer_address(int fd) { return name_of(fd, true); }

bool was_reset(int fd)
{
	tcp_info ti{};
	socklen_t len = sizeof(ti);
	// A FIN leaves CLOSE_WAIT (or later states); a reset, CLOSE.
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE;
}

ssize_t recv_now(int fd, void *buf, std::size_t n)
{
	for (;;) {
		ssize_t k = ::recv(fd, buf, n, MSG_DONTWAIT);
		if (k >= 0)
			return k;
		if (errno != EINTR)
			return -errno;
	}
}

bool set_nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

std::size_t unsent_bytes(int fd)
{
	int n = 0;
	return ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0 ? static_cast<std::size_t>(n) : 0;
}

std::size_t unread_bytes(int fd)
{
	int n = 0;
	return ioctl(fd, SIOCINQ, &n) == 0 && n > 0 ? static_cast<std::size_t>(n) : 0;
}

} // namespace agent
