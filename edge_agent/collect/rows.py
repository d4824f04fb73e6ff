"""Rows for the per-kind tables, built from a checked :class:`~.envelope.Message`.

Pure code: every conversion PostgreSQL would otherwise do (instants, numbers, the stop
event's identity) happens here, so a message the schema let through but that cannot be
stored becomes a :class:`RowError` (and goes to quarantine with that reason) instead of a
failed transaction. Column orders match the SQL in :mod:`edge_agent.collect.store`.

Size: just over 400 lines because it holds one row builder per table (kpi, stop, telemetry,
health, contract status, period and alert, signed records, others) next to the shared
conversions they use; splitting them would scatter the column orders that must match
:mod:`edge_agent.collect.store`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from psycopg.types.json import Jsonb

from edge_agent.collect.envelope import Message
from edge_agent.collect.timefmt import parse_instant

# Kinds with a table of their own; every other numbered kind goes to other_records.
TABLE_KINDS = frozenset(
    {"kpi", "stop", "telemetry", "health", "contract", "contract_period", "contract_alert"}
)
MAX_DOUBLE = 1.7976931348623157e308

KPI_TIMES = (
    "calendar_time_s",
    "planned_time_s",
    "excluded_time_s",
    "non_scheduled_time_s",
    "unknown_time_s",
    "running_time_s",
    "micro_stop_time_s",
    "operating_time_s",
    "downtime_breakdown_s",
    "downtime_other_s",
    "downtime_total_s",
)
KPI_OPTIONAL_TIMES = ("downtime_customer_s", "downtime_provider_s", "ttr_sum_s")
KPI_COUNTS = ("stops", "micro_stops", "failures")
KPI_AMOUNTS = ("total_count", "good_count")
KPI_RATIOS = ("availability", "sla_availability", "oee")
KPI_COLUMNS = (
    "agent",
    "machine",
    "window_name",
    "window_kind",
    "start_at",
    "end_at",
    "revision",
    "final",
    *KPI_TIMES,
    *KPI_OPTIONAL_TIMES,
    *KPI_COUNTS,
    *KPI_AMOUNTS,
    *KPI_RATIOS,
    "data",
    "raw",
    "upgraded",
    "epoch",
    "seq",
    "ts",
)
STOP_COLUMNS = (
    "agent",
    "event_id",
    "machine",
    "start_at",
    "end_at",
    "duration_s",
    "category",
    "code",
    "fault_name",
    "planned",
    "data",
    "raw",
    "upgraded",
    "epoch",
    "seq",
    "ts",
)
CONTRACT_STATUS_COLUMNS = (
    "agent",
    "contract",
    "period",
    "start_at",
    "end_at",
    "at",
    "remaining_service_s",
    "data_coverage",
    "contract_hash",
    "data",
    "raw",
    "epoch",
    "seq",
    "ts",
)
CONTRACT_PERIOD_COLUMNS = (
    "agent",
    "contract",
    "period",
    "revision",
    "start_at",
    "end_at",
    "at",
    "data_coverage",
    "contract_hash",
    "data",
    "raw",
    "epoch",
    "seq",
    "ts",
)
CONTRACT_ALERT_COLUMNS = (
    "agent",
    "alert_id",
    "alert",
    "contract",
    "period",
    "term",
    "kpi",
    "level",
    "threshold",
    "at",
    "state",
    "previous",
    "so_far",
    "budget",
    "budget_unit",
    "machine",
    "event_id",
    "data",
    "raw",
    "epoch",
    "seq",
    "ts",
)
SIGNED_COLUMNS = ("agent", "epoch", "seq", "kind", "ts", "chained", "raw")
MAX_BIGINT = 2**63 - 1


class RowError(ValueError):
    """The message cannot be stored as a row of its kind's table (reason in the text)."""


