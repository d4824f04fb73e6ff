"""Turn OPC-UA DataValues into agent :class:`~edge_agent.model.Reading` objects.

This is the hot path of the driver (one call per data-change notification),
so scalar types take a dictionary-free fast path. It maps:

* status code severity: Good -> ``good``; Uncertain -> ``stale`` with the
  status name as reason and no value (the calculator must not count an
  uncertain piece counter); Bad -> ``bad`` with the status name as reason;
* values: Boolean -> ``bool``; every integer type -> ``int``; Float/Double ->
  ``float``; String -> ``str``; DateTime -> ISO 8601 string in UTC
  (``2026-11-26T21:10:00.250000+00:00``); ByteString -> base64 text;
  LocalizedText -> its text; NodeId/QualifiedName/GUID/StatusCode -> text;
  arrays -> lists of the converted elements. Anything else (structures) is a
  :class:`~edge_agent.errors.DecodeError` and the reading is bad.

``source_ts`` is the server's SourceTimestamp (falling back to the
ServerTimestamp when the server sends none). It does no I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

from asyncua import ua

from edge_agent.errors import DecodeError
from edge_agent.model import Quality, Reading, Value

_SEVERITY_SHIFT = 30
_UNCERTAIN = 1
_SCALARS = (bool, int, float, str)


def status_name(code: int) -> str:
    """Symbolic name of a status code value (``BadNodeIdUnknown``), or its hex form."""
    # The low 16 bits are info bits (overflow, limits); the name is in the high half.
    name: str = ua.StatusCode(ua.UInt32(code & 0xFFFF0000)).name
    return name or f"0x{code:08X}"


def quality_of(code: int) -> tuple[Quality, str]:
    """Map a status code value to a quality and a reason (empty when good)."""
    severity = (code >> _SEVERITY_SHIFT) & 0b11
    if severity == 0:
        return Quality.GOOD, ""
    if severity == _UNCERTAIN:
        return Quality.STALE, status_name(code)
    return Quality.BAD, status_name(code)


def _scalar(value: Any) -> bool | int | float | str | None:
    if value is None or type(value) in _SCALARS:
        return value  # type: ignore[no-any-return]
    # Subclasses (IntEnum values of enumerations, str subclasses) become plain builtins.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dt.datetime):
        stamp: dt.datetime = value
        if stamp.tzinfo is None:  # asyncua: naive datetimes are UTC
            stamp = stamp.replace(tzinfo=dt.timezone.utc)
        return stamp.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, ua.LocalizedText):
        return None if value.Text is None else str(value.Text)
    if isinstance(value, ua.NodeId | ua.QualifiedName):
        return value.to_string()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, ua.StatusCode):
        return str(value.name)
    raise DecodeError(f"unsupported OPC-UA value type {type(value).__name__}")


def to_value(value: Any) -> Value:
    """Convert a decoded Variant value to an agent value.

    Raises:
        DecodeError: For structures and other types without a flat representation.
    """
    if type(value) in _SCALARS:
        return value  # type: ignore[no-any-return]
    if isinstance(value, list):
        return [_scalar(v) for v in value]  # type: ignore[return-value]
    return _scalar(value)


def _epoch(stamp: dt.datetime | None) -> float | None:
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def reading_from(device: str, tag: str, dv: ua.DataValue, ts: float, mono: float) -> Reading:
    """Build the reading for one DataValue received at wall time ``ts``/monotonic ``mono``."""
    code = dv.StatusCode.value if dv.StatusCode is not None else 0
    source_ts = (
        _epoch(dv.SourceTimestamp) if dv.SourceTimestamp is not None else _epoch(dv.ServerTimestamp)
    )
    if code == 0:
        quality, reason = Quality.GOOD, ""
    else:
        quality, reason = quality_of(code)
    if quality is not Quality.GOOD:
        return Reading(
            device=device,
            tag=tag,
            value=None,
            ts=ts,
            mono=mono,
            quality=quality,
            reason=reason,
            source_ts=source_ts,
        )
    raw = dv.Value.Value if dv.Value is not None else None
    try:
        value = to_value(raw)
    except DecodeError as exc:
        return Reading(
            device=device,
            tag=tag,
            value=None,
            ts=ts,
            mono=mono,
            quality=Quality.BAD,
            reason=str(exc),
            source_ts=source_ts,
        )
    return Reading(device=device, tag=tag, value=value, ts=ts, mono=mono, source_ts=source_ts)
