"""docs/contracts.md stays true to the example configuration and to the evaluator."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edge_agent.contracts import Kpi, Term, evaluate_contract, period_at
from edge_agent.kpi.timeutil import parse_instant

from .support import DAY, components, contract, machine

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")


def _block(lang: str) -> str:
    match = re.search(rf"```{lang}\n(.*?)```", DOC, re.DOTALL)
    assert match, f"no {lang} block in docs/contracts.md"
    return match.group(1)


def test_config_sample_is_verbatim_from_the_example() -> None:
    """Each chunk of the documented contract tables appears verbatim in the example file."""
    example = (ROOT / "config" / "contracts.example.toml").read_text(encoding="utf-8")
    chunks = [c.strip("\n") for c in re.split(r"\n\s*\n", _block("toml")) if c.strip()]
    assert len(chunks) >= 4
    for chunk in chunks:
        assert chunk in example, chunk


def test_status_example_is_what_the_evaluator_gives() -> None:
    """The documented status (spec §3.13's worked example) matches evaluate_contract."""
    doc = json.loads(_block("json"))
    sla = Term(name="availability", kpi=Kpi.SLA_AVAILABILITY, target=0.98, minimum=0.95)
    c = contract(sla, machines=("press1",))
    at = parse_instant(doc["at"])
    period = period_at(c, at)
    assert period is not None
    comp = components(
        planned_time_s=10 * DAY,
        running_time_s=10 * DAY - 18_000,
        downtime_breakdown_s=18_000,
        downtime_customer_s=3_600,
        downtime_provider_s=14_400,
        failures=5,
        ttr_sum_s=18_000,
    )
    got = evaluate_contract(
        c, period, [machine(comp, remaining_s=20 * DAY, name="press1")], at_ms=at
    ).as_dict()
    for key in ("contract_hash", "profile_hashes", "contract"):
        doc.pop(key)
        got.pop(key)
    assert got == doc
