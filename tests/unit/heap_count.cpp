// SPDX-License-Identifier: MIT
// The unit tests' global operator new and delete: malloc and free, counting
// the bytes live (malloc_usable_size of each block), for tests that assert
// what an object holds (heap_count.hpp).
#include "heap_count.hpp"

#include <atomic>
#include <cstdlib>
#include <malloc.h>
#include <new>

namespace {

std::atomic<std::size_t> g_live{0};

void *counted(std::size_t n)
{
	void *p = std::malloc(n ? n : 1);
	if (!p)
		throw std::bad_alloc();
	g_live += malloc_usable_size(p);
	return p;
}

void uncounted(void *p) noexcept
{
	if (!p)
		return;
	g_live -= malloc_usable_size(p);
	std::free(p);
}

} // namespace

std::size_t test_support::heap_live_bytes() { return g_live.load(); }

void *operator new(std::size_t n) { return counted(n); }
void *operator new[](std::size_t n) { return counted(n); }
void *operator new(std::size_t n, const std::nothrow_t &) noexcept
{
	try {
		return counted(n);
	} catch (...) {
		return nullptr;
	}
}
void *operator new[](std::size_t n, const std::nothrow_t &t) noexcept
{
	return operator new(n, t);
}
void operator delete(void *p) noexcept { uncounted(p); }
void operator delete[](void *p) noexcept { uncounted(p); }
void operator delete(void *p, std::size_t) noexcept { uncounted(p); }
void operator delete[](void *p, std::size_t) noexcept { uncounted(p); }
