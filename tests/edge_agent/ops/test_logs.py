"""What the technician reads in journalctl: stop, KPI and uplink lines, and the log catalogue.

The catalogue test reads every logging call at info level and above in edge_agent/ and
drivers/ and checks it against docs/logs.md, both ways, so the page cannot go stale.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import re
from pathlib import Path

import pytest

from edge_agent import logtext
from edge_agent.buffer import Priority
from edge_agent.ops.events import CATALOGUE
from edge_agent.uplink import MqttConfig, MqttProtocol
from edge_agent.uplink.client import describe_disconnect
from tests.edge_agent.uplink.harness import running_agent
from tests.plugins.broker import MosquittoFactory

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "logs.md"
LEVELS = {"info", "warning", "error", "exception", "critical"}
_SENTENCE_END = re.compile(r":?\s+\w+=|:\s*%|:\n|%")


def sentence(message: str) -> str:
    """The fixed part of a log message: the text before its first field or placeholder."""
    return _SENTENCE_END.split(message, maxsplit=1)[0].rstrip(" ,:")


def code_messages() -> dict[str, str]:
    """Sentence -> source location of every info-and-above logging call."""
    found: dict[str, str] = {}
    for root in ("edge_agent", "drivers"):
        for path in sorted((ROOT / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "log"
                ):
                    continue
                args = node.args
                if node.func.attr == "log":  # log.log(level, msg): info or above in logtext
                    args = args[1:]
                elif node.func.attr not in LEVELS:
                    continue
                assert args, f"{path}:{node.lineno}: log call without a message"
                first = args[0]
                where = f"{path}:{node.lineno}: log messages are constant strings with %s fields"
                assert isinstance(first, ast.Constant), where
                assert isinstance(first.value, str), where
                found[sentence(first.value)] = f"{path.relative_to(ROOT)}:{node.lineno}"
    # The event catalogue writes its sentences from its table, not from literals.
    for event, spec in CATALOGUE.items():
        if spec.logged:
            for text in (spec.enter, spec.leave):
                if text is not None:
                    found[sentence(text)] = f"edge_agent/ops/events.py: {event.value}"
    return found


def documented() -> set[str]:
    """Sentences listed in the catalogue tables (second column, in backticks)."""
    rows = re.findall(r"^\| \w+ \| `([^`]+)` \|", DOC.read_text(encoding="utf-8"), re.M)
    return {sentence(r) for r in rows}


def test_every_log_line_is_in_the_catalogue() -> None:
    """Each info-or-above line the code can write is listed in docs/logs.md."""
    missing = {s: where for s, where in code_messages().items() if s not in documented()}
    assert not missing, f"add these to docs/logs.md: {missing}"


def test_the_catalogue_lists_no_line_the_code_does_not_write() -> None:
    """docs/logs.md has no line that no longer exists."""
    assert documented() - set(code_messages()) == set()


def stop(**kw: object) -> dict[str, object]:
    data: dict[str, object] = {
        "machine": "press1",
        "start": "2025-11-24T16:00:00.000Z",
        "end": None,
        "duration_s": None,
        "category": "pending",
        "code": None,
        "fault_name": None,
    }
    data.update(kw)
    return data


def test_a_stop_is_one_line_at_start_and_one_at_end(caplog: pytest.LogCaptureFixture) -> None:
    """Start (once it is more than a micro-stop) and end, with machine, fault name and duration."""
    caplog.set_level(logging.INFO, logger="edge_agent.machines")
    logtext.log_stop(stop())  # every stop starts pending (class not known yet): not announced
    logtext.log_stop(stop(category="other"))
    logtext.log_stop(stop(code=101, fault_name="Motor overload", category="breakdown"))
    logtext.log_stop(stop(end="2025-11-24T16:03:05.000Z", duration_s=185.0, code=101,
                          fault_name="Motor overload", category="breakdown"))  # fmt: skip
    assert [r.getMessage() for r in caplog.records] == [
        "Machine stopped machine=press1 since=2025-11-24T16:00:00Z fault=none",
        "Machine running again machine=press1 stopped_for=3m05s class=breakdown "
        "fault=101 (Motor overload)",
    ]


def test_micro_stops_are_not_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """A micro-stop (counted in the KPIs) gives no info line, only a debug one at its end."""
    caplog.set_level(logging.DEBUG, logger="edge_agent.machines")
    logtext.log_stop(stop(machine="m2"))
    logtext.log_stop(
        stop(machine="m2", end="2025-11-24T16:00:04.000Z", duration_s=4.0, category="micro")
    )
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_kpi_flags_are_logged_when_they_appear_and_clear(caplog: pytest.LogCaptureFixture) -> None:
    """A flag appears (warning with its meaning), stays (nothing), goes (info); once per window."""
    caplog.set_level(logging.INFO, logger="edge_agent.machines")
    day = "day:2026-11-26"
    first = {"window": day, "flags": []}
    capped = {"window": day, "flags": ["performance_capped"]}
    logtext.log_kpi_flags("press1", None, first)
    logtext.log_kpi_flags("press1", first, capped)
    logtext.log_kpi_flags("press1", capped, capped)
    logtext.log_kpi_flags("press1", capped, first)
    next_day = {"window": "day:2026-11-27", "flags": ["performance_capped"]}
    logtext.log_kpi_flags("press1", first, next_day)
    logtext.log_kpi_flags("press1", next_day, {**next_day, "final": True})
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert messages[0].startswith(
        f"KPI problem machine=press1 window={day} flag=performance_capped: more parts than"
    )
    assert "ideal_cycle_time_s" in messages[0]
    assert messages[1] == f"KPI problem cleared machine=press1 window={day} flag=performance_capped"
    assert messages[2].startswith("KPI problem machine=press1 window=day:2026-11-27")


def test_a_flapping_kpi_flag_gets_at_most_three_lines_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flag that comes and goes with every report: appeared, cleared, back (and quiet)."""
    caplog.set_level(logging.INFO, logger="edge_agent.machines")
    day = "day:2026-11-28"
    clean = {"window": day, "flags": []}
    flagged = {"window": day, "flags": ["no_counts_while_running"]}
    previous: dict[str, object] | None = None
    for k in range(40):
        record = flagged if k % 2 else clean
        logtext.log_kpi_flags("flappy", previous, record)
        previous = record
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "cleared" in messages[1]
    assert messages[2].endswith("no more lines about it in this window)")
    # The next window starts afresh.
    logtext.log_kpi_flags(
        "flappy", previous, {"window": "day:2026-11-29", "flags": flagged["flags"]}
    )
    assert len(caplog.records) == 4


