#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Small HTTP/1.1 backends for the HTTP mode tests and the bench: keep-alive,
Content-Length and chunked request bodies, and a record of what they saw
(every request, and how many were in flight at once). Standard library only.

Modes:
  delay    answers each request after --delay-ms
  reverse  holds requests until --group of them are in flight at once (or
           --gate-timeout passes), then answers them in the reverse order of
           their arrival: the last one first
  echo     answers with the request's body (its SHA-256 in a header)
  blob     answers GET /blob/N with N pseudo-random bytes, chunked

  python3 tests/e2e/http_backend.py --port P [--mode delay --delay-ms 10]"""

import argparse
import hashlib
import socket
import threading
import time

CRLF = b"\r\n"


class Request:
    def __init__(self, method, path, version, headers, body_len, body_sha, conn_id):
        self.method, self.path, self.version = method, path, version
        self.headers = headers  # list of (name, value)
        self.body_len, self.body_sha, self.conn_id = body_len, body_sha, conn_id

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def fill(self):
        b = self.sock.recv(1 << 20)
        if not b:
            raise EOFError
        self.buf += b

    def line(self):
        while CRLF not in self.buf:
            self.fill()
        i = self.buf.index(CRLF)
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def take(self, n, h):
        while n > 0:
            if not self.buf:
                self.fill()
            k = min(n, len(self.buf))
            h.update(self.buf[:k])
            self.buf = self.buf[k:]
            n -= k


def read_request(rd, conn_id, on_continue=None):
    line = rd.line()
    while line == b"":
        line = rd.line()
    method, path, version = line.decode("latin-1").split(" ", 2)
    headers = []
    while True:
        line = rd.line()
        if not line:
            break
        n, v = line.decode("latin-1").split(":", 1)
        headers.append((n, v.strip()))
    h = hashlib.sha256()
    total = 0
    if on_continue and any(n.lower() == "expect" and v.lower() == "100-continue"
                           for n, v in headers):
        on_continue()
    te = [v for n, v in headers if n.lower() == "transfer-encoding"]
    cl = [v for n, v in headers if n.lower() == "content-length"]
    if te:
        while True:
            size = int(rd.line().split(b";")[0], 16)
            if size == 0:
                while rd.line():
                    pass
                break
            rd.take(size, h)
            total += size
            rd.line()
    elif cl:
        total = int(cl[0])
        rd.take(total, h)
    return Request(method, path, version, headers, total, h.hexdigest(), conn_id)


def blob_bytes(n, seed=7):
    """n deterministic pseudo-random bytes, in pieces."""
    import random
    rnd = random.Random(seed)
    block = bytes(rnd.getrandbits(8) for _ in range(65536))
    left, i = n, 0
    while left > 0:
        k = min(left, len(block))
        piece = bytearray(block[:k])
        piece[:8] = i.to_bytes(8, "little")[:min(8, k)]
        yield bytes(piece)
        left -= k
        i += 1


class Backend:
    def __init__(self, mode="delay", delay_ms=0, group=4, gate_timeout=5.0, host="127.0.0.1",
                 port=0):
        self.mode, self.delay = mode, delay_ms / 1000.0
        self.group, self.gate_timeout = group, gate_timeout
        self.lock = threading.Condition()
        self.requests = []
        self.inflight = 0
        self.max_inflight = 0
        self.conns = 0
        self.events = []        # ("arrive" | "done", path) in order
        self.arrivals = []      # reverse mode: requests waiting, in arrival order
        self.release = []       # ... the order they answer in
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.open_socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                cid = self.conns
                self.open_socks.append(c)
            threading.Thread(target=self._serve, args=(c, cid), daemon=True).start()

    def seen(self):
        with self.lock:
            return list(self.requests)

    def _serve(self, c, cid):
        rd = Reader(c)
        try:
            while True:
                req = read_request(rd, cid, lambda: c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"))
                with self.lock:
                    self.requests.append(req)
                    self.events.append(("arrive", req.path))
                    self.inflight += 1
                    self.max_inflight = max(self.max_inflight, self.inflight)
                try:
                    self._answer(c, req)
                finally:
                    with self.lock:
                        self.inflight -= 1
                        self.events.append(("done", req.path))
                        self.lock.notify_all()
                if (req.header("connection") or "").lower() == "close" or req.path == "/close":
                    break
        except (EOFError, OSError, ValueError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _wait_turn(self, req):
        with self.lock:
            self.arrivals.append(req)
            if len(self.arrivals) >= self.group:
                self.release = list(reversed(self.arrivals))
                self.events.append(("release", [r.path for r in self.release]))
                self.arrivals = []
                self.lock.notify_all()
            t0 = time.monotonic()
            while req not in self.release:
                left = self.gate_timeout - (time.monotonic() - t0)
                if left <= 0:
                    # Not enough at once: answer in arrival order.
                    self.release = list(self.arrivals)
                    self.arrivals = []
                    break
                self.lock.wait(left)
            while self.release and self.release[0] is not req:
                self.lock.wait(1)
            return

    def _done_turn(self, req):
        with self.lock:
            self.events.append(("sent", req.path))
            if self.release and self.release[0] is req:
                self.release.pop(0)
            self.lock.notify_all()

    def _answer(self, c, req):
        if self.mode == "reverse":
            self._wait_turn(req)
            try:
                body = ("%s %s\n" % (req.method, req.path)).encode()
                self._send(c, req, body)
            finally:
                self._done_turn(req)
            return
        if self.delay:
            time.sleep(self.delay)
        if req.path.startswith("/delay/"):
            time.sleep(int(req.path.split("/")[2]) / 1000.0)
        if req.path in ("/status/204", "/status/304"):
            c.sendall(b"HTTP/1.1 %s\r\nETag: \"x\"\r\n\r\n"
                      % (b"204 No Content" if req.path.endswith("204") else b"304 Not Modified"))
            return
        if req.path == "/close":
            body = b"closing\n"
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                      % (len(body), body))
            return
        if req.path.startswith("/blob/"):
            n = int(req.path.split("/")[2])
            head = ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n")
            c.sendall(head.encode())
            if req.method != "HEAD":
                for piece in blob_bytes(n):
                    c.sendall(b"%x\r\n" % len(piece) + piece + CRLF)
            c.sendall(b"0\r\n\r\n")
            return
        body = ("%s %s %d %s\n" % (req.method, req.path, req.body_len, req.body_sha)).encode()
        self._send(c, req, body)

    def _send(self, c, req, body):
        # Recorded before the first byte goes: the proxy cannot have the
        # response (and act on it) before this point.
        with self.lock:
            self.events.append(("answer", req.path))
        extra = "X-Body-Sha256: %s\r\nX-Seen-Via: %s\r\nX-Seen-XFF: %s\r\n" % (
            req.body_sha, req.header("via") or "", req.header("x-forwarded-for") or "")
        head = "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%sKeep-Alive: timeout=5\r\n" \
               "Connection: keep-alive\r\n\r\n" % (len(body), extra)
        c.sendall(head.encode() + (b"" if req.method == "HEAD" else body))

    def drop_connections(self):
        """Closes every connection it has accepted (keep-alive ones the
        proxy holds idle in its pool)."""
        with self.lock:
            socks, self.open_socks = self.open_socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for s in self.open_socks:
                try:
                    s.close()
                except OSError:
                    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", default="delay", choices=["delay", "reverse"])
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--group", type=int, default=4)
    a = ap.parse_args()
    Backend(a.mode, a.delay_ms, a.group, port=a.port)
    print("backend listening on %d" % a.port, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
