# SPDX-License-Identifier: MIT
"""The fault-injecting relay itself (tests/tools/faultrelay.c), between a
plain client and a plain server: it carries bytes intact both ways with
half-closes, captures the first bytes, applies each fault at exactly its
byte count and as specified, and holds no more than its pipes when a side
stops reading. The failover cases trust it: these say it deserves it."""

import os
import socket
import threading
import time

import relay as faultrelay
from harness import HOST, KiB, MiB, Data, Sender, check, exchange, receive_all
from probes import tcp_state, wait_until
from cases_traffic import check_exchange, exchange_target

FAULT_AT = 1 * MiB + 12345


def t_passthrough(mkenv):
    """16 MiB each way at once, each side half-closing when done: intact,
    and --capture holds the client's first 200 bytes."""
    env = mkenv()
    size = 16 * MiB
    tgt = env.target(exchange_target(7001, size))
    cap = os.path.join(env.logdir, "capture")
    r = faultrelay.start(env, tgt.port, capture=cap)
    c = env.connect(r.port, timeout=20)
    cr = exchange(c, Data(7000, size))
    tr = tgt.result(20)
    errs = check_exchange("through the relay", cr, tr, size, size)
    check(not errs, "\n".join(errs))
    check(wait_until(lambda: (0, "closed", None, None) in r.events(), 5),
          "the relay did not report connection 0 closed: %r" % r.events())
    with open(os.path.join(cap, "conn-0.bin"), "rb") as f:
        got = f.read()
    first = Data(7000, size).pieces()
    want = (bytes(next(first)) + bytes(next(first)))[:200]
    check(got == want, "the capture is not the client's first 200 bytes: %d bytes, %s"
          % (len(got), got[:32].hex()))
    return "16 MiB each way intact; capture of 200 bytes exact"


class Endless:
    """Both ends send an endless stream and count what they receive."""

    def __init__(self, env, kind, **relay_kw):
        self.conns = []
        srv = socket.socket()
        srv.bind((HOST, 0))
        srv.listen(4)
        env.track(srv)
        self.relay = faultrelay.start(env, srv.getsockname()[1],
                                      faults=[(0, kind, FAULT_AT)], **relay_kw)
        self.client = env.connect(self.relay.port, timeout=20)
        self.server, _ = srv.accept()
        env.track(self.server)
        self.sent, self.got, self.ends = {}, {}, {}
        for seed, name, s in ((1, "client", self.client), (2, "server", self.server)):
            s.settimeout(20)
            snd = Sender(s, Data(7200 + seed, None, block=64 * KiB), shut=False)
            snd.start()
            self.sent[name] = snd
            threading.Thread(target=self._read, args=(name, s), daemon=True).start()

    def _read(self, name, s):
        self.got[name] = 0
        r = receive_all(s, on_bytes=lambda n: self.got.__setitem__(name, n))
        self.ends[name] = r["end"]

    def wait_fault(self):
        if not wait_until(lambda: self.relay.faults_hit(), 10):
            check(False, "the fault never hit: %s" % self.relay.describe())
        (conn, kind, at), = self.relay.faults_hit()
        check(at == FAULT_AT, "the %s hit at %d bytes, not %d" % (kind, at, FAULT_AT))
        return kind

    def received(self):
        return self.got.get("client", 0) + self.got.get("server", 0)


def t_reset(mkenv):
    """reset at AT: both ends are reset, and no more than AT bytes arrived."""
    e = Endless(mkenv(), "reset")
    e.wait_fault()
    check(wait_until(lambda: len(e.ends) == 2, 5), "not both ends saw the reset: %r" % e.ends)
    # The kernel reports a reset once, to the first call on the socket: the
    # read or the send, whichever came first.
    ends = {k: (type(v).__name__, type(e.sent[k].error).__name__) for k, v in e.ends.items()}
    check(all("ConnectionResetError" in v for v in ends.values()),
          "the ends' (read, send) ended by %r, not a reset each" % ends)
    check(e.received() <= FAULT_AT, "%d bytes arrived, over the fault's %d"
          % (e.received(), FAULT_AT))
    return "both ends reset; %d bytes arrived of %d forwarded" % (e.received(), FAULT_AT)


def t_stall(mkenv):
    """stall at AT: exactly AT bytes arrive, then nothing moves and nothing
    closes (both sockets ESTABLISHED, both senders blocked)."""
    e = Endless(mkenv(), "stall")
    e.wait_fault()
    check(wait_until(lambda: e.received() == FAULT_AT, 5),
          "%d bytes arrived, not the %d forwarded" % (e.received(), FAULT_AT))
    # The socket buffers still take bytes for a moment; then the windows close.
    sent, t0 = None, time.monotonic()
    while time.monotonic() - t0 < 10:
        now = {k: s.sent for k, s in e.sent.items()}
        if now == sent:
            break
        sent = now
        time.sleep(0.5)
    check(all(v < 64 * MiB for v in sent.values()),
          "the senders put %r bytes into a stalled connection" % sent)
    time.sleep(1.5)
    check(not e.ends, "an end's read ended during the stall: %r" % e.ends)
    check(e.received() == FAULT_AT, "bytes arrived during the stall")
    check({k: s.sent for k, s in e.sent.items()} == sent, "a sender still moves bytes "
          "during the stall: %r -> %r" % (sent, {k: s.sent for k, s in e.sent.items()}))
    states = [tcp_state(s) for s in (e.client, e.server)]
    check(states == ["ESTABLISHED"] * 2, "sockets during the stall: %r" % states)
    return "%d bytes, then nothing for 1.5 s; both ends open" % FAULT_AT


