"""RFC 3339 instants: the one parser the collector uses for envelope and record times.

``jsonschema``'s ``date-time`` format is silently unchecked unless an optional package is
installed, and PostgreSQL must never be the first to see a malformed time (one bad
string would fail a whole batch), so the collector checks times itself. Pure code.
"""

from __future__ import annotations

import datetime as dt
import re

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def parse_instant(text: object) -> dt.datetime | None:
    """An aware UTC datetime from RFC 3339 text, or None when it is not one."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    m = _RFC3339.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7) or ""
    micros = int((frac + "000000")[:6]) if frac else 0
    if m.group(8):
        offset = dt.timedelta(0)
    else:
        sign = 1 if m.group(9) == "+" else -1
        hours, minutes = int(m.group(10)), int(m.group(11))
        if hours > 23 or minutes > 59:
            return None
        offset = sign * dt.timedelta(hours=hours, minutes=minutes)
    if second == 60:  # a leap second is valid RFC 3339; PostgreSQL and Python have none
        second = 59
        micros = 999_999
    try:
        value = dt.datetime(
            year, month, day, hour, minute, second, micros, tzinfo=dt.timezone(offset)
        )
        return value.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):
        return None


def from_unix(seconds: float) -> str:
    """UNIX seconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (for records in the legacy numeric form)."""
    value = dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def is_date_time(text: object) -> bool:
    """The ``date-time`` format checker registered with jsonschema."""
    return not isinstance(text, str) or parse_instant(text) is not None
