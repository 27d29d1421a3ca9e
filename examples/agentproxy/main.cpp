// SPDX-License-Identifier: MIT
// agentproxy: carries each client TCP stream over N TCP streams.
//   agentproxy stripe --listen A:P --peer JOIN:P [--streams N] ...
//   agentproxy join   --listen A:P --target SERVER:P ...
//   agentproxy http   --listen A:P --backend SERVER:P [--backend ...] ...
#include "agent/http.hpp"
#include "agent/log.hpp"
#include "agent/privilege.hpp"
#include "agent/proxy.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

using namespace agent;

namespace {

// Descriptors kept for what is not a session: the ring, the event source's
// maps and device, the listener, the pipe pool.
constexpr std::uint64_t kReservedFds = 64;

// What every mode takes: the event source, the receive buffers, the counters,
// the user to become, how much to log.
struct AgentFlags {
	std::string events = "auto", user;
	unsigned buffers = 512;
	std::size_t buffer_size = 64 * 1024;
	unsigned stats_interval = 0;
	bool verbose = false, quiet = false;
};

// events_what names what the event source watches; verbose_what what -v logs.
void add_agent_flags(CLI::App *sub, AgentFlags &o, const char *events_what,
		     const char *verbose_what)
{
	sub->add_option("--events", o.events,
			std::string("event source") + events_what +
				": auto (kmod if /dev/agentfilt exists, else bpf if it loads, "
				"else uring), uring, kmod or bpf")
		->check(CLI::IsMember({"auto", "uring", "kmod", "bpf"}))
		->capture_default_str();
	sub->add_option("--buffers", o.buffers, "provided receive buffers (power of two)")
		->check(CLI::IsMember({64u, 128u, 256u, 512u, 1024u, 2048u, 4096u, 8192u}))
		->capture_default_str();
	sub->add_option("--buffer-size", o.buffer_size, "bytes per receive buffer")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(4096), std::size_t(1) << 20))
		->capture_default_str();
	sub->add_option("--stats-interval", o.stats_interval,
			"print the counters every N seconds (0: only on exit and SIGUSR1)")
		->capture_default_str();
	sub->add_option("--user", o.user,
			"after setup (event source loaded, port bound) switch to this user "
			"for good");
	sub->add_flag("-v,--verbose", o.verbose, verbose_what);
	sub->add_flag("-q,--quiet", o.quiet, "log errors only");
}

AgentOptions agent_options(const AgentFlags &o)
{
	AgentOptions ao;
	parse_event_kind(o.events, ao.events);
	ao.buffer_count = o.buffers;
	ao.buffer_size = o.buffer_size;
	return ao;
}

void set_logging(const AgentFlags &o)
{
	set_log_level(o.verbose ? LogLevel::debug : o.quiet ? LogLevel::error : LogLevel::info);
}

struct Options : AgentFlags {
	std::string listen, peer, target, key_file;
	unsigned streams = 4;
	std::size_t chunk = 1024 * 1024; // per-frame costs (header, stream switch) amortized
	std::size_t long_path_chunk = 256 * 1024;
	std::size_t reorder_budget = 16u << 20;
	std::size_t retention = 0; // 0: 16 MiB, or the reorder budget if smaller
	unsigned stream_timeout_ms = 10000;
	unsigned failover_deadline_ms = 10000;
	unsigned rejoin_tries = 5;
	std::size_t send_buffer = 1u << 20;
	std::size_t max_memory = std::size_t(1) << 30;
	unsigned handshake_ms = 5000;
	unsigned connect_ms = 5000;
	unsigned idle_s = 300;
	unsigned linger_ms = 5000;
	unsigned keepalive_s = 60;
	unsigned max_sessions = 4096;
	unsigned max_pending = 1024;
	std::string data_path = "splice";
	std::string congestion;
};

