"""Telemetry uplink policies: forward raw tag values for condition monitoring.

Per-tag policies (:mod:`~edge_agent.telemetry.policy`) say which readings are
forwarded (``every``, on ``change`` with deadband and heartbeat, or as
epoch-aligned ``aggregate`` windows); the engine
(:mod:`~edge_agent.telemetry.engine`) applies them and the batcher
(:mod:`~edge_agent.telemetry.batcher`) packs one device's values into one
message per publish interval. The package is pure: no I/O, no clock reads;
the runtime feeds readings in and hands the messages' ``data`` to the outbox.
"""

from edge_agent.telemetry.batcher import TelemetryMessage
from edge_agent.telemetry.engine import TelemetryEngine, TelemetryStats
from edge_agent.telemetry.policy import (
    POLICY_KEYS,
    PublishMode,
    PublishPolicy,
    parse_publish_policy,
)

__all__ = [
    "POLICY_KEYS",
    "PublishMode",
    "PublishPolicy",
    "TelemetryEngine",
    "TelemetryMessage",
    "TelemetryStats",
    "parse_publish_policy",
]
