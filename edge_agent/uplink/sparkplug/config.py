"""``[mqtt.sparkplug]``: the Sparkplug B Edge Node identity and its session options.

Read only when ``[mqtt] payload = "sparkplug_b"``. :func:`parse_sparkplug`
validates through :class:`~edge_agent.configkit.Table` (every problem names its
dotted key path) and returns a frozen :class:`SparkplugConfig`; it does no I/O.
The Sparkplug identifiers become MQTT topic levels, so they are checked against
the Sparkplug 3.0 rules (UTF-8 without ``+``, ``/``, ``#``) and, stricter, the
agent's own name rule (letters, digits, ``_``, ``-``, ``.``), so an id that a
host application would reject or mangle fails ``check-config`` instead.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.configkit import Table

#: Sparkplug identifiers as accepted here (a subset of what the specification allows).
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
ID_RULE = "letters, digits, '_', '-' or '.' (starting with a letter or digit)"
MACHINE_PLACEHOLDER = "machine"
CONTRACT_PLACEHOLDER = "contract"


class DataQos(int, enum.Enum):
    """MQTT QoS of the Edge Node's own messages (births, data, device deaths)."""

    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SparkplugConfig:
    """Validated ``[mqtt.sparkplug]`` (see ``docs/sparkplug.md`` for each key).

    Attributes:
        group_id: Sparkplug Group ID (first topic level after ``spBv1.0``).
        edge_node_id: Edge Node ID; empty means the agent id.
        primary_host_id: Host id whose ``spBv1.0/STATE/<id>`` gates births; empty: none.
        machine_device_id: Template of a machine's Sparkplug device id (``{machine}``).
        contract_device_id: Template of a contract's Sparkplug device id (``{contract}``).
        qos: QoS of births, data and device deaths (the NDEATH will is always QoS 1).
        device_death_grace_s: How long a device reported down keeps its birth before
            DDEATH, beyond the time its last readings need to reach the outbox (one
            telemetry interval, plus its longest aggregate window): those readings (the
            bad ones of the loss included) are still its data.
    """

    group_id: str
    edge_node_id: str = ""
    primary_host_id: str = ""
    machine_device_id: str = "{machine}-machine"
    contract_device_id: str = "{contract}-contract"
    qos: DataQos = DataQos.AT_LEAST_ONCE
    device_death_grace_s: float = 2.0

    def node_id(self, agent_id: str) -> str:
        """The Edge Node ID in use (``edge_node_id`` or the agent id)."""
        return self.edge_node_id or agent_id

    def machine_device(self, machine: str) -> str:
        """The Sparkplug device id of a machine's KPI/stop device."""
        return self.machine_device_id.format_map({MACHINE_PLACEHOLDER: machine})

    def contract_device(self, contract: str) -> str:
        """The Sparkplug device id of a contract's status/alert device."""
        return self.contract_device_id.format_map({CONTRACT_PLACEHOLDER: contract})


def check_id(value: str) -> str | None:
    """Why ``value`` cannot be a Sparkplug identifier here, or None when it can."""
    if ID_PATTERN.match(value):
        return None
    return f"use {ID_RULE}: it is a Sparkplug topic level"


def _template_check(placeholder: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        try:
            parts = string.Formatter().parse(value)
            fields = [name for _lit, name, _spec, _conv in parts if name]
        except ValueError as exc:
            return f"invalid template: {exc}"
        if fields != [placeholder]:
            return (
                f"expected a template using {{{placeholder}}} exactly once,"
                f" e.g. '{{{placeholder}}}-{placeholder}'"
            )
        return check_id(value.replace(f"{{{placeholder}}}", "m"))

    return check


_check_template = _template_check(MACHINE_PLACEHOLDER)
_check_contract_template = _template_check(CONTRACT_PLACEHOLDER)


def parse_sparkplug(table: Table | None, parent: Table) -> SparkplugConfig | None:
    """Build a :class:`SparkplugConfig` from ``[mqtt.sparkplug]``.

    Args:
        table: The ``[mqtt.sparkplug]`` table, or ``None`` when absent (an error:
            ``group_id`` is required in Sparkplug mode).
        parent: The ``[mqtt]`` table, where the missing-table error is reported.

    Returns:
        The config, or ``None`` when the table is missing (the error is recorded).
    """
    if table is None:
        parent.error(
            "sparkplug",
            'missing, expected a table with group_id when payload = "sparkplug_b"',
        )
        return None
    t = table
    group_id = t.get_str("group_id", check=check_id)
    edge_node_id = t.get_str("edge_node_id", "", nonempty=False)
    if edge_node_id and (problem := check_id(edge_node_id)):
        t.error("edge_node_id", problem)
    primary = t.get_str("primary_host_id", "", nonempty=False)
    if primary and (problem := check_id(primary)):
        t.error("primary_host_id", problem)
    machine_device_id = t.get_str("machine_device_id", "{machine}-machine", check=_check_template)
    contract_device_id = t.get_str(
        "contract_device_id", "{contract}-contract", check=_check_contract_template
    )
    qos_raw = t.get_int("qos", 1, min=0, max=1)
    grace = t.get_float("device_death_grace_s", 2.0, min=0.0, max=3600.0)
    t.finish()
    return SparkplugConfig(
        group_id=group_id,
        edge_node_id=edge_node_id,
        primary_host_id=primary,
        machine_device_id=machine_device_id,
        contract_device_id=contract_device_id,
        qos=DataQos(qos_raw) if qos_raw in (0, 1) else DataQos.AT_LEAST_ONCE,
        device_death_grace_s=grace,
    )
