"""``[contracts.NAME]`` parsing: every key, every error path, the cross-checks and the hash."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import load_config
from edge_agent.configkit import Issues, Table
from edge_agent.contracts import (
    REPORTING_CONTRACT,
    CalendarKind,
    Contract,
    Direction,
    Kpi,
    PeriodKind,
    ResponseTo,
    contract_hash,
    parse_contract,
)
from edge_agent.errors import ConfigError
from edge_agent.kpi import KpiProfile
from edge_agent.kpi.profile import Shift
from edge_agent.kpi.timeutil import parse_instant

SHIFTED = KpiProfile(ideal_cycle_time_s=2.0, shifts=(Shift(name="A", start_min=360, end_min=840),))
BARE = KpiProfile(ideal_cycle_time_s=2.0)
PROFILES = {"press1": SHIFTED, "press2": SHIFTED, "bare": BARE}

MINIMAL: dict[str, Any] = {
    "machines": ["press1"],
    "timezone": "Europe/Paris",
    "calendar": "24/7",
    "terms": {"availability": {"kpi": "sla_availability", "target": 0.98}},
}


def _parse(data: dict[str, Any], name: str = "sla") -> Contract:
    issues = Issues("agent.toml")
    contract = parse_contract(name, Table(data, f"contracts.{name}", issues), PROFILES)
    issues.raise_if_any()
    return contract


def _errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _parse(data)
    return [str(i) for i in info.value.issues]


def _with(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL, **changes}


def _term(**keys: Any) -> dict[str, Any]:
    return _with(terms={"t": keys})


def test_minimal_contract_takes_the_defaults() -> None:
    """Machines, zone, calendar and a term suffice; month periods, coverage 0.95, MTTR margin."""
    c = _parse(MINIMAL)
    assert c.machines == ("press1",)
    assert c.timezone == "Europe/Paris"
    assert c.calendar.kind is CalendarKind.ALWAYS
    assert c.period is PeriodKind.MONTH
    assert (c.start_ms, c.end_ms) == (None, None)
    assert c.min_coverage == 0.95
    assert c.at_risk_margin_s is None
    (term,) = c.terms
    assert (term.name, term.kpi, term.target, term.minimum) == (
        "availability",
        Kpi.SLA_AVAILABILITY,
        0.98,
        None,
    )
    assert term.kpi.direction is Direction.AT_LEAST


def test_full_contract() -> None:
    """Every key is read: shifts calendar, exclusions, dates period, margin, all term forms."""
    c = _parse(
        _with(
            machines=["press1", "press2"],
            calendar="shifts",
            shifts=[{"name": "N", "start": "22:00", "end": "06:00", "days": ["mon"]}],
            exclusions=[
                {"start": "2026-03-02T08:00:00Z", "end": "2026-03-02T09:00:00Z", "reason": "x"}
            ],
            period="dates",
            start="2026-01-01",
            end="2027-01-01T00:00:00+01:00",
            min_coverage=0.9,
            at_risk_margin_s=3600,
            terms={
                "sla": {"kpi": "sla_availability", "target": 0.98, "minimum": 0.95},
                "resp": {
                    "kpi": "response_time_s",
                    "statistic": "p90",
                    "to": "arrived",
                    "target": 14400,
                    "minimum": 28800,
                },
                "worst": {
                    "kpi": "response_time_s",
                    "statistic": "max",
                    "to": "acknowledged",
                    "target": 60,
                },
                "mttr": {"kpi": "mttr_s", "target": 2700},
                "perf": {"kpi": "performance", "target": 1.05},
            },
        )
    )
    assert c.machines == ("press1", "press2")
    assert c.calendar.kind is CalendarKind.SHIFTS
    assert c.calendar.shifts[0].start_min == 22 * 60
    assert c.calendar.exclusions[0].reason == "x"
    # A local date is local midnight in the contract's zone; an offset date-time is that instant.
    assert c.start_ms == parse_instant("2025-12-31T23:00:00Z")
    assert c.end_ms == parse_instant("2026-12-31T23:00:00Z")
    assert c.min_coverage == 0.9
    assert c.at_risk_margin_s == 3600
    resp = c.term("resp")
    assert (resp.percentile, resp.response_to, resp.statistic) == (90, ResponseTo.ARRIVED, "p90")
    assert c.term("worst").percentile == 100
    assert c.term("worst").statistic == "max"
    assert c.term("mttr").kpi.direction is Direction.AT_MOST
    assert c.term("perf").target == 1.05


def test_margin_may_be_stated_as_mttr() -> None:
    """at_risk_margin_s = "mttr" is the default written out."""
    assert _parse(_with(at_risk_margin_s="mttr")).at_risk_margin_s is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_with(bogus=1), "contracts.sla.bogus: unknown key"),
        (
            _with(machines=["press9"]),
            "contracts.sla.machines: no machine 'press9' (machines: bare, press1, press2)",
        ),
        (
            _with(machines=["press1", "press1"]),
            "contracts.sla.machines: machine 'press1' listed twice",
        ),
        (_with(machines=[]), "contracts.sla.machines: expected at least one machine"),
        ({k: v for k, v in MINIMAL.items() if k != "machines"}, "contracts.sla.machines: missing"),
        ({k: v for k, v in MINIMAL.items() if k != "timezone"}, "contracts.sla.timezone: missing"),
        (_with(timezone="Mars/Olympus"), "contracts.sla.timezone: expected an IANA time zone"),
        ({k: v for k, v in MINIMAL.items() if k != "calendar"}, "contracts.sla.calendar: missing"),
        (
            _with(calendar="weekdays"),
            "contracts.sla.calendar: expected one of 'machine', '24/7', 'shifts'",
        ),
        (_with(calendar="shifts"), "contracts.sla.shifts: missing"),
        (
            _with(shifts=[{"start": "06:00", "end": "14:00"}]),
            'contracts.sla.shifts: only with calendar = "shifts"',
        ),
        (
            _with(machines=["bare"], calendar="machine"),
            "contracts.sla.calendar: \"machine\" but the KPI profile of 'bare'",
        ),
        (
            _with(period="week"),
            "contracts.sla.period: expected one of 'month', 'quarter', 'rolling_30d', 'dates'",
        ),
        (_with(period="dates"), "contracts.sla.start: missing, expected a local date"),
        (
            _with(period="dates", start="2026-01-01", end="2026-01-01"),
            "contracts.sla.end: expected a bound after start",
        ),
        (
            _with(period="dates", start="2026-01-01T00:00:00", end="2026-02-01"),
            "contracts.sla.start: expected a local date",
        ),
        (_with(start="2026-01-01"), 'contracts.sla.start: only with period = "dates"'),
        (_with(min_coverage=1.5), "contracts.sla.min_coverage: expected a number from 0.0 to 1.0"),
        (_with(at_risk_margin_s="soon"), "contracts.sla.at_risk_margin_s: expected 'mttr'"),
        (_with(at_risk_margin_s=-1), "contracts.sla.at_risk_margin_s: expected a number >= 0.0"),
        ({k: v for k, v in MINIMAL.items() if k != "terms"}, "contracts.sla.terms: missing"),
        (_with(terms={}), "contracts.sla.terms: expected at least one term"),
        (
            _term(kpi="uptime", target=0.9),
            "contracts.sla.terms.t.kpi: expected one of 'sla_availability'",
        ),
        (_term(target=0.9), "contracts.sla.terms.t.kpi: missing"),
        (_term(kpi="oee"), "contracts.sla.terms.t.target: missing"),
        (
            _term(kpi="oee", target=65),
            "contracts.sla.terms.t.target: expected a number from 0.0 to 1.0",
        ),
        (_term(kpi="mttr_s", target=0), "contracts.sla.terms.t.target: expected a number > 0"),
        (
            _term(kpi="oee", target=0.6, minimum=0.7),
            "contracts.sla.terms.t.minimum: expected at most the target 0.6",
        ),
        (
            _term(kpi="mttr_s", target=600, minimum=300),
            "contracts.sla.terms.t.minimum: expected at least the target 600",
        ),
        (
            _term(kpi="oee", target=0.6, statistic="max"),
            'contracts.sla.terms.t.statistic: only for kpi = "response_time_s"',
        ),
        (
            _term(kpi="response_time_s", target=60, to="acknowledged"),
            "contracts.sla.terms.t.statistic: missing",
        ),
        (
            _term(kpi="response_time_s", target=60, statistic="p100", to="arrived"),
            "contracts.sla.terms.t.statistic: expected 'max' or a nearest-rank percentile",
        ),
        (
            _term(kpi="response_time_s", target=60, statistic="max"),
            "contracts.sla.terms.t.to: missing",
        ),
        (
            _term(kpi="response_time_s", target=60, statistic="max", to="fixed"),
            "contracts.sla.terms.t.to: expected one of 'acknowledged', 'arrived'",
        ),
        (_term(kpi="oee", target=0.6, level=1), "contracts.sla.terms.t.level: unknown key"),
        (
            _with(terms={"bad name": {"kpi": "oee", "target": 0.6}}),
            "contracts.sla.terms.bad name: term name 'bad name'",
        ),
    ],
)
def test_errors_name_the_key_and_the_expectation(data: dict[str, Any], expected: str) -> None:
    """Each mistake is reported with the file, the dotted key path and what was expected."""
    errors = _errors(data)
    assert any(e.startswith(f"agent.toml: {expected}") for e in errors), errors


def test_all_errors_are_reported_at_once() -> None:
    """Several mistakes in one contract give several issues, not just the first."""
    errors = _errors(
        _with(machines=["nope"], period="week", terms={"t": {"kpi": "oee", "target": 2}})
    )
    assert len(errors) == 3, errors


def test_hash_is_of_the_normalised_definition() -> None:
    """Same definition, same hash (name, key and machine order aside); a new level changes it."""
    a = _parse(_with(machines=["press1", "press2"]), name="a")
    b = _parse(dict(reversed(list(_with(machines=["press2", "press1"]).items()))), name="b")
    assert contract_hash(a) == contract_hash(b)
    assert len(contract_hash(a)) == 64
    base = _parse(MINIMAL)
    stricter = _parse(_with(terms={"availability": {"kpi": "sla_availability", "target": 0.985}}))
    assert contract_hash(stricter) != contract_hash(base)
    assert contract_hash(dataclasses.replace(base, timezone="UTC")) != contract_hash(base)
    assert contract_hash(dataclasses.replace(base, name="renamed")) == contract_hash(base)


# -- in the whole agent configuration ------------------------------------------------------

AGENT = """
[agent]
id = "gw-1"
site = "plant-a"
state_dir = "state"

