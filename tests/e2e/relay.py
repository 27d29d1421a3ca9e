# SPDX-License-Identifier: MIT
"""The fault-injecting relay (tests/tools/faultrelay.c) as a harness process,
and the chain client -> stripe -> relay -> join -> target that the failover
cases run. Standard library only."""

import atexit
import os
import re
import shutil
import signal
import tempfile
import time

from harness import HOST, ROOT, TestFailure, check

# The relay is a test tool of the plain build (make builds it into build/),
# also when the proxies under test are the sanitizer build's (E2E_BUILD).
FAULTRELAY = os.path.join(ROOT, os.environ.get("BUILD", "build"), "faultrelay")
_snapshot = None

EVENT = re.compile(r"^conn (\d+) (accepted|closed|resumed|fault (\w+) at (\d+)|error: .*|"
                   r"connect failed: .*)$", re.M)


def binary():
    """A private copy of the relay: the build folder may be rebuilt while a
    suite runs (as run.py does for the binaries under test)."""
    global _snapshot
    if _snapshot is None:
        if not os.access(FAULTRELAY, os.X_OK):
            raise TestFailure("not built: %s (run make)" % FAULTRELAY)
        d = tempfile.mkdtemp(prefix="agentmux-e2e-relay-")
        atexit.register(shutil.rmtree, d, True)
        _snapshot = os.path.join(d, "faultrelay")
        shutil.copy2(FAULTRELAY, _snapshot)
    return _snapshot


class Relay:
    """A running faultrelay: its port and what it printed."""

    def __init__(self, proc, port):
        self.proc = proc
        self.port = port

    def events(self):
        """[(conn, what, kind, at)] in the order printed; what is 'accepted',
        'closed', 'resumed', 'fault', 'error' or 'connect failed'."""
        out = []
        for m in EVENT.finditer(self.proc.stdout()):
            what = m.group(2)
            if what.startswith("fault"):
                out.append((int(m.group(1)), "fault", m.group(3), int(m.group(4))))
            else:
                out.append((int(m.group(1)), what.split(":")[0], None, None))
        return out

    def planned(self):
        """[(conn, kind, at)] the relay planned (its 'plan' lines)."""
        return [(int(c), k, int(a)) for c, k, a in
                re.findall(r"^plan conn (\d+) (\w+) at (\d+)$", self.proc.stdout(), re.M)]

    def faults_hit(self):
        """[(conn, kind, at)] of the faults applied so far."""
        return [(c, k, a) for c, w, k, a in self.events() if w == "fault"]

    def accepted(self):
        return sum(1 for _, w, _, _ in self.events() if w == "accepted")

    def conn_bytes(self, timeout=3.0):
        """{conn: (state, up, down)} of the connections it still holds (SIGUSR1)."""
        start = len(self.proc.stdout())
        self.proc.signal(signal.SIGUSR1)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            out = self.proc.stdout()[start:]
            if re.search(r"^held \d+$", out, re.M):
                return {int(c): (s, int(u), int(d)) for c, s, u, d in
                        re.findall(r"^conn (\d+) (\w+) up (\d+) down (\d+)$", out, re.M)}
            time.sleep(0.02)
        return {}

    def describe(self):
        """One line for a failure message: faults planned and hit, bytes."""
        held = self.conn_bytes()
        return "relay: planned %s; hit %s; %d connections accepted; held now %s" % (
            self.planned(), self.faults_hit(), self.accepted(),
            ", ".join("conn %d %s up %d down %d" % ((c,) + v) for c, v in sorted(held.items()))
            or "none")


def start(env, upstream_port, faults=(), random_faults=None, capture=None, delay_ms=None):
    """Starts faultrelay in env towards upstream_port. faults: [(conn,
    kind, at)]; random_faults: (count, kind, seed, span[, among]); capture:
    a folder for conn-N.bin; delay_ms: how long a delay fault holds."""
    argv = [binary(), "--listen", "%s:0" % HOST, "--upstream", "%s:%d" % (HOST, upstream_port)]
    if delay_ms is not None:
        argv += ["--delay-ms", str(delay_ms)]
    for conn, kind, at in faults:
        argv += ["--fault", "%d:%s:%d" % (conn, kind, at)]
    if random_faults:
        count, kind, seed, span = random_faults[:4]
        argv += ["--random-faults", "%d:%s" % (count, kind), "--seed", str(seed),
                 "--span", str(span)]
        if len(random_faults) > 4:
            argv += ["--among", str(random_faults[4])]
    if capture:
        # A capture left by an earlier run (another key) must not pass for
        # this one's: the relay truncates each file only when its
        # connection comes.
        shutil.rmtree(capture, ignore_errors=True)
        os.makedirs(capture)
        argv += ["--capture", capture]
    p = env.proc("faultrelay", argv)
    out = p.wait_for("listening ", timeout=10)
    m = re.search(r"^listening (\d+)$", out, re.M)
    check(m, "faultrelay printed no port: %r" % out[-300:])
    p.port = int(m.group(1))
    return Relay(p, p.port)


def chain(env, handler, join_flags=(), stripe_flags=(), **relay_kw):
    """target(handler) <- join <- relay <- stripe. Returns (target, join,
    relay, stripe)."""
    tgt = env.target(handler)
    join = env.join(tgt.port, *join_flags)
    relay = start(env, join.port, **relay_kw)
    stripe = env.stripe(relay.port, *stripe_flags)
    return tgt, join, relay, stripe
