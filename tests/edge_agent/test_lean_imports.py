"""A Modbus-only JSON gateway runs without the heavy parts it does not use (issue 20, RSS).

Each of these costs resident memory in every agent that imports it, whatever it is
configured for (``docs/bench-telemetry.md``, "Resident memory"): ``cryptography``
(about 8 MB: the agent signs with PyNaCl and reads its RFC 8410 key files itself), the OPC-UA
stack, protobuf (Sparkplug B only), jsonschema (collector), sqlite_utils and the
report renderer, the status and contract views (0.7 MB), psutil (0.5 MB: health reads
the kernel's files itself, :mod:`edge_agent.ops.procstat`). The agent builds the
command line parser as ``edge-agent run`` does, then runs in a fresh interpreter
until its evidence chain has signed the start's ``config`` record, so the signing
path is the one measured. Both starts are checked: the first one, which creates
``device.key`` (PyNaCl generates it, :mod:`edge_agent.evidence.rfc8410` writes it), and
a start with the key file already there (created beforehand in this test's process), which
is what every later start of a gateway does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_agent.evidence.keys import KeyStore

CONFIG = """
[agent]
id = "lean"
site = "lab"
state_dir = "{state}"

[mqtt]
host = "127.0.0.1"
port = 1

[devices.plc]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:1"
unit_id = 1
addressing = "zero"
publish = "every"

[devices.plc.tags.speed]
table = "holding"
address = 0
"""

HEAVY = (
    "cryptography",
    "asyncua",
    "google.protobuf",
    "edge_agent.uplink.sparkplug.sparkplug_b_pb2",
    "jsonschema",
    "jsonschema_rs",
    "sqlite_utils",
    "edge_agent.report",
    "edge_agent.collect",
    "drivers.opcua.link",
    "edge_agent.status_view",
    "edge_agent.contracts.text",
    "psutil",
    "edge_agent.commands.report",
    "edge_agent.commands.export",
)

SCRIPT = textwrap.dedent(
    """
    import asyncio, sqlite3, sys, time
    from pathlib import Path
    from edge_agent.cli import build_parser
    from edge_agent.config import load_config_compact
    from edge_agent.runtime import Runtime

    build_parser("run")  # what `edge-agent run` does first (edge_agent.cli.main)

    config = load_config_compact(Path(sys.argv[1]))
    heavy = sys.argv[2].split(",")

    def signed() -> int:
        try:
            con = sqlite3.connect(f"file:{config.storage.path}?mode=ro", uri=True)
        except sqlite3.Error:
            return 0
        try:
            return con.execute("SELECT count(*) FROM evidence").fetchone()[0]
        except sqlite3.Error:
            return 0
        finally:
            con.close()

    async def main() -> int:
        rt = Runtime(config, install_signals=False)
        task = asyncio.create_task(rt.run())
        deadline = time.monotonic() + 20
        while not signed() and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.1)
        rt.stop_event.set()
        await asyncio.wait_for(task, 20)
        return signed()

    records = asyncio.run(main())
    loaded = sorted(m for m in heavy if m in sys.modules)
    print("SIGNED", records, "LOADED", ",".join(loaded) or "-")
    """
)


ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, config: Path, modules: tuple[str, ...]) -> str:
    """Run ``script`` in a fresh interpreter (config file, module names); its stdout."""
    return subprocess.run(
        [sys.executable, "-c", script, str(config), ",".join(modules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    ).stdout


@pytest.mark.parametrize("key", ["first_start", "existing_key"])
def test_modbus_json_gateway_loads_no_heavy_optional_parts(tmp_path: Path, key: str) -> None:
    """The agent signs its start record and has imported none of :data:`HEAVY`."""
    if key == "existing_key":
        KeyStore(tmp_path / "state").ensure()
        assert (tmp_path / "state" / "evidence" / "device.key").is_file()
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    out = run_script(SCRIPT, config, HEAVY)
    last = out.strip().splitlines()[-1]
    signed, loaded = last.split(" LOADED ")
    assert int(signed.removeprefix("SIGNED ")) >= 1, out
    assert loaded == "-", f"imported by a Modbus-only JSON agent: {loaded}"


#: What the running agent needs but loading its configuration must not import: the
#: TOML parse tree peaks while the configuration is built, so every module loaded
#: before it raises the process's peak RSS (VmHWM) one for one. Measured on the
#: benchmark's 100 x 125 configuration: peak 47.5 MB with these loaded, 35.4 without
#: (``docs/bench-telemetry.md``, "Resident memory").
RUNTIME_ONLY = (
    "asyncio",
    "ssl",
    "sqlite3",
    "_hashlib",
    "paho.mqtt.client",
    "pymodbus",
    "asyncua",
    "edge_agent.buffer.store",
    "edge_agent.uplink.publisher",
    "edge_agent.kpi.calculator",
    "edge_agent.runtime",
)

LOAD_ONLY = textwrap.dedent(
    """
    import sys
    from edge_agent.cli import build_parser
    from edge_agent.config import load_config_compact

    build_parser("run")
    load_config_compact(sys.argv[1])
    print("LOADED", ",".join(m for m in sys.argv[2].split(",") if m in sys.modules) or "-")
    """
)

EXAMPLES = sorted((ROOT / "config").glob("*.toml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_loading_a_configuration_imports_none_of_the_runtime(example: Path) -> None:
    """``edge-agent run`` parses its file before the runtime's modules are loaded."""
    out = run_script(LOAD_ONLY, example, RUNTIME_ONLY)
    loaded = out.strip().splitlines()[-1].removeprefix("LOADED ")
    assert loaded == "-", f"imported while loading {example.name}: {loaded}"


def test_status_exit_codes_cover_every_agent_state() -> None:
    """``edge-agent status`` keys its exit codes by state value (status_view loads lazily)."""
    from edge_agent.commands.status import _EXIT_BY_STATE, _STATE_WORDS
    from edge_agent.status_view import AgentState

    assert set(_EXIT_BY_STATE) == {s.value for s in AgentState}
    assert set(_STATE_WORDS) == {s.value for s in AgentState}
