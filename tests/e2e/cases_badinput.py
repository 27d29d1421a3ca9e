# SPDX-License-Identifier: MIT
"""Bad input on the join port. Each case runs beside a good session (a paced
transfer started before and verified intact after) on one join process that
has a key (--key-file) and a short --handshake-timeout; the join must close
the bad connection within a deadline, log the reason, and keep serving. Then
memory: VmRSS after the barrage and after 200 half-open handshakes, and the
reorder budget under out-of-order DATA (backpressure)."""

import atexit
import hashlib
import os
import random
import socket
import threading
import time

from harness import (LOGDIR, SANITIZE, KiB, MiB, MAX_PAYLOAD, T_DATA, T_HELLO, Data, Env, Sender,
                     TestFailure, auth_frame, check, comment, data_frame, describe_end,
                     exchange, fin_frame, handshake, header, hello_frame, receive_all,
                     wait_closed)
from probes import sender_stalled

CLOSE_DEADLINE = 5.0
HANDSHAKE_MS = 300
RSS_LIMIT_KIB = 64 * 1024
if SANITIZE:
    # ASan keeps freed memory in its quarantine (256 MiB by default) before
    # reusing it: the bound still catches growth without end.
    RSS_LIMIT_KIB += 256 * 1024
GOOD_PACE = 0.004       # s between 1 MiB/16 blocks of the good session
SENDER_GRACE = 3.0      # s a target's sender may take to end after the peer's EOF


def new_sid():
    return random.getrandbits(63) | 1


class Bed:
    """One join (key, short handshake timeout), a stripe with the same key,
    and a target; shared by the bad-input cases so memory is measured after
    the whole barrage."""

    def __init__(self):
        self.env = Env("bad-input-bed", LOGDIR)
        atexit.register(self.env.cleanup)
        self.key = os.urandom(16).hex().encode()
        self.other_key = os.urandom(16).hex().encode()
        self.key_path = os.path.join(self.env.logdir, "key")
        with open(self.key_path, "wb") as f:
            f.write(self.key + b"\n")
        self.senders = []  # the target's Sender of each connection, in order
        self.tgt, self.join, self.stripe = self.env.chain(
            self.good_handler,
            join_flags=("--key-file", self.key_path, "--handshake-timeout", str(HANDSHAKE_MS)),
            stripe_flags=("--key-file", self.key_path))
        self.seed = 50000

    def good_handler(self, c, results):
        """Sends a paced endless stream until the client's EOF, then
        half-closes; reports what it read and sent.

        The report does not wait for a sender that cannot finish: a forged
        session's streams are never read, so the join's sends on them back
        up and it stops reading the target (backpressure), leaving the
        sender blocked in sendall for good. Past SENDER_GRACE the write side
        is shut, which ends that sendall (EPIPE), and the report says
        send_blocked. (It waited 30 s for the sender, longer than the cases
        wait for a report: once the target of a forged session had sent
        more than the join and the kernel buffers take in front of streams
        nobody reads, 8.8 MB here, its read side, correct, came too late.)"""
        stop = threading.Event()
        s = Sender(c, Data(random.getrandbits(40), None, block=64 * KiB), stop=stop,
                   pace=GOOD_PACE)
        self.senders.append(s)
        s.start()
        r = receive_all(c)
        stop.set()
        s.join(SENDER_GRACE)
        blocked = s.is_alive()
        if blocked:
            try:
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            s.join(5)
        r.update(sent=s.sent, sent_hash=s.digest(), send_error=s.error, send_blocked=blocked)
        c.close()
        results.put(r)

    def sender_after(self, n, timeout=10):
        """The target's Sender of the first connection after the n-th."""
        t0 = time.monotonic()
        while len(self.senders) <= n:
            check(time.monotonic() - t0 < timeout, "no target connection within %.0f s"
                  % timeout)
            time.sleep(0.02)
        return self.senders[n]

    def good_session(self):
        self.seed += 1
        return GoodSession(self, self.seed)

    def close(self):
        self.env.cleanup()


