# SPDX-License-Identifier: MIT
"""A session survives losing streams (docs/wire-format.md, "Losing a stream";
issue 11 item 5). Real processes: client -> stripe -> faultrelay -> join ->
target, where the relay (tests/tools/faultrelay.c) resets, stalls or
blackholes chosen streams at random points of a transfer of 256 MiB each way
at once (32 MiB in the sanitizer build). Each case asserts: both directions
arrive intact (sha256), the session is the one it was (one session opened
on each side, none failed, one target connection), every planned fault hit
and the stripe side counted at least as many lost streams, and afterwards
nothing is held (active 0, descriptors at their baseline) and nothing spins.
Two more cases replay a stream's captured HELLO and AUTH (a first stream's,
and a replacement's with REJOIN) to the join side, live and after the end:
refused, and the target sees nothing of them.

The random points come from one seed per run, printed in each case's line
(and failure); E2E_FAILOVER_SEED=N runs the same plan again. E2E_FAILOVER_MIB
sets the size (default 256; the sanitizer build always uses 32);
E2E_VERBOSE=1 runs both proxies with -v (every session's events in the
logs the harness keeps)."""

import os
import random
import socket
import struct
import subprocess
import threading
import time

import harness
import relay as faultrelay
from harness import (SANITIZE, KiB, Skip, MiB, T_AUTH, T_HELLO, Data, Sender, TestFailure, check,
                     comment, data_frame, exchange, read_exact, receive_all, wait_closed)
from probes import Baseline, counters, wait_until
from cases_abuse import check_idle, check_released, echo_until_eof
from cases_traffic import check_exchange, exchange_target

SIZE = (32 if SANITIZE else int(os.environ.get("E2E_FAILOVER_MIB", "256"))) * MiB
SIZE_NOTE = "%d MiB each way%s" % (SIZE // MiB, " (the sanitizer build: 32 MiB, 256 in the "
                                   "other suites)" if SANITIZE else "")
# Each of the 4 streams carries about SIZE / 2 bytes (both ways together): a
# fault drawn below SPAN hits in its first half, with most of the transfer
# still to come.
SPAN = SIZE // 4
# Nor before this many bytes: a stream lost in its handshake (before the
# HELLO-ACK) is another case than one lost mid-transfer.
FIRST = 64 * KiB
STREAMS = 4
SEED = int(os.environ.get("E2E_FAILOVER_SEED") or random.SystemRandom().randrange(1, 1 << 31))
# A lost stream is found within about 2 s (--stream-timeout 1000 after the
# 500 ms WAITING): these leave ten times that.
CLIENT_TIMEOUT = 20          # s without a byte before the client gives up
TARGET_TIMEOUT = 10          # s for the target's report once the client is done
CLOSE_DEADLINE = 5.0

# The flags the failover tests run the proxies with. Those a build does not
# list in `agentproxy MODE --help` are left out (said once in a comment): a
# build from before failover still runs the no-fault case.
WANTED_FLAGS = [("--stream-timeout", "1000"), ("--keepalive", "1"), ("--retention", "4M"),
                ("--reorder-budget", "8M"), ("--failover-deadline", "5000"),
                ("--rejoin-tries", "5")]
_flags = {}


def mode_flags(mode):
    """WANTED_FLAGS that `agentproxy MODE --help` lists, and those it does not."""
    if mode not in _flags:
        out = subprocess.run([harness.AGENTPROXY, mode, "--help"], capture_output=True,
                             text=True, timeout=10).stdout
        have = [f for f in WANTED_FLAGS if f[0] + " " in out or f[0] + "\n" in out]
        _flags[mode] = (have, [f[0] for f in WANTED_FLAGS if f not in have])
        if _flags[mode][1]:
            comment("note: agentproxy %s has no %s: run without" % (mode,
                                                                     ", ".join(_flags[mode][1])))
    return _flags[mode]


