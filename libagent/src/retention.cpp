// SPDX-License-Identifier: MIT
#include "retention.hpp"

#include <algorithm>
#include <cassert>

namespace agent {

void Retention::push(Frame f)
{
	assert(frames_.empty() || f.seq > frames_.back().seq);
	bytes_ += f.length;
	frames_.push_back(std::move(f));
}

void Retention::keep_copy(std::uint64_t seq, unsigned stream, Clock::time_point now,
			  std::span<const std::byte> payload)
{
	push(Frame{seq, payload.size(), stream, now, 0,
		   std::vector<std::byte>(payload.begin(), payload.end()), 0});
}

bool Retention::keep_tee(std::uint64_t seq, unsigned stream, Clock::time_point now,
			 const Pipe &pipe)
{
	if (pipe.bytes() == 0)
		return false;
	Store *s = stores_.empty() ? nullptr : &stores_.back();
	if (!s || s->state != StoreState::filling || !append(*s, pipe)) {
		if (stores_.size() >= kMaxStores)
			return false;
		Pipe p = Pipe::acquire(std::max(pipe.capacity(), kStoreSize));
		if (!p.valid())
			return false;
		stores_.push_back(Store{next_store_++, std::move(p)});
		s = &stores_.back();
		// As many slots as the pipe it copies, when empty: short only
		// where the system made the new pipe smaller.
		if (!append(*s, pipe)) {
			drop_store(s->id);
			return false;
		}
	}
	s->frames++;
	push(Frame{seq, pipe.bytes(), stream, now, 0, {}, s->id});
	return true;
}

// Duplicates pipe's bytes at the end of s, whole or not at all as far as
// its frames go: a short tee seals s.
bool Retention::append(Store &s, const Pipe &pipe)
{
	ssize_t n = pipe.tee_to(s.pipe);
	if (n == static_cast<ssize_t>(pipe.bytes()))
		return true;
	// A second tee would start over at the pipe's first byte: what this
	// one duplicated stays behind the store's frames, and s takes no more.
	s.state = StoreState::sealed;
	return false;
}

Retention::Store *Retention::store(std::uint32_t id)
{
	for (Store &s : stores_)
		if (s.id == id)
			return &s;
	return nullptr;
}

// Emptied into /dev/null and pooled: cheaper than closing the pipe and
// making a new one (and setting its size) for the next store.
void Retention::drop_store(std::uint32_t id)
{
	for (auto it = stores_.begin(); it != stores_.end(); ++it)
		if (it->id == id) {
			if (it->pipe.valid() && it->pipe.discard())
				Pipe::release(std::move(it->pipe));
			stores_.erase(it);
			return;
		}
}

std::size_t Retention::ack(std::uint64_t n)
{
	if (n <= acked_)
		return 0;
	acked_ = n;
	std::size_t released = 0;
	while (!frames_.empty() && frames_.front().seq < n) {
		Frame &f = frames_.front();
		bytes_ -= f.length;
		// Frames leave in seq order, so f's payload heads its store.
		if (Store *s = f.store ? store(f.store) : nullptr) {
			if (s->state != StoreState::broken && !s->pipe.drop(f.length))
				s->state = StoreState::broken;
			if (--s->frames == 0)
				drop_store(s->id);
		}
		frames_.pop_front();
		released++;
	}
	return released;
}

Retention::Frame *Retention::find(std::uint64_t seq)
{
	if (frames_.empty() || seq < frames_.front().seq)
		return nullptr;
	// Kept in seq order, without gaps: one index away.
	std::size_t i = seq - frames_.front().seq;
	if (i < frames_.size() && frames_[i].seq == seq)
		return &frames_[i];
	for (Frame &f : frames_)
		if (f.seq == seq)
			return &f;
	return nullptr;
}

std::vector<std::uint64_t> Retention::carried_by(unsigned stream) const
{
	std::vector<std::uint64_t> out;
	for (const Frame &f : frames_)
		if (f.stream == stream)
			out.push_back(f.seq);
	return out;
}

bool Retention::materialize(Frame &f)
{
	if (!f.store)
		return true;
	const std::uint32_t id = f.store; // f is one of the frames cleared below
	Store *s = store(id);
	bool whole = s && s->state != StoreState::broken;
	// The store's frames, in seq order, are its pipe's bytes from the first.
	for (Frame &g : frames_) {
		if (g.store != id)
			continue;
		g.store = 0;
		if (!whole)
			continue;
		g.bytes.resize(g.length);
		whole = s->pipe.read_into(g.bytes.data(), g.length) ==
			static_cast<ssize_t>(g.length);
	}
	if (s)
		drop_store(id);
	return whole;
}

} // namespace agent
