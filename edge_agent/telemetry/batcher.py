"""Per-device batching of telemetry into one compact message per publish interval.

A :class:`DeviceBatch` collects what the per-tag state machines of
:mod:`edge_agent.telemetry.engine` decided to publish for one device: the
:class:`~edge_agent.model.Reading` objects themselves (kept by reference, so
the per-reading path allocates nothing) and closed aggregate windows. On
:meth:`DeviceBatch.build` it encodes them into the ``data`` part of one
telemetry message and empties itself. It does no I/O, no JSON serialisation
and knows nothing about the MQTT envelope (``v``, ``kind``, ``agent``, ``seq``,
``ts`` belong to the pipeline's outbox).

The ``data`` format (validated by ``schemas/telemetry.schema.json``)::

    {"device": "press1",
     "t0": 1764190800,
     "samples": {"temp": [[512, 71.5], [1512, null, "bad", "timeout"]]},
     "aggregates": {"vib": [{"start": 1764190740.0, "end": 1764190800.0,
                             "count": 600, "good_ratio": 1.0, "last": 0.31,
                             "min": 0.1, "max": 0.6, "mean": 0.29}]}}

* ``t0``: whole UNIX seconds (UTC); each sample's first element is its
  reading time in integer milliseconds relative to ``t0`` (may be negative
  after a backwards clock step). Present only with ``samples``.
* A sample is ``[dt_ms, value]`` for good quality, ``[dt_ms, value, quality]``
  or ``[dt_ms, value, quality, reason]`` otherwise. Non-finite floats are sent
  as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` so the payload is
  strict JSON. One small array per sample keeps the common case (one sample
  per tag per message: poll interval = publish interval) at one container
  per value, fewer than a column-wise layout would need.
* ``samples`` and ``aggregates`` are omitted when empty; tags appear in
  config order, each tag's entries in reading order.

Guarantees: every reading handed to a sink appears in exactly one message;
``build`` returns ``None`` when nothing is pending (no empty messages).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from edge_agent.model import Quality, Reading, Value

__all__ = ["DeviceBatch", "TelemetryMessage", "encode_value"]

_GOOD = Quality.GOOD


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TelemetryMessage:
    """One device's telemetry for one publish interval.

    Attributes:
        device: Device name (``devices.<name>``).
        ts: Time the message was built (the ``now`` given to the engine).
        values: Number of entries carried (samples plus aggregate windows).
        data: The JSON-ready ``data`` part (see the module docstring); the
            pipeline wraps it in its envelope. Do not mutate.
    """

    device: str
    ts: float
    values: int
    data: dict[str, Any]


def _nonfinite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def encode_value(value: Value) -> Any:
    """Make a reading value strict-JSON safe (non-finite floats become strings)."""
    if type(value) is float:
        return value if value - value == 0.0 else _nonfinite(value)
    if type(value) is list:
        return [encode_value(item) for item in value]
    return value


class DeviceBatch:
    """What one device has to publish since the last message.

    Args:
        device: Device name.
        sample_tags: Tags whose readings are published as samples (``every``
            and ``change``), in config order.
    """

    __slots__ = ("_aggregates", "_samples", "device")

    def __init__(self, device: str, sample_tags: Iterable[str]) -> None:
        self.device = device
        self._samples: dict[str, list[Reading]] = {tag: [] for tag in sample_tags}
        self._aggregates: dict[str, list[dict[str, Any]]] = {}

    def sink(self, tag: str) -> Callable[[Reading], None]:
        """The callable that queues one reading of ``tag`` for publication.

        It is the bound ``append`` of a list that is emptied in place, never
        replaced, so it stays valid for the batch's lifetime.
        """
        return self._samples[tag].append

    def add_aggregate(self, tag: str, summary: dict[str, Any]) -> None:
        """Queue one closed aggregate window of ``tag``."""
        self._aggregates.setdefault(tag, []).append(summary)

    @property
    def pending_values(self) -> int:
        """Samples plus aggregate windows waiting for the next message."""
        return sum(map(len, self._samples.values())) + sum(map(len, self._aggregates.values()))

    def build(self, now: float) -> TelemetryMessage | None:
        """Encode and remove everything pending; ``None`` when nothing is."""
        firsts = [lst[0].ts for lst in self._samples.values() if lst]
        if not firsts and not self._aggregates:
            return None
        data: dict[str, Any] = {"device": self.device}
        count = 0
        if firsts:
            t0 = math.floor(min(firsts))
            data["t0"] = t0
            data["samples"] = samples = self._encode_samples(t0)
            count += sum(map(len, samples.values()))
        if self._aggregates:
            data["aggregates"] = self._aggregates
            count += sum(map(len, self._aggregates.values()))
            self._aggregates = {}
        return TelemetryMessage(device=self.device, ts=now, values=count, data=data)

    def _encode_samples(self, t0: int) -> dict[str, list[list[Any]]]:
        """Encode and empty every tag's pending readings: the hot path of message building.

        One loop over all tags, without a call per tag, because the common case
        is one sample per tag per message.
        """
        samples: dict[str, list[list[Any]]] = {}
        good = _GOOD
        # Readings of one poll share their ts: compute each distinct offset once.
        last_ts: float | None = None
        dt = 0
        for tag, readings in self._samples.items():
            if not readings:
                continue
            out: list[list[Any]] = []
            append = out.append
            for r in readings:
                value = r.value
                kind = type(value)
                if kind is float:
                    if value - value != 0.0:  # type: ignore[operator]  # NaN or +-inf
                        value = _nonfinite(value)  # type: ignore[arg-type]
                elif kind is list:
                    value = encode_value(value)
                ts = r.ts
                if ts != last_ts:
                    last_ts = ts
                    dt = round((ts - t0) * 1000.0)
                if r.quality is good:
                    append([dt, value])
                elif r.reason:
                    append([dt, value, r.quality.value, r.reason])
                else:
                    append([dt, value, r.quality.value])
            samples[tag] = out
            readings.clear()
        return samples
