"""The versioned JSON envelope of every message the agent publishes.

Format (version 2, documented in ``docs/pipeline.md``, schemas in ``schemas/``)::

    {"v": 2, "kind": "kpi", "agent": "press-gw-01", "epoch": "5f3a9c1e", "seq": 1234,
     "ts": "2026-11-26T21:00:00.123Z", "data": {...}}

* ``epoch``: the sequence-numbering epoch of the agent's buffer (8 hex digits). It
  changes only when numbering had to restart (the database and its sequence ledger
  were both lost), never on a normal restart.
* ``seq``: the outbox sequence number, unique and increasing per ``(agent, epoch)``
  and never reused. Consumers de-duplicate on ``(agent, epoch, seq)`` (QoS 1 is
  at-least-once) and detect gaps; a ``gap`` message explains numbers that will
  never arrive.
* ``ts``: when the message was created (enqueued), UTC, millisecond ISO 8601.
* ``data``: kind-specific; its JSON text is copied verbatim from the outbox row,
  so a re-sent message is byte-identical to the first attempt.
* ``proof`` (signed kinds only, see ``docs/evidence.md``): ``{"kid", "prev", "sig"}``,
  also stored with the row when it was enqueued, so it never changes on a re-send.

Status (birth / last will) messages carry no ``seq``: they describe the
connection, not the data stream, and are retained. Pure code, no I/O.
"""

from __future__ import annotations

import functools
import json
import time

from edge_agent.buffer.outbox import OutboxRow

ENVELOPE_VERSION = 2


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


def envelope(row: OutboxRow, agent: str, epoch: str) -> bytes:
    """The envelope for an outbox row (``row.data`` and ``row.proof`` are already JSON text)."""
    proof = f',"proof":{row.proof}' if row.proof is not None else ""
    return (
        f'{{"v":{ENVELOPE_VERSION},"kind":{_quoted(row.kind)},"agent":{_quoted(agent)},'
        f'"epoch":{_quoted(epoch)},"seq":{row.seq},"ts":"{iso_utc(row.created)}",'
        f'"data":{row.data}{proof}}}'
    ).encode()


@functools.lru_cache(maxsize=256)
def _quoted(text: str) -> str:
    return json.dumps(text)


def status(agent: str, state: str, ts: float, *, site: str, epoch: str) -> bytes:
    """A status message: ``state`` is ``online`` or ``offline``."""
    body = {
        "v": ENVELOPE_VERSION,
        "kind": "status",
        "agent": agent,
        "epoch": epoch,
        "ts": iso_utc(ts),
        "data": {"state": state, "site": site},
    }
    return json.dumps(body, separators=(",", ":")).encode()
