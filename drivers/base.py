"""The driver contract, and the one supervisor that runs every link.

A *link* is one physical connection (a TCP endpoint, a serial port, an OPC-UA
session) shared by every device configured on it. Each link is owned by one
asyncio task, so requests on it are serialised without locks. A link
implements :class:`Link`: ``connect``, ``poll`` (wait for and read what is
due) and ``close``. :func:`run_link` owns reconnection for all protocols the
same way: on :class:`~edge_agent.errors.DeviceUnavailable` it marks every
device of the link down (a comms-lost event, bad readings), closes, backs off
with jitter and reconnects; comms-up is emitted on the first good poll after
every (re)connect, including the very first one.

Per-device trouble behind a healthy link (one dead unit id on a gateway) is
the link's own business: it reports it through :class:`PollResult.events`.
``run_link`` forwards a comms event only when it changes a device's state,
so the sink sees strictly alternating up/down per device.

"A value is known while its source is confirmed alive": a polling link
confirms a value by reading it again (a reading per poll); a
report-by-exception link (an OPC-UA subscription) reports only changes and
confirms the unchanged values with :class:`~edge_agent.model.Confirmation`
items in :attr:`PollResult.confirmations`, one per device and publish
response, and marks the values stale itself when its source stays silent
beyond its keepalive bound. ``run_link`` forwards confirmations after the
poll's readings, so a confirmation never precedes the changes it confirms.

Guarantees: ``run_link`` never returns except by cancellation (any other
exception from the link is handled like a lost link, its traceback logged at
DEBUG only), closes the link on the way out, and never polls while a previous poll is pending (one
task per link). :class:`GridClock` never drifts and never bunches ticks.

Size: just over 400 lines because it is the drivers' whole contract in one place: the
Link protocol, the poll result, the supervisor ``run_link`` and the grid clock it uses.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.backoff import Backoff as Backoff  # re-exported: the links' reconnect policy
from edge_agent.configkit import Table
from edge_agent.errors import DeviceUnavailable
from edge_agent.model import (
    CommsEvent,
    CommsState,
    Confirmation,
    Reading,
    ReadingSink,
    Value,
)

log = logging.getLogger("edge_agent.drivers")


class DeviceConfig(Protocol):
    """What every protocol's device config has in common."""

    @property
    def name(self) -> str:
        """Device name (``devices.<name>`` in the config)."""

    @property
    def protocol(self) -> str:
        """The ``protocol`` value that selected the driver."""

    @property
    def tag_names(self) -> tuple[str, ...]:
        """Names of the configured tags."""


@dataclass(slots=True)
class PollResult:
    """What one ``poll`` produced.

    Readings (one device per batch), comms events, and confirmations of unchanged
    values (report-by-exception links only).
    """

    batches: list[Sequence[Reading]] = field(default_factory=list)
    events: list[CommsEvent] = field(default_factory=list)
    confirmations: list[Confirmation] = field(default_factory=list)


class ConfirmedBy(str, enum.Enum):
    """What last confirmed a device's values (:attr:`DeviceDiagnostics.confirmed_by`)."""

    POLL = "poll"
    """Each poll reads every value again (Modbus, OPC-UA ``mode = "poll"``)."""
    CHANGE = "change"
    """A publish response that carried a change of one of the device's values."""
    KEEPALIVE = "keepalive"
    """A publish response (data for other devices, or a keepalive) without a change for
    the device: its flat values are confirmed, the link is alive."""
    LAPSED = "lapsed"
    """No publish response within the keepalive bound: the values are stale."""


