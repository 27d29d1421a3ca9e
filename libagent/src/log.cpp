// SPDX-License-Identifier: MIT
#include "agent/log.hpp"

#include <cstdio>
#include <string>

namespace agent {
namespace {
LogLevel g_level = LogLevel::info;
std::string g_name = "agent";
} // namespace

void set_log_level(LogLevel level) { g_level = level; }
void set_log_name(std::string_view name) { g_name = name; }
bool log_enabled(LogLevel level) { return level >= g_level; }

void log_line(LogLevel level, std::string_view msg)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	std::string line = fmt::format("{} {}: {}\n", g_name, names[int(level)], msg);
	std::fwrite(line.data(), 1, line.size(), stderr);
}

} // namespace agent