def proxy_flags(env):
    """(join flags, stripe flags): a shared key and the failover flags."""
    key = os.path.join(env.logdir, "key")
    with open(key, "wb") as f:
        f.write(os.urandom(16).hex().encode() + b"\n")
    out = []
    for mode in ("join", "stripe"):
        flags = ["--key-file", key] + (["-v"] if os.environ.get("E2E_VERBOSE") else [])
        for name, value in mode_flags(mode)[0]:
            flags += [name, value]
        if mode == "stripe":
            flags += ["--streams", str(STREAMS)]
        out.append(flags)
    return out[0], out[1]


def failover_missing():
    """A sentence for a failure message if this build cannot fail over."""
    missing = sorted(set(mode_flags("stripe")[1]) | set(mode_flags("join")[1]))
    return (" (this agentproxy predates failover: no %s)" % ", ".join(missing)) \
        if missing else ""


def stat(c, key):
    return c.get(key, "absent")


class Run:
    """One session through the relay: what each end saw, and the checks."""

    def __init__(self, env, tgt, join, relay, stripe, seed):
        self.env, self.tgt, self.join, self.relay, self.stripe = env, tgt, join, relay, stripe
        self.seed = seed
        self.errors = []

    def fail_if_errors(self, what):
        if self.errors:
            stats = ["%s: %s" % (p.name, counters(p)["line"]) for p in (self.stripe, self.join)
                     if p.alive()]
            raise TestFailure("%s (seed %d, %s)%s:\n%s\n%s\n%s" % (
                what, self.seed, SIZE_NOTE, failover_missing(), "\n".join(self.errors),
                self.relay.describe(), "\n".join(stats)))

    def check_transfer(self, cr, tr):
        if tr is None:
            self.errors.append("the target reported nothing")
        else:
            self.errors += check_exchange("session", cr, tr, SIZE, SIZE)
        self.fail_if_errors("the transfer through the faults was not intact")

    def check_faults(self, planned):
        """Every planned fault hit (or the case proves nothing)."""
        hit = self.relay.faults_hit()
        hit_conns = {c for c, _, _ in hit}
        for conn, kind, at in planned:
            if conn not in hit_conns:
                self.errors.append(
                    "the %s planned on relay connection %d at %d bytes never hit%s" % (
                        kind, conn, at, " (the stripe side never opened it)"
                        if conn >= self.relay.accepted() else ""))
        self.fail_if_errors("the faults were not all injected")
        return hit

    def check_same_session(self, faults):
        """One session each side, none failed, one target connection, and
        the stripe side saw each fault as a lost stream."""
        cs, cj = counters(self.stripe), counters(self.join)
        for name, c in (("stripe", cs), ("join", cj)):
            if c.get("opened") != 1 or c.get("failed") != 0:
                self.errors.append("%s side: sessions opened %s failed %s (want 1 and 0)"
                                   % (name, stat(c, "opened"), stat(c, "failed")))
        if self.tgt.accepted != 1:
            self.errors.append("the target saw %d connections (want 1: the same session)"
                               % self.tgt.accepted)
        lost = cs.get("streams_lost")
        if lost is None and faults:
            self.errors.append("the stripe's stats line has no 'streams lost': %s" % cs["line"])
        elif lost is not None and lost < faults:
            self.errors.append("the stripe side counted %d lost streams for %d faults"
                               % (lost, faults))
        self.fail_if_errors("the session did not survive as one")
        return cs, cj


def start(mkenv, seed, faults=(), capture=None, handler=None):
    env = mkenv()
    join_flags, stripe_flags = proxy_flags(env)
    if capture:
        capture = os.path.join(env.logdir, "capture")
    tgt, join, relay, stripe = faultrelay.chain(
        env, handler or exchange_target(seed + 1, SIZE), join_flags, stripe_flags,
        faults=faults, capture=capture)
    return Run(env, tgt, join, relay, stripe, seed)


