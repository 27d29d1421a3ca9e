// SPDX-License-Identifier: MIT
// HTTP mode's server: accepts clients; one pool of backend connections for
// all of them.
#include "acceptor.hpp"
#include "agent/http.hpp"
#include "agent/log.hpp"
#include "http_proxy.hpp"

#include <unistd.h>

#include <stdexcept>
#include <unordered_map>

namespace agent {

std::string validate(const HttpConfig &cfg)
{
	if (cfg.backends.empty())
		return "no backend";
	if (cfg.pool == 0)
		return "a pool of zero connections";
	if (cfg.hold_budget == 0 || cfg.send_limit == 0)
		return "a zero hold budget or send limit";
	if (cfg.max_header < 256)
		return "a header limit under 256 bytes";
	if (cfg.max_pipeline == 0 || cfg.max_clients == 0)
		return "zero --max-pipeline or --max-clients";
	return {};
}

class HttpServer::Impl final : public ClientHost, public Disposable {
public:
	Impl(Agent &agent, HttpConfig cfg, int listen_fd)
		: agent_(agent), cfg_(std::move(cfg)), pool_(agent, cfg_, stats_),
		  acceptor_(agent, listen_fd, [this](int fd) { accept(fd); })
	{
	}

	void accept(int fd)
	{
		if (clients_.size() >= cfg_.max_clients) {
			stats_.refused_full++;
			if (std::uint64_t n; full_log_.due(agent_.now(), &n))
				log(LogLevel::warn, "refusing clients: {} open (--max-clients); {} "
						    "refused in the last second", clients_.size(), n);
			::close(fd);
			return;
		}
		auto c = std::make_unique<ClientConn>(agent_, cfg_, stats_, pool_, *this, fd);
		ClientConn *p = c.get();
		clients_.emplace(p, std::move(c));
		p->start();
	}

	void client_finished(ClientConn *c) override
	{
		auto node = clients_.extract(c);
		if (!node.empty())
			agent_.dispose(std::move(node.mapped()));
	}

	void shutdown()
	{
		acceptor_.stop();
		std::vector<ClientConn *> live;
		for (auto &[p, c] : clients_)
			live.push_back(p);
		for (ClientConn *p : live)
			if (clients_.count(p))
				p->abort("the server is shutting down");
		pool_.shutdown();
	}

	bool idle() const override { return clients_.empty() && pool_.idle() && !acceptor_.busy(); }

	Agent &agent_;
	HttpConfig cfg_;
	HttpStats stats_;
	Pool pool_;
	LogEverySecond full_log_;
	std::unordered_map<ClientConn *, std::unique_ptr<ClientConn>> clients_;
	Acceptor acceptor_;
};

namespace {

HttpConfig checked(HttpConfig cfg, int listen_fd)
{
	if (std::string e = validate(cfg); !e.empty()) {
		::close(listen_fd);
		throw std::invalid_argument(e);
	}
	return cfg;
}

} // namespace

HttpServer::HttpServer(Agent &agent, HttpConfig cfg, int listen_fd)
	: impl_(std::make_unique<Impl>(agent, checked(std::move(cfg), listen_fd), listen_fd))
{
}

HttpServer::~HttpServer()
{
	Agent &agent = impl_->agent_;
	impl_->shutdown();
	agent.retire(std::move(impl_));
}

const HttpStats &HttpServer::stats() const { return impl_->stats_; }

} // namespace agent
