# SPDX-License-Identifier: MIT
"""An emulated wide-area path between two network namespaces, for bench/paths.py.

    client ns (eth0 10.77.0.1, extra .11-.17) ── veth ── middle ns ── veth ── server ns (eth0 10.77.0.2)
                                                  m0  bench_delayline  m1

The middle namespace holds both veth ends; bench_delayline (bench/delayline.c) bridges
them with AF_PACKET + PACKET_VNET_HDR (GSO bursts stay whole), holds every frame a fixed
delay per direction and drops a share per TCP segment. The middle namespace's own stack
never sees the frames (an nft netdev ingress rule drops them after the packet taps).
The rate is a tbf on each end's eth0 egress; the per-flow cap is an HTB class per
connection on each end's egress: nft gives every new connection a number (numgen, kept
in the conntrack mark) and sets each packet's priority to that number's HTB class.

The namespaces are named amx<pid>-{c,m,s}: `cleanup_stale()` removes those of a bench
that is gone (killed with SIGKILL), `Path.down()` removes its own (on every exit path).
"""

import json
import os
import re
import signal
import subprocess
import time

CLIENT_IP = "10.77.0.1"
SERVER_IP = "10.77.0.2"
EXTRA_CLIENT_IPS = [f"10.77.0.{11 + i}" for i in range(7)]  # MPTCP subflow endpoints
FLOW_CLASSES = 64          # HTB classes per end for the per-flow cap (round robin)
MARK_BASE = 0x100          # conntrack mark = HTB minor of the connection's class
NS_RE = re.compile(r"^amx(\d+)-[cmsi]$")  # i: bench/idle.py


class PathError(Exception):
    pass


