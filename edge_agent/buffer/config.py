"""``[storage]``: where the SQLite buffer lives, how big it may grow, how long rows are kept.

:func:`parse_storage` reads the section through :class:`~edge_agent.configkit.Table`
so every mistake names its dotted key path; it does no I/O (the state directory
is only joined, never created). The result is a frozen :class:`StorageConfig`.
Defaults suit a Raspberry Pi with an SD card: 512 MB budget, write batches of at
most 1 s / 20,000 rows (with raw telemetry they ride in its commit, once a second),
a week of raw readings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from edge_agent.configkit import Table

MIB = 1024 * 1024
HOUR_S = 3600.0


class RawMode(str, enum.Enum):
    """``raw``: which polled values the buffer keeps (see :mod:`edge_agent.buffer.blocks`)."""

    BLOCKS = "blocks"  # every poll, one frame per block read
    CHANGES = "changes"  # only values (or quality/reason) that changed since the last stored
    NONE = "none"  # no raw values (KPI inputs stay in the sample journal)


class SyncMode(str, enum.Enum):
    """``synchronous`` pragma used for outbox and summary commits."""

    FULL = "full"
    NORMAL = "normal"


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    """Validated ``[storage]`` section.

    Attributes:
        path: The database file (absolute; relative config values are under ``state_dir``).
        max_mb: Disk budget for the database *and* its WAL, in MiB.
        flush_interval_ms: Longest time a reading waits in memory before its batch commits.
        flush_rows: A batch commits as soon as this many rows are waiting.
        queue_max_rows: Bound of the in-memory write queue; beyond it new readings are
            dropped and counted (``drop-newest``).
        memory_max_rows: Rows held in RAM while the disk is full; beyond it the oldest held
            readings are dropped and counted.
        outbox_sync: ``synchronous`` mode for outbox/summary commits (``full`` survives power
            loss; ``normal`` survives a crash of the agent only).
        raw: Which polled values are stored (``blocks``: every poll as one frame;
            ``changes``: only changed values; ``none``: none). The sample journal (KPI
            inputs, replay, evidence) is kept whatever this says.
        readings_retention_h: Age after which raw readings (frames) are deleted.
        events_retention_h: Age after which comms events and state intervals are deleted.
        summaries_retention_h: Age after which *published* KPI records and stop events are
            deleted (unpublished ones are never aged out).
    """

    path: Path
    max_mb: int = 512
    flush_interval_ms: int = 1000
    flush_rows: int = 20_000
    queue_max_rows: int = 100_000
    memory_max_rows: int = 50_000
    outbox_sync: SyncMode = SyncMode.FULL
    raw: RawMode = RawMode.BLOCKS
    readings_retention_h: float = 168.0
    events_retention_h: float = 2160.0
    summaries_retention_h: float = 8760.0

    @property
    def max_bytes(self) -> int:
        """The budget in bytes."""
        return self.max_mb * MIB

    @property
    def flush_interval_s(self) -> float:
        """The flush interval in seconds."""
        return self.flush_interval_ms / 1000.0


def default_storage(state_dir: Path) -> StorageConfig:
    """Defaults with the database at ``<state_dir>/buffer.db``."""
    return StorageConfig(path=state_dir / "buffer.db")


def parse_storage(table: Table | None, *, state_dir: Path) -> StorageConfig:
    """Build a :class:`StorageConfig` from ``[storage]`` (``None`` means all defaults).

    Args:
        table: The ``[storage]`` table, or ``None`` when the section is absent.
        state_dir: The agent's state directory; a relative ``path`` is resolved under it.

    Returns:
        The validated config. Problems are recorded in the table's issue collector.
    """
    if table is None:
        return default_storage(state_dir)
    raw_path = table.get_str("path", "buffer.db")
    path = Path(raw_path) if raw_path else Path("buffer.db")
    if not path.is_absolute():
        path = state_dir / path
    max_mb = table.get_int("max_mb", 512, min=1, max=1_048_576)
    flush_interval_ms = table.get_int("flush_interval_ms", 1000, min=1, max=60_000)
    flush_rows = table.get_int("flush_rows", 20_000, min=1, max=100_000)
    queue_max_rows = table.get_int("queue_max_rows", 100_000, min=1, max=10_000_000)
    memory_max_rows = table.get_int("memory_max_rows", 50_000, min=0, max=10_000_000)
    outbox_sync = table.get_enum("outbox_sync", SyncMode, SyncMode.FULL)
    raw = table.get_enum("raw", RawMode, RawMode.BLOCKS)
    readings_h = table.get_float("readings_retention_h", 168.0, positive=True)
    events_h = table.get_float("events_retention_h", 2160.0, positive=True)
    summaries_h = table.get_float("summaries_retention_h", 8760.0, positive=True)
    if queue_max_rows < flush_rows:
        table.error("queue_max_rows", f"must be >= flush_rows ({flush_rows}), got {queue_max_rows}")
    table.finish()
    return StorageConfig(
        path=path,
        max_mb=max_mb,
        flush_interval_ms=flush_interval_ms,
        flush_rows=flush_rows,
        queue_max_rows=queue_max_rows,
        memory_max_rows=memory_max_rows,
        outbox_sync=outbox_sync,
        raw=raw,
        readings_retention_h=readings_h,
        events_retention_h=events_h,
        summaries_retention_h=summaries_h,
    )
