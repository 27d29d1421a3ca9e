# SPDX-License-Identifier: MIT
"""Helpers of the end-to-end tests: processes, ports, data streams, a target
server, and the stripe <-> join wire format (a fake peer). Standard library
only."""

import hashlib
import hmac
import os
import queue
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# E2E_BUILD: the build folder of the binaries under test (e.g. build/asan,
# the sanitizer build); their logs go there too. Default: $BUILD, or build.
BUILD = os.path.join(ROOT, os.environ.get("E2E_BUILD") or os.environ.get("BUILD", "build"))
# The event source and data path every agentproxy of a run uses (run.py
# --events / --data-path; the suites run the traffic cases with each).
EVENTS = os.environ.get("E2E_EVENTS", "uring")
DATA_PATH = os.environ.get("E2E_DATA_PATH", "splice")
AGENTPROXY = os.path.join(BUILD, "agentproxy")
ECHO_SERVER = os.path.join(BUILD, "echo_server")
LOGDIR = os.path.join(BUILD, "test-logs", "e2e")
HOST = "127.0.0.1"
MiB = 1 << 20
KiB = 1 << 10


class TestFailure(AssertionError):
    pass


class Skip(Exception):
    """Raised by a test that cannot run here; its reason is printed."""


# ---- sanitizer reports --------------------------------------------------------
# E2E_SANITIZE=1 (the e2e-asan suite, tests/sanitize/run.sh): processes are
# stopped with SIGTERM first, so that they exit and LeakSanitizer runs. In
# every run, a process whose stderr holds a sanitizer report, or whose exit
# status is the sanitizers' exitcode (from ASAN_OPTIONS), fails the test that
# was running when it was seen (run.py asks sanitizer_reports() after each).
SANITIZE = os.environ.get("E2E_SANITIZE", "") not in ("", "0")
STOP_GRACE = 10.0
_m = re.search(r"(?:^|:)exitcode=(\d+)", os.environ.get("ASAN_OPTIONS", ""))
SAN_EXITCODE = int(_m.group(1)) if _m else None
SAN_REPORT = re.compile(r"^==\d+==\s*ERROR: \w*Sanitizer|^\S.*?: runtime error: "
                        r"|^SUMMARY: \w*Sanitizer", re.M)
SAN_REPORT_LINES = 30
ALL_PROCS = []


def sanitizer_report(err, status):
    """The first lines of the sanitizer report in err (a process's stderr),
    or a line naming the sanitizers' exit status; None if neither."""
    m = SAN_REPORT.search(err)
    if m:
        lines = err[m.start():].splitlines()
        more = len(lines) - SAN_REPORT_LINES
        return "\n".join(lines[:SAN_REPORT_LINES] +
                         (["... (%d more lines)" % more] if more > 0 else []))
    if SAN_EXITCODE is not None and status == SAN_EXITCODE:
        return "exit status %d: the sanitizers' exitcode (no report text in stderr)" % status
    return None


def sanitizer_reports():
    """Reports of processes not seen before: [(process log path, report)].
    Only processes that have exited are looked at (a report ends a process:
    halt_on_error; a leak report comes at exit)."""
    out = []
    for p in ALL_PROCS:
        if p.san_seen or p.alive():
            continue
        p.san_seen = True
        r = sanitizer_report(p.stderr(), p.p.returncode)
        if r:
            out.append((p.err_path, r))
    return out


def unchecked_procs():
    """Processes that SIGTERM did not stop within STOP_GRACE (killed, so
    their leak check did not run), each named once."""
    out = [p.err_path for p in ALL_PROCS if p.term_ignored]
    for p in ALL_PROCS:
        p.term_ignored = False
    return out


def stop_all():
    """Stops every process still running (SIGTERM first if SANITIZE)."""
    for p in ALL_PROCS:
        p.kill()


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def comment(msg):
    for line in str(msg).splitlines() or [""]:
        print("# " + line, flush=True)


# ---- data -------------------------------------------------------------------

_POOL = os.urandom(16 * MiB)
_POOL_MV = memoryview(_POOL)
BLOCK = 1 * MiB