[mqtt]
host = "127.0.0.1"

[devices.press1]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:5020"
unit_id = 1
addressing = "zero"

[devices.press1.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.press1.tags.good]
table = "holding"
address = 4
type = "uint32"

[devices.press1.tags.total]
table = "holding"
address = 6
type = "uint32"

[machines.press1]
run = "press1.running"
good = "press1.good"
total = "press1.total"

[machines.press1.kpi]
ideal_cycle_time_s = 2.0

[[machines.press1.kpi.shifts]]
start = "06:00"
end = "14:00"
"""


def _load(tmp_path: Path, extra: str) -> Any:
    path = tmp_path / "agent.toml"
    path.write_text(AGENT + extra)
    return load_config(path)


def test_contracts_load_with_the_agent_configuration(tmp_path: Path) -> None:
    """[contracts.NAME] tables end up in AgentConfig.contracts, by name."""
    cfg = _load(
        tmp_path,
        """
[contracts.sla]
machines = ["press1"]
timezone = "UTC"
calendar = "machine"
[contracts.sla.terms.a]
kpi = "availability"
target = 0.9
""",
    )
    assert list(cfg.contracts) == ["sla"]
    assert cfg.contracts["sla"].terms[0].kpi is Kpi.AVAILABILITY


def test_contract_name_must_fit_in_a_topic(tmp_path: Path) -> None:
    """A contract name with a space or slash is rejected like a machine name."""
    with pytest.raises(ConfigError) as info:
        _load(
            tmp_path,
            """
