"""Health collector: real process/host figures, temperature fallback, slots, and the JSON Schema."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from drivers.base import ConfirmedBy, DeviceDiagnostics
from edge_agent import __version__
from edge_agent.buffer.outbox import OutboxRow
from edge_agent.ops.clock import ClockSource, ClockStatus
from edge_agent.ops.events import EventLog
from edge_agent.ops.health import SLOTS, HealthCollector, cpu_temperature
from edge_agent.uplink.payload import envelope

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    # health.schema.json refers to the pipeline's envelope.schema.json by URI.
    docs = [json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.schema.json")]
    registry: Registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in docs
    )
    schema = json.loads((SCHEMA_DIR / "health.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.FormatChecker()
    )


def _envelope(data: dict[str, Any], seq: int = 7) -> dict[str, Any]:
    """The message exactly as the uplink publishes it (the pipeline's envelope code)."""
    row = OutboxRow(
        seq=seq,
        kind="health",
        priority=1,
        topic="edge/lab/gw-test/health",
        data=json.dumps(data),
        created=time.time(),
        retain=False,
    )
    message: dict[str, Any] = json.loads(envelope(row, "gw-test", "0a1b2c3d"))
    return message


def _fixed_clock() -> ClockStatus:
    return ClockStatus(synced=True, source=ClockSource.TIMESYNCD)


def test_collect_reports_real_figures(tmp_path: Path) -> None:
    """A sample holds this pid and memory, the state dir's free space, version and clock."""
    collector = HealthCollector(tmp_path, clock=_fixed_clock, temperature=lambda: 47.5)
    data = collector.collect()
    stat = os.statvfs(tmp_path)
    assert data["version"] == __version__
    assert data["pid"] == os.getpid()
    assert data["rss_bytes"] > 10 * 1024 * 1024  # a Python with psutil loaded
    assert data["disk_total_bytes"] == stat.f_blocks * stat.f_frsize
    assert 0 < data["disk_free_bytes"] <= data["disk_total_bytes"]
    assert data["cpu_temp_c"] == 47.5
    assert (data["clock_synced"], data["clock_source"]) == (True, "timesyncd")
    assert all(data[slot] is None for slot in SLOTS)


def test_cpu_percent_is_primed(tmp_path: Path) -> None:
    """The first collect() already measures CPU since construction (psutil's first call is 0.0)."""
    collector = HealthCollector(tmp_path, clock=_fixed_clock)
    deadline = time.process_time() + 0.15
    while time.process_time() < deadline:
        pass  # burn CPU so the figure cannot be 0
    # Unprimed, psutil would say 0.0; the exact figure depends on how busy the machine is.
    assert collector.collect()["cpu_percent"] > 1.0


class _FakeProcess:
    """A process stand-in whose CPU seconds the test sets."""

    def __init__(self) -> None:
        self.cpu_s = 0.0

    def oneshot(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def cpu_times(self) -> SimpleNamespace:
        return SimpleNamespace(user=self.cpu_s * 0.75, system=self.cpu_s * 0.25)

    def memory_info(self) -> SimpleNamespace:
        return SimpleNamespace(rss=123)


def test_cpu_percent_is_a_trailing_window_average(tmp_path: Path) -> None:
    """CPU is averaged over a trailing window, so frequent status calls do not shrink its view."""
    now = [0.0]
    proc = _FakeProcess()
    collector = HealthCollector(
        tmp_path, clock=_fixed_clock, monotonic=lambda: now[0], process=proc, cpu_window_s=60
    )
    readings = []
    for t, cpu in [(2, 0.2), (4, 0.4), (30, 3.0), (60, 3.0), (62, 3.0), (120, 3.0)]:
        now[0], proc.cpu_s = t, cpu
        readings.append(collector.collect()["cpu_percent"])
    # 0-30 s busy at 10 %, then idle: the 60 s and 62 s samples still see the busy half.
    assert readings[:3] == [10.0, 10.0, 10.0]
    assert readings[3] == 5.0
    assert readings[4] == pytest.approx(100 * 2.8 / 60, abs=0.1)  # reference: the 2 s sample
    assert readings[5] == 0.0  # a full idle minute
    with pytest.raises(ValueError, match="cpu_window_s"):
        HealthCollector(tmp_path, cpu_window_s=0)


def test_uptime_comes_from_the_injected_monotonic_clock(tmp_path: Path) -> None:
    """uptime_s is monotonic time since start, unaffected by the wall clock."""
    now = [1000.0]
    collector = HealthCollector(tmp_path, clock=_fixed_clock, monotonic=lambda: now[0])
    now[0] = 1042.5
    assert collector.collect()["uptime_s"] == 42.5


def test_missing_state_dir_yields_none(tmp_path: Path) -> None:
    """A state dir that does not exist (yet) reports no disk figures instead of raising."""
    data = HealthCollector(tmp_path / "absent", clock=_fixed_clock).collect()
    assert data["disk_free_bytes"] is None
    assert data["disk_total_bytes"] is None


def test_slots_are_filled_by_providers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Registered providers fill their slot; a failing one yields None and is logged once."""
    collector = HealthCollector(tmp_path, clock=_fixed_clock)
    collector.provide("uplink", lambda: {"connected": True, "backlog": 3, "in_flight": 1})

    def broken() -> dict[str, Any]:
        raise RuntimeError("stats bug")

    collector.provide("buffer", broken)
    with caplog.at_level(logging.ERROR, logger="edge_agent.ops.health"):
        first = collector.collect()
        second = collector.collect()
    assert first["uplink"] == {"connected": True, "backlog": 3, "in_flight": 1}
    assert first["buffer"] is None
    assert second["buffer"] is None
    assert len([r for r in caplog.records if "slot=buffer" in r.getMessage()]) == 1
    with pytest.raises(ValueError, match="unknown health slot"):
        collector.provide("bogus", dict)


def _sensors(**groups: list[float]) -> Mapping[str, Iterable[Any]]:
    return {
        name: [SimpleNamespace(label="", current=v) for v in values]
        for name, values in groups.items()
    }


@pytest.mark.parametrize(
    ("sensors", "zone_text", "expected"),
    [
        (_sensors(cpu_thermal=[45.62]), None, 45.6),
        (_sensors(**{"cpu-thermal": [51.0]}), "40000", 51.0),
        # A DS3231 RTC's hwmon sensor is not the CPU.
        (_sensors(ds3231=[25.0]), "48500", 48.5),
        ({}, "61234", 61.2),
        ({}, None, None),
        ({}, "0", None),
        ({}, "garbage", None),
    ],
)
def test_cpu_temperature_sources(
    tmp_path: Path,
    sensors: Mapping[str, Iterable[Any]],
    zone_text: str | None,
    expected: float | None,
) -> None:
    """The hwmon CPU sensor wins; otherwise thermal_zone0 (millidegrees); otherwise None."""
    zone = tmp_path / "temp"
    if zone_text is not None:
        zone.write_text(zone_text + "\n")
    assert cpu_temperature(sensors=lambda: sensors, thermal_zone=zone) == expected


def test_collected_payload_matches_schema(
    tmp_path: Path, validator: jsonschema.protocols.Validator
) -> None:
    """A real sample, with and without runtime slots, validates against the health schema."""
    collector = HealthCollector(tmp_path)
    validator.validate(_envelope(collector.collect()))
    collector.provide(
        "buffer", lambda: {"db_bytes": 4096, "dropped": {"readings": 0}, "disk_full": False}
    )
    collector.provide(
        "uplink",
        lambda: {
            "connected": False,
            "backlog": 12,
            "in_flight": 0,
            "published": 5,
            "last_error": "refused",
        },
    )
    collector.provide(
        "devices",
        lambda: {
            "press1": {
                "comms": "up",
                "requests": 10,
                "errors": {"timeout": 1},
                "rtt_ms": {"min": 1.0, "avg": 2.0, "max": 3.0},
                "last_good_ts": time.time(),
                "skipped_cycles": 0,
            }
        },
    )
    collector.provide("events", EventLog().snapshot)
    collector.provide("pipeline", lambda: {"dropped_readings": 0, "queue_depth": 3})
    validator.validate(_envelope(collector.collect()))


def test_device_diagnostics_as_drivers_fill_them_match_schema(
    tmp_path: Path, validator: jsonschema.protocols.Validator
) -> None:
    """Polled and subscribed devices in every confirmation state validate; garbage does not.

    ``confirmed_by`` tells a technician a flat line on a live subscription (``keepalive``)
    from a link whose values are no longer confirmed (``lapsed``).
    """
    polled = DeviceDiagnostics(last_good_ts=time.time())
    changed, flat, lapsed = DeviceDiagnostics(), DeviceDiagnostics(), DeviceDiagnostics()
    now = time.time()
    changed.last_change_ts = now
    changed.confirm(now, changed=True, until=now + 15)
    flat.last_change_ts = now - 300
    flat.confirm(now, changed=False, until=now + 15)
    lapsed.confirm(now - 20, changed=False, until=now - 5)
    lapsed.confirmed_by = ConfirmedBy.LAPSED
    # The agent adds each device's comms state (its one source: the comms events).
    devices = {
        "press1": {**polled.as_dict(), "comms": "up"},
        "line1": {**changed.as_dict(), "comms": "up"},
        "line2": {**flat.as_dict(), "comms": "up"},
        "line3": {**lapsed.as_dict(), "comms": "down"},
    }
    assert devices["press1"]["confirmed_by"] == "poll"
    assert devices["press1"]["last_confirmed_ts"] == polled.last_good_ts
    assert devices["line2"]["confirmed_by"] == "keepalive"
    assert devices["line2"]["keepalives"] == 1
    assert devices["line3"]["confirmed_by"] == "lapsed"
    collector = HealthCollector(tmp_path)
    collector.provide("devices", lambda: devices)
    validator.validate(_envelope(collector.collect()))
    for field, value in (("confirmed_by", "maybe"), ("keepalives", -1), ("last_change_ts", "x")):
        bad = {**devices, "line2": {**devices["line2"], field: value}}
        collector.provide("devices", lambda bad=bad: bad)
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(_envelope(collector.collect()))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("clock_source", "gps"),
        ("rss_bytes", -1),
        ("clock_synced", "yes"),
        ("unexpected", 1),
    ],
)
def test_schema_rejects_wrong_payloads(
    tmp_path: Path, validator: jsonschema.protocols.Validator, field: str, value: object
) -> None:
    """The schema is not vacuous: a wrong type, range, enum value or unknown field is rejected."""
    data = HealthCollector(tmp_path).collect()
    data[field] = value
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(_envelope(data))


def test_schema_rejects_wrong_envelope(
    tmp_path: Path, validator: jsonschema.protocols.Validator
) -> None:
    """An envelope of another kind or version does not pass as a health message."""
    data = HealthCollector(tmp_path).collect()
    for patch in ({"kind": "kpi"}, {"v": 1}, {"seq": 0}, {"ts": 1764190800.0}, {"epoch": ""}):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**_envelope(data), **patch})
