# SPDX-License-Identifier: MIT
"""What a test can see of a running proxy from outside: its descriptors,
its CPU time, its counters (SIGUSR1), and a TCP socket's state. Standard
library only."""

import os
import re
import signal
import socket
import struct
import time

from harness import TestFailure

CLK_TCK = os.sysconf("SC_CLK_TCK")
# The pipes a thread keeps for reuse (libagent/src/pipe.cpp kPoolCap): idle
# descriptors that are not a leak.
PIPE_POOL = 32
# The fields of the stats[] line (examples/agentproxy/main.cpp).
FIELDS = {"opened": "sessions opened", "done": r"\bdone", "failed": r"\bfailed",
          "active": r"\bactive", "streams_refused": "streams refused",
          "refused_full": "refused full", "dropped": "handshakes dropped",
          "timeouts": r"\btimeouts", "memory_held": "memory held", "memory_peak": r"\bpeak",
          # failover (docs/wire-format.md, "Losing a stream"):
          # "streams lost N rejoined N; frames resent N duplicates N"
          "streams_lost": "streams lost", "rejoined": r"\brejoined",
          "frames_resent": "frames resent", "duplicates": r"\bduplicates"}
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING"}


def descriptors(pid):
    """{'sockets': n, 'pipes': n, 'other': n} of a process."""
    out = {"sockets": 0, "pipes": 0, "other": 0}
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            link = os.readlink(os.path.join(d, name))
        except OSError:
            continue  # closed while we looked
        kind = "sockets" if link.startswith("socket:") else \
            "pipes" if link.startswith("pipe:") else "other"
        out[kind] += 1
    return out


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def counters(proc, timeout=5.0):
    """The proxy's stats[] line after a SIGUSR1, as a dict of ints."""
    start = len(proc.stdout())
    proc.signal(signal.SIGUSR1)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        out = proc.stdout()[start:]
        m = re.search(r"stats\[\w+\]: (.*)\n", out)
        if m:
            line = m.group(1)
            vals = {"line": line}
            for key, pattern in FIELDS.items():
                f = re.search(pattern + r" (\d+)", line)
                if f:
                    vals[key] = int(f.group(1))
            return vals
        time.sleep(0.02)
    raise TestFailure("%s printed no stats line within %.0f s of SIGUSR1" % (proc.name, timeout))


def wait_until(what, timeout, step=0.05):
    """Calls what() until it returns a true value; returns that value, or
    the last false one after timeout."""
    t0 = time.monotonic()
    v = what()
    while not v and time.monotonic() - t0 < timeout:
        time.sleep(step)
        v = what()
    return v


def sender_stalled(sender, quiet, timeout):
    """True once sender (a harness Sender) has sent something and then
    nothing more for `quiet` seconds (blocked in sendall, its peer taking no
    more; or finished: see sender.done). False if it kept moving for
    `timeout` seconds."""
    t0 = time.monotonic()
    last, since = sender.sent, time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(0.02)
        if sender.sent != last:
            last, since = sender.sent, time.monotonic()
        elif time.monotonic() - since >= quiet and last > 0:
            return True
    return False


def tcp_state(sock):
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return TCP_STATES.get(struct.unpack("B", info[:1])[0], "?")


class Baseline:
    """A proxy's descriptors when nothing is going on; released() says
    whether it is back there with no session open."""

    def __init__(self, proc):
        self.proc = proc
        self.fds = descriptors(proc.pid)

    def state(self):
        c = counters(self.proc)
        return c.get("active"), descriptors(self.proc.pid)

    def released(self, timeout):
        """Waits until active 0, as many sockets as at the baseline and no
        more pipes than the pool keeps. Returns '' or what is still held."""
        def ok():
            active, fds = self.state()
            return active == 0 and fds["sockets"] <= self.fds["sockets"] and \
                fds["pipes"] <= self.fds["pipes"] + 2 * PIPE_POOL and \
                fds["other"] <= self.fds["other"]
        if wait_until(ok, timeout, step=0.2):
            return ""
        active, fds = self.state()
        return "%s: active %s, descriptors %r (baseline %r)" % (self.proc.name, active, fds,
                                                                 self.fds)


def idle_cpu(procs, seconds=2.0):
    """CPU seconds each process used over `seconds` of doing nothing."""
    before = [cpu_seconds(p.pid) for p in procs]
    time.sleep(seconds)
    return [cpu_seconds(p.pid) - b for p, b in zip(procs, before)]
