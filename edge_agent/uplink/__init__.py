"""MQTT uplink: store-and-forward publishing of the buffer's outbox (paho-mqtt 2.2).

Public API (see ``docs/pipeline.md``): :class:`Uplink`, :class:`MqttConfig`,
:func:`parse_mqtt`, :class:`TopicTemplates`. Threading model and delivery
guarantees are documented in :mod:`edge_agent.uplink.client` and
:mod:`edge_agent.uplink.publisher`.
"""

from edge_agent.uplink.config import (
    DrainOrder,
    MqttConfig,
    MqttProtocol,
    SessionMode,
    Transport,
    parse_mqtt,
)
from edge_agent.uplink.publisher import Uplink
from edge_agent.uplink.topics import TopicTemplates

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
