"""Machines: which driver tags give the four KPI signals, and turning tag values into samples.

A machine maps tags to ``run`` (bool tag, bit of a register, or an
expression), ``fault`` (code register, or first set bit of an alarm word with
a code table), ``good`` and ``total`` (cumulative counters, or ``total`` as a
sum of counters). :class:`SampleBuilder` keeps the latest value of every tag a
machine reads and produces one calculator sample per update.

The one rule for every driver: **a value is known while its source is
confirmed alive.** A value is confirmed when it is read (each poll re-reads
it) and, for report-by-exception sources (OPC-UA subscriptions), by each
:class:`~edge_agent.model.Confirmation`, which the link sends for every
publish response, data or keepalive: a flat value on a healthy subscription
stays confirmed. A signal whose tag is missing, not good, or *unconfirmed*
for longer than ``signal_max_age_s`` makes the sample ``quality = "bad"``:
that time is unknown, never silently up or down. A confirmation newer than
the machine's last sample produces a sample of its own, so a flat machine
still gets samples at the subscription's keepalive cadence (at most one
keepalive period apart, within ``max_gap_s``).

Parsing goes through :class:`~edge_agent.configkit.Table`; nothing here does I/O.

Size: over 400 lines because signals to samples: the sample builder and its confirmation
rule ("a value is known while its source is confirmed alive") written once, in one
place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.configkit import Table
from edge_agent.expr import Compiled, ExprError, compile_expr
from edge_agent.kpi import KpiProfile, Sample, parse_profile
from edge_agent.kpi.sample import SampleQuality
from edge_agent.model import Confirmation, Quality, Reading, TagRef


@dataclass(frozen=True, slots=True, kw_only=True)
class TagSignal:
    """The value of one tag (``device.tag``)."""

    ref: TagRef

    @property
    def refs(self) -> tuple[TagRef, ...]:
        """Tags this signal reads."""
        return (self.ref,)


@dataclass(frozen=True, slots=True, kw_only=True)
class BitSignal:
    """Bit ``bit`` (0 = least significant) of an integer tag."""

    ref: TagRef
    bit: int

    @property
    def refs(self) -> tuple[TagRef, ...]:
        """Tags this signal reads."""
        return (self.ref,)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExprSignal:
    """A boolean expression over tags, e.g. ``press1.speed > 5``."""

    expr: Compiled

    @property
    def refs(self) -> tuple[TagRef, ...]:
        """Tags this signal reads (the grammar only accepts ``device.tag``)."""
        return tuple(TagRef(t) for t in self.expr.tags)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmWordSignal:
    """Fault code from the lowest set bit of an alarm word, through a code table.

    A set bit without an entry in ``codes`` gives code ``bit + 1`` so that an
    unmapped alarm is still a fault, never "no fault".
    """

    ref: TagRef
    codes: Mapping[int, int]

    @property
    def refs(self) -> tuple[TagRef, ...]:
        """Tags this signal reads."""
        return (self.ref,)


@dataclass(frozen=True, slots=True, kw_only=True)
class SumSignal:
    """The sum of several counters (``total = good + scrap``)."""

    parts: tuple[TagRef, ...]

    @property
    def refs(self) -> tuple[TagRef, ...]:
        """Tags this signal reads."""
        return self.parts


Signal = TagSignal | BitSignal | ExprSignal | AlarmWordSignal | SumSignal


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineConfig:
    """One machine: its signals, KPI profile and fault-code names."""

    name: str
    run: Signal
    fault: Signal | None
    good: Signal
    total: Signal
    kpi: KpiProfile
    fault_names: Mapping[int, str] = field(default_factory=dict)
    signal_max_age_s: float = 30.0
    # Answers to its stops from the PLC (a maintenance key switch, an HMI "technician
    # present" bit): a rising edge acknowledges / marks the arrival for the stop in
    # progress. Not KPI signals: their quality never makes a sample bad.
    acknowledge: Signal | None = None
    arrive: Signal | None = None

    @property
    def refs(self) -> tuple[TagRef, ...]:
        """Every ``device.tag`` the machine's KPI signals read, without duplicates."""
        out: list[TagRef] = []
        for sig in (self.run, self.fault, self.good, self.total):
            if sig is not None:
                out.extend(sig.refs)
        return tuple(dict.fromkeys(out))

    @property
    def answer_refs(self) -> tuple[TagRef, ...]:
        """The tags of its ``acknowledge`` / ``arrive`` signals."""
        out: list[TagRef] = []
        for sig in (self.acknowledge, self.arrive):
            if sig is not None:
                out.extend(sig.refs)
        return tuple(dict.fromkeys(out))

    @property
    def devices(self) -> tuple[str, ...]:
        """Devices the machine reads from."""
        return tuple(dict.fromkeys(r.device for r in self.refs))


