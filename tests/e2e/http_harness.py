# SPDX-License-Identifier: MIT
"""What the HTTP mode tests drive and look at: agentproxy http started on a
free port, its release (no client active, sockets back to the baseline
plus the idle pool it reports) and idle CPU, a response reader and a
pipelining client, and nginx run from a config of its own in a temp dir
as the test's user. Standard library only."""

import hashlib
import os
import re
import shutil
import socket
import tempfile

from harness import AGENTPROXY, EVENTS, HOST, TestFailure, check, free_port
from http_backend import Backend
from probes import counters, descriptors, idle_cpu, wait_until

RELEASE_DEADLINE = 10.0
IDLE_CPU = 0.1


# ---- the proxy ------------------------------------------------------------------

def start_proxy(env, backends, *flags):
    for _ in range(5):
        port = free_port()
        argv = [AGENTPROXY, "http", "--listen", "%s:%d" % (HOST, port), "--events", EVENTS]
        for b in backends:
            argv += ["--backend", "%s:%d" % (HOST, b)]
        p = env.proc("http", argv + list(flags))
        try:
            p.wait_for("limits:", timeout=15)
        except TestFailure:
            p.kill()
            if "cannot listen" in p.stderr():
                continue
            raise
        p.port = port
        counters(p)  # the loop runs (its signalfd is open): the baseline is now
        p.base = descriptors(p.pid)
        return p
    raise TestFailure("agentproxy http did not start")


def stat(c, name):
    m = re.search(r"\b%s (\d+)" % name, c["line"])
    check(m, "no %r in the stats line: %s" % (name, c["line"]))
    return int(m.group(1))


def check_released(p):
    """No client active; sockets back to the baseline plus the idle pool
    (which the proxy reports and which its pool timeout closes)."""
    def state():
        c = counters(p)
        return c, descriptors(p.pid)

    def ok():
        c, fds = state()
        return c["active"] == 0 and stat(c, "open") == stat(c, "idle") and \
            fds["sockets"] <= p.base["sockets"] + stat(c, "idle") and \
            fds["other"] <= p.base["other"]
    if not wait_until(ok, RELEASE_DEADLINE, step=0.2):
        c, fds = state()
        raise TestFailure("not released within %.0f s: %s; descriptors %r (baseline %r)"
                          % (RELEASE_DEADLINE, c["line"], fds, p.base))


def check_idle(p):
    used = idle_cpu([p])[0]
    check(used <= IDLE_CPU, "agentproxy http used %.2f s of CPU over 2 s idle" % used)
    return used


def finish(p):
    check_released(p)
    return check_idle(p)


# ---- the client side ------------------------------------------------------------------

class Responses:
    """Reads responses off one socket: status, headers, body."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self):
        b = self.sock.recv(1 << 20)
        if not b:
            raise EOFError("EOF")
        self.buf += b

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n")
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line.decode("latin-1")

    def _take(self, n, h):
        while n > 0:
            if not self.buf:
                self._fill()
            k = min(n, len(self.buf))
            h.update(self.buf[:k])
            self.buf = self.buf[k:]
            n -= k

    def read(self, method="GET"):
        """One final response (1xx ones are listed in r['informational'])."""
        info = []
        while True:
            status_line = self._line()
            parts = status_line.split(" ", 2)
            status = int(parts[1])
            headers = {}
            while True:
                line = self._line()
                if not line:
                    break
                n, v = line.split(":", 1)
                headers.setdefault(n.strip().lower(), []).append(v.strip())
            if 100 <= status < 200:
                info.append(status)
                continue
            break
        h = hashlib.sha256()
        body = b""
        n = 0
        te = headers.get("transfer-encoding")
        cl = headers.get("content-length")
        if method == "HEAD" or status in (204, 304):
            pass
        elif te:
            while True:
                size = int(self._line().split(";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                if len(body) < 4096:
                    body += self.buf[:min(size, len(self.buf), 4096)]
                self._take(size, h)
                n += size
                self._line()
        elif cl:
            n = int(cl[0])
            if n <= 1 << 20:
                while len(self.buf) < n:
                    self._fill()
                body = self.buf[:n]
            self._take(n, h)
        else:
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            body = self.buf
            h.update(body)
            n = len(body)
            self.buf = b""
        return {"status": status, "headers": headers, "body": body, "len": n,
                "sha": h.hexdigest(), "informational": info}


def pipeline(env, port, requests, timeout=30):
    """Sends every request at once on one connection; reads the responses."""
    s = env.connect(port, timeout=timeout)
    s.sendall(b"".join(r for r, _ in requests))
    rd = Responses(s)
    out = [rd.read(m) for _, m in requests]
    return s, out


def get(path, host="backend", extra=""):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, host, extra)).encode(), "GET"


def closed_after(sock, timeout=5):
    sock.settimeout(timeout)
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return "eof"
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "open"


def backend(env, **kw):
    b = Backend(**kw)
    env.targets.append(b)
    return b


# ---- nginx ------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    def __init__(self, env, files):
        self.dir = tempfile.mkdtemp(prefix="agentmux-nginx-")
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        for name, data in files.items():
            with open(os.path.join(www, name), "wb") as f:
                f.write(data)
        for port_try in range(5):
            self.port = free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF % {"dir": self.dir, "port": self.port})
            self.proc = env.proc("nginx", [NGINX, "-p", self.dir, "-c", conf])
            ok = wait_until(lambda: self._up(), 10)
            if ok:
                break
            self.proc.kill()
        else:
            raise TestFailure("nginx did not start: %s" % self.proc.stderr()[-500:])
        env.targets.append(self)

    def _up(self):
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def requests_seen(self):
        try:
            with open(os.path.join(self.dir, "access.log")) as f:
                return len(f.read().splitlines())
        except OSError:
            return 0

    def close(self):
        self.proc.kill()
        shutil.rmtree(self.dir, True)


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log %(dir)s/access.log;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:%(port)d;
        root %(dir)s/www;
        location / { }
    }
}
"""
