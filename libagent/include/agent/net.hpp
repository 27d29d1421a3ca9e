// SPDX-License-Identifier: MIT
// Socket addresses and the few socket calls made outside the ring (socket
// creation and options never block).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>

namespace agent {

struct Address {
	sockaddr_storage ss{};
	socklen_t len = 0;

	const sockaddr *sa() const { return reinterpret_cast<const sockaddr *>(&ss); }
	int family() const { return ss.ss_family; }
	std::string str() const;
};

// Parses "HOST:PORT", "[V6]:PORT" or ":PORT"/"PORT" (all addresses).
// Numeric hosts and "localhost" only: a proxy's config should not block on
// DNS. Null with *err set on bad input.
std::optional<Address> parse_address(std::string_view s, std::string *err);

// A listening TCP socket (SO_REUSEADDR) or -errno.
int listen_tcp(const Address &a, int backlog = 1024);
// A non-connected TCP socket for a, ready for IORING_OP_CONNECT, or -errno.
// TCP keepalive on a stream: a probe after idle seconds without traffic
// (it keeps NAT and firewall state alive), then every idle/3 (at least 1 s);
// three unanswered probes, or bytes unacknowledged for as long, end the
// connection with ETIMEDOUT (a peer that vanished without a reset). 0: off.
// Returns 0 or -errno.
int set_keepalive(int fd, unsigned idle_seconds);
// With a congestion control name, the socket uses it (see set_congestion).
int socket_for(const Address &a, std::string_view congestion = {});
// Sets a TCP socket's congestion control (TCP_CONGESTION): 0 or -errno
// (-ENOENT: not built or loaded, -EPERM: not in
// net.ipv4.tcp_allowed_congestion_control for an unprivileged user). On a
// listening socket, the connections it accepts inherit it.
int set_congestion(int fd, std::string_view algorithm);
// The error of set_congestion in words, naming the algorithms that would work.
std::string congestion_error(int err, std::string_view algorithm);
// Sets O_NONBLOCK (what splice(2) looks at on a socket); false on failure.
bool set_nonblocking(int fd);
// recv(2) without waiting, retried on EINTR: bytes, 0 at end of stream, or
// -errno (-EAGAIN: nothing there now).
ssize_t recv_now(int fd, void *buf, std::size_t n);
// After a read returned end of stream: true if the connection was reset,
// not closed (the reset's error may have gone to another call, a send).
bool was_reset(int fd);
// The address of a local socket.
std::string local_address(int fd);
std::string peer_address(int fd);

// Bytes in a TCP socket's send queue the peer has not acknowledged yet
// (SIOCOUTQ); 0 if it cannot be told.
std::size_t unsent_bytes(int fd);
// Bytes a TCP socket has received that nobody has read yet (SIOCINQ); 0 if
// it cannot be told.
std::size_t unread_bytes(int fd);
// The lowest round-trip time a TCP socket has seen (TCP_INFO tcpi_min_rtt:
// the path's, without the queues' delay), in microseconds; 0 if it cannot
// be told.
unsigned min_rtt_us(int fd);

} // namespace agent
