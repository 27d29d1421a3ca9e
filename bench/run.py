#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""agentmux benchmark: iperf3 through agentproxy and its peers, side by side.

Contenders, all on 127.0.0.1, all measured in the same run with iperf3:
  direct      iperf3 client -> iperf3 server
  agentproxy  client -> stripe (N streams, --events uring) -> join -> server
  haproxy     client -> haproxy A -> haproxy B -> server (mode tcp, splice, nbthread 1)
  naive       client -> relay A -> relay B -> server (blocking read/write, 1 MiB
              buffer, a thread per direction: bench/relay.c)
  socat       client -> socat A -> socat B -> server (TCP-LISTEN,fork -> TCP)
Each contender runs in both directions (forward: client sends; reverse: iperf3 -R).
Rounds are interleaved (every contender once per round) so that the noise of a
shared machine spreads over all of them; the median of the rounds is reported.

Then the latency scenario (bench/latency.py), the event path (bench/events.py),
idle sessions (bench/idle.py) and the wide-area paths (bench/paths.py).

Writes OUT/results.md, OUT/results.json, OUT/throughput.png (OUT defaults to
BUILD/bench) and keeps every process's log in OUT/logs/. Every process it starts
is in its own process group and is killed on exit, error, Ctrl-C or timeout.
"""

import argparse
import ctypes
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import events  # noqa: E402
import eventsreport  # noqa: E402
import idle  # noqa: E402
import idlereport  # noqa: E402
import latency  # noqa: E402
import pathreport  # noqa: E402
import paths  # noqa: E402

HOST = "127.0.0.1"  # the only address this script ever uses
GB = 1e9            # GB/s here means 10^9 bytes per second

# --------------------------------------------------------------------------
# Process management: every child in its own session (process group), with a
# parent-death signal, killed group-wide at the end.

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
CHILDREN = []  # Popen objects, in start order


def _child_setup():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(name, argv, logdir):
    log = open(os.path.join(logdir, name + ".log"), "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True, preexec_fn=_child_setup)
    p.bench_name = name
    p.bench_log = log
    CHILDREN.append(p)
    return p


def stop(p, grace=2.0):
    """SIGTERM the process group, then SIGKILL what is left."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # also socat's forked children
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    p.bench_log.close()
    if p in CHILDREN:
        CHILDREN.remove(p)


