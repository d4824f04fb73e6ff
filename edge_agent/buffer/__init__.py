"""Durable SQLite buffer: readings, events, summaries, calculator state and the MQTT outbox.

Public API (see ``docs/pipeline.md``): :class:`Buffer`, :class:`StorageConfig`,
:func:`parse_storage`, :class:`Priority`, :class:`OutboxRow`. Everything else in
the package is an implementation detail.
"""

from edge_agent.buffer.config import RawMode, StorageConfig, SyncMode, parse_storage
from edge_agent.buffer.outbox import MessageKind, OutboxRow, Priority
from edge_agent.buffer.store import Buffer, Outgoing

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
