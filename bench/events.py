#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The event-path scenario of the benchmark: how many events each event source
passes per second and what each costs in the proxy's CPU.

Workload (bench/chatter.c): --events-sessions client connections (64), each a
lock-step ping-pong of --events-size bytes (64): the next message goes when the
echo is back, so every message is one data-arrival event at every hop and none is
merged into a bigger read. Two loads:
  steady  the sessions stay open: nearly every event is data arriving
  churn   each session reconnects after --events-reconnect (20) round trips, so
          connects and closes (state changes, the filter's to drop) are events too
Chain: bench_chatter run -> stripe (4 streams, --events SOURCE) -> join -> bench_chatter
serve (an epoll echo); `direct` is the same workload with no proxy.

Per run (--events-seconds, interleaved rounds, medians): round trips/s; for stripe and
join the counters of their `events[...]` line (agentproxy prints it on SIGUSR1;
bench_chatter sends it at the start and the end of exactly the measured interval and
reads their CPU time, /proc/PID/stat, at the same moments): seen (data_ready +
state_change + write_space + error_report), passed, filtered, coalesced,
completions; proxy CPU per passed event and per round trip; the whole machine's busy
CPU per round trip (the filter runs in softirq, often charged to another process).

Sources: uring and bpf here; kmod only in the qemu guest (bench/eventsvm.py), where
uring and bpf run again, so kmod is reported apart and relative to them.

Run alone:  /usr/bin/python3 bench/events.py --build build [--quick]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eventsvm  # noqa: E402

HOST = "127.0.0.1"
EVENTS_RE = re.compile(
    r"events\[(\w+)\]: data_ready (\d+) state_change (\d+) write_space (\d+) "
    r"error_report (\d+); passed (\d+) filtered (\d+) coalesced (\d+); completions (\d+) "
    r"bytes (\d+) overflows (\d+) sweeps (\d+)")
COUNTERS = ("data_ready", "state_change", "write_space", "error_report", "passed",
            "filtered", "coalesced", "completions", "bytes", "overflows", "sweeps")


def add_args(ap):
    g = ap.add_argument_group("event path (bench/events.py)")
    g.add_argument("--no-events", action="store_true", help="skip the event-path scenario")
    g.add_argument("--events-sources", default="uring,bpf",
                   help="event sources on this host (default uring,bpf)")
    g.add_argument("--events-loads", default="steady,churn",
                   help="loads: steady, churn (default both)")
    g.add_argument("--events-sessions", type=int, default=64, help="sessions (64)")
    g.add_argument("--events-size", type=int, default=64, help="bytes per message (64)")
    g.add_argument("--events-reconnect", type=int, default=20,
                   help="churn: round trips per connection (20)")
    g.add_argument("--events-seconds", type=float, default=3, help="seconds per run (3)")
    g.add_argument("--events-repeats", type=int, default=3, help="rounds (3)")
    g.add_argument("--no-events-vm", action="store_true",
                   help="skip the qemu guest (the kmod source)")
    g.add_argument("--events-vm-kernel", default="6.12",
                   help="guest kernel, as tests/vm/fetch.sh names it (6.12)")
    g.add_argument("--events-vm-sources", default="uring,bpf,kmod",
                   help="event sources in the guest (uring,bpf,kmod)")
    g.add_argument("--events-vm-sessions", type=int, default=16, help="guest sessions (16)")
    g.add_argument("--events-vm-seconds", type=float, default=2,
                   help="guest seconds per run (2)")
    g.add_argument("--events-vm-repeats", type=int, default=2, help="guest rounds (2)")
    g.add_argument("--events-timeout", type=int, default=300,
                   help="stop the scenario after this many seconds (300)")


def quick(args):
    args.events_seconds, args.events_repeats = 1, 1
    args.events_vm_seconds, args.events_vm_repeats = 1, 1


def load_list(args):
    out = []
    for name in [x for x in args.events_loads.split(",") if x]:
        if name not in ("steady", "churn"):
            raise ValueError(f"--events-loads: no load {name!r} (have steady, churn)")
        out.append((name, 0 if name == "steady" else args.events_reconnect))
    return out


def parse_events(line):
    m = EVENTS_RE.search(line)
    if not m:
        return None
    return dict(zip(COUNTERS, (int(x) for x in m.groups()[1:])))


def delta(lines):
    """Counters between the first two events lines (start and end of the run)."""
    if len(lines) < 2:
        return None
    a, b = parse_events(lines[0]), parse_events(lines[1])
    if not a or not b:
        return None
    d = {k: b[k] - a[k] for k in COUNTERS}
    d["seen"] = d["data_ready"] + d["state_change"] + d["write_space"] + d["error_report"]
    return d


def make_run(load, source, rnd, res, sides, pids):
    """One run's record from bench_chatter's JSON and the sides' counter deltas."""
    tck = res["clk_tck"]
    run = {"load": load, "source": source, "round": rnd, "error": None,
           "seconds": res["seconds"], "round_trips": res["round_trips"],
           "round_trips_per_s": res["round_trips_per_s"],
           "new_connections": res.get("new_connections", 0),
           "machine_busy_s": res["machine_busy_ticks"] / tck,
           "machine_busy": res["machine_busy_ticks"] / max(1, res["machine_total_ticks"]),
           "sides": {}}
    for side, pid in pids.items():
        t = res["cpu_ticks"].get(str(pid), -1)
        x = dict(sides.get(side) or {})
        x["cpu_s"] = t / tck if t >= 0 else None
        run["sides"][side] = x
    return run


def wait_lines(path, n, timeout=3.0):
    end = time.monotonic() + timeout
    while True:
        with open(path, errors="replace") as fh:
            lines = [ln for ln in fh if ln.startswith("events[")]
        if len(lines) >= n or time.monotonic() > end:
            return lines
        time.sleep(0.05)


# ------------------------------------------------------------------ the host


def host_runs(args, logdir, rt, progress, deadline):
    chatter = os.path.join(args.build, "bench_chatter")
    proxy = os.path.join(args.build, "agentproxy")
    echo_port = rt.free_ports(1)[0]
    echo = rt.spawn("events-echo", [chatter, "serve", str(echo_port)], logdir)
    rt.wait_listen(echo_port, [echo], "events echo server")
    contenders, failed = [("direct", echo_port, {})], []
    for src in [x for x in args.events_sources.split(",") if x]:
        back, front = rt.free_ports(2)
        j = rt.spawn(f"events-{src}-join", [proxy, "join", "--listen", f"{HOST}:{back}",
                                            "--target", f"{HOST}:{echo_port}", "--events",
                                            src], logdir)
        s = rt.spawn(f"events-{src}-stripe", [proxy, "stripe", "--listen", f"{HOST}:{front}",
                                              "--peer", f"{HOST}:{back}", "--events", src],
                     logdir)
        try:
            rt.wait_listen(back, [j], f"events {src} join")
            rt.wait_listen(front, [s], f"events {src} stripe")
        except rt.Abort as e:
            progress(f"events: --events {src}: FAILED to start: {e}")
            failed.append({"source": src, "error": str(e)})
            rt.stop(s)
            rt.stop(j)
            continue
        contenders.append((src, front, {"stripe": s, "join": j}))
    runs = []
    loads = args.events_load_list
    total = args.events_repeats * len(loads) * len(contenders)
    k = 0
    for rnd in range(1, args.events_repeats + 1):
        for load, reconnect in loads:
            for src, port, procs in contenders:
                k += 1
                if time.monotonic() > deadline:
                    raise rt.Abort("events: out of time (--events-timeout)")
                before = {side: len(wait_lines(p.bench_log.name, 0))
                          for side, p in procs.items()}
                argv = [chatter, "run", "-r", str(reconnect), str(port),
                        str(args.events_sessions), str(args.events_seconds),
                        str(args.events_size)] + [str(p.pid) for p in procs.values()]
                r = subprocess.run(argv, capture_output=True, text=True,
                                   timeout=args.events_seconds + 60)
                try:
                    res = json.loads(r.stdout)
                except ValueError:
                    err = r.stderr.strip() or f"exit {r.returncode}"
                    runs.append({"load": load, "source": src, "round": rnd, "error": err})
                    progress(f"[{k:2d}/{total}] events round {rnd}  {load:6s} {src:6s} "
                             f"FAILED: {err}")
                    continue
                sides = {}
                for side, p in procs.items():
                    lines = wait_lines(p.bench_log.name, before[side] + 2)
                    sides[side] = delta(lines[before[side]:before[side] + 2])
                run = make_run(load, src, rnd, res, sides,
                               {side: p.pid for side, p in procs.items()})
                runs.append(run)
                progress(f"[{k:2d}/{total}] events round {rnd}  {load:6s} {src:6s} "
                         + line_of(run))
    for _, _, procs in contenders:
        for p in procs.values():
            rt.stop(p)
    rt.stop(echo)
    return runs, failed


def line_of(run):
    s = f"{run['round_trips_per_s']:8.0f} round trips/s"
    passed = sum((x.get("passed") or 0) for x in run["sides"].values())
    cpu = sum((x.get("cpu_s") or 0) for x in run["sides"].values())
    if passed:
        s += (f"  {passed / run['seconds']:8.0f} events passed/s  "
              f"{cpu / passed * 1e6:5.1f} us proxy CPU per event")
    return s + f"  machine busy {run['machine_busy'] * 100:3.0f}%"


# ------------------------------------------------------------------ the guest


def vm_runs(args, logdir, progress):
    out = {"sources": args.events_vm_sources, "sessions": args.events_vm_sessions,
           "seconds": args.events_vm_seconds, "repeats": args.events_vm_repeats,
           "runs": [], "failed": []}
    why = eventsvm.check_tools()
    if why:
        out["error"] = "skipped: " + why
        progress("events: vm: " + out["error"])
        return out
    work = os.path.abspath(os.path.join(os.path.dirname(logdir), "events-vm"))
    os.makedirs(work, exist_ok=True)
    log = os.path.join(work, "build.log")
    open(log, "w").close()
    try:
        env, initrd = eventsvm.build(args, work, log, progress)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        out["error"] = str(e)
        progress("events: vm: FAILED: " + out["error"])
        return out
    out["kernel"] = env["KREL"]
    n = len(args.events_load_list) * len(args.events_vm_sources.split(",")) * \
        args.events_vm_repeats
    budget = int(30 + n * (args.events_vm_seconds + 8))
    progress(f"events: vm: booting {env['KREL']} (TCG): {n} runs of "
             f"{args.events_vm_seconds} s ...")
    secs, rc, results = eventsvm.boot(env, initrd, work, budget)
    out["boot_seconds"] = round(secs, 1)
    out["qemu_status"] = rc
    guest, rs, evs, failed = eventsvm.parse(results)
    out["guest"] = guest
    out["failed"] = failed
    for (load, src, rnd), res in rs.items():  # in the order the guest ran them
        sides = {side: delta(evs.get((load, src, rnd, side), [])) for side in ("stripe", "join")}
        pids = {side: pid for side, pid in zip(("stripe", "join"), res["cpu_ticks"].keys())}
        run = make_run(load, src, rnd, res, sides, pids)
        out["runs"].append(run)
        progress(f"events: vm: round {rnd}  {load:6s} {src:6s} " + line_of(run))
    for f in failed:
        progress(f"events: vm: round {f['round']}  {f['load']} {f['source']} FAILED: "
                 f"{f['error']}")
    if rc == 124:
        out["error"] = f"the guest did not finish within {budget} s (see {work}/console.log)"
    elif not out["runs"]:
        out["error"] = f"no results from the guest (qemu status {rc}; see {work}/console.log)"
    if out.get("error"):
        progress("events: vm: " + out["error"])
    return out


# ------------------------------------------------------------------ summary


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs):
    """Per (load, source): medians over the rounds."""
    rows = []
    keys = list(dict.fromkeys((r["load"], r["source"]) for r in runs))
    for load, src in keys:
        ok = [r for r in runs if r["load"] == load and r["source"] == src and not r["error"]]
        row = {"load": load, "source": src, "rounds": len(ok),
               "errors": [r["error"] for r in runs if r["load"] == load and
                          r["source"] == src and r["error"]]}
        if not ok:
            rows.append(row)
            continue
        row["round_trips_per_s"] = med([r["round_trips_per_s"] for r in ok])
        row["machine_us_per_trip"] = med([r["machine_busy_s"] / r["round_trips"] * 1e6
                                          for r in ok if r["round_trips"]])
        row["machine_busy"] = med([r["machine_busy"] for r in ok])
        row["new_connections_per_s"] = med([r["new_connections"] / r["seconds"] for r in ok])
        if any(r["sides"] for r in ok):
            per_side = {}
            for side in ("stripe", "join"):
                xs = [r["sides"].get(side) or {} for r in ok]
                d = {}
                for k in COUNTERS + ("seen",):
                    d[k + "_per_s"] = med([x.get(k) / r["seconds"] if x.get(k) is not None
                                           else None for x, r in zip(xs, ok)])
                    d[k + "_per_trip"] = med([x.get(k) / r["round_trips"] if x.get(k) is not
                                              None and r["round_trips"] else None
                                              for x, r in zip(xs, ok)])
                d["cpu_us_per_event"] = med([x["cpu_s"] / x["passed"] * 1e6 for x in xs
                                             if x.get("cpu_s") is not None and x.get("passed")])
                d["cpu"] = med([x["cpu_s"] / r["seconds"] for x, r in zip(xs, ok)
                                if x.get("cpu_s") is not None])
                per_side[side] = d
            row["sides"] = per_side
            both = [(sum(x.get("cpu_s") or 0 for x in r["sides"].values()),
                     sum(x.get("passed") or 0 for x in r["sides"].values()), r) for r in ok]
            row["passed_per_s"] = med([p / r["seconds"] for _, p, r in both])
            row["cpu_us_per_event"] = med([c / p * 1e6 for c, p, _ in both if p])
            row["cpu_us_per_trip"] = med([c / r["round_trips"] * 1e6 for c, _, r in both
                                          if r["round_trips"]])
        rows.append(row)
    for row in rows:  # against the uring source under the same load
        ref = next((x for x in rows if x["load"] == row["load"] and x["source"] == "uring"),
                   None)
        for k in ("round_trips_per_s", "passed_per_s", "cpu_us_per_event", "cpu_us_per_trip",
                  "machine_us_per_trip"):
            if ref and ref.get(k) and row.get(k) is not None:
                row[k + "_vs_uring"] = row[k] / ref[k]
    return rows


