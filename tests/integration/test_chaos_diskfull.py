"""Chaos: the filesystem itself fills up (a 4 MiB tmpfs), then space returns.

The buffer must keep running: readings wait in RAM (bounded), ``disk_full`` is
reported with reason ``disk``, publishing raises StorageFull instead of losing a
summary silently, and everything resumes by itself once space is freed. Needs
root to mount the tmpfs; skipped otherwise.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, Priority, StorageConfig
from edge_agent.errors import StorageFull
from edge_agent.model import Reading

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        timeout=10,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10, check=False)


def fill(path: Path, leave: int) -> None:
    """Write a ballast file until only about ``leave`` bytes are free."""
    free = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize
    with open(path, "wb") as fh, contextlib.suppress(OSError):
        fh.write(b"\0" * max(0, free - leave))


async def test_disk_full_holds_in_memory_and_recovers(small_disk: Path) -> None:
    """Disk full: rows held in RAM, disk_full reported, StorageFull on publish; then recovery."""
    cfg = StorageConfig(path=small_disk / "buffer.db", max_mb=64, flush_interval_ms=20)
    buf = Buffer(cfg, "gw1")
    await buf.open()
    try:
        kpi = await buf.publish(
            "kpi", "t", {"before": True}, priority=Priority.HIGH, record_key="k0"
        )
        ballast = small_disk / "ballast"
        fill(ballast, leave=64 * 1024)
        for batch in range(20):
            buf.add_readings(
                [
                    Reading(
                        device="plc1",
                        tag=f"t{i % 10}",
                        value=float(i),
                        ts=1e9 + batch * 1000 + i,
                        mono=0.0,
                    )
                    for i in range(1000)
                ]
            )
            await buf.flush()
        stats = buf.stats()
        assert stats["disk_full"] is True
        assert stats["full_reason"] == "disk"
        assert stats["held_rows"] > 0
        with pytest.raises(StorageFull):
            await buf.publish("kpi", "t", {"during": True}, priority=Priority.HIGH, record_key="k1")

        ballast.unlink()  # space returns
        await buf.flush()
        stats = buf.stats()
        assert stats["disk_full"] is False
        assert stats["held_rows"] == 0
        assert stats["written"]["readings"] == 20_000
        assert (
            await buf.publish("kpi", "t", {"after": True}, priority=Priority.HIGH, record_key="k1")
            > kpi
        )
        assert buf.backlog == 2
    finally:
        await buf.close()
