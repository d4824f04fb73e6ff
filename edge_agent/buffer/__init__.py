"""Durable SQLite buffer: readings, events, summaries, calculator state and the MQTT outbox.

Public API (see ``docs/pipeline.md``): :class:`Buffer`, :class:`StorageConfig`,
:func:`parse_storage`, :class:`Priority`, :class:`OutboxRow`. Everything else in
the package is an implementation detail.

The store and the outbox (sqlite3, the writer thread) are imported on first use:
loading a configuration needs only :mod:`.config` (``tests/edge_agent/test_lean_imports.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.buffer.config import RawMode, StorageConfig, SyncMode, parse_storage
from edge_agent.lazy import lazy_members

if TYPE_CHECKING:
    from edge_agent.buffer.outbox import MessageKind, OutboxRow, Priority
    from edge_agent.buffer.store import Buffer, Outgoing

__getattr__ = lazy_members(
    globals(),
    {
        "MessageKind": "edge_agent.buffer.outbox",
        "OutboxRow": "edge_agent.buffer.outbox",
        "Priority": "edge_agent.buffer.outbox",
        "Buffer": "edge_agent.buffer.store",
        "Outgoing": "edge_agent.buffer.store",
    },
)


__all__ = [
    "Buffer",
    "MessageKind",
    "Outgoing",
    "RawMode",
    "StorageConfig",
    "SyncMode",
    "parse_storage",
    "OutboxRow",
    "Priority",
]
