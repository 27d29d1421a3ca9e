// SPDX-License-Identifier: MIT
// The stripe side: accepts clients and opens a session of N streams to the
// join side for each.
#include "acceptor.hpp"
#include "session.hpp"

#include <sys/random.h>

#include <unordered_map>

namespace agent {

std::uint64_t random_session_id()
{
	std::uint64_t id = 0;
	while (getrandom(&id, sizeof(id), 0) != sizeof(id) || id == 0) {
	}
	return id;
}

class StripeServer::Impl final : public SessionHost {
public:
	Impl(Agent &agent, SessionConfig cfg, int listen_fd, Address peer)
		: agent_(agent), cfg_(std::move(cfg)), peer_(peer),
		  acceptor_(agent.ring(), listen_fd, [this](int fd) { accept(fd); })
	{
		agent.on_tick([this](Agent::Clock::time_point) { acceptor_.tick(); });
	}

	void accept(int fd)
	{
		auto s = std::make_unique<Session>(agent_, cfg_, *this, stats_, random_session_id(),
						   cfg_.streams);
		Session *p = s.get();
		sessions_.emplace(p, std::move(s));
		p->start_stripe(fd, peer_);
	}

	void session_finished(Session *s) override { sessions_.erase(s); }

	Agent &agent_;
	SessionConfig cfg_;
	Address peer_;
	ProxyStats stats_;
	std::unordered_map<Session *, std::unique_ptr<Session>> sessions_;
	Acceptor acceptor_;
};

StripeServer::StripeServer(Agent &agent, SessionConfig cfg, int listen_fd, Address peer)
	: impl_(std::make_unique<Impl>(agent, std::move(cfg), listen_fd, peer))
{
}

StripeServer::~StripeServer() = default;
const ProxyStats &StripeServer::stats() const { return impl_->stats_; }

} // namespace agent