def transfer(r, label=""):
    """SIZE bytes each way at once through r's relay with the faults
    planned; every check above. Returns the case's line."""
    seed = r.seed
    base = [Baseline(r.stripe), Baseline(r.join)]
    c = r.env.connect(r.stripe.port, timeout=CLIENT_TIMEOUT)
    t0 = time.monotonic()
    cr = exchange(c, Data(seed, SIZE))
    dt = time.monotonic() - t0
    c.close()
    try:
        tr = r.tgt.result(TARGET_TIMEOUT)
    except TestFailure:
        tr = None
    r.check_transfer(cr, tr)
    planned = r.relay.planned()
    hit = r.check_faults(planned)
    # A delay holds a stream up for a while; every other fault loses one.
    cs, cj = r.check_same_session(len([f for f in planned if f[1] != "delay"]))
    check_released(*base)
    cpu = check_idle([r.stripe, r.join])
    lost_note = ""
    if not planned and cs.get("streams_lost"):
        lost_note = "; note: %d streams lost with no fault injected" % cs["streams_lost"]
    return ("%s; seed %d; faults %s; %s in %.1f s; relay accepted %d; stripe: lost %s "
            "rejoined %s resent %s duplicates %s; join: lost %s rejoined %s resent %s "
            "duplicates %s; idle CPU %.2f s%s" % (
                SIZE_NOTE, seed, ", ".join("conn %d %s at %d" % f for f in hit) or "none",
                label or "both ways", dt, r.relay.accepted(),
                stat(cs, "streams_lost"), stat(cs, "rejoined"), stat(cs, "frames_resent"),
                stat(cs, "duplicates"), stat(cj, "streams_lost"), stat(cj, "rejoined"),
                stat(cj, "frames_resent"), stat(cj, "duplicates"), cpu, lost_note))


def t_baseline(mkenv):
    """No fault: the relay itself carries the session intact."""
    return transfer(start(mkenv, SEED))


def t_one(mkenv, kind, k):
    """One of the first streams breaks (kind) at a random point."""
    seed = SEED + k
    rnd = random.Random(seed)
    return transfer(start(mkenv, seed, faults=[(rnd.randrange(STREAMS), kind,
                                                rnd.randrange(FIRST, SPAN))]))