class Data:
    """A stream of `total` pseudo-random bytes (None: endless), made of
    blocks of a 16-byte header (seed, block number) and a slice of a random
    pool at a random offset, so no two blocks are alike and chunks moved to
    the wrong place change the hash. sha256 covers every byte sent."""

    def __init__(self, seed, total, block=BLOCK):
        self.seed = seed
        self.total = total
        self.block = block

    def header(self):
        return struct.pack("<QQ", self.seed, 0)

    def pieces(self):
        rnd = random.Random(self.seed)
        left = self.total
        i = 0
        while left is None or left > 0:
            hdr = struct.pack("<QQ", self.seed, i)
            n = self.block if left is None else min(self.block, left)
            if n <= len(hdr):
                yield hdr[:n]
            else:
                off = rnd.randrange(0, len(_POOL) - n)
                yield hdr
                yield _POOL_MV[off:off + n - len(hdr)]
            if left is not None:
                left -= n
            i += 1

    def digest(self):
        h = hashlib.sha256()
        for p in self.pieces():
            h.update(p)
        return h.hexdigest()


class Sender(threading.Thread):
    """Sends a Data stream on sock (optionally paced, optionally until
    `stop` is set), then shuts the write side. Records hash, length, error."""

    def __init__(self, sock, data, shut=True, stop=None, pace=None, after=None):
        super().__init__(daemon=True)
        self.sock, self.data, self.shut = sock, data, shut
        self.stop, self.pace, self.after = stop, pace, after
        self.hash = hashlib.sha256()
        self.sent = 0
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            for p in self.data.pieces():
                if self.stop is not None and self.stop.is_set():
                    break
                self.sock.sendall(p)
                self.hash.update(p)
                self.sent += len(p)
                if self.pace:
                    time.sleep(self.pace)
            if self.after is not None:
                self.after()
            if self.shut:
                self.sock.shutdown(socket.SHUT_WR)
        except Exception as e:  # noqa: BLE001 - recorded for the test
            self.error = e
        finally:
            self.done.set()

    def digest(self):
        return self.hash.hexdigest()


def receive_all(sock, on_bytes=None, bufsize=1 * MiB):
    """Reads until EOF. Returns (length, sha256 hex, end) where end is 'eof'
    or the exception that ended the read; the first 16 bytes too."""
    buf = bytearray(bufsize)
    mv = memoryview(buf)
    h = hashlib.sha256()
    n = 0
    first = b""
    end = "eof"
    try:
        while True:
            k = sock.recv_into(buf)
            if k == 0:
                break
            h.update(mv[:k])
            if len(first) < 16:
                first += bytes(mv[:min(k, 16 - len(first))])
            n += k
            if on_bytes:
                on_bytes(n)
    except Exception as e:  # noqa: BLE001
        end = e
    return {"len": n, "hash": h.hexdigest(), "end": end, "first": first}


def exchange(sock, data, on_bytes=None, stop=None, pace=None, join_timeout=120):
    """Sends data (then SHUT_WR) while reading to EOF, at once."""
    s = Sender(sock, data, stop=stop, pace=pace)
    s.start()
    r = receive_all(sock, on_bytes)
    s.join(join_timeout)
    r.update(sent=s.sent, sent_hash=s.digest(), send_error=s.error,
             send_done=s.done.is_set())
    return r


def describe_end(end):
    if end is None:
        return "nothing (still running)"
    return "EOF" if end == "eof" else "%s(%s)" % (type(end).__name__, end)


