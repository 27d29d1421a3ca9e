# SPDX-License-Identifier: MIT
"""The latency scenario of the benchmark: small request/response round trips
(bench_pingpong) through each contender, interleaved rounds, medians of the
rounds' percentiles, and what each chain adds over a direct connection (per
chain and per hop: every proxied chain here has two hops)."""

import json
import statistics
import subprocess

HOPS = {"direct": 0}  # every other contender: two hops


def ping(binary, port, count, size, timeout):
    """One bench_pingpong run: its JSON result, or (None, error)."""
    try:
        r = subprocess.run([binary, "ping", str(port), str(count), str(size)],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    if r.returncode != 0:
        return None, (r.stderr.strip() or "exit %d" % r.returncode)
    try:
        return json.loads(r.stdout), None
    except ValueError:
        return None, "no JSON from bench_pingpong"


def measure(contenders, rounds, count, size, binary, progress):
    """Every contender once per round; returns the list of runs."""
    runs = []
    total = rounds * len(contenders)
    k = 0
    for rnd in range(1, rounds + 1):
        for c in contenders:
            k += 1
            res, err = ping(binary, c.port, count, size, timeout=60)
            runs.append({"key": c.key, "label": c.label, "round": rnd, "result": res,
                         "error": err})
            progress("[%2d/%d] latency round %d  %-28s %s" % (
                k, total, rnd, c.label,
                "p50 %7.1f us  p99 %7.1f us" % (res["p50_us"], res["p99_us"]) if res
                else "FAILED: %s" % err))
    return runs


def summarize(contenders, runs):
    out = []
    direct = None
    for c in contenders:
        ok = [r["result"] for r in runs if r["key"] == c.key and r["result"]]
        row = {"key": c.key, "label": c.label, "rounds": len(ok),
               "p50_us": statistics.median(x["p50_us"] for x in ok) if ok else None,
               "p99_us": statistics.median(x["p99_us"] for x in ok) if ok else None}
        if c.key == "direct":
            direct = row
        out.append(row)
    for row in out:
        hops = HOPS.get(row["key"], 2)
        for q in ("p50_us", "p99_us"):
            added = None
            if direct and direct[q] is not None and row[q] is not None and hops:
                added = (row[q] - direct[q]) / hops
            row[q.replace("_us", "_added_per_hop_us")] = added
    return out


def render_md(summary, count, size):
    def f(x):
        return "-" if x is None else "%.1f" % x
    lines = ["## Latency: %d round trips of %d bytes (medians of the rounds)" % (count, size),
             "",
             "| contender | p50 us | p99 us | p50 added per hop | p99 added per hop |",
             "|---|---:|---:|---:|---:|"]
    for r in summary:
        lines.append("| %s | %s | %s | %s | %s |" % (
            r["label"], f(r["p50_us"]), f(r["p99_us"]), f(r["p50_added_per_hop_us"]),
            f(r["p99_added_per_hop_us"])))
    by = {r["key"]: r for r in summary}
    ap = next((r for r in summary if r["key"].startswith("agentproxy")), None)
    ha = by.get("haproxy")
    if ap and ha and ap["p99_us"] and ha["p99_us"]:
        lines += ["", "%s p99 / HAProxy p99: %.2fx (target: at most 1.00x)" % (
            ap["label"], ap["p99_us"] / ha["p99_us"])]
    return "\n".join(lines) + "\n"


def plot(path, summary, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in summary if r["p50_us"] is not None]
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["p50_us"] for r in rows], 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [r["p99_us"] for r in rows], 0.4, label="p99")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r["label"] for r in rows], rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("round trip, microseconds")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
