// SPDX-License-Identifier: MIT
// libFuzzer target: the join side's ReorderBuffer under a sequence of
// operations decoded from the input (FuzzedDataProvider): offers of DATA
// seqs around the next expected one (in order, ahead, behind, far ahead,
// again), pops, drains. It is used as session.cpp uses it (in_order: the
// caller delivers, then advance()). A model next to it checks every verdict
// and the invariants: bytes held never exceed the budget and match what is
// held, frames leave in sequence order with the bytes offered for that seq,
// nothing is delivered twice.
#include "agent/reorder.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

using agent::ReorderBuffer;
using Verdict = ReorderBuffer::Verdict;

namespace {

void require(bool ok)
{
	if (!ok)
		std::abort();
}

// The payload of seq: its bytes tell which seq they belong to.
std::vector<std::byte> payload_of(std::uint64_t seq, std::size_t len)
{
	std::vector<std::byte> b(len);
	for (std::size_t i = 0; i < len; i++)
		b[i] = std::byte((seq >> (8 * (i % 8))) + i / 8);
	return b;
}

struct Model {
	std::size_t budget;
	std::uint64_t window;
	std::uint64_t next = 0;
	std::size_t held_bytes = 0;
	std::map<std::uint64_t, std::size_t> held; // seq -> length
	std::uint64_t delivered = 0;               // seqs [0, delivered) went out

	Verdict expect(std::uint64_t seq, std::size_t len) const
	{
		if (seq < next)
			return Verdict::duplicate;
		if (seq - next >= window)
			return Verdict::out_of_window;
		if (held.count(seq))
			return Verdict::duplicate;
		if (seq == next)
			return Verdict::in_order;
		if (held_bytes + len > budget)
			return Verdict::no_room;
		return Verdict::stored;
	}

	void deliver(std::uint64_t seq)
	{
		// In order, each seq once.
		require(seq == delivered);
		delivered++;
	}
};

void check(const ReorderBuffer &rb, const Model &m)
{
	require(rb.held_bytes() <= rb.budget());
	require(rb.held_bytes() == m.held_bytes);
	require(rb.held_frames() == m.held.size());
	require(rb.next() == m.next);
	require(m.delivered == m.next);
}

bool pop_one(ReorderBuffer &rb, Model &m)
{
	std::vector<std::byte> out;
	bool held_next = m.held.count(m.next) != 0;
	bool got = rb.pop(out);
	require(got == held_next);
	if (!got)
		return false;
	std::size_t len = m.held[m.next];
	require(out == payload_of(m.next, len));
	m.held.erase(m.next);
	m.held_bytes -= len;
	m.deliver(m.next);
	m.next++;
	return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	FuzzedDataProvider in(data, size);
	Model m;
	m.budget = in.ConsumeIntegralInRange<std::size_t>(0, 8192);
	m.window = in.ConsumeIntegralInRange<std::uint64_t>(1, 1024);
	ReorderBuffer rb(m.budget, m.window);
	check(rb, m);

	while (in.remaining_bytes() > 0) {
		switch (in.ConsumeIntegralInRange<int>(0, 3)) {
		case 0:
		case 1: { // offer
			std::uint64_t seq;
			switch (in.ConsumeIntegralInRange<int>(0, 3)) {
			case 0: // behind the next one (a duplicate)
				seq = m.next - std::min<std::uint64_t>(
						       m.next, in.ConsumeIntegralInRange<std::uint64_t>(
								       1, 4));
				break;
			case 1: // far ahead, or anywhere in the seq space
				seq = in.ConsumeBool() ? m.next + in.ConsumeIntegral<std::uint32_t>()
						       : in.ConsumeIntegral<std::uint64_t>();
				break;
			default: // within or just past the window
				seq = m.next + in.ConsumeIntegralInRange<std::uint64_t>(
						       0, m.window + 1);
				break;
			}
			std::size_t len = in.ConsumeIntegralInRange<std::size_t>(0, 512);
			auto bytes = payload_of(seq, len);
			Verdict want = m.expect(seq, len);
			Verdict got = rb.offer(seq, bytes);
			require(got == want);
			if (got == Verdict::stored) {
				m.held[seq] = len;
				m.held_bytes += len;
			} else if (got == Verdict::in_order) {
				// The caller delivers it, then advance(); the
				// session then drains what became due.
				m.deliver(seq);
				rb.advance();
				m.next++;
				if (in.ConsumeBool())
					while (pop_one(rb, m)) {
					}
			}
			break;
		}
		case 2: // pop one
			pop_one(rb, m);
			break;
		case 3: // drain
			while (pop_one(rb, m)) {
			}
			break;
		}
		check(rb, m);
	}
	return 0;
}
