"""`edge-agent contract status`, `edge-agent ack` and `replay --contract` on files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.contracts import Kpi, Term, evaluate_contract, period_at
from edge_agent.contracts.text import format_budget, format_duration, format_value
from edge_agent.kpi.timeutil import parse_instant
from tests.edge_agent.contracts.support import DAY, components, contract, machine

WORKED = components(
    planned_time_s=10 * DAY,
    running_time_s=10 * DAY - 18_000,
    downtime_breakdown_s=18_000,
    downtime_customer_s=3_600,
    downtime_provider_s=14_400,
    failures=5,
    ttr_sum_s=18_000,
)


def _status_file(state: Path) -> None:
    """A status.json holding spec §3.13's worked example as contract 'line'."""
    c = contract(Term(name="availability", kpi=Kpi.SLA_AVAILABILITY, target=0.98, minimum=0.95))
    at = parse_instant("2026-06-11T00:00:00Z")
    period = period_at(c, at)
    assert period is not None
    status = evaluate_contract(c, period, [machine(WORKED, remaining_s=20 * DAY)], at_ms=at)
    doc = status.as_dict() | {"contract": "line"}
    state.mkdir(parents=True, exist_ok=True)
    (state / "status.json").write_text(json.dumps({"contracts": {"line": doc}}))


def test_durations_and_budgets_read_like_the_issue() -> None:
    """37,368 s is 10 h 22 min 48 s; a month-long budget drops the seconds; negative: over."""
    assert format_duration(37_368) == "10 h 22 min 48 s"
    assert format_duration(0) == "0 s"
    assert format_duration(2 * DAY + 3_700) == "2 d 1 h"
    assert format_budget(-360, "s") == "over by 6 min"
    assert format_budget(1, "responses") == "1 late response"
    assert format_budget(-2, "responses") == "2 late responses too many"
    assert format_value(0.983264, "ratio") == "98.33 %"
    assert format_value(2_700, "s") == "45 min"
    assert format_value(None, "s") == "-"


def test_contract_status_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table has a row per level: target, so far, state, budget left, forecast."""
    _status_file(tmp_path / "state")
    assert main(["contract", "status", "--state-dir", str(tmp_path / "state")]) == 0
    out = capsys.readouterr().out
    assert "line  month:2026-06  at 2026-06-11T00:00:00Z" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("term"))
    assert lines[header].split() == [
        "term",
        "level",
        "target",
        "so",
        "far",
        "state",
        "budget",
        "left",
        "forecast",
    ]
    target = lines[header + 1].split("  ")
    cells = [c.strip() for c in target if c.strip()]
    assert cells == [
        "availability",
        "target",
        ">= 98.00 %",
        "98.33 %",
        "on_track",
        "10 h 22 min 48 s",
        "98.33 %",
    ]
    assert "1 d 7 h" in lines[header + 2]  # 115,020 s before the 95 % minimum


def test_contract_status_json_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints the status records; an unknown name exits 2; no snapshot exits 1."""
    state = tmp_path / "state"
    _status_file(state)
    assert main(["contract", "status", "line", "--state-dir", str(state), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["line"]["terms"][0]["levels"][0]["budget"] == 37_368.0
    assert main(["contract", "status", "other", "--state-dir", str(state)]) == 2
    assert "no contract 'other' (contracts: line)" in capsys.readouterr().err
    assert main(["contract", "status", "--state-dir", str(tmp_path / "nowhere")]) == 1


def _fake_agent(spool: Path, verdict: dict[str, object], seen: list[dict[str, object]]) -> None:
    """Answer the first command file like the agent's desk does."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for path in spool.glob("*.json") if spool.is_dir() else []:
            seen.append(json.loads(path.read_text()))
            path.with_suffix(".done").write_text(json.dumps(verdict))
            path.unlink()
            return
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("verdict", "code"),
    [({"ok": True, "reason": None}, 0), ({"ok": False, "reason": "no such stop event"}, 1)],
)
def test_ack_writes_a_command_and_reports_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verdict: dict[str, object], code: int
) -> None:
    """The command file names the event, the kind and the instant; the verdict is the exit code."""
    state = tmp_path / "state"
    state.mkdir()
    seen: list[dict[str, object]] = []
    agent = threading.Thread(target=_fake_agent, args=(state / "commands", verdict, seen))
    agent.start()
    argv = ["ack", "m@2026-11-26T10:10:00Z", "--arrive", "--at", "2026-11-26T10:20:00+00:00"]
    assert main([*argv, "--state-dir", str(state)]) == code
    agent.join()
    assert seen == [
        {"command": "arrive", "event_id": "m@2026-11-26T10:10:00Z", "at": "2026-11-26T10:20:00Z"}
    ]
    captured = capsys.readouterr()
    if code == 0:
        assert captured.out == "m@2026-11-26T10:10:00Z: arrival recorded\n"
    else:
        assert "rejected: no such stop event" in captured.err
    assert list((state / "commands").iterdir()) == []


def test_ack_without_an_agent_takes_the_command_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nobody answers: exit 1, and no command file is left to be applied later."""
    state = tmp_path / "state"
    state.mkdir()
    assert main(["ack", "m@x", "--state-dir", str(state), "--timeout", "0.2"]) == 1
    assert "did not answer" in capsys.readouterr().err
    assert list((state / "commands").iterdir()) == []
    assert main(["ack", "m@x", "--state-dir", str(state), "--at", "yesterday"]) == 2


@pytest.mark.integration
def test_demo_shows_the_contract_with_its_state_and_budget(tmp_path: Path) -> None:
    """`edge-agent demo` (make demo) shows the demo contract: each level's state and budget."""
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent", "demo", "--duration", "7", "--plain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    final = proc.stdout.rsplit("edge-agent demo:", 1)[-1]
    assert "contract line1  month:" in final, final
    table = final[final.index("term  ") :].splitlines()
    assert table[0].split() == [
        "term",
        "level",
        "target",
        "so",
        "far",
        "state",
        "budget",
        "left",
        "forecast",
    ]
    target = table[1].split()
    assert target[:4] == ["availability", "target", ">=", "98.00"]
    assert target[7] in ("on_track", "at_risk", "breached"), table[1]
