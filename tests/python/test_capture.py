# SPDX-License-Identifier: LGPL-2.1-or-later
"""Live snapshots of the test guest through Hexz.Capture from Python."""

import os
import struct

import gi
import pytest

from conftest import MISSING_TYPELIB  # noqa: E402

if MISSING_TYPELIB is not None:
    pytest.skip(MISSING_TYPELIB, allow_module_level=True)

gi.require_version("Hexz", "1")
from gi.repository import Gio, GLib, Hexz  # noqa: E402

if not hasattr(Hexz, "Capture"):
    pytest.skip("This build of the library has no Hexz.Capture, which live snapshots need",
                allow_module_level=True)

from conftest import DISK_SIZE, GUEST_RECORD_MAGIC, GUEST_RECORD_OFFSET, run_main_loop_until, wait_until

# The phases a successful capture enters, in order, whatever the mode.
EXPECTED_PHASES = ["preflight", "prepare", "pause", "disk", "memory", "resume", "merge",
                   "finalize", "done"]


class CaptureRun:
    """Runs a capture on the main loop and records its progress signals."""

    def __init__(self, machine, output, mode=Hexz.CaptureMode.AUTO):
        self.capture = Hexz.Capture.new()
        self.capture.set_socket_path(machine.qmp_socket)
        self.capture.set_overlay(machine.overlay)
        self.capture.set_base_path(machine.base)
        self.capture.set_output(Gio.File.new_for_path(str(output)))
        self.capture.set_mode(mode)
        self.capture.connect("progress", self.on_progress)
        self.cancellable = Gio.Cancellable()
        self.cancel_at = None
        self.cancel_mid_memory = False
        self.signals = []
        self.finished = False
        self.error = None

    def on_progress(self, capture, phase, done, expected):
        name = Hexz.capture_phase_to_string(phase)
        self.signals.append((name, done, expected))
        if done == 0 and expected == 0 and name == self.cancel_at:
            self.cancellable.cancel()
        if self.cancel_mid_memory and name == "memory" and 0 < done < expected:
            self.cancellable.cancel()

    def on_done(self, capture, result):
        try:
            capture.run_finish(result)
        except GLib.Error as error:
            self.error = error
        self.finished = True

    def run(self):
        self.capture.run_async(self.cancellable, self.on_done)
        run_main_loop_until(lambda: self.finished, timeout=120)
        return self

    def phases(self):
        """The phases entered, in order: each starts with a (0, 0) signal."""
        return [name for name, done, expected in self.signals if done == 0 and expected == 0]


@pytest.mark.parametrize("mode", ["paused", "background"])
def test_capture_live_snapshot(machine, private_dir, mode):
    output = private_dir / "now.hxz"
    run = CaptureRun(machine, output, Hexz.capture_mode_from_string(mode)[1])
    before = machine.guest_status()

    run.run()

    assert run.error is None, run.error.message
    chosen = Hexz.capture_mode_to_string(run.capture.get_chosen_mode())
    assert chosen == mode
    assert run.phases() == EXPECTED_PHASES
    assert run.capture.get_phase() == Hexz.CapturePhase.DONE
    assert run.capture.get_pause_time() > 0

    # Within a phase the byte counts never go back.
    for phase in EXPECTED_PHASES:
        counts = [done for name, done, expected in run.signals if name == phase]
        assert counts == sorted(counts), phase

    # The machine runs on after the snapshot.
    assert machine.is_running()
    after = machine.guest_status()
    assert after["counter"] > before["counter"]

    # The snapshot contains the guest's memory and the disk with its records.
    snapshot = Hexz.Snapshot.open_path(str(output), None)
    assert snapshot.has_memory()
    assert snapshot.get_memory_size() > 8 * 1024 * 1024
    assert snapshot.get_disk_size() == DISK_SIZE
    record = snapshot.read_bytes(Hexz.Stream.DISK, GUEST_RECORD_OFFSET, 512, None).get_data()
    magic, version, sequence = struct.unpack_from("<III", record)
    assert magic == GUEST_RECORD_MAGIC
    assert sequence >= 2
    snapshot.verify(None)
    assert os.stat(output).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mode", ["paused", "background"])
def test_capture_cancel_half_way(machine, private_dir, mode):
    output_dir = private_dir / "output"
    output_dir.mkdir()
    output = output_dir / "now.hxz"
    parameters = machine.qmp("query-migrate-parameters")
    run = CaptureRun(machine, output, Hexz.capture_mode_from_string(mode)[1])
    run.cancel_at = "memory"

    run.run()

    assert run.error is not None, "The capture finished although it was cancelled"
    assert run.error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED), run.error.message
    assert "memory" in run.phases()
    assert "merge" not in run.phases()
    assert run.capture.get_phase() == Hexz.CapturePhase.FAILED

    # No file is left behind, not even a temporary one.
    assert list(output_dir.iterdir()) == []

    # The machine keeps running and its migration settings are restored.
    assert machine.is_running()
    first = machine.guest_status()
    wait_until(lambda: machine.guest_status()["counter"] > first["counter"])
    assert machine.qmp("query-migrate-parameters") == parameters
    # No migration is left running. QEMU reports a migration cancelled while
    # it starts as failed (broken pipe), and none at all when it had not
    # started.
    assert machine.qmp("query-migrate").get("status") in (None, "cancelled", "failed")


def test_capture_cancel_mid_dump(machine, private_dir):
    """Cancel a paused-mode capture once part of the memory has arrived."""
    output_dir = private_dir / "output"
    output_dir.mkdir()
    output = output_dir / "now.hxz"
    parameters = machine.qmp("query-migrate-parameters")
    # QEMU pauses the migration before its last step, so the dump cannot end
    # before the cancellation.
    machine.qmp("migrate-set-capabilities",
                {"capabilities": [{"capability": "pause-before-switchover", "state": True}]})
    run = CaptureRun(machine, output, Hexz.CaptureMode.PAUSED)
    run.cancel_mid_memory = True

    run.run()

    assert run.error is not None, "The capture finished although it was cancelled"
    assert run.error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED), run.error.message
    memory = [done for name, done, expected in run.signals if name == "memory" and done > 0]
    assert memory, "No memory progress arrived before the cancellation"
    assert "resume" not in run.phases()
    assert list(output_dir.iterdir()) == []
    assert machine.is_running()
    first = machine.guest_status()
    wait_until(lambda: machine.guest_status()["counter"] > first["counter"])
    assert machine.qmp("query-migrate-parameters") == parameters
    # The cleanup closes the pipe and sends migrate_cancel: whichever QEMU
    # meets first ends the migration as "failed" or as "cancelled".
    assert machine.qmp("query-migrate").get("status") in ("cancelled", "failed")


def test_capture_rejects_missing_base(machine, private_dir):
    output = private_dir / "now.hxz"
    run = CaptureRun(machine, output, Hexz.CaptureMode.PAUSED)
    run.capture.set_base_path(str(private_dir / "missing.hxz"))

    run.run()

    assert run.error is not None
    assert "missing.hxz" in run.error.message
    assert run.phases()[0] == "preflight"
    assert "pause" not in run.phases()
    assert not output.exists()
    assert machine.is_running()