def _parse_signal(
    table: Table, key: str, kinds: tuple[str, ...], *, required: bool
) -> Signal | None:
    """Parse one signal key. ``kinds`` lists the table forms allowed for this signal."""
    if not table.has(key):
        if required:
            table.error(key, 'missing, expected a tag reference "device.tag" or a table')
        return None
    raw = table.get_raw(key)
    path = table.key_path(key)
    if isinstance(raw, str):
        ref = TagRef.parse(raw)
        if ref is None:
            table.error(key, f'expected a tag reference "device.tag", got {raw!r}')
            return None
        return TagSignal(ref=ref)
    if not isinstance(raw, dict):
        table.error(key, 'expected a tag reference "device.tag" or a table')
        return None
    sub = Table(raw, path, table.issues)
    present = [k for k in ("tag", "expr", "alarm_word", "sum") if k in raw]
    allowed = {"tag": "tag", "expr": "expr", "alarm_word": "alarm_word", "sum": "sum"}
    if len(present) != 1 or present[0] not in kinds:
        forms = " or ".join(f"{{ {allowed[k]} = ... }}" for k in kinds)
        table.error(key, f"expected exactly one of {forms}")
        return None
    form = present[0]
    signal: Signal | None = None
    if form == "tag":
        ref = TagRef(sub.get_str("tag", check=_ref_problem))
        if sub.has("bit"):
            signal = BitSignal(ref=ref, bit=sub.get_int("bit", min=0, max=63))
        else:
            signal = TagSignal(ref=ref)
    elif form == "expr":
        text = sub.get_str("expr")
        try:
            signal = ExprSignal(expr=compile_expr(text))
        except ExprError as exc:
            sub.error("expr", f"invalid expression: {exc}")
    elif form == "alarm_word":
        ref = TagRef(sub.get_str("alarm_word", check=_ref_problem))
        codes: dict[int, int] = {}
        codes_table = sub.table("codes")
        if codes_table is not None:
            for bit_text in codes_table.key_names():
                if not bit_text.isdigit() or int(bit_text) > 63:
                    codes_table.error(bit_text, "expected a bit number 0..63 as key")
                    codes_table.get_raw(bit_text)
                    continue
                codes[int(bit_text)] = codes_table.get_int(bit_text, min=1)
            codes_table.finish()
        signal = AlarmWordSignal(ref=ref, codes=codes)
    elif form == "sum":
        parts = sub.get_list(
            "sum",
            lambda v: TagRef.parse(v) if isinstance(v, str) else None,
            expected='a tag reference "device.tag"',
        )
        if not parts:
            sub.error("sum", "expected at least one tag reference")
        signal = SumSignal(parts=tuple(parts))
    sub.finish()
    return signal


def _ref_problem(text: str) -> str | None:
    if TagRef.parse(text) is not None:
        return None
    return f'expected a tag reference "device.tag", got {text!r}'


