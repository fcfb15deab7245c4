# vmbench.py: shared helpers of the benchmarks that start QEMU (snap-bench,
# nbd-bench): sizes, a small QMP client, child processes, the test guest,
# timing hexz-snap.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Only the Python standard library is used, so that the benchmarks run with
# /usr/bin/python3 on a machine without PyGObject. Every child process is
# kept by its pid and stopped by that pid; servers listen on unix sockets in
# private temporary folders.

import array
import collections
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The record sector of the test guest is at byte 1 MiB of its disk.
GUEST_RECORD_PAGE = (1 << 20) // 4096
GUEST_DISK_SIZE = 4 << 20
# Guest RAM below the pattern region (image, status, dirty region).
GUEST_LOW_RAM = 16 << 20


def log(message):
    print(message, flush=True)


def parse_size(text):
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError("not a size: %r (use a number with K, M or G)" % text)
    shift = {"": 0, "K": 10, "M": 20, "G": 30}[match.group(2).upper()]
    return int(match.group(1)) << shift


def format_size(size):
    if size >= 1 << 30 and size % (1 << 30) == 0:
        return "%d GiB" % (size >> 30)
    return "%d MiB" % (size >> 20)


def format_seconds(seconds):
    if seconds is None:
        return "-"
    if seconds < 1:
        return "%.1f ms" % (seconds * 1000)
    return "%.2f s" % seconds


def format_ratio(value, reference):
    if value is None or not reference:
        return "-"
    return "%.2f×" % (value / reference)


def find_build_dir(requested):
    candidates = [requested] if requested else [os.path.join(SOURCE_ROOT, "_build"),
                                                os.path.join(SOURCE_ROOT, "build")]
    for candidate in candidates:
        if candidate and os.path.isfile(os.path.join(candidate, "tools", "hexz-snap")):
            return os.path.abspath(candidate)
    sys.exit("%s: no built tree with tools/hexz-snap at %s; build with meson and "
             "pass --build DIR" % (os.path.basename(sys.argv[0]), ", ".join(candidates)))


def pick_accel(requested):
    """Returns REQUESTED, or for "auto" kvm when /dev/kvm is usable and this
    machine is not itself a virtual machine, else tcg."""
    if requested != "auto":
        return requested
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    # Under nested KVM the first touch of each guest page is very slow: a
    # guest filling 1 GiB covered a few MiB in 8 s, while TCG filled 256 MiB
    # in about 5 s.
    try:
        with open("/proc/cpuinfo") as f:
            nested = re.search(r"^flags\s*:.*\bhypervisor\b", f.read(), re.MULTILINE)
    except OSError:
        nested = True
    return "tcg" if nested else "kvm"


def best(values):
    """Returns the smallest value that is not None, or None."""
    values = [v for v in values if v is not None]
    return min(values) if values else None


class QmpError(Exception):
    pass


