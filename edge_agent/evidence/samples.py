"""Where an evidence bundle gets the samples the calculator used (the seam for the journal).

A bundle carries, per machine, the samples in the ``edge-agent replay`` input
format (one :func:`~edge_agent.kpi.sample_to_json` object per line), and says in
its manifest for which span they are complete and whether they are **exact**
(what the calculator was fed, sample for sample) or **approximate**.

:class:`SampleSource` is the seam. Two sources exist today:

* :class:`JournalSamples`: the buffer's sample journal (:mod:`edge_agent.buffer.journal`),
  exactly what the calculator was fed, including the "unknown" samples the runtime
  adds at a restart or a stop: the same rows ``edge-agent export --kind samples``
  writes for ``edge-agent replay``, so export, replay and bundles share one source;
* :class:`ListSamples`: samples given by the caller (tests, benchmarks);
* :class:`FirstOf`: the first source that has samples of a machine (the CLI uses the
  journal, then the readings for machines journaled by no version of the agent);
* :class:`ReadingsSamples`: rebuilt from the raw readings in the buffer with the
  machine's :class:`~edge_agent.machines.SampleBuilder`, the way the runtime builds
  them. Approximate: raw readings are kept for ``readings_retention_h`` only (a
  week by default), the wall-clock sync state is not stored with them, and the
  samples the runtime synthesises at a stop or restart are not readings. A
  verifier reports a recomputation from approximate samples as a note, never as
  a problem.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from edge_agent.kpi.sample import Sample
from edge_agent.model import Quality, Reading


@dataclass(frozen=True, slots=True)
class SampleSet:
    """Samples of one machine (an iterable, read once: a month at 1 Hz is never in memory)."""

    samples: Iterable[Sample]
    start: float  # complete for [start, end)
    end: float
    exact: bool
    source: str


class SampleSource(Protocol):
    """Gives a machine's samples for a time span (with the history needed before it)."""

    def samples(self, machine: str, start: float, end: float) -> SampleSet | None:
        """Samples for ``[start, end)``, or None when this source has none for ``machine``."""


class ListSamples:
    """Exact samples given per machine (arrival order), complete for the span given."""

    def __init__(self, by_machine: Mapping[str, Sequence[Sample]], *, source: str = "journal"):
        self._by_machine = {m: list(s) for m, s in by_machine.items()}
        self._source = source

    def samples(self, machine: str, start: float, end: float) -> SampleSet | None:
        """All given samples of ``machine`` (the verifier reads only what it needs)."""
        items = self._by_machine.get(machine)
        if items is None:
            return None
        return SampleSet(items, start, end, exact=True, source=self._source)


class JournalSamples:
    """Exact samples from the buffer's sample journal (see the module docstring).

    Args:
        con: A read-only connection to the buffer.
        margin_s: Samples this far before ``start`` and after ``end`` are included
            (the state and counters at the edges depend on them; export uses the same).
    """

    def __init__(self, con: sqlite3.Connection, *, margin_s: float = 3600.0) -> None:
        self._con = con
        self._margin = margin_s

    def samples(self, machine: str, start: float, end: float) -> SampleSet | None:
        """The journaled samples of ``machine`` (order fed), or None when it has none."""
        import json

        from edge_agent.buffer import journal
        from edge_agent.kpi.sample import sample_from_json

        try:
            first = journal.first_t(self._con, machine)
        except sqlite3.OperationalError:  # a buffer older than the journal
            return None
        if first is None:
            return None
        rows = journal.read(self._con, machine, start - self._margin, end + self._margin)
        items = (sample_from_json(json.loads(data)) for _t, data in rows)
        return SampleSet(items, max(start, first), end, exact=True, source="journal")


class FirstOf:
    """The samples of the first source that has some for the machine."""

    def __init__(self, *sources: SampleSource | None) -> None:
        self._sources = [s for s in sources if s is not None]

    def samples(self, machine: str, start: float, end: float) -> SampleSet | None:
        """The first source's answer that is not None."""
        for source in self._sources:
            got = source.samples(machine, start, end)
            if got is not None:
                return got
        return None


class ReadingsSamples:
    """Samples rebuilt from raw readings (approximate, see the module docstring).

    Args:
        con: A read-only connection to the buffer.
        machines: Machine configs by name (their signal mapping builds the samples).
        lookback_s: History read before ``start`` so the state at ``start`` is known.
    """

    def __init__(
        self, con: sqlite3.Connection, machines: Mapping[str, object], *, lookback_s: float = 3600
    ) -> None:
        self._con = con
        self._machines = machines
        self._lookback = lookback_s

    def _readings(self, devices: Sequence[str], start: float, end: float) -> Iterator[Reading]:
        """Rows of databases written before schema 5, then frames, in arrival order."""
        from edge_agent.buffer import blocks
        from edge_agent.buffer.schema import QUALITY_NAMES

        marks = ",".join("?" * len(devices))
        cur = self._con.execute(
            "SELECT r.ts, s.device, s.tag, r.value, r.quality, r.mono FROM readings r "  # noqa: S608
            f"JOIN series s ON s.id = r.series WHERE s.device IN ({marks}) "
            "AND r.ts >= ? AND r.ts < ? ORDER BY r.id",
            (*devices, start, end),
        )
        for ts, device, tag, value, quality, mono in cur:
            q = Quality(QUALITY_NAMES.get(int(quality), "bad"))
            yield Reading(device, tag, value, float(ts), float(mono), q)
        for stored in blocks.read(self._con, start, end, devices=list(devices), order="id"):
            yield stored.reading()

    def samples(self, machine: str, start: float, end: float) -> SampleSet | None:
        """Replays the readings of the machine's devices through its SampleBuilder."""
        from edge_agent.machines import MachineConfig, SampleBuilder

        config = self._machines.get(machine)
        if not isinstance(config, MachineConfig):
            return None
        builder = SampleBuilder(config)
        out: list[Sample] = []
        batch: list[Reading] = []
        first: float | None = None

        def flush() -> None:
            if batch and builder.update(batch):
                t = max(r.ts for r in batch)
                mono = max(r.mono for r in batch)
                out.append(builder.sample(t=t, mono=mono, synced=None))

        for reading in self._readings(config.devices, start - self._lookback, end):
            if first is None:
                first = reading.ts
            # One driver batch = one device's readings sharing a read time.
            if batch and (batch[0].device, batch[0].ts) != (reading.device, reading.ts):
                flush()
                batch = []
            batch.append(reading)
        flush()
        if first is None:
            return SampleSet([], start, start, exact=False, source="readings")
        return SampleSet(out, max(start, first), end, exact=False, source="readings")
