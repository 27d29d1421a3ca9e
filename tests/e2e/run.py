#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End-to-end tests of agentproxy stripe/join and echo_server: real
processes on loopback, TAP on stdout (`ok N - name`, `not ok N - name`).
Exits non-zero if anything failed.

  python3 tests/e2e/run.py [-k SUBSTRING]... [-x SUBSTRING]... [--root] [--list]

-k runs only the tests whose name has SUBSTRING, -x leaves those out;
--root skips the run (with a printed reason) unless it runs as root.

Logs of every process are kept under build/test-logs/e2e/<test>/ (E2E_BUILD:
$E2E_BUILD/test-logs/e2e/<test>/).
Environment: BUILD (default build), E2E_BUILD (the build folder of the
binaries under test and of the logs; default BUILD), E2E_SANITIZE=1 (a
sanitizer build: stop processes with SIGTERM so LeakSanitizer runs; a
sanitizer report of any process fails the test it came in), E2E_BIG_MIB
(default 256), E2E_EVENTS (default uring), E2E_DATA_PATH (splice or copy;
default splice)."""

import os
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import LOGDIR, TestFailure, comment  # noqa: E402
import cases_traffic  # noqa: E402
import cases_failure  # noqa: E402
import cases_badinput  # noqa: E402
import cases_cli  # noqa: E402
import cases_abuse  # noqa: E402
import cases_http  # noqa: E402
import cases_faultrelay  # noqa: E402
import cases_failover  # noqa: E402



def all_tests():
    tests = []
    for mod in (cases_cli, cases_traffic, cases_failure, cases_badinput, cases_abuse, cases_http,
                cases_faultrelay, cases_failover):
        tests += mod.tests()
    return tests


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = []

    def result(self, name, ok, diag=None, skip=None):
        self.n += 1
        if skip:
            print("ok %d - %s # SKIP %s" % (self.n, name, skip), flush=True)
            return
        print("%s %d - %s" % ("ok" if ok else "not ok", self.n, name), flush=True)
        if diag:
            comment(diag)
        if not ok:
            self.failed.append(name)


def run_one(tap, name, fn, timeout, **kw):
    """Runs fn(env-factory) in a thread bounded by timeout; its cleanups kill
    whatever it started, also when it hangs."""
    from harness import Env
    envs = []

    def mkenv(suffix=""):
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:80]
        e = Env(safe + suffix, LOGDIR)
        envs.append(e)
        return e

    box = {}

    def body():
        try:
            box["diag"] = fn(mkenv, **kw)
        except TestFailure as e:
            box["fail"] = str(e)
        except harness.Skip as e:
            box["skip"] = str(e)
        except Exception:  # noqa: BLE001
            box["fail"] = "unexpected error:\n" + traceback.format_exc()

    t0 = time.monotonic()
    th = threading.Thread(target=body, daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        box["fail"] = "test did not finish within %d s" % timeout
    logs = []
    if "fail" in box:
        for e in envs:
            logs += e.logs()
    for e in envs:
        e.cleanup()
    th.join(10)
    sanitizer_verdict(box)
    dt = time.monotonic() - t0
    if "skip" in box and "fail" not in box:
        tap.result(name, True, skip=box["skip"])
    elif "fail" in box:
        tap.result(name, False, "%s\n(after %.1f s)\n%s" % (box["fail"], dt, "\n".join(logs)))
    else:
        d = box.get("diag")
        tap.result(name, True, ("%s (%.1f s)" % (d, dt)) if d else None)


def sanitizer_verdict(box):
    """A sanitizer report of any process that exited during the test (its
    own, or a shared one such as the bad-input bed) fails the test."""
    reports = harness.sanitizer_reports()
    if reports:
        box["fail"] = "\n".join(
            ([box["fail"]] if "fail" in box else []) +
            ["sanitizer report in %s:\n%s" % (path, text) for path, text in reports])
    for path in harness.unchecked_procs():
        comment("note: %s: still running %.0f s after SIGTERM, killed; no leak check"
                % (path, harness.STOP_GRACE))


def snapshot_binaries():
    """Copies the binaries under test to a private directory: the build
    directory is shared and may be rebuilt while the suite runs. Waits up
    to a minute for a binary that is being written (it must run --help)."""
    import shutil
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix="agentmux-e2e-bin-")
    import atexit
    atexit.register(shutil.rmtree, d, True)
    missing = []
    for attr in ("AGENTPROXY", "ECHO_SERVER"):
        src = getattr(harness, attr)
        dst = os.path.join(d, os.path.basename(src))
        t0 = time.monotonic()
        while True:
            try:
                shutil.copy2(src, dst)
                if subprocess.run([dst, "--help"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=10).returncode == 0:
                    setattr(harness, attr, dst)
                    break
            except (OSError, subprocess.SubprocessError):
                pass
            if time.monotonic() - t0 > 60:
                missing.append(src)
                break
            time.sleep(1)
    return missing


def main(argv):
    only, leave = [], []
    listing = need_root = False
    i = 0
    while i < len(argv):
        if argv[i] in ("-k", "-x") and i + 1 < len(argv):
            (only if argv[i] == "-k" else leave).append(argv[i + 1])
            i += 2
        elif argv[i] in ("--list", "--root"):
            listing = listing or argv[i] == "--list"
            need_root = need_root or argv[i] == "--root"
            i += 1
        else:
            print("usage: run.py [-k SUBSTRING]... [-x SUBSTRING]... [--root] [--list]",
                  file=sys.stderr)
            return 2
    tests = [t for t in all_tests() if (not only or any(o in t[0] for o in only))
             and not any(x in t[0] for x in leave)]
    variant = "" if (harness.EVENTS, harness.DATA_PATH) == ("uring", "splice") else \
        "[events %s, %s] " % (harness.EVENTS, harness.DATA_PATH)
    tests = [(variant + t[0],) + tuple(t[1:]) for t in tests]
    if need_root and os.geteuid() != 0 and not listing:
        print("1..1\nok 1 - e2e %s# SKIP needs root (the %s event source)"
              % (variant, harness.EVENTS), flush=True)
        return 0
    if listing:
        for t in tests:
            print(t[0])
        return 0
    tap = Tap()
    print("1..%d" % (len(tests) + (1 if harness.SANITIZE else 0)), flush=True)
    os.makedirs(LOGDIR, exist_ok=True)
    missing = snapshot_binaries()
    t0 = time.monotonic()
    for name, fn, timeout, *rest in tests:
        if missing:
            tap.result(name, False, "not built: %s (run make)" % ", ".join(missing))
            continue
        run_one(tap, name, fn, timeout, **(rest[0] if rest else {}))
    if harness.SANITIZE:
        # Processes the cases left running (a shared bed when -k/-x left
        # out its last case) are stopped and checked here.
        box = {}
        harness.stop_all()
        sanitizer_verdict(box)
        tap.result("sanitizers: no report from the processes left running at the end",
                   "fail" not in box, box.get("fail"))
    comment("e2e: %d tests in %.0f s; failing: %s"
            % (tap.n, time.monotonic() - t0, ", ".join(tap.failed) if tap.failed else "none"))
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
