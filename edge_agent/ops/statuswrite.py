"""Writing ``status.json`` atomically, and what happens when it cannot be written.

:func:`write_atomic` writes the document beside the file and renames it over
the old one, so a reader sees the old document or the new one, never half of
one. When the write fails (a full disk, a quota, a read-only filesystem,
permissions) the half-written temporary file is removed, so it does not hold
the last free blocks, and the old ``status.json`` stays as it was.

:class:`StatusWriteGuard` turns failures into one condition of the event
catalogue (``status_write_failed``): one error line when writing starts to fail,
with its reason (``ENOSPC``, ``EACCES`` ...) and the traceback only for an
unexpected error (not an ``OSError``); one line when it
works again, after writes have succeeded for :data:`RECOVERED_S` (a disk at
its limit lets a small file through now and then: that is not a recovery
logged every few seconds). The status loop retries at every interval.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from edge_agent.ops.events import Event, EventLog

# Writes must succeed for this long before the condition is logged as ended.
RECOVERED_S = 30.0

Opener = Callable[[Path], IO[str]]


def _open(path: Path) -> IO[str]:
    return open(path, "w", encoding="utf-8")


def write_atomic(path: Path, parts: Iterable[str], *, opener: Opener = _open) -> None:
    """Write ``parts`` to ``path`` through a temporary file and a rename.

    Raises:
        OSError: The file could not be written; the old one is untouched and the
            temporary file removed.
    """
    tmp = path.with_suffix(".tmp")
    try:
        with opener(tmp) as fh:
            fh.writelines(parts)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def reason_of(exc: BaseException) -> str:
    """A short, stable name of why a write failed (``ENOSPC``, ``EACCES``, the class name)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


class StatusWriteGuard:
    """Counts and logs status write failures once while they last; logs the recovery once.

    Args:
        events: The event catalogue (``status_write_failed``).
        path: The status file, named in the log line.
        clock: Monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        events: EventLog,
        path: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.events = events
        self.path = path
        self.clock = clock
        self.reason = ""  # of the failure in force, "" when writing works
        self._ok_since: float | None = None

    def failed(self, exc: BaseException) -> None:
        """A write failed: log it when writing was working until now."""
        reason = reason_of(exc)
        self._ok_since = None
        if self.reason:
            return  # in force already (whatever the reason now): logged once
        self.reason = reason
        # An OSError says all there is to say; anything else is a bug: keep its traceback.
        trace = None if isinstance(exc, OSError) else exc
        context: dict[str, Any] = {"path": str(self.path), "reason": reason}
        if isinstance(exc, OSError):
            context["error"] = exc.strerror or str(exc)
        self.events.enter(Event.STATUS_WRITE_FAILED, exc_info=trace, **context)

    def written(self) -> None:
        """A write succeeded: the condition ends once writes kept working for a while."""
        if not self.reason:
            return
        now = self.clock()
        if self._ok_since is None:
            self._ok_since = now
        if now - self._ok_since >= RECOVERED_S:
            self.events.leave(Event.STATUS_WRITE_FAILED)
            self.reason = ""
            self._ok_since = None
