"""edge-agent-collect: the fleet back office's collector, MQTT 5 into PostgreSQL.

A separate program in the same distribution (``pip install 'edge-agent[collector]'``),
with its own module tree: it shares only the payload schemas with the agent (shipped in
the wheel) and imports nothing from the agent's runtime, drivers or calculator.

What it does: subscribes with QoS 1 on a persistent MQTT 5 session (``$share/GROUP/...``
when several instances split the stream), validates every message against the JSON
Schemas, and stores KPI records (with revisions), stop events, telemetry, health and any
other kind into PostgreSQL, **idempotently** on ``(agent, epoch, seq)``, tracking per agent
the last sequence number, gaps (and their healing), duplicates and last contact.

Guarantees:

* A message is acknowledged to the broker (PUBACK) only after the transaction that stored
  it has committed. A collector killed at any point loses nothing: the broker re-delivers
  what was not acknowledged, and the ledger turns the re-delivery into a counted duplicate.
* Every message is either stored, recognised as a duplicate, or quarantined with its raw
  bytes and the reason; then acknowledged. Bad input never stops the collector.
* Connection loss to PostgreSQL or the broker is retried with backoff; a batch whose
  transaction failed is retried whole, unacknowledged, so nothing is lost or stored twice.

Modules: ``config`` (TOML), ``envelope`` and ``legacy`` (pure parsing), ``schemas``
(validation), ``sequence`` (pure gap bookkeeping), ``store`` (one transaction per batch),
``migrate`` (yoyo-migrations), ``mqtt`` (paho client, manual acks), ``collector`` (the loop),
``status`` and ``cli``.
"""
