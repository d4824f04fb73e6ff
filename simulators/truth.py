"""Ground truth: what the simulator really did, as JSON Lines.

Each line is one JSON object with a ``type``: ``start`` (scenario, seed,
speed, machines, wall epoch of sim time 0), ``interval`` (one completed
state interval of a machine: state, reason, fault code, start/end in sim
seconds and wall-clock UTC epoch, counters at its end, parts made in it),
``restart`` (PLC restart; counters before the reset), ``outage`` (comms
outage: mode, start/end), and ``stop``. Intervals still open at shutdown
are written with ``"open": true``. Keys are sorted and separators fixed, so
a run driven by a manual clock is byte-identical across runs. Lines are
flushed as they are written, so a reader may tail the file. This module
does not decide *what* happened; the model does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any


def dumps(record: dict[str, Any]) -> str:
    """One record as a canonical JSON line (no newline)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class TruthWriter:
    """Collects truth records in memory and optionally appends them to a file.

    Args:
        path: JSON Lines file to (over)write, or None to keep records in memory only.
        keep: Keep records in :attr:`records` (tests read them directly).
    """

    def __init__(self, path: str | Path | None = None, *, keep: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        self._keep = keep
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")

    def record(self, rec: dict[str, Any]) -> None:
        """Append one record."""
        if self._keep:
            self.records.append(rec)
        if self._file is not None:
            self._file.write(dumps(rec) + "\n")
            self._file.flush()

    def close(self) -> None:
        """Close the file (records stay in memory)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def read_truth(path: str | Path) -> list[dict[str, Any]]:
    """Parse a truth file back into records."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
