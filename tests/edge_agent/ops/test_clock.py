"""Clock synchronisation status: kernel adjtimex, timesyncd flag file, seccomp caution."""

from __future__ import annotations

import ctypes
import platform
from pathlib import Path

import pytest

from edge_agent.ops import clock
from edge_agent.ops.clock import ClockSource, ClockStatus


def _flag_in(tmp_path: Path, *, dir_exists: bool, synced: bool) -> Path:
    flag = tmp_path / "timesync" / "synchronized"
    if dir_exists:
        flag.parent.mkdir()
        if synced:
            flag.touch()
    return flag


@pytest.mark.parametrize(
    ("dir_exists", "synced", "expected"),
    [
        (True, True, ClockStatus(synced=True, source=ClockSource.TIMESYNCD)),
        (True, False, ClockStatus(synced=False, source=ClockSource.TIMESYNCD)),
        (False, False, ClockStatus(synced=None, source=ClockSource.NONE)),
    ],
)
def test_timesyncd_flag_file(
    tmp_path: Path, dir_exists: bool, synced: bool, expected: ClockStatus
) -> None:
    """Without adjtimex: flag means synced, directory without flag unsynced, neither unknown."""
    flag = _flag_in(tmp_path, dir_exists=dir_exists, synced=synced)
    assert clock.clock_status(use_adjtimex=False, timesyncd_flag=flag) == expected


def test_seccomp_filter_skips_adjtimex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under seccomp adjtimex is never called (it could kill the process); the flag answers."""

    def forbidden() -> bool | None:
        raise AssertionError("adjtimex must not be called under seccomp")

    monkeypatch.setattr(clock, "_in_seccomp_filter", lambda: True)
    monkeypatch.setattr(clock, "_adjtimex_synced", forbidden)
    flag = _flag_in(tmp_path, dir_exists=True, synced=True)
    assert clock.clock_status(timesyncd_flag=flag) == ClockStatus(
        synced=True, source=ClockSource.TIMESYNCD
    )


def test_adjtimex_failure_falls_back_to_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When adjtimex is unavailable (EPERM, not Linux) the timesyncd flag is consulted."""
    monkeypatch.setattr(clock, "_adjtimex_synced", lambda: None)
    flag = _flag_in(tmp_path, dir_exists=True, synced=False)
    assert (
        clock.clock_status(use_adjtimex=True, timesyncd_flag=flag).source is ClockSource.TIMESYNCD
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Name:\tpython\nSeccomp:\t2\nSeccomp_filters:\t1\n", True),
        ("Name:\tpython\nSeccomp:\t0\n", False),
        ("Name:\tpython\nSeccomp:\tjunk\n", True),
        ("Name:\tpython\n", False),
    ],
)
def test_seccomp_detection(tmp_path: Path, text: str, expected: bool) -> None:
    """Seccomp mode 2 in /proc/self/status means filtered; an odd value counts as filtered."""
    status = tmp_path / "status"
    status.write_text(text)
    assert clock._in_seccomp_filter(status) is expected


def test_unreadable_proc_status_is_treated_as_filtered(tmp_path: Path) -> None:
    """If /proc/self/status cannot be read the safe assumption (filtered) is made."""
    assert clock._in_seccomp_filter(tmp_path / "missing") is True


@pytest.mark.skipif(platform.system() != "Linux", reason="adjtimex is Linux-only")
def test_adjtimex_answers_on_linux() -> None:
    """On Linux outside a seccomp filter the kernel query gives a definite True or False."""
    if clock._in_seccomp_filter():
        pytest.skip("running under a seccomp filter")
    assert clock._adjtimex_synced() in (True, False)
    status = clock.clock_status()
    assert status.source is ClockSource.ADJTIMEX
    assert clock.clock_synced() is status.synced


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_long) != 8, reason="layout check for LP64 only")
def test_timex_layout_matches_the_kernel() -> None:
    """The timex struct is 208 bytes on LP64 Linux; a smaller buffer would be overrun."""
    assert ctypes.sizeof(clock._Timex) == 208
    assert clock._Timex.status.offset == 40  # modes, offset, freq, maxerror, esterror
