# SPDX-License-Identifier: MIT
"""The report of the path scenarios (bench/paths.py): medians, ratios, the targets, the
delay line's validation, and what the sockets of each contender looked like (ss)."""

import os
import statistics

TARGETS = {
    # scenario: [(agentproxy N, peer key or "N x one", minimum ratio)]
    "lossy": [(8, "flows-8", 0.9), (8, "mptcp-8", 1.0), (4, "flows-4", 0.9),
              (4, "mptcp-4", 1.0)],
    "capped": [(2, "2x-one", 0.95), (4, "4x-one", 0.95), (8, "8x-one", 0.95)],
}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(sc):
    rows = {}
    for c in sc.get("contenders", []):
        rs = [r for r in sc["runs"] if r["key"] == c["key"]]
        ok = [r for r in rs if r["mbit"] is not None]
        row = dict(c)
        row.update({
            "runs": len(rs), "ok": len(ok), "errors": [r["error"] for r in rs if r["error"]],
            "mbit": med([r["mbit"] for r in ok]),
            "min": min((r["mbit"] for r in ok), default=None),
            "max": max((r["mbit"] for r in ok), default=None),
            "retrans": med([r["retransmits"] for r in ok]),
            "proxy_cpu": med([r.get("proxy_cpu") for r in ok]),
            "machine_busy": med([r.get("machine_busy") for r in ok]),
            "cc": sorted({x for r in ok for x in r.get("cc", [])}),
        })
        if c["kind"] == "mptcp":
            row["subflows"] = sorted({r.get("mptcp_subflows") for r in ok})
        st = [s for r in ok for s in r["streams"]]
        if st:
            row["ss"] = {
                "sockets_per_run": med([len(r["streams"]) for r in ok]),
                "cwnd": med([s["cwnd"] for s in st]),
                "ssthresh": med([s["ssthresh"] for s in st]),
                "rtt_ms": med([s["rtt_ms"] for s in st]),
                "retrans_per_run": med([sum(s["retrans"] or 0 for s in r["streams"])
                                        for r in ok]),
                "rwnd_limited_pct": med([s["rwnd_limited_pct"] or 0 for s in st]),
                "sndbuf_limited_pct": med([s["sndbuf_limited_pct"] or 0 for s in st]),
                "share_min_max": med_pair([share(r["streams"]) for r in ok]),
            }
            # The receiving side of agentproxy's streams: bytes parked in the join's sockets.
            if c["kind"] == "agentproxy":
                port = f":{c.get('stream_port', '')}"
                rx = [max((s["rmem_alloc"] or 0 for s in r["ss"].get("server", [])
                           if s["local"].endswith(port)), default=0) for r in ok]
                row["ss"]["join_max_rmem"] = med(rx)
        rows[c["key"]] = row
    return rows


def share(streams):
    acked = [s["bytes_acked"] or 0 for s in streams]
    tot = sum(acked)
    if not tot:
        return None
    return (min(acked) / tot, max(acked) / tot)


def med_pair(pairs):
    pairs = [p for p in pairs if p]
    if not pairs:
        return None
    return (med([p[0] for p in pairs]), med([p[1] for p in pairs]))


def peer_value(rows, peer):
    if peer.endswith("x-one"):
        n = int(peer.split("x")[0])
        one = rows.get("one", {}).get("mbit")
        return n * one if one else None, f"{n} x 1 connection"
    r = rows.get(peer)
    return (r["mbit"] if r else None), (r["label"] if r else peer)


