# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared fixtures of the Python tests.

meson test runs this suite with GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing
at the build tree, HEXZ_BUILD_ROOT at the build folder and HEXZ_TEST_GUEST
at the test guest's kernel (empty when it was not built). The machine
fixture starts nbdkit with the hexz plugin and QEMU with the test guest, in
a private temporary folder with unix sockets only, and stops exactly the
processes it started.
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time

import gi
import pytest

from gi.repository import GLib  # noqa: E402

# A build without introspection has no typelib: the test modules then skip
# themselves with this reason.
try:
    gi.require_version("Hexz", "1")
    from gi.repository import Hexz  # noqa: E402
    MISSING_TYPELIB = None
except (ImportError, ValueError) as error:
    Hexz = None
    MISSING_TYPELIB = f"The Hexz-1 typelib is not available ({error}); build with -Dintrospection=enabled"

BUILD_ROOT = os.environ.get("HEXZ_BUILD_ROOT", "")
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DISK_SIZE = 4 * 1024 * 1024
BOOT_TIMEOUT = 60

# The test guest's status area in guest memory and its fields (see
# tests/guest/README.md).
GUEST_STATUS_ADDRESS = 0x200000
GUEST_STATUS_SIZE = 256
GUEST_STATUS_MAGIC = 0x535A5848
GUEST_STATE_RUNNING = 3
# Where the guest writes its disk record, and the record's magic.
GUEST_RECORD_OFFSET = 2048 * 512
GUEST_RECORD_MAGIC = 0x525A5848

PR_SET_PDEATHSIG = 1


def run_main_loop_until(predicate, timeout=60):
    """Iterate the default main context until predicate() is true."""
    context = GLib.MainContext.default()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Gave up waiting after {timeout} s")
        context.iteration(True)


def wait_until(predicate, timeout=10, interval=0.02):
    """Poll predicate(), which must not need the main loop, until it is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Gave up waiting after {timeout} s")
        time.sleep(interval)


def write_snapshot(path, disk=None, disk_size=DISK_SIZE):
    """Write a snapshot whose disk stream is disk (bytes), or zeros."""
    writer = Hexz.SnapshotWriter.new_for_path(str(path))
    writer.begin_stream(Hexz.Stream.DISK, disk_size)
    if disk is None:
        writer.write_zeros(disk_size, None)
    else:
        assert len(disk) == disk_size
        writer.write_bytes(GLib.Bytes.new(disk), None)
    writer.end_stream(None)
    writer.close(None)


def kill_with_parent():
    """Make the child die with the test process (run in the child)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class QmpError(Exception):
    pass


