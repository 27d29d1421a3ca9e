// SPDX-License-Identifier: MIT
// What a SessionConfig must hold for a server to run it.
#include "agent/frame.hpp"
#include "agent/proxy.hpp"
#include "session.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <stdexcept>

namespace agent {

std::string validate(const SessionConfig &cfg)
{
	using std::chrono::milliseconds;
	if (cfg.streams < 1 || cfg.streams > wire::kMaxStreams)
		return fmt::format("streams must be 1..{} (got {})", wire::kMaxStreams, cfg.streams);
	if (cfg.chunk < 1 || cfg.chunk > wire::kMaxPayload)
		return fmt::format("chunk must be 1..{} bytes (got {})", wire::kMaxPayload, cfg.chunk);
	if (cfg.long_path_chunk > wire::kMaxPayload)
		return fmt::format("long_path_chunk must be 0..{} bytes (got {})", wire::kMaxPayload,
				   cfg.long_path_chunk);
	if (cfg.reorder_budget < 1)
		return "reorder_budget must be at least 1 byte";
	if (cfg.retention < cfg.chunk)
		return fmt::format("retention ({} bytes) must hold at least one chunk ({} bytes)",
				   cfg.retention, cfg.chunk);
	if (cfg.retention > cfg.reorder_budget)
		return fmt::format("retention ({} bytes) must not exceed the reorder budget ({} "
				   "bytes): the peer holds what this side retains, and the sides "
				   "usually share a config", cfg.retention, cfg.reorder_budget);
	if (cfg.stream_timeout <= milliseconds(0) || cfg.failover_deadline <= milliseconds(0))
		return "stream_timeout and failover_deadline must be positive";
	if (cfg.send_limit < 1)
		return "send_limit must be at least 1 byte";
	if (cfg.handshake_timeout <= milliseconds(0))
		return "handshake_timeout must be positive";
	if (cfg.connect_timeout < milliseconds(0) || cfg.idle_timeout < milliseconds(0))
		return "connect_timeout and idle_timeout must not be negative (0: none)";
	if (cfg.linger_timeout <= milliseconds(0))
		return "linger_timeout must be positive";
	if (cfg.max_sessions < 1 || cfg.max_pending < 1)
		return "max_sessions and max_pending must be at least 1";
	if (cfg.congestion.size() >= 16) // TCP_CA_NAME_MAX
		return fmt::format("congestion control name '{}' is too long", cfg.congestion);
	return {};
}

SessionConfig checked_config(SessionConfig cfg, int listen_fd)
{
	if (std::string e = validate(cfg); !e.empty()) {
		::close(listen_fd); // the server owned it from the call on
		throw std::invalid_argument("SessionConfig: " + e);
	}
	return cfg;
}

} // namespace agent
