"""The event catalogue: everything that can go wrong or recover, counted and logged once.

Each :class:`Event` is one counter in health telemetry (``data.events.counters``,
every event always present) and one log line with fixed field names. Two kinds:

* **conditions** (a device is down, the outbox is full, the clock is not
  synchronised ...) are entered and left: :meth:`EventLog.enter` counts and logs
  once when the condition starts (further entries while it lasts add the items
  they lost, for counters of items), and
  :meth:`EventLog.leave` logs once when it ends, with how long it lasted. A
  condition may hold per *subject* (a device, a machine, a stage). Conditions in
  force are listed in ``data.events.active``;
* **occurrences** (a reload accepted or rejected, a machine reconfigured) count
  and log each time.

What a counter counts is stated per event (:attr:`EventSpec.unit`): times the
condition started, or items lost. The catalogue is the one list: the health
schema enumerates exactly these names (a test checks it) and ``docs/operations.md``
explains them. Log lines follow the agent's style: a capitalised sentence, then
``key=value`` context. Nothing here does I/O besides logging; the clock is injectable.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("edge_agent.events")


@dataclass(frozen=True, slots=True)
class EventSpec:
    """How one event is counted and logged."""

    unit: str  # what the counter counts: "times" or the items lost
    enter: str  # log sentence when the condition starts (or of the occurrence)
    leave: str | None = None  # log sentence when it ends; None for occurrences
    subject: str | None = None  # context key naming the subject (device, machine ...)
    level: int = logging.WARNING  # level of the enter line; leave lines are INFO
    # False when another part already writes the lines (run_link logs every device's
    # transitions with its link and reason): counted here, logged there.
    logged: bool = True


class Event(str, enum.Enum):
    """The closed set of events; the value is the counter's name in health telemetry."""

    DEVICE_DOWN = "device_down"
    QUEUE_FULL = "queue_full"
    BUFFER_DROPPED = "buffer_dropped"
    TELEMETRY_OVERFLOW = "telemetry_overflow"
    TELEMETRY_LATE = "telemetry_late"
    OUTBOX_FULL = "outbox_full"
    OUTBOX_DROPPED = "outbox_dropped"
    INTERVALS_DROPPED = "intervals_dropped"
    HELD_LOST = "held_lost"
    BUDGET_EVICTION = "budget_eviction"
    CLOCK_UNSYNCED = "clock_unsynced"
    FLUSH_FAILED = "flush_failed"
    STATUS_WRITE_FAILED = "status_write_failed"
    RELOAD_ACCEPTED = "reload_accepted"
    RELOAD_REJECTED = "reload_rejected"
    MACHINE_RECONFIGURED = "machine_reconfigured"
    COMMAND_REJECTED = "command_rejected"
    STOP_ANSWERED = "stop_answered"
    CONTRACT_ALERT = "contract_alert"

    @property
    def spec(self) -> EventSpec:
        """How this event is counted and logged."""
        return CATALOGUE[self]