class Qmp:
    """A blocking QMP client, enough for a benchmark: one command at a time,
    events kept in a list, file descriptors passed on the command's bytes."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""
        self.events = []
        self.next_id = 1
        greeting = self._read_message()
        if "QMP" not in greeting:
            raise QmpError("no QMP greeting from %s: %r" % (path, greeting))
        self.execute("qmp_capabilities")

    def close(self):
        self.sock.close()

    def _read_message(self):
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise QmpError("QEMU closed the QMP connection")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command, arguments=None, fd=None):
        message = {"execute": command, "id": self.next_id}
        self.next_id += 1
        if arguments:
            message["arguments"] = arguments
        data = json.dumps(message).encode() + b"\n"
        if fd is None:
            self.sock.sendall(data)
        else:
            # The descriptor rides on the command's own bytes.
            self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                        array.array("i", [fd]))])
        while True:
            reply = self._read_message()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise QmpError("%s: %s" % (command, reply["error"].get("desc")))
            if reply.get("id") == message["id"]:
                return reply.get("return")

    def status(self):
        return self.execute("query-status")["status"]

    def cont(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            state = self.status()
            if state == "running":
                return
            if state != "finish-migrate":
                try:
                    self.execute("cont")
                    return
                except QmpError:
                    if time.monotonic() > deadline:
                        raise
            if time.monotonic() > deadline:
                raise QmpError("QEMU stays in %s" % state)
            time.sleep(0.01)

    def wait_migration(self, timeout=600):
        deadline = time.monotonic() + timeout
        while True:
            info = self.execute("query-migrate")
            state = info.get("status")
            if state == "completed":
                return info
            if state in ("failed", "cancelled"):
                raise QmpError("migration %s: %s" % (state, info.get("error-desc", "")))
            if time.monotonic() > deadline:
                raise QmpError("migration still %s after %d s" % (state, timeout))
            time.sleep(0.005)


def drain(read_fd, out):
    """Copies everything from a pipe into the file descriptor OUT until end
    of file, without a copy in user space. Returns the number of bytes."""
    total = 0
    while True:
        moved = os.splice(read_fd, out, 1 << 24)
        if moved == 0:
            return total
        total += moved


def bare_dump(qmp_path, path, keep=False, resume=True):
    """QEMU's own dump of the stopped machine into a file. The pause runs
    from stop to the machine running again; the total adds connecting and
    the fsync of the file, like hexz-snap's. The file is removed unless
    KEEP is true; without RESUME the machine stays stopped."""
    start = time.monotonic()
    qmp = Qmp(qmp_path)
    saved = qmp.execute("query-migrate-parameters").get("max-bandwidth")
    qmp.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
    read_fd, write_fd = os.pipe()
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        qmp.execute("getfd", {"fdname": "bench"}, fd=write_fd)
        os.close(write_fd)
        write_fd = -1
        pause_start = time.monotonic()
        qmp.execute("stop")
        qmp.execute("migrate", {"uri": "fd:bench"})
        size = drain(read_fd, out)
        info = qmp.wait_migration()
        if resume:
            qmp.cont()
        pause = time.monotonic() - pause_start
        os.fsync(out)
        total = time.monotonic() - start
    finally:
        os.close(out)
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        if saved is not None:
            qmp.execute("migrate-set-parameters", {"max-bandwidth": saved})
        qmp.close()
    if not keep:
        os.unlink(path)
    downtime = info.get("downtime")
    return {"pause": pause, "total": total, "size": size, "rss": None, "cpu": None,
            "downtime": downtime / 1000 if downtime is not None else None}


def feed(path, write_fd):
    """Copies a file into a pipe until the file ends. Returns the number of
    bytes."""
    src = os.open(path, os.O_RDONLY)
    total = 0
    try:
        while True:
            moved = os.splice(src, write_fd, 1 << 24)
            if moved == 0:
                break
            total += moved
    finally:
        os.close(src)
    return total


_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Asks the kernel to send SIGTERM to the child when the benchmark
    dies, so that no QEMU outlives a benchmark that was killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Children:
    """Child processes kept by pid, so that exactly those are stopped."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log_path, **kwargs):
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                                    **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc, timeout=10):
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in list(self.procs):
            self.stop(proc)


