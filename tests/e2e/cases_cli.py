# SPDX-License-Identifier: MIT
"""The agentproxy command line: --help, bad and missing flags, the startup
line naming the event source, SIGUSR1 counters."""

import signal
import subprocess
import time

import harness
from harness import HOST, check, free_port

FLAGS = ["--listen", "--peer", "--target", "--streams", "--chunk", "--key-file", "--events",
         "--reorder-budget", "--send-buffer", "--handshake-timeout", "--data-path", "--congestion",
         "--connect-timeout", "--idle-timeout", "--linger-timeout", "--max-sessions",
         "--max-pending", "--max-memory", "--keepalive"]


def run(args, timeout=15):
    return subprocess.run([harness.AGENTPROXY] + args, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def t_help(mkenv):
    r = run(["--help"])
    out = r.stdout.decode("utf-8", "replace")
    check(r.returncode == 0, "agentproxy --help exited %d" % r.returncode)
    missing = [f for f in FLAGS if f not in out]
    check(not missing, "agentproxy --help does not mention %s" % " ".join(missing))


def t_sub_help(mkenv):
    errs = []
    for sub, want in (("stripe", ["--peer", "--streams"]),
                      ("join", ["--target", "--max-pending"])):
        r = run([sub, "--help"])
        out = r.stdout.decode("utf-8", "replace")
        common = ["--listen", "--key-file", "--events", "--reorder-budget", "--send-buffer",
                  "--handshake-timeout", "--connect-timeout", "--idle-timeout",
                  "--linger-timeout", "--max-sessions", "--max-memory", "--chunk",
                  "--long-path-chunk"]
        missing = [f for f in common + want if f not in out]
        if r.returncode != 0 or missing:
            errs.append("agentproxy %s --help: exit %d, missing %s" % (sub, r.returncode,
                                                                       missing))
    check(not errs, "; ".join(errs))


def t_bad_flag(mkenv):
    errs = []
    lp, pp = free_port(), free_port()
    for args in (["stripe", "--listen", "%s:%d" % (HOST, lp), "--peer", "%s:%d" % (HOST, pp),
                  "--no-such-flag"],
                 ["join", "--listen", "%s:%d" % (HOST, lp), "--target", "%s:%d" % (HOST, pp),
                  "--streams-typo", "3"],
                 ["stripe", "--listen", "%s:%d" % (HOST, lp), "--peer", "%s:%d" % (HOST, pp),
                  "--streams", "banana"],
                 ["stripe", "--listen", "%s:%d" % (HOST, lp), "--peer", "%s:%d" % (HOST, pp),
                  "--events", "carrier-pigeon"],
                 ["join", "--listen", "%s:%d" % (HOST, lp), "--target", "%s:%d" % (HOST, pp),
                  "--congestion", "no-such-cc"],
                 ["join", "--listen", "%s:%d" % (HOST, lp), "--target", "%s:%d" % (HOST, pp),
                  "--max-pending", "0"],
                 ["stripe", "--listen", "%s:%d" % (HOST, lp), "--peer", "%s:%d" % (HOST, pp),
                  "--idle-timeout", "-1"],
                 ["stripe", "--listen", "%s:%d" % (HOST, lp), "--peer", "%s:%d" % (HOST, pp),
                  "--linger-timeout", "0"],
                 ["stripe", "--listen", "%s:%d" % (HOST, lp), "--peer", "%s:%d" % (HOST, pp),
                  "--max-memory", "1K"],
                 ["frobnicate"]):
        r = run(args)
        err = r.stderr.decode("utf-8", "replace")
        if r.returncode != 2 or "usage" not in err.lower():
            errs.append("agentproxy %s: exit %d (want 2), usage on stderr: %s; stderr %r"
                        % (" ".join(args), r.returncode, "usage" in err.lower(), err[:200]))
    check(not errs, "\n".join(errs))


def t_missing_flag(mkenv):
    errs = []
    lp, pp = free_port(), free_port()
    for args in (["stripe", "--listen", "%s:%d" % (HOST, lp)],
                 ["join", "--listen", "%s:%d" % (HOST, lp)],
                 ["stripe", "--peer", "%s:%d" % (HOST, pp)],
                 ["join", "--target", "%s:%d" % (HOST, pp)],
                 []):
        r = run(args)
        err = r.stderr.decode("utf-8", "replace")
        if r.returncode != 2 or not err.strip():
            errs.append("agentproxy %s: exit %d (want 2), stderr %r"
                        % (" ".join(args), r.returncode, err[:200]))
    check(not errs, "\n".join(errs))


def t_events_line(mkenv):
    env = mkenv()
    tgt, join, stripe = env.chain(lambda c, res: c.close())
    errs = []
    for p in (join, stripe):
        lines = p.stdout().splitlines()
        if "events: uring" not in lines:
            errs.append("%s stdout has no line 'events: uring': %r" % (p.name, lines[:3]))
    check(not errs, "\n".join(errs))


def t_sigusr1(mkenv):
    env = mkenv()
    tgt, join, stripe = env.chain(lambda c, res: c.close())
    for p, side in ((stripe, "stripe"), (join, "join")):
        before = len(p.stdout())
        p.signal(signal.SIGUSR1)
        out = p.wait_for("events[", timeout=10, start=before)[before:]
        check("stats[%s]" % side in out, "SIGUSR1: no stats[%s] line in %r" % (side, out[:300]))
        check("events[uring]" in out, "SIGUSR1: no events[uring] line in %r" % out[:300])
        time.sleep(0.3)
        check(p.alive(), "%s stopped after SIGUSR1 (status %s)" % (side, p.p.returncode))
    # Still serving: a connection through both gets to the target.
    c = env.connect(stripe.port, timeout=10)
    t0 = time.monotonic()
    while tgt.accepted == 0 and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    c.close()
    check(tgt.accepted >= 1, "no session reached the target after SIGUSR1")
    # SIGTERM: exits 0 and prints the counters.
    for p, side in ((stripe, "stripe"), (join, "join")):
        before = len(p.stdout())
        rc = p.stop()
        check(rc == 0, "%s exited %s on SIGTERM" % (side, rc))
        check("stats[%s]" % side in p.stdout()[before:], "%s printed no counters on exit" % side)


def tests():
    return [
        ("cli: agentproxy --help exits 0 and mentions every flag", t_help, 30),
        ("cli: stripe --help and join --help document their flags", t_sub_help, 30),
        ("cli: a bad flag exits 2 with usage on stderr", t_bad_flag, 30),
        ("cli: a missing required flag exits 2", t_missing_flag, 30),
        ("cli: --events uring prints 'events: uring' at startup", t_events_line, 30),
        ("cli: SIGUSR1 prints stats[] and events[] lines and keeps running", t_sigusr1, 30),
    ]