_bed = None


def bed():
    global _bed
    if _bed is None or not _bed.join.alive() or not _bed.stripe.alive():
        if _bed is not None:
            comment("a previous case left the bad-input bed broken: starting a new one")
            _bed.close()
        _bed = Bed()
    return _bed


class GoodSession:
    """A paced endless exchange through stripe -> join -> target."""

    def __init__(self, b, seed):
        self.b = b
        self.data = Data(seed, None, block=64 * KiB)
        self.c = b.env.connect(b.stripe.port, timeout=30)
        self.stop = threading.Event()
        self.got = 0
        self.box = {}
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        self.box["r"] = exchange(self.c, self.data, stop=self.stop, pace=GOOD_PACE,
                                 on_bytes=lambda n: setattr(self, "got", n))

    def logs(self):
        out = []
        for p in (self.b.stripe, self.b.join):
            lines = p.stderr().splitlines()[-3:]
            out.append("%s stderr (last lines):\n  %s" % (p.name, "\n  ".join(lines)))
        return "\n".join(out)

    def wait_moving(self, n=256 * KiB, timeout=20):
        t0 = time.monotonic()
        while self.got < n:
            if not (time.monotonic() - t0 < timeout and self.th.is_alive()):
                time.sleep(0.2)
                raise TestFailure("the good session did not get going (%d bytes back, "
                                  "client read ended by %s)\n%s"
                                  % (self.got, describe_end(self.box.get("r", {}).get("end")),
                                     self.logs()))
            time.sleep(0.02)

    def finish(self):
        """Ends the session cleanly; checks both directions intact."""
        self.stop.set()
        self.th.join(30)
        check(not self.th.is_alive(), "the good session did not end within 30 s of the "
              "client's half-close")
        r = self.box["r"]
        hdr = self.data.header()[:8]
        try:
            tr = self.b.tgt.result(20, match=lambda x: x.get("first", b"")[:8] == hdr)
        except TestFailure:
            raise TestFailure("the good session beside it broke: the target never finished "
                              "it; client read %d bytes, ended by %s, send error %s"
                              % (r["len"], describe_end(r["end"]), r["send_error"]))
        errs = []
        if r["send_error"] or tr.get("send_error"):
            errs.append("send errors: client %s, target %s" % (r["send_error"],
                                                                tr.get("send_error")))
        if r["end"] != "eof" or tr["end"] != "eof":
            errs.append("reads ended by client %s, target %s" % (describe_end(r["end"]),
                                                                  describe_end(tr["end"])))
        if tr["len"] != r["sent"] or tr["hash"] != r["sent_hash"]:
            errs.append("client->target differs: %d bytes sent, %d received" % (r["sent"],
                                                                                tr["len"]))
        if r["len"] != tr["sent"] or r["hash"] != tr["sent_hash"]:
            errs.append("target->client differs: %d bytes sent, %d received" % (tr["sent"],
                                                                                r["len"]))
        check(not errs, "the good session beside it broke: " + "; ".join(errs) + "\n"
              + self.logs())
        return r["sent"], r["len"]


def wait_log(proc, start, words, timeout=3.0):
    t0 = time.monotonic()
    while True:
        log = proc.stderr()[start:]
        lines = [l for l in log.splitlines() if all(w in l for w in words)]
        if lines:
            return lines[0]
        if time.monotonic() - t0 > timeout:
            raise TestFailure("no join log line with %r; new join stderr: %r"
                              % (words, log[-600:]))
        time.sleep(0.05)


