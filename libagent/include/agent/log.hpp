// SPDX-License-Identifier: MIT
// One-line logs on stderr: "agentproxy[join] warn: ...". Bad input is logged
// once per connection or session, never per byte.
#pragma once

#include <fmt/format.h>

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

} // namespace agent
