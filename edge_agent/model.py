"""Small typed value objects that cross the pipeline's seams.

A :class:`Reading` leaves a driver, a :class:`CommsEvent` reports a link
state change, a :class:`Confirmation` says that a report-by-exception source
is alive and its last reported values still hold; all are immutable and carry
the wall-clock time the response arrived plus the monotonic time (for clock
correction on devices without an RTC). Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeAlias

Value: TypeAlias = (
    bool | int | float | str | list[bool] | list[int] | list[float] | list[str] | None
)


class Quality(str, enum.Enum):
    """Quality of one reading."""

    GOOD = "good"
    BAD = "bad"
    STALE = "stale"


class Reading(NamedTuple):
    """One tag value as the driver saw it.

    A named tuple rather than a frozen dataclass: a gateway creates one per polled
    value (12,500 a second at 100 devices x 125 registers), and a frozen dataclass
    costs about 2 us to build against 0.5 us for a tuple.

    Attributes:
        device: Device name from the config (``devices.<name>``).
        tag: Tag name within the device.
        value: Decoded, scaled value; ``None`` when quality is not good.
        ts: Wall-clock UNIX time (seconds, UTC) when the response arrived.
        mono: ``time.monotonic()`` when the response arrived.
        quality: Good, bad or stale.
        reason: Why the quality is not good (``timeout``, ``illegal address`` ...).
        source_ts: Timestamp the source gave the value (OPC-UA SourceTimestamp), if any.
    """

    device: str
    tag: str
    value: Value
    ts: float
    mono: float
    quality: Quality = Quality.GOOD
    reason: str = ""
    source_ts: float | None = None


class TagRef(str):
    """A reference to one tag as configs write it, ``"device.tag"``.

    A ``str`` (the text is the value: it keys tag values and appears in messages) that
    knows its parts. Build checked ones with :meth:`parse`.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> TagRef | None:
        """The reference, or None unless ``text`` is ``device.tag`` with both parts non-empty."""
        device, _, tag = text.partition(".")
        return cls(text) if device and tag else None

    @property
    def device(self) -> str:
        """The device name."""
        return self.partition(".")[0]

    @property
    def tag(self) -> str:
        """The tag name within the device."""
        return self.partition(".")[2]


class CommsState(str, enum.Enum):
    """Link state of a device as seen by the agent."""

    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"  # before the link reported anything


@dataclass(frozen=True, slots=True, kw_only=True)
class CommsEvent:
    """A device lost or regained communication. The calculator turns loss into unknown time."""

    device: str
    state: CommsState
    ts: float
    mono: float
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirmation:
    """The source of ``device`` spoke at ``ts``/``mono`` and reported no other change.

    Report-by-exception sources (OPC-UA subscriptions) send only changes, and prove they
    are alive with every publish response, data or keepalive. Each such response
    confirms that every value the device reported last is still its value: the value
    is known from its reading until the source stops confirming. It is not a new
    reading and is never stored as one. Polling links never send it: every poll is a
    reading of every value it covers.
    """

    device: str
    ts: float
    mono: float


class ReadingSink(Protocol):
    """Where drivers put what they read. Implementations never block the caller."""

    def put_readings(self, readings: Sequence[Reading]) -> None:
        """Accept one batch of readings (one device, one poll or notification burst)."""

    def put_comms(self, event: CommsEvent) -> None:
        """Accept a comms lost/restored event."""

    def put_confirmation(self, confirmation: Confirmation) -> None:
        """Accept a confirmation that a device's last reported values still hold."""