def qmp_execute(socket_path, command, arguments=None, timeout=10):
    """Run one QMP command on its own connection and return its reply.

    QEMU serves one QMP client at a time, so the connection is closed
    before the library under test connects."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(socket_path)
        stream = connection.makefile("rwb")

        def read_reply():
            while True:
                line = stream.readline()
                if not line:
                    raise QmpError(f"QEMU closed the QMP connection during {command}")
                message = json.loads(line)
                if "event" in message:
                    continue
                return message

        read_reply()  # the greeting
        for name, args in (("qmp_capabilities", None), (command, arguments)):
            request = {"execute": name}
            if args:
                request["arguments"] = args
            stream.write(json.dumps(request).encode() + b"\n")
            stream.flush()
            reply = read_reply()
            if "error" in reply:
                raise QmpError(f"{name}: {reply['error']['desc']}")
        return reply["return"]


class Machine:
    """A QEMU running the test guest on a disk served by the hexz plugin
    from base.hxz, with its writes going to vm.overlay."""

    def __init__(self, folder):
        self.folder = folder
        self.base = os.path.join(folder, "base.hxz")
        self.overlay = os.path.join(folder, "vm.overlay")
        self.nbd_socket = os.path.join(folder, "nbd.sock")
        self.qmp_socket = os.path.join(folder, "qmp.sock")
        # A second QMP monitor, for a test that talks to QEMU while the
        # library under test uses the first one.
        self.monitor_socket = os.path.join(folder, "monitor.sock")
        self.processes = []

    def start(self, guest, plugin, append):
        write_snapshot(self.base)
        self.nbdkit = self.spawn("nbdkit.log", [
            "nbdkit", "--unix", self.nbd_socket, "--foreground", "--exit-with-parent",
            plugin, f"snapshot={self.base}", f"overlay={self.overlay}", "create=true",
        ])
        self.wait_for_socket(self.nbdkit, self.nbd_socket, "nbdkit.log")

        accel = os.environ.get("HEXZ_TEST_ACCEL") or "tcg"
        self.qemu = self.spawn("qemu.log", [
            "qemu-system-x86_64", "-nodefaults", "-no-reboot", "-machine", "pc",
            "-accel", accel, "-m", "64", "-display", "none",
            "-kernel", guest, "-append", append,
            "-drive", f"file=nbd+unix:///?socket={self.nbd_socket},format=raw,if=ide,"
                      "cache=writethrough",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-qmp", f"unix:{self.monitor_socket},server=on,wait=off",
        ])
        self.wait_for_socket(self.qemu, self.qmp_socket, "qemu.log")
        self.wait_for_socket(self.qemu, self.monitor_socket, "qemu.log")

    def spawn(self, log_name, argv):
        log = open(os.path.join(self.folder, log_name), "wb")
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, preexec_fn=kill_with_parent)
        log.close()
        self.processes.append(process)
        return process

    def log(self, log_name):
        with open(os.path.join(self.folder, log_name), errors="replace") as log:
            return log.read()

    def wait_for_socket(self, process, path, log_name):
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited with status {process.returncode}:\n"
                                   f"{self.log(log_name)}")
            if os.path.exists(path):
                try:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                        probe.connect(path)
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not appear:\n{self.log(log_name)}")
            time.sleep(0.02)

    def qmp(self, command, arguments=None):
        return qmp_execute(self.qmp_socket, command, arguments)

    def is_running(self):
        return self.qmp("query-status")["running"]

    def guest_status(self):
        """Read the guest's status area as a dict of its main fields."""
        path = os.path.join(self.folder, "status.bin")
        self.qmp("pmemsave", {"val": GUEST_STATUS_ADDRESS, "size": GUEST_STATUS_SIZE,
                              "filename": path})
        with open(path, "rb") as file:
            data = file.read()
        os.unlink(path)
        magic, version, state, flags, counter = struct.unpack_from("<IIIIQ", data, 0)
        last_done_sequence, = struct.unpack_from("<I", data, 64)
        return {"magic": magic, "state": state, "flags": flags, "counter": counter,
                "last_done_sequence": last_done_sequence}

    def wait_for_guest(self):
        """Wait until the guest filled its memory and wrote two disk records."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            status = self.guest_status()
            if (status["magic"] == GUEST_STATUS_MAGIC and status["state"] == GUEST_STATE_RUNNING
                    and status["last_done_sequence"] >= 2):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"The guest did not start: {status}\n{self.log('qemu.log')}")
            time.sleep(0.05)

    def stop(self):
        # QEMU first, so that nbdkit flushes after its last client left.
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def guest_append():
    # Under nested KVM the first touch of each guest page is slow, so the
    # guest fills less there.
    accel = os.environ.get("HEXZ_TEST_ACCEL") or "tcg"
    return "fill=8M interval=50" if accel == "tcg" else "fill=1M interval=50"


@pytest.fixture
def private_dir(tmp_path):
    """A temporary folder only the test user can enter."""
    os.chmod(tmp_path, 0o700)
    return tmp_path


@pytest.fixture
def machine_requirements():
    """The guest kernel and plugin paths, or a skip saying what is missing."""
    guest = os.environ.get("HEXZ_TEST_GUEST", "")
    plugin = os.path.join(BUILD_ROOT, "tools", "hexz-plugin.so")
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 is not installed")
    if not shutil.which("nbdkit"):
        pytest.skip("nbdkit is not installed")
    if not guest or not os.path.isfile(guest):
        pytest.skip("The test guest was not built (HEXZ_TEST_GUEST is empty)")
    if not os.path.isfile(plugin):
        pytest.skip(f"The nbdkit plugin was not built ({plugin} is missing)")
    return guest, plugin


@pytest.fixture
def machine(private_dir, machine_requirements):
    """A running test guest whose disk is served from a snapshot."""
    guest, plugin = machine_requirements
    folder = private_dir / "vm"
    folder.mkdir(mode=0o700)
    vm = Machine(str(folder))
    try:
        vm.start(guest, plugin, guest_append())
        vm.wait_for_guest()
        yield vm
    finally:
        vm.stop()
