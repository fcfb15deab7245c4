# SPDX-License-Identifier: LGPL-2.1-or-later
"""HexzBoot from Python: boot the test guest from a packed disk and stop it."""

import os
import shutil
import subprocess
import tempfile

import gi
import pytest

try:
    gi.require_version("Hexz", "1")
    from gi.repository import GLib, Hexz
except (ImportError, ValueError) as error:
    MISSING_TYPELIB = str(error)
else:
    MISSING_TYPELIB = None

GUEST = os.environ.get("HEXZ_TEST_GUEST", "")
BUILD_ROOT = os.environ.get("HEXZ_BUILD_ROOT", "")
PLUGIN = os.path.join(BUILD_ROOT, "tools", "hexz-plugin.so")

pytestmark = [
    pytest.mark.skipif(MISSING_TYPELIB is not None,
                       reason=f"no Hexz typelib: {MISSING_TYPELIB}"),
    pytest.mark.skipif(not GUEST, reason="the test guest was not built"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None or
                       shutil.which("nbdkit") is None,
                       reason="qemu-system-x86_64 or nbdkit is not installed"),
    pytest.mark.skipif(not os.path.isfile(PLUGIN), reason="hexz-plugin.so was not built"),
]

# How long one step may run the main loop before the test fails.
LOOP_TIMEOUT_MS = 60000


def run_until_done(start):
    """Runs a main loop until the callback given to `start` was called."""
    loop = GLib.MainLoop()
    outcome = {}

    def on_done(source, result):
        outcome["source"] = source
        outcome["result"] = result
        loop.quit()

    def on_timeout():
        outcome["timed_out"] = True
        loop.quit()
        return GLib.SOURCE_REMOVE

    timeout_id = GLib.timeout_add(LOOP_TIMEOUT_MS, on_timeout)
    start(on_done)
    loop.run()
    assert "timed_out" not in outcome, "the operation did not complete in time"
    GLib.source_remove(timeout_id)
    return outcome["result"]


def test_boot_start_and_stop():
    folder = tempfile.mkdtemp(prefix="hexz-boot-py-")
    try:
        disk = os.path.join(folder, "disk.img")
        base = os.path.join(folder, "base.hexz")
        with open(disk, "wb") as image:
            image.truncate(4 << 20)
        subprocess.run([os.environ["HEXZ_SNAP"], "pack", disk, base], check=True,
                       stdout=subprocess.DEVNULL)

        boot = Hexz.Boot.new(base)
        boot.props.plugin_path = PLUGIN
        boot.props.accel = "tcg"
        boot.props.kernel = GUEST
        boot.props.append = "fill=1M"
        boot.set_extra_args(["-name", "hexz-python-test"])
        assert boot.get_extra_args() == ["-name", "hexz-python-test"]

        result = run_until_done(lambda done: boot.start_async(None, done))
        assert boot.start_finish(result)
        assert boot.props.running
        assert boot.get_qemu_pid() > 0
        assert boot.get_nbdkit_pid() > 0
        directory = boot.get_directory()
        assert boot.get_qmp_socket().startswith(directory)
        assert os.path.isdir(directory)

        result = run_until_done(
            lambda done: boot.stop_async(Hexz.BootStopMode.QUIT, None, done))
        assert boot.stop_finish(result)
        assert not boot.props.running
        assert not os.path.exists(directory)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_boot_rejects_a_second_start():
    boot = Hexz.Boot.new("/nonexistent/snapshot.hexz")
    result = run_until_done(lambda done: boot.start_async(None, done))
    with pytest.raises(GLib.Error):
        boot.start_finish(result)

    result = run_until_done(lambda done: boot.start_async(None, done))
    with pytest.raises(GLib.Error) as error:
        boot.start_finish(result)
    assert error.value.matches(Hexz.boot_error_quark(), Hexz.BootError.BUSY)
