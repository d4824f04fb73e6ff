"""Load and validate the agent's TOML configuration as a whole.

One file describes the agent (identity, site, state directory), storage,
the MQTT uplink, reporting windows, devices (delegated to the driver chosen
by ``protocol``), machines (signals and KPI parameters) and outcome
contracts over those machines. Everything is validated before anything
starts: every problem is collected with the file, the dotted key path and
what was expected, unknown keys are errors, and cross-references (a machine
reading ``press1.speed``, a contract naming a machine) are checked.
:func:`load_config` raises :class:`~edge_agent.errors.ConfigError` carrying
all problems, or returns an immutable :class:`AgentConfig`. No network or
device I/O happens here.

Size: just over 400 lines because it is the one place where the sections are assembled
and cross-checked (machines against devices, contracts against machines); each section's
own parsing already lives in its module (buffer.config, telemetry.policy, drivers).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from drivers import registry
from drivers.base import DeviceConfig
from edge_agent import compact
from edge_agent.buffer import StorageConfig, parse_storage
from edge_agent.configkit import Issues, Table, load_toml
from edge_agent.contracts import REPORTING_CONTRACT, Contract, parse_contract, reporting_contract
from edge_agent.errors import ConfigError
from edge_agent.ingest.config import IngestConfig, parse_ingest
from edge_agent.kpi.calendar import WindowKind
from edge_agent.machines import MachineConfig, parse_machine
from edge_agent.publishmap import PublishMap
from edge_agent.telemetry import POLICY_KEYS, PublishPolicy, parse_publish_policy
from edge_agent.uplink import MqttConfig, parse_mqtt
from edge_agent.uplink.sparkplug.catalog import check_ids

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
# In the order they are listed by default (docs, check-config).
WINDOW_KINDS = (WindowKind.HOUR, WindowKind.SHIFT, WindowKind.DAY, WindowKind.MONTH)
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSection:
    """``[agent]``: who this agent is and where it keeps its state."""

    id: str
    site: str
    area: str
    state_dir: Path
    log_level: str = "info"
    status_interval_s: float = 15.0
    status_tags_max: int = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportingConfig:
    """``[reporting]``: which KPI windows run live and how often 'so far' records go out."""

    interval_s: float = 60.0
    allowed_lateness_s: float = 900.0
    windows: tuple[WindowKind, ...] = WINDOW_KINDS
    contract_start: datetime | None = None
    contract_end: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    """``[health]``: health telemetry cadence."""

    interval_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryConfig:
    """``[telemetry]``: cadence of per-device tag-value messages."""

    interval_s: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """The whole validated configuration."""

    file: Path
    agent: AgentSection
    storage: StorageConfig
    mqtt: MqttConfig
    reporting: ReportingConfig
    health: HealthConfig
    telemetry: TelemetryConfig
    devices: Mapping[str, DeviceConfig]
    ingest: IngestConfig = field(default_factory=IngestConfig)
    publish: Mapping[tuple[str, str], PublishPolicy] = field(default_factory=dict)
    machines: Mapping[str, MachineConfig] = field(default_factory=dict)
    contracts: Mapping[str, Contract] = field(default_factory=dict)


def _name_problem(kind: str) -> Any:
    def check(name: str) -> str | None:
        if _NAME.match(name):
            return None
        return f"{kind} name {name!r}: use letters, digits, '_' or '-' (it appears in MQTT topics)"

    return check


def _parse_agent(table: Table | None, base_dir: Path, issues: Issues) -> AgentSection:
    t = table or Table({}, "agent", issues)
    if table is None:
        issues.add("agent", "missing, expected a table with at least id and site")
    agent_id = t.get_str("id", check=_name_problem("agent id"))
    site = t.get_str("site", check=_name_problem("site"))
    area = t.get_str("area", "", nonempty=False)
    # systemd's StateDirectory= sets $STATE_DIRECTORY; an explicit key wins.
    default_state = os.environ.get("STATE_DIRECTORY", "state")
    state_raw = t.get_str("state_dir", default_state)
    state_dir = Path(state_raw)
    if not state_dir.is_absolute():
        state_dir = (base_dir / state_dir).resolve()
    level = t.get_str("log_level", "info", choices=LOG_LEVELS)
    status_interval = t.get_float("status_interval_s", 15.0, min=0.5, max=3600)
    status_tags_max = t.get_int("status_tags_max", 1000, min=0, max=1_000_000)
    t.finish()
    return AgentSection(
        id=agent_id,
        site=site,
        area=area,
        state_dir=state_dir,
        log_level=level,
        status_interval_s=status_interval,
        status_tags_max=status_tags_max,
    )


def _parse_instant(t: Table, key: str) -> datetime | None:
    if not t.has(key):
        return None
    raw = t.get_raw(key)
    if isinstance(raw, datetime) and raw.tzinfo is not None:
        return raw
    t.error(key, "expected an offset date-time such as 2026-01-01T00:00:00Z")
    return None


def _parse_reporting(table: Table | None, issues: Issues) -> ReportingConfig:
    t = table or Table({}, "reporting", issues)
    interval = t.get_float("interval_s", 60.0, min=1.0, max=86400)
    lateness = t.get_float("allowed_lateness_s", 900.0, min=0.0, max=7 * 86400)
    windows = t.get_list(
        "windows",
        lambda v: WindowKind(v) if v in WINDOW_KINDS else None,
        list(WINDOW_KINDS),
        expected="one of " + ", ".join(repr(k.value) for k in WINDOW_KINDS),
    )
    start = _parse_instant(t, "contract_start")
    end = _parse_instant(t, "contract_end")
    if (start is None) != (end is None):
        t.error(
            "contract_end" if end is None else "contract_start",
            "contract_start and contract_end go together",
        )
    elif start is not None and end is not None and end <= start:
        t.error("contract_end", "expected an instant after contract_start")
    t.finish()
    return ReportingConfig(
        interval_s=interval,
        allowed_lateness_s=lateness,
        windows=tuple(dict.fromkeys(windows)),
        contract_start=start,
        contract_end=end,
    )


def _split_policy_keys(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the driver-independent publishing keys from the driver's own keys."""
    policy = {k: v for k, v in raw.items() if k in POLICY_KEYS}
    rest = {k: v for k, v in raw.items() if k not in POLICY_KEYS}
    return policy, rest