def f1(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def pct(x):
    return "-" if x is None else f"{x * 100:.0f}%"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def render_scenario(sc):
    how = f"`iperf3 -t {sc.get('seconds', '?')}`" + (
        f" `-O {sc['omit']}` (the first {sc['omit']} s, slow start and session setup, left "
        "out)" if sc.get("omit") else "")
    lines = [f"### {sc.get('label', sc['name'])}", "", f"Each run: {how}.", ""]
    if sc.get("error") and not sc.get("runs"):
        return lines + [f"FAILED: {sc['error']}", ""]
    rows = summarize(sc)
    v = sc.get("validation", {})
    cfg = sc.get("config", {})
    one = rows.get("one", {}).get("mbit")
    capped = bool(cfg.get("per_flow"))
    lines += ["| contender | Mbit/s (median) | min–max | retrans (median) | vs 1 connection "
              f"| vs N flows | vs MPTCP N | {'vs N x 1 connection' if capped else ''} "
              "| proxy CPU | machine busy |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in rows.items():
        n = r["n"]
        vs_flows = vs_mptcp = vs_n1 = "-"
        if r["kind"] in ("agentproxy", "mptcp") and f"flows-{n}" in rows:
            vs_flows = ratio(r["mbit"], rows[f"flows-{n}"]["mbit"])
        if r["kind"] == "agentproxy" and f"mptcp-{n}" in rows:
            vs_mptcp = ratio(r["mbit"], rows[f"mptcp-{n}"]["mbit"])
        if capped and r["kind"] in ("agentproxy", "flows", "mptcp"):
            vs_n1 = ratio(r["mbit"], n * one if one else None)
        label = r["label"]
        if r["kind"] == "mptcp":
            label += f" (made: {', '.join(str(x) for x in r.get('subflows', []))})"
        if r["errors"]:
            label += f" ({len(r['errors'])} failed: {r['errors'][0][:60]})"
        lines.append(f"| {label} | {f1(r['mbit'])} | {f1(r['min'])}–{f1(r['max'])} | "
                     f"{f1(r['retrans'], 0)} | {ratio(r['mbit'], one)} | {vs_flows} | "
                     f"{vs_mptcp} | {vs_n1 if capped else ''} | {pct(r['proxy_cpu'])} | "
                     f"{pct(r['machine_busy'])} |")
    lines += ["", "Targets (medians of this run):", ""]
    for n, peer, want in TARGETS.get(sc["name"], []):
        a = rows.get(f"agentproxy-{n}", {}).get("mbit")
        b, label = peer_value(rows, peer)
        if a is None or b is None:
            lines.append(f"- agentproxy {n} streams >= {want:.2f} x {label}: not measured")
            continue
        got = a / b
        lines.append(f"- agentproxy {n} streams >= {want:.2f} x {label}: {got:.2f}x "
                     f"({a:.1f} vs {b:.1f} Mbit/s) — {'met' if got >= want else 'MISSED'}")
    # Validation of the path itself.
    p = v.get("ping", {})
    lines += ["", "Path check:", ""]
    if "error" in p:
        lines.append(f"- ping: FAILED {p['error']}")
    elif p:
        lines.append(f"- ping RTT min/avg/max {p['min_ms']:.2f}/{p['avg_ms']:.2f}/"
                     f"{p['max_ms']:.2f} ms ({p['received']}/{p['count']} answered); "
                     f"configured {2 * cfg.get('one_way_ms', 0)} ms")
    if v.get("one_flow_no_loss_mbit"):
        lim = "tbf rate" if not capped else "per-flow cap"
        lines.append(f"- one flow with no loss: {v['one_flow_no_loss_mbit']:.0f} Mbit/s = "
                     f"{v['one_flow_no_loss_mbit'] / cfg['rate_mbit']:.2f}x the {lim} "
                     f"({cfg['rate_mbit']} Mbit/s), {v.get('one_flow_no_loss_retransmits')} "
                     f"retransmits, congestion control {', '.join(v.get('one_flow_cc', []))}")
    tot = sc.get("delayline_total")
    if tot:
        for d, x in tot.items():
            seg = x.get("segments") or 0
            rate = x["segments_lost"] / seg if seg else 0
            lines.append(
                f"- delay line {d.replace('_', ' ')}: {x['segments_lost']} of {seg} segments "
                f"lost = {rate * 100:.3f}% (configured {cfg.get('loss', 0) * 100:.3f}%); "
                f"{x['frames_in']} frames in ({seg / max(1, x['frames_in']):.1f} segments a "
                f"frame), {x['bursts_cut']} bursts cut, {x['frames_lost_whole']} frames lost "
                f"whole; ring full {x['ring_full']}, socket drops {x['socket_drops']}, send "
                f"errors {x['send_errors']}")
    sent = [(r["retransmits"], r["sent_bytes"]) for r in sc["runs"]
            if r["mbit"] and r["key"].startswith(("one", "flows")) and r["sent_bytes"]]
    if sent and cfg.get("loss"):
        retr = sum(a for a, _ in sent)
        segs = sum(b for _, b in sent) / 1448
        lines.append(f"- TCP's view (1 connection and N flows runs): {retr} retransmits for "
                     f"~{segs:.0f} segments sent = {retr / segs * 100:.3f}%")
    # What the sockets looked like.
    lines += ["", "Sockets in mid-run (`ss -tinm` on the sending side; medians over sockets "
              "and runs):", "",
              "| contender | sockets | cwnd | ssthresh | rtt ms | retrans/run | rwnd limited "
              "| sndbuf limited | bytes share min–max | join rmem max |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in rows.items():
        s = r.get("ss")
        if not s or r["kind"] == "haproxy":
            continue
        sh = s.get("share_min_max")
        lines.append(f"| {r['label']} | {f1(s['sockets_per_run'], 0)} | {f1(s['cwnd'], 0)} | "
                     f"{f1(s['ssthresh'], 0)} | {f1(s['rtt_ms'])} | "
                     f"{f1(s['retrans_per_run'], 0)} | {f1(s['rwnd_limited_pct'])}% | "
                     f"{f1(s['sndbuf_limited_pct'])}% | "
                     f"{'-' if not sh else f'{sh[0] * 100:.0f}–{sh[1] * 100:.0f}%'} | "
                     f"{'-' if s.get('join_max_rmem') is None else f1(s['join_max_rmem'] / 1024, 0) + ' KiB'} |")
    ccs = sorted({x for r in rows.values() for x in r.get("cc", [])})
    lines += ["", f"Congestion control seen on the sockets (ss): {', '.join(ccs) or '?'}"]
    if sc.get("error"):
        lines += ["", f"Cut short: {sc['error']}"]
    return lines + [""]


def render_md(res):
    m = res["meta"]
    lines = [f"## Path scenarios ({m['date']}, {m['repeats']} rounds, interleaved, forward "
             f"(the client namespace sends); TCP {m['congestion']})", "",
             "Every contender has its own iperf3 server; medians of the rounds. `retrans` is "
             "what iperf3's sender reports: for HAProxy and agentproxy that is the loopback "
             "leg into the proxy, for MPTCP the MPTCP socket; the streams' and subflows' own "
             "retransmits are in the sockets table.", "",
             f"Load average at start {' '.join(m['loadavg_start'])}, at the end "
             f"{' '.join(m.get('loadavg_end', ['?']))} (2 shared cores: read the ratios). "
             f"{m['iperf3']}; agentproxy flags: {m['agent_flags'] or 'defaults'} "
             f"(+ --congestion {m['congestion']}); {m.get('elapsed_seconds', '?')} s.", ""]
    if m["repeats"] < 3:
        lines += [f"**{m['repeats']} round(s) only (e.g. `--quick`): a smoke run; the lossy "
                  "path varies by ±30% a run, so judge no target from it.**", ""]
    for sc in res["scenarios"]:
        lines += render_scenario(sc)
    if res.get("error"):
        lines += [f"Path scenarios cut short: {res['error']}", ""]
    return "\n".join(lines)


def plot(outdir, res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    for sc in res["scenarios"]:
        rows = [r for r in summarize(sc).values() if r["mbit"] is not None]
        if not rows:
            continue
        colors = {"one": "#888888", "haproxy": "#b07aa1", "flows": "#4e79a7",
                  "mptcp": "#f28e2b", "agentproxy": "#59a14f"}
        fig, ax = plt.subplots(figsize=(10, 4.5))
        xs = range(len(rows))
        vals = [r["mbit"] for r in rows]
        err = [[r["mbit"] - r["min"] for r in rows], [r["max"] - r["mbit"] for r in rows]]
        bars = ax.bar(xs, vals, 0.7, yerr=err, capsize=3,
                      color=[colors.get(r["kind"], "#999") for r in rows])
        for b, v, up in zip(bars, vals, err[1]):
            ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, v + up), ha="center",
                        va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r["label"] for r in rows], rotation=25, ha="right", fontsize=8)
        ax.set_ylabel("Mbit/s received, median; bars: min–max")
        m = res["meta"]
        ax.set_title(f"{sc['label']}; TCP {m['congestion']}, {sc.get('seconds')} s x "
                     f"{m['repeats']} rounds, {m['date'][:16]}", fontsize=9)
        fig.tight_layout()
        path = os.path.join(outdir, f"paths-{sc['name']}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
