"""Settlement views: availability per machine per month and contract compliance."""

from __future__ import annotations

import psycopg
import pytest

from .samples import kpi_data, payload
from .test_store import one, rows, write


def day(seq: int, date: str, **kw: object) -> tuple[str, bytes]:
    data = kpi_data(window=f"day:{date}", **kw)  # type: ignore[arg-type]
    return ("t", payload("kpi", seq, data=data))


def test_month_availability_is_a_ratio_of_sums(pg_migrated: str) -> None:
    """Two days with different planned time give 0.6 (sums), not 0.75 (mean of ratios)."""
    write(
        pg_migrated,
        [
            day(1, "2026-11-01", planned=40000.0, operating=20000.0),  # 0.5
            day(2, "2026-11-02", planned=10000.0, operating=10000.0),  # 1.0
        ],
    )
    got = rows(
        pg_migrated,
        "SELECT month, days, planned_time_s, operating_time_s, availability "
        "FROM availability_machine_month",
    )
    assert got == [("2026-11", 2, 50000.0, 30000.0, pytest.approx(0.6))]


def test_month_uses_final_records_and_their_latest_revision(pg_migrated: str) -> None:
    """A so-far day is left out; a revised day counts with its latest revision only."""
    write(
        pg_migrated,
        [
            day(1, "2026-11-01", planned=1000.0, operating=500.0, revision=0),
            day(2, "2026-11-01", planned=1000.0, operating=900.0, revision=1),
            day(3, "2026-11-02", planned=1000.0, operating=0.0, final=False),
            day(4, "2026-12-01", planned=1000.0, operating=1000.0),
        ],
    )
    got = rows(
        pg_migrated,
        "SELECT month, days, availability FROM availability_machine_month ORDER BY month",
    )
    assert got == [("2026-11", 1, pytest.approx(0.9)), ("2026-12", 1, pytest.approx(1.0))]


def test_unknown_time_leaves_the_denominator(pg_migrated: str) -> None:
    """Availability is O / (P - U); coverage and the worst case are reported beside it."""
    write(pg_migrated, [day(1, "2026-11-01", planned=1000.0, unknown=200.0, operating=600.0)])
    got = rows(
        pg_migrated,
        "SELECT availability, data_coverage, availability_if_unknown_down "
        "FROM availability_machine_month",
    )
    assert got == [(pytest.approx(0.75), pytest.approx(0.8), pytest.approx(0.6))]


def test_contract_compliance_from_days_per_customer(pg_migrated: str) -> None:
    """SLA availability over a customer's machines: (K - C - Bp) / (K - C), summed first."""
    write(
        pg_migrated,
        [
            # machine A: 10,000 s known, 1,000 s breakdown of which 400 s customer-caused
            day(1, "2026-11-01", planned=10000.0, breakdown=1000.0, customer=400.0),
            day(2, "2026-11-01", machine="press2", planned=10000.0, breakdown=0.0),
        ],
    )
    with psycopg.connect(pg_migrated, autocommit=True) as conn:
        conn.execute("INSERT INTO customers VALUES ('acme', 'ACME Corp')")
        conn.execute(
            "INSERT INTO contracts (contract, customer, target, minimum) "
            "VALUES ('acme-sla', 'acme', 0.98, 0.95)"
        )
        conn.execute(
            "INSERT INTO contract_machines VALUES ('acme-sla', 'gw-1', 'press1'), "
            "('acme-sla', 'gw-1', 'press2')"
        )
    got = rows(
        pg_migrated,
        "SELECT customer, month, machines, value, state, provider_budget_s "
        "FROM contract_compliance_from_days",
    )
    k, c, bp = 20000.0, 400.0, 600.0
    value = (k - c - bp) / (k - c)  # 0.969388: below 98 %, above 95 %
    budget = (1 - 0.98) * (k - c) - bp
    assert got == [
        (
            "acme",
            "2026-11",
            2,
            pytest.approx(value, abs=1e-6),
            "minimum_met",
            pytest.approx(budget, abs=1e-3),
        )
    ]
    assert (
        one(
            pg_migrated, "SELECT count(*) FROM contract_compliance_from_days WHERE state = 'missed'"
        )
        == 0
    )
