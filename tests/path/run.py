#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Sessions over an emulated wide-area path (TAP on stdout; needs root).

The path is the benchmark's (bench/netpath.py): a client and a server network namespace
joined through a middle one where bench_delayline holds every frame a fixed delay each
way. The stripe side runs in the client namespace, the join side in the server's, and a
transfer goes both ways through them (tests/path/ends.py). What a user relies on here:

  - on a long path (the streams' mean minimum RTT >= 5 ms) DATA frames are cut to
    --long-path-chunk (256 KiB by default), both ways: a frame held up by a loss holds
    the sequence up less (include/agent/proxy.hpp, SessionConfig::long_path_chunk);
  - with --long-path-chunk 0 the same path gets whole --chunk frames (1 MiB): the test
    above can fail;
  - over the long path the bytes arrive intact both ways, the session ends cleanly on
    both sides, nothing is logged as a warning or error, each side holds as many
    sockets after as before (and no more pipes than its pool keeps), and neither uses
    CPU while idle after it.

Usage: tests/path/run.py [--build DIR] [-k SUBSTRING]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench"))
# After bench/: tests/e2e has a run.py of its own.
sys.path.append(os.path.join(ROOT, "tests", "e2e"))
import netpath  # noqa: E402
import run as rt  # noqa: E402  (bench/run.py: spawn/stop)
from probes import PIPE_POOL, descriptors, idle_cpu  # noqa: E402

IDLE_CPU = 0.1           # CPU seconds either proxy may use over 2 s after the session

KiB, MiB = 1 << 10, 1 << 20
ONE_WAY_MS = 10          # 20 ms RTT: a long path (SessionConfig::kLongPathRtt is 5 ms)
TRANSFER_MIB = 32        # each way
STATS_RE = re.compile(r"stats\[(\w+)\]: sessions opened (\d+) done (\d+) failed (\d+).*?"
                      r"bytes in (\d+) out (\d+); frames sent (\d+) received (\d+);.*?"
                      r"acks sent (\d+)")


def released(before, after):
    """As many sockets and others as before, and no more pipes than the pool keeps."""
    return after["sockets"] <= before["sockets"] and after["other"] <= before["other"] and \
        after["pipes"] <= before["pipes"] + 2 * PIPE_POOL


def stats_of(text, side):
    for m in STATS_RE.finditer(text):
        if m.group(1) == side:
            keys = ("opened", "done", "failed", "bytes_in", "bytes_out", "frames_sent",
                    "frames_received", "acks_sent")
            return dict(zip(keys, (int(x) for x in m.groups()[1:])))
    return None


def json_line(text, key):
    for line in text.splitlines():
        if line.startswith("{") and key in line:
            return json.loads(line)
    return None


class Case:
    def __init__(self, path, build, logdir, stripe_flags=(), join_flags=()):
        self.path, self.build, self.logdir = path, build, logdir
        self.stripe_flags, self.join_flags = list(stripe_flags), list(join_flags)

    def run(self, tag):
        """One transfer each way through a fresh stripe/join pair: what each side saw."""
        p, proxy = self.path, os.path.join(self.build, "agentproxy")
        ends = [sys.executable, os.path.join(HERE, "ends.py")]
        back, front, target = 7101, 7102, 7103
        srv = rt.spawn(f"{tag}-server", ["ip", "netns", "exec", p.s] + ends +
                       ["serve", str(target), str(TRANSFER_MIB), "2"], self.logdir)
        j = rt.spawn(f"{tag}-join", ["ip", "netns", "exec", p.s, proxy, "join", "--listen",
                                     f"{netpath.SERVER_IP}:{back}", "--target",
                                     f"127.0.0.1:{target}", "--events", "uring",
                                     "--max-sessions", "64"] + self.join_flags, self.logdir)
        s = rt.spawn(f"{tag}-stripe", ["ip", "netns", "exec", p.c, proxy, "stripe",
                                       "--listen", f"127.0.0.1:{front}", "--peer",
                                       f"{netpath.SERVER_IP}:{back}", "--streams", "4",
                                       "--events", "uring", "--max-sessions", "64"] +
                     self.stripe_flags,
                     self.logdir)
        try:
            p.wait_listen([srv], target, "server")
            p.wait_listen([j], back, "join")
            p.wait_listen([s], front, "stripe")
            time.sleep(0.2)  # the banner and the listener are up: count from here
            fds = {"stripe": descriptors(s.pid), "join": descriptors(j.pid)}
            t0 = time.monotonic()
            cl = p.ns(p.c, *ends, "send", "127.0.0.1", str(front), str(TRANSFER_MIB), "1",
                      check=False, timeout=120)
            took = time.monotonic() - t0
            srv.wait(timeout=30)
            time.sleep(0.3)  # both sides log the session's end
            after = {"stripe": descriptors(s.pid), "join": descriptors(j.pid)}
            idle = dict(zip(("stripe", "join"), idle_cpu([s, j])))
        finally:
            for x in (s, j, srv):
                rt.stop(x)
        logs = {}
        for name in ("server", "join", "stripe"):
            with open(os.path.join(self.logdir, f"{tag}-{name}.log"), errors="replace") as f:
                logs[name] = f.read()
        return {"client": json_line(cl.stdout, '"got"'), "client_err": cl.stderr[-300:],
                "server": json_line(logs["server"], '"got"'), "took": took,
                "stripe": stats_of(logs["stripe"], "stripe"),
                "join": stats_of(logs["join"], "join"), "fds": fds, "fds_after": after,
                "idle_cpu": idle, "logs": logs}


def mean_data_frame(st, bytes_key):
    """Mean DATA payload a side sent: its frames less its ACKs (a FIN or two more
    only lower the mean)."""
    data = st["frames_sent"] - st["acks_sent"]
    return st[bytes_key] / data if data > 0 else 0


def expected_digest(mib, seed):
    sys.path.insert(0, HERE)
    import ends
    return ends.digest(ends.pattern(mib, seed))


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def result(self, ok, name, detail=""):
        self.n += 1
        self.failed += not ok
        print(f"{'ok' if ok else 'not ok'} {self.n} - {name}", flush=True)
        for line in detail.splitlines():
            print(f"# {line}", flush=True)

    def skip(self, name, why):
        self.n += 1
        print(f"ok {self.n} - {name} # SKIP {why}", flush=True)


def check_transfer(r, want_up, want_down):
    """What is wrong with a transfer's ends (empty if nothing)."""
    bad = []
    if not r["client"] or not r["server"]:
        return [f"a transfer end printed nothing: client {r['client_err']!r}"]
    if r["server"]["got"] != TRANSFER_MIB * MiB or r["server"]["sha256"] != want_up:
        bad.append(f"server got {r['server']['got']} bytes, digest "
                   f"{'ok' if r['server']['sha256'] == want_up else 'wrong'}")
    if r["client"]["got"] != TRANSFER_MIB * MiB or r["client"]["sha256"] != want_down:
        bad.append(f"client got {r['client']['got']} bytes, digest "
                   f"{'ok' if r['client']['sha256'] == want_down else 'wrong'}")
    for side in ("stripe", "join"):
        st = r[side]
        if not st:
            bad.append(f"{side} printed no stats")
        elif st["opened"] != 1 or st["done"] != 1 or st["failed"] != 0:
            bad.append(f"{side}: sessions opened {st['opened']} done {st['done']} "
                       f"failed {st['failed']} (want 1, 1, 0)")
        if not released(r["fds"][side], r["fds_after"][side]):
            bad.append(f"{side}: {r['fds'][side]} descriptors before, "
                       f"{r['fds_after'][side]} after")
        if r["idle_cpu"][side] > IDLE_CPU:
            bad.append(f"{side} used {r['idle_cpu'][side]:.2f} s of CPU over 2 s idle "
                       f"(at most {IDLE_CPU:.2f})")
        warn = [ln for ln in r["logs"][side].splitlines() if " warn:" in ln or " error:" in ln]
        if warn:
            bad.append(f"{side} logged: {warn[0]}")
    return bad


def describe(r):
    st, jo = r["stripe"] or {}, r["join"] or {}
    return (f"{TRANSFER_MIB} MiB each way in {r['took']:.1f} s; mean DATA frame: stripe "
            f"{mean_data_frame(st, 'bytes_in') / KiB:.0f} KiB "
            f"({st.get('frames_sent', 0) - st.get('acks_sent', 0)} frames), join "
            f"{mean_data_frame(jo, 'bytes_in') / KiB:.0f} KiB "
            f"({jo.get('frames_sent', 0) - jo.get('acks_sent', 0)} frames); idle CPU after: "
            f"stripe {r['idle_cpu']['stripe']:.2f} s, join {r['idle_cpu']['join']:.2f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("-k", default="", help="run only the cases whose name has this")
    args = ap.parse_args()
    tap = Tap()
    cases = [
        ("long path: DATA frames of --long-path-chunk (256 KiB) both ways, intact, "
         "clean end, no descriptor left", [], []),
        ("long path with --long-path-chunk 0: whole 1 MiB chunks (the control)",
         ["--long-path-chunk", "0"], ["--long-path-chunk", "0"]),
    ]
    cases = [c for c in cases if args.k in c[0]]
    print(f"1..{len(cases)}", flush=True)
    why = None
    if os.geteuid() != 0:
        why = "needs root (network namespaces)"
    elif not os.path.exists(os.path.join(args.build, "bench_delayline")):
        why = f"{args.build}/bench_delayline is missing (make {args.build}/bench_delayline)"
    if why:
        for name, _, _ in cases:
            tap.skip(name, why)
        return 0
    logdir = tempfile.mkdtemp(prefix="agentmux-path-")
    netpath.cleanup_stale()
    path = netpath.Path(rt, logdir, os.path.join(args.build, "bench_delayline"), "test",
                        ONE_WAY_MS, 0.0, rate="1gbit")
    up = down = None
    try:
        path.up()
        ping = path.ping(5, 0.05)
        print(f"# path: {2 * ONE_WAY_MS} ms RTT configured, ping {ping}", flush=True)
        up, down = expected_digest(TRANSFER_MIB, 1), expected_digest(TRANSFER_MIB, 2)
        for i, (name, sflags, jflags) in enumerate(cases):
            try:
                r = Case(path, args.build, logdir, sflags, jflags).run(f"case{i}")
            except subprocess.TimeoutExpired as e:
                tap.result(False, name, f"timed out: {' '.join(e.cmd[-6:])} (logs in {logdir})")
                continue
            bad = check_transfer(r, up, down)
            if r["stripe"] and r["join"]:
                means = (mean_data_frame(r["stripe"], "bytes_in"),
                         mean_data_frame(r["join"], "bytes_in"))
                if not sflags:
                    bad += [f"{side}: mean DATA frame {m / KiB:.0f} KiB > 256 KiB"
                            for side, m in zip(("stripe", "join"), means) if m > 256 * KiB]
                else:
                    # Whole chunks but for the last of each burst the reader
                    # finds: well past the long-path size.
                    bad += [f"{side}: mean DATA frame {m / KiB:.0f} KiB <= 384 KiB"
                            for side, m in zip(("stripe", "join"), means) if m <= 384 * KiB]
            tap.result(not bad, name, "\n".join([describe(r)] + bad +
                                               ([f"logs in {logdir}"] if bad else [])))
    except netpath.PathError as e:
        tap.result(False, "the emulated path", str(e))
    finally:
        path.down()
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main())
