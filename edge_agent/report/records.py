"""The published material a report is made of, and how it is gathered.

:class:`Collector` sorts published documents (KPI records, stop events, contract status
and period records, ``config`` records, state intervals) into a
:class:`~edge_agent.report.model.ReportData` for a range: the highest revision of each
KPI window, the latest update of each stop event, the latest status of each contract
period. Sources: :mod:`.load` (the buffer) and :mod:`.files` (bundles and exports).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from edge_agent.report.model import MachineData, ReportData, Verification

CONTRACT_KINDS = ("contract", "contract_period")
#: Problems listed on the page under the verification result (the rest are counted).
MAX_LISTED_PROBLEMS = 5


def iso_to_s(text: Any) -> float | None:
    """ISO 8601 text (``Z`` or offset) to UNIX seconds; None when not a time."""
    from edge_agent.commands.export import parse_time

    if not isinstance(text, str):
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


def overlaps(doc: Mapping[str, Any], start: float, end: float) -> bool:
    """Whether a record's ``[start, end)`` (ISO text) overlaps ``[start, end)``."""
    a, b = iso_to_s(doc.get("start")), iso_to_s(doc.get("end"))
    return a is not None and b is not None and a < end and b > start


def latest_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The highest revision of each ``(machine, name)`` window; a final one beats "so far"."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in records:
        key = (str(rec.get("machine", "")), str(rec.get("name", "")))
        rank = (int(rec.get("revision") or 0), bool(rec.get("final")), str(rec.get("end", "")))
        have = best.get(key)
        if have is None or rank >= (
            int(have.get("revision") or 0),
            bool(have.get("final")),
            str(have.get("end", "")),
        ):
            best[key] = dict(rec)
    return sorted(best.values(), key=lambda r: (str(r.get("start")), str(r.get("name"))))


