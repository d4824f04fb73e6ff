"""The asyncua names this driver uses, imported from their defining modules.

asyncua re-exports these through ``asyncua`` and ``asyncua.ua`` implicitly,
which ``mypy --strict`` rejects; importing them here once keeps the other
modules typed. Nothing else lives here, and no asyncua type leaves ``drivers.opcua``.
"""

from __future__ import annotations

from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

__all__ = ["AttributeIds", "Client", "ObjectIds", "StatusCodes", "UaError", "UaStatusCodeError"]