@pytest.mark.parametrize(
    ("reason", "from_broker", "expected"),
    [
        ("Unspecified error", False, "connection closed by the broker or the network"),
        ("Server shutting down", True, "the broker closed the connection (server shutting down)"),
        ("Keep alive timeout", False, "no answer from the broker within the keepalive time"),
        ("Success", False, "disconnected by the agent"),
        ("Not authorized", True, "the broker disconnected us: Not authorized"),
    ],
)
def test_disconnect_reasons_in_words(reason: str, from_broker: bool, expected: str) -> None:
    """The reason codes of paho become what happened (never a bare 'Unspecified error')."""
    assert describe_disconnect(reason, from_broker=from_broker).startswith(expected)


@pytest.mark.integration
@pytest.mark.parametrize("protocol", [MqttProtocol.V5, MqttProtocol.V311])
async def test_broker_stop_and_backlog_are_told_in_plain_words(
    tmp_path: Path,
    mosquitto_factory: MosquittoFactory,
    caplog: pytest.LogCaptureFixture,
    protocol: MqttProtocol,
) -> None:
    """A clean broker shutdown is a lost connection in words; the backlog's end is one line."""
    caplog.set_level(logging.INFO, logger="edge_agent.uplink")
    broker = mosquitto_factory(persistence=True)
    config = MqttConfig(
        host=broker.host,
        port=broker.port,
        protocol=protocol,
        reconnect_min_s=0.2,
        reconnect_max_s=0.5,
        max_in_flight=5,
    )
    async with running_agent(tmp_path / "b.db", config) as agent:
        assert await agent.wait(lambda: agent.uplink.state()["connected"], 5)
        broker.stop()  # SIGTERM: mosquitto shuts down cleanly
        assert await agent.wait(lambda: not agent.uplink.state()["connected"], 5)
        topic = agent.uplink.topics.health()
        for i in range(40):
            await agent.buffer.publish("health", topic, {"i": i}, priority=Priority.MEDIUM)
        broker.start()
        assert await agent.wait(lambda: agent.buffer.backlog == 0, 15)
        await asyncio.sleep(1.2)  # the housekeeping tick that notices the end of the backlog
    messages = [r.getMessage() for r in caplog.records]
    lost = [m for m in messages if m.startswith("MQTT connection lost")]
    assert len(lost) == 1, messages
    assert "Unspecified error" not in lost[0]
    assert "closed the connection" in lost[0] or "closed by the broker" in lost[0]
    reconnect = [m for m in messages if m.startswith("MQTT connected") and "backlog=40" in m]
    assert reconnect, messages
    sent = [m for m in messages if m.startswith("MQTT backlog sent, publishing live again")]
    assert len(sent) == 1, messages
    assert "messages=40" in sent[0]
