// SPDX-License-Identifier: MIT
// The parts of HTTP mode (internal): an Exchange is one request and its
// response; a ClientConn reads a client's requests and writes their
// responses in order; a BackendConn carries one exchange at a time to a
// backend; the Pool owns the backend connections of a server.
//
// Calls between them never free anything: objects go to Agent::dispose()
// and are freed after the completion being handled. A ClientConn entered
// again while it works (a backend it called back into calls it) only marks
// itself for another pass of its loop (kick()).
#pragma once

#include "agent/http.hpp"
#include "conn.hpp"
#include "http_message.hpp"

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace agent {

class BackendConn;
class ClientConn;
class Pool;

struct Exchange {
	enum class State {
		parsed,       // waits for the requests before it (a barrier) or its turn
		waiting_conn, // submitted, no connection free yet
		at_backend,   // on a connection: request out, response coming
		finished,     // the response is complete (held or sent)
	};
	ClientConn *client = nullptr;
	State state = State::parsed;
	unsigned method = 0;
	std::string url;
	bool safe = false;        // GET/HEAD/OPTIONS without a body: may overlap
	bool has_body = false;
	bool request_done = false; // every byte of the request was read
	std::string request_head;  // as sent to the backend
	// A body's first bytes, checked before the request goes anywhere (so
	// a bad first chunk reaches no backend); sent after the head.
	std::vector<std::byte> early_body;
	bool body_checked = false;
	bool expect_continue = false; // the client waits for 100 before its body
	BackendConn *backend = nullptr;
	bool emitted = false;      // a response byte went to the client or to held
	bool flushed = false;      // it is due: held went out, the rest streams
	bool close_after = false;  // the client connection ends after this response
	std::vector<std::byte> held;
	unsigned status = 0;
	std::uint64_t response_bytes = 0;
	unsigned attempts = 0;
	std::string backend_name;
	Agent::Clock::time_point started;
};

class Pool {
public:
	Pool(Agent &agent, const HttpConfig &cfg, HttpStats &stats);
	~Pool();
	// Puts ex on a connection now (least outstanding backend first), or as
	// soon as one is free.
	void submit(Exchange *ex);
	// ex is gone (its client ended): forget it if it waits.
	void cancel(Exchange *ex);
	// c served its response and may take another.
	void conn_free(BackendConn &c);
	// c is closed; it is freed once nothing in flight refers to it.
	void note_closed(BackendConn &c);
	void conn_op_done(BackendConn &c);
	void shutdown();
	bool idle() const { return conns_.empty(); }

	Agent &agent;
	const HttpConfig &cfg;
	HttpStats &stats;

private:
	struct Backend {
		Address addr;
		std::string name;
		unsigned open = 0, busy = 0;
		std::vector<BackendConn *> idle; // most recently used last
	};
	void start_on(unsigned backend, Exchange *ex);
	void update_stats();

	std::vector<Backend> backends_;
	std::deque<Exchange *> waiting_;
	std::unordered_map<BackendConn *, std::unique_ptr<BackendConn>> conns_;
};

class BackendConn final : public StreamReader, public ConnOwner, public Disposable {
public:
	enum class State { connecting, idle, busy, closed };
	BackendConn(Pool &pool, unsigned backend, const std::string &name, int fd);
	~BackendConn() override;
	bool idle() const override { return state_ == State::closed && !conn_.busy(); }

	void connect(const Address &to);
	// Sends ex's head (queued while connecting); the response goes to ex.
	void start(Exchange *ex);
	// Request body bytes of the current exchange.
	void send_body(std::span<const std::byte> bytes);
	bool send_full() const { return conn_.queued() >= pool_.cfg.send_limit; }
	// The exchange's client is gone: the connection cannot be reused.
	void detach();
	void pause_reading();
	void resume_reading();
	bool reading_paused() const { return paused_; }
	void close(bool reset);

	State state() const { return state_; }
	unsigned backend() const { return backend_; }
	bool used_before() const { return served_ > 0; }
	const std::string &name() const { return name_; }
	bool counted = false; // in its backend's busy count (the pool's)

	void on_data(std::span<const std::byte> bytes) override;
	void on_end(int err) override;
	void conn_connected(Conn &) override;
	void conn_sent(Conn &) override;
	void conn_failed(Conn &, int err) override;
	void conn_op_done(Conn &) override { pool_.conn_op_done(*this); }

private:
	void fail(unsigned status, const std::string &why);
	void finish_response(bool reusable);
	void on_timer();
	bool emit(std::span<const std::byte> bytes);
	std::string response_head(const HttpHead &h) const;

	Pool &pool_;
	unsigned backend_;
	std::string name_;
	Conn conn_;
	MessageReader reader_;
	State state_ = State::connecting;
	Exchange *ex_ = nullptr;
	bool watching_ = false, paused_ = false;
	std::uint64_t served_ = 0;
	bool got_final_head_ = false;
	Timer timer_{[this] { on_timer(); }}; // response timeout, then idle timeout
};

class ClientHost {
public:
	virtual void client_finished(ClientConn *c) = 0;

protected:
	~ClientHost() = default;
};

class ClientConn final : public StreamReader, public ConnOwner, public Disposable {
public:
	ClientConn(Agent &agent, const HttpConfig &cfg, HttpStats &stats, Pool &pool,
		   ClientHost &host, int fd);
	~ClientConn() override;
	bool idle() const override { return closed_ && !conn_.busy(); }
	void start();
	// Ends at once (the server shuts down).
	void abort(const char *why);

	// From the exchange's backend connection. emit() returns false when the
	// backend should stop being read (the client's queue or hold budget is
	// full); resume() follows when there is room.
	bool emit(Exchange &ex, std::span<const std::byte> bytes);
	void response_done(Exchange &ex);
	// No response (or only part of one) will come: status if nothing was
	// emitted yet.
	void response_failed(Exchange &ex, unsigned status, const std::string &why);
	// ex went onto a connection, or its connection drained: work again.
	void kick();

	void on_data(std::span<const std::byte> bytes) override;
	void on_end(int err) override;
	void conn_connected(Conn &) override {}
	void conn_sent(Conn &) override;
	void conn_failed(Conn &, int err) override;
	void conn_op_done(Conn &) override;

private:
	void work();
	void read_requests();
	void new_request();
	void request_complete();
	void pump();
	void local_response(unsigned status, const std::string &why);
	// Bytes of ex's response: to the client if it is due, else held.
	void put(Exchange &ex, std::span<const std::byte> bytes);
	void put_error(Exchange &ex, unsigned status, const std::string &why);
	bool ready(const Exchange &ex) const;
	void finish(bool failed, bool reset, const char *why);
	void update_watch();
	void update_timers();
	void resume_backends();
	void log_access(const Exchange &ex);
	bool has_pending() const { return !exchanges_.empty(); }
	void on_idle_timeout();
	void on_header_timeout();

	Agent &agent_;
	const HttpConfig &cfg_;
	HttpStats &stats_;
	Pool &pool_;
	ClientHost &host_;
	Conn conn_;
	std::string peer_ip_, peer_;
	MessageReader reader_;
	std::vector<std::byte> in_;
	std::size_t in_off_ = 0;
	std::deque<std::unique_ptr<Exchange>> exchanges_;
	Exchange *reading_ = nullptr;    // the request whose body is being read
	std::size_t held_total_ = 0;
	bool stop_reading_ = false;      // no more requests: close, bad input, EOF
	bool peer_eof_ = false;
	bool watching_ = false, paused_ = false;
	bool closing_ = false, closed_ = false;
	bool in_work_ = false, again_ = false;
	bool reported_ = false;
	Timer idle_timer_{[this] { on_idle_timeout(); }};
	Timer header_timer_{[this] { on_header_timeout(); }};
};

// "HTTP/1.1 <status> <reason>" with a short body, Connection: close.
std::string error_response(unsigned status, const std::string &why);

} // namespace agent