def bad_case(mkenv, payload, words, hold=None):
    """Sends payload(bed) on a fresh connection to the join port beside a
    good session; the join must close it and log words."""
    b = bed()
    good = b.good_session()
    good.wait_moving()
    start = len(b.join.stderr())
    s = b.env.connect(b.join.port, timeout=10)
    data = payload(b)
    if isinstance(data, AfterHandshake):
        handshake(s, new_sid(), 0, 1, key=b.key)
        data = data.rest
    t_sent = time.monotonic()
    try:
        s.sendall(data)
    except OSError as e:
        comment("send of the bad input: %s" % e)
    end, dt, got = wait_closed(s, CLOSE_DEADLINE)
    s.close()
    check(end in ("eof", "reset"), "the join did not close the connection within %.0f s "
          "(%s)" % (CLOSE_DEADLINE, end))
    line = wait_log(b.join, start, words)
    time.sleep(0.2)
    check(b.join.alive(), "the join process died")
    up, down = good.finish()
    return "closed (%s) after %.2f s; log: %s; good session %d/%d bytes intact" % (
        end, dt, line.strip(), up, down)


def hello1(b, **kw):
    """A valid HELLO of a 1-stream session (the session starts at once)."""
    return hello_frame(new_sid(), 0, 1, key=b.key, **kw)


class AfterHandshake:
    """Bytes to send once a valid handshake (HELLO, HELLO-ACK, AUTH) of a
    1-stream session is done on the connection."""

    def __init__(self, rest):
        self.rest = rest


CASES = [
    ("garbage bytes", lambda b: b"GET / HTTP/1.1\r\nHost: agentmux\r\n\r\n" + os.urandom(200),
     ["refused stream", "bad frame"]),
    ("wrong magic", lambda b: hello1(b, magic=0x41414141), ["wrong magic"]),
    ("a v1 HELLO (replayable: refused, naming the versions)",
     lambda b: hello1(b, version=1, min_version=0), ["speaks wire versions 1..1"]),
    ("HELLO speaking only newer versions", lambda b: hello1(b, version=9, min_version=7),
     ["speaks wire versions 7..9"]),
    ("bad HMAC (signed with another key)",
     lambda b: hello_frame(new_sid(), 0, 1, key=b.other_key), ["authentication"]),
    ("missing HMAC (no auth flag, zero tag)",
     lambda b: hello_frame(new_sid(), 0, 1, key=None), ["authentication"]),
    ("HMAC of a different HELLO (tag replayed onto another session id)",
     lambda b: hello_frame(new_sid(), 0, 1, key=b.key)[:40]
     + hello_frame(new_sid(), 0, 1, key=b.key)[40:], ["authentication"]),
    ("frame length over the maximum in the handshake",
     lambda b: header(T_HELLO, MAX_PAYLOAD + 1) + bytes(100), ["over the maximum"]),
    ("DATA length over the maximum after a valid handshake",
     lambda b: AfterHandshake(header(T_DATA, MAX_PAYLOAD + 1, 0) + bytes(1000)),
     ["over the maximum"]),
    ("DATA seq outside the window (1<<40)",
     lambda b: AfterHandshake(data_frame(1 << 40, os.urandom(100))), ["outside the window"]),
    ("DATA where AUTH belongs (the handshake skipped)",
     lambda b: hello1(b) + data_frame(0, os.urandom(100)), ["not AUTH"]),
    ("AUTH signed with another key",
     lambda b: hello1(b) + auth_frame(hello1(b), bytes(32), b.other_key), ["AUTH does not prove"]),
    ("HELLO that never completes (handshake timeout)",
     lambda b: hello1(b)[:36], ["handshake timeout"]),
]


def make_case(payload, words):
    return lambda mkenv: bad_case(mkenv, payload, words)