def _parse_devices(
    root: Table, issues: Issues, state_dir: Path
) -> tuple[dict[str, DeviceConfig], PublishMap]:
    specs = registry()
    devices: dict[str, DeviceConfig] = {}
    publish = PublishMap()
    for name, dev in root.tables("devices"):
        if not _NAME.match(name):
            issues.add(dev.path, _name_problem("device")(name))
        protocol = dev.data.get("protocol")
        if not isinstance(protocol, str) or protocol not in specs:
            dev.get_str("protocol", choices=tuple(sorted(specs)))
            continue
        # Publishing policy keys are the same for every protocol: read them here so
        # drivers stay protocol-only, then hand the driver a table without them.
        dev_policy_raw, dev_rest = _split_policy_keys(dev.data)
        device_default = parse_publish_policy(Table(dev_policy_raw, dev.path, issues), default=None)
        tags_raw = dev_rest.get("tags")
        tag_policies: dict[str, PublishPolicy | None] = {}
        if isinstance(tags_raw, dict):
            cleaned: dict[str, Any] = {}
            for tag, tag_raw in tags_raw.items():
                if isinstance(tag_raw, dict) and POLICY_KEYS.isdisjoint(tag_raw):
                    # The common case: nothing to take out, no copy (12,500 tags on a
                    # large gateway; the garbage of copies stays in the process's RSS).
                    cleaned[tag] = tag_raw
                elif isinstance(tag_raw, dict):
                    pol_raw, tag_rest = _split_policy_keys(tag_raw)
                    tag_policies[tag] = parse_publish_policy(
                        Table(pol_raw, f"{dev.path}.tags.{tag}", issues), default=device_default
                    )
                    cleaned[tag] = tag_rest
                else:
                    cleaned[tag] = tag_raw
            dev_rest = {**dev_rest, "tags": cleaned}
        config = specs[protocol].parse_device(name, Table(dev_rest, dev.path, issues))
        if "state_dir" in getattr(type(config), "__dataclass_fields__", {}):
            # Drivers that keep files per device (OPC-UA certificates, trust list) keep them
            # under the agent's state directory, not a directory of their own.
            config = dataclasses.replace(cast(Any, config), state_dir=state_dir)
        devices[name] = config
        publish.add_device(name, device_default, config.tag_names, tag_policies)
    for protocol, spec in specs.items():
        if spec.check_devices is None:
            continue
        for key, message in spec.check_devices(
            [d for d in devices.values() if d.protocol == protocol]
        ):
            issues.add(key, message)
    if not devices and not issues.items:
        issues.add("devices", "no devices configured, expected at least one [devices.<name>] table")
    return devices, publish


def _check_refs(machines: Mapping[str, MachineConfig], root: Table, issues: Issues) -> None:
    """Report machine signals that name a device or tag missing from the file.

    Names are checked against the file itself, not against what parsed cleanly, so
    a tag with an error of its own is reported once (at the tag), not again here.
    """
    raw_devices = root.data.get("devices")
    declared: dict[str, list[str]] = {}
    if isinstance(raw_devices, dict):
        for dev_name, dev in raw_devices.items():
            tags = dev.get("tags") if isinstance(dev, dict) else None
            declared[dev_name] = list(tags) if isinstance(tags, dict) else []
    for name, machine in machines.items():
        for ref in (*machine.refs, *machine.answer_refs):
            device, tag = ref.device, ref.tag
            if device not in declared:
                issues.add(
                    f"machines.{name}",
                    f"reads {ref!r} but there is no device {device!r}"
                    f" (devices: {', '.join(sorted(declared)) or 'none'})",
                )
            elif tag not in declared[device]:
                known = ", ".join(declared[device])
                issues.add(
                    f"machines.{name}",
                    f"reads {ref!r} but device {device!r} has no tag {tag!r} (tags: {known})",
                )


