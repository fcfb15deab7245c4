# SPDX-License-Identifier: LGPL-2.1-or-later
"""HexzQmpClient from Python, against a mock QMP server in a thread."""

import json
import os
import socket
import tempfile
import threading

import gi
import pytest

try:
    gi.require_version("Hexz", "1")
    gi.require_version("Json", "1.0")
    from gi.repository import Gio, GLib, Hexz, Json
except (ImportError, ValueError) as error:
    MISSING_TYPELIB = str(error)
else:
    MISSING_TYPELIB = None

# Without introspection data (a build with -Dintrospection=disabled) every
# test is reported as skipped, which pytest counts as a successful run.
pytestmark = pytest.mark.skipif(
    MISSING_TYPELIB is not None, reason=f"no Hexz typelib: {MISSING_TYPELIB}"
)

GREETING = {
    "QMP": {
        "version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "mock"},
        "capabilities": ["oob"],
    }
}

# How long one test may run the main loop before it fails.
LOOP_TIMEOUT_MS = 5000


class MockServer:
    """Serves one QMP connection; `script(server)` runs in a thread."""

    def __init__(self, script):
        self.dir = tempfile.mkdtemp(prefix="hexz-qmp-py-")
        self.path = os.path.join(self.dir, "qmp.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.script = script
        self.failure = None
        self.connection = None
        self.reader = None
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.connection, _ = self.listener.accept()
            self.reader = self.connection.makefile("rb")
            self.send(GREETING)
            command = self.expect("qmp_capabilities")
            self.reply(command, {})
            self.script(self)
        except Exception as error:  # reported by close() in the test thread
            self.failure = error
        finally:
            # The socket stays open while its file object exists.
            if self.reader is not None:
                self.reader.close()
            if self.connection is not None:
                self.connection.close()

    def send(self, message):
        self.connection.sendall(json.dumps(message).encode() + b"\r\n")

    def expect(self, name):
        line = self.reader.readline()
        assert line, "the client closed the connection"
        command = json.loads(line)
        assert command["execute"] == name
        assert "id" in command
        return command

    def reply(self, command, value):
        self.send({"return": value, "id": command["id"]})

    def close(self):
        self.release.set()
        self.thread.join(LOOP_TIMEOUT_MS / 1000)
        self.listener.close()
        os.unlink(self.path)
        os.rmdir(self.dir)
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def serve():
    """Starts mock servers and closes them when the test ends."""
    servers = []

    def start(script):
        server = MockServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()

def run_until(loop, results, count):
    """Runs `loop` until `results` contains `count` entries."""
    timed_out = []

    def check():
        if len(results) >= count:
            loop.quit()
            return GLib.SOURCE_REMOVE
        return GLib.SOURCE_CONTINUE

    def give_up():
        timed_out.append(True)
        loop.quit()
        return GLib.SOURCE_REMOVE

    if len(results) >= count:
        return
    GLib.timeout_add(5, check)
    deadline = GLib.timeout_add(LOOP_TIMEOUT_MS, give_up)
    loop.run()
    if timed_out:
        pytest.fail(f"timed out with {len(results)} of {count} results")
    GLib.source_remove(deadline)


def finish(results, finish_function):
    """Returns an async callback that stores the result or the error."""

    def callback(client, result):
        try:
            results.append(finish_function(client, result))
        except GLib.Error as error:
            results.append(error)

    return callback


def connect(server):
    loop = GLib.MainLoop()
    client = Hexz.QmpClient.new()
    results = []
    client.connect_to_path_async(
        server.path, None, finish(results, Hexz.QmpClient.connect_finish)
    )
    run_until(loop, results, 1)
    assert results[0] is True
    return loop, client


def test_connect_and_execute(serve):
    def script(server):
        command = server.expect("query-name")
        assert command["arguments"] == {"verbose": True}
        server.reply(command, {"name": "vm"})
        command = server.expect("query-status")
        server.reply(command, {"status": "paused", "running": False})
        server.release.wait()

    server = serve(script)
    loop, client = connect(server)
    assert client.props.connected
    assert client.props.qemu_version == "7.2.0"
    assert client.get_capabilities() == ["oob"]

    results = []
    client.execute_json_async(
        "query-name",
        '{"verbose": true}',
        None,
        None,
        finish(results, Hexz.QmpClient.execute_json_finish),
    )
    run_until(loop, results, 1)
    assert json.loads(results[0]) == {"name": "vm"}

    client.query_status_async(None, finish(results, Hexz.QmpClient.query_status_finish))
    run_until(loop, results, 2)
    state, running = results[1]
    assert state == Hexz.RunState.PAUSED
    assert running is False

    client.close()
    assert not client.props.connected


def test_execute_with_json_object(serve):
    def script(server):
        command = server.expect("migrate-set-parameters")
        assert command["arguments"] == {"max-bandwidth": 1 << 30}
        server.reply(command, {})
        server.release.wait()

    server = serve(script)
    loop, client = connect(server)

    arguments = Json.Object.new()
    arguments.set_int_member("max-bandwidth", 1 << 30)
    results = []
    client.execute_async(
        "migrate-set-parameters",
        arguments,
        None,
        None,
        finish(results, Hexz.QmpClient.execute_finish),
    )
    run_until(loop, results, 1)
    assert results[0].get_node_type() == Json.NodeType.OBJECT

    client.close()


def test_event_signal_and_wait(serve):
    def script(server):
        command = server.expect("stop")
        server.send(
            {"event": "STOP", "timestamp": {"seconds": 100, "microseconds": 7}}
        )
        server.reply(command, {})
        server.send(
            {
                "event": "MIGRATION",
                "data": {"status": "setup"},
                "timestamp": {"seconds": 101, "microseconds": 0},
            }
        )
        server.send(
            {
                "event": "MIGRATION",
                "data": {"status": "completed"},
                "timestamp": {"seconds": 102, "microseconds": 0},
            }
        )
        server.release.wait()

    server = serve(script)
    loop, client = connect(server)

    events = []

    def on_stop(client, name, data, timestamp_us):
        events.append((name, data.get_size(), timestamp_us))

    client.connect("event::STOP", on_stop)

    seen = []

    def is_completed(name, data, suffix):
        seen.append(data.get_string_member("status") + suffix)
        return data.get_string_member("status") == "completed"

    waits = []
    client.wait_event_async(
        "MIGRATION",
        is_completed,
        # PyGObject passes the members of this tuple as extra arguments.
        ("!",),
        2000,
        None,
        finish(waits, Hexz.QmpClient.wait_event_finish),
    )

    results = []
    client.stop_async(None, finish(results, Hexz.QmpClient.stop_finish))
    run_until(loop, results, 1)
    assert results[0] is True
    assert events == [("STOP", 0, 100 * 1000000 + 7)]

    run_until(loop, waits, 1)
    data, timestamp_us = waits[0]
    assert data.get_string_member("status") == "completed"
    assert timestamp_us == 102 * 1000000
    assert seen == ["setup!", "completed!"]

    client.close()


def test_error_reply(serve):
    def script(server):
        command = server.expect("nope")
        server.send(
            {
                "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"},
                "id": command["id"],
            }
        )
        server.release.wait()

    server = serve(script)
    loop, client = connect(server)

    results = []
    client.execute_json_async(
        "nope", None, None, None, finish(results, Hexz.QmpClient.execute_json_finish)
    )
    run_until(loop, results, 1)
    error = results[0]
    assert isinstance(error, GLib.Error)
    assert error.matches(Hexz.qmp_error_quark(), Hexz.QmpError.COMMAND_NOT_FOUND)
    assert "has not been found" in error.message

    client.close()


