# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writing, reading, inspecting and verifying snapshot files from Python."""

import os
import random

import gi
import pytest

from conftest import MISSING_TYPELIB  # noqa: E402

if MISSING_TYPELIB is not None:
    pytest.skip(MISSING_TYPELIB, allow_module_level=True)

gi.require_version("Hexz", "1")
gi.require_version("Json", "1.0")
from gi.repository import Gio, GLib, Hexz, Json  # noqa: E402

from conftest import run_main_loop_until  # noqa: E402

BLOCK_SIZE = 64 * 1024


def sample_disk(size=4 * 1024 * 1024):
    """Text, zeros and random bytes, so that every kind of block occurs."""
    text = b"".join(b"line %d of the sample disk\n" % i for i in range(40000))
    noise = random.Random(7).randbytes(512 * 1024)
    disk = bytearray(size)
    disk[:len(text)] = text
    disk[2 * 1024 * 1024:2 * 1024 * 1024 + len(noise)] = noise
    return bytes(disk)


def write_file(path, disk, memory=None, codec=Hexz.Codec.LZ4, parent=None, message=None):
    """Write disk (and memory) in 1 MiB pieces, return the progress signals."""
    progress = []
    writer = Hexz.SnapshotWriter.new_for_path(str(path))
    writer.set_codec(codec)
    writer.set_block_size(BLOCK_SIZE)
    if message is not None:
        writer.set_message(message)
    if parent is not None:
        writer.set_parent(parent)
    writer.set_metadata("vm-name", Json.Node.alloc().init_string("test-vm"))
    writer.connect("progress", lambda w, stream, done, expected:
                   progress.append((stream, done, expected)))

    for stream, data in ((Hexz.Stream.DISK, disk), (Hexz.Stream.MEMORY, memory)):
        if data is None:
            continue
        writer.begin_stream(stream, len(data))
        for offset in range(0, len(data), 1024 * 1024):
            writer.write_bytes(GLib.Bytes.new(data[offset:offset + 1024 * 1024]), None)
        writer.end_stream(None)

    writer.close(None)
    return progress


@pytest.fixture
def disk():
    return sample_disk()


def test_snapshot_write_and_read(private_dir, disk):
    path = private_dir / "disk.hxz"
    memory = b"QEVM" + bytes(100000) + b"end"

    progress = write_file(path, disk, memory, codec=Hexz.Codec.ZSTD, message="first boot")

    # Progress ends at the full size of each stream.
    assert (Hexz.Stream.DISK, len(disk), len(disk)) in progress
    assert (Hexz.Stream.MEMORY, len(memory), len(memory)) in progress
    assert os.stat(path).st_mode & 0o777 == 0o600

    snapshot = Hexz.Snapshot.open_path(str(path), None)
    assert snapshot.get_disk_size() == len(disk)
    assert snapshot.get_memory_size() == len(memory)
    assert snapshot.has_memory()
    assert snapshot.get_block_size() == BLOCK_SIZE
    assert snapshot.get_parent() is None
    assert snapshot.get_file_size() == os.path.getsize(path)
    # Zero blocks and compression keep the file far below the data's size.
    assert snapshot.get_file_size() < len(disk) // 2

    # Random reads, across block boundaries.
    for offset, count in ((0, 100), (BLOCK_SIZE - 10, 20), (2 * 1024 * 1024 + 5, 70000),
                          (len(disk) - 1, 1)):
        data = snapshot.read_bytes(Hexz.Stream.DISK, offset, count, None).get_data()
        assert data == disk[offset:offset + count], offset
    assert snapshot.read_bytes(Hexz.Stream.MEMORY, 0, len(memory), None).get_data() == memory
    assert snapshot.is_zero(Hexz.Stream.DISK, 3 * 1024 * 1024, BLOCK_SIZE)
    assert not snapshot.is_zero(Hexz.Stream.DISK, 0, BLOCK_SIZE)

    # The sequential stream returns the whole disk.
    stream = snapshot.open_stream(Hexz.Stream.DISK)
    chunks = []
    while True:
        chunk = stream.read_bytes(300000, None).get_data()
        if not chunk:
            break
        chunks.append(chunk)
    assert b"".join(chunks) == disk


def test_snapshot_info(private_dir, disk):
    path = private_dir / "disk.hxz"
    write_file(path, disk, message="before the upgrade")

    snapshot = Hexz.Snapshot.open_path(str(path), None)

    # The id is a lowercase UUID string.
    assert GLib.uuid_string_is_valid(snapshot.get_id())
    assert snapshot.get_id() == snapshot.get_id().lower()
    assert snapshot.get_file().get_path() == str(path)
    assert not snapshot.has_memory()
    assert snapshot.get_stream_size(Hexz.Stream.MEMORY) == 0
    metadata = snapshot.get_metadata()
    assert metadata.get_string_member("message") == "before the upgrade"
    assert metadata.get_string_member("vm-name") == "test-vm"
    assert metadata.has_member("created")