def t_duplicate_across_streams(mkenv):
    """A forged 2-stream session where both streams carry a DATA seq 1 (seq 0
    held back), and seq 0 comes twice: copies are expected once streams can be
    lost (frames are sent again), so the join drops them. The target gets the
    first copy of each frame, exactly once, and the session stays up.

    The streams are never read: the target's endless stream backs up in the
    join's sends on them, and the FINs come once the join has stopped
    reading the target (its sender stalled), every time: the way in ends
    while the way out is held up."""
    b = bed()
    good = b.good_session()
    good.wait_moving()
    sid = new_sid()
    s0 = b.env.connect(b.join.port, timeout=10)
    s1 = b.env.connect(b.join.port, timeout=10)
    handshake(s0, sid, 0, 2, key=b.key)
    p0, p1 = b"\x00" * 16 + os.urandom(700), os.urandom(500)
    s0.sendall(data_frame(1, p1))
    n = len(b.senders)
    handshake(s1, sid, 1, 2, key=b.key)
    tsend = b.sender_after(n)
    time.sleep(0.3)
    s1.sendall(data_frame(1, os.urandom(500)))  # a copy of a held frame
    s1.sendall(data_frame(0, p0))
    time.sleep(0.3)
    s0.sendall(data_frame(0, os.urandom(700)))  # a copy of a delivered frame
    stalled = sender_stalled(tsend, 0.5, 20) and not tsend.done.is_set()
    check(stalled, "the join kept reading the target (%d bytes) though the session's streams "
          "are never read" % tsend.sent)
    for s in (s0, s1):
        s.sendall(fin_frame(2))
    tr = b.tgt.result(20, match=lambda x: x.get("first", b"") == b"\x00" * 16)
    want = hashlib.sha256(p0 + p1).hexdigest()
    check(tr["len"] == len(p0) + len(p1) and tr["hash"] == want,
          "the target got %d bytes (want %d, the first copy of each frame once)"
          % (tr["len"], len(p0) + len(p1)))
    check(tr["end"] == "eof", "the target's read ended by %s" % describe_end(tr["end"]))
    ends = [wait_closed(s, 0.5)[0] for s in (s0, s1)]
    check(all(e == "timeout" for e in ends), "the join closed the streams over copies: %r"
          % ends)
    check(b.join.alive(), "the join process died")
    up, down = good.finish()
    for s in (s0, s1):
        s.close()
    return ("copies dropped, %d bytes to the target (its %d bytes back held up); good "
            "session %d/%d bytes intact" % (tr["len"], tr["sent"], up, down))


def t_replayed_handshake(mkenv):
    """A keyed session's HELLO and AUTH, captured and replayed on new
    connections while the session lives and after it ended, open nothing:
    each replay is refused (its AUTH proves another nonce) and the target
    never sees a connection or a byte of it."""
    b = bed()
    start = len(b.join.stderr())
    accepted0 = b.tgt.accepted
    sid = new_sid()
    s = b.env.connect(b.join.port, timeout=10)
    hello, _, auth = handshake(s, sid, 0, 1, key=b.key)
    s.sendall(data_frame(0, b"the legitimate session's bytes"))
    check(wait_until_accepted(b.tgt, accepted0 + 1), "the legitimate session reached no target")

    def replay(label):
        r = b.env.connect(b.join.port, timeout=10)
        before = b.tgt.accepted
        try:
            r.sendall(hello + auth + data_frame(0, b"REPLAYED BYTES"))
        except OSError:
            pass
        end, _, _ = wait_closed(r, CLOSE_DEADLINE)
        r.close()
        check(end in ("eof", "reset"), "the %s replay was not closed within %.0f s (%s)"
              % (label, CLOSE_DEADLINE, end))
        time.sleep(0.3)
        check(b.tgt.accepted == before, "the %s replay reached the target" % label)

    replay("live")
    s.sendall(fin_frame(1))
    s.shutdown(socket.SHUT_WR)
    wait_closed(s, 20)
    s.close()
    replay("after the end")
    log = b.join.stderr()[start:]
    n = log.count("AUTH does not prove")
    check(n == 2, "%d join log lines name the failed AUTH for 2 replays; new stderr %r"
          % (n, log[-600:]))
    check(b.join.alive(), "the join process died")
    return "2 replays refused, the target saw neither"


