// SPDX-License-Identifier: MIT
// Placeholder until the kmod event source lands (see its issue).
#include "sources.hpp"

namespace agent {

std::unique_ptr<EventSource> make_kmod_source(Ring &, std::string *err)
{
	*err = "the kmod event source is not built yet";
	return nullptr;
}

} // namespace agent