def wait_for_path(path, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise RuntimeError("process %d exited with %d before creating %s"
                               % (proc.pid, proc.returncode, path))
        if time.monotonic() > deadline:
            raise RuntimeError("%s did not appear within %d s" % (path, timeout))
        time.sleep(0.02)


def guest_path(build):
    path = os.path.join(build, "tests", "guest", "hexz-test-guest.elf")
    if not os.path.isfile(path):
        sys.exit("The test guest was not built (%s); it needs gcc -m32" % path)
    return path


def guest_qemu_argv(build, accel, ram, append, disk_drive, qmp_path, debug_path,
                    incoming=False):
    """Returns the QEMU command line that runs the test guest with RAM
    bytes of pattern. The machine gets the guest's own 16 MiB, RAM and
    32 MiB more."""
    megabytes = (GUEST_LOW_RAM + ram) // (1 << 20) + 32
    argv = ["qemu-system-x86_64", "-nodefaults", "-no-reboot", "-machine", "pc",
            "-accel", accel, "-m", str(megabytes), "-display", "none",
            "-kernel", guest_path(build), "-append", append,
            "-drive", disk_drive,
            "-qmp", "unix:%s,server=on,wait=off" % qmp_path,
            "-debugcon", "file:%s" % debug_path]
    if incoming:
        argv += ["-S", "-incoming", "defer"]
    return argv


def wait_guest_running(debug_path, proc, timeout):
    """Waits until the test guest reports on its debug port that it filled
    its pattern and runs."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(debug_path, "rb") as f:
                if b"hexz-guest: running" in f.read():
                    return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("QEMU (pid %d) exited with %d" % (proc.pid, proc.returncode))
        if time.monotonic() > deadline:
            raise RuntimeError("the guest did not finish filling within %d s" % timeout)
        time.sleep(0.1)


def make_base_disk(build, folder, changed=0):
    """Creates a raw disk for the guest, its hexz snapshot and an overlay
    that QEMU writes as a raw disk: a copy, with .meta listing the page of
    the guest's record sector and CHANGED bytes of random data from 2 MiB
    on, as if the guest had written them. Returns the three paths."""
    changed = (changed + 4095) // 4096 * 4096
    first_changed = 2 << 20
    size = max(GUEST_DISK_SIZE, first_changed + changed)
    raw = os.path.join(folder, "disk.img")
    with open(raw, "wb") as f:
        f.truncate(size)
    base = os.path.join(folder, "base.hxz")
    run_tool(build, ["pack", raw, base])
    overlay = os.path.join(folder, "disk.overlay")
    shutil.copyfile(raw, overlay)
    os.chmod(overlay, 0o600)
    pages = [GUEST_RECORD_PAGE]
    with open(overlay, "r+b") as f:
        f.seek(first_changed)
        for offset in range(0, changed, 1 << 20):
            f.write(os.urandom(min(1 << 20, changed - offset)))
    pages += range(first_changed // 4096, (first_changed + changed) // 4096)
    with open(os.path.join(folder, "disk.meta"), "wb") as f:
        f.write(b"".join(page.to_bytes(8, "little") for page in pages))
    return raw, base, overlay


ToolRun = collections.namedtuple("ToolRun", "stdout wall rss cpu")


def run_tool(build, args, timed=False, timeout=600):
    """Runs hexz-snap and returns a ToolRun: its output, wall seconds and,
    with TIMED, its peak memory in KiB and processor seconds (user and
    system) as /usr/bin/time -v measures them, else None."""
    tool = os.path.join(build, "tools", "hexz-snap")
    argv = [tool] + args
    time_out = None
    if timed and os.access("/usr/bin/time", os.X_OK):
        fd, time_out = tempfile.mkstemp(prefix="hexz-bench-time-")
        os.close(fd)
        argv = ["/usr/bin/time", "-v", "-o", time_out] + argv
    start = time.monotonic()
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=timeout)
        wall = time.monotonic() - start
        if result.returncode != 0:
            raise RuntimeError("hexz-snap %s failed (%d): %s"
                               % (args[0], result.returncode, result.stderr.decode().strip()))
        rss = cpu = None
        if time_out is not None:
            with open(time_out) as f:
                report = f.read()
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
            rss = int(match.group(1)) if match else None
            times = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", report)
            cpu = sum(float(t) for t in times) if len(times) == 2 else None
        return ToolRun(result.stdout.decode(), wall, rss, cpu)
    finally:
        if time_out is not None:
            os.unlink(time_out)


def machine_line(accel):
    try:
        with open("/etc/debian_version") as f:
            debian = "Debian " + f.read().strip()
    except OSError:
        debian = "unknown system"
    load = os.getloadavg()[0]
    return "%d processors, %s, accel %s, load average %.1f" % (os.cpu_count(), debian, accel, load)