def sh(argv, check=True, timeout=20, input=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise PathError(f"`{' '.join(argv)}` failed: {(r.stderr or r.stdout).strip()}")
    return r


def _netns_list():
    r = sh(["ip", "netns", "list"], check=False)
    return [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]


def _kill_ns(ns):
    """Ends every process in ns (all of them were started by a bench), then deletes it."""
    r = sh(["ip", "netns", "pids", ns], check=False)
    pids = [int(x) for x in r.stdout.split() if x.isdigit()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGTERM and pids:
            time.sleep(0.3)
    sh(["ip", "netns", "del", ns], check=False)


def _bench_alive(pid):
    """Whether pid is still a running bench (not gone, not a zombie, not a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and b"bench/" in cmd


def cleanup_stale():
    """Deletes the namespaces of benches that are no longer running."""
    for ns in _netns_list():
        m = NS_RE.match(ns)
        if m and int(m.group(1)) != os.getpid() and not _bench_alive(m.group(1)):
            _kill_ns(ns)


class Path:
    """One scenario's three namespaces, its qdiscs and its delay line."""

    def __init__(self, rt, logdir, delayline, name, one_way_ms, loss, rate=None,
                 per_flow=None, congestion="cubic"):
        self.rt, self.logdir, self.delayline = rt, logdir, delayline
        self.name, self.one_way_ms, self.loss = name, one_way_ms, loss
        self.rate, self.per_flow, self.congestion = rate, per_flow, congestion
        tag = f"amx{os.getpid()}"
        self.c, self.m, self.s = f"{tag}-c", f"{tag}-m", f"{tag}-s"
        self.dl = None
        self.dl_gen = 0
        self.made = []

    # ---------------------------------------------------------------- setup
    def ns(self, ns, *argv, **kw):
        return sh(["ip", "netns", "exec", ns] + list(argv), **kw)

    def allow_congestion(self):
        """A namespace may only pick a congestion control the host allows
        (net.ipv4.tcp_allowed_congestion_control, host-wide; a fresh boot
        allows only the default and reno): allow ours for the run, put the
        list back in down()."""
        path = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"
        with open(path) as f:
            allowed = f.read().split()
        if self.congestion in allowed:
            return
        self.allowed_before = " ".join(allowed)
        with open(path, "w") as f:
            f.write(" ".join(allowed + [self.congestion]))

    def up(self):
        self.allow_congestion()
        for ns in (self.c, self.m, self.s):
            if ns in _netns_list():
                _kill_ns(ns)
            sh(["ip", "netns", "add", ns])
            self.made.append(ns)
            # No IPv6 chatter (DAD, router solicitations) on the path.
            self.ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1")
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        sh(["ip", "link", "add", "amxc0", "netns", self.c, "type", "veth", "peer", "name",
            "m0", "netns", self.m])
        sh(["ip", "link", "add", "amxs0", "netns", self.s, "type", "veth", "peer", "name",
            "m1", "netns", self.m])
        for ns, dev, ip in ((self.c, "amxc0", CLIENT_IP), (self.s, "amxs0", SERVER_IP)):
            sh(["ip", "-n", ns, "link", "set", dev, "name", "eth0"])
            sh(["ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0"])
            sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
            # Every contender on the same congestion control; buffers for a 5 MB BDP;
            # no cached ssthresh from one run's losses into the next connection.
            self.ns(ns, "sysctl", "-qw",
                    f"net.ipv4.tcp_congestion_control={self.congestion}",
                    "net.ipv4.tcp_rmem=4096 131072 33554432",
                    "net.ipv4.tcp_wmem=4096 16384 33554432",
                    "net.ipv4.tcp_no_metrics_save=1", "net.mptcp.enabled=1")
            # In-kernel MPTCP path manager: up to 8 subflows (1 + 7 endpoints).
            sh(["ip", "-n", ns, "mptcp", "limits", "set", "subflow", "8",
                "add_addr_accepted", "8"])
        for ip in EXTRA_CLIENT_IPS:
            sh(["ip", "-n", self.c, "addr", "add", ip + "/24", "dev", "eth0"])
        for dev in ("m0", "m1"):
            sh(["ip", "-n", self.m, "link", "set", dev, "up"])
        # The middle stack must not answer or route: drop at ingress (after the taps).
        self.ns(self.m, "nft", "-f", "-", input=(
            "table netdev amxmid {\n"
            " chain m0 { type filter hook ingress device m0 priority 0; drop; }\n"
            " chain m1 { type filter hook ingress device m1 priority 0; drop; }\n}\n"))
        for ns in (self.c, self.s):
            if self.per_flow:
                self._per_flow_cap(ns)
            elif self.rate:
                sh(["tc", "-n", ns, "qdisc", "add", "dev", "eth0", "root", "tbf", "rate",
                    self.rate, "burst", "256kb", "limit", "8mb"])
        self.start_delayline(self.loss)

    def _per_flow_cap(self, ns):
        lines = ["qdisc add dev eth0 root handle 1: htb default 2",
                 "class add dev eth0 parent 1: classid 1:1 htb rate 10gbit quantum 65536",
                 "class add dev eth0 parent 1:1 classid 1:2 htb rate 1gbit quantum 65536"]
        for i in range(FLOW_CLASSES):
            lines.append(f"class add dev eth0 parent 1:1 classid 1:{MARK_BASE + i:x} htb "
                         f"rate {self.per_flow} ceil {self.per_flow} burst 128k cburst 128k quantum 65536")
        sh(["tc", "-n", ns, "-b", "-"], input="\n".join(lines) + "\n")
        # nft numbers each new connection (kept in its conntrack mark) and puts every
        # packet of it in that number's class: skb->priority = 1:minor, which HTB takes
        # as the class without a filter (this kernel has no fw classifier).
        classes = ", ".join(f"{MARK_BASE + i} : 1:{MARK_BASE + i:x}"
                            for i in range(FLOW_CLASSES))
        rule = f"ct state new ct mark set numgen inc mod {FLOW_CLASSES} offset {MARK_BASE}"
        self.ns(ns, "nft", "-f", "-", input=(
            "table ip amxcap {\n"
            f" chain pre {{\n  type filter hook prerouting priority 0;\n  {rule}\n }}\n"
            f" chain out {{\n  type filter hook output priority 0;\n  {rule}\n"
            f"  meta priority set ct mark map {{ {classes} }}\n }}\n}}\n"))

    def start_delayline(self, loss):
        if self.dl:
            self.rt.stop(self.dl)
        self.dl_gen += 1
        self.dl = self.rt.spawn(
            f"path-{self.name}-delayline-{self.dl_gen}",
            ["ip", "netns", "exec", self.m, self.delayline, "--a", "m0", "--b", "m1",
             "--delay-ms", str(self.one_way_ms), "--loss", str(loss)], self.logdir)
        self.dl_loss = loss
        time.sleep(0.2)
        if self.dl.poll() is not None:
            raise PathError(f"bench_delayline exited (see {self.dl.bench_log.name})")

    def counters(self):
        """The delay line's counters now (SIGUSR1 -> one JSON line in its log)."""
        path = self.dl.bench_log.name
        before = os.path.getsize(path)
        os.kill(self.dl.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with open(path) as fh:
                fh.seek(before)
                for line in fh:
                    if line.startswith("{") and line.rstrip().endswith("}"):
                        return json.loads(line)
            time.sleep(0.02)
        raise PathError("bench_delayline did not print its counters")

    def set_mptcp_subflows(self, n):
        """n subflows per MPTCP connection: the initial one and n-1 endpoints."""
        sh(["ip", "-n", self.c, "mptcp", "endpoint", "flush"])
        for ip in EXTRA_CLIENT_IPS[:n - 1]:
            sh(["ip", "-n", self.c, "mptcp", "endpoint", "add", ip, "dev", "eth0", "subflow"])

    def listening(self, proc, port):
        """Whether something listens on port in the namespace proc lives in."""
        try:
            with open(f"/proc/{proc.pid}/net/tcp") as fh:
                next(fh)
                for line in fh:
                    f = line.split()
                    if f[3] == "0A" and int(f[1].split(":")[1], 16) == port:
                        return True
        except OSError:
            pass
        return False

    def wait_listen(self, procs, port, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.listening(procs[0], port):
                return
            for p in procs:
                if p.poll() is not None:
                    raise PathError(f"{what}: {p.bench_name} exited with {p.returncode} "
                                    f"(see {p.bench_log.name})")
            time.sleep(0.05)
        raise PathError(f"{what}: nothing listens on port {port} after {timeout}s")

    def ping(self, count, interval):
        r = self.ns(self.c, "ping", "-q", "-c", str(count), "-i", str(interval), "-W", "2",
                    SERVER_IP, check=False, timeout=count * interval + 10)
        m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", r.stdout)
        lossm = re.search(r"(\d+) received", r.stdout)
        if not m:
            return {"error": (r.stdout + r.stderr).strip()[-200:]}
        return {"count": count, "received": int(lossm.group(1)) if lossm else None,
                "min_ms": float(m.group(1)), "avg_ms": float(m.group(2)),
                "max_ms": float(m.group(3)), "mdev_ms": float(m.group(4))}

    # ------------------------------------------------------------- teardown
    def down(self):
        if self.dl:
            try:
                self.rt.stop(self.dl)
            except Exception:
                pass
            self.dl = None
        for ns in reversed(self.made):
            _kill_ns(ns)
        self.made = []
        if getattr(self, "allowed_before", None):
            with open("/proc/sys/net/ipv4/tcp_allowed_congestion_control", "w") as f:
                f.write(self.allowed_before)
            self.allowed_before = None
