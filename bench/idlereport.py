# SPDX-License-Identifier: MIT
"""The report of the idle-sessions scenario (bench/idle.py): memory, descriptors and
kernel memory per session on each side, setup time, agentproxy against HAProxy."""

import os


SLAB_NOT_OURS = ("proc_inode_cache",)


def derive(res):
    """Per-session figures from the readings (in place)."""
    n = res["sessions"]
    rd = res["readings"]
    if "idle" not in rd:
        return res
    per = {}
    for side in res["sides"]:
        b, i = rd["before"]["sides"][side], rd["idle"]["sides"][side]
        e = rd.get("after_echo", {}).get("sides", {}).get(side)
        c = rd.get("after_close", {}).get("sides", {}).get(side)
        per[side] = {
            "rss_before": b["VmRSS"], "rss_idle": i["VmRSS"],
            "rss_per_session": (i["VmRSS"] - b["VmRSS"]) / n,
            "anon_per_session": (i.get("RssAnon", 0) - b.get("RssAnon", 0)) / n,
            "sockets_per_session": (i["sockets"] - b["sockets"]) / n,
            "pipes_per_session": (i["pipes"] - b["pipes"]) / n,
            "other_fds_per_session": (i["other"] - b["other"]) / n,
            "rss_per_session_after_echo": (e["VmRSS"] - b["VmRSS"]) / n if e else None,
            "pipes_per_session_after_echo": (e["pipes"] - b["pipes"]) / n if e else None,
            "rss_after_close": c["VmRSS"] if c else None,
            "fds_left_after_close": (sum(c[k] - b[k] for k in ("sockets", "pipes", "other"))
                                     if c else None),
        }
    res["per_side"] = per
    res["rss_per_session_total"] = sum(x["rss_per_session"] for x in per.values())
    # proc_inode_cache is left out: something on these machines lists /proc/PID/fd of
    # processes with many descriptors (seen: 15,000 sockets held by an idle Python
    # process grew it by 15,000 inodes within 5 s), the observer's memory, not the chain's.
    sb, si = rd["before"]["slab"], rd["idle"]["slab"]
    if si:
        res["slab_per_session"] = sum(si.get(k, 0) - sb.get(k, 0) for k in si
                                      if k not in SLAB_NOT_OURS) / n
        res["slab_source"] = "/proc/slabinfo without " + ", ".join(SLAB_NOT_OURS)
    else:
        mb, mi = rd["before"]["meminfo"], rd["idle"]["meminfo"]
        res["slab_per_session"] = (mi["Slab"] - mb["Slab"]) / n
        res["slab_source"] = "/proc/meminfo Slab"
    growth = sorted(((k, (si.get(k, 0) - sb.get(k, 0)) / n) for k in si
                     if k not in SLAB_NOT_OURS), key=lambda x: -x[1])
    res["slab_top"] = [(k, v) for k, v in growth[:8] if v > 16]
    ss_b, ss_i = rd["before"]["sockstat"], rd["idle"]["sockstat"]
    if ss_b.get("tcp_inuse") is not None:
        res["tcp_sockets_per_session"] = (ss_i["tcp_inuse"] - ss_b["tcp_inuse"]) / n
        res["tcp_mem_per_session"] = (ss_i["tcp_mem_pages"] - ss_b["tcp_mem_pages"]) * \
            os.sysconf("SC_PAGE_SIZE") / n
    return res


def kib(x):
    return "-" if x is None else f"{x / 1024:.1f} KiB"


def mib(x):
    return "-" if x is None else f"{x / 1048576:.1f} MiB"


