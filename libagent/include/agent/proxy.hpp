// SPDX-License-Identifier: MIT
// Stripe and join: one client TCP stream carried over N TCP streams.
//   client -> StripeServer ==N streams==> JoinServer -> target (or an app)
// Both directions are striped; half-close and reset map through.
#pragma once

#include "agent/agent.hpp"
#include "agent/auth.hpp"
#include "agent/net.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace agent {

struct SessionConfig {
	unsigned streams = 4;                        // stripe side: streams per session
	std::size_t chunk = 1024 * 1024;             // max payload bytes per DATA frame
	// Max payload per DATA frame while the streams' mean minimum RTT is
	// kLongPathRtt or more (0: always chunk). A frame holds up the sequence
	// while its stream recovers from a loss; on a long path that is round
	// trips, and shorter frames hold it up less. On a short one frames are
	// cheap to wait for and their per-frame cost counts: they stay whole.
	std::size_t long_path_chunk = 256 * 1024;
	static constexpr std::chrono::microseconds kLongPathRtt{5000};
	// Out-of-order bytes held per session; at least the peer's retention
	// (a frame sent again may queue behind later ones: see the wire format).
	std::size_t reorder_budget = 16 << 20;
	// Unacknowledged DATA bytes kept per session to send again when a stream
	// is lost; at it, reading the plain end pauses.
	std::size_t retention = 16 << 20;
	// A stream whose frame the peer has waited for (ACK WAITING) this long
	// after it went out is lost: its frames go again on the others. A frame
	// unacknowledged this long goes again on another stream (then after
	// twice as long, up to 16 times); the second such from one stream loses it.
	std::chrono::milliseconds stream_timeout{10000};
	// A session left with no stream ends if none joins within this.
	std::chrono::milliseconds failover_deadline{10000};
	// Stripe: connections tried to replace one lost stream (backoff 100 ms,
	// doubling); 0: lost streams are not replaced.
	unsigned rejoin_tries = 5;
	std::size_t send_limit = 1 << 20;            // queued bytes per connection
	std::chrono::milliseconds handshake_timeout{5000};
	// A stream or target connect that has not completed by then fails.
	std::chrono::milliseconds connect_timeout{5000};
	// A session that moves no byte either way for this long is ended
	// (zero: never). Ended within one resolution (100 ms) past it.
	std::chrono::milliseconds idle_timeout{300000};
	// A socket closed gracefully that cannot flush within this (its peer
	// does not read) is reset instead.
	std::chrono::milliseconds linger_timeout{5000};
	// TCP keepalive on every stream (set_keepalive): probes after this many
	// idle seconds keep NAT state alive and find a peer that vanished. 0: off.
	unsigned keepalive = 60;
	unsigned max_sessions = 4096;                // sessions at once (each side)
	// Join: streams accepted whose HELLO has not arrived yet. When full,
	// the oldest is dropped for the newcomer.
	unsigned max_pending = 1024;
	std::optional<AuthKey> key;
	// Splice payload bytes between the sockets and the streams through
	// pipes (no copy in user space); false copies them through buffers.
	bool splice = true;
	// TCP congestion control of the sockets a session opens (streams on the
	// stripe side, the target on the join side); empty: the system's. The
	// sockets a server accepts get theirs from the listener (set_congestion).
	std::string congestion;
};

// What is wrong with cfg (empty if nothing): the library refuses a config it
// cannot run (zero streams or chunk, more streams than the wire carries...).
std::string validate(const SessionConfig &cfg);

struct ProxyStats {
	std::uint64_t sessions_opened = 0;
	std::uint64_t sessions_done = 0;   // ended cleanly
	std::uint64_t sessions_failed = 0; // ended by an error, reset or bad input
	std::uint64_t streams_refused = 0; // join: bad or unauthenticated hellos
	std::uint64_t refused_full = 0;    // connections closed at --max-sessions
	std::uint64_t pending_dropped = 0; // join: handshakes dropped for newer ones
	std::uint64_t timeouts = 0;        // sessions or handshakes ended by a timeout
	std::uint64_t bytes_in = 0;        // plain end -> streams (payload)
	std::uint64_t bytes_out = 0;       // streams -> plain end (payload)
	std::uint64_t frames_sent = 0;
	std::uint64_t frames_received = 0;
	std::uint64_t backpressure_pauses = 0;
	std::uint64_t streams_lost = 0;       // streams of live sessions that failed
	std::uint64_t streams_rejoined = 0;   // replacements that joined a session
	std::uint64_t frames_resent = 0;      // DATA sent again after a loss
	std::uint64_t duplicates_dropped = 0; // DATA received that was delivered or held
	std::uint64_t acks_sent = 0;
	std::uint64_t active = 0;
};

// A session as a custom server sees it (join side, no target socket).
class SessionHandle {
public:
	virtual std::uint64_t id() const = 0;
	// Queues bytes to the client (striped back over the session's streams).
	virtual void send(std::span<const std::byte> bytes) = 0;
	// Bytes queued towards the client; stop sending while this is large.
	virtual std::size_t queued() const = 0;
	// Half-closes towards the client (after what is queued).
	virtual void shutdown() = 0;
	// Ends the session at once; the client's connection is reset.
	virtual void reset(std::string_view reason) = 0;

protected:
	~SessionHandle() = default;
};

// Implemented by a custom server: one object per session.
class SessionApp {
public:
	virtual ~SessionApp() = default;
	virtual void on_open(SessionHandle &) {}
	// The client's bytes, in order.
	virtual void on_data(SessionHandle &s, std::span<const std::byte> bytes) = 0;
	// The client half-closed: no more on_data.
	virtual void on_fin(SessionHandle &) {}
	// The session is over (reason empty if it ended cleanly); the handle
	// is invalid after this returns.
	virtual void on_close(SessionHandle &, std::string_view /*reason*/) {}
};

using AppFactory = std::function<std::unique_ptr<SessionApp>()>;

class Session;

// A server takes the listening socket. It throws std::invalid_argument (with
// validate()'s reason) for a config it cannot run. It may be destroyed while
// its agent runs: it stops accepting, ends its sessions, and the agent frees
// what is left once nothing in flight refers to it.
class StripeServer {
public:
	StripeServer(Agent &agent, SessionConfig cfg, int listen_fd, Address peer);
	~StripeServer();
	const ProxyStats &stats() const;

	class Impl;

private:
	std::unique_ptr<Impl> impl_;
};

class JoinServer {
public:
	// Sessions go to a TCP target...
	JoinServer(Agent &agent, SessionConfig cfg, int listen_fd, Address target);
	// ...or to an application object made per session.
	JoinServer(Agent &agent, SessionConfig cfg, int listen_fd, AppFactory app);
	~JoinServer();
	const ProxyStats &stats() const;

	class Impl;

private:
	std::unique_ptr<Impl> impl_;
};

} // namespace agent
