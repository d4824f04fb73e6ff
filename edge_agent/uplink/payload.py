"""The versioned JSON envelope of every message the agent publishes.

Format (version 1, documented in ``docs/pipeline.md``, schemas in ``schemas/``)::

    {"v": 1, "kind": "kpi", "agent": "press-gw-01", "seq": 1234,
     "ts": "2026-11-26T21:00:00.123Z", "data": {...}}

* ``seq``: the outbox sequence number, unique and increasing per agent. Consumers
  de-duplicate on ``(agent, seq)`` (QoS 1 is at-least-once) and detect gaps.
* ``ts``: when the message was created (enqueued), UTC, millisecond ISO 8601.
* ``data``: kind-specific; its JSON text is copied verbatim from the outbox row,
  so a re-sent message is byte-identical to the first attempt.

Status (birth / last will) messages carry no ``seq``: they describe the
connection, not the data stream, and are retained. Pure code, no I/O.
"""

from __future__ import annotations

import functools
import json
import time

from edge_agent.buffer.outbox import OutboxRow

ENVELOPE_VERSION = 1


@functools.lru_cache(maxsize=64)
def _second(whole: int) -> str:
    # Backlogs are drained in bursts of messages from the same second: cache strftime.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def iso_utc(ts: float) -> str:
    """UNIX seconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    whole = int(ts // 1)
    millis = round((ts - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return f"{_second(whole)}.{millis:03d}Z"


def envelope(row: OutboxRow, agent: str) -> bytes:
    """The envelope for an outbox row (``row.data`` is already JSON text)."""
    return (
        f'{{"v":{ENVELOPE_VERSION},"kind":{_quoted(row.kind)},"agent":{_quoted(agent)},'
        f'"seq":{row.seq},"ts":"{iso_utc(row.created)}","data":{row.data}}}'
    ).encode()


@functools.lru_cache(maxsize=256)
def _quoted(text: str) -> str:
    return json.dumps(text)


def status(agent: str, state: str, ts: float, *, site: str) -> bytes:
    """A status message: ``state`` is ``online`` or ``offline``."""
    body = {
        "v": ENVELOPE_VERSION,
        "kind": "status",
        "agent": agent,
        "ts": iso_utc(ts),
        "data": {"state": state, "site": site},
    }
    return json.dumps(body, separators=(",", ":")).encode()