def test_snapshot_block_stats(private_dir, disk):
    path = private_dir / "disk.hxz"
    write_file(path, disk)
    snapshot = Hexz.Snapshot.open_path(str(path), None)

    stats = snapshot.get_block_stats(Hexz.Stream.DISK, None)

    block_size = snapshot.get_block_size()
    assert stats.blocks == (len(disk) + block_size - 1) // block_size
    assert stats.blocks == (stats.zero_blocks + stats.parent_blocks + stats.raw_blocks
                            + stats.lz4_blocks + stats.zstd_blocks + stats.shared_blocks)
    assert 0 < stats.stored_bytes <= snapshot.get_file_size()
    assert snapshot.get_block_stats(Hexz.Stream.MEMORY, None).blocks == 0


def test_snapshot_verify_progress(private_dir, disk):
    path = private_dir / "disk.hxz"
    write_file(path, disk)
    snapshot = Hexz.Snapshot.open_path(str(path), None)
    progress = []
    snapshot.connect("progress", lambda s, done, total: progress.append((done, total)))

    snapshot.verify(None)

    assert progress[0][0] == 0
    assert progress[-1] == (len(disk), len(disk))
    assert [done for done, total in progress] == sorted(done for done, total in progress)


def test_snapshot_verify_async_progress(private_dir, disk):
    path = private_dir / "disk.hxz"
    write_file(path, disk)
    snapshot = Hexz.Snapshot.open_path(str(path), None)
    progress = []
    results = []
    snapshot.connect("progress", lambda s, done, total: progress.append((done, total)))

    snapshot.verify_async(None, lambda s, result: results.append(s.verify_finish(result)))
    run_main_loop_until(lambda: results)

    assert results == [True]
    assert progress[-1] == (len(disk), len(disk))


def test_snapshot_verify_detects_damage(private_dir, disk):
    path = private_dir / "disk.hxz"
    write_file(path, disk, codec=Hexz.Codec.RAW)

    # Change one byte of stored data: with the raw codec the text of the
    # first block is stored as it is.
    with open(path, "r+b") as file:
        content = file.read()
        position = content.index(b"line 1000 of")
        file.seek(position)
        file.write(b"L")

    snapshot = Hexz.Snapshot.open_path(str(path), None)
    with pytest.raises(GLib.Error) as info:
        snapshot.verify(None)
    assert info.value.matches(Hexz.snapshot_error_quark(), Hexz.SnapshotError.CORRUPT)
    assert "disk.hxz" in info.value.message


def test_snapshot_thin_child(private_dir, disk):
    parent_path = private_dir / "parent.hxz"
    child_path = private_dir / "child.hxz"
    write_file(parent_path, disk)
    parent = Hexz.Snapshot.open_path(str(parent_path), None)

    # The child changes the second block and refers to the parent for the rest.
    changed = bytearray(disk[:2 * BLOCK_SIZE])
    changed[BLOCK_SIZE:] = b"x" * BLOCK_SIZE
    writer = Hexz.SnapshotWriter.new_for_path(str(child_path))
    writer.set_parent(parent)
    writer.begin_stream(Hexz.Stream.DISK, len(disk))
    writer.write_parent(BLOCK_SIZE, None)
    writer.write_bytes(GLib.Bytes.new(bytes(changed[BLOCK_SIZE:])), None)
    writer.write_parent(len(disk) - 2 * BLOCK_SIZE, None)
    writer.end_stream(None)
    writer.close(None)

    child = Hexz.Snapshot.open_path(str(child_path), None)
    assert child.get_parent_id() == parent.get_id()
    assert child.get_parent().get_id() == parent.get_id()
    assert child.read_bytes(Hexz.Stream.DISK, 0, 2 * BLOCK_SIZE, None).get_data() == bytes(changed)
    tail = child.read_bytes(Hexz.Stream.DISK, 2 * BLOCK_SIZE, len(disk) - 2 * BLOCK_SIZE, None)
    assert tail.get_data() == disk[2 * BLOCK_SIZE:]
    assert os.path.getsize(child_path) < os.path.getsize(parent_path)
    child.verify(None)

    # Replacing the parent breaks the chain, and opening the child fails.
    os.unlink(parent_path)
    write_file(parent_path, disk)
    with pytest.raises(GLib.Error) as info:
        Hexz.Snapshot.open_path(str(child_path), None)
    assert info.value.matches(Hexz.snapshot_error_quark(), Hexz.SnapshotError.PARENT_MISMATCH)


def test_snapshot_open_rejects_other_files(private_dir):
    path = private_dir / "notes.txt"
    path.write_text("These are notes, not a snapshot.\n" * 100)

    with pytest.raises(GLib.Error) as info:
        Hexz.Snapshot.open_path(str(path), None)

    assert info.value.matches(Hexz.snapshot_error_quark(), Hexz.SnapshotError.NOT_A_SNAPSHOT)
    assert "notes.txt" in info.value.message


def test_snapshot_open_async(private_dir, disk):
    path = private_dir / "disk.hxz"
    write_file(path, disk)
    results = []

    Hexz.Snapshot.open_async(Gio.File.new_for_path(str(path)), GLib.PRIORITY_DEFAULT, None,
                             lambda source, result: results.append(Hexz.Snapshot.open_finish(result)))
    run_main_loop_until(lambda: results)

    assert results[0].get_disk_size() == len(disk)