def wait_until_accepted(tgt, n, timeout=10):
    t0 = time.monotonic()
    while tgt.accepted < n and time.monotonic() - t0 < timeout:
        time.sleep(0.02)
    return tgt.accepted >= n


def rss_line(p):
    return "%d KiB" % p.rss_kib()


def t_rss_after_barrage(mkenv):
    b = bed()
    rss = b.join.rss_kib()
    check(rss < RSS_LIMIT_KIB, "join VmRSS %d KiB after the bad-input barrage (limit %d KiB)"
          % (rss, RSS_LIMIT_KIB))
    return "join VmRSS %d KiB" % rss


def t_half_open_handshakes(mkenv, n=200):
    """n connections each send half a HELLO and wait: all closed by the
    handshake timeout, RSS bounded, a good session beside unharmed."""
    b = bed()
    good = b.good_session()
    good.wait_moving()
    start = len(b.join.stderr())
    socks = []
    for i in range(n):
        s = b.env.connect(b.join.port, timeout=10)
        s.sendall(hello_frame(new_sid(), 0, 2, key=b.key)[:40])
        socks.append(s)
    peak = b.join.rss_kib()
    t0 = time.monotonic()
    open_ = list(socks)
    deadline = HANDSHAKE_MS / 1000 + 10
    for s in socks:
        end, _, _ = wait_closed(s, max(0.1, deadline - (time.monotonic() - t0)))
        if end in ("eof", "reset"):
            open_.remove(s)
        peak = max(peak, b.join.rss_kib())
        s.close()
    check(not open_, "%d of %d half-open handshakes still open %.0f s after the handshake "
          "timeout" % (len(open_), n, deadline))
    timeouts = b.join.stderr()[start:].count("handshake timeout")
    check(timeouts >= n, "%d 'handshake timeout' log lines for %d half-open handshakes"
          % (timeouts, n))
    rss = b.join.rss_kib()
    check(max(rss, peak) < RSS_LIMIT_KIB, "join VmRSS %d KiB (peak %d KiB) with %d half-open "
          "handshakes (limit %d KiB)" % (rss, peak, n, RSS_LIMIT_KIB))
    check(b.join.alive(), "the join process died")
    up, down = good.finish()
    return "all %d closed; join VmRSS %d KiB (peak %d KiB); good session intact" % (n, rss, peak)


def t_bed_done(mkenv):
    """Stops the shared join and stripe: both exit cleanly on SIGTERM."""
    global _bed
    b = bed()
    rc_j = b.join.stop()
    rc_s = b.stripe.stop()
    err = b.join.stderr()
    b.close()
    _bed = None
    check(rc_j == 0 and rc_s == 0, "exit status join %s stripe %s" % (rc_j, rc_s))
    check("stats[join]" in b.join.stdout(), "join printed no counters on exit")
    return "join logged %d refused streams" % err.count("refused stream")


# ---- the reorder budget ---------------------------------------------------------

class Pusher(threading.Thread):
    """Sends frames on a socket until done or `stop`; counts bytes accepted
    by the kernel, and when the last progress was."""

    def __init__(self, sock, frames):
        super().__init__(daemon=True)
        self.sock, self.frames = sock, frames
        self.sent = 0
        self.last = time.monotonic()
        self.error = None
        self.done = False
        self.stop = threading.Event()

    def run(self):
        self.sock.settimeout(0.2)
        try:
            for f in self.frames:
                mv = memoryview(f)
                while mv:
                    if self.stop.is_set():
                        return
                    try:
                        k = self.sock.send(mv)
                    except socket.timeout:
                        continue
                    mv = mv[k:]
                    self.sent += k
                    self.last = time.monotonic()
            self.done = True
        except OSError as e:
            self.error = e


def wait_stalled(p, quiet=1.0, timeout=15):
    t0 = time.monotonic()
    while not p.done and p.error is None and time.monotonic() - p.last < quiet:
        if time.monotonic() - t0 > timeout:
            break
        time.sleep(0.05)


