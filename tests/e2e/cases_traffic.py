# SPDX-License-Identifier: MIT
"""Traffic through client -> stripe -> join -> target: both directions at
once, 1..8 streams, many sessions, half-close, and the custom echo_server."""

import os
import socket
import subprocess
import threading
import time

from harness import (MiB, KiB, Data, Sender, check, comment, describe_end, exchange,
                     receive_all)


def exchange_target(seed, size, pace=None):
    """A target that sends its own Data(seed, size) while reading the
    client's bytes to EOF, then reports both hashes."""
    def handler(c, results):
        r = exchange(c, Data(seed, size), pace=pace)
        c.close()
        results.put(r)
    return handler


def reply_after_eof(seed, size, before_reply=None):
    """A target that reads the client's bytes to EOF, then (after
    before_reply()) sends Data(seed, size) and closes; reports both."""
    def handler(c, results):
        r = receive_all(c)
        if before_reply:
            before_reply()
        s = Sender(c, Data(seed, size))
        s.run()
        r.update(sent=s.sent, sent_hash=s.digest(), send_error=s.error)
        c.close()
        results.put(r)
    return handler


def check_exchange(label, client, target, want_len_up, want_len_down):
    """client and target are exchange() results of the two ends."""
    errs = []
    if client["send_error"] or not client["send_done"]:
        errs.append("%s: client send failed: %s" % (label, client["send_error"] or "did not finish"))
    if target["send_error"] or not target["send_done"]:
        errs.append("%s: target send failed: %s" % (label, target["send_error"] or "did not finish"))
    if client["sent"] != want_len_up:
        errs.append("%s: client sent %d of %d bytes" % (label, client["sent"], want_len_up))
    if target["sent"] != want_len_down:
        errs.append("%s: target sent %d of %d bytes" % (label, target["sent"], want_len_down))
    if target["end"] != "eof":
        errs.append("%s: target's read ended by %s, not EOF" % (label, describe_end(target["end"])))
    if client["end"] != "eof":
        errs.append("%s: client's read ended by %s, not EOF" % (label, describe_end(client["end"])))
    if target["len"] != client["sent"] or target["hash"] != client["sent_hash"]:
        errs.append("%s: client->target differs: sent %d bytes sha256 %s, target got %d bytes sha256 %s"
                    % (label, client["sent"], client["sent_hash"][:16], target["len"],
                       target["hash"][:16]))
    if client["len"] != target["sent"] or client["hash"] != target["sent_hash"]:
        errs.append("%s: target->client differs: sent %d bytes sha256 %s, client got %d bytes sha256 %s"
                    % (label, target["sent"], target["sent_hash"][:16], client["len"],
                       client["hash"][:16]))
    return errs


