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
		   std::vector<std::byte>(payload.begin(), payload.end()), Pipe()});
}

bool Retention::keep_tee(std::uint64_t seq, unsigned stream, Clock::time_point now,
			 const Pipe &pipe)
{
	if (pipe.bytes() < kMinTee || pipes_ >= kMaxPipes)
		return false;
	// As large as the one it copies: once acknowledged, it is pooled, and
	// serves the next chunk read from the plain end.
	Pipe dup = Pipe::acquire(std::max(pipe.bytes(), pipe.capacity()));
	if (!dup.valid())
		return false;
	if (pipe.tee_to(dup) != static_cast<ssize_t>(pipe.bytes())) {
		// A short tee cannot be completed (a second one would start
		// over at the first byte): the duplicate is no use.
		return false;
	}
	push(Frame{seq, pipe.bytes(), stream, now, 0, {}, std::move(dup)});
	pipes_++;
	return true;
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
		pipes_ -= f.pipe.valid();
		// Emptied into /dev/null and pooled: cheaper than closing it and
		// making a new pipe (and setting its size) for the next frame.
		if (f.pipe.valid() && f.pipe.discard())
			Pipe::release(std::move(f.pipe));
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
	if (!f.pipe.valid())
		return true;
	std::vector<std::byte> out(f.length);
	ssize_t n = f.pipe.read_into(out.data(), out.size());
	f.pipe = Pipe();
	pipes_--;
	if (n != static_cast<ssize_t>(f.length))
		return false;
	f.bytes = std::move(out);
	return true;
}

} // namespace agent
