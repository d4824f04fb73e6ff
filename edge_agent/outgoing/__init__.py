"""Outgoing: messages on their way into the outbox.

:class:`~edge_agent.outgoing.staging.OutboxStaging` collects what the agent
publishes (KPI records, stop events, health, telemetry) and commits it to the
buffer's outbox, holding it in memory while the outbox cannot be written;
:class:`~edge_agent.outgoing.telemetry.TelemetryPump` turns the telemetry
engine's due messages into staged messages, a slice at a time.
"""
