"""``[ingest]``: the bound of the queue between the links and the dispatcher.

What the bound and ``when_full`` do is stated in :mod:`edge_agent.ingest.queue`.
Kept apart from the queue so loading a configuration does not import asyncio.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edge_agent.configkit import Table


class WhenFull(str, enum.Enum):
    """What a full ingest queue drops."""

    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestConfig:
    """``[ingest]``: the bound of the queue between the links and the dispatcher."""

    queue_max_batches: int = 10_000
    when_full: WhenFull = WhenFull.DROP_NEWEST


def parse_ingest(table: Table | None) -> IngestConfig:
    """Parse ``[ingest]`` (every key optional)."""
    if table is None:
        return IngestConfig()
    bound = table.get_int("queue_max_batches", 10_000, min=10, max=1_000_000)
    policy = table.get_str(
        "when_full", WhenFull.DROP_NEWEST.value, choices=tuple(w.value for w in WhenFull)
    )
    table.finish()
    when_full = WhenFull(policy) if policy in WhenFull._value2member_map_ else WhenFull.DROP_NEWEST
    return IngestConfig(queue_max_batches=bound, when_full=when_full)
