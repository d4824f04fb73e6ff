"""Contract devices of the metric catalog: one Sparkplug device per configured contract.

A contract (``[contracts.NAME]``) usually covers several machines, so its status is
not a metric of one machine device: it is its own device, id from the
``contract_device_id`` template (default ``<contract>-contract``), alive while the
agent runs (like a machine device). The naming scheme, documented in
``docs/sparkplug.md``:

* ``Status/<field>``: the period being evaluated and its evaluation (``period``,
  ``start``, ``end``, ``at``, ``final``, ``revision``, ``data_coverage``,
  ``remaining_service_s``, ``flags``, ``contract_hash``). A live status update
  (kind ``contract``) has ``final`` false and a null ``revision``; a closed period
  (kind ``contract_period``) has ``final`` true and its revision.
* ``Term/<term>/<field>``: ``state``, ``so_far``, ``best``, ``worst``, ``forecast``
  of each configured term, and ``Term/<term>/<level>/{threshold,state,budget}`` for
  its ``target`` and (when set) ``minimum`` level; budgets carry the term's budget
  unit (``s`` or ``responses``) as ``engUnit``.
* ``Alert/<field>``: each breach-risk alert (kind ``contract_alert``).

Pure: no I/O, no protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from edge_agent.uplink.sparkplug.catalog import DataType, DeviceKind, DeviceSpec, MetricSpec

if TYPE_CHECKING:
    from edge_agent.contracts import Contract

#: ``Status/<field>`` of a contract status or period record.
STATUS_FIELDS: tuple[tuple[str, DataType], ...] = (
    ("period", DataType.STRING),
    ("start", DataType.DATETIME),
    ("end", DataType.DATETIME),
    ("at", DataType.DATETIME),
    ("final", DataType.BOOLEAN),
    ("revision", DataType.INT64),
    ("data_coverage", DataType.DOUBLE),
    ("remaining_service_s", DataType.DOUBLE),
    ("flags", DataType.STRING),
    ("contract_hash", DataType.STRING),
)

#: ``Term/<term>/<field>`` of each term.
TERM_FIELDS: tuple[tuple[str, DataType], ...] = (
    ("state", DataType.STRING),
    ("so_far", DataType.DOUBLE),
    ("best", DataType.DOUBLE),
    ("worst", DataType.DOUBLE),
    ("forecast", DataType.DOUBLE),
)

#: ``Term/<term>/<level>/<field>`` of each level of a term.
LEVEL_FIELDS: tuple[tuple[str, DataType], ...] = (
    ("threshold", DataType.DOUBLE),
    ("state", DataType.STRING),
    ("budget", DataType.DOUBLE),
)

#: ``Alert/<field>`` of a breach-risk alert.
ALERT_FIELDS: tuple[tuple[str, DataType], ...] = (
    ("alert_id", DataType.STRING),
    ("alert", DataType.STRING),
    ("period", DataType.STRING),
    ("term", DataType.STRING),
    ("level", DataType.STRING),
    ("state", DataType.STRING),
    ("previous", DataType.STRING),
    ("at", DataType.DATETIME),
    ("threshold", DataType.DOUBLE),
    ("so_far", DataType.DOUBLE),
    ("forecast", DataType.DOUBLE),
    ("budget", DataType.DOUBLE),
    ("budget_unit", DataType.STRING),
    ("event_id", DataType.STRING),
    ("machine", DataType.STRING),
)

_UNITS = {"ratio": "", "s": "s", "parts/h": "parts/h"}


def contract_device(device_id: str, contract: Contract, take: Any) -> DeviceSpec:
    """The Sparkplug device of one contract (``take()`` hands out the next alias)."""
    spec = DeviceSpec(device_id=device_id, source=contract.name, kind=DeviceKind.CONTRACT)

    def add(name: str, dtype: DataType, unit: str = "") -> None:
        spec.metrics[name] = MetricSpec(name, take(), dtype, unit)

    for name, dtype in STATUS_FIELDS:
        add(f"Status/{name}", dtype, "s" if name.endswith("_s") else "")
    for term in contract.terms:
        unit = _UNITS.get(term.kpi.unit, "")
        for name, dtype in TERM_FIELDS:
            add(f"Term/{term.name}/{name}", dtype, "" if name == "state" else unit)
        for level in levels_of(term):
            for name, dtype in LEVEL_FIELDS:
                level_unit = {"threshold": unit, "budget": term.kpi.budget_unit or ""}
                add(f"Term/{term.name}/{level}/{name}", dtype, level_unit.get(name, ""))
    for name, dtype in ALERT_FIELDS:
        add(f"Alert/{name}", dtype)
    return spec


def levels_of(term: Any) -> tuple[str, ...]:
    """The level names a term publishes: ``target``, and ``minimum`` when set."""
    return ("target", "minimum") if term.minimum is not None else ("target",)


def contract_devices(
    contracts: Mapping[str, Contract], device_id: Any, take: Any
) -> dict[str, DeviceSpec]:
    """Contract devices by contract name, in configuration order."""
    return {
        name: contract_device(device_id(name), contract, take)
        for name, contract in contracts.items()
    }


def status_values(data: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """``(metric name, value)`` of a ``contract`` / ``contract_period`` record's data."""
    for name, _dtype in STATUS_FIELDS:
        value = data.get(name)
        if name == "flags":
            value = ",".join(str(f) for f in value or ())
        yield f"Status/{name}", value
    for term in data.get("terms") or ():
        if not isinstance(term, Mapping):
            continue
        prefix = f"Term/{term.get('term')}"
        for name, _dtype in TERM_FIELDS:
            yield f"{prefix}/{name}", term.get(name)
        for level in term.get("levels") or ():
            if isinstance(level, Mapping):
                for name, _dtype in LEVEL_FIELDS:
                    yield f"{prefix}/{level.get('level')}/{name}", level.get(name)


def alert_values(data: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """``(metric name, value)`` of a ``contract_alert`` record's data."""
    for name, _dtype in ALERT_FIELDS:
        yield f"Alert/{name}", data.get(name)
