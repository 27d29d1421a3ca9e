#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The two ends of a transfer over an emulated path (tests/path/run.py runs each in its
network namespace):

  ends.py serve PORT MIB SEED   accept one connection, read to its end, print the sha256
                                of what came, send MIB MiB of pattern SEED back, close
  ends.py send HOST PORT MIB SEED
                                connect, send MIB MiB of pattern SEED, half-close, read
                                to the end, print the sha256 of what came back

Each prints one JSON line: {"got": bytes, "sha256": hex, "sent": bytes}.
"""
import hashlib
import json
import random
import socket
import sys

MiB = 1 << 20


def pattern(mib, seed):
    return random.Random(seed).randbytes(mib * MiB)


def digest(data):
    return hashlib.sha256(data).hexdigest()


def read_all(s):
    h, n = hashlib.sha256(), 0
    while True:
        b = s.recv(1 << 20)
        if not b:
            return n, h.hexdigest()
        h.update(b)
        n += len(b)


def main(argv):
    if argv[1] == "serve":
        port, mib, seed = int(argv[2]), int(argv[3]), int(argv[4])
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", port))
        ls.listen(1)
        print(json.dumps({"listening": port}), flush=True)
        s, _ = ls.accept()
        n, h = read_all(s)
        data = pattern(mib, seed)
        s.sendall(data)
        s.close()
        print(json.dumps({"got": n, "sha256": h, "sent": len(data)}), flush=True)
    else:
        host, port, mib, seed = argv[2], int(argv[3]), int(argv[4]), int(argv[5])
        s = socket.create_connection((host, port), timeout=60)
        data = pattern(mib, seed)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        n, h = read_all(s)
        print(json.dumps({"got": n, "sha256": h, "sent": len(data)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