// The event source's counters, one line (every mode prints it).
std::string events_line(EventSource &ev)
{
	EventCounters c = ev.counters();
	return fmt::format("events[{}]: data_ready {} state_change {} write_space {} error_report {}; "
			   "passed {} filtered {} coalesced {}; completions {} bytes {} overflows {} "
			   "sweeps {}\n",
			   ev.name(), c.data_ready, c.state_change, c.write_space, c.error_report,
			   c.passed, c.filtered, c.coalesced, c.completions, c.bytes, c.overflows,
			   c.sweeps);
}

void print_counters(const char *side, const ProxyStats &s, Agent &agent)
{
	const MemoryBudget &mem = agent.memory();
	std::string out = fmt::format(
		"stats[{}]: sessions opened {} done {} failed {} active {}; streams refused {}; "
		"refused full {}; handshakes dropped {}; timeouts {}; "
		"bytes in {} out {}; frames sent {} received {}; backpressure pauses {}; "
		"streams lost {} rejoined {}; frames resent {} duplicates {}; acks sent {}; "
		"memory held {} peak {}\n",
		side, s.sessions_opened, s.sessions_done, s.sessions_failed, s.active,
		s.streams_refused, s.refused_full, s.pending_dropped, s.timeouts, s.bytes_in,
		s.bytes_out, s.frames_sent, s.frames_received, s.backpressure_pauses,
		s.streams_lost, s.streams_rejoined, s.frames_resent, s.duplicates_dropped,
		s.acks_sent, mem.used(), mem.peak()) +
			  events_line(agent.events());
	std::fwrite(out.data(), 1, out.size(), stdout);
	std::fflush(stdout);
}

