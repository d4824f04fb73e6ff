"""Sparkplug value rules of the codec, checked through the independent test-time decoder."""

from __future__ import annotations

from typing import Any

import pytest

from edge_agent.uplink.sparkplug import codec
from edge_agent.uplink.sparkplug.catalog import DataType, MetricSpec
from tests.plugins.sparkplug import decode, payload_class, rebirth_command


def one(datatype: DataType, value: Any, *, birth: bool = False, unit: str = "") -> Any:
    """Encode one metric with the agent's codec, decode it with the independent decoder."""
    payload = codec.Payload(timestamp=1, seq=3)
    spec = MetricSpec("m", 7, datatype, unit)
    if birth:
        codec.add_birth_metric(payload, spec, value, 1000)
    else:
        codec.add_data_metric(payload, spec, value, 1000, historical=False)
    return decode("spBv1.0/g/DDATA/n/d", payload.SerializeToString()).metrics[0]


@pytest.mark.parametrize(
    ("datatype", "value", "field", "raw"),
    [
        (DataType.INT8, -23, "int_value", 233),
        (DataType.INT16, -30000, "int_value", 35536),
        (DataType.INT32, -1, "int_value", 0xFFFFFFFF),
        (DataType.INT64, -1, "long_value", 2**64 - 1),
        (DataType.UINT16, 65535, "int_value", 65535),
        (DataType.UINT64, 2**64 - 1, "long_value", 2**64 - 1),
    ],
)
def test_signed_integers_travel_as_twos_complement_of_their_width(
    datatype: DataType, value: int, field: str, raw: int
) -> None:
    """Signed values use their own width's two's complement in the unsigned fields (6.4.17)."""
    payload = codec.Payload()
    metric = payload.metrics.add(alias=1)
    assert codec.set_value(metric, datatype, value)
    parsed = payload_class().FromString(payload.SerializeToString())
    assert getattr(parsed.metrics[0], field) == raw
    assert codec.SETTERS[datatype] is not None


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (DataType.UINT16, 70000),
        (DataType.UINT16, -1),
        (DataType.INT16, 40000),
        (DataType.INT32, 1.5),
        (DataType.BOOLEAN, 2),
        (DataType.DOUBLE, "high"),
        (DataType.DATETIME, "not a time"),
    ],
)
def test_a_value_the_type_cannot_hold_is_null_with_bad_quality(
    datatype: DataType, value: Any
) -> None:
    """Out of range or of the wrong kind: not coerced, sent as null with Quality 0."""
    metric = one(datatype, value)
    assert metric.is_null is True
    assert metric.value is None
    assert metric.properties == {"Quality": 0}


def test_datetime_accepts_unix_seconds_and_iso_8601() -> None:
    """DateTime is UTC milliseconds from either form the outbox uses."""
    assert one(DataType.DATETIME, 1764190800.123).value == 1764190800123
    assert one(DataType.DATETIME, "2025-11-26T21:00:00.123Z").value == 1764190800123


def test_non_finite_json_strings_are_doubles_again() -> None:
    """The JSON outbox's "NaN"/"Infinity" become IEEE values, not strings or nulls."""
    assert one(DataType.DOUBLE, "Infinity").value == float("inf")
    assert one(DataType.DOUBLE, "-Infinity").value == float("-inf")


def test_birth_metric_has_name_alias_type_timestamp_and_unit() -> None:
    """Births carry name, alias, datatype, timestamp, value and the engUnit property."""
    metric = one(DataType.FLOAT, 12.5, birth=True, unit="°C")
    assert (metric.name, metric.alias, metric.datatype, metric.timestamp) == ("m", 7, 9, 1000)
    assert metric.value == 12.5
    assert metric.properties == {"engUnit": "°C"}


def test_data_metric_has_alias_only() -> None:
    """DATA metrics carry the alias and no name or datatype (specification 6.4.6)."""
    metric = one(DataType.UINT32, 5)
    assert (metric.name, metric.alias, metric.datatype, metric.value) == (None, 7, None, 5)


def test_ndeath_is_the_bdseq_alone_without_seq() -> None:
    """NDEATH: one Int64 bdSeq metric without alias, and no seq."""
    msg = decode("spBv1.0/g/NDEATH/n", codec.ndeath(42, 5))
    assert msg.seq is None
    assert [(m.name, m.datatype, m.value, m.alias) for m in msg.metrics] == [("bdSeq", 4, 42, None)]


def test_rebirth_requests_are_recognised() -> None:
    """Node Control/Rebirth = true is a rebirth request; false or garbage is not."""
    assert codec.is_rebirth_request(rebirth_command())
    no = payload_class()()
    no.metrics.add(name="Node Control/Rebirth", datatype=11, boolean_value=False)
    assert not codec.is_rebirth_request(bytes(no.SerializeToString()))
    assert not codec.is_rebirth_request(b"\xff\xff not protobuf")