def run(args, logdir, rt, progress=print):
    """The host's sources, then the guest's; returns the results."""
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "loadavg_start": open("/proc/loadavg").read().split()[:3],
           "sessions": args.events_sessions, "size": args.events_size,
           "reconnect": args.events_reconnect, "seconds": args.events_seconds,
           "repeats": args.events_repeats}
    args.events_load_list = load_list(args)
    out["loads"] = args.events_load_list
    for f in ("agentproxy", "bench_chatter"):
        if not os.access(os.path.join(args.build, f), os.X_OK):
            raise rt.Abort(f"{args.build}/{f} is missing (run `make bench`)")
    deadline = time.monotonic() + args.events_timeout
    t0 = time.monotonic()
    progress(f"events: {args.events_sessions} sessions of {args.events_size}-byte ping-pong; "
             f"loads {args.events_loads}; sources direct,{args.events_sources}; "
             f"{args.events_repeats} rounds of {args.events_seconds} s")
    try:
        out["runs"], out["failed"] = host_runs(args, logdir, rt, progress, deadline)
        out["summary"] = summarize(out["runs"])
        if not args.no_events_vm:
            out["vm"] = vm_runs(args, logdir, progress)
            out["vm"]["summary"] = summarize(out["vm"]["runs"])
    except rt.Abort as e:
        if str(e).startswith("signal"):
            raise
        out["error"] = str(e)
        progress("events: aborted: " + out["error"])
        out.setdefault("summary", summarize(out.get("runs", [])))
    out["elapsed_seconds"] = round(time.monotonic() - t0, 1)
    out["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    return out


# ------------------------------------------------------------------ standalone


def main():
    import run as rt  # bench/run.py as a module: spawn/stop/Abort, free_ports, wait_listen
    import eventsreport
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build directory (default: build)")
    ap.add_argument("--out", help="output directory (default: BUILD/bench)")
    ap.add_argument("--quick", action="store_true", help="1 round of 1 s: a smoke run")
    ap.add_argument("--no-plot", action="store_true")
    add_args(ap)
    args = ap.parse_args()
    if args.quick:
        quick(args)
    try:
        load_list(args)
    except ValueError as e:
        ap.error(str(e))
    out = args.out or os.path.join(args.build, "bench")
    logdir = os.path.join(out, "logs")
    os.makedirs(logdir, exist_ok=True)
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, rt._on_signal)
    signal.alarm(args.events_timeout + 60)
    res = None
    try:
        res = run(args, logdir, rt, lambda s: print(s, flush=True))
    except rt.Abort as e:
        print(f"events: aborted: {e}", file=sys.stderr)
    finally:
        signal.alarm(0)
        rt.stop_all()
    if not res:
        return 1
    md = eventsreport.render_md(res)
    print(md)
    with open(os.path.join(out, "events.md"), "w") as fh:
        fh.write(md)
    with open(os.path.join(out, "events.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    if not args.no_plot:
        f = eventsreport.plot(out, res)
        if f:
            print(f"events: wrote {f}")
    return 0 if not res.get("error") else 1


if __name__ == "__main__":
    sys.exit(main())
