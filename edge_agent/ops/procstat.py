"""This process's CPU time and memory, free disk space and hwmon temperatures, read directly.

What :mod:`edge_agent.ops.health` needs from the host, from the standard library and
the kernel's files: ``os.times()`` (CPU seconds), ``/proc/self/statm`` (resident set),
``os.statvfs`` (free and total bytes) and ``/sys/class/hwmon`` (temperature sensors by
driver name). These are the same sources and the same arithmetic psutil uses on
Linux; importing psutil for them cost about 0.5 MB of resident memory in every agent
(issue 20). Off Linux (no ``/proc/self/statm``, no hwmon) the resident set falls back to
psutil, imported on first use, and the temperature list is empty.

Errors are ``OSError`` (or ``ValueError`` for a malformed kernel file); the caller
turns them into missing figures. No state beyond the page size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

__all__ = ["CpuTimes", "Memory", "SelfProcess", "Temperature", "disk_usage", "hwmon_temperatures"]

HWMON = Path("/sys/class/hwmon")
_STATM = Path("/proc/self/statm")


class CpuTimes(NamedTuple):
    """CPU seconds this process used (its own, not its children's)."""

    user: float
    system: float


class Memory(NamedTuple):
    """Resident set size in bytes."""

    rss: int


class Temperature(NamedTuple):
    """One sensor reading in degrees Celsius (``label`` as the kernel names it, or "")."""

    label: str
    current: float


class SelfProcess:
    """The running process, with the part of ``psutil.Process``'s interface health uses."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")

    @contextlib.contextmanager
    def oneshot(self) -> Iterator[None]:
        """Nothing to cache: each figure is one system call or one small read."""
        yield

    def cpu_times(self) -> CpuTimes:
        """User and system CPU seconds (``os.times()``)."""
        t = os.times()
        return CpuTimes(t.user, t.system)

    def memory_info(self) -> Memory:
        """The resident set (second field of ``/proc/self/statm``, in pages)."""
        try:
            fields = _STATM.read_text(encoding="ascii").split()
        except FileNotFoundError:
            import psutil  # type: ignore[import-untyped]  # not Linux: no procfs statm

            return Memory(int(psutil.Process().memory_info().rss))
        return Memory(int(fields[1]) * self._page)


def disk_usage(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(free, total)`` bytes of the filesystem holding ``path`` (free: for a normal user)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def hwmon_temperatures(root: Path = HWMON) -> dict[str, list[Temperature]]:
    """Temperature sensors by hwmon driver name (``cpu_thermal``, ``coretemp``, ``ds3231`` ...)."""
    found: dict[str, list[Temperature]] = {}
    try:
        devices = sorted(root.iterdir())
    except OSError:
        return found
    for device in devices:
        try:
            name = (device / "name").read_text(encoding="ascii").strip()
        except OSError:
            continue
        for entry in sorted(device.glob("temp*_input")):
            try:
                current = int(entry.read_text(encoding="ascii").strip()) / 1000.0
            except (OSError, ValueError):
                continue
            label_file = entry.with_name(entry.name.replace("_input", "_label"))
            try:
                label = label_file.read_text(encoding="ascii").strip()
            except OSError:
                label = ""
            found.setdefault(name, []).append(Temperature(label, current))
    return found
