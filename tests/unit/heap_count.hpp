// SPDX-License-Identifier: MIT
// Bytes the process holds from operator new right now (heap_count.cpp
// replaces the global operator new and delete to count them). malloc's own
// statistics cannot tell: a chunk freed into glibc's per-thread cache still
// counts as in use there.
#pragma once

#include <cstddef>

namespace test_support {

std::size_t heap_live_bytes();

} // namespace test_support
