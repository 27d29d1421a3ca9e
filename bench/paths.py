#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The wide-area path scenarios of the benchmark (bench/netpath.py builds the paths).

  lossy   20 ms each way (40 ms RTT), 0.1% loss per segment each way, 1 Gbit/s (tbf)
  capped  5 ms each way (10 ms RTT), no loss, 100 Mbit/s per connection (HTB per flow)
Runs are `iperf3 -t S -O 1` (lossy S = 5, capped 3): the first second is left out.

Contenders, each with its own iperf3 server in the server namespace, all forward
(client namespace sends), interleaved rounds, medians:
  one         one TCP connection (iperf3)
  haproxy     iperf3 -> HAProxy in the client namespace (splice, tune.pipesize, as in
              bench/run.py) -> one connection across the path -> server
  flows-N     iperf3 -P N: N independent connections
  mptcp-N     mptcpize run iperf3, in-kernel path manager, N subflows (N-1 endpoints)
  agentproxy-N  iperf3 -> stripe --streams N (client ns) => N streams => join (server ns)
Every socket uses the namespaces' congestion control (cubic unless --congestion), and
agentproxy gets --congestion the same. During each run `ss -ti` is sampled once on both
ends (cwnd, retransmits, rwnd/sndbuf limited) and `ss -Mi` for MPTCP (subflows made).

