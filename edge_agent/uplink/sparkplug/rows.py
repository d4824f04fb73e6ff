"""Outbox rows (JSON ``data``) to Sparkplug metrics, one function per message kind.

The outbox keeps one JSON document per message for every payload format; this
module reads it at publish time and fills a Sparkplug payload with the metrics
of the catalog (:mod:`.catalog`). It accepts both the current ``data`` shapes
and the announced ones (KPI ``window``/``window_kind``, ISO instants, stop
``category``/``code``/``event_id``), so either producer works.

* ``telemetry``: each sample value becomes one DDATA metric of the device,
  stamped with its reading time (samples are chronological); a value whose
  quality is not good carries the ``Quality`` property (bad 0, stale 500) and is
  null when it has no value; aggregate windows become ``<tag>/<stat>`` metrics
  stamped with the window end.
* ``kpi``: every ``KPI/<window kind>/<field>`` metric of the record, stamped with
  the time the record was computed (the row's ``created``).
* ``stop``: the ``Stop/<field>`` metrics, stamped with the row's ``created``.
* ``health``: the ``Health/*`` Edge Node metrics (NDATA).
* ``contract`` / ``contract_period``: ``Status/*`` and ``Term/*`` metrics of the
  contract's device; ``contract_alert``: its ``Alert/*`` metrics (:mod:`.contracts`).

Anything else (a kind without a Sparkplug mapping, a device or machine that is
not in the catalog) encodes to ``None``: the publisher acknowledges the row
without publishing it and counts it. Each encoded metric also becomes the
metric's *last value*, which the next birth certificate carries. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from edge_agent.buffer.outbox import OutboxRow
from edge_agent.uplink.sparkplug import codec
from edge_agent.uplink.sparkplug import contracts as contract_metrics
from edge_agent.uplink.sparkplug.catalog import (
    AGGREGATE_FIELDS,
    HEALTH_FIELDS,
    KPI_IDENTITY,
    KPI_NUMBERS,
    STOP_FIELDS,
    Catalog,
    DataType,
    DeviceSpec,
    MetricSpec,
    value_type,
)

_SETTERS = codec.SETTERS
_BAD = codec.QUALITY_BAD
_STALE = codec.QUALITY_STALE


class LastValue(NamedTuple):
    """What a birth certificate announces for a metric: its last value, time and quality.

    A named tuple: one is made per published value (a gateway's 12,500 a second).
    """

    value: Any
    ts_ms: int
    quality: int | None = None


@dataclass(slots=True)
class Encoded:
    """One row as Sparkplug metrics.

    Attributes:
        device: The target device, or None for an Edge Node message (NDATA).
        payload: The payload with its metrics (the session sets ``timestamp``/``seq``).
        learned: A metric's datatype was learned from this row: the metric is not in
            the current birth certificates, so a rebirth must go out first.
        values: Metrics in the payload.
    """

    device: DeviceSpec | None
    payload: codec.Payload
    learned: bool = False
    values: int = 0


@dataclass(slots=True)
class RowStats:
    """Rows and values the encoder could not map (counted, never silent)."""

    skipped_rows: dict[str, int] = field(default_factory=dict)
    unknown_metrics: int = 0
    rejected_values: int = 0


def _quality_code(issue: Any) -> int:
    kind = issue[0] if isinstance(issue, list) and issue else issue
    return _STALE if kind == "stale" else _BAD


class RowEncoder:
    """Encodes outbox rows against one catalog; remembers each metric's last value.

    Args:
        catalog: The metric catalog (its learned datatypes are updated in place).
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.last: dict[int, LastValue] = {}
        self.stats = RowStats()
        self._since: Callable[[DeviceSpec], int] | None = None
        self._kinds: dict[str, Callable[[OutboxRow, Any, bool], Encoded | None]] = {
            "telemetry": self._telemetry,
            "kpi": self._kpi,
            "stop": self._stop,
            "health": self._health,
            "contract": self._contract,
            "contract_period": self._contract,
            "contract_alert": self._contract_alert,
        }

    def encode(
        self,
        row: OutboxRow,
        *,
        historical: bool,
        since: Callable[[DeviceSpec], int] | None = None,
    ) -> Encoded | None:
        """The row's metrics, or None when it has no Sparkplug mapping (counted).

        Args:
            row: The outbox row.
            historical: Flag every metric ``is_historical`` (stored before the birth).
            since: Birth time (ms) of a device: telemetry samples older than it are
                historical too (the birth announced a newer value).
        """
        self._since = since
        handler = self._kinds.get(row.kind)
        data: Any = None
        if handler is not None:
            try:
                data = json.loads(row.data)
            except ValueError:
                data = None
        encoded = handler(row, data, historical) if handler is not None and data else None
        if encoded is None or not encoded.values:
            skipped = self.stats.skipped_rows
            skipped[row.kind] = skipped.get(row.kind, 0) + 1
            return None
        return encoded

    # -- telemetry ---------------------------------------------------------------------
    def _telemetry(self, row: OutboxRow, data: Any, historical: bool) -> Encoded | None:
        device = self.catalog.plc.get(str(data.get("device")))
        if device is None:
            return None
        metrics = device.metrics
        payload = codec.Payload()
        add = payload.metrics.add
        last = self.last
        setters = _SETTERS
        new_last = LastValue
        learned = False
        count = 0
        t0 = int(data.get("t0", 0)) * 1000
        born = self._since(device) if self._since is not None and not historical else 0
        for sample in data.get("samples", ()):
            ts = t0 + int(sample[0])
            old = historical or ts < born
            issues = sample[2] if len(sample) > 2 else None
            for tag, value in sample[1].items():
                spec = metrics.get(tag)
                if spec is None:
                    self.stats.unknown_metrics += 1
                    continue
                dtype = spec.datatype
                if dtype is None:
                    dtype = value_type(value)
                    if dtype is None:
                        continue  # no type yet and no value: nothing a host could use
                    spec.datatype = dtype
                    learned = True
                metric = add(alias=spec.alias, timestamp=ts)
                if old:
                    metric.is_historical = True
                quality = _quality_code(issues[tag]) if issues and tag in issues else None
                if value is None:
                    metric.is_null = True
                elif not setters[dtype](metric, value):
                    metric.ClearField("value")
                    metric.is_null = True
                    quality = _BAD
                    self.stats.rejected_values += 1
                    value = None
                if quality is not None:
                    codec.set_quality(metric, quality)
                last[spec.alias] = new_last(value, ts, quality)
                count += 1
        aggregates = data.get("aggregates")
        if aggregates:
            for tag, windows in aggregates.items():
                for window in windows:
                    end = codec.to_millis(window.get("end")) or 0
                    old = historical or end < born
                    n, new_type = self._aggregate(payload, metrics, tag, window, old)
                    count += n
                    learned = learned or new_type
        return Encoded(device=device, payload=payload, learned=learned, values=count)

    def _aggregate(
        self,
        payload: codec.Payload,
        metrics: Mapping[str, MetricSpec],
        tag: str,
        window: Mapping[str, Any],
        historical: bool,
    ) -> tuple[int, bool]:
        """Metrics of one closed window, and whether a datatype was learned."""
        ts = codec.to_millis(window.get("end")) or 0
        count = 0
        learned = False
        for stat, _typ in AGGREGATE_FIELDS:
            spec = metrics.get(f"{tag}/{stat}")
            if spec is None:
                continue
            value = window.get(stat)
            if spec.datatype is None:
                learned_type = value_type(value)
                if learned_type is None:
                    continue
                spec.datatype = learned_type
                learned = True
            count += self._put(payload, spec, value, ts, historical)
        return count, learned

    # -- machines ----------------------------------------------------------------------
    def _kpi(self, row: OutboxRow, data: Any, historical: bool) -> Encoded | None:
        device = self.catalog.machines.get(str(data.get("machine")))
        if device is None:
            return None
        window = data.get("window") or data.get("name")
        kind = data.get("window_kind") or (str(window).split(":", 1)[0] if window else None)
        if not kind or f"KPI/{kind}/window" not in device.metrics:
            return None
        ts = round(row.created * 1000)
        payload = codec.Payload()
        count = 0
        fields: dict[str, Any] = {
            "window": window,
            "start": data.get("start"),
            "end": data.get("end"),
            "revision": data.get("revision"),
            "final": data.get("final"),
            "flags": ",".join(str(f) for f in data.get("flags") or ()),
            "downtime_by_code": _json(data.get("downtime_by_code")),
        }
        metrics = device.metrics
        for name, _typ in KPI_IDENTITY:
            if (spec := metrics.get(f"KPI/{kind}/{name}")) is not None:
                count += self._put(payload, spec, fields[name], ts, historical)
        for name, _typ in KPI_NUMBERS:
            if (spec := metrics.get(f"KPI/{kind}/{name}")) is not None:
                count += self._put(payload, spec, _finite(data.get(name)), ts, historical)
        return Encoded(device=device, payload=payload, values=count)

    def _stop(self, row: OutboxRow, data: Any, historical: bool) -> Encoded | None:
        machine = str(data.get("machine"))
        device = self.catalog.machines.get(machine)
        if device is None:
            return None
        start_ms = codec.to_millis(data.get("start"))
        end = data.get("end")
        code = data.get("code", data.get("fault"))
        fields: dict[str, Any] = {
            "event_id": data.get("event_id") or f"{machine}@{start_ms}",
            "start": data.get("start"),
            "end": end,
            "duration_s": _finite(data.get("duration_s")),
            "open": end is None,
            "category": data.get("category", data.get("class")),
            "code": None if code in (None, 0, "", "0") else str(code),
            "fault_name": data.get("fault_name"),
        }
        ts = round(row.created * 1000)
        payload = codec.Payload()
        count = 0
        for name, _typ in STOP_FIELDS:
            if (spec := device.metrics.get(f"Stop/{name}")) is not None:
                count += self._put(payload, spec, fields[name], ts, historical)
        return Encoded(device=device, payload=payload, values=count)

    # -- contracts ---------------------------------------------------------------------
    def _contract(self, row: OutboxRow, data: Any, historical: bool) -> Encoded | None:
        return self._named(row, data, contract_metrics.status_values(data), historical)

    def _contract_alert(self, row: OutboxRow, data: Any, historical: bool) -> Encoded | None:
        return self._named(row, data, contract_metrics.alert_values(data), historical)

    def _named(
        self, row: OutboxRow, data: Any, values: Iterable[tuple[str, Any]], historical: bool
    ) -> Encoded | None:
        device = self.catalog.contracts.get(str(data.get("contract")))
        if device is None:
            return None
        ts = round(row.created * 1000)
        payload = codec.Payload()
        count = 0
        for name, value in values:
            spec = device.metrics.get(name)
            if spec is None:
                self.stats.unknown_metrics += 1  # e.g. a term removed by a reload
                continue
            count += self._put(payload, spec, _finite(value), ts, historical)
        return Encoded(device=device, payload=payload, values=count)

    # -- edge node ---------------------------------------------------------------------
    def _health(self, row: OutboxRow, data: Any, historical: bool) -> Encoded | None:
        ts = round(row.created * 1000)
        payload = codec.Payload()
        count = 0
        for name, path, _typ in HEALTH_FIELDS:
            value: Any = data
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if (spec := self.catalog.node_metrics.get(name)) is not None:
                count += self._put(payload, spec, _finite(value), ts, historical)
        return Encoded(device=None, payload=payload, values=count)

    # -- shared ------------------------------------------------------------------------
    def _put(
        self, payload: codec.Payload, spec: MetricSpec, value: Any, ts: int, historical: bool
    ) -> int:
        dtype = spec.datatype or DataType.STRING
        metric = payload.metrics.add(alias=spec.alias, timestamp=ts)
        if historical:
            metric.is_historical = True
        quality = None
        if value is None:
            metric.is_null = True
        elif not _SETTERS[dtype](metric, value):
            metric.ClearField("value")
            metric.is_null = True
            quality = _BAD
            codec.set_quality(metric, quality)
            self.stats.rejected_values += 1
            value = None
        self.last[spec.alias] = LastValue(value, ts, quality)
        return 1


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
