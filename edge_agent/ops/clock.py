"""Is the wall clock synchronised (NTP)? Answered without privileges and without blocking.

A Raspberry Pi has no RTC: until NTP syncs, the wall clock reads the
fake-hwclock time (or 1970) and every timestamp the agent takes is wrong.
:func:`clock_synced` tells the rest of the agent (health telemetry, ``status``)
whether to trust the wall clock, the same way ``timedatectl`` does:

1. The kernel's view, from ``adjtimex(2)`` with ``modes = 0`` (read-only, no
   capability needed): synchronised unless ``STA_UNSYNC`` is set or the call
   returns ``TIME_ERROR``. Whatever disciplines the clock (systemd-timesyncd,
   chrony, ntpd) clears ``STA_UNSYNC``.
2. When that call is unavailable, systemd-timesyncd's flag file
   ``/run/systemd/timesync/synchronized`` (touched on every successful sync,
   on a tmpfs so it is gone after reboot).
3. Otherwise ``None``: unknown.

What it does not do: it does not detect boot-time jumps, measure the offset
against a server, or set the clock.

Guarantees: never raises, never blocks (one syscall and one ``stat``), and
never calls ``adjtimex`` inside a seccomp filter. The hardened unit's
``SystemCallFilter=@system-service`` excludes ``adjtimex`` (it is in
``@clock``), and a filtered syscall may kill the process with ``SIGSYS``
rather than return ``EPERM``. So under seccomp (``Seccomp: 2`` in
``/proc/self/status``) only the timesyncd file is consulted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.ops.events import Event, EventLog

__all__ = [
    "ClockSource",
    "ClockWatch",
    "ClockStatus",
    "clock_status",
    "clock_synced",
]

TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
_PROC_STATUS = Path("/proc/self/status")

# <linux/timex.h>
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5
_SECCOMP_MODE_FILTER = 2


class ClockSource(str, enum.Enum):
    """Where the answer of :func:`clock_status` came from."""

    ADJTIMEX = "adjtimex"
    TIMESYNCD = "timesyncd"
    NONE = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockStatus:
    """Synchronisation state of the wall clock.

    Attributes:
        synced: ``True``/``False``, or ``None`` when it cannot be told.
        source: Which mechanism answered.
    """

    synced: bool | None
    source: ClockSource


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """``struct timex`` of the glibc ``adjtimex`` symbol (``long`` fields: 32 or 64 bit)."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        # The kernel reserves eleven more ints after tai; without them it would
        # write past the end of the buffer.
        ("_reserved", ctypes.c_int * 11),
    )


def _in_seccomp_filter(proc_status: Path = _PROC_STATUS) -> bool:
    """True when this process runs under a seccomp filter (or when that cannot be read)."""
    try:
        text = proc_status.read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # be conservative: an unknown sandbox may kill on adjtimex
    for line in text.splitlines():
        if line.startswith("Seccomp:"):
            try:
                return int(line.split(":", 1)[1]) == _SECCOMP_MODE_FILTER
            except ValueError:
                return True
    return False  # kernel without seccomp support


@functools.cache
def _adjtimex_func() -> Any | None:
    """The libc ``adjtimex`` function, looked up once; ``None`` off Linux/glibc."""
    if os.uname().sysname != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.adjtimex
    except (OSError, AttributeError):
        return None
    func.argtypes = (ctypes.POINTER(_Timex),)
    func.restype = ctypes.c_int
    return func


def _adjtimex_synced() -> bool | None:
    """Kernel's NTP state via ``adjtimex(2)`` read-only; ``None`` when unavailable."""
    func = _adjtimex_func()
    if func is None:
        return None
    buf = _Timex()
    buf.modes = 0  # read only: needs no CAP_SYS_TIME
    state = func(ctypes.byref(buf))
    if state < 0:
        return None  # EPERM under a filter that returns errors, ENOSYS, ...
    return not (buf.status & _STA_UNSYNC) and state != _TIME_ERROR


def _timesyncd_synced(flag: Path) -> bool | None:
    """``True`` if timesyncd's flag exists, ``False`` if timesyncd runs but has not synced."""
    try:
        if flag.exists():
            return True
        if flag.parent.is_dir():
            return False
    except OSError:
        return None
    return None


def clock_status(
    *,
    use_adjtimex: bool | None = None,
    timesyncd_flag: Path = TIMESYNCD_FLAG,
) -> ClockStatus:
    """Tell whether the wall clock is synchronised, and how that was found out.

    Args:
        use_adjtimex: Force the kernel query on or off; by default it is used
            unless the process runs under a seccomp filter.
        timesyncd_flag: The timesyncd flag file (tests point it elsewhere).

    Returns:
        The status; never raises.
    """
    if use_adjtimex is None:
        use_adjtimex = not _in_seccomp_filter()
    if use_adjtimex:
        synced = _adjtimex_synced()
        if synced is not None:
            return ClockStatus(synced=synced, source=ClockSource.ADJTIMEX)
    synced = _timesyncd_synced(timesyncd_flag)
    if synced is not None:
        return ClockStatus(synced=synced, source=ClockSource.TIMESYNCD)
    return ClockStatus(synced=None, source=ClockSource.NONE)


def clock_synced() -> bool | None:
    """``True`` when NTP-synchronised, ``False`` when known not to be, ``None`` when unknown."""
    return clock_status().synced


class ClockWatch:
    """:func:`clock_synced`, re-read at most once per ``min_interval_s`` of monotonic time.

    The hot path asks for every batch it turns into machine samples; the answer costs
    a syscall and a ``stat``, and it changes rarely.

    Args:
        probe: Replacement for :func:`clock_synced` (tests).
        min_interval_s: How long an answer is reused.
    """

    def __init__(
        self,
        probe: Callable[[], bool | None] = clock_synced,
        min_interval_s: float = 1.0,
        *,
        events: EventLog | None = None,
    ) -> None:
        self._probe = probe
        self._min_interval_s = min_interval_s
        self.events = events or EventLog()
        self._synced: bool | None = None
        self._at = float("-inf")

    def synced(self, mono: float) -> bool | None:
        """The clock status at monotonic time ``mono`` (``None`` when unknown)."""
        if mono - self._at >= self._min_interval_s:
            self._synced, self._at = self._probe(), mono
            if self._synced is False:
                self.events.enter(Event.CLOCK_UNSYNCED)
            elif self._synced is True:
                self.events.leave(Event.CLOCK_UNSYNCED)
        return self._synced

    def unsynced(self, mono: float) -> bool:
        """True only when the clock is *known* not to be synchronised."""
        return self.synced(mono) is False
