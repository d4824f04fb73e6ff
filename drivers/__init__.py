"""Protocol drivers. One module (or small sub-package) per protocol.

The registry maps the config's ``protocol`` value to a :class:`DriverSpec`
explicitly, never through import side effects. Drivers know nothing about
SQLite, MQTT or KPIs; protocol-library types never leave this package.
"""

from __future__ import annotations

from drivers.base import DriverSpec


def registry() -> dict[str, DriverSpec]:
    """Return the protocol name -> driver spec map.

    Imports are local so that ``edge-agent check-config`` on a Modbus-only
    file does not pay for importing asyncua (about 0.25 s and 40 MB).
    """
    from drivers import modbus, opcua

    specs = [*modbus.SPECS, *opcua.SPECS]
    return {spec.protocol: spec for spec in specs}


__all__ = ["DriverSpec", "registry"]
