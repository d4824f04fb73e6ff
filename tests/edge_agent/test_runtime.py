"""The runtime's supervision and reload decisions, without devices or a broker."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.runtime import Runtime, _supervise

CONFIG = """
[agent]
id = "gw"
site = "lab"
state_dir = "{state}"

[telemetry]
interval_s = {interval}

[devices.a]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:1"
unit_id = 1
addressing = "zero"
publish = "every"

[devices.a.tags.running]
table = "coil"
address = 0
type = "bool"
"""


async def forever() -> None:
    await asyncio.Event().wait()


async def test_a_stop_request_ends_supervision_with_0() -> None:
    """Loops keep running until the stop event; then 0 (the caller stops them in order)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(forever()), asyncio.create_task(asyncio.sleep(0))]
    stop.set()
    assert await _supervise(tasks, stop) == 0
    assert not tasks[0].done()
    tasks[0].cancel()


async def test_a_loop_that_returns_is_done_but_one_that_raises_stops_the_agent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watchdog returns at once without systemd: fine. A loop raising: exit code 1."""
    stop = asyncio.Event()
    failed = asyncio.Event()

    async def fails() -> None:
        await failed.wait()
        raise RuntimeError("boom")

    tasks = [
        asyncio.create_task(asyncio.sleep(0), name="watchdog"),
        asyncio.create_task(fails(), name="reporter"),
    ]
    supervision = asyncio.create_task(_supervise(tasks, stop))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not supervision.done()  # the watchdog ending is not a failure
    failed.set()
    with caplog.at_level(logging.ERROR, logger="edge_agent.runtime"):
        assert await asyncio.wait_for(supervision, 5) == 1
    assert "Task failed task=reporter" in caplog.text


async def test_an_invalid_file_keeps_the_running_configuration(tmp_path: Path) -> None:
    """A rejected reload changes nothing: same config object, same telemetry engine."""
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state", interval=1.0))
    rt = Runtime(load_config(path), install_signals=False)
    config, engine = rt.config, rt.telemetry.engine
    path.write_text(CONFIG.format(state=tmp_path / "state", interval=-1.0))
    assert not await rt.reload()
    assert rt.config is config
    assert rt.telemetry.engine is engine
