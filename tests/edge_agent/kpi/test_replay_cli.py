"""``edge-agent replay`` end to end: every vector through the real CLI, and input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cli import main

from .support import ROOT, load_vectors, mismatches

VECTORS = load_vectors()


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_through_cli(
    vector: dict[str, Any], write_case: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's --json output matches every expected field of the vector (1e-6, flags superset)."""
    prof, samples, windows = write_case(vector)
    argv = ["replay", "--kpi", str(prof), "--samples", str(samples), "--json"]
    for w in windows:
        argv += ["--window", w]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == set(vector["expected"]) | {w.split("=")[0] for w in windows}
    for name, expected in vector["expected"].items():
        assert mismatches(expected, doc[name]) == [], name
        assert doc[name]["revision"] == 0
        assert doc[name]["start"].endswith("Z")


def test_subprocess_replay_matches_v01(write_case: Any) -> None:
    """``python -m edge_agent replay`` as a real process prints the V01 record."""
    vector = next(v for v in VECTORS if v["name"].startswith("V01"))
    prof, samples, windows = write_case(vector)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent",
            "replay",
            "--kpi",
            str(prof),
            "--samples",
            str(samples),
            "--window",
            windows[0],
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert mismatches(vector["expected"]["S1"], doc["S1"]) == []


def test_local_wall_time_windows_use_profile_zone(
    write_case: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bounds without offset are Europe/Paris wall time: the 2024-03-30 22:00-06:00 night is 7 h."""
    vector = next(v for v in VECTORS if v["name"].startswith("K09"))
    prof, samples, _ = write_case(vector)
    argv = [
        "replay",
        "--kpi",
        str(prof),
        "--samples",
        str(samples),
        "--json",
        "--window",
        "N=2024-03-30T22:00/2024-03-31T06:00",
        "--window",
        "DAY=2024-03-31T00:00/2024-04-01T00:00",
    ]
    code, out, _ = _run(capsys, argv)
    assert code == 0
    doc = json.loads(out)
    assert doc["N"]["start"] == "2024-03-30T21:00:00Z"
    assert doc["N"]["calendar_time_s"] == 25200
    assert doc["DAY"]["calendar_time_s"] == 82800
    assert mismatches(vector["expected"]["N"], doc["N"]) == []


def test_table_output_lists_fields(write_case: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the CLI prints a readable table with one column per window."""
    vector = VECTORS[0]
    prof, samples, windows = write_case(vector)
    code, out, _ = _run(
        capsys, ["replay", "--kpi", str(prof), "--samples", str(samples), "--window", windows[0]]
    )
    assert code == 0
    assert "availability" in out
    assert "0.9375" in out


def _bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *, profile: str, samples: str, window: str
) -> str:
    prof = tmp_path / "p.toml"
    prof.write_text(profile, encoding="utf-8")
    data = tmp_path / "s.jsonl"
    data.write_text(samples, encoding="utf-8")
    code, _, err = _run(
        capsys, ["replay", "--kpi", str(prof), "--samples", str(data), "--window", window]
    )
    assert code == 2
    return err


GOOD_PROFILE = (
    "ideal_cycle_time_s = 2.0\n[[planned_windows]]\n"
    'start = "2024-05-13T06:00:00Z"\nend = "2024-05-13T07:00:00Z"\n'
)
GOOD_LINE = '{"t": "2024-05-13T06:00:00Z", "run": 1, "fault": 0, "good": 1, "total": 1}\n'
GOOD_WINDOW = "H=2024-05-13T06:00:00Z/2024-05-13T07:00:00Z"


def test_invalid_profile_key_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid or unknown profile key exits 2 naming the file and dotted key path."""
    err = _bad(
        tmp_path,
        capsys,
        profile=GOOD_PROFILE + "[sla]\ncustomer_fault_codes = [[5, 1]]\nbogus = 1\n",
        samples=GOOD_LINE,
        window=GOOD_WINDOW,
    )
    assert "p.toml: sla.customer_fault_codes[0]" in err
    assert "sla.bogus: unknown key" in err


def test_malformed_jsonl_line_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed samples line exits 2 naming the file and line number."""
    err = _bad(
        tmp_path,
        capsys,
        profile=GOOD_PROFILE,
        samples=GOOD_LINE + "\n{not json\n",
        window=GOOD_WINDOW,
    )
    assert "s.jsonl: line 3" in err


def test_bad_window_syntax(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A window without NAME=START/END or with END before START exits 2."""
    assert "NAME=START/END" in _bad(
        tmp_path, capsys, profile=GOOD_PROFILE, samples=GOOD_LINE, window="H=2024-05-13"
    )
    assert "END must be after START" in _bad(
        tmp_path,
        capsys,
        profile=GOOD_PROFILE,
        samples=GOOD_LINE,
        window="H=2024-05-13T07:00Z/2024-05-13T06:00Z",
    )


def test_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing profile or samples files exit 2 with the path in the message."""
    code, _, err = _run(
        capsys,
        ["replay", "--kpi", str(tmp_path / "nope.toml"), "--samples", "x", "--window", GOOD_WINDOW],
    )
    assert code == 2
    assert "nope.toml: file not found" in err
    prof = tmp_path / "p.toml"
    prof.write_text(GOOD_PROFILE, encoding="utf-8")
    code, _, err = _run(
        capsys,
        [
            "replay",
            "--kpi",
            str(prof),
            "--samples",
            str(tmp_path / "none.jsonl"),
            "--window",
            GOOD_WINDOW,
        ],
    )
    assert code == 2
    assert "none.jsonl: file not found" in err


def test_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    """``replay --help`` documents the window syntax with an example."""
    with pytest.raises(SystemExit) as info:
        main(["replay", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--window S1=2024-05-13T06:00:00Z/2024-05-13T14:00:00Z" in out
