# SPDX-License-Identifier: LGPL-2.1-or-later
"""The example programs in examples/, run as users run them.

The GTK example runs on an Xvfb server that the test starts on a free
display number and stops by its pid. Set HEXZ_TEST_SCREENSHOT_DIR to keep
the GTK example's screenshots there.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import gi
import pytest

from conftest import MISSING_TYPELIB  # noqa: E402

if MISSING_TYPELIB is not None:
    pytest.skip(MISSING_TYPELIB, allow_module_level=True)

gi.require_version("GdkPixbuf", "2.0")
gi.require_version("Hexz", "1")
from gi.repository import GdkPixbuf, Hexz  # noqa: E402

if not hasattr(Hexz, "Capture"):
    pytest.skip("This build of the library has no Hexz.Capture, which the examples need",
                allow_module_level=True)

from conftest import SOURCE_ROOT, qmp_execute, wait_until  # noqa: E402

SNAPSHOT_EXAMPLE = os.path.join(SOURCE_ROOT, "examples", "snapshot.py")
GTK_EXAMPLE = os.path.join(SOURCE_ROOT, "examples", "hexz-snapshot-gtk.py")


def machine_arguments(machine, output):
    return ["--socket", machine.qmp_socket, "--overlay", machine.overlay,
            "--base", machine.base, "--output", str(output)]


def test_snapshot_example(machine, private_dir):
    output = private_dir / "now.hxz"

    result = subprocess.run([sys.executable, SNAPSHOT_EXAMPLE, "--mode", "paused"]
                            + machine_arguments(machine, output),
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Wrote {output} (paused mode)")
    # Without a terminal the progress line prints one line per update.
    phases = [line.split(":")[0] for line in result.stderr.splitlines()]
    assert phases[0] == "preflight"
    assert "memory" in phases
    assert phases[-1] == "done"
    assert Hexz.Snapshot.open_path(str(output), None).has_memory()
    assert machine.is_running()


def test_snapshot_example_failure(machine, private_dir):
    output = private_dir / "now.hxz"
    arguments = machine_arguments(machine, output)
    arguments[arguments.index("--base") + 1] = str(private_dir / "missing.hxz")

    result = subprocess.run([sys.executable, SNAPSHOT_EXAMPLE] + arguments,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    assert "Snapshot failed:" in result.stderr
    assert "missing.hxz" in result.stderr
    assert not output.exists()


def test_snapshot_example_ctrl_c(machine, private_dir):
    """Ctrl+C during the memory dump cancels: no file, the machine runs."""
    output_dir = private_dir / "output"
    output_dir.mkdir()
    output = output_dir / "now.hxz"
    # QEMU pauses the migration before its last step, so the memory phase
    # lasts until the signal arrives.
    qmp_execute(machine.monitor_socket, "migrate-set-capabilities",
                {"capabilities": [{"capability": "pause-before-switchover", "state": True}]})

    process = subprocess.Popen([sys.executable, SNAPSHOT_EXAMPLE, "--mode", "paused"]
                               + machine_arguments(machine, output),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: process.poll() is not None or qmp_execute(
            machine.monitor_socket, "query-migrate").get("status") == "pre-switchover", timeout=60)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 1, stderr
    assert stdout == ""
    assert "Snapshot failed: The snapshot was cancelled" in stderr
    assert list(output_dir.iterdir()) == []
    assert machine.is_running()
    # The cleanup closes the pipe and sends migrate_cancel: whichever QEMU
    # meets first ends the migration as "failed" or as "cancelled".
    assert machine.qmp("query-migrate").get("status") in ("cancelled", "failed")


def gtk_available():
    try:
        gi.require_version("Gtk", "4.0")
        return True
    except ValueError:
        return False


@pytest.fixture
def display():
    """An Xvfb server on the first free display number from 90 on."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed")
    if not gtk_available():
        pytest.skip("The GTK 4 introspection data (gir1.2-gtk-4.0) is not installed")

    for number in range(90, 190):
        if os.path.exists(f"/tmp/.X{number}-lock"):
            continue
        server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1024x768x24",
                                   "-nolisten", "tcp"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        socket_path = f"/tmp/.X11-unix/X{number}"
        try:
            wait_until(lambda: server.poll() is not None or os.path.exists(socket_path))
        except TimeoutError:
            pass
        if server.poll() is None and os.path.exists(socket_path):
            break
        # Another server took the number first.
        if server.poll() is None:
            server.terminate()
        server.wait()
    else:
        pytest.skip("No free X display number from 90 to 189")

    try:
        yield f":{number}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def start_gtk_example(display, arguments):
    environment = dict(os.environ, DISPLAY=display, GDK_BACKEND="x11", GSK_RENDERER="cairo",
                       NO_AT_BRIDGE="1", GTK_A11Y="none")
    return subprocess.Popen([sys.executable, GTK_EXAMPLE, "--start", "--quit-when-done"]
                            + arguments, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_gtk_example(display, arguments, timeout=120, process=None):
    if process is None:
        process = start_gtk_example(display, arguments)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"The GTK example did not finish within {timeout} s:\n{stderr}")
    assert process.returncode == 0, stderr
    lines = stdout.splitlines()
    assert lines, f"The GTK example printed no summary:\n{stderr}"
    return json.loads(lines[-1])


