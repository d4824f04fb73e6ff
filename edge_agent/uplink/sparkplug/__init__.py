"""Sparkplug B 3.0 Edge Node for the uplink (``[mqtt] payload = "sparkplug_b"``).

The outbox stays JSON (one store for every payload format); rows are encoded to
Sparkplug B protobuf only when they are published. Modules, one job each:

* :mod:`.config`: ``[mqtt.sparkplug]`` (group id, edge node id, primary host, QoS);
* :mod:`.catalog`: the metric catalog (devices, metric names, datatypes, units,
  aliases) compiled once from the agent configuration; pure;
* :mod:`.rows`: outbox row (JSON ``data``) to metric values, per message kind; pure;
* :mod:`.codec`: Sparkplug payloads built with the generated Eclipse Tahu
  ``sparkplug_b_pb2`` module (``protobuf``); pure;
* :mod:`.bdseq`: the birth/death sequence number, persisted before each CONNECT;
* :mod:`.session`: the Edge Node state machine (births, deaths, ``seq``, rebirth,
  primary host STATE), driven by the publisher on the event loop.

Importing this package does not import ``protobuf``: JSON mode never loads it.
"""

from __future__ import annotations
