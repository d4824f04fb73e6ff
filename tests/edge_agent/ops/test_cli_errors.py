"""No traceback reaches a user: every entry point, on bad paths, unreadable files and closed pipes.

Each case runs the real console command in a child process (``python -m edge_agent`` and
``python -m simulators``) and checks three things: the exit code is the one the table in
docs/cli.md gives, nothing on stderr looks like a Python traceback, and the error is one
line naming the thing that is wrong. A closed pipe is the read end of an ``os.pipe`` closed
before the child writes: what ``| head -1`` does once head has its line.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent import cli

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "cli.md"
AGENT = [sys.executable, "-m", "edge_agent"]
SIM = [sys.executable, "-m", "simulators"]

VALID = """\
[agent]
id = "cli-test"
site = "lab"
state_dir = "{state}"

[mqtt]
host = "127.0.0.1"

[devices.press1]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:5020"
unit_id = 1
interval_ms = 1000
addressing = "zero"

[devices.press1.tags.running]
table = "coil"
address = 0
type = "bool"
"""


def documented_codes() -> dict[int, str]:
    """The exit-code table of docs/cli.md."""
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("<!-- exit-codes") :]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| (.+) \|$", table, re.M)}


def run(
    cmd: list[str], tmp_path: Path, *, closed_stdout: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a command from tmp_path; with closed_stdout its stdout is a pipe nobody reads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("STATE_DIRECTORY", None)
    if not closed_stdout:
        return subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
        )
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        return subprocess.run(
            cmd,
            cwd=tmp_path,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    """The documented exit code, no traceback, and the problem named on stderr."""
    err = proc.stderr
    assert proc.returncode == code, (proc.returncode, err)
    assert code in documented_codes()
    assert "Traceback" not in err
    assert not re.search(r"^\s+File \".*\", line \d+", err, re.M), err
    assert needle in err, err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Files a technician may point a command at, good and bad."""
    state = tmp_path / "state"
    good = tmp_path / "good.toml"
    good.write_text(VALID.format(state=state))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    under_file = tmp_path / "under-file.toml"
    under_file.write_text(VALID.format(state=a_file / "state"))
    is_file = tmp_path / "is-file.toml"
    is_file.write_text(VALID.format(state=a_file))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00junk")
    db = tmp_path / "buffer.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.close()
    (tmp_path / "garbage-state").mkdir()
    (tmp_path / "garbage-state" / "status.json").write_text("{not json")
    return {
        "good": good,
        "missing": tmp_path / "missing.toml",
        "dir": tmp_path,
        "binary": binary,
        "under_file": under_file,
        "is_file": is_file,
        "a_file": a_file,
        "garbage_state": tmp_path / "garbage-state",
        "db": db,
    }


WINDOW = ["--from", "2026-01-01", "--to", "2026-01-02", "--kind", "readings"]

# (name, argv builder, exit code, text that must name the problem)
CASES: list[tuple[str, Callable[[dict[str, Path]], list[str]], int, str]] = [
    ("check-config missing", lambda f: ["check-config", str(f["missing"])], 2, "file not found"),
    ("check-config directory", lambda f: ["check-config", str(f["dir"])], 2, "is a directory"),
    ("check-config binary", lambda f: ["check-config", str(f["binary"])], 2, "not UTF-8"),
    (
        "check-config state_dir under a file",
        lambda f: ["check-config", str(f["under_file"])],
        2,
        "agent.state_dir",
    ),
    ("run missing", lambda f: ["run", str(f["missing"])], 2, "file not found"),
    ("run -c missing", lambda f: ["run", "-c", str(f["missing"])], 2, "file not found"),
    (
        "run state_dir under a file",
        lambda f: ["run", str(f["under_file"])],
        2,
        "agent.state_dir",
    ),
    ("run state_dir is a file", lambda f: ["run", str(f["is_file"])], 2, "is a file"),
    ("status missing config", lambda f: ["status", str(f["missing"])], 2, "file not found"),
    (
        "status empty state dir",
        lambda f: ["status", "--state-dir", str(f["dir"])],
        1,
        "No status snapshot",
    ),
    (
        "status damaged snapshot",
        lambda f: ["status", "--state-dir", str(f["garbage_state"])],
        1,
        "not valid JSON",
    ),
    ("export missing config", lambda f: ["export", str(f["missing"]), *WINDOW], 2, "not found"),
    (
        "export missing db",
        lambda f: ["export", "--db", str(f["missing"]), *WINDOW],
        1,
        "no buffer database",
    ),
    (
        "export not a buffer",
        lambda f: ["export", "--db", str(f["binary"]), *WINDOW],
        1,
        "binary.toml",
    ),
    (
        "export output under a file",
        lambda f: ["export", "--db", str(f["db"]), *WINDOW, "-o", str(f["a_file"] / "x.csv")],
        1,
        "x.csv",
    ),
    (
        "report missing db",
        lambda f: ["report", "--db", str(f["missing"]), *WINDOW[:4], "-o", str(f["dir"] / "r")],
        1,
        "no buffer database",
    ),
    (
        "report not a buffer",
        lambda f: ["report", "--db", str(f["binary"]), *WINDOW[:4], "-o", str(f["dir"] / "r")],
        1,
        "reading the buffer failed",
    ),
    (
        "report without a range",
        lambda f: ["report", "--db", str(f["db"]), "-o", str(f["dir"] / "r.html")],
        2,
        "--from and --to are required",
    ),
    (
        "report missing bundle",
        lambda f: ["report", "--bundle", str(f["missing"]), "-o", str(f["dir"] / "r.html")],
        2,
        "missing.toml: no such file",
    ),
    (
        "report bundle not a bundle",
        lambda f: ["report", "--bundle", str(f["binary"]), "-o", str(f["dir"] / "r.html")],
        1,
        "binary.toml",
    ),
    (
        "replay missing profile",
        lambda f: [
            "replay",
            "--kpi",
            str(f["missing"]),
            "--samples",
            str(f["missing"]),
            "--window",
            "w=2026-01-01T00:00Z/2026-01-02T00:00Z",
        ],
        2,
        "missing.toml",
    ),
    ("demo missing config", lambda f: ["demo", str(f["missing"])], 1, "missing.toml"),
    (
        "opcua trust missing config",
        lambda f: [
            "opcua",
            "trust",
            "--endpoint",
            "opc.tcp://127.0.0.1:9",
            "-c",
            str(f["missing"]),
        ],
        1,
        "missing.toml",
    ),
    (
        "probe bad endpoint",
        lambda f: ["probe", "modbus", "--endpoint", "not-an-endpoint", "--address", "0"],
        2,
        "not-an-endpoint",
    ),
]


