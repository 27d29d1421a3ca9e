# SPDX-License-Identifier: MIT
"""Resets map through both ways; a stream lost mid-session ends that
session (and only that one)."""

import re
import signal
import socket
import threading
import time

from harness import (HOST, MiB, Data, Sender, Target, check, describe_end, exchange,
                     free_port, hello_ack_frame, parse_hello, read_exact, receive_all, set_reset_linger,
                     wait_closed)

RESET_DEADLINE = 5.0
HELLO_REJOIN = 2


def t_reset_client(mkenv):
    """The client resets (SO_LINGER 0) mid-transfer: the target's recv must
    raise ConnectionResetError, not see a clean EOF."""
    progress = {"n": 0}
    got = threading.Event()

    def handler(c, results):
        s = Sender(c, Data(6000, 1 * MiB), shut=False)
        s.run()                      # a bounded reply; then only reads
        r = receive_all(c, on_bytes=lambda n: (progress.__setitem__("n", n),
                                               got.set() if n >= MiB else None))
        r["t_end"] = time.monotonic()
        results.put(r)
    env = mkenv()
    tgt, join, stripe = env.chain(handler)
    c = env.connect(stripe.port)
    s = Sender(c, Data(6001, 4 * MiB), shut=False)
    s.run()
    check(s.error is None, "client send failed: %s" % s.error)
    check(got.wait(20), "the target got only %d bytes of the client's 4 MiB" % progress["n"])
    set_reset_linger(c)
    c.close()
    t0 = time.monotonic()
    r = tgt.result(RESET_DEADLINE + 5)
    dt = r["t_end"] - t0
    check(isinstance(r["end"], ConnectionResetError) and dt <= RESET_DEADLINE,
          "after the client's reset the target's read ended by %s after %.1f s "
          "(want ConnectionResetError within %.0f s)" % (describe_end(r["end"]), dt,
                                                          RESET_DEADLINE))
    check(join.alive() and stripe.alive(), "a proxy died")
    return "target reset %.2f s after the client's" % dt


def t_reset_target(mkenv):
    """The target resets mid-transfer: the client's recv must raise
    ConnectionResetError."""
    def handler(c, results):
        try:
            read_exact(c, MiB)
            s = Sender(c, Data(6100, 2 * MiB), shut=False)
            s.run()
            set_reset_linger(c)
            results.put({"t_reset": time.monotonic()})
        finally:
            c.close()
    env = mkenv()
    tgt, join, stripe = env.chain(handler)
    c = env.connect(stripe.port)
    s = Sender(c, Data(6101, MiB), shut=False)
    s.run()
    check(s.error is None, "client send failed: %s" % s.error)
    c.settimeout(20)
    r = receive_all(c)
    t1 = time.monotonic()
    tr = tgt.result(5)
    dt = t1 - tr["t_reset"]
    check(isinstance(r["end"], ConnectionResetError) and dt <= RESET_DEADLINE,
          "after the target's reset the client's read ended by %s after %.1f s, %d bytes read "
          "(want ConnectionResetError within %.0f s)" % (describe_end(r["end"]), dt, r["len"],
                                                          RESET_DEADLINE))
    check(join.alive() and stripe.alive(), "a proxy died")
    return "client reset %.2f s after the target's" % dt


def session_ok(env, stripe_port, tgt, seed, size=MiB):
    """One more session through the stripe side, intact both ways."""
    c = env.connect(stripe_port, timeout=20)
    r = exchange(c, Data(seed, size))
    c.close()
    tr = tgt.result(20, match=lambda x: x.get("first", b"")[:8] == Data(seed, 1).header()[:8])
    check(r["end"] == "eof" and r["len"] == size and r["hash"] == tr["sent_hash"]
          and tr["len"] == size and tr["hash"] == r["sent_hash"],
          "a new session after the failure was not intact: client got %d bytes (%s), "
          "target got %d bytes (%s)" % (r["len"], describe_end(r["end"]), tr["len"],
                                        describe_end(tr["end"])))