def reorder_bed(env):
    def target(c, results):
        r = receive_all(c)
        c.close()
        results.put(r)
    tgt, join, stripe = env.chain(target, join_flags=("--reorder-budget", "1M",
                                                      "--handshake-timeout", "30000"))
    # Warm up: every receive buffer and pooled block of the join is touched,
    # so the baseline below is the steady state.
    c = env.connect(stripe.port)
    r = exchange(c, Data(60000, 48 * MiB))
    c.close()
    tgt.result(20)
    check(r["send_error"] is None and r["end"] == "eof", "the warm-up session failed: %s %s"
          % (r["send_error"], describe_end(r["end"])))
    time.sleep(0.3)
    return tgt, join


FRAME = 64 * KiB
TOTAL = 20 * MiB


def ooo_frames(payloads):
    for i in range(1, len(payloads)):
        yield data_frame(i, payloads[i])


def t_reorder_budget(mkenv):
    """2-stream session; stream 0 sends DATA seq 1, 2, 3... (20 MiB) while
    seq 0 (stream 1) is held back: the join must stop reading stream 0 and
    hold at most the budget (1 MiB). Then seq 0 comes and everything must
    arrive in order."""
    env = mkenv()
    tgt, join = reorder_bed(env)
    base = join.rss_kib()
    sid = new_sid()
    nframes = TOTAL // FRAME
    payloads = [os.urandom(FRAME) for _ in range(nframes + 1)]
    s0 = env.connect(join.port)
    s1 = env.connect(join.port)
    handshake(s0, sid, 0, 2)
    handshake(s1, sid, 1, 2)
    p = Pusher(s0, ooo_frames(payloads))
    p.start()
    wait_stalled(p)
    time.sleep(0.5)
    rss = join.rss_kib()
    grew = rss - base
    comment("  kernel accepted %d MiB of %d MiB; join VmRSS %d -> %d KiB"
            % (p.sent // MiB, TOTAL // MiB, base, rss))
    check(p.error is None, "the join closed the stream under backpressure: %s; join stderr: %r"
          % (p.error, join.stderr()[-400:]))
    limit = 1024 + 8 * 1024
    check(grew < limit, "join VmRSS grew by %d KiB holding out-of-order DATA with "
          "--reorder-budget 1M (limit budget + 8 MiB slack = %d KiB); it read %s"
          % (grew, limit, "everything" if p.done else "%d MiB" % (p.sent // MiB)))
    check(not p.done, "the join read all %d MiB of out-of-order DATA (no backpressure)"
          % (TOTAL // MiB))
    # seq 0 arrives: the rest must flow, in order.
    s1.sendall(data_frame(0, payloads[0]))
    p.join(30)
    check(p.done, "after seq 0 arrived stream 0 was still not drained (%d of %d MiB, %s)"
          % (p.sent // MiB, TOTAL // MiB, p.error))
    s0.settimeout(10)
    s0.sendall(fin_frame(nframes + 1))
    s1.sendall(fin_frame(nframes + 1))
    tr = tgt.result(20)
    import hashlib
    h = hashlib.sha256()
    for x in payloads:
        h.update(x)
    check(tr["end"] == "eof" and tr["len"] == len(payloads) * FRAME and tr["hash"] == h.hexdigest(),
          "the target got %d of %d bytes (sha256 %s), ended by %s" % (
              tr["len"], len(payloads) * FRAME, "ok" if tr["hash"] == h.hexdigest() else "differs",
              describe_end(tr["end"])))
    check(join.alive(), "the join process died")
    return "VmRSS +%d KiB while blocked; %d MiB delivered in order afterwards" % (
        grew, tr["len"] // MiB)


def t_incomplete_session_budget(mkenv):
    """1 stream of a 2-stream session (the other never comes) sends 20 MiB
    of DATA seq 1, 2, 3...: the join must not buffer it all."""
    env = mkenv()
    tgt, join = reorder_bed(env)
    base = join.rss_kib()
    s0 = env.connect(join.port)
    handshake(s0, new_sid(), 0, 2)
    payload = os.urandom(FRAME)
    p = Pusher(s0, (data_frame(i, payload) for i in range(1, TOTAL // FRAME + 1)))
    p.start()
    wait_stalled(p)
    time.sleep(0.5)
    rss = join.rss_kib()
    grew = rss - base
    p.stop.set()
    comment("  kernel accepted %d MiB of %d MiB; join VmRSS %d -> %d KiB"
            % (p.sent // MiB, TOTAL // MiB, base, rss))
    limit = 1024 + 8 * 1024
    check(grew < limit, "join VmRSS grew by %d KiB for an incomplete session's DATA "
          "(limit budget + 8 MiB slack = %d KiB); it read %s"
          % (grew, limit, "everything" if p.done else "%d MiB" % (p.sent // MiB)))
    check(not p.done, "the join read all %d MiB of an incomplete session's DATA" % (TOTAL // MiB))
    check(join.alive(), "the join process died")
    return "VmRSS +%d KiB" % grew


def vm_kib(p, field):
    with open("/proc/%d/status" % p.pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise TestFailure("no %s for %s" % (field, p.name))


def t_peak_rss_one_session(mkenv, size=64 * MiB, limit_mib=96):
    """One 64 MiB both-ways session with --reorder-budget 1M --send-buffer
    256K: neither side's peak RSS (VmHWM) may pass the receive buffers
    (--buffers 512 x 64 KiB = 32 MiB) + the block pool (16 MiB) + the budget
    and queues + slack = 96 MiB."""
    from cases_traffic import check_exchange, exchange_target
    env = mkenv()
    flags = ("--reorder-budget", "1M", "--send-buffer", "256K")
    tgt, join, stripe = env.chain(exchange_target(61000, size), join_flags=flags,
                                  stripe_flags=flags)
    c = env.connect(stripe.port)
    r = exchange(c, Data(61001, size))
    tr = tgt.result(30)
    errs = check_exchange("session", r, tr, size, size)
    check(not errs, "\n".join(errs))
    peaks = {p.name: vm_kib(p, "VmHWM") for p in (join, stripe)}
    over = ["%s peak VmHWM %d MiB" % (n, k // 1024) for n, k in peaks.items()
            if k > limit_mib * 1024]
    check(not over, "%s for one session with %s (limit %d MiB)"
          % ("; ".join(over), " ".join(flags), limit_mib))
    return ", ".join("%s %d MiB" % (n, k // 1024) for n, k in peaks.items())


def tests():
    out = []
    for name, payload, words in CASES:
        out.append(("bad input: %s -> closed, logged, good session intact" % name,
                    make_case(payload, words), 90))
    out.append(("bad input: copies of DATA seqs (held and delivered) dropped, delivered once",
                t_duplicate_across_streams, 90))
    out.append(("bad input: a captured HELLO + AUTH replayed, live and after the end -> "
                "refused, the target sees nothing", t_replayed_handshake, 90))
    out.append(("memory: join VmRSS < 64 MiB after the bad-input barrage", t_rss_after_barrage, 30))
    out.append(("memory: 200 half-open handshakes all time out, VmRSS < 64 MiB",
                t_half_open_handshakes, 90))
    out.append(("bad input: join exits cleanly afterwards", t_bed_done, 30))
    out.append(("memory: out-of-order DATA past --reorder-budget 1M -> backpressure, "
                "then in order", t_reorder_budget, 120))
    out.append(("memory: peak RSS of join and stripe for one 64 MiB session with "
                "--reorder-budget 1M --send-buffer 256K < 96 MiB", t_peak_rss_one_session, 120))
    out.append(("memory: incomplete session's DATA is not buffered without bound",
                t_incomplete_session_budget, 120))
    return out
