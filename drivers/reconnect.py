"""A device's reconnect policy: ``reconnect_min_s`` / ``reconnect_max_s`` and a link's backoff.

While a link is down the agent knows nothing of its machines, so every second the
driver waits *after* the device came back is unknown time the device did not
cause. The policy therefore retries soon and never waits long:

* the first retry comes ``reconnect_min_s`` after a loss (jittered to half of it
  and up; default 0.2 s), the delay doubles per failed attempt up to
  ``reconnect_max_s``;
* ``reconnect_max_s`` defaults to the device's poll interval (``interval_ms``),
  kept within 0.5 to 30 s: once a device is back, the agent sees it again within
  about one poll interval (a TCP connect to a device that is away costs a refused
  SYN, cheaper than a poll);
* a link serving several devices (units behind one gateway, nodes of one OPC-UA
  session) uses the smallest of their values: the most demanding device wins.

The keys govern the link: a transport lost (refused, reset, closed), an OPC-UA session
lost. The Modbus driver's per-unit retry (one unit id silent behind a gateway whose
connection is fine) keeps its own backoff (1 s doubling up to 30 s): each retry of a
silent unit costs ``timeout_ms`` of the link's time, taken from its neighbours.
Pure: parsing and arithmetic, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge_agent.backoff import Backoff
from edge_agent.configkit import Table

DEFAULT_MIN_S = 0.2
MAX_DEFAULT_FLOOR_S = 0.5
MAX_DEFAULT_CAP_S = 30.0
LIMIT_S = 3600.0


def default_max_s(interval_ms: int) -> float:
    """``reconnect_max_s`` when not configured: the poll interval, within 0.5 to 30 s."""
    return min(MAX_DEFAULT_CAP_S, max(MAX_DEFAULT_FLOOR_S, interval_ms / 1000.0))


def parse_reconnect(t: Table, interval_ms: int) -> tuple[float, float]:
    """``(reconnect_min_s, reconnect_max_s)`` of a device table (problems recorded in ``t``)."""
    low = t.get_float("reconnect_min_s", DEFAULT_MIN_S, min=0.01, max=LIMIT_S)
    high = t.get_float(
        "reconnect_max_s", max(low, default_max_s(interval_ms)), min=0.01, max=LIMIT_S
    )
    valid = all(0.01 <= v <= LIMIT_S for v in (low, high))  # else already reported
    if t.has("reconnect_max_s") and valid and high < low:
        t.error("reconnect_max_s", f"must be >= reconnect_min_s ({low:g})")
    return low, high


def link_backoff(devices: Iterable[object]) -> Backoff:
    """The reconnect backoff of a link: the smallest ``reconnect_*`` of its devices.

    Devices without the attributes (a test driver) get the defaults of a fast poll.
    """
    lows = [float(getattr(d, "reconnect_min_s", DEFAULT_MIN_S)) for d in devices]
    highs = [float(getattr(d, "reconnect_max_s", MAX_DEFAULT_FLOOR_S)) for d in devices]
    low = min(lows, default=DEFAULT_MIN_S)
    return Backoff(initial_s=low, max_s=max(low, min(highs, default=MAX_DEFAULT_FLOOR_S)))
