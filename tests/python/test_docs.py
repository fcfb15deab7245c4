# SPDX-License-Identifier: LGPL-2.1-or-later
"""The Python examples of doc/python.md, run as written.

The page's first ```python block imports the modules, and each later one
runs after it in a private folder. The live snapshot example gets the
test machine's paths in place of the ones the page uses.
"""

import contextlib
import io
import os
import re

import gi
import pytest

from conftest import MISSING_TYPELIB, SOURCE_ROOT  # noqa: E402

if MISSING_TYPELIB is not None:
    pytest.skip(MISSING_TYPELIB, allow_module_level=True)

gi.require_version("Hexz", "1")
from gi.repository import Hexz  # noqa: E402

PAGE = os.path.join(SOURCE_ROOT, "doc", "python.md")


def page_blocks():
    with open(PAGE, encoding="utf-8") as page:
        return re.findall(r"^```python\n(.*?)^```$", page.read(), re.M | re.S)


def page_examples():
    """The examples after the imports block, each with the imports first."""
    imports, *examples = page_blocks()
    return [imports + example for example in examples]


def run_example(code, folder):
    """Run code in folder and return what it printed."""
    output = io.StringIO()
    previous = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(output):
            exec(compile(code, PAGE, "exec"), {"__name__": "__main__"})
    finally:
        os.chdir(previous)
    return output.getvalue()


def test_docs_python_examples_found():
    blocks = page_blocks()
    assert len(blocks) == 3, blocks
    assert "from gi.repository import" in blocks[0]
    assert "SnapshotWriter" in blocks[1]
    assert "Capture.new" in blocks[2]


def test_docs_write_and_read(private_dir):
    disk = os.urandom(256 * 1024) + bytes(768 * 1024)
    (private_dir / "disk.img").write_bytes(disk)

    printed = run_example(page_examples()[0], private_dir)

    snapshot = Hexz.Snapshot.open_path(str(private_dir / "disk.hxz"), None)
    assert printed.split() == [snapshot.get_id(), str(len(disk))]
    assert snapshot.read_bytes(Hexz.Stream.DISK, 0, len(disk), None).get_data() == disk


def test_docs_live_snapshot(machine, private_dir):
    code = page_examples()[1]
    for page_path, path in (("/run/vm/qmp.sock", machine.qmp_socket),
                            ("/run/vm/vm.overlay", machine.overlay),
                            ('"base.hxz"', repr(machine.base))):
        assert page_path in code
        code = code.replace(page_path, path)

    printed = run_example(code, private_dir)

    assert "failed:" not in printed, printed
    assert printed.splitlines()[0] == "preflight 0 0"
    assert printed.splitlines()[-1].startswith("paused for ")
    assert Hexz.Snapshot.open_path(str(private_dir / "now.hxz"), None).has_memory()
    assert machine.is_running()
