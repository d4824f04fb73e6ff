"""Answers to stop events: acknowledgements and arrivals on site, validated and kept.

A response-time term (spec §3.13) needs, per breakdown, when the provider
acknowledged it and when a technician arrived. The PLC does not know (spec §1.5),
so they come from the site: an MQTT command, a PLC tag, or ``edge-agent ack`` on
the gateway. :class:`Answers` is the one place they land, whatever the path:

* it knows the stop events the agent published (:meth:`Answers.seen`, their last
  published form, kept ``keep_s`` after their end), so an answer must name a real
  ``event_id``;
* :meth:`Answers.answer` validates one answer (a known event, an instant not before
  the stop's start nor in the future) and returns the stop event's revision to
  publish (``acknowledged_at`` / ``arrived_at``), or why it was rejected;
* :func:`parse_command` reads an MQTT command payload strictly.

A later answer for the same event replaces the earlier one (answers are events with
their own time, revisable like stop events). Pure: no I/O; the clock is passed in.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent.kpi.timeutil import format_instant, parse_instant

#: How far in the future an answer's instant may be (clock skew between gateway and sender).
FUTURE_TOLERANCE_MS = 60_000
#: Largest accepted MQTT command payload.
MAX_COMMAND_BYTES = 4096


class AnswerKind(enum.Enum):
    """What an answer says: acknowledged (``ack``) or technician on site (``arrive``)."""

    ACK = "ack"
    ARRIVE = "arrive"

    @property
    def field(self) -> str:
        """The stop event's field this answer sets."""
        return "acknowledged_at" if self is AnswerKind.ACK else "arrived_at"


@dataclass(frozen=True, slots=True)
class Command:
    """One valid answer command."""

    kind: AnswerKind
    event_id: str
    at_ms: int | None


class CommandError(ValueError):
    """A command that is not valid; the message says why (no payload text in it)."""


def parse_command(body: bytes) -> Command:
    """An MQTT command payload: ``{"command": "ack"|"arrive", "event_id": ..., "at": ...?}``.

    ``at`` is optional (ISO 8601 with ``Z`` or an offset; default: when received).

    Raises:
        CommandError: for anything else (too long, not JSON, unknown key or command).
    """
    if len(body) > MAX_COMMAND_BYTES:
        raise CommandError(f"payload over {MAX_COMMAND_BYTES} bytes")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CommandError("payload is not JSON") from None
    if not isinstance(doc, dict):
        raise CommandError("payload is not a JSON object")
    unknown = sorted(set(doc) - {"command", "event_id", "at"})
    if unknown:
        raise CommandError(f"unknown key(s) {unknown}")
    try:
        kind = AnswerKind(doc.get("command"))
    except ValueError:
        raise CommandError("command must be 'ack' or 'arrive'") from None
    event_id = doc.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise CommandError("event_id must be a non-empty string")
    at = doc.get("at")
    if at is None:
        return Command(kind, event_id, None)
    if not isinstance(at, str):
        raise CommandError("at must be an ISO 8601 instant")
    try:
        return Command(kind, event_id, parse_instant(at))
    except ValueError:
        raise CommandError("at must be an ISO 8601 instant with 'Z' or an offset") from None


@dataclass(slots=True)
class _Stop:
    machine: str
    start_ms: int
    end_ms: int | None
    data: dict[str, Any]
    acknowledged_ms: int | None = None
    arrived_ms: int | None = None


class Answers:
    """The published stop events and their answers.

    Args:
        keep_s: How long after its end a stop event can still be answered.
    """

    def __init__(self, *, keep_s: float = 7 * 86400.0) -> None:
        self.keep_ms = round(keep_s * 1000)
        self._stops: dict[str, _Stop] = {}

    def __len__(self) -> int:
        return len(self._stops)

    def seen(self, data: dict[str, Any]) -> dict[str, Any]:
        """Record a stop event update about to be published; returns it with its answers."""
        event_id = str(data["event_id"])
        start_ms = _ms(data["start"])
        end = data.get("end")
        entry = self._stops.get(event_id)
        if entry is None:
            entry = self._stops[event_id] = _Stop(str(data["machine"]), start_ms, None, data)
        entry.end_ms = None if end is None else _ms(end)
        out = dict(data)
        out["acknowledged_at"] = _iso(entry.acknowledged_ms)
        out["arrived_at"] = _iso(entry.arrived_ms)
        entry.data = out
        return out

    def open_stop(self, machine: str) -> str | None:
        """The event id of ``machine``'s stop in progress (its latest without an end)."""
        open_ones = [
            (s.start_ms, eid)
            for eid, s in self._stops.items()
            if s.machine == machine and s.end_ms is None
        ]
        return max(open_ones)[1] if open_ones else None

    def answer(self, kind: AnswerKind, event_id: str, at_ms: int, now_ms: int) -> dict[str, Any]:
        """Apply one answer; returns the stop event's revision to publish.

        Raises:
            CommandError: unknown event id, or an instant before the stop or in the future.
        """
        entry = self._stops.get(event_id)
        if entry is None:
            raise CommandError("no such stop event (unknown event_id)")
        if at_ms < entry.start_ms:
            raise CommandError("the answer is before the stop started")
        if at_ms > now_ms + FUTURE_TOLERANCE_MS:
            raise CommandError("the answer is in the future")
        if kind is AnswerKind.ACK:
            entry.acknowledged_ms = at_ms
        else:
            entry.arrived_ms = at_ms
        entry.data = dict(entry.data)
        entry.data[kind.field] = format_instant(at_ms)
        return entry.data

    def times(self) -> dict[str, tuple[int | None, int | None]]:
        """``event_id -> (acknowledged_ms, arrived_ms)`` of every answered stop."""
        return {
            eid: (s.acknowledged_ms, s.arrived_ms)
            for eid, s in self._stops.items()
            if s.acknowledged_ms is not None or s.arrived_ms is not None
        }

    def prune(self, now_ms: int) -> None:
        """Forget stop events that ended more than ``keep_s`` ago."""
        old = [
            eid
            for eid, s in self._stops.items()
            if s.end_ms is not None and s.end_ms < now_ms - self.keep_ms
        ]
        for eid in old:
            del self._stops[eid]

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot."""
        return {
            eid: {
                "machine": s.machine,
                "start_ms": s.start_ms,
                "end_ms": s.end_ms,
                "data": s.data,
                "ack": s.acknowledged_ms,
                "arrive": s.arrived_ms,
            }
            for eid, s in self._stops.items()
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`to_state` output."""
        self._stops = {
            eid: _Stop(s["machine"], s["start_ms"], s["end_ms"], s["data"], s["ack"], s["arrive"])
            for eid, s in state.items()
        }


def _ms(value: Any) -> int:
    """An instant of a stop event: ISO 8601 text or epoch seconds."""
    return parse_instant(value) if isinstance(value, str) else round(float(value) * 1000)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else format_instant(ms)