[contracts."a/b"]
machines = ["press1"]
timezone = "UTC"
calendar = "machine"
[contracts."a/b".terms.a]
kpi = "availability"
target = 0.9
""",
        )
    assert "contract name 'a/b'" in str(info.value)


def test_reporting_contract_window_is_sugar_for_a_contract(tmp_path: Path) -> None:
    """[reporting] contract_start/end is a termless contract over every machine's own time."""
    cfg = _load(
        tmp_path,
        """
[reporting]
contract_start = 2026-01-01T00:00:00+01:00
contract_end = 2027-01-01T00:00:00+01:00
""",
    )
    c = cfg.contracts[REPORTING_CONTRACT]
    assert c.machines == ("press1",)
    assert c.calendar.kind is CalendarKind.MACHINE
    assert c.period is PeriodKind.DATES
    assert c.start_ms == parse_instant("2025-12-31T23:00:00Z")
    assert c.end_ms == parse_instant("2026-12-31T23:00:00Z")
    assert c.terms == ()
    # The old fields stay for the runtime until it is wired to contracts.
    assert cfg.reporting.contract_start is not None


def test_reporting_sugar_and_a_contract_of_the_same_name_conflict(tmp_path: Path) -> None:
    """Both forms naming the contract 'reporting' is an error, not a silent override."""
    with pytest.raises(ConfigError) as info:
        _load(
            tmp_path,
            """
[reporting]
contract_start = 2026-01-01T00:00:00Z
contract_end = 2027-01-01T00:00:00Z

[contracts.reporting]
machines = ["press1"]
timezone = "UTC"
calendar = "machine"
[contracts.reporting.terms.a]
kpi = "availability"
target = 0.9
""",
        )
    assert "reporting.contract_start: is the contract 'reporting'" in str(info.value)
