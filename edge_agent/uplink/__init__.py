"""MQTT uplink: store-and-forward publishing of the buffer's outbox (paho-mqtt 2.2).

Public API (see ``docs/pipeline.md``): :class:`Uplink`, :class:`MqttConfig`,
:func:`parse_mqtt`, :class:`TopicTemplates`. Threading model and delivery
guarantees are documented in :mod:`edge_agent.uplink.client` and
:mod:`edge_agent.uplink.publisher`.

The publisher (paho, asyncio, the buffer) is imported on first use: loading a
configuration needs only :mod:`.config` (``tests/edge_agent/test_lean_imports.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.lazy import lazy_members
from edge_agent.uplink.config import (
    DrainOrder,
    MqttConfig,
    MqttProtocol,
    SessionMode,
    Transport,
    parse_mqtt,
)
from edge_agent.uplink.topics import TopicTemplates

if TYPE_CHECKING:
    from edge_agent.uplink.publisher import Uplink

__getattr__ = lazy_members(
    globals(),
    {"Uplink": "edge_agent.uplink.publisher"},
)


__all__ = [
    "Uplink",
    "MqttConfig",
    "parse_mqtt",
    "TopicTemplates",
    "DrainOrder",
    "MqttProtocol",
    "SessionMode",
    "Transport",
]