def _parse_contracts(
    root: Table,
    machines: Mapping[str, MachineConfig],
    reporting: ReportingConfig,
    issues: Issues,
) -> dict[str, Contract]:
    """``[contracts.NAME]`` tables, plus the old ``[reporting] contract_start/end`` form."""
    profiles = {name: m.kpi for name, m in machines.items()}
    contracts: dict[str, Contract] = {}
    for name, ct in root.tables("contracts"):
        if not _NAME.match(name):
            issues.add(ct.path, _name_problem("contract")(name))
        contracts[name] = parse_contract(name, ct, profiles)
    if reporting.contract_start is not None and reporting.contract_end is not None:
        if REPORTING_CONTRACT in contracts:
            issues.add(
                "reporting.contract_start",
                f"is the contract {REPORTING_CONTRACT!r}, already defined by "
                f"[contracts.{REPORTING_CONTRACT}]: keep one of the two",
            )
        else:
            contracts[REPORTING_CONTRACT] = reporting_contract(
                reporting.contract_start, reporting.contract_end, list(machines)
            )
    return contracts


def load_config(path: str | Path) -> AgentConfig:
    """Load, validate and return the configuration, or raise ConfigError with every problem.

    Whatever the file holds, the only exception is :class:`ConfigError`: input the
    validators did not foresee (a bug, since every getter checks types) is reported
    as an issue too, with the traceback at DEBUG, so ``check-config`` exits 2 and a
    reload keeps the running configuration instead of stopping the agent.
    """
    file = Path(path)
    issues = Issues(str(file))
    try:
        return _load(file, issues)
    except ConfigError:
        raise
    except RecursionError as exc:
        issues.add("", "nested too deeply to validate")
        raise ConfigError(issues.items) from exc
    except Exception as exc:
        log.debug("Unexpected error while validating %s", file, exc_info=True)
        issues.add(
            "",
            f"could not be validated ({type(exc).__name__}: {exc}); "
            "this is an edge-agent bug, please report it with the file",
        )
        raise ConfigError(issues.items) from exc


def _load(file: Path, issues: Issues) -> AgentConfig:
    data = load_toml(file, issues)
    issues.raise_if_any()
    root = Table(data, "", issues)
    base_dir = file.resolve().parent
    agent = _parse_agent(root.table("agent"), base_dir, issues)
    storage = parse_storage(root.table("storage"), state_dir=agent.state_dir)
    mqtt = parse_mqtt(root.table("mqtt"), base_dir=base_dir)
    reporting = _parse_reporting(root.table("reporting"), issues)
    health_t = root.table("health") or Table({}, "health", issues)
    health = HealthConfig(interval_s=health_t.get_float("interval_s", 60.0, min=1.0, max=86400))
    health_t.finish()
    tele_t = root.table("telemetry") or Table({}, "telemetry", issues)
    telemetry = TelemetryConfig(interval_s=tele_t.get_float("interval_s", 1.0, min=0.1, max=86400))
    tele_t.finish()
    ingest = parse_ingest(root.table("ingest"))
    devices, publish = _parse_devices(root, issues, agent.state_dir)
    machines: dict[str, MachineConfig] = {}
    for name, mt in root.tables("machines"):
        if not _NAME.match(name):
            issues.add(mt.path, _name_problem("machine")(name))
        machine = parse_machine(name, mt)
        if machine is not None:
            machines[name] = machine
    _check_refs(machines, root, issues)
    contracts = _parse_contracts(root, machines, reporting, issues)
    if mqtt.sparkplug is not None:
        for key, message in check_ids(mqtt.sparkplug, devices, machines, contracts):
            issues.add(key, message)
    root.finish()
    issues.raise_if_any()
    return AgentConfig(
        file=file,
        agent=agent,
        storage=storage,
        mqtt=mqtt,
        reporting=reporting,
        health=health,
        telemetry=telemetry,
        devices=devices,
        ingest=ingest,
        publish=publish,
        machines=machines,
        contracts=contracts,
    )


def load_config_compact(path: str | Path) -> AgentConfig:
    """:func:`load_config` for the long-running agent: the result in fresh, dense memory.

    Parsing a gateway's TOML (12,500 tag tables) builds a ~15 MB parse tree while the
    configuration objects are created among its pieces; once the tree is freed, those
    few live objects keep most of its memory arenas from being returned to the OS
    (measured: 47 MB RSS after loading, 40 MB with this). So the sections that can be
    pickled are copied by :mod:`edge_agent.compact` after the original is gone, in one
    graph (an object two sections share, like each tag's name in its device and in
    ``publish``, stays one object) with equal scalars shared. Sections holding
    compiled expressions (machines) cannot be pickled and are kept as they are: they
    are small. Same value as :func:`load_config` (``==``).
    """
    config = load_config(path)
    picklable: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            kept[f.name] = value
        else:
            picklable[f.name] = value
    blobs = compact.dump(picklable)
    del config, value, picklable
    gc.collect()  # the parse tree and the originals are gone before the copies are made
    fresh: dict[str, Any] = compact.load(*blobs)
    del blobs
    return AgentConfig(**kept, **fresh)