Run alone:  /usr/bin/python3 bench/paths.py --build build [--quick]
(`make bench` runs it after the loopback contenders unless --no-paths.)
"""

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netpath  # noqa: E402
from netpath import SERVER_IP  # noqa: E402

SCENARIOS = {
    "lossy": {"label": "lossy: 40 ms RTT, 0.1% loss each way, 1 Gbit/s",
              "one_way_ms": 20, "loss": 0.001, "rate": "1gbit", "per_flow": None,
              "rate_mbit": 1000, "seconds": 5},
    "capped": {"label": "capped: 10 ms RTT, 100 Mbit/s per connection",
               "one_way_ms": 5, "loss": 0.0, "rate": None, "per_flow": "100mbit",
               "rate_mbit": 100, "seconds": 3},
}


def add_args(ap):
    g = ap.add_argument_group("path scenarios (bench/paths.py)")
    g.add_argument("--no-paths", action="store_true", help="skip the path scenarios")
    g.add_argument("--path-scenarios", default="lossy,capped",
                   help="which scenarios (default lossy,capped)")
    g.add_argument("--path-streams", default="2,4,8",
                   help="N for agentproxy streams, iperf3 -P N, MPTCP subflows (2,4,8)")
    g.add_argument("--path-seconds", type=int, default=0,
                   help="iperf3 -t per run (default: lossy 5, capped 3)")
    g.add_argument("--path-repeats", type=int, default=3, help="rounds (3)")
    g.add_argument("--path-omit", type=int, default=1,
                   help="iperf3 -O: seconds left out at the start of each run (slow start "
                        "and session setup, which dominate a short run on a lossy path; 1)")
    g.add_argument("--path-timeout", type=int, default=480,
                   help="stop the path scenarios after this many seconds (480)")
    g.add_argument("--path-agent-flags", default="",
                   help="extra flags for stripe and join on the paths")
    g.add_argument("--path-stripe-flags", default="", help="extra flags for stripe only")
    g.add_argument("--path-join-flags", default="", help="extra flags for join only")
    g.add_argument("--path-variant", action="append", default=[],
                   metavar="NAME|STRIPE FLAGS|JOIN FLAGS",
                   help="an extra agentproxy contender per N with these flags, in the same "
                        "rounds (repeatable), e.g. 'chunk64k|--chunk 64K|'")
    g.add_argument("--path-only", default="",
                   help="contenders, comma separated: one, haproxy, flows, mptcp, "
                        "agentproxy (or e.g. agentproxy-8); default all")


def quick(args):
    args.path_seconds, args.path_repeats, args.path_streams, args.path_omit = 2, 1, "4", 0


# ------------------------------------------------------------------ contenders


class PathContender:
    def __init__(self, key, label, kind, n, port, procs, server):
        self.key, self.label, self.kind, self.n = key, label, kind, n
        self.port, self.procs, self.server = port, procs, server


def start_contenders(rt, path, args, streams, logdir, tmp, tag):
    want = set(x for x in args.path_only.split(",") if x)

    def wanted(k):
        return not want or k in want or k.split("-")[0] in want

    out, port = [], [5200]

    def next_port():
        port[0] += 1
        return port[0]

    def server(key, mptcp=False):
        p = next_port()
        argv = ["ip", "netns", "exec", path.s] + (["mptcpize", "run"] if mptcp else []) + \
            ["iperf3", "-s", "-B", SERVER_IP, "-p", str(p)]
        proc = rt.spawn(f"path-{tag}-iperf3-server-{key}", argv, logdir)
        path.wait_listen([proc], p, f"iperf3 server {key}")
        return p, proc

    cc = ["--congestion", path.congestion]
    common = shlex.split(args.path_agent_flags)
    if wanted("one"):
        p, srv = server("one")
        out.append(PathContender("one", "1 TCP connection", "one", 1, p, [], srv))
    if wanted("haproxy"):
        p, srv = server("haproxy")
        front = next_port()
        cfg = os.path.join(tmp, f"haproxy-{tag}.cfg")
        with open(cfg, "w") as fh:
            # The global and defaults sections of bench/run.py's (splice, 1 MiB pipes).
            fh.write(rt.HAPROXY_CFG.split("frontend")[0] +
                     f"frontend in\n    bind 127.0.0.1:{front}\n    default_backend out\n\n"
                     f"backend out\n    server next {SERVER_IP}:{p}\n")
        h = rt.spawn(f"path-{tag}-haproxy", ["ip", "netns", "exec", path.c, "haproxy", "-db",
                                             "-f", cfg], logdir)
        path.wait_listen([h], front, "haproxy")
        out.append(PathContender("haproxy", "HAProxy (1 connection across)", "haproxy", 1,
                                 front, [h], srv))
    for n in streams:
        if wanted(f"flows-{n}"):
            p, srv = server(f"flows-{n}")
            out.append(PathContender(f"flows-{n}", f"{n} TCP flows (iperf3 -P {n})", "flows",
                                     n, p, [], srv))
    for n in streams:
        if wanted(f"mptcp-{n}"):
            p, srv = server(f"mptcp-{n}", mptcp=True)
            out.append(PathContender(f"mptcp-{n}", f"MPTCP {n} subflows", "mptcp", n, p, [],
                                     srv))
    variants = [("", "", "")]
    for v in args.path_variant:
        parts = (v.split("|") + ["", ""])[:3]
        if not parts[0] or not re.fullmatch(r"[\w.-]+", parts[0]):
            raise rt.Abort(f"--path-variant {v!r}: want NAME|STRIPE FLAGS|JOIN FLAGS")
        variants.append(tuple(parts))
    for (vname, vstripe, vjoin), n in [(v, n) for v in variants for n in streams]:
        key = f"agentproxy-{n}" + (f"-{vname}" if vname else "")
        if not wanted(key) and not (vname and wanted(f"agentproxy-{n}")):
            continue
        p, srv = server(key)
        back, front = next_port(), next_port()
        j = rt.spawn(f"path-{tag}-{key}-join",
                     ["ip", "netns", "exec", path.s, args.proxy, "join", "--listen",
                      f"{SERVER_IP}:{back}", "--target", f"{SERVER_IP}:{p}", "--events",
                      "uring"] + cc + common + shlex.split(args.path_join_flags) +
                     shlex.split(vjoin), logdir)
        s = rt.spawn(f"path-{tag}-{key}-stripe",
                     ["ip", "netns", "exec", path.c, args.proxy, "stripe", "--listen",
                      f"127.0.0.1:{front}", "--peer", f"{SERVER_IP}:{back}", "--streams",
                      str(n), "--events", "uring"] + cc + common +
                     shlex.split(args.path_stripe_flags) + shlex.split(vstripe), logdir)
        path.wait_listen([j], back, key)
        path.wait_listen([s], front, key)
        how = "; ".join(f"{side} {fl}" for side, fl in (("stripe", vstripe), ("join", vjoin))
                        if fl.strip())
        label = f"agentproxy {n} streams" + (f" [{vname}: {how}]" if vname else "")
        c = PathContender(key, label, "agentproxy", n, front, [s, j], srv)
        c.stream_port = back
        out.append(c)
    return out


# ------------------------------------------------------------------ one run

SS_FIELDS = {
    "cwnd": re.compile(r"\bcwnd:(\d+)"), "ssthresh": re.compile(r"\bssthresh:(\d+)"),
    "rtt_ms": re.compile(r"\brtt:([\d.]+)/"), "retrans": re.compile(r"\bretrans:\d+/(\d+)"),
    "bytes_acked": re.compile(r"\bbytes_acked:(\d+)"),
    "bytes_received": re.compile(r"\bbytes_received:(\d+)"),
    "rwnd_limited_pct": re.compile(r"\brwnd_limited:\d+ms\(([\d.]+)%\)"),
    "sndbuf_limited_pct": re.compile(r"\bsndbuf_limited:\d+ms\(([\d.]+)%\)"),
    "rcv_space": re.compile(r"\brcv_space:(\d+)"),
    "rmem_alloc": re.compile(r"skmem:\(r(\d+),"),
}
CC_RE = re.compile(r"\s(cubic|bbr|reno)\s")


def parse_ss(text):
    """`ss -tinmH` output -> one dict per socket (the header line + its info line)."""
    socks, cur = [], None
    for line in text.splitlines():
        if not line.startswith((" ", "\t")) and line.strip():
            f = line.split()
            # Recv-Q Send-Q Local:Port Peer:Port (a state filter leaves the State column out)
            cur = {"local": f[2] if len(f) > 2 else "", "peer": f[3] if len(f) > 3 else "",
                   "info": ""}
            socks.append(cur)
        elif cur is not None:
            cur["info"] += " " + line.strip()
    for s in socks:
        info = s.pop("info")
        m = CC_RE.search(info)
        s["cc"] = m.group(1) if m else None
        for k, rx in SS_FIELDS.items():
            m = rx.search(info)
            s[k] = float(m.group(1)) if m else None
        s["mptcp_subflow"] = "tcp-ulp-mptcp" in info
    return socks


def sample(path, c, out):
    """ss on both ends in the middle of a run (filled into out)."""
    try:
        out["client"] = parse_ss(path.ns(path.c, "ss", "-tinmH", "state", "established",
                                         check=False).stdout)
        out["server"] = parse_ss(path.ns(path.s, "ss", "-tinmH", "state", "established",
                                         check=False).stdout)
        if c.kind == "mptcp":
            txt = path.ns(path.c, "ss", "-MiH", check=False).stdout
            out["mptcp_subflows"] = [int(x) + 1 for x in re.findall(r"\bsubflows:(\d+)", txt)]
            out["mptcp_raw"] = txt[-2000:]
    except Exception as e:  # a failed sample must not fail the run
        out["error"] = str(e)


def iperf(path, c, seconds, rt, omit=0):
    argv = ["ip", "netns", "exec", path.c] + (["mptcpize", "run"] if c.kind == "mptcp" else [])
    host = "127.0.0.1" if c.kind in ("haproxy", "agentproxy") else SERVER_IP
    argv += ["iperf3", "-c", host, "-p", str(c.port), "-t", str(seconds), "-J",
             "--connect-timeout", "3000"]
    if omit:
        argv += ["-O", str(omit)]
    if c.kind == "flows":
        argv += ["-P", str(c.n)]
    ss = {}
    timer = threading.Timer(omit + min(seconds * 0.6, seconds - 0.5), sample, (path, c, ss))
    timer.start()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 20)
    except subprocess.TimeoutExpired:
        return None, "timed out", ss
    finally:
        timer.cancel()
        timer.join()
    try:
        j = json.loads(r.stdout)
    except ValueError:
        return None, (r.stderr.strip() or f"exit {r.returncode}"), ss
    if "error" in j:
        return None, j["error"], ss
    try:
        res = {"bps": j["end"]["sum_received"]["bits_per_second"],
               "bytes": j["end"]["sum_received"]["bytes"],
               "retransmits": j["end"]["sum_sent"].get("retransmits"),
               "sent_bytes": j["end"]["sum_sent"]["bytes"]}
    except KeyError:
        return None, "no end.sum_received in iperf3 JSON", ss
    return res, None, ss


def streams_of(c, ss):
    """The sockets of c's data path as its sender sees them (client namespace)."""
    socks = ss.get("client", [])
    if c.kind == "agentproxy":
        # Two sessions cross: iperf3's control connection and its data connection; the
        # control session's streams carry a few hundred bytes.
        mine = [s for s in socks if s["peer"].endswith(f":{c.stream_port}")]
        return [s for s in mine if (s["bytes_acked"] or 0) > 65536] or mine
    port = f":{c.port}"
    mine = [s for s in socks if s["peer"].endswith(port) and s["peer"].startswith(SERVER_IP)]
    # iperf3's control connection carries next to nothing: leave it out.
    return [s for s in mine if (s["bytes_acked"] or 0) > 1e6] or mine