def num(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"


def render_md(res):
    n = res.get("sessions")
    L = [f"## Idle sessions: {n} held open at once through each chain", ""]
    if res.get("error"):
        L += [f"not measured: {res['error']}", ""]
        return "\n".join(L)
    L.append(
        f"Clients connect in batches of {res['batch']} (a batch waits until the holder, "
        f"`bench_chatter hold`, has accepted the one before), through a fresh chain each: "
        f"agentproxy stripe ({res['streams']} streams, `--events {res['events']}`, "
        f"`--max-sessions` its share + 16) -> join, and HAProxy A -> B (splice, "
        f"`tune.pipesize 1048576`, `nbthread 1`, `maxconn` its share + 16), in a network "
        f"namespace of their own "
        f"(ephemeral ports 1024-65535). RLIMIT_NOFILE {res.get('rlimit_nofile')}"
        + (f" ({res['rlimit_note']})" if res.get("rlimit_note") else "") +
        ": one process holds what that allows, and past it the sessions are spread "
        f"round-robin over as many processes per side (column `processes`; a side is "
        f"their sum). Per side: "
        f"(VmRSS with every session idle for 1 s - VmRSS before) / {n}; the descriptors it "
        f"holds per session; again after every session echoed {res['ping_bytes']} bytes and "
        f"idled 1 s. Kernel slab: the whole machine's slab growth / {n} (/proc/slabinfo, "
        f"active objects x size, without proc_inode_cache: an observer on these machines "
        f"lists /proc/PID/fd of busy processes), every socket of the chain (the client's "
        f"and the holder's ends too) and whatever else ran meanwhile. Setup: first connect to the {n}-th accepted at the holder.")
    L.append("")
    L.append("| contender | side | RSS before | RSS idle | RSS per session | sockets per "
             "session | pipes per session | RSS per session after echo | pipes per session "
             "after echo | RSS after close | fds left after close |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = []
    for c in res["contenders"]:
        if "per_side" not in c:
            L.append(f"| {c['key']} | | FAILED: {c.get('error', '?')} | | | | | | | | |")
            continue
        ok.append(c)
        for side, x in c["per_side"].items():
            L.append(f"| {c['label']} | {side} | {mib(x['rss_before'])} | {mib(x['rss_idle'])} "
                     f"| {kib(x['rss_per_session'])} | {num(x['sockets_per_session'])} | "
                     f"{num(x['pipes_per_session'])} | {kib(x['rss_per_session_after_echo'])} | "
                     f"{num(x['pipes_per_session_after_echo'])} | {mib(x['rss_after_close'])} | "
                     f"{x['fds_left_after_close']} |")
    if not ok:
        return "\n".join(L) + "\n"
    L += ["", "| contender | processes per side | setup s | sessions/s | RSS per session, "
              "both sides | kernel slab per session (whole chain) | TCP sockets per session "
              "(namespace) | echo s |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in ok:
        L.append(f"| {c['label']} | {c['shards']} | {c['setup_seconds']:.2f} | "
                 f"{n / c['setup_seconds']:.0f} | {kib(c['rss_per_session_total'])} | "
                 f"{kib(c['slab_per_session'])} | {num(c.get('tcp_sockets_per_session'), 1)} | "
                 f"{c['echo_seconds']:.2f} |")
    by = {c["key"]: c for c in ok}
    a, h = by.get("agentproxy"), by.get("haproxy")
    L.append("")
    if a and h:
        L.append(f"agentproxy / HAProxy: RSS per session (both sides) "
                 f"{a['rss_per_session_total'] / max(1, h['rss_per_session_total']):.2f}x, "
                 f"kernel slab per session {a['slab_per_session'] / h['slab_per_session']:.2f}x, "
                 f"setup time {a['setup_seconds'] / h['setup_seconds']:.2f}x.")
        L.append("")
    for c in ok:
        if c.get("slab_top"):
            L.append(f"Slab growth per session, {c['label']}: " + ", ".join(
                f"{k} {v / 1024:.2f} KiB" for k, v in c["slab_top"]) + ".")
            L.append("")
    if a:
        for side, x in a["per_side"].items():
            v = x["rss_per_session"]
            L.append(f"- {side} RSS per idle session: {kib(v)} (target <= 64 KiB, issue 2): "
                     f"{'met' if v <= 64 * 1024 else 'NOT met'}")
        L.append("")
    for c in ok:
        for line in c.get("limits", []):
            L.append(f"{c['key']}: `{line}`  ")
    L.append("")
    return "\n".join(L)


def plot(out, res):
    ok = [c for c in res.get("contenders", []) if "per_side" in c]
    if not ok:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    labels, idle, echo = [], [], []
    for c in ok:
        for side, x in c["per_side"].items():
            labels.append(side)
            idle.append(x["rss_per_session"] / 1024)
            echo.append((x["rss_per_session_after_echo"] or 0) / 1024)
    labels += ["kernel:\n" + c["key"] for c in ok]
    idle += [c["slab_per_session"] / 1024 for c in ok]
    echo += [0 for _ in ok]
    xs = range(len(labels))
    for off, vals, lab, col in ((-0.2, idle, "idle", "#6a9f58"),
                                (0.2, echo, "after an echo", "#967662")):
        bars = ax.bar([x + off for x in xs], vals, 0.4, label=lab, color=col)
        for b, v in zip(bars, vals):
            if v:
                ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("KiB per session")
    ax.set_title(f"memory per session, {res['sessions']} idle sessions "
                 "(user RSS per side; kernel slab of the whole chain)", fontsize=9)
    ax.legend(fontsize=8)
    bars = bx.bar(range(len(ok)), [c["setup_seconds"] for c in ok], color="#3b75af")
    for b, c in zip(bars, ok):
        bx.annotate(f"{c['setup_seconds']:.1f} s", (b.get_x() + b.get_width() / 2,
                                                    c["setup_seconds"]),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                    textcoords="offset points")
    bx.set_xticks(range(len(ok)))
    bx.set_xticklabels([c["key"] for c in ok], fontsize=8)
    bx.set_ylabel("seconds")
    bx.set_title(f"setting up {res['sessions']} sessions", fontsize=9)
    fig.tight_layout()
    path = os.path.join(out, "idle.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
