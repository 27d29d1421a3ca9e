// SPDX-License-Identifier: MIT
// Dropping root after the privileged setup (loading the eBPF filter, binding
// low ports): the maps, ring buffer and io_uring stay usable through their
// file descriptors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace agent {

// Switches the process to user (a name, or a numeric uid: with no passwd
// entry, that uid, gid = uid and no supplementary groups) and its groups
// for good: real, effective and saved ids, so root cannot be regained.
// Returns false with *err set to one line when it cannot.
bool drop_privileges(std::string_view user, std::string *err);

// Raises the soft RLIMIT_NOFILE to the hard limit (every socket and pipe is
// a descriptor); returns the soft limit in effect afterwards.
std::uint64_t raise_fd_limit();

} // namespace agent