@dataclass(slots=True)
class DeviceDiagnostics:
    """Per-device counters shown by ``edge-agent status`` and health telemetry.

    The comms state is not here: the agent keeps it from the comms events
    :func:`run_link` emits (one source of truth).
    """

    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    rtt_min_ms: float | None = None
    rtt_max_ms: float | None = None
    rtt_sum_ms: float = 0.0
    rtt_count: int = 0
    last_good_ts: float | None = None
    skipped_cycles: int = 0
    confirmed_by: ConfirmedBy = ConfirmedBy.POLL
    last_confirmed_ts: float | None = None
    confirmed_until_ts: float | None = None
    last_change_ts: float | None = None
    keepalives: int = 0

    def record_rtt(self, ms: float) -> None:
        """Add one round-trip time sample."""
        self.rtt_count += 1
        self.rtt_sum_ms += ms
        self.rtt_min_ms = ms if self.rtt_min_ms is None else min(self.rtt_min_ms, ms)
        self.rtt_max_ms = ms if self.rtt_max_ms is None else max(self.rtt_max_ms, ms)

    def record_error(self, kind: str) -> None:
        """Count one error of a kind (timeout, illegal_address, decode, ...)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def confirm(self, ts: float, *, changed: bool, until: float) -> None:
        """A publish response confirmed the device's values at ``ts`` (report by exception)."""
        self.last_good_ts = self.last_confirmed_ts = ts
        self.confirmed_until_ts = until
        if changed:
            self.confirmed_by = ConfirmedBy.CHANGE
        else:
            self.confirmed_by = ConfirmedBy.KEEPALIVE
            self.keepalives += 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view.

        ``confirmed_by`` tells a flat line from a dead link: ``poll`` (every poll
        re-reads the values; the last good poll is the last confirmation), ``change``
        or ``keepalive`` (the last publish response of a subscription carried a change
        for this device, or only confirmed its unchanged values), ``lapsed`` (no
        publish response within the keepalive bound: values stale).
        """
        avg = self.rtt_sum_ms / self.rtt_count if self.rtt_count else None
        polled = self.confirmed_by is ConfirmedBy.POLL
        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "rtt_ms": {"min": self.rtt_min_ms, "avg": avg, "max": self.rtt_max_ms},
            "last_good_ts": self.last_good_ts,
            "skipped_cycles": self.skipped_cycles,
            "confirmed_by": self.confirmed_by.value,
            "last_confirmed_ts": self.last_good_ts if polled else self.last_confirmed_ts,
            "confirmed_until_ts": self.confirmed_until_ts,
            "last_change_ts": self.last_change_ts,
            "keepalives": self.keepalives,
        }


class Link(Protocol):
    """One physical connection and the devices on it."""

    @property
    def name(self) -> str:
        """Human name of the link (endpoint or port), for logs."""

    @property
    def device_names(self) -> tuple[str, ...]:
        """Devices served by this link."""

    async def connect(self) -> None:
        """Open the connection. Raise DeviceUnavailable when it cannot be opened."""

    async def poll(self) -> PollResult:
        """Wait until something is due, read it, return readings and events.

        Raise DeviceUnavailable when the link itself is lost.
        """

    async def close(self) -> None:
        """Close the connection; never raises."""

    def diagnostics(self) -> Mapping[str, DeviceDiagnostics]:
        """Per-device diagnostics."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """Outcome of test-reading one configured tag once (``check-config --probe``).

    Attributes:
        device: Device name.
        tag: Tag name.
        ok: Whether the tag was read and decoded.
        value: The decoded value when ``ok``.
        reason: Why not ``ok`` (``timeout``, ``illegal address``, ``decode error: ...``).
    """

    device: str
    tag: str
    ok: bool
    value: Value = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """Registry entry for one ``protocol`` value.

    ``probe_devices`` (optional) connects to every given device and reads each
    tag once; ``check-config --probe`` prints its results. ``check_devices``
    (optional, no I/O) validates what one device table cannot see alone, such
    as devices sharing a serial port with different line settings; it returns
    ``(dotted key path, message)`` pairs for the loader to report.
    """

    protocol: str
    parse_device: Callable[[str, Table], DeviceConfig]
    build_links: Callable[[Sequence[DeviceConfig]], list[Link]]
    describe_plan: Callable[[Sequence[DeviceConfig]], str] | None = None
    probe_devices: Callable[[Sequence[DeviceConfig]], Awaitable[list[ProbeResult]]] | None = None
    check_devices: Callable[[Sequence[DeviceConfig]], list[tuple[str, str]]] | None = None


class GridClock:
    """Fixed-grid schedule: ticks at ``origin + k * interval`` forever, without drift.

    When the caller falls behind, missed ticks are skipped and counted, never
    bunched: after a 1 s poll that took 3.5 s, the overdue tick (3 s) runs once,
    at once, two ticks are counted as skipped, and the next run is at 4 s.
    """

    def __init__(self, interval_s: float, *, now: float | None = None) -> None:
        if interval_s <= 0:
            raise ValueError("interval must be > 0")
        self.interval_s = interval_s
        start = time.monotonic() if now is None else now
        self.origin = start
        self.k = 0
        self.skipped = 0

    def next_due(self) -> float:
        """Monotonic time of the next tick."""
        return self.origin + self.k * self.interval_s

    def advance(self, now: float) -> int:
        """Move past ``now``; return how many ticks were skipped since the last one run."""
        k_now = int((now - self.origin) // self.interval_s)
        skipped = max(0, k_now - self.k)
        self.skipped += skipped
        self.k = k_now + 1
        return skipped


def bad_batch(device: str, tags: Sequence[str], reason: str) -> list[Reading]:
    """Readings with quality bad for every tag of a device (comms loss)."""
    from edge_agent.model import Quality

    ts, mono = time.time(), time.monotonic()
    return [
        Reading(
            device=device, tag=t, value=None, ts=ts, mono=mono, quality=Quality.BAD, reason=reason
        )
        for t in tags
    ]


def _log_transition(
    link_name: str,
    event: CommsEvent,
    previous: CommsState | None,
    lost: dict[str, tuple[float, str]],
) -> None:
    """One log line for a device's comms transition (the catalogue is docs/logs.md)."""
    from edge_agent.logtext import duration

    device = event.device
    if event.state is CommsState.DOWN:
        lost[device] = (event.mono, event.reason or "unknown")
        if previous is None:
            log.warning(
                "Device not reachable, retrying device=%s link=%s reason=%s",
                device,
                link_name,
                event.reason,
            )
        else:
            log.warning(
                "Device comms lost, tags bad, retrying device=%s link=%s reason=%s",
                device,
                link_name,
                event.reason,
            )
        return
    was = lost.pop(device, None)
    if was is None:
        log.info("Device connected device=%s link=%s", device, link_name)
        return
    log.info(
        "Device comms restored device=%s link=%s down_for=%s reason_was=%s",
        device,
        link_name,
        duration(event.mono - was[0]),
        was[1],
    )