def t_blackhole(mkenv):
    """blackhole at AT: exactly AT bytes arrive; the senders go on (their
    bytes are swallowed) and nothing closes."""
    e = Endless(mkenv(), "blackhole")
    e.wait_fault()
    check(wait_until(lambda: e.received() == FAULT_AT, 5),
          "%d bytes arrived, not the %d forwarded" % (e.received(), FAULT_AT))
    sent = {k: s.sent for k, s in e.sent.items()}
    time.sleep(1.5)
    moved = {k: s.sent - sent[k] for k, s in e.sent.items()}
    check(all(m >= 8 * MiB for m in moved.values()),
          "the senders did not go on into the blackhole: %r bytes in 1.5 s" % moved)
    check(not e.ends and e.received() == FAULT_AT,
          "bytes came out of the blackhole or an end closed: %d, %r" % (e.received(), e.ends))
    return "%d bytes, then %s swallowed in 1.5 s; both ends open" % (
        FAULT_AT, ", ".join("%s %d MiB" % (k, m // MiB) for k, m in sorted(moved.items())))


def t_delay(mkenv):
    """delay at AT: exactly AT bytes arrive, nothing more for --delay-ms
    (1.5 s here), then the relay forwards again both ways; nothing closes."""
    e = Endless(mkenv(), "delay", delay_ms=1500)
    e.wait_fault()
    t0 = time.monotonic()
    check(wait_until(lambda: e.received() == FAULT_AT, 5),
          "%d bytes arrived, not the %d forwarded" % (e.received(), FAULT_AT))
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    held = e.received()

    def resumed():
        return [ev for ev in e.relay.events() if ev[1] == "resumed"]
    check(held == FAULT_AT and not resumed(),
          "bytes moved within the delay: %d of %d, events %r" % (held, FAULT_AT,
                                                                   e.relay.events()))
    check(wait_until(resumed, 5), "the relay never resumed: %r" % e.relay.events())
    waited = time.monotonic() - t0
    check(wait_until(lambda: e.got.get("client", 0) >= 8 * MiB and
                     e.got.get("server", 0) >= 8 * MiB, 10),
          "after the delay, not 8 MiB each way: %r" % e.got)
    check(not e.ends, "an end's read ended: %r" % e.ends)
    return "%d bytes, then nothing until the resume %.1f s on; then 8 MiB each way; both " \
        "ends open" % (FAULT_AT, waited)


def t_backpressure(mkenv):
    """The server never reads: the client's sends stop after the socket
    buffers and the relay's pipe, and the relay holds no more."""
    env = mkenv()
    srv = socket.socket()
    srv.bind((HOST, 0))
    srv.listen(4)
    env.track(srv)
    r = faultrelay.start(env, srv.getsockname()[1])
    c = env.connect(r.port, timeout=20)
    s, _ = srv.accept()
    env.track(s)
    snd = Sender(c, Data(7100, None), shut=False)
    snd.start()
    last, t0 = -1, time.monotonic()
    while snd.sent != last and time.monotonic() - t0 < 20:
        last = snd.sent
        time.sleep(0.5)
    check(snd.sent == last, "the client never stopped sending (%d MiB)" % (snd.sent // MiB))
    rss = r.proc.rss_kib()
    check(snd.sent < 128 * MiB, "%d MiB went in before the sends stopped" % (snd.sent // MiB))
    check(rss < 16 * 1024, "the relay holds %d KiB" % rss)
    s.close()
    c.close()
    return "sends stopped after %d MiB; relay RSS %d KiB" % (snd.sent // MiB, rss)


def t_random_plan(mkenv):
    """--random-faults: K distinct connections among the first --among, at
    points in [1, span); the same seed, the same plan; another seed, another."""
    env = mkenv()
    plans = []
    for i, seed in enumerate((11, 11, 12)):
        r = faultrelay.start(env, 9, random_faults=(3, "stall", seed, 1000, 5))
        plans.append(r.planned())
        r.proc.kill()
    conns = [c for c, _, _ in plans[0]]
    check(len(set(conns)) == 3 and all(0 <= c < 5 for c in conns),
          "connections drawn: %r (want 3 distinct among 0..4)" % conns)
    check(all(k == "stall" and 1 <= a < 1000 for _, k, a in plans[0]),
          "faults drawn: %r" % plans[0])
    check(plans[0] == plans[1] and plans[0] != plans[2],
          "seed 11 twice and 12: %r" % plans)
    return "seed 11: %r" % plans[0]


def tests():
    return [
        ("faultrelay: 16 MiB each way with half-closes -> intact; capture exact",
         t_passthrough, 60),
        ("faultrelay: reset at a byte count -> both ends reset there", t_reset, 30),
        ("faultrelay: stall at a byte count -> nothing moves, nothing closes", t_stall, 30),
        ("faultrelay: blackhole at a byte count -> swallowed, nothing closes", t_blackhole, 30),
        ("faultrelay: delay at a byte count -> nothing moves for --delay-ms, then all does",
         t_delay, 30),
        ("faultrelay: a side that stops reading -> the relay stops reading its peer",
         t_backpressure, 60),
        ("faultrelay: --random-faults -> distinct connections, points in range, by seed",
         t_random_plan, 30),
    ]