def stop_all():
    for p in list(reversed(CHILDREN)):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2.0
    for p in list(CHILDREN):
        try:
            p.wait(timeout=max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in list(CHILDREN):
        stop(p, grace=0)


class Abort(Exception):
    pass


CC_SYSCTL = "/proc/sys/net/ipv4/tcp_congestion_control"
CC_SAVED = []  # the system default to put back on exit


def congestion():
    try:
        with open(CC_SYSCTL) as fh:
            return fh.read().strip()
    except OSError:
        return "?"


def set_congestion(alg):
    """Makes alg the system default for the run: every contender's sockets,
    iperf3's included, then use it (TCP sockets take the default when made)."""
    with open(CC_SYSCTL, "w") as fh:
        fh.write(alg)


def restore_congestion():
    while CC_SAVED:
        try:
            set_congestion(CC_SAVED.pop())
        except OSError as e:
            print(f"bench: could not restore {CC_SYSCTL}: {e}", file=sys.stderr)


def _on_signal(signum, _frame):
    raise Abort(f"signal {signal.Signals(signum).name}")


# --------------------------------------------------------------------------
# Helpers


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def listening(port):
    want = "0100007F:%04X" % port
    for f in ("/proc/net/tcp",):
        with open(f) as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":
                    return True
    return False


def wait_listen(port, procs, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return
        for p in procs:
            if p.poll() is not None:
                raise Abort(f"{what}: {p.bench_name} exited with {p.returncode} "
                            f"(see {p.bench_log.name})")
        time.sleep(0.05)
    raise Abort(f"{what}: nothing listens on {HOST}:{port} after {timeout}s")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pgids):
    """CPU time (user+sys, plus reaped children) of every process in pgids."""
    return sum(cpu_seconds_each(pgids).values())


def cpu_seconds_each(pgids):
    """{pgid: CPU time (user+sys, plus reaped children) of its processes}."""
    each = {g: 0 for g in pgids}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                st = fh.read()
        except OSError:
            continue
        f = st[st.rfind(")") + 2:].split()
        # f[0] is field 3 (state): pgrp is field 5, utime..cstime fields 14..17
        if int(f[2]) in each:
            each[int(f[2])] += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return {g: t / CLK_TCK for g, t in each.items()}


def cpu_times():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


# --------------------------------------------------------------------------
# Contenders


class Contender:
    def __init__(self, key, label, port, procs, kind, server):
        self.key, self.label, self.port, self.procs, self.kind = key, label, port, procs, kind
        self.server = server  # its own iperf3 server: a proxy slow to pass a close
                              # on cannot make the next contender's test fail

    @property
    def pgids(self):
        return {p.pid for p in self.procs}


class PingServer(object):
    """The latency scenario's backend: bench_pingpong serve (an echo)."""

    def __init__(self, port, logdir, key):
        self.port, self.logdir, self.key, self.proc = port, logdir, key, None
        self.binary = None

    def start(self):
        self.proc = spawn(f"pingpong-server-{self.key}", [self.binary, "serve", str(self.port)],
                          self.logdir)
        wait_listen(self.port, [self.proc], "pingpong server")

    def restart(self):
        if self.proc:
            stop(self.proc)
        self.start()


def start_contenders(args, tmp, logdir, server_cls=None, only=None):
    build = args.build
    proxy = os.path.join(build, "agentproxy")
    relay = os.path.join(build, "bench_relay")
    out = []
    only = args.only if only is None else only
    want = set(only.split(",")) if only else None

    def wanted(k):
        return want is None or k in want or k.split("-")[0] in want

    def server(key):
        srv = (server_cls or Server)(free_ports(1)[0], logdir, key)
        if server_cls is PingServer:
            srv.binary = os.path.join(build, "bench_pingpong")
        srv.start()
        return srv

    if wanted("direct"):
        srv = server("direct")
        out.append(Contender("direct", "direct (no proxy)", srv.port, [], "direct", srv))

    common = shlex.split(args.agent_flags)
    for n in args.streams:
        key = f"agentproxy-{n}"
        if not wanted(key):
            continue
        srv = server(key)
        server_port = srv.port
        front, back = free_ports(2)
        j = spawn(f"{key}-join", [proxy, "join", "--listen", f"{HOST}:{back}", "--target",
                                  f"{HOST}:{server_port}", "--events", args.events] + common +
                  shlex.split(args.join_flags), logdir)
        s = spawn(f"{key}-stripe", [proxy, "stripe", "--listen", f"{HOST}:{front}", "--peer",
                                    f"{HOST}:{back}", "--streams", str(n), "--events",
                                    args.events] + common + shlex.split(args.stripe_flags),
                  logdir)
        wait_listen(back, [j], key)
        wait_listen(front, [s], key)
        label = f"agentproxy {n} stream{'s' if n > 1 else ''}"
        out.append(Contender(key, label, front, [s, j], "agentproxy", srv))

    if wanted("haproxy"):
        srv = server("haproxy")
        server_port = srv.port
        pa, pb = free_ports(2)
        procs = []
        for name, lport, tport in (("haproxy-A", pa, pb), ("haproxy-B", pb, server_port)):
            cfg = os.path.join(tmp, name + ".cfg")
            with open(cfg, "w") as fh:
                fh.write(HAPROXY_CFG.format(name=name, lport=lport, tport=tport,
                                            host=HOST))
            procs.append(spawn(name, ["haproxy", "-db", "-f", cfg], logdir))
        wait_listen(pb, procs, "haproxy")
        wait_listen(pa, procs, "haproxy")
        out.append(Contender("haproxy", "HAProxy 2-hop (splice)", pa, procs, "haproxy", srv))

    if wanted("naive"):
        srv = server("naive")
        server_port = srv.port
        pa, pb = free_ports(2)
        b = spawn("naive-B", [relay, str(pb), str(server_port)], logdir)
        a = spawn("naive-A", [relay, str(pa), str(pb)], logdir)
        wait_listen(pb, [b], "naive")
        wait_listen(pa, [a], "naive")
        out.append(Contender("naive", "naive relay pair (1 MiB)", pa, [a, b], "naive", srv))

    if wanted("socat"):
        srv = server("socat")
        server_port = srv.port
        pa, pb = free_ports(2)
        b = spawn("socat-B", ["socat", f"TCP-LISTEN:{pb},bind={HOST},fork,reuseaddr",
                              f"TCP:{HOST}:{server_port}"], logdir)
        a = spawn("socat-A", ["socat", f"TCP-LISTEN:{pa},bind={HOST},fork,reuseaddr",
                              f"TCP:{HOST}:{pb}"], logdir)
        wait_listen(pb, [b], "socat")
        wait_listen(pa, [a], "socat")
        out.append(Contender("socat", "socat 2-hop", pa, [a, b], "socat", srv))
    return out


HAPROXY_CFG = """\
# generated by bench/run.py: one hop of the two-hop TCP chain
global
    nbthread 1
    maxconn 4096
    # At its best (platform notes): 1 MiB pipes, 3.0 GB/s against 2.3-2.6 with the default
    tune.pipesize 1048576
    log stderr format short local0 err

defaults
    mode tcp
    log global
    option splice-request
    option splice-response
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend {name}_in
    bind {host}:{lport}
    default_backend {name}_out

backend {name}_out
    server next {host}:{tport}
"""


# --------------------------------------------------------------------------
# iperf3


class Server:
    def __init__(self, port, logdir, key):
        self.port, self.logdir, self.key, self.proc, self.gen = port, logdir, key, None, 0

    def start(self):
        self.gen += 1
        self.proc = spawn(f"iperf3-server-{self.key}-{self.gen}",
                          ["iperf3", "-s", "-B", HOST, "-p", str(self.port)], self.logdir)
        wait_listen(self.port, [self.proc], "iperf3 server")

    def restart(self):
        if self.proc:
            stop(self.proc)
        self.start()


def iperf(port, seconds, reverse):
    argv = ["iperf3", "-c", HOST, "-p", str(port), "-t", str(seconds), "-J",
            "--connect-timeout", "3000"]
    if reverse:
        argv.append("-R")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=_child_setup)
    CHILDREN.append(p)
    p.bench_log = open(os.devnull, "wb")
    p.bench_name = "iperf3-client"
    try:
        out, err = p.communicate(timeout=seconds + 15)
    except subprocess.TimeoutExpired:
        stop(p, grace=0.5)
        return None, "timed out"
    finally:
        if p in CHILDREN:
            CHILDREN.remove(p)
            p.bench_log.close()
    try:
        j = json.loads(out)
    except ValueError:
        return None, (err.decode(errors="replace").strip() or f"exit {p.returncode}")
    if "error" in j:
        return None, j["error"]
    try:
        bps = j["end"]["sum_received"]["bits_per_second"]
        moved = j["end"]["sum_received"]["bytes"]
    except KeyError:
        return None, "no end.sum_received in iperf3 JSON"
    return {"bps": bps, "bytes": moved, "json": j}, None