void add_common(CLI::App *sub, Options &o)
{
	sub->add_option("--listen", o.listen, "address to accept on, HOST:PORT")->required();
	add_agent_flags(sub, o, "", "log every session");
	sub->add_option("--key-file", o.key_file,
			"shared key (>= 16 bytes); HELLOs carry an HMAC-SHA256 of it and a "
			"join side with a key refuses streams without a valid one");
	sub->add_option("--reorder-budget", o.reorder_budget,
			"out-of-order bytes held per session before reading ahead stops "
			"(suffixes K, M, G)")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(64 * 1024), std::size_t(1) << 32))
		->capture_default_str();
	sub->add_option("--chunk", o.chunk,
			"max payload bytes per frame this side sends (suffixes K, M)")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(512), std::size_t(1024 * 1024)))
		->capture_default_str();
	sub->add_option("--long-path-chunk", o.long_path_chunk,
			"max payload bytes per frame while the streams' mean minimum round trip is "
			"5 ms or more: a shorter frame holds the sequence up less while its "
			"stream recovers from a loss (0: always --chunk)")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(0), std::size_t(1024 * 1024)))
		->capture_default_str();
	sub->add_option("--send-buffer", o.send_buffer,
			"bytes queued per connection before reading its source pauses")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(16 * 1024), std::size_t(1) << 30))
		->capture_default_str();
	sub->add_option("--max-memory", o.max_memory,
			"bytes held in memory for all sessions together (send queues and "
			"reorder buffers of the copy path; the splice path keeps its bytes in "
			"the kernel); past it no session reads more until there is room")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(1) << 20, std::size_t(1) << 40))
		->capture_default_str();
	sub->add_option("--handshake-timeout", o.handshake_ms,
			"ms for a stream to send its HELLO and for a session's streams to "
			"arrive (join: past it, a session some of whose streams came starts "
			"with those; their replacements fill the rest)")
		->check(CLI::Range(10u, 600000u))
		->capture_default_str();
	sub->add_option("--connect-timeout", o.connect_ms,
			"ms for a connect (streams to the join side, the target) to complete; "
			"0: the kernel's SYN retries decide")
		->check(CLI::Range(0u, 600000u))
		->capture_default_str();
	sub->add_option("--idle-timeout", o.idle_s,
			"seconds a session may move no byte either way before it is ended; "
			"0: never")
		->check(CLI::Range(0u, 86400u * 7))
		->capture_default_str();
	sub->add_option("--linger-timeout", o.linger_ms,
			"ms a closing connection may take to flush what is queued (its peer "
			"does not read) before it is reset; and a session over both ways waits "
			"for the peer's end of each stream")
		->check(CLI::Range(1u, 600000u))
		->capture_default_str();
	sub->add_option("--retention", o.retention,
			"unacknowledged bytes kept per session to send again if a stream is "
			"lost; at it, reading the client (target) pauses; at most the "
			"--reorder-budget, which the peer needs to hold as much (suffixes K, M, G); "
			"default 16M, or the --reorder-budget if smaller")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(64 * 1024), std::size_t(1) << 32));
	sub->add_option("--stream-timeout", o.stream_timeout_ms,
			"ms a frame may wait on its stream, while the peer has later ones and "
			"says so, before the stream is given up as lost; a frame unacknowledged "
			"this long goes again on another stream (then after 2x, 4x.. 16x)")
		->check(CLI::Range(100u, 3600000u))
		->capture_default_str();
	sub->add_option("--failover-deadline", o.failover_deadline_ms,
			"ms a session left with no stream waits for a replacement before it "
			"ends")
		->check(CLI::Range(100u, 3600000u))
		->capture_default_str();
	sub->add_option("--rejoin-tries", o.rejoin_tries,
			"stripe: connections tried (100 ms apart, doubling) to replace each lost "
			"stream; 0: go on with the streams left")
		->check(CLI::Range(0u, 100u))
		->capture_default_str();
	sub->add_option("--keepalive", o.keepalive_s,
			"seconds a stream may be idle before TCP keepalive probes it (keeps NAT "
			"state; a stream whose peer vanished is lost after 3 unanswered "
			"probes); 0: off")
		->check(CLI::Range(0u, 86400u))
		->capture_default_str();
	sub->add_option("--max-sessions", o.max_sessions,
			"sessions open at once; more clients (stripe) or new sessions (join) "
			"are refused")
		->check(CLI::Range(1u, 1000000u))
		->capture_default_str();
	sub->add_option("--data-path", o.data_path,
			"splice: payload moves between sockets through pipes, never copied "
			"to user space; copy: through the receive buffers")
		->check(CLI::IsMember({"splice", "copy"}))
		->capture_default_str();
	sub->add_option("--congestion", o.congestion,
			"TCP congestion control of every socket this side opens and accepts "
			"(e.g. cubic, reno, bbr; default: the system's, "
			"net.ipv4.tcp_congestion_control). bbr paces each stream with a timer "
			"where the qdisc is not fq");
}

// ---- http: pipelined requests over pooled backend connections -------------------

struct HttpOptions : AgentFlags {
	std::string listen;
	std::vector<std::string> backends;
	unsigned pool = 32;
	std::size_t hold_budget = 1u << 20;
	std::size_t send_buffer = 1u << 20;
	std::size_t max_header = 32 * 1024;
	std::size_t max_body = std::size_t(1) << 30;
	unsigned max_pipeline = 64;
	unsigned max_clients = 4096;
	unsigned header_ms = 10000, idle_s = 60, backend_ms = 30000, connect_ms = 5000;
	unsigned pool_idle_s = 30, linger_ms = 5000;
};

