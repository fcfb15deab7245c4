#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A GTK 4 window that takes a live snapshot of a QEMU virtual machine.

Fill in the machine's QMP socket, the overlay it writes its disk changes
to, the snapshot it booted from and the file to write, then press
"Take Snapshot". A progress bar follows the phases of the snapshot, and
"Cancel" stops it in any phase before the file is finalized: the machine is
put back in its previous run state and no file is left behind. All work runs asynchronously on GTK's
main loop, so the window stays responsive.

The fields can be filled from the command line:

    hexz-snapshot-gtk.py --socket /run/vm/qmp.sock --overlay /run/vm/vm.overlay \\
        --base base.hxz --output now.hxz

--start, --cancel-at, --screenshot-dir and --quit-when-done drive the window
without a user, for tests and demos. With --quit-when-done, a JSON summary
of the run is printed on standard output at the end.
"""

import argparse
import ctypes
import json
import os
import sys

import gi

gi.require_version("Gtk", "4.0")
gi.require_version("Hexz", "1")
from gi.repository import Gio, GLib, Gtk, Hexz  # noqa: E402

MODES = ["auto", "background", "paused", "live"]

# The phases a successful snapshot goes through, in order. The progress bar
# gives each the same share; the memory phase fills its share by bytes.
PHASES = [
    Hexz.CapturePhase.PREFLIGHT,
    Hexz.CapturePhase.PREPARE,
    Hexz.CapturePhase.PAUSE,
    Hexz.CapturePhase.DISK,
    Hexz.CapturePhase.MEMORY,
    Hexz.CapturePhase.RESUME,
    Hexz.CapturePhase.MERGE,
    Hexz.CapturePhase.FINALIZE,
]

PHASE_LABELS = {
    Hexz.CapturePhase.PREFLIGHT: "Checking the files",
    Hexz.CapturePhase.PREPARE: "Preparing the machine",
    Hexz.CapturePhase.PAUSE: "Pausing the machine",
    Hexz.CapturePhase.DISK: "Copying the modified disk pages",
    Hexz.CapturePhase.MEMORY: "Saving the memory",
    Hexz.CapturePhase.RESUME: "Resuming the machine",
    Hexz.CapturePhase.MERGE: "Writing the disk",
    Hexz.CapturePhase.FINALIZE: "Closing the snapshot file",
    Hexz.CapturePhase.CLEANUP: "Cleaning up",
}


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description="Take a live snapshot of a QEMU virtual machine.")
    parser.add_argument("--socket", default="", help="the QMP unix socket of the machine")
    parser.add_argument("--overlay", default="", help="the overlay the machine writes to")
    parser.add_argument("--base", default="", help="the snapshot the machine booted from")
    parser.add_argument("--output", default="", help="the snapshot file to write")
    parser.add_argument("--mode", default="auto", choices=MODES,
                        help="how to capture the memory (default: auto)")
    parser.add_argument("--thin", action="store_true",
                        help="refer to the base for unmodified disk blocks")

    automation = parser.add_argument_group("automation")
    automation.add_argument("--start", action="store_true",
                            help="press Take Snapshot once the window is shown")
    automation.add_argument("--cancel-at", metavar="PHASE",
                            choices=[Hexz.capture_phase_to_string(p) for p in PHASES],
                            help="press Cancel when this phase starts")
    automation.add_argument("--screenshot-dir", metavar="DIR",
                            help="save progress.png while the memory is saved, "
                                 "and result.png at the end, in DIR")
    automation.add_argument("--quit-when-done", action="store_true",
                            help="close the window when the snapshot ends, "
                                 "print a JSON summary of the run")
    return parser.parse_args(argv)


class GrapheneRect(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float),
                ("width", ctypes.c_float), ("height", ctypes.c_float)]


def object_pointer(wrapper):
    """The C pointer of a PyGObject wrapper."""
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(wrapper.__gpointer__, None)


def save_screenshot(widget, path):
    """Render the widget as it was last drawn into a PNG file.

    PyGObject 3.42 (Debian 12) cannot wrap GskRenderNode, so the render node
    is passed from Gtk.Snapshot to the widget's Gsk.Renderer through ctypes.
    """
    libgtk = ctypes.CDLL("libgtk-4.so.1")
    libgtk.gtk_snapshot_to_node.restype = ctypes.c_void_p
    libgtk.gtk_snapshot_to_node.argtypes = [ctypes.c_void_p]
    libgtk.gsk_renderer_render_texture.restype = ctypes.c_void_p
    libgtk.gsk_renderer_render_texture.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                   ctypes.POINTER(GrapheneRect)]
    libgtk.gdk_texture_save_to_png.restype = ctypes.c_bool
    libgtk.gdk_texture_save_to_png.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    libgtk.gsk_render_node_unref.argtypes = [ctypes.c_void_p]
    libgtk.g_object_unref.argtypes = [ctypes.c_void_p]

    width = widget.get_width()
    height = widget.get_height()
    snapshot = Gtk.Snapshot.new()
    Gtk.WidgetPaintable.new(widget).snapshot(snapshot, width, height)
    node = libgtk.gtk_snapshot_to_node(object_pointer(snapshot))
    if not node:
        raise RuntimeError(f"The window has nothing drawn to save in {path}")

    renderer = widget.get_native().get_renderer()
    bounds = GrapheneRect(0, 0, width, height)
    texture = libgtk.gsk_renderer_render_texture(object_pointer(renderer), node,
                                                 ctypes.byref(bounds))
    saved = libgtk.gdk_texture_save_to_png(texture, os.fsencode(path))
    libgtk.g_object_unref(texture)
    libgtk.gsk_render_node_unref(node)
    if not saved:
        raise RuntimeError(f"Cannot write the screenshot {path}")


class FileRow:
    """A labelled entry with a button that opens a file chooser."""

    def __init__(self, window, grid, row, label, action, placeholder):
        self.window = window
        self.action = action
        self.chooser = None

        title = Gtk.Label(label=label, use_underline=True, xalign=1)
        self.entry = Gtk.Entry(hexpand=True, placeholder_text=placeholder)
        title.set_mnemonic_widget(self.entry)
        button = Gtk.Button(label="Choose…")
        button.connect("clicked", self.on_choose)

        grid.attach(title, 0, row, 1, 1)
        grid.attach(self.entry, 1, row, 1, 1)
        grid.attach(button, 2, row, 1, 1)

    def get_text(self):
        return self.entry.get_text().strip()

    def set_sensitive(self, sensitive):
        self.entry.set_sensitive(sensitive)

    def on_choose(self, button):
        # GTK 4.8 has no Gtk.FileDialog; FileChooserNative uses the portal
        # where there is one.
        self.chooser = Gtk.FileChooserNative.new("Choose a File", self.window, self.action,
                                                 None, None)
        self.chooser.set_modal(True)
        self.chooser.connect("response", self.on_chosen)
        self.chooser.show()

    def on_chosen(self, chooser, response):
        if response == Gtk.ResponseType.ACCEPT:
            self.entry.set_text(chooser.get_file().get_path())
        self.chooser = None


class SnapshotWindow(Gtk.ApplicationWindow):
    def __init__(self, application, arguments):
        super().__init__(application=application, title="Take a Snapshot")
        self.set_default_size(640, -1)
        self.arguments = arguments
        self.cancellable = None
        self.capture = None
        self.phase_index = 0
        self.screenshots = {}
        self.phases_seen = []
        self.result = None
        # The maximum time the main loop went without running a 50 ms timer
        # while a snapshot ran: a measure of how responsive the window was.
        self.longest_stall_ms = 0
        self.last_tick = None
        self.ticker = 0

        grid = Gtk.Grid(row_spacing=6, column_spacing=12,
                        margin_top=18, margin_bottom=18, margin_start=18, margin_end=18)
        self.set_child(grid)

        save = Gtk.FileChooserAction.SAVE
        open_ = Gtk.FileChooserAction.OPEN
        self.socket_row = FileRow(self, grid, 0, "_QMP socket", open_, "/run/vm/qmp.sock")
        self.overlay_row = FileRow(self, grid, 1, "_Overlay", open_, "vm.overlay")
        self.base_row = FileRow(self, grid, 2, "_Base snapshot", open_, "base.hxz")
        self.output_row = FileRow(self, grid, 3, "Out_put", save, "now.hxz")
        for row, text in ((self.socket_row, arguments.socket),
                          (self.overlay_row, arguments.overlay),
                          (self.base_row, arguments.base),
                          (self.output_row, arguments.output)):
            row.entry.set_text(text)
            row.entry.connect("changed", self.on_field_changed)
        self.rows = [self.socket_row, self.overlay_row, self.base_row, self.output_row]

        mode_label = Gtk.Label(label="_Mode", use_underline=True, xalign=1)
        self.mode = Gtk.DropDown.new_from_strings(MODES)
        self.mode.set_selected(MODES.index(arguments.mode))
        mode_label.set_mnemonic_widget(self.mode)
        self.thin = Gtk.CheckButton(label="_Thin snapshot", use_underline=True,
                                    active=arguments.thin)
        options = Gtk.Box(spacing=12)
        options.append(self.mode)
        options.append(self.thin)
        grid.attach(mode_label, 0, 4, 1, 1)
        grid.attach(options, 1, 4, 2, 1)

        self.phase_label = Gtk.Label(label="Ready", xalign=0, margin_top=12)
        self.progress = Gtk.ProgressBar(show_text=True, text="")
        self.result_label = Gtk.Label(xalign=0, wrap=True, selectable=True)
        grid.attach(self.phase_label, 0, 5, 3, 1)
        grid.attach(self.progress, 0, 6, 3, 1)
        grid.attach(self.result_label, 0, 7, 3, 1)

        self.start_button = Gtk.Button(label="_Take Snapshot", use_underline=True)
        self.start_button.add_css_class("suggested-action")
        self.start_button.connect("clicked", self.on_start_clicked)
        self.cancel_button = Gtk.Button(label="_Cancel", use_underline=True, sensitive=False)
        self.cancel_button.connect("clicked", self.on_cancel_clicked)
        buttons = Gtk.Box(spacing=6, halign=Gtk.Align.END, margin_top=12)
        buttons.append(self.cancel_button)
        buttons.append(self.start_button)
        grid.attach(buttons, 0, 8, 3, 1)

        self.set_default_widget(self.start_button)
        self.on_field_changed(None)

        if arguments.start:
            # Press the button once the window is on screen.
            self.connect("map", lambda window: GLib.idle_add(self.press_start))

    def press_start(self):
        self.start_button.emit("clicked")
        return GLib.SOURCE_REMOVE

    def on_field_changed(self, entry):
        complete = all(row.get_text() for row in self.rows)
        self.start_button.set_sensitive(complete and self.cancellable is None)

    def set_running(self, running):
        for row in self.rows:
            row.set_sensitive(not running)
        self.mode.set_sensitive(not running)
        self.thin.set_sensitive(not running)
        self.cancel_button.set_sensitive(running)
        self.on_field_changed(None)

    def on_start_clicked(self, button):
        if self.cancellable is not None:
            return

        capture = Hexz.Capture.new()
        capture.set_socket_path(self.socket_row.get_text())
        capture.set_overlay(self.overlay_row.get_text())
        capture.set_base_path(self.base_row.get_text())
        capture.set_output(Gio.File.new_for_path(self.output_row.get_text()))
        _, mode = Hexz.capture_mode_from_string(MODES[self.mode.get_selected()])
        capture.set_mode(mode)
        capture.set_thin(self.thin.get_active())
        capture.connect("progress", self.on_progress)

        self.capture = capture
        self.cancellable = Gio.Cancellable()
        self.phase_index = 0
        self.phases_seen = []
        self.result_label.set_text("")
        self.progress.set_fraction(0)
        self.set_running(True)

        capture.run_async(self.cancellable, self.on_done)
        self.last_tick = GLib.get_monotonic_time()
        self.ticker = GLib.timeout_add(50, self.on_tick)

    def on_tick(self):
        now = GLib.get_monotonic_time()
        stall_ms = (now - self.last_tick) // 1000 - 50
        self.longest_stall_ms = max(self.longest_stall_ms, stall_ms)
        self.last_tick = now
        return GLib.SOURCE_CONTINUE

    def on_cancel_clicked(self, button):
        if self.cancellable is not None:
            self.phase_label.set_text("Cancelling…")
            self.cancellable.cancel()

    def on_progress(self, capture, phase, done, expected):
        name = Hexz.capture_phase_to_string(phase)
        starting = done == 0 and expected == 0
        if starting:
            self.phases_seen.append(name)

        if phase in PHASES:
            self.phase_index = PHASES.index(phase)
        share = expected and min(done / expected, 1.0)
        self.progress.set_fraction((self.phase_index + share) / len(PHASES))

        label = PHASE_LABELS.get(phase, name)
        if expected > 0:
            label += f": {GLib.format_size(done)} of {GLib.format_size(expected)}"
        elif done > 0:
            label += f": {GLib.format_size(done)}"
        self.phase_label.set_text(label)
        self.progress.set_text(f"Step {self.phase_index + 1} of {len(PHASES)}")

        if starting and self.arguments.cancel_at == name:
            self.cancel_button.emit("clicked")

        if (self.arguments.screenshot_dir and phase == Hexz.CapturePhase.MEMORY
                and "progress.png" not in self.screenshots):
            self.screenshot_after_next_frame("progress.png")

    def on_done(self, capture, result):
        try:
            capture.run_finish(result)
        except GLib.Error as error:
            cancelled = error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
            if cancelled:
                self.phase_label.set_text("Cancelled")
                text = "The snapshot was cancelled. The machine is back in its previous state."
            else:
                self.phase_label.set_text("Failed")
                text = error.message
            self.result = {"status": "cancelled" if cancelled else "failed",
                           "message": error.message}
            self.progress.set_fraction(0)
        else:
            mode = Hexz.capture_mode_to_string(capture.get_chosen_mode())
            pause_ms = capture.get_pause_time() / 1000
            self.phase_label.set_text("Done")
            text = (f"Wrote {capture.get_output().get_path()} in {mode} mode. "
                    f"The machine was paused for {pause_ms:.1f} ms.")
            self.result = {"status": "done", "mode": mode, "pause_ms": pause_ms}
            self.progress.set_fraction(1)
        self.progress.set_text("")
        self.result_label.set_text(text)

        self.cancellable = None
        self.on_tick()
        GLib.source_remove(self.ticker)
        self.ticker = 0
        self.set_running(False)

        if self.arguments.screenshot_dir:
            self.screenshot_after_next_frame("result.png", then=self.finish)
        else:
            self.finish()

    def screenshot_after_next_frame(self, name, then=None):
        """Save a screenshot once the window has drawn its latest state."""
        if name in self.screenshots:
            return
        self.screenshots[name] = None
        path = os.path.join(self.arguments.screenshot_dir, name)
        clock = self.get_frame_clock()

        def after_paint(clock):
            clock.disconnect(handler)
            save_screenshot(self, path)
            # The summary records what the screenshot shows.
            self.screenshots[name] = self.phase_label.get_text()
            if then is not None:
                then()

        handler = clock.connect("after-paint", after_paint)
        self.queue_draw()

    def finish(self):
        if not self.arguments.quit_when_done:
            return
        summary = dict(self.result or {}, phases=self.phases_seen,
                       longest_stall_ms=self.longest_stall_ms,
                       screenshots=self.screenshots)
        print(json.dumps(summary), flush=True)
        self.get_application().quit()


class SnapshotApplication(Gtk.Application):
    def __init__(self, arguments):
        super().__init__(application_id="org.hexz.SnapshotExample",
                         flags=Gio.ApplicationFlags.NON_UNIQUE)
        self.arguments = arguments

    def do_activate(self):
        window = SnapshotWindow(self, self.arguments)
        window.present()


def main():
    arguments = parse_arguments(sys.argv[1:])
    application = SnapshotApplication(arguments)
    return application.run([sys.argv[0]])


if __name__ == "__main__":
    sys.exit(main())
