"""status.json on a full disk: the old file stays, one line in, retried, one line out.

The full disk is the kernel's: the status file's temporary copy is written through
``/dev/full``, whose every flush fails with ENOSPC, as on a filesystem with no free
block (no root, no mount needed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import pytest

from edge_agent.config import load_config
from edge_agent.ops.events import Event
from edge_agent.ops.status import StatusFile
from edge_agent.ops.statuswrite import RECOVERED_S, write_atomic
from edge_agent.runtime import Runtime


class Disk:
    """An opener whose disk can be made full.

    Full: the temporary file gets a few bytes, then every write goes to ``/dev/full``
    (ENOSPC when flushed).
    """

    def __init__(self) -> None:
        self.full = False
        self.opened = 0

    def __call__(self, path: Path) -> IO[str]:
        """Open ``path`` for writing, or the full disk."""
        self.opened += 1
        if not self.full:
            return open(path, "w", encoding="utf-8")
        path.write_text('{"half":')  # what a real full disk leaves behind
        return open("/dev/full", "w", encoding="utf-8")


class Clock:
    """A monotonic clock moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The time now."""
        return self.now


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[agent]\nid = "gw"\nsite = "lab"\nstate_dir = "{tmp_path / "state"}"\n'
        '[devices.a]\nprotocol = "modbus_tcp"\nendpoint = "127.0.0.1:1"\nunit_id = 1\n'
        'addressing = "zero"\n[devices.a.tags.running]\ntable = "coil"\naddress = 0\n'
        'type = "bool"\n'
    )
    rt = Runtime(load_config(path), install_signals=False)
    (tmp_path / "state").mkdir()
    await rt.buffer.open()
    yield rt
    await rt.buffer.close()


async def test_a_full_disk_keeps_the_old_status_logs_once_and_recovers(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten intervals on a full disk: the last good file stays, one error line, no traceback."""
    disk = Disk()
    path = rt.status.path
    status = StatusFile(rt, path, opener=disk)
    clock = Clock()
    status.guard.clock = clock
    assert await status.write()
    good = path.read_text()
    assert json.loads(good)["agent"]["id"] == "gw"

    disk.full = True
    with caplog.at_level(logging.INFO, logger="edge_agent.events"):
        for _ in range(10):
            assert not await status.write()
            clock.now += 5
        assert path.read_text() == good  # the old document, whole
        assert not path.with_suffix(".tmp").exists()  # its half copy does not hold the space
        assert rt.events.active(Event.STATUS_WRITE_FAILED)
        assert rt.events.counters[Event.STATUS_WRITE_FAILED] == 1
        failed = [r for r in caplog.records if r.getMessage().startswith("Could not write status")]
        assert len(failed) == 1
        assert "reason=ENOSPC" in failed[0].getMessage()
        assert failed[0].exc_info is None

        # Space returns for one write, then it is full again: not a recovery to log.
        disk.full = False
        assert await status.write()
        disk.full = True
        assert not await status.write()
        disk.full = False
        for _ in range(int(RECOVERED_S / 5) + 1):
            assert await status.write()
            clock.now += 5
    assert disk.opened == 10 + 2 + int(RECOVERED_S / 5) + 2  # retried at every interval
    assert not rt.events.active(Event.STATUS_WRITE_FAILED)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("Could not write status file") for line in lines) == 1
    assert sum(line.startswith("Status file written again") for line in lines) == 1
    assert json.loads(path.read_text())["agent"]["id"] == "gw"


def test_write_atomic_leaves_the_old_file_and_no_temporary_on_enospc(tmp_path: Path) -> None:
    """The helper alone (also used for the final status): ENOSPC propagates, nothing half."""
    path = tmp_path / "status.json"
    path.write_text("old")
    disk = Disk()
    disk.full = True
    with pytest.raises(OSError, match="No space left") as info:
        write_atomic(path, ["new"], opener=disk)
    assert info.value.errno == 28
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]
