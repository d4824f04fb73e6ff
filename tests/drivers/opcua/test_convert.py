"""Unit tests of DataValue -> Reading conversion: quality mapping, types, timestamps."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from asyncua import ua

from drivers.opcua.convert import quality_of, reading_from, to_value
from edge_agent.errors import DecodeError
from edge_agent.model import Quality

TS = dt.datetime(2026, 11, 26, 12, 0, 0, 250000, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (42, 42),
        (ua.Int16(-5), -5),
        (2.5, 2.5),
        ("widget", "widget"),
        (TS, "2026-11-26T12:00:00.250000+00:00"),
        (dt.datetime(2026, 1, 1, 0, 0), "2026-01-01T00:00:00+00:00"),
        (b"\x01\x02", "AQI="),
        (ua.LocalizedText("Run"), "Run"),
        (ua.NodeId("M1", 2), "ns=2;s=M1"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ([1.5, 2.5], [1.5, 2.5]),
        ([True, False], [True, False]),
        ([TS], ["2026-11-26T12:00:00.250000+00:00"]),
        (None, None),
    ],
)
def test_value_types_map_to_flat_values(raw: object, expected: object) -> None:
    """OPC-UA scalar and array types map to bool/int/float/str/list; DateTime to ISO UTC text."""
    value = to_value(raw)
    assert value == expected
    assert type(value) is type(expected)


def test_structures_are_decode_errors() -> None:
    """A structure without a flat representation raises DecodeError."""
    with pytest.raises(DecodeError, match="unsupported"):
        to_value(ua.Range(Low=0.0, High=1.0))


@pytest.mark.parametrize(
    ("code", "quality", "reason"),
    [
        (ua.StatusCodes.Good, Quality.GOOD, ""),
        (ua.StatusCodes.UncertainLastUsableValue, Quality.STALE, "UncertainLastUsableValue"),
        (ua.StatusCodes.BadNoCommunication, Quality.BAD, "BadNoCommunication"),
        (ua.StatusCodes.BadNodeIdUnknown | 0x0480, Quality.BAD, "BadNodeIdUnknown"),
    ],
)
def test_status_severity_maps_to_quality(code: int, quality: Quality, reason: str) -> None:
    """Good -> good, Uncertain -> stale, Bad -> bad; the reason is the status name."""
    assert quality_of(code) == (quality, reason)


def test_reading_carries_source_timestamp_and_drops_value_when_not_good() -> None:
    """A reading keeps the SourceTimestamp; a bad status yields no value and the status name."""
    good = ua.DataValue(ua.Variant(7, ua.VariantType.UInt32), SourceTimestamp=TS)
    r = reading_from("m1", "good", good, ts=1.0, mono=2.0)
    assert (r.value, r.quality, r.source_ts, r.ts, r.mono) == (
        7,
        Quality.GOOD,
        TS.timestamp(),
        1.0,
        2.0,
    )
    bad = ua.DataValue(
        StatusCode=ua.StatusCode(ua.StatusCodes.BadNoCommunication), SourceTimestamp=TS
    )
    r = reading_from("m1", "good", bad, ts=1.0, mono=2.0)
    assert (r.value, r.quality, r.reason) == (None, Quality.BAD, "BadNoCommunication")
    only_server = ua.DataValue(ua.Variant(1.0), ServerTimestamp=TS)
    assert reading_from("m1", "t", only_server, ts=1.0, mono=2.0).source_ts == TS.timestamp()


def test_unsupported_value_is_bad_reading_not_exception() -> None:
    """A structure value becomes a bad reading with the reason, so one tag cannot stop the link."""
    dv = ua.DataValue(ua.Variant(ua.Range(Low=0.0, High=1.0), ua.VariantType.ExtensionObject))
    r = reading_from("m1", "r", dv, ts=1.0, mono=2.0)
    assert r.quality is Quality.BAD
    assert "unsupported" in r.reason


def test_keepalive_keeps_subscription_audible_within_watchdog() -> None:
    """Keepalive count makes an idle subscription speak at least 3 times per watchdog period."""
    from drivers.opcua.requests import keepalive_count, subscription_parameters

    assert keepalive_count(1000, 30.0) == 10
    assert keepalive_count(100, 1.0) == 3
    assert keepalive_count(60_000, 30.0) == 1
    params = subscription_parameters(500, 30.0)
    assert params.RequestedPublishingInterval == 500.0
    assert params.RequestedMaxKeepAliveCount * 500 * 3 <= 30_000
    assert params.RequestedLifetimeCount >= 3 * params.RequestedMaxKeepAliveCount


def test_monitored_item_request_carries_sampling_queue_and_deadband() -> None:
    """A tag's sampling interval, queue size and deadband land in the request; filter optional."""
    from drivers.opcua.config import DeadbandType, OpcuaTag
    from drivers.opcua.requests import monitored_item_request

    tag = OpcuaTag(name="t", queue_size=5, deadband=2.5, deadband_type=DeadbandType.PERCENT)
    req = monitored_item_request(7, ua.NodeId("X", 2), tag, 1000, with_filter=True)
    params = req.RequestedParameters
    assert (params.ClientHandle, params.SamplingInterval, params.QueueSize) == (7, 1000.0, 5)
    assert params.Filter.DeadbandType == ua.DeadbandType.Percent
    assert params.Filter.DeadbandValue == 2.5
    plain = monitored_item_request(8, ua.NodeId("X", 2), tag, 1000, with_filter=False)
    assert not isinstance(plain.RequestedParameters.Filter, ua.DataChangeFilter)
    fast = OpcuaTag(name="f", sampling_interval_ms=50)
    assert (
        monitored_item_request(
            9, ua.NodeId(1), fast, 1000, with_filter=True
        ).RequestedParameters.SamplingInterval
        == 50.0
    )
