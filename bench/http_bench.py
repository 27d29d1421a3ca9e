#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The HTTP scenario: one client connection pipelining GETs at depth 1, 4
and 16 (a sliding window: a new request as each response completes) against
a backend that answers each request after 10 ms, through agentproxy http,
nginx and HAProxy as reverse proxies (each with a keep-alive pool of 32 to
the backend), in the same run. Prints and writes requests per second of the
one client connection and the p99 latency per contender and depth.

  python3 bench/http_bench.py [--build build] [--seconds 5] [--depths 1,4,16]
      [--delay-ms 10] [--events uring|bpf] [--out build/bench]"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from http_backend import Backend  # noqa: E402

HOST = "127.0.0.1"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def run_client(port, depth, seconds):
    """Keeps `depth` requests outstanding on one connection for `seconds`.
    Returns (completed requests per second, p99 latency in ms, errors)."""
    s = socket.create_connection((HOST, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent = []  # send times of outstanding requests, in order
    lat = []
    buf = b""
    n = 0
    errors = 0
    t_end = time.monotonic() + seconds

    def send_one():
        nonlocal n
        s.sendall(b"GET /r%d HTTP/1.1\r\nHost: bench\r\n\r\n" % n)
        sent.append(time.monotonic())
        n += 1
    for _ in range(depth):
        send_one()
    t0 = time.monotonic()
    done = 0
    while sent:
        while True:
            i = buf.find(b"\r\n\r\n")
            if i >= 0:
                head = buf[:i].decode("latin-1")
                cl = 0
                for line in head.split("\r\n")[1:]:
                    k, v = line.split(":", 1)
                    if k.strip().lower() == "content-length":
                        cl = int(v)
                if len(buf) >= i + 4 + cl:
                    if not head.startswith("HTTP/1.1 200"):
                        errors += 1
                    buf = buf[i + 4 + cl:]
                    now = time.monotonic()
                    lat.append(now - sent.pop(0))
                    done += 1
                    if now < t_end:
                        send_one()
                    continue
            break
        if not sent:
            break
        b = s.recv(1 << 16)
        if not b:
            errors += len(sent)
            break
        buf += b
    dt = time.monotonic() - t0
    s.close()
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0
    return done / dt, p99, errors


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:%(backend)d; keepalive 32; }
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }
    }
}
"""

HAPROXY_CONF = """
global
    nbthread 1
    maxconn 1000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:%(port)d
    default_backend be
backend be
    server s1 127.0.0.1:%(backend)d pool-max-conn 32
"""


def start(kind, build, backend_port, tmp, events="uring"):
    port = free_port()
    log = open(os.path.join(tmp, kind + ".log"), "wb")
    if kind == "agentproxy":
        argv = [os.path.join(build, "agentproxy"), "http", "--listen", "%s:%d" % (HOST, port),
                "--backend", "%s:%d" % (HOST, backend_port), "--pool", "32", "--events",
                events, "-q"]
    elif kind == "nginx":
        d = os.path.join(tmp, "nginx")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF % {"dir": d, "port": port, "backend": backend_port})
        argv = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", d, "-c", conf]
    else:
        conf = os.path.join(tmp, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(HAPROXY_CONF % {"port": port, "backend": backend_port})
        argv = [shutil.which("haproxy") or "/usr/sbin/haproxy", "-f", conf, "-db"]
    p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    if not wait_port(port):
        p.kill()
        raise SystemExit("%s did not start (see %s)" % (kind, log.name))
    return p, port


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--depths", default="1,4,16")
    ap.add_argument("--delay-ms", type=float, default=10)
    ap.add_argument("--contenders", default="agentproxy,nginx,haproxy")
    ap.add_argument("--out", default=None)
    ap.add_argument("--events", default="uring", help="agentproxy's event source")
    a = ap.parse_args()
    depths = [int(x) for x in a.depths.split(",")]
    out = a.out or os.path.join(a.build, "bench")
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="agentmux-httpbench-")
    backend = Backend(mode="delay", delay_ms=a.delay_ms)
    results = []
    for kind in a.contenders.split(","):
        if kind != "agentproxy" and not shutil.which(kind) and \
                not os.path.exists("/usr/sbin/" + kind):
            print("# %s: not installed, skipped" % kind)
            continue
        p, port = start(kind, a.build, backend.port, tmp, a.events)
        try:
            run_client(port, 1, 0.3)  # warm the pool
            for d in depths:
                rps, p99, err = run_client(port, d, a.seconds)
                results.append({"contender": kind, "depth": d, "rps": rps, "p99_ms": p99,
                                "errors": err})
                print("%-10s depth %2d: %7.1f req/s  p99 %6.1f ms  errors %d"
                      % (kind, d, rps, p99, err), flush=True)
        finally:
            p.terminate()
            p.wait(5)
    backend.close()
    shutil.rmtree(tmp, True)
    lines = ["| contender | " + " | ".join("depth %d req/s (p99 ms)" % d for d in depths) + " |",
             "|---|" + "---|" * len(depths)]
    for kind in dict.fromkeys(r["contender"] for r in results):
        row = [r for r in results if r["contender"] == kind]
        lines.append("| %s | " % kind + " | ".join("%.0f (%.1f)" % (r["rps"], r["p99_ms"])
                                                   for r in row) + " |")
    md = "\n".join(lines) + "\n\nOne client connection, sliding window of DEPTH pipelined " \
        "GETs, backend answers after %g ms, %g s per point, loopback.\n" % (a.delay_ms,
                                                                           a.seconds)
    with open(os.path.join(out, "http.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "http.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot(results, depths, os.path.join(out, "http.png"))
    print(md)


def plot(results, depths, path):
    """Requests per second per contender and depth, if matplotlib is there."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# matplotlib missing: no plot")
        return
    kinds = list(dict.fromkeys(r["contender"] for r in results))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(kinds), 1)
    for i, kind in enumerate(kinds):
        row = {r["depth"]: r["rps"] for r in results if r["contender"] == kind}
        ax.bar([j + i * width for j in range(len(depths))], [row.get(d, 0) for d in depths],
               width, label=kind)
    ax.set_xticks([j + width * (len(kinds) - 1) / 2 for j in range(len(depths))])
    ax.set_xticklabels(["depth %d" % d for d in depths])
    ax.set_ylabel("requests/s, one client connection")
    ax.set_title("pipelined GETs, backend answers after 10 ms")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