CATALOGUE: dict[Event, EventSpec] = {
    Event.DEVICE_DOWN: EventSpec(
        "times",
        "Device comms lost, tags bad, retrying",
        "Device comms restored",
        subject="device",
        logged=False,
    ),
    Event.QUEUE_FULL: EventSpec(
        "readings dropped", "Ingest queue full, dropping readings", "Ingest queue has room again"
    ),
    Event.BUFFER_DROPPED: EventSpec(
        "rows dropped", "Buffer dropping rows", "Buffer stopped dropping rows"
    ),
    Event.TELEMETRY_OVERFLOW: EventSpec(
        "readings dropped",
        "Telemetry backlog full, dropping readings",
        "Telemetry backlog has room again",
    ),
    Event.TELEMETRY_LATE: EventSpec(
        "readings dropped",
        "Telemetry readings late for their aggregate window, dropped",
        "Telemetry readings on time again",
    ),
    Event.OUTBOX_FULL: EventSpec(
        "times",
        "Outbox full, keeping messages in memory",
        "Outbox writable again",
        level=logging.ERROR,
    ),
    Event.OUTBOX_DROPPED: EventSpec(
        "messages dropped",
        "Messages held for the outbox over the bound, dropping the least important",
        "Messages no longer dropped",
    ),
    Event.INTERVALS_DROPPED: EventSpec(
        "intervals dropped",
        "State intervals held for the outbox over the bound, dropping the oldest",
        "State intervals no longer dropped",
    ),
    Event.HELD_LOST: EventSpec(
        "messages lost",
        "Messages held in memory for the outbox were lost when the agent last ended uncleanly",
        level=logging.ERROR,
    ),
    Event.BUDGET_EVICTION: EventSpec(
        "rows evicted", "Disk budget reached, evicting rows", "Disk budget eviction stopped"
    ),
    Event.CLOCK_UNSYNCED: EventSpec(
        "times", "Wall clock not synchronised", "Wall clock synchronised"
    ),
    Event.FLUSH_FAILED: EventSpec(
        "times",
        "Could not store records or messages, retrying",
        "Storing records and messages again",
        subject="stage",
        level=logging.ERROR,
    ),
    Event.STATUS_WRITE_FAILED: EventSpec(
        "times", "Could not write status file", "Status file written again", level=logging.ERROR
    ),
    Event.RELOAD_ACCEPTED: EventSpec("times", "Configuration reloaded", level=logging.INFO),
    Event.RELOAD_REJECTED: EventSpec(
        "times", "Reload rejected, keeping the running configuration", level=logging.ERROR
    ),
    Event.MACHINE_RECONFIGURED: EventSpec(
        "times", "Machine reconfigured, windows closed", subject="machine"
    ),
    Event.COMMAND_REJECTED: EventSpec(
        "commands rejected",
        "Command rejected, nothing changed",
        "Commands accepted again",
        subject="source",
    ),
    Event.STOP_ANSWERED: EventSpec(
        "times", "Stop event answered", subject="event_id", level=logging.INFO
    ),
    Event.CONTRACT_ALERT: EventSpec("times", "Contract alert", subject="contract"),
}


def _fmt(context: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v!r}" if isinstance(v, str) and (" " in v or not v) else f"{k}={v}"
        for k, v in context.items()
    )


class EventLog:
    """Counters and conditions in force, for one agent.

    Args:
        clock: Wall clock (UNIX seconds) for ``since`` and durations; injectable.
        logger: Where the lines go.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, logger: logging.Logger = log
    ) -> None:
        self._clock = clock
        self._log = logger
        self.counters: dict[Event, int] = dict.fromkeys(Event, 0)
        self._active: dict[tuple[Event, str], float] = {}

    def enter(
        self,
        event: Event,
        subject: str = "",
        *,
        count: int = 1,
        exc_info: BaseException | None = None,
        **context: Any,
    ) -> bool:
        """Count ``count`` and, if the condition was not in force, log its start.

        Returns:
            True when the condition started now.
        """
        key = (event, subject)
        spec = event.spec
        if key in self._active:
            if spec.unit != "times":
                self.counters[event] += count
            return False
        self.counters[event] += count
        self._active[key] = self._clock()
        self._write(spec.level, spec.enter, spec, subject, context, exc_info)
        return True

    def leave(self, event: Event, subject: str = "", **context: Any) -> bool:
        """Log the end of a condition in force (nothing if it was not).

        Returns:
            True when the condition ended now.
        """
        since = self._active.pop((event, subject), None)
        if since is None:
            return False
        spec = event.spec
        context["duration_s"] = round(self._clock() - since, 3)
        self._write(logging.INFO, spec.leave or spec.enter, spec, subject, context, None)
        return True

    def occurred(
        self, event: Event, subject: str = "", *, count: int = 1, detail: str = "", **context: Any
    ) -> None:
        """Count ``count`` and log one occurrence; ``detail`` (several lines) follows the line."""
        self.counters[event] += count
        spec = event.spec
        self._write(spec.level, spec.enter, spec, subject, context, None, detail)

    def active(self, event: Event, subject: str = "") -> bool:
        """Whether a condition is in force."""
        return (event, subject) in self._active

    def snapshot(self) -> dict[str, Any]:
        """``data.events`` of health telemetry: every counter, and the conditions in force."""
        return {
            "counters": {e.value: n for e, n in self.counters.items()},
            "active": [
                {"event": e.value, "subject": s or None, "since": since}
                for (e, s), since in self._active.items()
            ],
        }

    def _write(
        self,
        level: int,
        sentence: str,
        spec: EventSpec,
        subject: str,
        context: dict[str, Any],
        exc_info: BaseException | None,
        detail: str = "",
    ) -> None:
        if not spec.logged:
            return
        fields = {spec.subject: subject} if spec.subject and subject else {}
        fields.update(context)
        text = f"{sentence} {_fmt(fields)}" if fields else sentence
        if detail:
            text = f"{text}:\n{detail}"
        self._log.log(level, "%s", text, exc_info=exc_info)