@pytest.mark.parametrize(("name", "argv", "code", "needle"), CASES, ids=[c[0] for c in CASES])
def test_edge_agent_bad_input_is_one_clean_line(
    tmp_path: Path,
    files: dict[str, Path],
    name: str,
    argv: Callable[[dict[str, Path]], list[str]],
    code: int,
    needle: str,
) -> None:
    """Every edge-agent command answers bad paths and files with its code and a named problem."""
    proc = run([*AGENT, *argv(files)], tmp_path)
    assert_clean_error(proc, code, needle)
    problem_lines = [ln for ln in proc.stderr.splitlines() if needle in ln]
    assert len(problem_lines) == 1, proc.stderr


SIM_CASES: list[tuple[str, Callable[[dict[str, Path]], list[str]], int, str]] = [
    (
        "describe missing scenario",
        lambda f: ["describe", "--scenario", str(f["missing"])],
        2,
        "missing.toml",
    ),
    (
        "run truth under a file",
        lambda f: ["run", "--scenario", "steady", "--modbus-port", "0", "--duration-s", "0.5",
                   "--truth", str(f["a_file"] / "truth.jsonl")],
        1,
        "a-file",
    ),
    (
        "run ready file under a file",
        lambda f: ["run", "--scenario", "steady", "--modbus-port", "0", "--duration-s", "0.5",
                   "--ready-file", str(f["a_file"] / "ready.json")],
        1,
        "ready.json",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "argv", "code", "needle"), SIM_CASES, ids=[c[0] for c in SIM_CASES]
)
def test_edge_agent_sim_bad_input_is_one_clean_line(
    tmp_path: Path,
    files: dict[str, Path],
    name: str,
    argv: Callable[[dict[str, Path]], list[str]],
    code: int,
    needle: str,
) -> None:
    """edge-agent-sim answers bad scenarios and unwritable files without a traceback."""
    proc = run([*SIM, *argv(files)], tmp_path)
    assert_clean_error(proc, code, needle)


PIPE_CASES: list[tuple[str, list[str], Callable[[dict[str, Path]], list[str]]]] = [
    ("check-config | head", AGENT, lambda f: ["check-config", str(f["good"])]),
    ("export | head", AGENT, lambda f: ["export", "--db", str(f["db"]), *WINDOW]),
    ("--help | head", AGENT, lambda f: ["--help"]),
    ("status --help | head", AGENT, lambda f: ["status", "--help"]),
    ("sim describe | head", SIM, lambda f: ["describe", "--scenario", "steady"]),
    ("sim list-scenarios | head", SIM, lambda f: ["list-scenarios"]),
]


@pytest.mark.parametrize(("name", "program", "argv"), PIPE_CASES, ids=[c[0] for c in PIPE_CASES])
def test_output_closed_early_ends_quietly(
    tmp_path: Path,
    files: dict[str, Path],
    name: str,
    program: list[str],
    argv: Callable[[dict[str, Path]], list[str]],
) -> None:
    """A reader that stops early (| head -1) ends the command quietly with exit 141.

    argparse writes --help itself and ignores a write error, so help may also end with 0.
    """
    proc = run([*program, *argv(files)], tmp_path, closed_stdout=True)
    allowed = {cli.EXIT_PIPE, cli.EXIT_OK} if "--help" in name else {cli.EXIT_PIPE}
    assert proc.returncode in allowed, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_exit_code_table_matches_the_code() -> None:
    """docs/cli.md documents exactly the exit codes edge_agent.cli defines."""
    constants = {
        value
        for name, value in vars(cli).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }
    assert set(documented_codes()) == constants


def test_unexpected_error_is_one_line_and_traceback_only_with_vv(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bug in a command body is one line naming it; -vv adds the traceback for a report."""

    def boom() -> int:
        raise ValueError("bad thing")

    assert cli.run_guarded(lambda: "edge-agent x", boom, debug=lambda: False) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "edge-agent x: internal error: ValueError: bad thing (a bug: please report it with the "
        "output of the same command run with -vv)"
    ]
    assert cli.run_guarded(lambda: "edge-agent x", boom, debug=lambda: True) == cli.EXIT_FAILURE
    assert "Traceback" in capsys.readouterr().err