def t_cascade(mkenv):
    """Streams cut one after another: relay connection 0 reset early,
    connection 1 stalled later, then connection 4 (the first replacement the
    stripe side opened) reset soon after its handshake."""
    seed = SEED + 10
    rnd = random.Random(seed)
    faults = [(0, "reset", rnd.randrange(FIRST, SPAN // 2)),
              (1, "stall", rnd.randrange(SPAN // 2, SPAN)),
              (4, "reset", rnd.randrange(256 * KiB, max(SPAN // 8, 512 * KiB)))]
    return transfer(start(mkenv, seed, faults=faults))


def t_all_but_one(mkenv):
    """Three of the four streams break (one reset, one stall, one
    blackhole, on connections and at points drawn by the seed): the session
    goes on on the last one and the replacements."""
    seed = SEED + 20
    rnd = random.Random(seed)
    conns = rnd.sample(range(STREAMS), STREAMS - 1)
    kinds = ["reset", "stall", "blackhole"]
    rnd.shuffle(kinds)
    faults = [(c, k, rnd.randrange(FIRST, SPAN)) for c, k in zip(conns, kinds)]
    return transfer(start(mkenv, seed, faults=faults))


def t_lost_before_start(mkenv):
    """A stream lost while the join side still waits for another's AUTH:
    the relay holds connection 3 up for a second right after its HELLO-ACK
    (the stripe side, all its handshakes answered, reads the client and
    sends), and resets connection 0 right after its AUTH. Not later: the
    stripe side may send connection 0 nothing in that second (the others
    take what the retention lets out while the join side reads nothing;
    an idle stream whose AUTH the relay has not ACKed yet looks the
    busier). The join side's session keeps the lost stream's index for the
    stripe's replacement."""
    seed = SEED + 50
    hello = 16 + 56 + 16 + 32           # HELLO and HELLO-ACK, headers included
    auth = 16 + 32
    r = start(mkenv, seed, faults=[(3, "delay", hello), (0, "reset", hello + auth)])
    line = transfer(r)
    early = [l for l in r.join.stderr().splitlines() if "before all" in l]
    check(early, "the join side's session had started before the reset (no 'lost before "
          "all ... streams had joined' line): the case tested nothing new")
    return line + "; join: " + early[0].split(": ", 2)[2]


def t_auth_swallowed(mkenv):
    """The relay swallows everything on connection 1 from right after its
    HELLO-ACK: its AUTH never reaches the join side, while the stripe side,
    all its handshakes answered, runs and sends on it. At its handshake
    timeout the join side starts the session with the three streams that
    joined; the stripe side loses stream 1 once the join waits for its
    frames, and its replacement takes the index. Before, the session
    ended at the join side's handshake timeout."""
    seed = SEED + 70
    hello = 16 + 56 + 16 + 32           # HELLO and HELLO-ACK, headers included
    r = start(mkenv, seed, faults=[(1, "blackhole", hello)])
    line = transfer(r)
    short = [l for l in r.join.stderr().splitlines() if "started without" in l]
    check(short, "the join side has no 'started without' line: the AUTH was not swallowed, "
          "or the session was not started short")
    check("no AUTH within" in r.join.stderr(), "the join side did not log the swallowed "
          "stream's handshake timeout as 'no AUTH within'")
    return line + "; join: " + short[0].split(": ", 2)[2]


def t_quiet_blackhole(mkenv):
    """Request and reply, one small message at a time, while relay
    connection 1 swallows everything after its handshake (HELLO, HELLO-ACK,
    AUTH): a message that
    goes on it never reaches the join side, and no later one shows the join
    that it waits (none comes before the reply). The stripe side sends a
    frame still unanswered --stream-timeout after it went out again on
    another stream: every round is answered, intact, in order."""
    seed = SEED + 60
    handshake = 16 + 56 + 16 + 32 + 16 + 32     # HELLO, HELLO-ACK and AUTH
    r = start(mkenv, seed, faults=[(1, "blackhole", handshake)], handler=echo_until_eof)
    base = [Baseline(r.stripe), Baseline(r.join)]
    c = r.env.connect(r.stripe.port, timeout=CLIENT_TIMEOUT)
    rnd = random.Random(seed)
    rounds, total, waits = 12, 0, []
    for i in range(rounds):
        msg = rnd.randbytes(1000 + i)
        t0 = time.monotonic()
        c.sendall(msg)
        try:
            got = read_exact(c, len(msg))
        except OSError as e:
            raise TestFailure("round %d of %d: no reply within %d s (%s); %s" % (
                i + 1, rounds, CLIENT_TIMEOUT, e, r.relay.describe()))
        check(got == msg, "round %d: the reply differs from the message" % (i + 1))
        waits.append(time.monotonic() - t0)
        total += len(msg)
    c.shutdown(socket.SHUT_WR)
    end, _, _ = wait_closed(c, CLOSE_DEADLINE)
    c.close()
    check(end == "eof", "the client saw %s, not EOF, after its last round" % end)
    tr = r.tgt.result(TARGET_TIMEOUT)
    check(tr.get("echoed") == total, "the target echoed %s of %d bytes" % (tr, total))
    r.check_faults(r.relay.planned())
    again = [l for l in r.stripe.stderr().splitlines() if "sent again on stream" in l]
    check(again, "no round went on the blackholed stream (no 'sent again' line in the "
          "stripe's log): the case tested nothing")
    r.check_same_session(0)
    check_released(*base)
    cpu = check_idle([r.stripe, r.join])
    return "%d rounds of about 1 KB, slowest %.1f s, %d over 0.5 s; stripe: %s; idle CPU " \
        "%.2f s" % (rounds, max(waits), sum(w > 0.5 for w in waits),
                   again[0].split(": ", 2)[2], cpu)


# ---- replays of a captured handshake -------------------------------------------

FLAG_REJOIN = 2


def split_capture(blob):
    """The HELLO and AUTH frames in what the relay captured of a
    connection's client side. Frames of other types are skipped (a capture of
    the client side holds no HELLO-ACK: that goes the other way)."""
    frames, off = {}, 0
    while off + 16 <= len(blob):
        t, _, _, ln, _ = struct.unpack("<BBHIQ", blob[off:off + 16])
        if off + 16 + ln > len(blob):
            break
        frames.setdefault(t, blob[off:off + 16 + ln])
        off += 16 + ln
    check(T_HELLO in frames and T_AUTH in frames,
          "the capture holds no HELLO and AUTH (%d bytes: %s)" % (len(blob), blob[:48].hex()))
    return frames[T_HELLO], frames[T_AUTH]


def read_capture(r, conn, timeout=10):
    path = os.path.join(r.env.logdir, "capture", "conn-%d.bin" % conn)

    def enough():
        try:
            return os.path.getsize(path) >= 16 + 56 + 16 + 32
        except OSError:
            return False
    check(wait_until(enough, timeout), "the relay captured no HELLO and AUTH of connection "
          "%d within %.0f s%s" % (conn, timeout, failover_missing() if conn >= STREAMS else ""))
    with open(path, "rb") as f:
        return split_capture(f.read())


def replay(r, hello, auth, label):
    """Sends a captured HELLO and AUTH, then a DATA frame, straight to the
    join side: it must refuse the stream (a log line, the refused count) and
    the target must see no new connection. Returns the refusal's log line."""
    before = counters(r.join)
    lost_before = [counters(p).get("streams_lost") for p in (r.stripe, r.join)]
    start = len(r.join.stderr())
    accepted = r.tgt.accepted
    s = r.env.connect(r.join.port, timeout=10)
    try:
        s.sendall(hello + auth + data_frame(0, b"REPLAYED BYTES " * 64))
    except OSError:
        pass                     # refused before it read it all
    end, _, _ = wait_closed(s, CLOSE_DEADLINE)
    s.close()
    check(end in ("eof", "reset"), "the %s replay was not closed within %.0f s (%s)"
          % (label, CLOSE_DEADLINE, end))
    lines = wait_until(lambda: [l for l in r.join.stderr()[start:].splitlines()
                                if "refused stream" in l], 2)
    check(lines, "no join log line refuses the %s replay; new stderr: %r"
          % (label, r.join.stderr()[start:][-400:]))
    after = counters(r.join)
    check(after.get("streams_refused", 0) == before.get("streams_refused", 0) + 1,
          "the join's streams refused went %s -> %s for the %s replay"
          % (stat(before, "streams_refused"), stat(after, "streams_refused"), label))
    if "rejoined" in before:
        check(after["rejoined"] == before["rejoined"],
              "the %s replay counted as a rejoin (%d -> %d)" % (label, before["rejoined"],
                                                                  after["rejoined"]))
    time.sleep(0.3)
    check(r.tgt.accepted == accepted, "the %s replay reached the target (%d connections)"
          % (label, r.tgt.accepted))
    # A REJOIN takes its index only once AUTH proves the key: a replay must
    # not close the live stream there.
    lost_after = [counters(p).get("streams_lost") for p in (r.stripe, r.join)]
    check(lost_after == lost_before, "the %s replay cost the session a stream: streams lost "
          "(stripe, join) %r -> %r" % (label, lost_before, lost_after))
    return lines[0].split("refused stream", 1)[1].strip()


def replay_case(mkenv, seed, conn, faults=()):
    """A session held open (the client sends its bytes but shuts its side
    only when told) while conn's captured handshake is replayed; then the
    end, the transfer checks, and the replay again."""
    size = 8 * MiB
    r = start(mkenv, seed, faults=faults, capture=True,
              handler=exchange_target(seed + 1, size))
    base = [Baseline(r.stripe), Baseline(r.join)]
    c = r.env.connect(r.stripe.port, timeout=CLIENT_TIMEOUT)
    gate = threading.Event()
    sender = Sender(c, Data(seed, size), after=lambda: gate.wait(60))
    sender.start()
    got = {}
    reader = threading.Thread(target=lambda: got.update(receive_all(c)), daemon=True)
    reader.start()
    hello, auth = read_capture(r, conn)
    flags = struct.unpack("<H", hello[22:24])[0]
    if conn >= STREAMS:
        check(flags & FLAG_REJOIN, "connection %d (a replacement) has no REJOIN flag in its "
              "HELLO (flags %#x)" % (conn, flags))
        # The capture holds its AUTH: the join takes the replacement a
        # moment later, and that rejoin is not the replay's.
        check(wait_until(lambda: counters(r.join).get("rejoined", 0) >= conn - STREAMS + 1, 10),
              "the join side did not take the replacement (connection %d)" % conn)
    check(wait_until(lambda: r.tgt.accepted >= 1, 10), "the session reached no target")
    active = counters(r.join).get("active")
    check(active == 1 and not sender.done.is_set(),
          "the session is not live at the replay (join active %s)" % active)
    live = replay(r, hello, auth, "live")
    gate.set()
    sender.join(CLIENT_TIMEOUT)
    reader.join(CLIENT_TIMEOUT)
    c.close()
    cr = dict(got, sent=sender.sent, sent_hash=sender.digest(), send_error=sender.error,
              send_done=sender.done.is_set())
    for key, value in (("end", None), ("len", 0), ("hash", "")):
        cr.setdefault(key, value)   # the reader had not finished
    try:
        tr = r.tgt.result(CLIENT_TIMEOUT)
    except TestFailure:
        tr = None
    errs = ["the session: %s" % e for e in
            (check_exchange("session", cr, tr, size, size) if tr else ["no target result"])]
    r.errors += errs
    r.fail_if_errors("the session beside the live replay was not intact")
    r.check_faults(r.relay.planned())
    r.check_same_session(len(faults))
    check_released(*base)
    after = replay(r, hello, auth, "after the end")
    check_released(*base)
    return "relay connection %d's HELLO (flags %#x) and AUTH replayed: live refused (%s), " \
        "after the end refused (%s); the target saw only the session's bytes" % (
            conn, flags, live, after)


def t_replay_first(mkenv):
    """The first stream's captured HELLO and AUTH (with a key)."""
    return replay_case(mkenv, SEED + 30, 0)


def t_replay_rejoin(mkenv):
    """A replacement stream's captured REJOIN HELLO and AUTH: relay
    connection 1 is reset 1 MiB in, the stripe side opens connection 4."""
    return replay_case(mkenv, SEED + 40, STREAMS, faults=[(1, "reset", 1 * MiB)])


def tests():
    t = 150 if SANITIZE else 120
    return [
        ("failover: no fault, through the relay -> intact both ways, nothing lost",
         t_baseline, t),
        ("failover: one stream reset at a random point -> intact, same session",
         lambda mk: t_one(mk, "reset", 1), t),
        ("failover: one stream stalled (open, nothing forwarded) -> intact, same session",
         lambda mk: t_one(mk, "stall", 2), t),
        ("failover: one stream blackholed (read and dropped) -> intact, same session",
         lambda mk: t_one(mk, "blackhole", 3), t),
        ("failover: streams cut one after another, a replacement too -> intact, same session",
         t_cascade, t),
        ("failover: all streams but one cut -> intact, same session", t_all_but_one, t),
        ("failover: a stream reset before the join side has every stream -> intact, same "
         "session", t_lost_before_start, t),
        ("failover: a stream's AUTH swallowed (blackhole after its HELLO-ACK) -> the join "
         "side starts without it at its handshake timeout; intact, same session",
         t_auth_swallowed, t),
        ("failover: request and reply, one stream blackholed quietly -> every reply comes",
         t_quiet_blackhole, t),
        ("failover: a stream's captured HELLO+AUTH replayed live and after the end -> refused",
         t_replay_first, 60),
        ("failover: a replacement's captured REJOIN replayed live and after the end -> refused",
         t_replay_rejoin, 60),
    ]