def both_ways(mkenv, size, streams=None, progress=False):
    env = mkenv()
    extra = ("--streams", str(streams)) if streams else ()
    tgt, join, stripe = env.chain(exchange_target(1000, size), stripe_flags=extra)
    c = env.connect(stripe.port)
    t0 = time.monotonic()
    marks = [size // 4, size // 2, 3 * size // 4]

    def on_bytes(n):
        if progress and marks and n >= marks[0]:
            comment("  client received %d MiB after %.1f s" % (n // MiB, time.monotonic() - t0))
            marks.pop(0)
    cr = exchange(c, Data(1, size), on_bytes=on_bytes)
    dt = time.monotonic() - t0
    tr = tgt.result(30)
    errs = check_exchange("session", cr, tr, size, size)
    check(join.alive() and stripe.alive(), "a proxy died: stripe alive=%s join alive=%s"
          % (stripe.alive(), join.alive()))
    check(not errs, "\n".join(errs))
    return "%d MiB each way in %.1f s (%.0f MiB/s total)" % (size // MiB, dt, 2 * size / MiB / dt)


def t_big(mkenv):
    size = int(os.environ.get("E2E_BIG_MIB", "256")) * MiB
    return both_ways(mkenv, size, progress=True)


def t_streams(mkenv, n):
    return both_ways(mkenv, 32 * MiB, streams=n)


def t_concurrent(mkenv, sessions=100, size=256 * KiB):
    env = mkenv()
    tgt, join, stripe = env.chain(exchange_target(2000, size))
    results = [None] * sessions

    def client(i):
        try:
            c = env.connect(stripe.port)
            results[i] = exchange(c, Data(10000 + i, size, block=64 * KiB))
            c.close()
        except Exception as e:  # noqa: BLE001
            results[i] = {"error": e}
    ths = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(sessions)]
    t0 = time.monotonic()
    for t in ths:
        t.start()
    for t in ths:
        t.join(max(1, 90 - (time.monotonic() - t0)))
    errs = []
    if any(t.is_alive() for t in ths):
        errs.append("%d of %d clients still running after 90 s"
                    % (sum(t.is_alive() for t in ths), sessions))
    want_down = Data(2000, size, block=1 * MiB).digest()
    targets = []
    for _ in range(sessions):
        try:
            targets.append(tgt.result(max(1, 30 - (time.monotonic() - t0))))
        except Exception:  # noqa: BLE001
            break
    if len(targets) != sessions:
        errs.append("the target finished %d of %d sessions" % (len(targets), sessions))
    got_up = {r.get("hash") for r in targets if r.get("end") == "eof" and r.get("len") == size}
    bad = 0
    for i, r in enumerate(results):
        why = None
        if r is None:
            why = "did not finish"
        elif "error" in r:
            why = "error %s" % r["error"]
        elif r["send_error"] or r["sent"] != size:
            why = "sent %d of %d (%s)" % (r["sent"], size, r["send_error"])
        elif r["end"] != "eof" or r["len"] != size or r["hash"] != want_down:
            why = "received %d of %d bytes, read ended by %s, sha256 %s" % (
                r["len"], size, describe_end(r["end"]),
                "ok" if r["hash"] == want_down else "differs")
        elif r["sent_hash"] not in got_up:
            why = "the target never received its %d bytes intact" % size
        if why:
            bad += 1
            if bad <= 8:
                errs.append("session %d: %s" % (i, why))
    if bad > 8:
        errs.append("... %d sessions bad in all" % bad)
    check(join.alive() and stripe.alive(), "a proxy died")
    check(not errs, "\n".join(errs))
    return "%d sessions x %d KiB each way in %.1f s" % (sessions, size // KiB,
                                                        time.monotonic() - t0)


def t_half_close_client_first(mkenv):
    up, down = 8 * MiB, 8 * MiB
    env = mkenv()
    tgt, join, stripe = env.chain(reply_after_eof(3000, down))
    c = env.connect(stripe.port)
    s = Sender(c, Data(3001, up))
    s.run()
    check(s.error is None, "client send failed: %s" % s.error)
    r = receive_all(c)
    tr = tgt.result(30)
    errs = []
    if tr["end"] != "eof" or tr["len"] != up or tr["hash"] != s.digest():
        errs.append("target read %d of %d bytes (sha256 %s) ended by %s" % (
            tr["len"], up, "ok" if tr["hash"] == s.digest() else "differs",
            describe_end(tr["end"])))
    if tr.get("send_error") or tr.get("sent") != down:
        errs.append("target could not send its reply after the client's half-close: "
                    "sent %s of %d (%s)" % (tr.get("sent"), down, tr.get("send_error")))
    if r["end"] != "eof" or r["len"] != down or r["hash"] != tr.get("sent_hash"):
        errs.append("client read %d of %d reply bytes (sha256 %s) ended by %s" % (
            r["len"], down, "ok" if r["hash"] == tr.get("sent_hash") else "differs",
            describe_end(r["end"])))
    check(not errs, "\n".join(errs))
    check(join.alive() and stripe.alive(), "a proxy died")


def t_half_close_target_first(mkenv):
    up, down = 8 * MiB, 4 * MiB

    def handler(c, results):
        s = Sender(c, Data(4000, down))
        s.run()                      # reply, then SHUT_WR, at once
        r = receive_all(c)           # the client keeps sending after our FIN
        r.update(sent=s.sent, sent_hash=s.digest(), send_error=s.error)
        c.close()
        results.put(r)
    env = mkenv()
    tgt, join, stripe = env.chain(handler)
    c = env.connect(stripe.port)
    got_eof = threading.Event()
    first = Data(4001, up // 2)
    second = Data(4002, up // 2)
    s1 = Sender(c, first, shut=False)
    s1.start()                       # still sending while the target half-closes
    r = receive_all(c)
    got_eof.set()
    s1.join(60)
    check(s1.error is None and s1.done.is_set(), "client's first half failed: %s" % s1.error)
    # The target has half-closed; our direction must still carry bytes.
    s2 = Sender(c, second)
    s2.run()
    tr = tgt.result(30)
    errs = []
    if r["end"] != "eof" or r["len"] != down or r["hash"] != tr.get("sent_hash"):
        errs.append("client read %d of %d bytes (sha256 %s) ended by %s" % (
            r["len"], down, "ok" if r["hash"] == tr.get("sent_hash") else "differs",
            describe_end(r["end"])))
    if s2.error:
        errs.append("client could not send after the target's half-close: %s" % s2.error)
    import hashlib
    h = hashlib.sha256()
    for d in (first, second):
        for p in d.pieces():
            h.update(p)
    if tr["end"] != "eof" or tr["len"] != up or tr["hash"] != h.hexdigest():
        errs.append("target read %d of %d bytes (sha256 %s) ended by %s" % (
            tr["len"], up, "ok" if tr["hash"] == h.hexdigest() else "differs",
            describe_end(tr["end"])))
    check(not errs, "\n".join(errs))
    check(join.alive() and stripe.alive(), "a proxy died")


def t_echo(mkenv, size=16 * MiB):
    env = mkenv()
    echo = env.echo_server()
    stripe = env.stripe(echo.port)
    c = env.connect(stripe.port)
    t0 = time.monotonic()
    r = exchange(c, Data(5000, size))
    dt = time.monotonic() - t0
    errs = []
    if r["send_error"] or r["sent"] != size:
        errs.append("client sent %d of %d bytes (%s)" % (r["sent"], size, r["send_error"]))
    if r["len"] != r["sent"] or r["hash"] != r["sent_hash"]:
        errs.append("echo differs: sent %d bytes sha256 %s, got back %d bytes sha256 %s"
                    % (r["sent"], r["sent_hash"][:16], r["len"], r["hash"][:16]))
    if r["end"] != "eof":
        errs.append("client's read ended by %s, not EOF" % describe_end(r["end"]))
    check(echo.alive() and stripe.alive(), "echo_server alive=%s stripe alive=%s"
          % (echo.alive(), stripe.alive()))
    check(not errs, "\n".join(errs))
    return "%d MiB echoed in %.1f s" % (size // MiB, dt)


def t_echo_half_close(mkenv, size=2 * MiB):
    """All bytes sent and SHUT_WR before reading anything: the echo must
    still come back in full, then EOF."""
    env = mkenv()
    echo = env.echo_server()
    stripe = env.stripe(echo.port)
    c = env.connect(stripe.port)
    s = Sender(c, Data(5001, size))
    s.run()
    check(s.error is None, "client send failed: %s" % s.error)
    r = receive_all(c)
    check(r["len"] == size and r["hash"] == s.digest() and r["end"] == "eof",
          "after SHUT_WR the client read %d of %d bytes (sha256 %s), ended by %s"
          % (r["len"], size, "ok" if r["hash"] == s.digest() else "differs",
             describe_end(r["end"])))
    check(echo.alive() and stripe.alive(), "a process died")


def congestion_of(filt):
    """{local->peer: algorithm} of the connected TCP sockets ss(8) matches."""
    r = subprocess.run(["ss", "-tinH", "state", "connected", filt], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    check(r.returncode == 0, "ss failed: %s" % r.stderr.decode("utf-8", "replace")[:200])
    out, sock = {}, None
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        if line[0].isspace():       # the -i line of the socket above
            if sock:
                out[sock] = line.split()[0]
            sock = None
        else:
            f = line.split()        # [State] Recv-Q Send-Q Local Peer
            sock = "%s->%s" % (f[-2], f[-1])
    return out


def t_congestion(mkenv, streams=3):
    """--congestion reno: every socket the two proxies open or accept uses it;
    the client's and the target's own sockets keep the system's."""
    up = down = 4 * MiB
    got_all, release = threading.Event(), threading.Event()
    env = mkenv()
    tgt, join, stripe = env.chain(reply_after_eof(5000, down,
                                                  lambda: (got_all.set(), release.wait(30))),
                                  join_flags=("--congestion", "reno"),
                                  stripe_flags=("--congestion", "reno", "--streams", str(streams)))
    c = env.connect(stripe.port)
    s = Sender(c, Data(5001, up))
    s.run()                          # then SHUT_WR: the target answers after EOF
    check(s.error is None, "client send failed: %s" % s.error)
    # Every socket is up once the target has it all; the target waits for
    # release before it answers, so none has gone yet.
    check(got_all.wait(30), "the target did not get the client's bytes and EOF")
    ours = congestion_of("( sport = :%d or dport = :%d or sport = :%d or dport = :%d )"
                         % (stripe.port, join.port, join.port, tgt.port))
    release.set()
    r = receive_all(c)
    tr = tgt.result(30)
    errs = []
    want = 2 + 2 * streams           # client accepted, streams both ends, target
    if len(ours) != want:
        errs.append("ss shows %d proxy sockets, want %d: %r" % (len(ours), want, ours))
    not_reno = {k: v for k, v in ours.items() if v != "reno"}
    if not_reno:
        errs.append("sockets without reno: %r" % not_reno)
    if tr["len"] != up or tr["hash"] != s.digest():
        errs.append("target got %d of %d bytes (sha256 %s)" % (
            tr["len"], up, "ok" if tr["hash"] == s.digest() else "differs"))
    if r["len"] != down or r["hash"] != tr.get("sent_hash") or r["end"] != "eof":
        errs.append("client got %d of %d bytes, ended by %s" % (r["len"], down,
                                                                describe_end(r["end"])))
    check(not errs, "\n".join(errs))
    return "%d proxy sockets on reno" % len(ours)


def tests():
    return [
        ("256 MiB both ways at once, 4 streams, sha256 intact", t_big, 240),
        ("32 MiB both ways, --streams 1", t_streams, 90, {"n": 1}),
        ("32 MiB both ways, --streams 2", t_streams, 90, {"n": 2}),
        ("32 MiB both ways, --streams 4", t_streams, 90, {"n": 4}),
        ("32 MiB both ways, --streams 8", t_streams, 90, {"n": 8}),
        ("100 concurrent sessions x 256 KiB both ways", t_concurrent, 150),
        ("half-close: client SHUT_WR first, target replies after EOF", t_half_close_client_first, 90),
        ("half-close: target SHUT_WR first while the client still sends", t_half_close_target_first, 90),
        ("echo_server: 16 MiB echoed intact through stripe", t_echo, 90),
        ("echo_server: half-close passes through (all echoed, then EOF)", t_echo_half_close, 60),
        ("--congestion reno: every proxy socket (streams, client, target) uses reno",
         t_congestion, 60),
    ]
