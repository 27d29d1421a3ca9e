# SPDX-License-Identifier: MIT
"""The report of the event-path scenario (bench/events.py): events per second, CPU
per event, the counts seen and filtered, per source and load; the qemu guest's
figures (kmod among them) apart, relative to its own uring source."""

import os

LABEL = {"direct": "direct (no proxy)", "uring": "agentproxy --events uring",
         "bpf": "agentproxy --events bpf", "kmod": "agentproxy --events kmod"}


def f0(x):
    return "-" if x is None else f"{x:,.0f}"


def f1(x):
    return "-" if x is None else f"{x:.1f}"


def f2(x):
    return "-" if x is None else f"{x:.2f}"


def ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def tables(rows, loads, relative_only=False):
    L = []
    for load, reconnect in loads:
        rs = [r for r in rows if r["load"] == load]
        if not rs:
            continue
        what = ("sessions stay open" if not reconnect else
                f"each session reconnects after {reconnect} round trips")
        L += [f"**{load}** ({what})", ""]
        if relative_only:
            L += ["| contender | round trips/s vs uring | events passed/s vs uring | proxy CPU "
                  "per event vs uring | proxy CPU per round trip vs uring | round trips/s "
                  "(TCG) | proxy CPU us per event (TCG) | rounds |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for r in rs:
                L.append(f"| {LABEL.get(r['source'], r['source'])} | "
                         f"{ratio(r.get('round_trips_per_s_vs_uring'))} | "
                         f"{ratio(r.get('passed_per_s_vs_uring'))} | "
                         f"{ratio(r.get('cpu_us_per_event_vs_uring'))} | "
                         f"{ratio(r.get('cpu_us_per_trip_vs_uring'))} | "
                         f"{f0(r.get('round_trips_per_s'))} | {f1(r.get('cpu_us_per_event'))} "
                         f"| {r['rounds']} |")
        else:
            L += ["| contender | round trips/s | events passed/s (stripe + join) | proxy CPU "
                  "us per passed event (stripe / join / both) | proxy CPU us per round trip | "
                  "machine CPU us per round trip | proxy CPU (stripe / join) | vs uring: "
                  "events/s, CPU per event | rounds |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in rs:
                sd = r.get("sides") or {}
                st, jn = sd.get("stripe", {}), sd.get("join", {})
                cpu = (f"{st['cpu'] * 100:.0f}% / {jn['cpu'] * 100:.0f}%"
                       if st.get("cpu") is not None and jn.get("cpu") is not None else "-")
                per_ev = (f"{f1(st.get('cpu_us_per_event'))} / {f1(jn.get('cpu_us_per_event'))}"
                          f" / {f1(r.get('cpu_us_per_event'))}" if sd else "-")
                vs = (f"{ratio(r.get('passed_per_s_vs_uring'))}, "
                      f"{ratio(r.get('cpu_us_per_event_vs_uring'))}" if sd else "-")
                L.append(f"| {LABEL.get(r['source'], r['source'])} | "
                         f"{f0(r.get('round_trips_per_s'))} | {f0(r.get('passed_per_s'))} | "
                         f"{per_ev} | {f1(r.get('cpu_us_per_trip'))} | "
                         f"{f1(r.get('machine_us_per_trip'))} | {cpu} | {vs} | {r['rounds']} |")
        L += ["", "| contender | side | seen | passed | filtered | coalesced | data_ready | "
                  "state_change | write_space | error_report | completions | overflows / "
                  "sweeps |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rs:
            for side, d in (r.get("sides") or {}).items():
                L.append(f"| {LABEL.get(r['source'], r['source'])} | {side} | "
                         + " | ".join(f2(d.get(k + "_per_trip")) for k in (
                             "seen", "passed", "filtered", "coalesced", "data_ready",
                             "state_change", "write_space", "error_report", "completions"))
                         + f" | {f0(d.get('overflows_per_s'))} / {f0(d.get('sweeps_per_s'))} |")
        L += ["", "(counts per round trip, medians of the rounds; overflows and sweeps per "
                  "second)", ""]
        errs = [(r["source"], e) for r in rs for e in r.get("errors", [])]
        for src, e in errs:
            L.append(f"- {src} failed a run: {e}")
        if errs:
            L.append("")
    return L


def render_md(res):
    L = ["## Event path: events per second and CPU per event", ""]
    if res.get("error") and not res.get("summary"):
        return "\n".join(L + [f"not measured: {res['error']}", ""])
    L.append(
        f"{res['sessions']} sessions, each a lock-step ping-pong of {res['size']}-byte "
        f"messages (bench/chatter.c: one message in flight per session, so each is one "
        f"data-arrival event at every hop), client -> stripe (4 streams) -> join -> an "
        f"epoll echo, {res['repeats']} interleaved rounds of {res['seconds']} s, medians. "
        f"bench_chatter sends SIGUSR1 to both proxies and reads their CPU time "
        f"(/proc/PID/stat) at the start and the end of the measured interval, so the "
        f"counters and the CPU cover exactly it. seen = data_ready + state_change + "
        f"write_space + error_report (what the source saw on its watched sockets); passed = "
        f"events handed to the agent; filtered = seen and not passed (in the kernel, for "
        f"bpf and kmod); coalesced = arrivals merged into an event already pending; "
        f"completions = CQEs the source consumed. Proxy CPU per event = CPU of stripe and "
        f"join / events they passed (everything a proxy does per event: the read or splice, "
        f"the send, the loop); machine CPU per round trip = all CPUs' busy time / round "
        f"trips (client, echo and the kernel's softirq included: where a filter runs).")
    L.append("")
    if res.get("failed"):
        for f in res["failed"]:
            L.append(f"- --events {f['source']} did not start: {f['error']}")
        L.append("")
    L += tables(res.get("summary", []), res["loads"])
    vm = res.get("vm")
    if vm:
        L += ["### kmod: in the qemu guest (relative only)", ""]
        if vm.get("error") and not vm.get("runs"):
            L += [f"not measured: {vm['error']}", ""]
        else:
            L.append(
                f"Guest {vm.get('guest') or vm.get('kernel')} under TCG (emulated CPUs, 2 "
                f"vCPUs, tens of times slower than the host: only the ratios to the guest's own "
                f"uring source and the counts per round trip mean anything), the same workload "
                f"with {vm['sessions']} sessions, {vm['repeats']} rounds of {vm['seconds']} s, "
                f"every source with a fresh stripe and join; boot to poweroff "
                f"{vm.get('boot_seconds')} s." + (f" Note: {vm['error']}." if vm.get("error")
                                                   else ""))
            L.append("")
            L += tables(vm.get("summary", []), res["loads"], relative_only=True)
            for f in vm.get("failed", []):
                L.append(f"- guest round {f['round']} {f['load']} {f['source']}: {f['error']}")
            L.append("")
    return "\n".join(L)


def plot(out, res):
    rows = [r for r in res.get("summary", []) if r.get("sides")]
    vm = [r for r in (res.get("vm") or {}).get("summary", []) if r.get("sides")]
    if not rows and not vm:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    loads = [name for name, _ in res["loads"]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5))
    colors = {"uring": "#3b75af", "bpf": "#ef8636", "kmod": "#6a9f58"}

    def bars(ax, rs, key, ylabel, title, fmt):
        srcs = list(dict.fromkeys(r["source"] for r in rs))
        w = 0.8 / max(1, len(srcs))
        for i, src in enumerate(srcs):
            vals = [next((r.get(key) or 0 for r in rs if r["load"] == ld and
                          r["source"] == src), 0) for ld in loads]
            xs = [x + (i - (len(srcs) - 1) / 2) * w for x in range(len(loads))]
            bs = ax.bar(xs, vals, w, label=src, color=colors.get(src))
            for b, v in zip(bs, vals):
                ax.annotate(fmt(v), (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(loads)))
        ax.set_xticklabels(loads)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)

    bars(axes[0], rows, "passed_per_s", "events passed per second (stripe + join)",
         f"host: events/s, {res['sessions']} sessions", lambda v: f"{v / 1000:.0f}k")
    bars(axes[1], rows, "cpu_us_per_event", "proxy CPU us per passed event",
         "host: CPU per event", lambda v: f"{v:.1f}")
    if vm:
        bars(axes[2], vm, "cpu_us_per_event_vs_uring", "CPU per event / guest's uring",
             "qemu guest (TCG): CPU per event vs uring", lambda v: f"{v:.2f}x")
        axes[2].axhline(1.0, color="gray", linestyle="--", linewidth=1)
    else:
        axes[2].axis("off")
    fig.suptitle(f"event path, {res['size']}-byte lock-step ping-pong, {res['date'][:10]}",
                 fontsize=10)
    fig.tight_layout()
    path = os.path.join(out, "events.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