# ------------------------------------------------------------------ a scenario


def run_scenario(rt, args, name, logdir, tmp, progress, deadline, results):
    sc = SCENARIOS[name]
    streams = [int(x) for x in args.path_streams.split(",") if x]
    omit = args.path_omit
    seconds = args.path_seconds or sc["seconds"]
    path = netpath.Path(rt, logdir, args.delayline, name, sc["one_way_ms"], sc["loss"],
                        rate=sc["rate"], per_flow=sc["per_flow"], congestion=args.path_cc)
    res = {"name": name, "label": sc["label"], "config": {k: v for k, v in sc.items()},
           "seconds": args.path_seconds or sc["seconds"],
           "omit": args.path_omit,
           "runs": [], "validation": {}, "contenders": [], "agent_stats": {}}
    results.append(res)  # kept even if the run is cut short
    try:
        progress(f"paths: {name}: building the namespaces ({sc['label']})")
        path.up()
        v = res["validation"]
        v["ping"] = path.ping(20 if not args.quick else 10, 0.05)
        progress(f"paths: {name}: ping RTT {fmt_ping(v['ping'])} "
                 f"(configured {2 * sc['one_way_ms']} ms)")
        # One flow with no loss: the delay line must pass the configured rate.
        if sc["loss"]:
            path.start_delayline(0.0)
        one = PathContender("check", "check", "one", 1, 5200, [], None)
        proc = rt.spawn(f"path-{name}-iperf3-server-check",
                        ["ip", "netns", "exec", path.s, "iperf3", "-s", "-B", SERVER_IP, "-p",
                         "5200"], logdir)
        path.wait_listen([proc], 5200, "iperf3 check server")
        r, err, ss = iperf(path, one, seconds, rt, omit)
        rt.stop(proc)
        v["one_flow_no_loss_mbit"] = r["bps"] / 1e6 if r else None
        v["one_flow_no_loss_error"] = err
        v["one_flow_no_loss_retransmits"] = r["retransmits"] if r else None
        v["one_flow_cc"] = sorted({s["cc"] for s in streams_of(one, ss) if s["cc"]})
        progress(f"paths: {name}: one flow, no loss: "
                 f"{r['bps'] / 1e6:.0f} Mbit/s" if r else f"FAILED: {err}")
        if sc["loss"]:
            path.start_delayline(sc["loss"])
        dl0 = path.counters()
        contenders = start_contenders(rt, path, args, streams, logdir, tmp, name)
        res["contenders"] = [{"key": c.key, "label": c.label, "kind": c.kind, "n": c.n,
                              "stream_port": getattr(c, "stream_port", None)}
                             for c in contenders]
        total = len(contenders) * args.path_repeats
        k = 0
        for rnd in range(1, args.path_repeats + 1):
            for c in contenders:
                k += 1
                if time.monotonic() > deadline:
                    raise rt.Abort("path scenarios: out of time (--path-timeout)")
                if c.kind == "mptcp":
                    path.set_mptcp_subflows(c.n)
                before = path.counters()
                pg = {p.pid for p in c.procs}
                cpu0, busy0, t0 = rt.cpu_seconds(pg) if pg else 0, rt.cpu_times(), \
                    time.monotonic()
                r, err, ss = iperf(path, c, seconds, rt, omit)
                wall = time.monotonic() - t0
                cpu = (rt.cpu_seconds(pg) - cpu0) / wall if pg else None
                busy1 = rt.cpu_times()
                after = path.counters()
                run = {"key": c.key, "round": rnd, "error": err,
                       "mbit": r["bps"] / 1e6 if r else None,
                       "retransmits": r["retransmits"] if r else None,
                       "sent_bytes": r["sent_bytes"] if r else None,
                       "delayline": delta(before, after), "ss": ss, "proxy_cpu": cpu,
                       "machine_busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
                       "streams": streams_of(c, ss)}
                run["cc"] = sorted({s["cc"] for s in run["streams"] if s["cc"]})
                if c.kind == "mptcp":
                    run["mptcp_subflows"] = max(ss.get("mptcp_subflows") or [0])
                res["runs"].append(run)
                extra = ""
                if c.kind == "mptcp":
                    extra = f"  subflows {run['mptcp_subflows']}"
                if cpu is not None:
                    extra += f"  proxy CPU {cpu * 100:3.0f}%"
                extra += f"  machine busy {run['machine_busy'] * 100:3.0f}%"
                if r:
                    line = f"{r['bps'] / 1e6:7.1f} Mbit/s  retrans {r['retransmits']}{extra}"
                else:
                    line = f"FAILED: {err}"
                progress(f"[{k:2d}/{total}] {name} round {rnd}  {c.label:30s} {line}")
                if err:
                    rt.stop(c.server)
                    c.server = rt.spawn(c.server.bench_name + "-again", c.server.args,
                                        logdir)
                    time.sleep(0.3)
        res["delayline_total"] = delta(dl0, path.counters())
        for c in contenders:
            for p in [c.server] + c.procs:
                rt.stop(p)
            if c.kind == "agentproxy":
                res["agent_stats"][c.key] = agent_stats(c)
    finally:
        path.down()
    return res


