#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Take a live snapshot of a running QEMU virtual machine.

The machine must boot from a base snapshot through the hexz nbdkit plugin,
which records its disk changes in an overlay, and have a QMP unix socket:

    snapshot.py --socket /run/vm/qmp.sock --overlay /run/vm/vm.overlay \\
        --base base.hxz --output now.hxz

Press Ctrl+C to cancel: the machine is put back in its previous run state
and no file is written.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Hexz", "1")
from gi.repository import Gio, GLib, Hexz  # noqa: E402


def parse_arguments():
    parser = argparse.ArgumentParser(description="Take a live snapshot of a QEMU virtual machine.")
    parser.add_argument("--socket", required=True, help="the QMP unix socket of the machine")
    parser.add_argument("--overlay", required=True, help="the overlay the machine writes to")
    parser.add_argument("--base", required=True, help="the snapshot the machine booted from")
    parser.add_argument("--output", required=True, help="the snapshot file to write")
    parser.add_argument("--mode", default="auto", choices=["auto", "background", "paused", "live"],
                        help="how to capture the memory (default: auto)")
    parser.add_argument("--thin", action="store_true",
                        help="refer to the base for unmodified disk blocks")
    return parser.parse_args()


class Snapshotter:
    def __init__(self, arguments):
        self.loop = GLib.MainLoop()
        self.cancellable = Gio.Cancellable()
        self.succeeded = False

        ok, mode = Hexz.capture_mode_from_string(arguments.mode)
        assert ok, arguments.mode

        self.capture = Hexz.Capture.new()
        self.capture.set_socket_path(arguments.socket)
        self.capture.set_overlay(arguments.overlay)
        self.capture.set_base_path(arguments.base)
        self.capture.set_output(Gio.File.new_for_commandline_arg(arguments.output))
        self.capture.set_mode(mode)
        self.capture.set_thin(arguments.thin)
        self.capture.connect("progress", self.on_progress)

    def run(self):
        # Ctrl+C cancels the capture; the result callback then ends the loop.
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, self.on_interrupt)
        self.capture.run_async(self.cancellable, self.on_done)
        self.loop.run()
        return self.succeeded

    def on_interrupt(self):
        self.cancellable.cancel()
        return GLib.SOURCE_CONTINUE

    def on_progress(self, capture, phase, done, expected):
        line = Hexz.capture_phase_to_string(phase)
        if expected > 0:
            percent = 100 * done // expected
            line += f": {GLib.format_size(done)} of {GLib.format_size(expected)} ({percent} %)"
        elif done > 0:
            line += f": {GLib.format_size(done)}"

        # On a terminal, rewrite one line; otherwise print a line per update.
        if sys.stderr.isatty():
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def on_done(self, capture, result):
        if sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr)

        try:
            capture.run_finish(result)
        except GLib.Error as error:
            print(f"Snapshot failed: {error.message}", file=sys.stderr)
        else:
            mode = Hexz.capture_mode_to_string(capture.get_chosen_mode())
            pause_ms = capture.get_pause_time() / 1000
            print(f"Wrote {capture.get_output().get_path()} ({mode} mode); "
                  f"the machine was paused for {pause_ms:.1f} ms")
            self.succeeded = True
        self.loop.quit()


def main():
    arguments = parse_arguments()
    return 0 if Snapshotter(arguments).run() else 1


if __name__ == "__main__":
    sys.exit(main())