# --------------------------------------------------------------------------
# Report


def median(xs):
    return statistics.median(xs) if xs else None


def summarize(contenders, runs, dirs):
    summ = {}
    for c in contenders:
        for d in dirs:
            rs = [r for r in runs if r["key"] == c.key and r["dir"] == d]
            ok = [r for r in rs if r["bps"] is not None]
            bps = [r["bps"] for r in ok]
            cpu = [r["proxy_cpu"] for r in ok if r["proxy_cpu"] is not None]
            busy = [r["machine_busy"] for r in ok]
            hops = [r["hop_cpu"] for r in ok if r.get("hop_cpu")]
            summ[(c.key, d)] = {
                "key": c.key, "label": c.label, "dir": d, "runs": len(rs),
                "ok": len(ok), "errors": [r["error"] for r in rs if r["error"]],
                "median_bps": median(bps), "min_bps": min(bps) if bps else None,
                "max_bps": max(bps) if bps else None,
                "median_GBps": median(bps) / 8 / GB if bps else None,
                "proxy_cpu": median(cpu) if cpu else None,
                # The median of each hop's CPU, the client's side first.
                "hop_cpu": [median([h[i] for h in hops]) for i in range(len(hops[0]))]
                if hops else [],
                "machine_busy": median(busy) if busy else None,
            }
    for (key, d), s in summ.items():
        for ref in ("haproxy", "naive", "direct"):
            r = summ.get((ref, d))
            if s["median_bps"] and r and r["median_bps"]:
                s["vs_" + ref] = s["median_bps"] / r["median_bps"]
            else:
                s["vs_" + ref] = None
    return summ