def delta(a, b):
    out = {}
    for d, x in b["directions"].items():
        y = a["directions"][d]
        out[d] = {k: x[k] - y[k] for k in x if isinstance(x[k], (int, float)) and
                  k not in ("delay_ms", "max_queued_bytes")}
        out[d]["max_queued_bytes"] = x["max_queued_bytes"]
    return out


def agent_stats(c):
    """agentproxy's own counter lines from its logs (printed on exit)."""
    lines = []
    for p in c.procs:
        try:
            with open(p.bench_log.name, errors="replace") as fh:
                lines += [ln.strip() for ln in fh if ln.startswith(("stats[", "events["))]
        except OSError:
            pass
    return lines


def fmt_ping(p):
    if "error" in p:
        return "FAILED: " + p["error"]
    return (f"min/avg/max {p['min_ms']:.1f}/{p['avg_ms']:.1f}/{p['max_ms']:.1f} ms, "
            f"{p['received']}/{p['count']} answered")


def run(args, logdir, rt, progress=print):
    """Every scenario in turn; returns the results (also on a partial run)."""
    args.proxy = os.path.join(args.build, "agentproxy")
    args.delayline = os.path.join(args.build, "bench_delayline")
    args.path_cc = getattr(args, "congestion", "") or "cubic"
    for f in (args.proxy, args.delayline):
        if not os.access(f, os.X_OK):
            raise rt.Abort(f"{f} is missing (run `make bench`)")
    for tool in ("mptcpize", "ping", "nft", "tc"):
        if not subprocess.run(["which", tool], capture_output=True).returncode == 0:
            raise rt.Abort(f"{tool} is not installed (run `make deps`)")
    if os.geteuid() != 0:
        raise rt.Abort("the path scenarios need root (network namespaces)")
    netpath.cleanup_stale()
    out = {"meta": {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "loadavg_start": open("/proc/loadavg").read().split()[:3],
                    "seconds": args.path_seconds or "per scenario",
                    "repeats": args.path_repeats,
                    "omit_lossy": args.path_omit,
                    "congestion": args.path_cc,
                    "agent_flags": " ".join(x for x in (
                        args.path_agent_flags,
                        args.path_stripe_flags and "stripe: " + args.path_stripe_flags,
                        args.path_join_flags and "join: " + args.path_join_flags) if x),
                    "iperf3": subprocess.run(["iperf3", "--version"], capture_output=True,
                                             text=True).stdout.splitlines()[0]},
           "scenarios": []}
    deadline = time.monotonic() + args.path_timeout
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="agentmux-paths-")
    try:
        for name in [x for x in args.path_scenarios.split(",") if x]:
            if name not in SCENARIOS:
                raise rt.Abort(f"--path-scenarios: no scenario {name!r} "
                               f"(have {', '.join(SCENARIOS)})")
            try:
                run_scenario(rt, args, name, logdir, tmp, progress, deadline,
                             out["scenarios"])
            except netpath.PathError as e:
                progress(f"paths: {name}: FAILED: {e}")
                out["scenarios"][-1]["error"] = str(e)
    except rt.Abort as e:  # out of time or a signal: report what was measured
        progress(f"paths: aborted: {e}")
        out["error"] = str(e)
    finally:
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
        out["meta"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        out["meta"]["elapsed_seconds"] = round(time.monotonic() - t0, 1)
    return out


# ------------------------------------------------------------------ standalone


def main():
    import run as rt  # bench/run.py as a module: its spawn/stop/Abort and HAProxy config
    import pathreport
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", help="output directory (default: BUILD/bench)")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s, N = 4 only")
    ap.add_argument("--congestion", default="", help="congestion control (default cubic)")
    ap.add_argument("--no-plot", action="store_true")
    add_args(ap)
    args = ap.parse_args()
    if args.quick:
        quick(args)
    out = args.out or os.path.join(args.build, "bench")
    logdir = os.path.join(out, "logs")
    os.makedirs(logdir, exist_ok=True)
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, rt._on_signal)
    signal.alarm(args.path_timeout + 60)
    res = None
    try:
        res = run(args, logdir, rt, lambda s: print(s, flush=True))
    except rt.Abort as e:
        print(f"paths: aborted: {e}", file=sys.stderr)
    finally:
        signal.alarm(0)
        rt.stop_all()
    if not res:
        return 1
    md = pathreport.render_md(res)
    print(md)
    with open(os.path.join(out, "paths.md"), "w") as fh:
        fh.write(md)
    with open(os.path.join(out, "paths.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    if not args.no_plot:
        for f in pathreport.plot(out, res):
            print(f"paths: wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
