"""The hold mark: how many messages the outbox staging holds in memory, kept on disk.

While the outbox cannot take them (disk budget full of never-evicted rows, the disk
itself, a failing commit), :class:`~edge_agent.outgoing.staging.OutboxStaging` holds
messages in memory. A clean stop stores or counts them; a ``kill -9`` (or a power
cut, an OOM kill) would lose them without a word. The hold mark is a small JSON
file in the state directory (``held.json``: the messages held per kind and since
when), rewritten whenever those counts change after a flush and removed when
nothing is held any more (or the stop accounted for them). When a start finds it,
the last run ended while messages were held: the start counts and logs them
(event ``held_lost``), then removes it.

It is a file beside the database, not a row in it, because it must be written
exactly when the database refuses writes (a full budget); a full disk refuses it
too, which is logged once (the count is then as of the last write that worked).
It is written with a rename (a reader sees the old mark or the new one) and not
fsynced: it survives the process dying, not necessarily the machine losing power.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("edge_agent.outgoing")

#: File name of the hold mark in the state directory.
HOLD_MARK = "held.json"
#: Key of the closed state intervals among the mark's counts (not a message kind).
INTERVALS = "intervals"


@dataclass(frozen=True, slots=True)
class PreviousHold:
    """What the last run held in memory when it ended without accounting for it."""

    held: dict[str, int]  # messages per kind
    since: float | None  # when holding started (UNIX seconds), None if unknown
    intervals: int = 0  # closed state intervals waiting with them

    @property
    def count(self) -> int:
        """Messages held, every kind."""
        return sum(self.held.values())


class HoldMark:
    """The hold mark file (see the module docstring).

    Args:
        path: The file (``<state_dir>/held.json``).
        clock: Wall clock (UNIX seconds), injectable for tests.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._written: dict[str, int] = {}  # counts on disk ({} = no file)
        self._since: float | None = None
        self._failing = False

    def update(self, held: Mapping[str, int], intervals: int = 0) -> None:
        """Record the messages held now, per kind, and the intervals waiting with them.

        Nothing held: the mark is removed. Cheap when nothing changed (no I/O).
        """
        counts = {kind: n for kind, n in sorted(held.items()) if n}
        if intervals:
            counts[INTERVALS] = intervals
        if counts == self._written:
            return
        if not counts:
            self.clear()
            return
        if self._since is None:
            self._since = self.clock()
        text = json.dumps({"held": counts, "since": self._since, "pid": os.getpid()})
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if not self._failing:
                log.error("Could not write the hold mark path=%s error=%s", self.path, exc)
                self._failing = True
            return
        self._failing = False
        self._written = counts

    def clear(self) -> None:
        """Nothing is held (or the stop counted it): remove the mark."""
        self._since = None
        if not self._written:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("Could not remove the hold mark path=%s error=%s", self.path, exc)
            return
        self._written = {}

    def take_previous(self) -> PreviousHold | None:
        """At start: the mark the last run left (then removed), or None."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("Could not read the hold mark path=%s error=%s", self.path, exc)
            return None
        previous = _parse(text)
        with contextlib.suppress(OSError):
            self.path.unlink()
        return previous


def _parse(text: str) -> PreviousHold:
    """A mark's content; an unreadable one is a hold of unknown size (kind ``unknown``: 1)."""
    try:
        doc: Any = json.loads(text)
        held = {str(k): int(v) for k, v in doc["held"].items() if int(v) > 0}
        intervals = held.pop(INTERVALS, 0)
        since = doc.get("since")
        return PreviousHold(held, float(since) if since is not None else None, intervals)
    except (ValueError, TypeError, KeyError, AttributeError):
        return PreviousHold({"unknown": 1}, None)
