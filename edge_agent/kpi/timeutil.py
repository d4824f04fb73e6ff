"""UTC instant helpers: ISO 8601 text and TOML datetimes to integer epoch milliseconds.

All KPI arithmetic works on integer milliseconds since the Unix epoch so that
a month of one-second samples accumulates no float drift (spec §7). This
module only converts; it never reads the clock. Local wall times are resolved
with PEP 495 ``fold=0`` (spec §3.4).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MS_PER_S = 1000


def datetime_to_ms(value: dt.datetime, zone: ZoneInfo | None = None) -> int:
    """Convert an aware datetime (or a naive one in ``zone``, fold=0) to epoch ms.

    Raises:
        ValueError: when ``value`` is naive and no zone is given.
    """
    if value.tzinfo is None:
        if zone is None:
            raise ValueError("a UTC offset or 'Z' is required")
        value = value.replace(tzinfo=zone, fold=0)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * MS_PER_S + delta.microseconds // 1000


def parse_instant(text: str, zone: ZoneInfo | None = None) -> int:
    """Parse ISO 8601 text to epoch ms; without an offset the text is wall time in ``zone``.

    Raises:
        ValueError: for malformed text, or a naive time when ``zone`` is None.
    """
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    return datetime_to_ms(dt.datetime.fromisoformat(raw), zone)


def ms_to_datetime(ms: int) -> dt.datetime:
    """Epoch milliseconds to an aware UTC datetime."""
    return _EPOCH + dt.timedelta(milliseconds=ms)


def format_instant(ms: int) -> str:
    """Epoch milliseconds to ISO 8601 UTC with 'Z' (milliseconds only when non-zero)."""
    value = ms_to_datetime(ms)
    if ms % MS_PER_S:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % MS_PER_S:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_to_ms(seconds: float) -> int:
    """Seconds (possibly fractional) to the nearest integer millisecond."""
    return round(seconds * MS_PER_S)