def test_cancellation(serve):
    def script(server):
        server.expect("query-slow")
        server.release.wait()

    server = serve(script)
    loop, client = connect(server)

    cancellable = Gio.Cancellable.new()
    results = []
    client.execute_json_async(
        "query-slow",
        None,
        None,
        cancellable,
        finish(results, Hexz.QmpClient.execute_json_finish),
    )
    GLib.timeout_add(50, lambda: cancellable.cancel() or GLib.SOURCE_REMOVE)
    run_until(loop, results, 1)
    error = results[0]
    assert isinstance(error, GLib.Error)
    assert error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
    assert client.props.connected

    client.close()


def test_disconnected_signal(serve):
    def script(server):
        server.expect("query-name")

    server = serve(script)
    loop, client = connect(server)

    reasons = []
    client.connect("disconnected", lambda client, error: reasons.append(error))
    results = []
    client.execute_json_async(
        "query-name", None, None, None, finish(results, Hexz.QmpClient.execute_json_finish)
    )
    run_until(loop, reasons, 1)
    assert results and isinstance(results[0], GLib.Error)
    assert results[0].matches(Hexz.qmp_error_quark(), Hexz.QmpError.DISCONNECTED)
    assert reasons[0].matches(Hexz.qmp_error_quark(), Hexz.QmpError.DISCONNECTED)
    assert not client.props.connected

