"""Every bad config input becomes a ConfigError naming file, key and expectation, never a traceback.

Two parts: the hostile inputs the acceptance harness found (deep nesting, huge
strings, NUL bytes, wrong types, 200+ parentheses), each with the message it must
produce; and a seeded mutation fuzzer over the example files in ``config/`` that
runs ``check-config`` on a few hundred damaged variants and asserts it always exits
0 or 2 with no exception escaping and no issue from the loader's safety net.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import load_config
from edge_agent.configkit import MAX_DEPTH, MAX_FILE_BYTES, MAX_STRING_CHARS
from edge_agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "config"
EXAMPLES = sorted(CONFIG_DIR.glob("*.toml"))
SAFETY_NET = "edge-agent bug"

BASE = """
[agent]
id = "gw-1"
site = "plant-a"
state_dir = "state"

[devices.press1]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:5020"
unit_id = 1
addressing = "zero"

[devices.press1.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.press1.tags.count]
table = "holding"
address = 4
type = "uint32"

[machines.press1]
run = "press1.running"
good = "press1.count"
total = "press1.count"

[machines.press1.kpi]
ideal_cycle_time_s = 2.0
"""


def issues_of(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "agent.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = [str(i) for i in info.value.issues]
    assert all(SAFETY_NET not in i for i in found), found
    return found


def test_the_base_config_is_valid(tmp_path: Path) -> None:
    """The base text the hostile variants start from loads cleanly."""
    path = tmp_path / "agent.toml"
    path.write_text(BASE)
    assert load_config(path).agent.id == "gw-1"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("[x]\na = " + "[" * 600 + "]" * 600, "nested too deeply"),
        ("[x]\na = " + "{b = " * 600 + "1" + "}" * 600, "nested too deeply"),
        ("[x]\na = " + "[" * 60 + "]" * 60, f"x.a{'[0]' * (MAX_DEPTH - 2)}: nested too deeply"),
        ("[" + ".".join(["t"] * 60) + "]\nk = 1", "nested too deeply"),
        (f'[x]\na = "{"y" * (MAX_STRING_CHARS + 1)}"', "x.a: string of 65537 characters"),
        ('[x]\n"k\\u0000ey" = 1', "key must not contain a NUL character"),
    ],
)
def test_hostile_toml_is_refused_with_its_key_path(
    tmp_path: Path, extra: str, expected: str
) -> None:
    """Nesting, long strings and NUL keys beyond the limits are config issues at their key."""
    found = issues_of(tmp_path, BASE + "\n" + extra + "\n")
    assert any(expected in i for i in found), found


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('protocol = "modbus_tcp"', "protocol = []", "devices.press1.protocol: expected one of"),
        ('protocol = "modbus_tcp"', "protocol = {a = 1}", "devices.press1.protocol: expected one"),
        ('state_dir = "state"', 'state_dir = "st\\u0000ate"', "agent.state_dir: must not contain"),
        ('state_dir = "state"', "state_dir = 5", "agent.state_dir: expected a string"),
        (
            'run = "press1.running"',
            'run = { expr = "' + "(" * 250 + "press1.running" + ")" * 250 + '" }',
            "machines.press1.run.expr: invalid expression: nested more than 32 levels",
        ),
        (
            'run = "press1.running"',
            'run = { expr = "' + "not " * 200 + 'press1.running" }',
            "nested more than 32 levels",
        ),
        (
            'run = "press1.running"',
            'run = { expr = "' + "press1.running or " * 200 + 'true" }',
            "at most 1000",
        ),
        ("ideal_cycle_time_s = 2.0", "ideal_cycle_time_s = []", "ideal_cycle_time_s"),
        (
            "ideal_cycle_time_s = 2.0",
            'ideal_cycle_time_s = 2.0\ntimezone = "' + "(" * 300 + '"',
            "machines.press1.kpi.timezone: expected an IANA time zone",
        ),
        ("unit_id = 1", "unit_id = 1e400", "devices.press1.unit_id"),
        ("[devices.press1.tags.running]", "[devices.press1.tags.running.x.y]", "devices.press1"),
    ],
)
def test_wrong_types_and_hostile_values_name_the_key(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    """A list as protocol, a NUL in state_dir, 250 parentheses: each an issue naming its key."""
    assert old in BASE
    found = issues_of(tmp_path, BASE.replace(old, new))
    assert any(expected in i for i in found), found


def test_files_that_are_not_configs(tmp_path: Path) -> None:
    """Too large, not UTF-8, a directory, a device file, a NUL in the name: one issue each."""
    assert any("larger than" in i for i in issues_of(tmp_path, b"#" * (MAX_FILE_BYTES + 1)))
    assert any("not UTF-8" in i for i in issues_of(tmp_path, b"a = '\xff\xfe'"))
    for weird in (tmp_path, Path("/dev/null"), Path("/dev/zero"), Path(str(tmp_path) + "\0x")):
        with pytest.raises(ConfigError) as info:
            load_config(weird)
        assert len(info.value.issues) == 1


def test_check_config_exits_2_without_a_traceback_on_hostile_files(tmp_path: Path) -> None:
    """The real command line: deep nesting and 250 parentheses give exit 2 and no traceback."""
    files = []
    for name, text in (
        ("deep.toml", BASE + "[x]\na = " + "[" * 2000 + "]" * 2000 + "\n"),
        (
            "parens.toml",
            BASE.replace(
                'run = "press1.running"',
                'run = { expr = "' + "(" * 250 + "press1.running" + ")" * 250 + '" }',
            ),
        ),
        ("proto.toml", BASE.replace('"modbus_tcp"', "[]")),
    ):
        path = tmp_path / name
        path.write_text(text)
        files.append(str(path))
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent", "check-config", *files],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("INVALID") == 3


# -- seeded mutation fuzzing over the example configs --------------------------------

HOSTILE_VALUES = [
    "[]",
    "{}",
    "[[]]",
    "{ a = 1 }",
    "[" * 700 + "]" * 700,
    "{a=" * 500 + "1" + "}" * 500,
    '"' + "(" * 260 + "a.b" + ")" * 260 + '"',
    '"' + "not " * 100 + 'a.b"',
    '"\\u0000"',
    '"a\\u0000b"',
    '""',
    '"' + "x" * 70_000 + '"',
    "-1",
    "0",
    "99999999999999999999999",
    "-9223372036854775808",
    "inf",
    "nan",
    "-0.0",
    "1e308",
    "true",
    "1979-05-27T07:32:00Z",
    "1979-05-27",
    "07:32:00",
    '"../../../etc/passwd"',
    '"/dev/zero"',
    '"*"',
    '"+/#"',
    '"{unknown}"',
    '"\\u00e9\\u00e8"',
]


def mutate(text: str, rng: random.Random) -> str:
    """One random damage of a TOML text (value swap, line edits, truncation, byte noise)."""
    lines = text.splitlines()
    op = rng.randrange(9)
    assignments = [
        i for i, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")
    ]
    if op <= 2 and assignments:
        i = rng.choice(assignments)
        key = lines[i].split("=", 1)[0]
        lines[i] = f"{key}= {rng.choice(HOSTILE_VALUES)}"
    elif op == 3 and lines:
        del lines[rng.randrange(len(lines))]
    elif op == 4 and lines:
        i = rng.randrange(len(lines))
        lines.insert(rng.randrange(len(lines)), lines[i])
    elif op == 5:
        depth = rng.choice([2, 5, 30, 300])
        lines.insert(rng.randrange(len(lines) + 1), "[" + ".".join(["n"] * depth) + "]")
    elif op == 6 and text:
        return text[: rng.randrange(len(text))]
    elif op == 7 and text:
        chars = list(text)
        for _ in range(rng.randint(1, 8)):
            chars[rng.randrange(len(chars))] = rng.choice("[]{}=\"'#\n\\.,0a ")
        return "".join(chars)
    else:
        headers = [i for i, line in enumerate(lines) if line.startswith("[")]
        if headers:
            i = rng.choice(headers)
            lines[i] = lines[i].replace("]", rng.choice([".extra]", "x]", "]]", "]"]), 1)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_check_config_on_mutated_examples_never_tracebacks(
    tmp_path: Path, example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """120 seeded mutations per example file: check-config returns 0 or 2, never raises.

    An issue from the loader's safety net (an exception a validator did not turn into
    a message) counts as a failure too: every bad input must get a specific message.
    """
    rng = random.Random(f"{example.name}-22")
    original = example.read_text(encoding="utf-8")
    codes: dict[int, int] = {}
    for n in range(120):
        text = original
        for _ in range(rng.randint(1, 3)):
            text = mutate(text, rng)
        path = tmp_path / f"m{n}.toml"
        path.write_text(text, encoding="utf-8")
        code = main(["check-config", str(path)])
        out = capsys.readouterr()
        assert code in (0, 2), f"exit {code} for mutation {n}:\n{out.err[-2000:]}"
        assert SAFETY_NET not in out.err, f"mutation {n} reached the safety net:\n{out.err[-2000:]}"
        codes[code] = codes.get(code, 0) + 1
    assert codes.get(2, 0) > 30  # the mutations really damage the files
