// SPDX-License-Identifier: MIT
// The stripe side: accepts clients and opens a session of N streams to the
// join side for each.
#include "acceptor.hpp"
#include "agent/log.hpp"
#include "session.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <unordered_map>

namespace agent {

std::uint64_t random_session_id()
{
	std::uint64_t id = 0;
	while (getrandom(&id, sizeof(id), 0) != sizeof(id) || id == 0) {
	}
	return id;
}

class StripeServer::Impl final : public SessionHost, public Disposable {
public:
	Impl(Agent &agent, SessionConfig cfg, int listen_fd, Address peer)
		: agent_(agent), cfg_(std::move(cfg)), peer_(peer),
		  acceptor_(agent, listen_fd, [this](int fd) { accept(fd); })
	{
	}

	void accept(int fd)
	{
		if (sessions_.size() >= cfg_.max_sessions) {
			stats_.refused_full++;
			if (std::uint64_t n; full_log_.due(agent_.now(), &n))
				log(LogLevel::warn, "refusing clients: {} sessions open (--max-sessions); "
						    "{} refused in the last second", sessions_.size(), n);
			::close(fd);
			return;
		}
		auto s = std::make_unique<Session>(agent_, cfg_, *this, stats_, random_session_id(),
						   cfg_.streams);
		Session *p = s.get();
		sessions_.emplace(p, std::move(s));
		p->start_stripe(fd, peer_);
	}

	void session_finished(Session *s) override
	{
		auto node = sessions_.extract(s);
		agent_.dispose(std::move(node.mapped()));
	}

	// Stops accepting and ends every session; what is still in flight
	// completes later (idle()).
	void shutdown()
	{
		acceptor_.stop();
		abort_all(sessions_, "the stripe server is shutting down");
	}

	bool idle() const override { return sessions_.empty() && !acceptor_.busy(); }

	Agent &agent_;
	SessionConfig cfg_;
	Address peer_;
	ProxyStats stats_;
	LogEverySecond full_log_;
	std::unordered_map<Session *, std::unique_ptr<Session>> sessions_;
	Acceptor acceptor_;
};

StripeServer::StripeServer(Agent &agent, SessionConfig cfg, int listen_fd, Address peer)
	: impl_(std::make_unique<Impl>(agent, checked_config(std::move(cfg), listen_fd), listen_fd, peer))
{
}

StripeServer::~StripeServer()
{
	Agent &agent = impl_->agent_;
	impl_->shutdown();
	agent.retire(std::move(impl_));
}

const ProxyStats &StripeServer::stats() const { return impl_->stats_; }

} // namespace agent