def gb_per_cpu(s):
    """A summary's GB per proxy CPU-second (None without both)."""
    return s["median_GBps"] / s["proxy_cpu"] if s and s["median_bps"] and s["proxy_cpu"] \
        else None


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def render_md(meta, contenders, summ, dirs):
    L = []
    L.append("# agentmux benchmark")
    L.append("")
    L.append(f"{meta['date']} · {meta['host']} · kernel {meta['kernel']} · "
             f"{meta['cpus']} CPUs ({meta['cpu_model']}) · load average {meta['loadavg_start'][0]} at "
             f"start, {meta['loadavg_end'][0]} at end · TCP congestion control "
             f"{meta.get('congestion', '?')} (the system default, for every contender) · "
             f"{meta['repeats']} rounds of "
             f"iperf3 -t {meta['seconds']} per contender and direction, interleaved; median "
             f"shown. GB/s = 10^9 bytes/s of iperf3 payload received. fwd = client sends, "
             f"rev = iperf3 -R (server sends). proxy CPU = CPU time of the proxy processes / "
             f"wall time (100% = one core); GB per proxy CPU-s = GB/s / proxy CPU, the bytes a contender moves per second of CPU it burns (less sensitive to other load); machine busy = share of all CPUs not idle during the run, everything on the machine included. agentproxy flags: `--events {meta['events']}"
             f"{(' ' + meta['agent_flags']) if meta['agent_flags'] else ''}`.")
    L.append("")
    L.append("| contender | dir | GB/s | Gbit/s | min–max GB/s | vs HAProxy | vs naive | "
             "vs direct | proxy CPU | GB per proxy CPU-s | machine busy | runs ok |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in contenders:
        for d in dirs:
            s = summ[(c.key, d)]
            if s["median_bps"] is None:
                L.append(f"| {c.label} | {d} | FAILED | | | | | | | | | 0/{s['runs']} |")
                continue
            cpu = eff = ""
            if s["proxy_cpu"] and c.kind != "direct":
                cpu = f"{s['proxy_cpu'] * 100:.0f}%"
                eff = f"{gb_per_cpu(s):.2f}"
            L.append(f"| {c.label} | {d} | {s['median_GBps']:.2f} | "
                     f"{s['median_bps'] / 1e9:.1f} | {s['min_bps'] / 8 / GB:.2f}–"
                     f"{s['max_bps'] / 8 / GB:.2f} | {fmt_ratio(s['vs_haproxy'])} | "
                     f"{fmt_ratio(s['vs_naive'])} | {fmt_ratio(s['vs_direct'])} | {cpu} | {eff} | "
                     f"{s['machine_busy'] * 100:.0f}% | "
                     f"{s['ok']}/{s['runs']} |")
    errs = [(s["label"], s["dir"], e) for s in summ.values() for e in s["errors"]]
    if errs:
        L.append("")
        L.append("Failed runs:")
        for label, d, e in errs:
            L.append(f"- {label} {d}: {e}")

    L += render_hops(contenders, summ, dirs)

    L.append("")
    L.append("## Targets (loopback, issue 13)")
    L.append("")

    for d in dirs:
        a = summ.get(("agentproxy-4", d))
        if not a:
            continue
        for ref in ("haproxy", "naive"):
            v = a.get("vs_" + ref)
            verdict = "n/a" if v is None else ("met" if v >= 1.0 else "NOT met")
            L.append(f"- agentproxy 4 streams {d}, GB/s vs {ref}: {fmt_ratio(v)} "
                     f"(target >= 1.0x): {verdict}")
            mine, theirs = gb_per_cpu(a), gb_per_cpu(summ.get((ref, d)))
            v = mine / theirs if mine and theirs else None
            verdict = "n/a" if v is None else ("met" if v >= 1.3 else "NOT met")
            L.append(f"- agentproxy 4 streams {d}, GB per proxy CPU-s vs {ref}: "
                     f"{fmt_ratio(v)} (target >= 1.3x): {verdict}")
    if any("NOT met" in line for line in L):
        L += ["", "Where the time goes (profiles of stripe, join and HAProxy's hops) and "
              "what was tried: bench/README.md, \"Where agentproxy's time goes "
              "(loopback)\"; the per-hop table above shows which end lost in this run."]
    L.append("")
    return "\n".join(L)


def render_hops(contenders, summ, dirs):
    """Each hop's own CPU: which end of a chain costs what per byte, against the
    same hop of HAProxy's chain (its first hop, like the stripe, faces the client)."""
    L = ["", "### Per hop: each proxy process's CPU and GB per CPU-second", "",
         "First hop = the client's side (stripe, HAProxy A, relay A, socat A), second = "
         "the server's (join, HAProxy B, ...). fwd: the first hop reads the client and "
         "sends on, the second delivers; rev: the other way round. A hop's CPU includes "
         "the loopback receive of the socket it sends to (it runs in the sender's "
         "context).", "",
         "| contender | dir | first hop CPU | second hop CPU | GB per CPU-s, first / second "
         "| vs HAProxy's same hop |",
         "|---|---|---:|---:|---:|---:|"]

    def per_hop(s):
        if not s or not s["median_GBps"] or len(s.get("hop_cpu") or []) != 2:
            return None
        return [s["median_GBps"] / h if h else None for h in s["hop_cpu"]]

    for c in contenders:
        if c.kind == "direct":
            continue
        for d in dirs:
            s = summ[(c.key, d)]
            mine = per_hop(s)
            if not mine:
                continue
            ref = per_hop(summ.get(("haproxy", d)))
            vs = " / ".join(fmt_ratio(m / r if m and r else None)
                            for m, r in zip(mine, ref)) if ref and c.key != "haproxy" else ""
            L.append(f"| {c.label} | {d} | {s['hop_cpu'][0] * 100:.0f}% | "
                     f"{s['hop_cpu'][1] * 100:.0f}% | "
                     + " / ".join(f"{m:.2f}" if m else "n/a" for m in mine) + f" | {vs} |")
    return L


def plot(path, contenders, summ, dirs, meta):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [c.label.replace(" (", "\n(") for c in contenders]
    x = list(range(len(contenders)))
    width = 0.8 / len(dirs)
    fig, ax = plt.subplots(figsize=(max(8, 1.5 * len(contenders)), 5.5))
    colors = {"fwd": "#3b75af", "rev": "#ef8636"}
    for i, d in enumerate(dirs):
        vals, lo, hi = [], [], []
        for c in contenders:
            s = summ[(c.key, d)]
            if s["median_bps"] is None:
                vals.append(0)
                lo.append(0)
                hi.append(0)
                continue
            m = s["median_bps"] / 8 / GB
            vals.append(m)
            lo.append(m - s["min_bps"] / 8 / GB)
            hi.append(s["max_bps"] / 8 / GB - m)
        xs = [xi + (i - (len(dirs) - 1) / 2) * width for xi in x]
        bars = ax.bar(xs, vals, width, yerr=[lo, hi], capsize=3, label=d,
                      color=colors.get(d))
        for b, v, up in zip(bars, vals, hi):
            ax.annotate("failed" if v == 0 else f"{v:.2f}",
                        (b.get_x() + b.get_width() / 2, v + up),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                        textcoords="offset points")
    h = summ.get(("haproxy", "fwd"))
    if h and h["median_bps"]:
        y = h["median_bps"] / 8 / GB
        ax.axhline(y, color="gray", linestyle="--", linewidth=1)
        ax.text(len(contenders) - 0.5, y, "target: 1.0x HAProxy (fwd)", ha="right",
                va="bottom", fontsize=8, color="gray")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("GB/s (10^9 bytes/s), median; bars: min–max")
    ax.set_title(f"iperf3 through each contender on loopback, {meta['cpus']} CPUs, "
                 f"TCP {meta.get('congestion', '?')}, {meta['date'][:10]}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build directory (default: build)")
    ap.add_argument("--out", help="output directory (default: BUILD/bench)")
    ap.add_argument("--seconds", type=int, default=4, help="iperf3 -t per run (default 4)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds; the median is reported (default 3)")
    ap.add_argument("--streams", default="4,2,1",
                    help="agentproxy stream counts, comma separated (default 4,2,1)")
    ap.add_argument("--events", default="uring", help="agentproxy --events (default uring)")
    ap.add_argument("--agent-flags", default="", help="extra flags for stripe and join")
    ap.add_argument("--stripe-flags", default="", help="extra flags for stripe only")
    ap.add_argument("--join-flags", default="", help="extra flags for join only")
    ap.add_argument("--only", default="",
                    help="contenders to run, comma separated: direct, agentproxy "
                         "(or agentproxy-N), haproxy, naive, socat (default: all)")
    ap.add_argument("--no-reverse", action="store_true", help="forward direction only")
    ap.add_argument("--latency-count", type=int, default=5000,
                    help="round trips per contender and round in the latency scenario "
                         "(0: skip it; default 5000)")
    ap.add_argument("--latency-size", type=int, default=64,
                    help="bytes each way per round trip (default 64)")
    ap.add_argument("--quick", action="store_true",
                    help="1 round of 2 s, streams 4 only, 1,000 idle sessions, the event path "
                         "1 s a run: a smoke test")
    ap.add_argument("--timeout", type=int, default=420,
                    help="abort everything after this many seconds (default 420)")
    ap.add_argument("--congestion", default="",
                    help="TCP congestion control for the whole run (root): the system "
                         "default (net.ipv4.tcp_congestion_control) is set to it for every "
                         "contender alike and put back after (default: leave it, "
                         "the run records it)")
    ap.add_argument("--no-plot", action="store_true")
    events.add_args(ap)
    idle.add_args(ap)
    paths.add_args(ap)
    args = ap.parse_args()
    try:
        events.load_list(args)
    except ValueError as e:
        ap.error(str(e))
    if args.quick:
        paths.quick(args)
        events.quick(args)
        idle.quick(args)
        args.seconds, args.repeats, args.streams = 2, 1, "4"
        args.latency_count = min(args.latency_count, 1000)
    args.streams = [int(x) for x in args.streams.split(",") if x]
    out = args.out or os.path.join(args.build, "bench")
    logdir = os.path.join(out, "logs")
    os.makedirs(logdir, exist_ok=True)
    dirs = ["fwd"] if args.no_reverse else ["fwd", "rev"]

    for tool in ("iperf3", "haproxy", "socat"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed (run `make deps`)")
    for f in ("agentproxy", "bench_relay", "bench_pingpong", "bench_chatter"):
        if not os.access(os.path.join(args.build, f), os.X_OK):
            sys.exit(f"bench: {args.build}/{f} is missing (run `make bench`)")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _on_signal)
    signal.alarm(args.timeout)

    if args.congestion and args.congestion != congestion():
        saved = congestion()
        try:
            set_congestion(args.congestion)
        except OSError as e:
            sys.exit(f"bench: --congestion {args.congestion}: cannot set {CC_SYSCTL}: {e} "
                     f"(root needed; available: "
                     f"{open('/proc/sys/net/ipv4/tcp_available_congestion_control').read().strip()})")
        CC_SAVED.append(saved)

    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "cpu_model": cpu_model, "seconds": args.seconds, "repeats": args.repeats,
        "congestion": congestion(),
        "events": args.events, "agent_flags": " ".join(
            x for x in (args.agent_flags, args.stripe_flags and "stripe: " + args.stripe_flags,
                        args.join_flags and "join: " + args.join_flags) if x),
        "iperf3": subprocess.run(["iperf3", "--version"], capture_output=True,
                                 text=True).stdout.splitlines()[0],
        "haproxy": subprocess.run(["haproxy", "-v"], capture_output=True,
                                  text=True).stdout.splitlines()[0],
        "socat": next((ln for ln in subprocess.run(["socat", "-V"], capture_output=True,
                                                   text=True).stdout.splitlines()
                       if "socat version" in ln), "socat"),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
    }

    tmp = tempfile.mkdtemp(prefix="agentmux-bench-")
    runs, contenders = [], []
    event_results, idle_results = None, None
    latency_runs, latency_summary = [], None
    path_results = None
    started = time.monotonic()
    rc = 0
    try:
        contenders = start_contenders(args, tmp, logdir)
        total = len(contenders) * len(dirs) * args.repeats
        print(f"bench: {len(contenders)} contenders x {len(dirs)} directions x "
              f"{args.repeats} rounds of {args.seconds} s ({total} iperf3 runs); logs in "
              f"{logdir}", flush=True)
        k = 0
        for rnd in range(1, args.repeats + 1):
            for c in contenders:
                for d in dirs:
                    k += 1
                    cpu0 = cpu_seconds_each(c.pgids)
                    busy0, all0 = cpu_times()
                    t0 = time.monotonic()
                    res, err = iperf(c.port, args.seconds, d == "rev")
                    wall = time.monotonic() - t0
                    cpu1 = cpu_seconds_each(c.pgids)
                    # Each hop's share, in chain order (the client's side first).
                    hops = [(cpu1[p.pid] - cpu0[p.pid]) / wall for p in c.procs]
                    cpu = sum(hops) if c.procs else None
                    busy1, all1 = cpu_times()
                    machine = (busy1 - busy0) / max(1, all1 - all0)
                    r = {"key": c.key, "label": c.label, "dir": d, "round": rnd,
                         "bps": res["bps"] if res else None,
                         "bytes": res["bytes"] if res else None,
                         "proxy_cpu": cpu, "hop_cpu": hops, "machine_busy": machine,
                         "error": err,
                         "iperf3": res["json"] if res else None}
                    runs.append(r)
                    if res:
                        line = (f"{res['bps'] / 8 / GB:6.2f} GB/s {res['bps'] / 1e9:6.1f} Gbit/s"
                                + (f"  proxy CPU {cpu * 100:4.0f}%" if cpu is not None else
                                   " " * 16) + f"  machine busy {machine * 100:3.0f}%")
                    else:
                        line = f"FAILED: {err}"
                    print(f"[{k:2d}/{total}] round {rnd}  {c.label:28s} {d}  {line}",
                          flush=True)
                    if err:
                        c.server.restart()
                    dead = [p for p in c.procs if p.poll() is not None]
                    if dead:
                        print(f"bench: {c.label}: {dead[0].bench_name} died "
                              f"(see {dead[0].bench_log.name})", flush=True)
        # The throughput contenders are done: stop them so the next tests run alone.
        stop_all()
        if args.latency_count > 0:
            streams = max(args.streams) if args.streams else 4
            lat_contenders = start_contenders(
                args, tmp, logdir, server_cls=PingServer,
                only=f"direct,agentproxy-{streams},haproxy,socat")
            print(f"bench: latency: {args.latency_count} round trips of {args.latency_size} "
                  f"bytes through {len(lat_contenders)} contenders x {args.repeats} rounds",
                  flush=True)
            latency_runs = latency.measure(lat_contenders, args.repeats, args.latency_count,
                                           args.latency_size,
                                           os.path.join(args.build, "bench_pingpong"),
                                           lambda line: print(line, flush=True))
            latency_summary = latency.summarize(lat_contenders, latency_runs)
            stop_all()
        if not args.no_events:  # bench/events.py: events/s and CPU per event
            signal.alarm(args.events_timeout + 30)
            event_results = events.run(args, logdir, sys.modules[__name__],
                                       lambda line: print(line, flush=True))
            stop_all()
        if not args.no_idle:  # bench/idle.py: memory and setup of N idle sessions
            signal.alarm(args.idle_timeout + 30)
            idle_results = idle.run(args, logdir, sys.modules[__name__],
                                    lambda line: print(line, flush=True))
            stop_all()
        if not args.no_paths:  # bench/paths.py: lossy and capped paths in namespaces
            signal.alarm(args.path_timeout + 30)
            path_results = paths.run(args, logdir, sys.modules[__name__],
                                     lambda line: print(line, flush=True))
    except Abort as e:
        print(f"\nbench: aborted: {e}", file=sys.stderr, flush=True)
        rc = 1
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the cleanup finish
        stop_all()
        restore_congestion()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _on_signal)
        shutil.rmtree(tmp, ignore_errors=True)

    if not runs:
        return rc or 1
    meta["elapsed_seconds"] = round(time.monotonic() - started, 1)
    meta["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    summ = summarize(contenders, runs, dirs)
    md = render_md(meta, contenders, summ, dirs)
    if latency_summary:
        md += "\n" + latency.render_md(latency_summary, args.latency_count, args.latency_size)
    if event_results:
        md += "\n" + eventsreport.render_md(event_results)
    if idle_results:
        md += "\n" + idlereport.render_md(idle_results)
    if path_results:
        md += "\n" + pathreport.render_md(path_results)
    print()
    print(md)
    with open(os.path.join(out, "results.md"), "w") as fh:
        fh.write(md)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump({"meta": meta, "summary": list(summ.values()), "runs": runs,
                   "latency": {"summary": latency_summary, "runs": latency_runs},
                   "events": event_results, "idle": idle_results, "paths": path_results},
                  fh, indent=1)
    if not args.no_plot:
        try:
            plot(os.path.join(out, "throughput.png"), contenders, summ, dirs, meta)
            if latency_summary:
                latency.plot(os.path.join(out, "latency.png"), latency_summary,
                             f"{args.latency_size}-byte round trips, {meta['congestion']}, "
                             f"{meta['date']}")
            if event_results:
                eventsreport.plot(out, event_results)
            if idle_results:
                idlereport.plot(out, idle_results)
            if path_results:
                pathreport.plot(out, path_results)
        except Exception as e:  # a missing matplotlib must not hide the numbers
            print(f"bench: no plot: {e}", file=sys.stderr)
    pngs = sorted(f for f in os.listdir(out) if f.endswith(".png"))
    print(f"bench: wrote {out}/results.md, results.json, {', '.join(pngs)} "
          f"({meta['elapsed_seconds']} s)")
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
        restore_congestion()
