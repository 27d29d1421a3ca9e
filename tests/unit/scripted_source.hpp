// SPDX-License-Identifier: MIT
// An event source the test drives: deliver() hands every watched, unpaused
// socket that has bytes (or its end) waiting to its reader, as the real
// sources do after an event: on_readable() in pull mode, else one recv into
// on_data() / on_end(). Readiness is looked up with a zero-timeout poll,
// which the real sources never do: here it only decides when a test's
// scripted event fires. Sessions run on it over socketpairs, without the
// ring's receive path or a kernel filter in the way.
#pragma once

#include "agent/agent.hpp"
#include "agent/event_source.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <map>
#include <memory>
#include <vector>

namespace test_support {

class ScriptedSource final : public agent::EventSource {
public:
	std::string_view name() const override { return "scripted"; }
	void watch(int fd, agent::StreamReader &reader) override { watches_[fd] = {&reader}; }
	void pause(int fd) override
	{
		if (auto it = watches_.find(fd); it != watches_.end())
			it->second.paused = true;
	}
	void resume(int fd) override
	{
		if (auto it = watches_.find(fd); it != watches_.end())
			it->second.paused = false;
	}
	void unwatch(int fd) override { watches_.erase(fd); }
	agent::EventCounters counters() const override { return totals_; }
	agent::EventCounters counters(int) const override { return {}; }

	bool watched(int fd) const { return watches_.count(fd) != 0; }
	bool paused(int fd) const
	{
		auto it = watches_.find(fd);
		return it != watches_.end() && it->second.paused;
	}

	// One round of events; returns how many readers were called.
	unsigned deliver()
	{
		std::vector<int> fds;
		for (auto &[fd, w] : watches_)
			if (!w.paused && !w.ended && readable(fd))
				fds.push_back(fd);
		unsigned calls = 0;
		for (int fd : fds) {
			// A reader called before may have unwatched or paused it.
			auto it = watches_.find(fd);
			if (it == watches_.end() || it->second.paused)
				continue;
			calls++;
			totals_.passed++;
			agent::StreamReader &r = *it->second.reader;
			if (r.pulls()) {
				r.on_readable();
				continue;
			}
			std::byte buf[65536];
			ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n > 0) {
				totals_.bytes += n;
				r.on_data(std::span(buf, static_cast<std::size_t>(n)));
			} else if (n == 0 || errno != EAGAIN) {
				it->second.ended = true;
				r.on_end(n == 0 ? 0 : -errno);
			}
		}
		return calls;
	}

	// An agent whose event source is a ScriptedSource; *out points to it.
	static std::unique_ptr<agent::Agent> agent(ScriptedSource **out)
	{
		agent::AgentOptions o;
		o.buffer_count = 64;
		o.buffer_size = 4096;
		o.make_source = [out](agent::Ring &, agent::BufferRing &, std::string *) {
			auto s = std::make_unique<ScriptedSource>();
			*out = s.get();
			return s;
		};
		std::string err;
		return agent::Agent::create(o, &err);
	}

private:
	static bool readable(int fd)
	{
		pollfd p{fd, POLLIN | POLLRDHUP, 0};
		return poll(&p, 1, 0) == 1 && p.revents != 0;
	}
	struct Watch {
		agent::StreamReader *reader = nullptr;
		bool paused = false;
		bool ended = false; // copy mode: on_end() was called
	};
	std::map<int, Watch> watches_;
	agent::EventCounters totals_;
};

} // namespace test_support
