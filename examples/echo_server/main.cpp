// SPDX-License-Identifier: MIT
// echo_server: a custom server linked with libagent. It accepts striped
// sessions from `agentproxy stripe` directly (no join process in between)
// and echoes every byte back; on the client's half-close it half-closes too.
//
//   echo_server --listen 127.0.0.1:9000 [--key-file K]
//   agentproxy stripe --listen 127.0.0.1:8000 --peer 127.0.0.1:9000
#include "agent/log.hpp"
#include "agent/proxy.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>

using namespace agent;

namespace {

class Echo final : public SessionApp {
public:
	void on_data(SessionHandle &s, std::span<const std::byte> bytes) override
	{
		// libagent stops feeding us while replies are queued past the
		// send limit, so echoing everything stays bounded.
		s.send(bytes);
	}
	void on_fin(SessionHandle &s) override { s.shutdown(); }
};

} // namespace

int main(int argc, char **argv)
{
	std::string listen_s, key_file, events = "auto";
	bool verbose = false;
	CLI::App app{"echo_server: echoes striped sessions, accepting them with libagent "
		     "directly (no join process).",
		     "echo_server"};
	app.add_option("--listen", listen_s, "address to accept streams on, HOST:PORT")
		->required();
	app.add_option("--key-file", key_file, "shared key; refuse streams without a valid HMAC");
	app.add_option("--events", events, "event source: auto, uring, kmod or bpf")
		->check(CLI::IsMember({"auto", "uring", "kmod", "bpf"}))
		->capture_default_str();
	app.add_flag("-v,--verbose", verbose, "log every session");
	try {
		app.parse(argc, argv);
	} catch (const CLI::CallForHelp &e) {
		return app.exit(e);
	} catch (const CLI::ParseError &e) {
		std::fprintf(stderr, "echo_server: %s\n\n%s", e.what(), app.help().c_str());
		return 2;
	}
	set_log_name("echo_server");
	if (verbose)
		set_log_level(LogLevel::debug);

	std::string err;
	auto addr = parse_address(listen_s, &err);
	if (!addr) {
		std::fprintf(stderr, "echo_server: --listen: %s\n", err.c_str());
		return 2;
	}
	SessionConfig cfg;
	if (!key_file.empty()) {
		cfg.key = AuthKey::from_file(key_file, &err);
		if (!cfg.key) {
			std::fprintf(stderr, "echo_server: --key-file: %s\n", err.c_str());
			return 2;
		}
	}
	AgentOptions ao;
	parse_event_kind(events, ao.events);
	auto agent = Agent::create(ao, &err);
	if (!agent) {
		std::fprintf(stderr, "echo_server: %s\n", err.c_str());
		return 1;
	}
	int lfd = listen_tcp(*addr);
	if (lfd < 0) {
		std::fprintf(stderr, "echo_server: cannot listen on %s: %s\n", addr->str().c_str(),
			     strerror(-lfd));
		return 1;
	}
	JoinServer server(*agent, cfg, lfd, [] { return std::make_unique<Echo>(); });
	std::printf("events: %s\necho_server: listening on %s\n",
		    std::string(agent->events().name()).c_str(), local_address(lfd).c_str());
	std::fflush(stdout);
	agent->run();
	const ProxyStats &s = server.stats();
	std::printf("stats[echo]: sessions opened %lu done %lu failed %lu; bytes echoed %lu\n",
		    (unsigned long)s.sessions_opened, (unsigned long)s.sessions_done,
		    (unsigned long)s.sessions_failed, (unsigned long)s.bytes_in);
	return 0;
}
