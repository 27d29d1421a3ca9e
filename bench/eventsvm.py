# SPDX-License-Identifier: MIT
"""The kmod part of the event-path scenario (bench/events.py): this host's kernel
cannot load modules, so agentfilt.ko runs in the qemu guest the vm suite boots
(tests/vm/: the Debian kernel fetched by tests/vm/fetch.sh, TCG, an initramfs with
busybox). This builds the module against that kernel, an initramfs with
agentproxy, bench_chatter and bench/events_guest.sh as /init, boots it once and
parses what the guest reports. The guest runs the uring and bpf sources too, so
that kmod is compared with them on the same (emulated, slow) CPUs: its figures are
relative only.
"""

import glob
import os
import re
import shutil
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(argv, log, timeout=600, **kw):
    with open(log, "ab") as fh:
        fh.write(("$ " + " ".join(argv) + "\n").encode())
        fh.flush()
        return subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                              **kw).returncode


def add_bin(root, src, dest):
    """src into the initramfs at dest, with the shared libraries ldd names."""
    os.makedirs(os.path.dirname(root + dest), exist_ok=True)
    shutil.copy(src, root + dest)
    r = subprocess.run(["ldd", src], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        m = re.search(r"=> (/\S+)", line) or re.match(r"\s*(/\S+)", line)
        if m and not os.path.exists(root + m.group(1)):
            os.makedirs(os.path.dirname(root + m.group(1)), exist_ok=True)
            shutil.copy(os.path.realpath(m.group(1)), root + m.group(1))


def kernel_env(kernel, log):
    """tests/vm/fetch.sh's env file (KREL, KDIR, VMLINUZ) as a dict."""
    r = subprocess.run(["bash", os.path.join(ROOT, "tests/vm/fetch.sh"), kernel],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    with open(log, "a") as fh:
        fh.write(r.stderr)
    if r.returncode:
        raise RuntimeError(f"tests/vm/fetch.sh {kernel} failed (see {log})")
    env = {}
    with open(r.stdout.strip().splitlines()[-1]) as fh:
        for line in fh:
            k, _, v = line.strip().partition("=")
            env[k] = v
    return env


def build(args, work, log, progress):
    """The module and the initramfs; returns (vmlinuz, initrd path)."""
    env = kernel_env(args.events_vm_kernel, log)
    progress(f"events: vm: kernel {env['KREL']}; building agentfilt.ko and the initramfs")
    src = os.path.join(work, "src")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(os.path.join(src, "kmod"))
    os.makedirs(os.path.join(src, "include", "uapi"))
    for f in glob.glob(os.path.join(ROOT, "kmod", "*.[ch]")) + [os.path.join(ROOT, "kmod",
                                                                              "Kbuild")]:
        shutil.copy(f, os.path.join(src, "kmod"))
    shutil.copy(os.path.join(ROOT, "include/uapi/agentfilt.h"),
                os.path.join(src, "include", "uapi"))
    ko = os.path.join(src, "kmod", "agentfilt.ko")
    if sh(["make", "-C", env["KDIR"], f"M={src}/kmod", "modules"], log) or \
            not os.path.exists(ko):
        raise RuntimeError(f"agentfilt.ko does not build (see {log})")
    root = os.path.join(work, "initrd")
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "usr/bin"):
        os.makedirs(os.path.join(root, d))
    shutil.copy("/bin/busybox", os.path.join(root, "bin/busybox"))
    shutil.copy(os.path.join(ROOT, "bench/events_guest.sh"), os.path.join(root, "init"))
    os.chmod(os.path.join(root, "init"), 0o755)
    shutil.copy(ko, os.path.join(root, "agentfilt.ko"))
    add_bin(root, os.path.join(args.build, "agentproxy"), "/usr/bin/agentproxy")
    shutil.copy(os.path.join(args.build, "bench_chatter"),
                os.path.join(root, "usr/bin/bench_chatter"))
    loads = " ".join(f"{name}:{rc}" for name, rc in args.events_load_list)
    with open(os.path.join(root, "bench.conf"), "w") as fh:
        fh.write(f'SOURCES="{" ".join(args.events_vm_sources.split(","))}"\n'
                 f'LOADS="{loads}"\nSESSIONS={args.events_vm_sessions}\n'
                 f"SECONDS={args.events_vm_seconds}\nSIZE={args.events_size}\n"
                 f"ROUNDS={args.events_vm_repeats}\n")
    initrd = os.path.join(work, "initrd.gz")
    with open(initrd, "wb") as out:
        find = subprocess.Popen(["find", "."], cwd=root, stdout=subprocess.PIPE)
        cpio = subprocess.Popen(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root,
                                stdin=find.stdout, stdout=subprocess.PIPE)
        gz = subprocess.Popen(["gzip", "-1"], stdin=cpio.stdout, stdout=out)
        find.stdout.close()
        cpio.stdout.close()
        if gz.wait() or cpio.wait() or find.wait():
            raise RuntimeError("building the initramfs failed")
    return env, initrd


def boot(env, initrd, work, timeout):
    """Runs the guest to its poweroff; returns (seconds, qemu status, results path)."""
    results = os.path.join(work, "results.log")
    console = os.path.join(work, "console.log")
    for f in (results, console):
        if os.path.exists(f):
            os.unlink(f)
    t0 = time.monotonic()
    with open(os.path.join(work, "qemu.log"), "wb") as q:
        rc = subprocess.run(
            ["timeout", str(timeout), "qemu-system-x86_64", "-accel", "tcg,thread=multi",
             "-cpu", "max", "-m", "1G", "-smp", "2", "-display", "none", "-monitor", "none",
             "-no-reboot", "-kernel", env["VMLINUZ"], "-initrd", initrd,
             "-append", "console=ttyS0 panic=-1 loglevel=4",
             "-serial", f"file:{console}", "-serial", f"file:{results}"],
            stdout=q, stderr=subprocess.STDOUT).returncode
    return time.monotonic() - t0, rc, results


def parse(path):
    """The guest's R/E/X lines -> runs in bench/events.py's form."""
    import json
    runs, events, failed, guest = {}, {}, [], None
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.strip().replace("\r", "")
            if line.startswith("# guest "):
                guest = line[8:]
            f = line.split(" ", 5)
            if line.startswith("R ") and len(f) >= 5:
                k = (f[1], f[2], int(f[3]))
                try:
                    runs[k] = json.loads(line.split(" ", 4)[4])
                except ValueError:
                    failed.append({"load": f[1], "source": f[2], "round": int(f[3]),
                                   "error": "bad JSON from the guest"})
            elif line.startswith("E ") and len(f) >= 6:
                events.setdefault((f[1], f[2], int(f[3]), f[4]), []).append(f[5])
            elif line.startswith("X "):
                g = line.split(" ", 4)
                failed.append({"load": g[1], "source": g[2], "round": int(g[3]),
                               "error": g[4] if len(g) > 4 else "?"})
    return guest, runs, events, failed


def check_tools():
    for t in ("qemu-system-x86_64", "cpio", "gzip", "make", "apt-get"):
        if not shutil.which(t):
            return f"{t} is not installed (make deps)"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed (make deps)"
    if os.geteuid() != 0:
        return "needs root (tests/vm/fetch.sh downloads the kernel with apt-get)"
    return None