def check_png(path):
    image = GdkPixbuf.Pixbuf.new_from_file(str(path))
    assert image.get_width() >= 400
    assert image.get_height() >= 200
    return image


def test_gtk_example_snapshot(machine, private_dir, display):
    output = private_dir / "now.hxz"
    screenshots = os.environ.get("HEXZ_TEST_SCREENSHOT_DIR") or str(private_dir / "screenshots")
    os.makedirs(screenshots, exist_ok=True)

    progress_path = os.path.join(screenshots, "progress.png")
    if os.path.exists(progress_path):
        os.unlink(progress_path)

    # QEMU pauses the migration before its last step, so the memory phase
    # lasts until the test lets it go on. The window must draw a frame, and
    # take its first screenshot, within that phase: a call that blocked the
    # main loop for the dump would leave the test waiting here.
    qmp_execute(machine.monitor_socket, "migrate-set-capabilities",
                {"capabilities": [{"capability": "pause-before-switchover", "state": True}]})
    arguments = machine_arguments(machine, output) + ["--mode", "paused",
                                                      "--screenshot-dir", screenshots]
    process = start_gtk_example(display, arguments)
    try:
        wait_until(lambda: process.poll() is not None or qmp_execute(
            machine.monitor_socket, "query-migrate").get("status") == "pre-switchover", timeout=60)
        assert process.poll() is None, process.communicate()[1]
        wait_until(lambda: process.poll() is not None or os.path.exists(progress_path), timeout=60)
        assert process.poll() is None, process.communicate()[1]
    finally:
        if process.poll() is None:
            qmp_execute(machine.monitor_socket, "migrate-continue", {"state": "pre-switchover"})
    summary = run_gtk_example(display, arguments, process=process)

    assert summary["status"] == "done", summary
    assert summary["mode"] == "paused"
    assert summary["phases"][0] == "preflight"
    assert summary["phases"][-1] == "done"
    # The first screenshot shows the memory phase, the second the result.
    assert summary["screenshots"]["progress.png"].startswith("Saving the memory")
    assert summary["screenshots"]["result.png"] == "Done"
    progress = check_png(os.path.join(screenshots, "progress.png"))
    result = check_png(os.path.join(screenshots, "result.png"))
    assert progress.get_pixels() != result.get_pixels()

    assert Hexz.Snapshot.open_path(str(output), None).has_memory()
    assert machine.is_running()


def test_gtk_example_cancel(machine, private_dir, display):
    output_dir = private_dir / "output"
    output_dir.mkdir()
    output = output_dir / "now.hxz"
    counter = machine.guest_status()["counter"]

    summary = run_gtk_example(display, machine_arguments(machine, output)
                              + ["--mode", "paused", "--cancel-at", "memory"])

    assert summary["status"] == "cancelled", summary
    assert "memory" in summary["phases"]
    assert "merge" not in summary["phases"]
    assert list(output_dir.iterdir()) == []
    assert machine.is_running()
    wait_until(lambda: machine.guest_status()["counter"] > counter)