void add_http_options(CLI::App *sub, HttpOptions &o)
{
	sub->add_option("--listen", o.listen, "address to accept clients on, HOST:PORT")->required();
	sub->add_option("--backend", o.backends,
			"an HTTP/1.1 server, HOST:PORT; repeat for several (each request goes to "
			"the one with the fewest outstanding)")
		->required();
	add_agent_flags(sub, o, " of the client sockets",
			"log every request (an access log line each)");
	sub->add_option("--pool", o.pool, "keep-alive connections per backend, busy or idle")
		->check(CLI::Range(1u, 65536u))
		->capture_default_str();
	sub->add_option("--hold-budget", o.hold_budget,
			"response bytes held per client while earlier responses are due; past "
			"it their backend connections are not read (suffixes K, M, G)")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(4096), std::size_t(1) << 32))
		->capture_default_str();
	sub->add_option("--send-buffer", o.send_buffer,
			"bytes queued towards one socket before the other side stops being read")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(16 * 1024), std::size_t(1) << 30))
		->capture_default_str();
	sub->add_option("--max-header-size", o.max_header,
			"bytes of a request line and fields; larger heads get 431")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(256), std::size_t(1) << 20))
		->capture_default_str();
	sub->add_option("--max-body-size", o.max_body,
			"bytes of a request body; larger bodies get 413")
		->transform(CLI::AsSizeValue(false))
		->check(CLI::Range(std::size_t(1), std::size_t(1) << 50))
		->capture_default_str();
	sub->add_option("--max-pipeline", o.max_pipeline,
			"requests of one client in flight at once; more wait unread")
		->check(CLI::Range(1u, 4096u))
		->capture_default_str();
	sub->add_option("--max-clients", o.max_clients, "client connections open at once")
		->check(CLI::Range(1u, 1000000u))
		->capture_default_str();
	sub->add_option("--header-timeout", o.header_ms,
			"ms from a request head's first byte to its end (slow heads get 408)")
		->check(CLI::Range(100u, 600000u))
		->capture_default_str();
	sub->add_option("--idle-timeout", o.idle_s,
			"seconds a client connection may stay idle between requests")
		->check(CLI::Range(1u, 86400u))
		->capture_default_str();
	sub->add_option("--backend-timeout", o.backend_ms,
			"ms for a backend to send a response head (then 504)")
		->check(CLI::Range(100u, 3600000u))
		->capture_default_str();
	sub->add_option("--connect-timeout", o.connect_ms,
			"ms for a backend connect to complete (then 504); 0: the kernel's")
		->check(CLI::Range(0u, 600000u))
		->capture_default_str();
	sub->add_option("--pool-idle-timeout", o.pool_idle_s,
			"seconds an idle pooled backend connection is kept")
		->check(CLI::Range(1u, 86400u))
		->capture_default_str();
	sub->add_option("--linger-timeout", o.linger_ms,
			"ms a closing client connection may take to flush before it is reset")
		->check(CLI::Range(1u, 600000u))
		->capture_default_str();
}

void print_http_counters(const HttpStats &s, Agent &agent)
{
	std::string out = fmt::format(
		"stats[http]: sessions opened {} done {} failed {} active {}; refused full {}; "
		"requests {} responses {} local errors {} bad gateway {} gateway timeouts {}; "
		"timeouts {}; backend opened {} reused {} dropped {} retries {}; pool open {} "
		"idle {}; held pauses {}; max parallel {}\n",
		s.clients_opened, s.clients_done, s.clients_failed, s.clients_active, s.refused_full,
		s.requests, s.responses, s.local_errors, s.bad_gateway, s.gateway_timeouts,
		s.timeouts, s.backend_opened, s.backend_reused, s.backend_dropped, s.retries,
		s.pool_open, s.pool_idle, s.held_pauses, s.max_parallel) +
			  events_line(agent.events());
	std::fwrite(out.data(), 1, out.size(), stdout);
	std::fflush(stdout);
}