def t_stream_lost_kill_join(mkenv):
    """kill -9 the join mid-transfer: every stream is lost and no replacement
    can connect, so the stripe side ends the session (within
    --failover-deadline, 2 s here: the client's connection closes, a log line
    says why) and goes on serving new sessions once a join is back."""
    def handler(c, results):
        r = exchange(c, Data(7000, None), join_timeout=10)
        results.put(r)
    env = mkenv()
    tgt, join, stripe = env.chain(handler, stripe_flags=("--failover-deadline", "2000"))
    c = env.connect(stripe.port, timeout=30)
    moving = threading.Event()
    box = {}
    th = threading.Thread(target=lambda: box.update(r=exchange(
        c, Data(7001, None), on_bytes=lambda n: moving.set() if n > 4 * MiB else None,
        join_timeout=10)), daemon=True)
    th.start()
    check(moving.wait(20), "the transfer did not get going")
    err_at = len(stripe.stderr())
    join.p.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    join.p.wait(5)
    th.join(RESET_DEADLINE)
    dt = time.monotonic() - t0
    check(not th.is_alive(), "the client's connection was still open %.0f s after the join "
          "was killed" % RESET_DEADLINE)
    r = box["r"]
    log = stripe.stderr()[err_at:]
    check(re.search(r"session [0-9a-f]+: stream \d+", log),
          "no stripe log line names the lost stream; new stripe stderr: %r" % log[-600:])
    check(stripe.alive(), "the stripe process died")
    # A join again on the same port: the stripe side serves new sessions.
    tgt2 = env.target(lambda c, res: res.put(exchange(c, Data(7100, MiB))))
    env.join(tgt2.port, port=join.port)
    session_ok(env, stripe.port, tgt2, 7101)
    return "client's read ended by %s %.2f s after the kill" % (describe_end(r["end"]), dt)