def parse_machine(name: str, table: Table) -> MachineConfig | None:
    """Parse ``[machines.<name>]`` (signals, ``kpi`` table, ``fault_names``).

    Returns None when a required signal is missing or invalid (the problem is recorded
    in the table's issues, so the configuration is refused anyway).
    """
    run = _parse_signal(table, "run", ("tag", "expr"), required=True)
    fault = _parse_signal(table, "fault", ("tag", "alarm_word"), required=False)
    good = _parse_signal(table, "good", ("tag",), required=True)
    total = _parse_signal(table, "total", ("tag", "sum"), required=True)
    kpi_table = table.table("kpi", required=True)
    kpi = parse_profile(
        kpi_table if kpi_table is not None else Table({}, table.key_path("kpi"), table.issues)
    )
    names: dict[int, str] = {}
    names_table = table.table("fault_names")
    if names_table is not None:
        for code_text in names_table.key_names():
            if not code_text.lstrip("-").isdigit():
                names_table.error(code_text, "expected an integer fault code as key")
                names_table.get_raw(code_text)
                continue
            names[int(code_text)] = names_table.get_str(code_text)
        names_table.finish()
    max_age = table.get_float("signal_max_age_s", 30.0, positive=True)
    acknowledge = _parse_signal(table, "acknowledge", ("tag", "expr"), required=False)
    arrive = _parse_signal(table, "arrive", ("tag", "expr"), required=False)
    table.finish()
    if run is None or good is None or total is None:
        return None  # the missing signal is reported; no machine to build
    return MachineConfig(
        name=name,
        run=run,
        fault=fault,
        good=good,
        total=total,
        kpi=kpi,
        fault_names=names,
        signal_max_age_s=max_age,
        acknowledge=acknowledge,
        arrive=arrive,
    )


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return round(value)
    return None


def flag_value(sig: Signal, values: Mapping[str, Any]) -> int | None:
    """A boolean signal (tag, bit or expression) as 0/1 from tag values; None if unknown."""
    if isinstance(sig, ExprSignal):
        v = sig.expr.evaluate(values)
        return None if v is None else int(bool(v))
    if isinstance(sig, BitSignal):
        word = _as_int(values.get(sig.ref))
        return None if word is None else (word >> sig.bit) & 1
    if isinstance(sig, TagSignal):
        v = values.get(sig.ref)
        return None if v is None else int(bool(v))
    return None


class AnswerWatch:
    """Rising edges of a machine's ``acknowledge`` / ``arrive`` signals.

    :meth:`update` takes a device's readings and returns ``(answer, ts)`` for each
    signal that went from 0 to 1 (``answer`` is ``"ack"`` or ``"arrive"``, ``ts`` the
    reading's time). The first value seen is a baseline, not an edge: a switch left
    on across an agent restart does not answer a stop again.
    """

    def __init__(self, machine: MachineConfig) -> None:
        self.signals = [
            (name, sig)
            for name, sig in (("ack", machine.acknowledge), ("arrive", machine.arrive))
            if sig is not None
        ]
        self.refs = frozenset(machine.answer_refs)
        self.values: dict[str, Any] = {}
        self.last: dict[str, int | None] = {}

    def update(self, readings: list[Reading]) -> list[tuple[str, float]]:
        """The rising edges these readings make."""
        ts = None
        for r in readings:
            ref = f"{r.device}.{r.tag}"
            if ref in self.refs:
                self.values[ref] = r.value if r.quality is Quality.GOOD else None
                ts = r.ts if ts is None else max(ts, r.ts)
        if ts is None:
            return []
        out: list[tuple[str, float]] = []
        for name, sig in self.signals:
            value = flag_value(sig, self.values)
            before = self.last.get(name)
            if value is not None:
                if before == 0 and value == 1:
                    out.append((name, ts))
                self.last[name] = value
        return out