def latest_stops(stops: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The latest update of each stop event (input in publication order; closed beats open)."""
    by_id: dict[str, dict[str, Any]] = {}
    for stop in stops:
        key = str(stop.get("event_id") or f"{stop.get('machine')}@{stop.get('start')}")
        have = by_id.get(key)
        if have is not None and have.get("end") is not None and stop.get("end") is None:
            continue
        by_id[key] = dict(stop)
    return sorted(by_id.values(), key=lambda s: float(s.get("start") or 0.0))


def latest_contracts(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The latest status of each ``(contract, period)``: a closed period beats "so far"."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in docs:
        key = (str(doc.get("contract")), str(doc.get("period")))
        rank = (bool(doc.get("final")), int(doc.get("revision") or 0), str(doc.get("at", "")))
        have = best.get(key)
        if have is None or rank >= (
            bool(have.get("final")),
            int(have.get("revision") or 0),
            str(have.get("at", "")),
        ):
            best[key] = dict(doc)
    return sorted(best.values(), key=lambda d: (str(d.get("contract")), str(d.get("start"))))


def record_view(data: Mapping[str, Any]) -> dict[str, Any]:
    """A KPI record as the report reads it: the window's name under ``name`` too.

    Records publish ``window`` (schema); records of agents before that carry ``name``.
    """
    out = dict(data)
    if "name" not in out and "window" in out:
        out["name"] = out["window"]
    return out


def stop_view(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stop event as the report reads it: UNIX-second ``start``/``end``, ``class``, ``fault``.

    Stop events publish RFC 3339 instants, ``category`` and ``code`` (schema); events of
    agents before that carry the other form, which passes through unchanged.
    """
    out = dict(data)
    for key in ("start", "end"):
        if isinstance(out.get(key), str):
            out[key] = iso_to_s(out[key])
    if "category" in out and "class" not in out:
        out["class"] = out["category"]
    if "code" in out and "fault" not in out:
        out["fault"] = out["code"] or 0
    return out


class Collector:
    """Gathers published documents and sorts them into a :class:`ReportData`."""

    def __init__(self, start: float, end: float, machine: str | None, contract: str | None):
        """Gather for ``[start, end)``, one machine and one contract when given."""
        self.start, self.end = start, end
        self.machine, self.contract = machine, contract
        self.records: list[dict[str, Any]] = []
        self.stops: list[dict[str, Any]] = []
        self.intervals: list[dict[str, Any]] = []
        self.contracts: list[dict[str, Any]] = []
        self.profiles: dict[str, dict[str, Any]] = {}
        self.machine_names: set[str] = set()
        self.agent: str | None = None

    def wanted(self, name: Any) -> bool:
        """Whether a machine is in the report."""
        return isinstance(name, str) and (self.machine is None or name == self.machine)

    def add_envelope(self, doc: Mapping[str, Any]) -> None:
        """One published message (``kind`` + ``data``)."""
        data = doc.get("data")
        if not isinstance(data, dict):
            return
        self.agent = self.agent or (doc.get("agent") if isinstance(doc.get("agent"), str) else None)
        kind = doc.get("kind")
        if kind == "kpi":
            self.add_record(data)
        elif kind == "stop":
            self.add_stop(data)
        elif kind in CONTRACT_KINDS:
            self.add_contract(data)
        elif kind == "config":
            self.add_config(data)

    def add_record(self, data: Mapping[str, Any]) -> None:
        """A KPI record (``data`` of a ``kpi`` message) whose window overlaps the range."""
        if self.wanted(data.get("machine")) and overlaps(data, self.start, self.end):
            self.records.append(record_view(data))
            self.machine_names.add(str(data["machine"]))

    def add_stop(self, data: Mapping[str, Any]) -> None:
        """A stop event update overlapping the range."""
        data = stop_view(data)
        begin = data.get("start")
        if not self.wanted(data.get("machine")) or not isinstance(begin, int | float):
            return
        finish = data.get("end")
        if begin < self.end and (finish is None or finish > self.start):
            self.stops.append(dict(data))
            self.machine_names.add(str(data["machine"]))

    def add_interval(self, machine: Any, data: Mapping[str, Any]) -> None:
        """A state interval overlapping the range."""
        begin, finish = data.get("start"), data.get("end")
        if not self.wanted(machine) or not isinstance(begin, int | float):
            return
        if begin < self.end and (not isinstance(finish, int | float) or finish > self.start):
            self.intervals.append({**data, "machine": machine})
            self.machine_names.add(str(machine))

    def add_contract(self, data: Mapping[str, Any]) -> None:
        """A contract status or period record whose period overlaps the range."""
        if self.contract is not None and data.get("contract") != self.contract:
            return
        if self.machine is not None and self.machine not in (data.get("profile_hashes") or {}):
            return
        if overlaps(data, self.start, self.end):
            self.contracts.append(dict(data))

    def add_config(self, data: Mapping[str, Any]) -> None:
        """A ``config`` record: each machine's KPI profile and its hash."""
        machines = data.get("machines")
        if isinstance(machines, dict):
            for name, entry in machines.items():
                if isinstance(entry, dict) and isinstance(entry.get("profile"), dict):
                    self.profiles[name] = {**entry["profile"], "hash": entry.get("profile_hash")}

    def result(
        self, *, title: str, source: str, fault_names: Mapping[str, Mapping[int, str]]
    ) -> ReportData:
        """Everything gathered, sorted per machine."""
        data = ReportData(
            title=title, source=source, start=self.start, end=self.end, agent=self.agent
        )
        names = sorted(self.machine_names | ({self.machine} if self.machine else set()))
        for name in names:
            m = MachineData(name=name)
            m.records = latest_records(r for r in self.records if r.get("machine") == name)
            m.stops = latest_stops(s for s in self.stops if s.get("machine") == name)
            m.intervals = sorted(
                (i for i in self.intervals if i.get("machine") == name),
                key=lambda i: float(i["start"]),
            )
            m.profile = self.profiles.get(name)
            m.fault_names = dict(fault_names.get(name) or {})
            data.machines[name] = m
        data.contracts = latest_contracts(self.contracts)
        data.generated_at = time.time()
        return data


def fault_names_of(config: Any) -> dict[str, dict[int, str]]:
    """Each machine's fault code -> name table of an ``AgentConfig`` (None: none)."""
    if config is None:
        return {}
    return {name: dict(m.fault_names) for name, m in config.machines.items()}


def summary(report: Any, against: str) -> Verification:
    """A :class:`~edge_agent.evidence.verify.Report` as the page's verification line."""
    problems = report.problems
    counts = report.counts
    what = (
        f"{counts.get('signed_records', 0)} signed records, "
        f"{counts.get('chained_records', 0)} chained; checked against {against}"
    )
    if problems:
        details = [f"[{f.code}] {f.message}" for f in problems[:MAX_LISTED_PROBLEMS]]
        if len(problems) > MAX_LISTED_PROBLEMS:
            details.append(f"... and {len(problems) - MAX_LISTED_PROBLEMS} more")
        return Verification(False, f"NOT VERIFIED: {len(problems)} problem(s); {what}", details)
    return Verification(True, f"VERIFIED: signatures and chain links check out; {what}")
