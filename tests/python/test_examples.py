# SPDX-License-Identifier: LGPL-2.1-or-later
"""The example programs in examples/, run as users run them.

The GTK example runs on an Xvfb server that the test starts on a free
display number and stops by its pid. Set HEXZ_TEST_SCREENSHOT_DIR to keep
the GTK example's screenshots there.
"""

import json
import os
import shutil
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

from conftest import SOURCE_ROOT, wait_until  # noqa: E402

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


def run_gtk_example(display, arguments, timeout=120):
    environment = dict(os.environ, DISPLAY=display, GDK_BACKEND="x11", GSK_RENDERER="cairo",
                       NO_AT_BRIDGE="1", GTK_A11Y="none")
    process = subprocess.Popen([sys.executable, GTK_EXAMPLE, "--start", "--quit-when-done"]
                               + arguments, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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

    summary = run_gtk_example(display, machine_arguments(machine, output)
                              + ["--mode", "paused", "--screenshot-dir", screenshots])

    assert summary["status"] == "done", summary
    assert summary["mode"] == "paused"
    # The window kept handling events: a blocking call on the main thread
    # would stall its main loop for the whole memory dump.
    assert summary["longest_stall_ms"] < 500, summary
    assert summary["phases"][0] == "preflight"
    assert summary["phases"][-1] == "done"
    # The first screenshot is requested when the memory phase starts and
    # taken at the next frame, so it shows that phase or a later running one.
    # The second shows the result.
    assert summary["screenshots"]["progress.png"] not in ("Ready", "Done", "Failed", "Cancelled")
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