def set_reset_linger(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def wait_closed(sock, timeout):
    """Reads (and drops) until the peer closes. Returns ('eof'|'reset'|
    'timeout'|'error:...', seconds waited, bytes read)."""
    t0 = time.monotonic()
    got = 0
    sock.settimeout(0.2)
    while True:
        if time.monotonic() - t0 > timeout:
            return "timeout", time.monotonic() - t0, got
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return "reset", time.monotonic() - t0, got
        except OSError as e:
            return "error:%s" % e, time.monotonic() - t0, got
        if not b:
            return "eof", time.monotonic() - t0, got
        got += len(b)


# ---- processes ----------------------------------------------------------------

class Proc:
    def __init__(self, name, argv, logdir):
        self.name = name
        self.argv = argv
        self.out_path = os.path.join(logdir, name + ".out")
        self.err_path = os.path.join(logdir, name + ".err")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                  stderr=self._err, start_new_session=True)
        self.port = None
        self.san_seen = False
        self.term_ignored = False
        ALL_PROCS.append(self)

    @property
    def pid(self):
        return self.p.pid

    def _read(self, path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout(self):
        return self._read(self.out_path)

    def stderr(self):
        return self._read(self.err_path)

    def alive(self):
        return self.p.poll() is None

    def wait_for(self, text, stream="out", timeout=10.0, start=0):
        """Waits until `text` appears in stdout/stderr (after offset start)."""
        t0 = time.monotonic()
        while True:
            s = self.stdout() if stream == "out" else self.stderr()
            if text in s[start:]:
                return s
            if not self.alive():
                time.sleep(0.05)
                s = self.stdout() if stream == "out" else self.stderr()
                if text in s[start:]:
                    return s
                raise TestFailure("%s exited (status %s) before printing %r; stderr: %s"
                                  % (self.name, self.p.returncode, text,
                                     self.stderr()[-800:]))
            if time.monotonic() - t0 > timeout:
                raise TestFailure("%s did not print %r within %.0f s" % (self.name, text, timeout))
            time.sleep(0.02)

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise TestFailure("no VmRSS for %s" % self.name)

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self):
        if SANITIZE and self.alive():
            # Let it exit: LeakSanitizer checks at exit, SIGKILL skips that.
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.term_ignored = True
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._out.close()
        self._err.close()

    def stop(self, timeout=5):
        """SIGTERM, then SIGKILL if it does not exit in time. Returns status."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.p.returncode


class Target:
    """A TCP server on a free port; handler(conn, results) runs in a thread
    per accepted connection and puts what it saw in results (a Queue)."""

    def __init__(self, handler):
        self.handler = handler
        self.results = queue.Queue()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self.closed = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)
            c.settimeout(60)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handler(c, self.results)
        except Exception as e:  # noqa: BLE001
            self.results.put({"handler_error": e})

    def result(self, timeout, match=None):
        """The next result (that match accepts) within timeout."""
        t0 = time.monotonic()
        skipped = []
        try:
            while True:
                left = timeout - (time.monotonic() - t0)
                if left <= 0:
                    raise TestFailure("the target reported no %sresult within %.0f s"
                                      % ("matching " if match else "", timeout))
                try:
                    r = self.results.get(timeout=left)
                except queue.Empty:
                    continue
                if match is None or match(r):
                    return r
                skipped.append(r)
        finally:
            for r in skipped:
                self.results.put(r)

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


class Env:
    """What one test starts; cleanup() kills and closes all of it."""

    def __init__(self, name, logdir):
        self.name = name
        self.logdir = os.path.join(logdir, name)
        os.makedirs(self.logdir, exist_ok=True)
        self.procs = []
        self.socks = []
        self.targets = []
        self.n = 0

    def proc(self, name, argv):
        self.n += 1
        p = Proc("%02d-%s" % (self.n, name), argv, self.logdir)
        self.procs.append(p)
        return p

    def _listener(self, name, mode, remote_flag, remote_port, extra, port=None):
        last = None
        # A fixed port may still be held for a moment by a process just
        # killed (its io_uring is torn down after it exits): retry then.
        for _ in range(5 if port is None else 40):
            lp = port or free_port()
            argv = [AGENTPROXY, mode, "--listen", "%s:%d" % (HOST, lp),
                    remote_flag, "%s:%d" % (HOST, remote_port), "--events", EVENTS,
                    "--data-path", DATA_PATH] + list(extra)
            p = self.proc(name, argv)
            try:
                p.wait_for("listening on", timeout=15)
            except TestFailure as e:
                last = e
                p.kill()
                if "cannot listen" in p.stderr():
                    if port is not None:
                        time.sleep(0.25)
                    continue
                raise
            p.port = lp
            return p
        raise last

    def stripe(self, peer_port, *extra, port=None):
        return self._listener("stripe", "stripe", "--peer", peer_port, extra, port)

    def join(self, target_port, *extra, port=None):
        return self._listener("join", "join", "--target", target_port, extra, port)

    def echo_server(self, *extra):
        for _ in range(5):
            lp = free_port()
            p = self.proc("echo_server", [ECHO_SERVER, "--listen", "%s:%d" % (HOST, lp),
                                          "--events", "uring"] + list(extra))
            try:
                p.wait_for("listening on", timeout=15)
            except TestFailure:
                p.kill()
                if "cannot listen" in p.stderr():
                    continue
                raise
            p.port = lp
            return p
        raise TestFailure("echo_server: no free port")

    def target(self, handler):
        t = Target(handler)
        self.targets.append(t)
        return t

    def chain(self, handler, join_flags=(), stripe_flags=()):
        """target(handler) <- join <- stripe: the three ends of a test."""
        tgt = self.target(handler)
        join = self.join(tgt.port, *join_flags)
        return tgt, join, self.stripe(join.port, *stripe_flags)

    def connect(self, port, timeout=60):
        s = socket.create_connection((HOST, port), timeout=timeout)
        self.socks.append(s)
        return s

    def track(self, s):
        self.socks.append(s)
        return s

    def logs(self, lines=12):
        out = []
        for p in self.procs:
            err = p.stderr().splitlines()
            if err:
                out.append("%s stderr (last %d lines):" % (p.name, min(lines, len(err))))
                out += ["  " + l for l in err[-lines:]]
        return out

    def cleanup(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        for t in self.targets:
            t.close()
        for p in self.procs:
            p.kill()


# ---- the wire format (for fake peers; docs/wire-format.md) -------------------

T_HELLO, T_DATA, T_FIN, T_ACK, T_ERROR, T_HELLO_ACK, T_AUTH = 1, 2, 3, 4, 5, 6, 7
MAGIC = 0x584D4741
VERSION = 2
HELLO_SIZE = 56
HELLO_ACK_SIZE = 32
AUTH_SIZE = 32
MAX_PAYLOAD = 1 * MiB
FLAG_AUTH = 1


def header(ftype, length, seq=0, flags=0):
    return struct.pack("<BBHIQ", ftype, flags, 0, length, seq)


def hello_body(session, index, count, key=None, magic=MAGIC, version=VERSION, flags=0,
               tag=None, min_version=None):
    """min_version None: the same as version (0 is what a v1 HELLO has)."""
    if key is not None:
        flags |= FLAG_AUTH
    mv = version if min_version is None else min_version
    signed = struct.pack("<IHHQHHHH", magic, version, flags, session, index, count, mv, 0)
    if tag is None:
        tag = hmac.new(key, signed, hashlib.sha256).digest() if key is not None else bytes(32)
    return signed + tag


def hello_frame(session, index, count, key=None, **kw):
    return header(T_HELLO, HELLO_SIZE) + hello_body(session, index, count, key, **kw)


def auth_frame(hello, ack_body, key=None):
    """AUTH for a stream: HMAC over the HELLO's signed 24 bytes (hello is the
    whole HELLO frame or its body) and the HELLO-ACK body received."""
    body = hello[16:] if len(hello) == 16 + HELLO_SIZE else hello
    tag = hmac.new(key, body[:24] + ack_body, hashlib.sha256).digest() if key is not None \
        else bytes(AUTH_SIZE)
    return header(T_AUTH, AUTH_SIZE) + tag


def read_hello_ack(sock):
    """The join side's HELLO-ACK: its body (32 bytes)."""
    frame = read_exact(sock, 16 + HELLO_ACK_SIZE)
    t, _, _, ln, _ = struct.unpack("<BBHIQ", frame[:16])
    if t != T_HELLO_ACK or ln != HELLO_ACK_SIZE:
        raise TestFailure("expected a HELLO-ACK, got frame type %d length %d" % (t, ln))
    return frame[16:]