class FakeJoin:
    """Accepts streams, answers their HELLOs (a HELLO-ACK; the AUTH is read
    with the rest) and drops whatever follows."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.streams = []     # (socket, hello)
        self.cv = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._stream, args=(c,), daemon=True).start()

    def _stream(self, c):
        try:
            c.settimeout(30)
            h = parse_hello(read_exact(c, 16 + 56))
            c.sendall(hello_ack_frame())
            with self.cv:
                self.streams.append((c, h))
                self.cv.notify_all()
            while c.recv(1 << 20):
                pass
        except OSError:
            pass

    def wait_streams(self, n, timeout):
        with self.cv:
            return self.cv.wait_for(lambda: len(self.streams) >= n, timeout)

    def close(self):
        self.sock.close()
        for c, _ in self.streams:
            try:
                c.close()
            except OSError:
                pass


def t_stream_lost_fake_join(mkenv):
    """A fake join takes the 4 streams, then one of them ends (FIN, no FIN
    frame) in mid-session: the stripe side logs the stream as lost, keeps
    the client's connection, and opens a replacement: a HELLO with REJOIN
    for the same session and index."""
    env = mkenv()
    fake = FakeJoin()
    env.targets.append(fake)
    stripe = env.stripe(fake.port)
    c = env.connect(stripe.port, timeout=30)
    check(fake.wait_streams(4, 10), "the stripe side opened %d of 4 streams" % len(fake.streams))
    sessions = {h["session"] for _, h in fake.streams}
    check(len(sessions) == 1 and sorted(h["index"] for _, h in fake.streams) == [0, 1, 2, 3]
          and all(h["count"] == 4 and not h["flags"] & HELLO_REJOIN for _, h in fake.streams),
          "odd HELLOs: %r" % [h for _, h in fake.streams])
    stop = threading.Event()
    s = Sender(c, Data(7200, None), shut=False, stop=stop)
    s.start()
    time.sleep(0.3)
    err_at = len(stripe.stderr())
    victim, vh = fake.streams[2]
    victim.shutdown(socket.SHUT_WR)        # a clean TCP FIN, but no FIN frame
    t0 = time.monotonic()
    check(fake.wait_streams(5, 10), "no replacement stream within 10 s of the loss")
    dt = time.monotonic() - t0
    rj = fake.streams[4][1]
    check(rj["session"] in sessions and rj["index"] == vh["index"] and rj["count"] == 4
          and rj["flags"] & HELLO_REJOIN,
          "the replacement's HELLO does not rejoin stream %d of the session: %r"
          % (vh["index"], rj))
    log = stripe.stderr()[err_at:]
    check(re.search(r"session [0-9a-f]+: stream %d .*lost: closed" % vh["index"], log),
          "no stripe log line says stream %d was lost; new stripe stderr: %r"
          % (vh["index"], log[-600:]))
    end, _, _ = wait_closed(c, 1.0)
    stop.set()
    check(end == "timeout", "the client's connection ended (%s) with one stream lost" % end)
    check(stripe.alive(), "the stripe process died")
    return "replacement HELLO (REJOIN, index %d) %.2f s after the stream's FIN; client kept" % (
        vh["index"], dt)


def t_v1_join_side(mkenv):
    """A join side that speaks wire v1 only refuses our HELLO (resets the
    stream, as v1 does with an unknown version): the stripe side says so
    in one line, closes the client, and serves the next one."""
    env = mkenv()
    srv = socket.socket()
    srv.bind((HOST, 0))
    srv.listen(64)
    env.track(srv)
    seen = []

    def v1_join():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            try:
                seen.append(parse_hello(read_exact(c, 16 + 56)))
            except Exception:  # noqa: BLE001
                pass
            set_reset_linger(c)
            c.close()
    threading.Thread(target=v1_join, daemon=True).start()
    stripe = env.stripe(srv.getsockname()[1])
    try:
        c = env.connect(stripe.port, timeout=10)
        end, dt, _ = wait_closed(c, RESET_DEADLINE)
    except ConnectionResetError:
        # The refusal and the client's reset came before connect() looked
        # at its socket (a non-blocking connect with a timeout): closed.
        end, dt = "reset", 0.0
    check(end in ("eof", "reset"), "the client was not closed within %.0f s (%s)"
          % (RESET_DEADLINE, end))
    check(seen and all(h["version"] == 2 and h["min_version"] == 2 for h in seen),
          "HELLOs did not offer versions 2..2: %r" % seen[:2])
    t0 = time.monotonic()
    while "before the HELLO-ACK" not in stripe.stderr() and time.monotonic() - t0 < 3:
        time.sleep(0.05)
    log = stripe.stderr()
    check("before the HELLO-ACK" in log and "wire v1" in log,
          "no stripe log line says the join side refused the handshake (v1?): %r" % log[-400:])
    check(log.count("before the HELLO-ACK") == 1, "the refusal was logged %d times"
          % log.count("before the HELLO-ACK"))
    check(stripe.alive(), "the stripe process died")
    return "client closed (%s) after %.2f s; stripe: %s" % (
        end, dt, [l for l in log.splitlines() if "HELLO-ACK" in l][0].split(": ", 1)[-1])


def tests():
    return [
        ("reset: client resets mid-transfer -> target sees ECONNRESET", t_reset_client, 60),
        ("reset: target resets mid-transfer -> client sees ECONNRESET", t_reset_target, 60),
        ("stream lost: kill -9 join mid-transfer ends the session, stripe serves on",
         t_stream_lost_kill_join, 90),
        ("stream lost: one stream ends without FIN frame -> logged, replaced (REJOIN), client kept",
         t_stream_lost_fake_join, 60),
        ("handshake: a v1-only join side -> the stripe side says so once, closes the client",
         t_v1_join_side, 60),
    ]
