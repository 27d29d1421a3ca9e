// SPDX-License-Identifier: MIT
// HTTP/1.1 request multiplexing in front of unmodified backends:
//   client ==pipelined GET a, GET b, GET c==> HttpServer --> backend conn 1: GET a
//                                                        --> backend conn 2: GET b
//   <== a, b, c in request order (RFC 9112 9.3.2)        --> backend conn 3: GET c
// Safe requests (GET, HEAD, OPTIONS without a body) go out at once on
// different pooled keep-alive connections; any other request is a barrier:
// it waits for those before it, and those after it wait for it. The
// response that is due streams straight to the client; early ones are held
// within a per-client budget, past which their backend connections are not
// read. The pool is shared by every client of the server (one per thread).
#pragma once

#include "agent/agent.hpp"
#include "agent/net.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace agent {

struct HttpConfig {
	std::vector<Address> backends;
	// Keep-alive connections per backend, busy or idle.
	unsigned pool = 32;
	// Response bytes held for one client while earlier responses are due.
	std::size_t hold_budget = 1 << 20;
	// Bytes queued towards one socket before its source stops being read.
	std::size_t send_limit = 1 << 20;
	std::size_t max_header = 32 * 1024;           // a request's head: 431 past it
	std::uint64_t max_body = std::uint64_t(1) << 30; // a request's body: 413 past it
	// Requests of one client in flight at once (parsed, not yet answered).
	unsigned max_pipeline = 64;
	unsigned max_clients = 4096;
	// A request head must be complete within this of its first byte.
	std::chrono::milliseconds header_timeout{10000};
	// A client connection with no request in progress is closed after it.
	std::chrono::milliseconds idle_timeout{60000};
	// A backend that has not sent a response head by then: 504.
	std::chrono::milliseconds backend_timeout{30000};
	std::chrono::milliseconds connect_timeout{5000};
	// An idle pooled connection is closed after it.
	std::chrono::milliseconds pool_idle_timeout{30000};
	std::chrono::milliseconds linger_timeout{5000};
	// One access log line per request (LogLevel::info).
	bool access_log = false;
};

// What is wrong with cfg (empty if nothing).
std::string validate(const HttpConfig &cfg);

struct HttpStats {
	std::uint64_t clients_opened = 0;
	std::uint64_t clients_done = 0;
	std::uint64_t clients_failed = 0; // ended by an error, a timeout or bad input
	std::uint64_t clients_active = 0;
	std::uint64_t refused_full = 0;
	std::uint64_t requests = 0;       // parsed and accepted
	std::uint64_t responses = 0;      // responses completed to clients
	std::uint64_t local_errors = 0;   // 4xx answered without the backend
	std::uint64_t bad_gateway = 0;    // 502 sent
	std::uint64_t gateway_timeouts = 0; // 504 sent
	std::uint64_t timeouts = 0;       // client idle / header timeouts
	std::uint64_t backend_opened = 0; // backend connections opened
	std::uint64_t backend_reused = 0; // requests sent on a connection used before
	std::uint64_t backend_dropped = 0; // closed by the backend, failed or ambiguous
	std::uint64_t retries = 0;        // safe requests resent after a reused conn closed
	std::uint64_t pool_open = 0;      // backend connections open now
	std::uint64_t pool_idle = 0;      // ... of which idle
	std::uint64_t held_pauses = 0;    // backend reads stopped by a hold budget
	std::uint64_t max_parallel = 0;   // most requests of one client at backends at once
};

// Takes the listening socket. Throws std::invalid_argument for a config
// validate() refuses. May be destroyed while its agent runs: it stops
// accepting, closes every connection, and the agent frees what is left.
class HttpServer {
public:
	HttpServer(Agent &agent, HttpConfig cfg, int listen_fd);
	~HttpServer();
	const HttpStats &stats() const;

	class Impl;

private:
	std::unique_ptr<Impl> impl_;
};

} // namespace agent
