#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs a Catch2 test binary and prints one TAP line per test case (Catch2's
own TAP reporter prints one per assertion). Usage: catch2_tap.py BINARY [ARGS]"""
import subprocess
import sys
import xml.etree.ElementTree as ET

proc = subprocess.run(sys.argv[1:] + ["--reporter", "junit"], capture_output=True, text=True)
try:
    root = ET.fromstring(proc.stdout)
except ET.ParseError as e:
    print(f"not ok 1 - {sys.argv[1]} produced no report ({e}); exit {proc.returncode}")
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
    sys.exit(1)
n = 0
failed = 0
for case in root.iter("testcase"):
    n += 1
    name = case.get("name")
    bad = case.findall("failure") + case.findall("error")
    skipped = case.find("skipped")
    if bad:
        failed += 1
        print(f"not ok {n} - {name}")
        for b in bad:
            for line in ((b.get("message") or "") + "\n" + (b.text or "")).strip().splitlines():
                print(f"#   {line[:300]}")
    elif skipped is not None:
        # Catch2 puts the reason in the text, after a SKIPPED line.
        why = skipped.get("message") or " ".join(
            l.strip() for l in (skipped.text or "").splitlines()
            if l.strip() and l.strip() != "SKIPPED" and not l.strip().startswith("at "))
        print(f"ok {n} - {name} # SKIP {why or 'no reason given'}")
    else:
        print(f"ok {n} - {name}")
print(f"1..{n}")
if proc.stderr.strip():
    for line in proc.stderr.strip().splitlines()[-20:]:
        print(f"# {line}")
sys.exit(1 if failed or (proc.returncode != 0 and n == 0) else 0)