def handshake(sock, session, index, count, key=None, **kw):
    """Opens a stream as a stripe side does: HELLO, the HELLO-ACK, AUTH.
    Returns (hello frame, HELLO-ACK body, AUTH frame) as sent and seen."""
    hello = hello_frame(session, index, count, key, **kw)
    sock.sendall(hello)
    ack = read_hello_ack(sock)
    auth = auth_frame(hello, ack, key)
    sock.sendall(auth)
    return hello, ack, auth


def hello_ack_frame(nonce=None, version=VERSION):
    """What a fake join side answers a HELLO with."""
    nonce = os.urandom(16) if nonce is None else nonce
    return header(T_HELLO_ACK, HELLO_ACK_SIZE) + struct.pack("<IHH", MAGIC, version, 0) + \
        nonce + bytes(8)


def data_frame(seq, payload):
    return header(T_DATA, len(payload), seq) + payload


def fin_frame(seq):
    return header(T_FIN, 0, seq)


def read_exact(sock, n):
    b = b""
    while len(b) < n:
        k = sock.recv(n - len(b))
        if not k:
            raise TestFailure("EOF after %d of %d bytes" % (len(b), n))
        b += k
    return b


def parse_hello(frame):
    t, fl, res, ln, seq = struct.unpack("<BBHIQ", frame[:16])
    magic, ver, flags, session, index, count, minv, _ = struct.unpack("<IHHQHHHH",
                                                                       frame[16:40])
    return {"type": t, "length": ln, "magic": magic, "version": ver, "flags": flags,
            "session": session, "index": index, "count": count, "min_version": minv}
