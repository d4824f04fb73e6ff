"""Bundled PLC simulators: one machine model behind Modbus TCP, Modbus RTU and OPC-UA.

The package is independent of ``edge_agent`` and ``drivers`` on purpose: it is
the ground truth the agent is checked against, so it shares no code with it.
It depends only on the standard library, pymodbus (not used on the wire: the
Modbus front ends are our own thin servers), asyncua, tomli and cryptography.
"""

from __future__ import annotations

__all__ = ["NAMESPACE_URI"]

#: OPC-UA namespace URI of every simulated machine object.
NAMESPACE_URI = "urn:edge-agent:simulator"
