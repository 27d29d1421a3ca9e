#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed inputs of the fuzz targets into tests/fuzz/corpus/<target>/
(valid frames, frame streams and HELLOs, signed with the hello target's key;
random operation strings for the reorder buffer). `make fuzz` then merges and
minimizes the corpora; this is how they started. Usage: seeds.py [DIR]"""

import hashlib
import hmac
import os
import random
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import (T_ACK, T_DATA, T_ERROR, T_FIN, T_HELLO, data_frame, fin_frame,  # noqa: E402
                     header, hello_body, hello_frame)

KEY = b"agentmux fuzz key: not a secret"  # hello_fuzz.cpp kKey


def frame_seeds(rnd):
    yield hello_frame(0x1122334455667788, 0, 4)
    yield hello_frame(7, 3, 4, key=KEY)
    yield data_frame(0, b"x")
    yield data_frame(5, bytes(rnd.randrange(256) for _ in range(300)))
    yield fin_frame(9)
    yield header(T_ACK, 0, 3)
    yield header(T_ERROR, 4 + 11) + struct.pack("<I", 2) + b"bad frame\x01\x7f"
    # A stream's life: HELLO, DATA, DATA, FIN.
    yield (hello_frame(42, 1, 2, key=KEY) + data_frame(0, b"hello ") +
           data_frame(2, b"world") + fin_frame(3))
    # A partial frame after a good one.
    yield data_frame(1, b"abc") + header(T_DATA, 100, 2) + b"only a part"
    yield header(T_HELLO, 56)[:10]
    yield header(T_FIN, 0, 1)
    # Wire v2 failover: an ACK with WAITING, one with a reserved flag, and
    # a stream that carries a resent frame after a later one.
    yield header(T_ACK, 0, 12, flags=1)
    yield header(T_ACK, 0, 12, flags=2)
    yield data_frame(4, b"later") + header(T_ACK, 0, 3, flags=1) + data_frame(3, b"resent")


def hello_seeds():
    yield hello_body(1, 0, 1)
    yield hello_body(0xdeadbeef, 2, 4, key=KEY)
    yield hello_body(3, 63, 64, key=KEY) + b"\x05"
    yield hello_body(9, 0, 2, key=b"another key, not the fuzz key")
    yield hello_body(4, 0, 2, flags=1)
    yield hello_body(5, 1, 4, key=KEY, flags=2)   # REJOIN, signed
    yield hello_body(6, 1, 4, flags=4)            # a reserved flag


def main(argv):
    out = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "corpus")
    rnd = random.Random(1)
    sets = {
        "frame": list(frame_seeds(rnd)),
        "hello": list(hello_seeds()),
        "reorder": [bytes(rnd.randrange(256) for _ in range(n)) for n in (8, 64, 256, 1024)],
    }
    for target, seeds in sets.items():
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for s in seeds:
            with open(os.path.join(d, "seed-" + hashlib.sha1(s).hexdigest()), "wb") as f:
                f.write(s)
        print("%s: %d seeds in %s" % (target, len(seeds), d))


if __name__ == "__main__":
    main(sys.argv)
