// SPDX-License-Identifier: MIT
// One-line logs on stderr: "agentproxy[join] warn: ...". Bad input is logged
// once per connection or session, never per byte.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <string_view>

namespace agent {

enum class LogLevel { debug, info, warn, error };

void set_log_level(LogLevel level);
void set_log_name(std::string_view name);
bool log_enabled(LogLevel level);
void log_line(LogLevel level, std::string_view msg);

template <typename... Args>
void log(LogLevel level, fmt::format_string<Args...> f, Args &&...args)
{
	if (log_enabled(level))
		log_line(level, fmt::format(f, std::forward<Args>(args)...));
}

// For what a flood repeats: one line a second at most, saying how many
// times it happened since the last line.
class LogEverySecond {
public:
	using Clock = std::chrono::steady_clock;
	// True when a line is due; *count then holds the events it covers.
	bool due(Clock::time_point now, std::uint64_t *count)
	{
		seen_++;
		if (now - last_ < std::chrono::seconds(1))
			return false;
		last_ = now;
		*count = seen_;
		seen_ = 0;
		return true;
	}

private:
	Clock::time_point last_{};
	std::uint64_t seen_ = 0;
};

} // namespace agent