def _number(data: dict[str, Any], key: str, *, required: bool = True) -> float | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(f"{key}: expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_DOUBLE:
        raise RowError(f"{key}: number out of range")
    return number


def _integer(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_BIGINT:
        raise RowError(f"{key}: expected an integer within bigint")
    return value


def _instant(data: dict[str, Any], key: str, *, required: bool = True) -> dt.datetime | None:
    value = data.get(key)
    if value is None and not required:
        return None
    parsed = parse_instant(value)
    if parsed is None:
        raise RowError(f"{key}: expected an RFC 3339 instant")
    return parsed


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def kpi_row(msg: Message, raw: str) -> tuple[Any, ...]:
    """A kpi_records row (also the source of a kpi_revisions row when final)."""
    d = msg.data
    window = d.get("window")
    machine = d.get("machine")
    if not isinstance(window, str) or not window or not isinstance(machine, str) or not machine:
        raise RowError("kpi: machine and window must be non-empty strings")
    kind = d.get("window_kind")
    if not isinstance(kind, str) or not kind:
        kind = window.split(":", 1)[0]
    revision = _integer(d, "revision")
    if not 0 <= revision <= 2**31 - 1:
        raise RowError("revision: out of range")
    return (
        msg.agent,
        machine,
        window,
        kind,
        _instant(d, "start"),
        _instant(d, "end"),
        revision,
        d.get("final") is True,
        *(_number(d, k) for k in KPI_TIMES),
        *(_number(d, k, required=False) for k in KPI_OPTIONAL_TIMES),
        *(_integer(d, k) for k in KPI_COUNTS),
        *(_number(d, k) for k in KPI_AMOUNTS),
        *(_number(d, k, required=False) for k in KPI_RATIOS),
        Jsonb(d),
        raw,
        msg.upgraded,
        msg.epoch,
        msg.seq,
        msg.ts,
    )


def stop_row(msg: Message, raw: str) -> tuple[Any, ...]:
    """A stop_events row, keyed by (agent, event_id)."""
    d = msg.data
    event_id, machine = d.get("event_id"), d.get("machine")
    if not isinstance(event_id, str) or not event_id:
        raise RowError("stop: event_id must be a non-empty string")
    if not isinstance(machine, str) or not machine:
        raise RowError("stop: machine must be a non-empty string")
    planned = d.get("planned")
    return (
        msg.agent,
        event_id,
        machine,
        _instant(d, "start"),
        _instant(d, "end", required=False),
        _number(d, "duration_s", required=False),
        _text(d.get("category")),
        _text(d.get("code")),
        _text(d.get("fault_name")),
        planned if isinstance(planned, bool) else None,
        Jsonb(d),
        raw,
        msg.upgraded,
        msg.epoch,
        msg.seq,
        msg.ts,
    )


def telemetry_row(msg: Message) -> tuple[Any, ...]:
    """A telemetry row (the data as jsonb; the telemetry_values view unfolds samples)."""
    device = msg.data.get("device")
    if not isinstance(device, str) or not device:
        raise RowError("telemetry: device must be a non-empty string")
    return (msg.agent, msg.epoch, msg.seq, msg.ts, device, Jsonb(msg.data))


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _opt_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and abs(number) <= MAX_DOUBLE else None


def _opt_bigint(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_BIGINT:
        return None
    return value


def health_row(msg: Message) -> tuple[Any, ...]:
    """A health row: a few columns for dashboards, the whole data as jsonb."""
    d = msg.data
    synced = d.get("clock_synced")
    return (
        msg.agent,
        msg.epoch,
        msg.seq,
        msg.ts,
        _opt_number(d.get("uptime_s")),
        _opt_number(d.get("cpu_percent")),
        _opt_bigint(d.get("rss_bytes")),
        health_backlog(msg),
        synced if isinstance(synced, bool) else None,
        Jsonb(d),
    )


def health_backlog(msg: Message) -> int | None:
    """The agent's own outbox backlog from a health message (uplink.backlog), if present."""
    return _opt_bigint(_get(msg.data, "uplink", "backlog"))


def other_row(msg: Message, topic: str, raw: str) -> tuple[Any, ...]:
    """An other_records row: a numbered kind without a table of its own."""
    return (
        msg.agent,
        msg.epoch,
        msg.seq,
        msg.kind,
        msg.ts,
        topic,
        msg.validated,
        Jsonb(msg.data),
        raw,
    )


def _name(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise RowError(f"{key}: expected a non-empty string")
    return value


def _status_common(msg: Message) -> tuple[Any, ...]:
    d = msg.data
    return (
        msg.agent,
        _name(d, "contract"),
        _name(d, "period"),
    )


def _contract_tail(msg: Message, raw: str) -> tuple[Any, ...]:
    """The last columns of the contract status and period rows: hash, data, raw, transport."""
    return (_name(msg.data, "contract_hash"), Jsonb(msg.data), raw, msg.epoch, msg.seq, msg.ts)


def contract_status_row(msg: Message, raw: str) -> tuple[Any, ...]:
    """A device_contract_status row (kind ``contract``), keyed by (agent, contract)."""
    d = msg.data
    return (
        *_status_common(msg),
        _instant(d, "start"),
        _instant(d, "end"),
        _instant(d, "at"),
        _number(d, "remaining_service_s"),
        _number(d, "data_coverage", required=False),
        *_contract_tail(msg, raw),
    )


def contract_period_row(msg: Message, raw: str) -> tuple[Any, ...]:
    """A device_contract_periods row (kind ``contract_period``), keyed by contract + period."""
    d = msg.data
    revision = _integer(d, "revision")
    if not 0 <= revision <= 2**31 - 1:
        raise RowError("revision: out of range")
    return (
        *_status_common(msg),
        revision,
        _instant(d, "start"),
        _instant(d, "end"),
        _instant(d, "at"),
        _number(d, "data_coverage", required=False),
        *_contract_tail(msg, raw),
    )


def contract_alert_row(msg: Message, raw: str) -> tuple[Any, ...]:
    """A device_contract_alerts row (kind ``contract_alert``), keyed by (agent, alert_id)."""
    d = msg.data
    return (
        msg.agent,
        _name(d, "alert_id"),
        _name(d, "alert"),
        _name(d, "contract"),
        _text(d.get("period")),
        _name(d, "term"),
        _name(d, "kpi"),
        _name(d, "level"),
        _number(d, "threshold"),
        _instant(d, "at"),
        _name(d, "state"),
        _text(d.get("previous")),
        _number(d, "so_far", required=False),
        _number(d, "budget", required=False),
        _text(d.get("budget_unit")),
        _text(d.get("machine")),
        _text(d.get("event_id")),
        Jsonb(d),
        raw,
        msg.epoch,
        msg.seq,
        msg.ts,
    )


def signed_row(msg: Message, raw: str) -> tuple[Any, ...] | None:
    """A signed_records row when the message carries a proof (else None)."""
    if not msg.signed or msg.seq is None:
        return None
    return (msg.agent, msg.epoch, msg.seq, msg.kind, msg.ts, msg.chained, raw)