async def run_link(
    link: Link,
    sink: ReadingSink,
    *,
    tags_by_device: Mapping[str, Sequence[str]],
    backoff: Backoff | None = None,
) -> None:
    """Supervise one link until cancelled: connect, poll, and reconnect with backoff.

    Comms events reach the sink only on a change of state per device (run_link
    de-duplicates what the link reports and what it infers itself):

    * link lost (connect failed, ``DeviceUnavailable`` from ``poll``): every
      device not already down gets a DOWN event and one batch of bad readings;
    * first good poll after a (re)connect, including the very first one:
      every device the link did not itself report on in that poll gets UP;
    * events the link reports in ``PollResult.events`` (one unit id lost or
      restored behind a healthy link) are forwarded.

    Then the poll's batches, then its confirmations (in that order: a confirmation
    vouches for the values *after* the changes of the same publish response).

    Logs each device's transitions, one line each (:func:`_log_transition`):
    first contact, loss with its reason, recovery with how long it was down and
    why; a retry is never logged above debug level.
    """
    # Imported here, not at the top: loading a configuration imports this module (for
    # DriverSpec) and must not load asyncio with its ssl and executors (see
    # tests/test_lean_imports.py).
    import asyncio

    backoff = backoff or Backoff()
    connected = False
    fresh = True
    state: dict[str, CommsState] = {}
    lost: dict[str, tuple[float, str]] = {}  # device -> (monotonic time lost, reason)

    def transition(event: CommsEvent) -> bool:
        previous = state.get(event.device)
        if previous is event.state:
            return False
        state[event.device] = event.state
        sink.put_comms(event)
        _log_transition(link.name, event, previous, lost)
        return True

    try:
        while True:
            try:
                if not connected:
                    await link.connect()
                    connected = True
                    fresh = True
                result = await link.poll()
            except Exception as exc:
                if not isinstance(exc, DeviceUnavailable):
                    # A driver or library bug must not end the link's task (its devices
                    # would silently stop being polled): handled as a lost link, the
                    # traceback at DEBUG.
                    log.debug("Link failed unexpectedly link=%s", link.name, exc_info=True)
                reason = str(exc) or type(exc).__name__
                if not isinstance(exc, DeviceUnavailable):
                    reason = f"unexpected error: {type(exc).__name__}: {reason}"
                delay = backoff.next_delay()
                log.debug(
                    "Link down, retrying link=%s reason=%r delay_s=%.1f", link.name, reason, delay
                )
                now, mono = time.time(), time.monotonic()
                for dev in link.device_names:
                    if transition(
                        CommsEvent(
                            device=dev, state=CommsState.DOWN, ts=now, mono=mono, reason=reason
                        )
                    ):
                        sink.put_readings(bad_batch(dev, tags_by_device.get(dev, ()), reason))
                if connected:
                    await link.close()
                    connected = False
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            reported = {e.device for e in result.events}
            if fresh:
                fresh = False
                now, mono = time.time(), time.monotonic()
                for dev in link.device_names:
                    if dev not in reported:
                        transition(CommsEvent(device=dev, state=CommsState.UP, ts=now, mono=mono))
            for event in result.events:
                transition(event)
            for batch in result.batches:
                sink.put_readings(batch)
            for confirmation in result.confirmations:
                sink.put_confirmation(confirmation)
    finally:
        if connected:
            await link.close()