int run_http(const HttpOptions &o)
{
	set_log_name("agentproxy[http]");
	set_logging(o);
	auto usage_error = [](const std::string &msg) {
		std::fprintf(stderr, "agentproxy http: %s\nRun 'agentproxy http --help' for usage.\n",
			     msg.c_str());
		return 2;
	};
	std::string err;
	auto listen = parse_address(o.listen, &err);
	if (!listen)
		return usage_error("--listen: " + err);
	HttpConfig cfg;
	for (const std::string &b : o.backends) {
		auto a = parse_address(b, &err);
		if (!a)
			return usage_error("--backend " + b + ": " + err);
		cfg.backends.push_back(*a);
	}
	cfg.pool = o.pool;
	cfg.hold_budget = o.hold_budget;
	cfg.send_limit = o.send_buffer;
	cfg.max_header = o.max_header;
	cfg.max_body = o.max_body;
	cfg.max_pipeline = o.max_pipeline;
	cfg.max_clients = o.max_clients;
	cfg.header_timeout = std::chrono::milliseconds(o.header_ms);
	cfg.idle_timeout = std::chrono::seconds(o.idle_s);
	cfg.backend_timeout = std::chrono::milliseconds(o.backend_ms);
	cfg.connect_timeout = std::chrono::milliseconds(o.connect_ms);
	cfg.pool_idle_timeout = std::chrono::seconds(o.pool_idle_s);
	cfg.linger_timeout = std::chrono::milliseconds(o.linger_ms);
	cfg.access_log = o.verbose;
	if (std::string e = validate(cfg); !e.empty())
		return usage_error(e);

	// A client holds its socket and, per request in flight, a backend
	// connection of the pool (shared): the pool and the clients must fit.
	std::uint64_t fds = raise_fd_limit();
	std::uint64_t pool_fds = std::uint64_t(cfg.pool) * cfg.backends.size();
	std::uint64_t spare = fds > kReservedFds + pool_fds ? fds - kReservedFds - pool_fds : 1;
	if (spare < cfg.max_clients) {
		log(LogLevel::warn, "--max-clients {} lowered to {}: {} descriptors (RLIMIT_NOFILE) "
				    "less a pool of {}", cfg.max_clients, spare, fds, pool_fds);
		cfg.max_clients = static_cast<unsigned>(spare);
	}

	AgentOptions ao = agent_options(o);
	auto agent = Agent::create(ao, &err);
	if (!agent) {
		std::fprintf(stderr, "agentproxy http: --events %s: %s\n", o.events.c_str(),
			     err.c_str());
		return 1;
	}
	int lfd = listen_tcp(*listen);
	if (lfd < 0) {
		std::fprintf(stderr, "agentproxy http: cannot listen on %s: %s\n",
			     listen->str().c_str(), strerror(-lfd));
		return 1;
	}
	if (!o.user.empty() && !drop_privileges(o.user, &err)) {
		std::fprintf(stderr, "agentproxy http: --user %s: %s\n", o.user.c_str(), err.c_str());
		return 1;
	}
	std::optional<HttpServer> srv;
	srv.emplace(*agent, cfg, lfd);
	std::string names;
	for (const Address &a : cfg.backends)
		names += (names.empty() ? "" : ", ") + a.str();
	std::printf("events: %s\n", std::string(agent->events().name()).c_str());
	std::printf("http: listening on %s, backends %s, pool %u each\n", local_address(lfd).c_str(),
		    names.c_str(), cfg.pool);
	std::printf("limits: %llu descriptors; --max-clients %u\n",
		    static_cast<unsigned long long>(fds), cfg.max_clients);
	std::fflush(stdout);
	agent->on_report([&] { print_http_counters(srv->stats(), *agent); });
	if (o.stats_interval > 0) {
		auto next = Agent::Clock::now() + std::chrono::seconds(o.stats_interval);
		agent->on_tick([&, next](Agent::Clock::time_point now) mutable {
			if (now < next)
				return;
			next = now + std::chrono::seconds(o.stats_interval);
			print_http_counters(srv->stats(), *agent);
		});
	}
	agent->run();
	print_http_counters(srv->stats(), *agent);
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	Options o;
	CLI::App app{"agentproxy: carries one client TCP stream over several TCP streams.\n"
		     "The stripe side accepts clients and stripes each one's bytes over N "
		     "streams to a join side, which reorders them and talks to the target; "
		     "replies come back the same way. SIGUSR1 prints the counters.",
		     "agentproxy"};
	app.require_subcommand(1);
	auto *stripe = app.add_subcommand("stripe", "accept clients and stripe them to a join side");
	add_common(stripe, o);
	stripe->add_option("--peer", o.peer, "the join side, HOST:PORT")->required();
	stripe->add_option("--streams", o.streams, "streams per session")
		->check(CLI::Range(1u, 64u))
		->capture_default_str();
	auto *join = app.add_subcommand("join", "accept striped sessions and join them to a target");
	add_common(join, o);
	join->add_option("--max-pending", o.max_pending,
			 "streams accepted whose HELLO has not arrived yet; when full, the "
			 "oldest is dropped for the newcomer")
		->check(CLI::Range(1u, 1000000u))
		->capture_default_str();
	join->add_option("--target", o.target, "the server to connect each session to, HOST:PORT")
		->required();
	HttpOptions ho;
	auto *http = app.add_subcommand(
		"http", "an HTTP/1.1 reverse proxy: one client connection's pipelined requests go "
			"out at once on several pooled backend connections, responses come back "
			"in request order");
	add_http_options(http, ho);

	try {
		app.parse(argc, argv);
	} catch (const CLI::CallForHelp &e) {
		if (stripe->parsed() || join->parsed() || http->parsed())
			return app.exit(e);
		// The top-level help documents every flag of both sides.
		std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
		return 0;
	} catch (const CLI::CallForAllHelp &e) {
		return app.exit(e);
	} catch (const CLI::ParseError &e) {
		std::fprintf(stderr, "agentproxy: %s\n\n%s", e.what(), app.help().c_str());
		return 2;
	}

	if (http->parsed())
		return run_http(ho);
	const bool is_stripe = stripe->parsed();
	const char *side = is_stripe ? "stripe" : "join";
	set_log_name(fmt::format("agentproxy[{}]", side));
	set_logging(o);

	auto usage_error = [&](const std::string &msg) {
		std::fprintf(stderr, "agentproxy %s: %s\nRun 'agentproxy %s --help' for usage.\n",
			     side, msg.c_str(), side);
		return 2;
	};
	std::string err;
	auto listen = parse_address(o.listen, &err);
	if (!listen)
		return usage_error("--listen: " + err);
	auto remote = parse_address(is_stripe ? o.peer : o.target, &err);
	if (!remote)
		return usage_error(std::string(is_stripe ? "--peer: " : "--target: ") + err);

	SessionConfig cfg;
	cfg.streams = o.streams;
	cfg.chunk = o.chunk;
	cfg.long_path_chunk = o.long_path_chunk;
	cfg.reorder_budget = o.reorder_budget;
	cfg.retention = o.retention ? o.retention : std::min<std::size_t>(16u << 20, o.reorder_budget);
	cfg.stream_timeout = std::chrono::milliseconds(o.stream_timeout_ms);
	cfg.failover_deadline = std::chrono::milliseconds(o.failover_deadline_ms);
	cfg.rejoin_tries = o.rejoin_tries;
	cfg.send_limit = o.send_buffer;
	cfg.handshake_timeout = std::chrono::milliseconds(o.handshake_ms);
	cfg.connect_timeout = std::chrono::milliseconds(o.connect_ms);
	cfg.idle_timeout = std::chrono::seconds(o.idle_s);
	cfg.linger_timeout = std::chrono::milliseconds(o.linger_ms);
	cfg.keepalive = o.keepalive_s;
	cfg.max_sessions = o.max_sessions;
	cfg.max_pending = o.max_pending;
	cfg.splice = o.data_path == "splice";
	cfg.congestion = o.congestion;
	if (!o.key_file.empty()) {
		cfg.key = AuthKey::from_file(o.key_file, &err);
		if (!cfg.key)
			return usage_error("--key-file: " + err);
	}

	if (std::string e = validate(cfg); !e.empty())
		return usage_error(e);

	// Raised before anything is opened. Every socket and pipe is a
	// descriptor: a session of N streams holds N + 1 sockets and, while
	// bytes sit in them, a pipe (two) or two; a few dozen go to the ring,
	// the event source and the pipe pool. Past that many sessions a new
	// one would fail half-made and take a pipe from a good one: they are
	// refused instead.
	std::uint64_t fds = raise_fd_limit();
	std::uint64_t spare = fds > kReservedFds ? fds - kReservedFds : 0;
	if (!is_stripe && cfg.max_pending > spare / 4) {
		// Pending handshakes take one descriptor each; a quarter at most.
		unsigned pending = static_cast<unsigned>(std::max<std::uint64_t>(spare / 4, 1));
		log(LogLevel::warn, "--max-pending {} lowered to {}: {} descriptors (RLIMIT_NOFILE)",
		    cfg.max_pending, pending, fds);
		cfg.max_pending = pending;
	}
	if (!is_stripe)
		spare -= std::min<std::uint64_t>(spare, cfg.max_pending);
	unsigned per_session_streams = is_stripe ? o.streams : 4;
	std::uint64_t reachable = spare / (per_session_streams + 5ull);
	if (reachable < cfg.max_sessions) {
		log(LogLevel::warn, "--max-sessions {} lowered to {}: {} descriptors (RLIMIT_NOFILE) "
				    "hold no more sessions of {} streams", cfg.max_sessions,
		    std::max<std::uint64_t>(reachable, 1), fds, per_session_streams);
		cfg.max_sessions = static_cast<unsigned>(std::max<std::uint64_t>(reachable, 1));
	}

	AgentOptions ao = agent_options(o);
	ao.memory_cap = o.max_memory;
	auto agent = Agent::create(ao, &err);
	if (!agent) {
		std::fprintf(stderr, "agentproxy %s: --events %s: %s\n", side, o.events.c_str(),
			     err.c_str());
		return 1;
	}
	int lfd = listen_tcp(*listen);
	if (lfd < 0) {
		std::fprintf(stderr, "agentproxy %s: cannot listen on %s: %s\n", side,
			     listen->str().c_str(), strerror(-lfd));
		return 1;
	}
	// Accepted sockets inherit the listener's; a bad name fails here, at once:
	// an unknown one is a bad flag (2), one this user may not pick is not (1).
	if (!o.congestion.empty()) {
		int r = set_congestion(lfd, o.congestion);
		if (r == -ENOENT)
			return usage_error("--congestion: " + congestion_error(r, o.congestion));
		if (r < 0) {
			std::fprintf(stderr, "agentproxy %s: --congestion: %s\n", side,
				     congestion_error(r, o.congestion).c_str());
			return 1;
		}
	}

	if (!o.user.empty() && !drop_privileges(o.user, &err)) {
		std::fprintf(stderr, "agentproxy %s: --user %s: %s\n", side, o.user.c_str(),
			     err.c_str());
		return 1;
	}

	std::optional<StripeServer> stripe_srv;
	std::optional<JoinServer> join_srv;
	if (is_stripe)
		stripe_srv.emplace(*agent, cfg, lfd, *remote);
	else
		join_srv.emplace(*agent, cfg, lfd, *remote);
	auto stats = [&]() -> const ProxyStats & {
		return is_stripe ? stripe_srv->stats() : join_srv->stats();
	};

	std::printf("events: %s\n", std::string(agent->events().name()).c_str());
	std::printf("%s: listening on %s, %s %s\n", side, local_address(lfd).c_str(),
		    is_stripe ? "peer" : "target", remote->str().c_str());
	std::printf("limits: %llu descriptors: room for %llu sessions of %u streams; "
		    "--max-sessions %u\n",
		    static_cast<unsigned long long>(fds), static_cast<unsigned long long>(reachable),
		    per_session_streams, cfg.max_sessions);
	std::fflush(stdout);

	agent->on_report([&] { print_counters(side, stats(), *agent); });
	if (o.stats_interval > 0) {
		auto next = Agent::Clock::now() + std::chrono::seconds(o.stats_interval);
		agent->on_tick([&, next](Agent::Clock::time_point now) mutable {
			if (now < next)
				return;
			next = now + std::chrono::seconds(o.stats_interval);
			print_counters(side, stats(), *agent);
		});
	}
	agent->run();
	print_counters(side, stats(), *agent);
	return 0;
}