class SampleBuilder:
    """Latest tag values for one machine, and the sample they make."""

    def __init__(self, machine: MachineConfig, carry: SampleBuilder | None = None) -> None:
        self.machine = machine
        self.refs = frozenset(machine.refs)
        self.values: dict[str, Any] = {}
        #: Per tag: quality of its latest reading, and when its value was last confirmed
        #: (monotonic: the reading itself, or a later confirmation of its device).
        self.meta: dict[str, tuple[Quality, float]] = {}
        if carry is not None:
            # A reload's replacement keeps the values it shares with its predecessor (with
            # their ages): a tag read rarely, or only reported on change, is not unknown
            # until its next reading.
            for ref in self.refs & carry.meta.keys():
                self.values[ref] = carry.values.get(ref)
                self.meta[ref] = carry.meta[ref]
        refs_by_device: dict[str, list[str]] = {}
        for ref in machine.refs:
            refs_by_device.setdefault(ref.device, []).append(ref)
        self.refs_by_device = {d: tuple(r) for d, r in refs_by_device.items()}
        self.last_mono: float = float("-inf") if carry is None else carry.last_mono

    def update(self, readings: list[Reading]) -> bool:
        """Take the readings this machine uses; True when any of them was relevant."""
        relevant = False
        for r in readings:
            ref = f"{r.device}.{r.tag}"
            if ref in self.refs:
                self.values[ref] = r.value if r.quality is Quality.GOOD else None
                self.meta[ref] = (r.quality, r.mono)
                relevant = True
        return relevant

    def confirm(self, confirmation: Confirmation) -> bool:
        """The device's source confirmed its last reported values at ``confirmation.mono``.

        Every tag of that device this machine reads counts as confirmed then (a not-good
        one stays not good). Returns True when a sample is due: the confirmation is newer
        than the machine's last sample (a confirmation that arrives with the changes of
        the same publish response, after their sample, only refreshes the ages).
        """
        refs = self.refs_by_device.get(confirmation.device)
        if not refs:
            return False
        mono = confirmation.mono
        meta = self.meta
        seen = False
        for ref in refs:
            m = meta.get(ref)
            if m is not None:
                seen = True
                if m[1] < mono:
                    meta[ref] = (m[0], mono)
        return seen and mono > self.last_mono

    def sample(self, *, t: float, mono: float, synced: bool | None) -> Sample:
        """The machine's sample now; bad when any signal is unknown or unconfirmed too long."""
        self.last_mono = max(self.last_mono, mono)
        for ref in self.refs:
            meta = self.meta.get(ref)
            if (
                meta is None
                or meta[0] is not Quality.GOOD
                or mono - meta[1] > self.machine.signal_max_age_s
            ):
                return Sample(
                    t=t,
                    run=0,
                    fault=0,
                    good=0,
                    total=0,
                    quality=SampleQuality.BAD,
                    mono_s=mono,
                    synced=synced,
                )
        run = self._run()
        fault = self._fault()
        good = self._counter(self.machine.good)
        total = self._counter(self.machine.total)
        if run is None or fault is None or good is None or total is None:
            return Sample(
                t=t,
                run=0,
                fault=0,
                good=0,
                total=0,
                quality=SampleQuality.BAD,
                mono_s=mono,
                synced=synced,
            )
        return Sample(
            t=t,
            run=run,
            fault=fault,
            good=good,
            total=total,
            quality=SampleQuality.GOOD,
            mono_s=mono,
            synced=synced,
        )

    def _run(self) -> int | None:
        return flag_value(self.machine.run, self.values)

    def _fault(self) -> int | None:
        sig = self.machine.fault
        if sig is None:
            return 0
        if isinstance(sig, AlarmWordSignal):
            word = _as_int(self.values.get(sig.ref))
            if word is None:
                return None
            if word == 0:
                return 0
            bit = (word & -word).bit_length() - 1
            return sig.codes.get(bit, bit + 1)
        if isinstance(sig, BitSignal):
            word = _as_int(self.values.get(sig.ref))
            return None if word is None else (word >> sig.bit) & 1
        if isinstance(sig, TagSignal):
            return _as_int(self.values.get(sig.ref))
        return None

    def _counter(self, sig: Signal) -> int | None:
        if isinstance(sig, SumSignal):
            parts = [_as_int(self.values.get(p)) for p in sig.parts]
            if any(p is None for p in parts):
                return None
            return sum(p for p in parts if p is not None)
        if isinstance(sig, TagSignal):
            return _as_int(self.values.get(sig.ref))
        return None
