"""The metric catalog: which Sparkplug devices and metrics the agent reports, and their types.

Compiled once from the agent configuration by :func:`build_catalog` (pure, no
I/O, no protobuf). The naming scheme, documented in ``docs/sparkplug.md``:

* **Edge Node metrics**: ``bdSeq`` and ``Node Control/Rebirth`` (Sparkplug's own,
  no alias), ``Properties/*`` (agent id, site, version) and ``Health/*`` (a fixed
  subset of the health message).
* **One device per configured PLC device** (Sparkplug device id = the device
  name): one metric per *published* tag (``publish`` other than ``none``) named
  after the tag, with the tag's engineering unit as the ``engUnit`` property. An
  ``aggregate`` tag is six metrics ``<tag>/min``, ``/max``, ``/mean``, ``/last``,
  ``/count``, ``/good_ratio`` (one value per closed window, stamped at its end).
* **One device per machine** (device id from ``machine_device_id``, default
  ``<machine>-machine``): ``KPI/<window kind>/<field>`` for every configured
  report window kind (``hour``, ``shift``, ``day``, ``month``, ``contract``) and
  ``Stop/<field>`` for the machine's stop events.

Datatypes: Modbus tags map from their register type (``int16`` to Int16 ...,
``float32`` to Float, scaled values to Double); OPC-UA variables declare no type
in the config, so theirs is learned from the first value seen (see
:class:`MetricSpec`). Aliases are numbered from 1 in catalog order, unique across
the Edge Node and stable while the configuration is unchanged.

Size: over 400 lines because the naming scheme, datatypes and id clash checks have one
source (docs/sparkplug.md follows it); contract devices are in contracts.py.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_agent.telemetry.policy import PublishMode
from edge_agent.uplink.sparkplug.config import check_id

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig
    from edge_agent.uplink.sparkplug.config import SparkplugConfig


class DataType(enum.IntEnum):
    """Sparkplug B basic datatypes (specification 6.4.16) used by the agent."""

    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14


#: Modbus register types (``drivers.modbus.codec.DataType`` values) to Sparkplug types.
MODBUS_TYPES: Mapping[str, DataType] = {
    "bool": DataType.BOOLEAN,
    "bit": DataType.BOOLEAN,
    "int16": DataType.INT16,
    "uint16": DataType.UINT16,
    "int32": DataType.INT32,
    "uint32": DataType.UINT32,
    "int64": DataType.INT64,
    "uint64": DataType.UINT64,
    "float32": DataType.FLOAT,
    "float64": DataType.DOUBLE,
    "string": DataType.STRING,
}

NUMERIC_SCALABLE = frozenset(
    {"int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"}
)

#: The statistics of an ``aggregate`` tag window, with their types (None: the tag's type).
AGGREGATE_FIELDS: tuple[tuple[str, DataType | None], ...] = (
    ("min", DataType.DOUBLE),
    ("max", DataType.DOUBLE),
    ("mean", DataType.DOUBLE),
    ("last", None),
    ("count", DataType.INT64),
    ("good_ratio", DataType.DOUBLE),
)

#: Numeric fields of a KPI record (kpi-spec 3.12) published as ``KPI/<kind>/<field>``.
KPI_NUMBERS: tuple[tuple[str, DataType], ...] = (
    ("availability", DataType.DOUBLE),
    ("performance", DataType.DOUBLE),
    ("quality", DataType.DOUBLE),
    ("oee", DataType.DOUBLE),
    ("availability_if_unknown_down", DataType.DOUBLE),
    ("performance_capped", DataType.DOUBLE),
    ("sla_availability", DataType.DOUBLE),
    ("data_coverage", DataType.DOUBLE),
    ("calendar_time_s", DataType.DOUBLE),
    ("planned_time_s", DataType.DOUBLE),
    ("excluded_time_s", DataType.DOUBLE),
    ("non_scheduled_time_s", DataType.DOUBLE),
    ("unknown_time_s", DataType.DOUBLE),
    ("running_time_s", DataType.DOUBLE),
    ("micro_stop_time_s", DataType.DOUBLE),
    ("operating_time_s", DataType.DOUBLE),
    ("downtime_breakdown_s", DataType.DOUBLE),
    ("downtime_other_s", DataType.DOUBLE),
    ("downtime_total_s", DataType.DOUBLE),
    ("mtbf_s", DataType.DOUBLE),
    ("mttr_s", DataType.DOUBLE),
    ("actual_cycle_time_s", DataType.DOUBLE),
    ("throughput_per_h", DataType.DOUBLE),
    ("stops", DataType.INT64),
    ("micro_stops", DataType.INT64),
    ("failures", DataType.INT64),
    ("total_count", DataType.INT64),
    ("good_count", DataType.INT64),
    ("unattributed_total_count", DataType.INT64),
    ("out_of_plan_total_count", DataType.INT64),
    ("out_of_plan_good_count", DataType.INT64),
)

#: Identity and evidence fields of a KPI record, as ``KPI/<kind>/<field>``.
KPI_IDENTITY: tuple[tuple[str, DataType], ...] = (
    ("window", DataType.STRING),
    ("start", DataType.DATETIME),
    ("end", DataType.DATETIME),
    ("revision", DataType.INT64),
    ("final", DataType.BOOLEAN),
    ("flags", DataType.STRING),
    ("downtime_by_code", DataType.STRING),
)

#: Fields of a stop event, as ``Stop/<field>``.
STOP_FIELDS: tuple[tuple[str, DataType], ...] = (
    ("event_id", DataType.STRING),
    ("start", DataType.DATETIME),
    ("end", DataType.DATETIME),
    ("duration_s", DataType.DOUBLE),
    ("open", DataType.BOOLEAN),
    ("category", DataType.STRING),
    ("code", DataType.STRING),
    ("fault_name", DataType.STRING),
)

#: Edge Node metrics taken from the health message: (metric, path in ``data``, type).
HEALTH_FIELDS: tuple[tuple[str, tuple[str, ...], DataType], ...] = (
    ("Health/uptime_s", ("uptime_s",), DataType.DOUBLE),
    ("Health/cpu_percent", ("cpu_percent",), DataType.DOUBLE),
    ("Health/rss_bytes", ("rss_bytes",), DataType.INT64),
    ("Health/disk_free_bytes", ("disk_free_bytes",), DataType.INT64),
    ("Health/cpu_temp_c", ("cpu_temp_c",), DataType.DOUBLE),
    ("Health/clock_synced", ("clock_synced",), DataType.BOOLEAN),
    ("Health/buffer/backlog", ("buffer", "backlog"), DataType.INT64),
    ("Health/buffer/db_bytes", ("buffer", "db_bytes"), DataType.INT64),
    ("Health/buffer/disk_full", ("buffer", "disk_full"), DataType.BOOLEAN),
    ("Health/pipeline/dropped_readings", ("pipeline", "dropped_readings"), DataType.INT64),
)

#: Static Edge Node metrics (their values come from the agent identity).
NODE_INFO = ("Properties/agent", "Properties/site", "Properties/version")

#: The telemetry engine's default wait for late readings of an aggregate window.
AGGREGATE_GRACE_S = 0.5

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
WINDOW_KINDS_WITH_CONTRACT = ("hour", "shift", "day", "month", "contract")


class DeviceKind(str, enum.Enum):
    """What a Sparkplug device stands for."""

    PLC = "plc"  # a configured device; born and dead with its communication
    MACHINE = "machine"  # a machine's KPIs and stops; alive while the agent is
    CONTRACT = "contract"  # a contract's status, period records and alerts; alive as MACHINE


@dataclass(slots=True)
class MetricSpec:
    """One metric: name, alias and datatype (a learned type is set once, in place).

    Attributes:
        name: Sparkplug metric name (``/`` separates folders in host applications).
        alias: Alias, unique across the Edge Node.
        datatype: Sparkplug datatype; None until learned from a value (OPC-UA tags).
        unit: Engineering unit, sent as the ``engUnit`` property in births.
    """

    name: str
    alias: int
    datatype: DataType | None
    unit: str = ""


@dataclass(slots=True)
class DeviceSpec:
    """One Sparkplug device and its metrics by name, in birth order.

    ``flush_s`` bounds how long a reading of the device can take to reach the outbox:
    one telemetry interval, plus its longest aggregate window and the engine's grace.
    """

    device_id: str
    source: str
    kind: DeviceKind
    metrics: dict[str, MetricSpec] = field(default_factory=dict)
    flush_s: float = 0.0


@dataclass(slots=True)
class Catalog:
    """Every device and metric of the Edge Node.

    Attributes:
        node_metrics: Edge Node metrics by name (``Properties/*``, ``Health/*``).
        devices: Devices by Sparkplug device id, in birth order.
        plc: PLC devices by configured device name.
        machines: Machine devices by machine name.
        info: Values of the ``Properties/*`` metrics.
        window_kinds: KPI window kinds that have metrics.
        contracts: Contract devices by contract name (:mod:`.contracts`).
    """

    node_metrics: dict[str, MetricSpec]
    devices: dict[str, DeviceSpec]
    plc: dict[str, DeviceSpec]
    machines: dict[str, DeviceSpec]
    info: dict[str, str]
    window_kinds: tuple[str, ...]
    contracts: dict[str, DeviceSpec] = field(default_factory=dict)

    def signature(self) -> tuple[Any, ...]:
        """What a rebirth must announce: ids, names, aliases, types, units."""
        return (
            tuple((m.name, m.alias, m.datatype, m.unit) for m in self.node_metrics.values()),
            tuple(
                (
                    d.device_id,
                    tuple((m.name, m.alias, m.datatype, m.unit) for m in d.metrics.values()),
                )
                for d in self.devices.values()
            ),
            tuple(sorted(self.info.items())),
        )


def modbus_type(tag: Any) -> DataType | None:
    """The Sparkplug type of a Modbus tag config (duck-typed: ``dtype``, ``scale``, ``offset``)."""
    dtype = getattr(getattr(tag, "dtype", None), "value", None)
    if dtype is None:
        return None
    scaled = getattr(tag, "scale", 1.0) != 1.0 or getattr(tag, "offset", 0.0) != 0.0
    if scaled and dtype in NUMERIC_SCALABLE:
        return DataType.DOUBLE  # scale and offset turn the value into a float
    return MODBUS_TYPES.get(str(dtype))


def value_type(value: object) -> DataType | None:
    """The Sparkplug type a value of unknown declared type is given (None for null)."""
    if isinstance(value, bool):
        return DataType.BOOLEAN
    if isinstance(value, int):
        return DataType.INT64
    if isinstance(value, float):
        return DataType.DOUBLE
    if value is None:
        return None
    return DataType.STRING  # strings, and lists as their JSON text


class _Aliases:
    def __init__(self) -> None:
        self.next = 1

    def take(self) -> int:
        alias, self.next = self.next, self.next + 1
        return alias


def _tags_of(device: Any) -> dict[str, Any]:
    return {t.name: t for t in getattr(device, "tags", ())}


def _plc_device(
    name: str,
    device: Any,
    policies: Iterable[tuple[str, PublishMode, float]],
    aliases: _Aliases,
    interval_s: float,
) -> DeviceSpec:
    spec = DeviceSpec(device_id=name, source=name, kind=DeviceKind.PLC, flush_s=interval_s)
    tags = _tags_of(device)
    for tag, mode, aggregate_s in policies:
        cfg = tags.get(tag)
        unit = str(getattr(cfg, "unit", "") or "")
        dtype = modbus_type(cfg) if cfg is not None else None
        if mode is PublishMode.AGGREGATE:
            window = interval_s + aggregate_s + AGGREGATE_GRACE_S
            spec.flush_s = max(spec.flush_s, window)
            for stat, stat_type in AGGREGATE_FIELDS:
                name_ = f"{tag}/{stat}"
                typ = stat_type if stat_type is not None else dtype
                unit_ = "" if stat in ("count", "good_ratio") else unit
                spec.metrics[name_] = MetricSpec(name_, aliases.take(), typ, unit_)
        else:
            spec.metrics[tag] = MetricSpec(tag, aliases.take(), dtype, unit)
    return spec


def _machine_device(
    device_id: str, machine: str, kinds: Iterable[str], aliases: _Aliases
) -> DeviceSpec:
    spec = DeviceSpec(device_id=device_id, source=machine, kind=DeviceKind.MACHINE)
    for kind in kinds:
        for name, dtype in (*KPI_IDENTITY, *KPI_NUMBERS):
            metric = f"KPI/{kind}/{name}"
            unit = "s" if name.endswith("_s") else ""
            spec.metrics[metric] = MetricSpec(metric, aliases.take(), dtype, unit)
    for name, dtype in STOP_FIELDS:
        metric = f"Stop/{name}"
        spec.metrics[metric] = MetricSpec(
            metric, aliases.take(), dtype, "s" if name == "duration_s" else ""
        )
    return spec


def build_catalog(config: AgentConfig, sparkplug: SparkplugConfig, *, version: str) -> Catalog:
    """Compile the catalog of an agent configuration (pure).

    Args:
        config: The validated agent configuration.
        sparkplug: Its ``[mqtt.sparkplug]`` section.
        version: The agent version (``Properties/version``).
    """
    aliases = _Aliases()
    node: dict[str, MetricSpec] = {}
    for name in NODE_INFO:
        node[name] = MetricSpec(name, aliases.take(), DataType.STRING)
    for name, _path, dtype in HEALTH_FIELDS:
        node[name] = MetricSpec(name, aliases.take(), dtype)
    by_device: dict[str, list[tuple[str, PublishMode, float]]] = {}
    for (device_name, tag), policy in config.publish.items():
        by_device.setdefault(device_name, []).append((tag, policy.mode, policy.aggregate_s))
    devices: dict[str, DeviceSpec] = {}
    plc: dict[str, DeviceSpec] = {}
    for name, device in config.devices.items():
        policies = by_device.get(name)
        if not policies:
            continue  # nothing published: no Sparkplug device (its values only feed KPIs)
        order = {t: i for i, t in enumerate(getattr(device, "tag_names", ()))}
        policies.sort(key=lambda p: order.get(p[0], len(order)))
        spec = _plc_device(name, device, policies, aliases, config.telemetry.interval_s)
        devices[spec.device_id] = plc[name] = spec
    kinds: list[str] = [k.value for k in config.reporting.windows]
    if config.reporting.contract_start is not None:
        kinds.append("contract")
    kinds = [k for k in WINDOW_KINDS_WITH_CONTRACT if k in kinds]
    machines: dict[str, DeviceSpec] = {}
    for name in config.machines:
        spec = _machine_device(sparkplug.machine_device(name), name, kinds, aliases)
        devices[spec.device_id] = machines[name] = spec
    from edge_agent.uplink.sparkplug.contracts import contract_devices  # (imports this module)

    contracts = contract_devices(config.contracts, sparkplug.contract_device, aliases.take)
    for spec in contracts.values():
        devices[spec.device_id] = spec
    info = {
        "Properties/agent": config.agent.id,
        "Properties/site": config.agent.site,
        "Properties/version": version,
    }
    return Catalog(
        node_metrics=node,
        devices=devices,
        plc=plc,
        machines=machines,
        info=info,
        window_kinds=tuple(kinds),
        contracts=contracts,
    )


def check_ids(
    sparkplug: SparkplugConfig,
    devices: Iterable[str],
    machines: Iterable[str],
    contracts: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """Device id clashes, as ``(key path, message)`` for the config loader.

    Sparkplug device ids must be unique within the Edge Node, and ids that differ
    only in case are to be avoided (specification 5.2): a machine device id equal
    (ignoring case) to a PLC device name or another machine's id is an error.
    """
    seen: dict[str, str] = {d.lower(): f"device {d!r}" for d in devices}
    problems: list[tuple[str, str]] = []
    for machine in machines:
        device_id = sparkplug.machine_device(machine)
        other = seen.get(device_id.lower())
        if other is not None:
            problems.append(
                (
                    "mqtt.sparkplug.machine_device_id",
                    f"machine {machine!r} becomes Sparkplug device {device_id!r}, which clashes"
                    f" with {other} (ignoring case); choose another template",
                )
            )
        seen[device_id.lower()] = f"machine {machine!r}"
    for contract in contracts:
        device_id = sparkplug.contract_device(contract)
        if (problem := check_id(device_id)) is not None:
            problems.append(
                (
                    "mqtt.sparkplug.contract_device_id",
                    f"contract {contract!r} becomes Sparkplug device {device_id!r}: {problem}",
                )
            )
        other = seen.get(device_id.lower())
        if other is not None:
            problems.append(
                (
                    "mqtt.sparkplug.contract_device_id",
                    f"contract {contract!r} becomes Sparkplug device {device_id!r}, which"
                    f" clashes with {other} (ignoring case); choose another template",
                )
            )
        seen[device_id.lower()] = f"contract {contract!r}"
    return problems
