"""Telemetry outbox rows that refer to frames (issue 20): exact, rebuilt byte for byte.

The real chain is used: a Buffer, the TelemetryEngine, the OutboxStaging and the
TelemetryPump, fed as the dispatcher feeds them (the buffer first, then the engine).
The text each message had is what the first fetch returns (the cache); after a
restart (cache empty) the rows are rebuilt from the frames and must be identical.
"""

from __future__ import annotations

import math
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, StorageConfig, retention
from edge_agent.buffer.config import RawMode
from edge_agent.buffer.outbox import REF_PREFIX
from edge_agent.buffer.telerefs import materialise, referenced_floor
from edge_agent.columns import Column, ColumnPoll
from edge_agent.model import Quality, Reading
from edge_agent.ops.clock import ClockWatch
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.outgoing.telemetry import TelemetryPump
from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine
from edge_agent.uplink import TopicTemplates

# Recent: frames older than readings_retention_h are pruned when the buffer opens.
T0 = float(math.floor(time.time()) - 60)
TAGS = ("a", "b", "c")


def _columns(values: Sequence[object], t: float, tags: tuple[str, ...] = TAGS) -> ColumnPoll:
    return ColumnPoll("d1", [Column(tags, list(values), t, t - T0)])  # type: ignore[arg-type]


def _readings(values: Sequence[object], t: float, quality: Quality = Quality.GOOD) -> list[Reading]:
    reason = "" if quality is Quality.GOOD else "timeout"
    return [
        Reading("d1", tag, v, t, t - T0, quality, reason)  # type: ignore[arg-type]
        for tag, v in zip(TAGS, values, strict=True)
    ]


# Each case: the polls of three publish rounds (a round's polls, then round()).
CASES: dict[str, list[list[Sequence[Reading]]]] = {
    "ints": [[_columns([1, 65535, -5], T0 + r)] for r in range(3)],
    "floats and non-finite": [
        [_columns([0.1, math.nan, -math.inf], T0 + r + 0.25)] for r in range(3)
    ],
    "several polls a round": [
        [_columns([r, k, 7], T0 + r + k / 4) for k in range(4)] for r in range(3)
    ],
    "two blocks one time": [
        [
            ColumnPoll(
                "d1",
                [
                    Column(("a", "b"), [r, 2], T0 + r, float(r)),
                    Column(("c",), [3.5], T0 + r, float(r)),
                ],
            )
        ]
        for r in range(3)
    ],
    "bad and mixed": [
        [
            _readings([None, None, None], T0 + r, Quality.BAD),
            _readings([True, "run", [1, 2]], T0 + r + 0.5),
        ]
        for r in range(3)
    ],
}


def _shifted(rounds: list[list[Sequence[Reading]]], dt: float) -> list[list[list[Reading]]]:
    return [[[r._replace(ts=r.ts + dt) for r in poll] for poll in polls] for polls in rounds]


def _pump(buf: Buffer, units: bool = False, synced: bool = True) -> TelemetryPump:
    policies = {("d1", t): PublishPolicy(mode=PublishMode.EVERY) for t in TAGS}
    engine = TelemetryEngine(
        policies, publish_interval_s=1.0, units={"d1": {"a": "degC"}} if units else None
    )
    staging = OutboxStaging(buf, TopicTemplates.create(site="lab", agent="gw"))
    return TelemetryPump(engine, staging, ClockWatch(lambda: synced, 0.0))


async def _feed(
    buf: Buffer, pump: TelemetryPump, rounds: Sequence[Sequence[Sequence[Reading]]]
) -> None:
    assert pump.engine is not None
    for polls in rounds:
        for poll in polls:
            buf.add_readings(poll)  # as the dispatcher: the buffer first, then the engine
            pump.engine.ingest(poll)
        await pump.round(max(r.ts for r in polls[-1]) + 0.99)


def _stored(path: Path) -> list[bool]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT data FROM outbox WHERE kind = 'telemetry' ORDER BY seq")
        return [isinstance(d, bytes) and d.startswith(REF_PREFIX) for (d,) in rows]
    finally:
        con.close()


async def _texts(buf: Buffer) -> list[str]:
    return [r.data for r in await buf.fetch_outbox(after=0, limit=100) if r.kind == "telemetry"]


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_restart_rebuilds_every_message_byte_for_byte(tmp_path: Path, case: str) -> None:
    """After the first message of a device, rows are references; rebuilt texts are identical."""
    cfg = StorageConfig(path=tmp_path / "b.db")
    buf = Buffer(cfg, "gw")
    await buf.open()
    try:
        await _feed(buf, _pump(buf), CASES[case])
        sent = await _texts(buf)  # the texts as built (held by the cache)
    finally:
        await buf.close()
    assert len(sent) == 3
    # The first message has no cut before it: text; the next two refer to frames.
    assert _stored(cfg.path) == [False, True, True]
    again = Buffer(cfg, "gw")
    await again.open()
    try:
        assert await _texts(again) == sent
        assert again.stats()["telemetry_refs"]["rebuilt"] == 2
    finally:
        await again.close()


async def test_units_and_an_unsynchronised_clock_are_rebuilt_too(tmp_path: Path) -> None:
    """The parts of the text that do not come from the values travel in the reference."""
    cfg = StorageConfig(path=tmp_path / "b.db")
    buf = Buffer(cfg, "gw")
    await buf.open()
    try:
        pump = _pump(buf, units=True, synced=False)
        assert pump.engine is not None
        pump.engine._batches["d1"]._units_at = None  # units again in the next message
        await _feed(buf, pump, CASES["ints"])
        pump.engine._batches["d1"]._units_at = None
        await _feed(buf, pump, [[_columns([9, 9, 9], T0 + 5)]])
        sent = await _texts(buf)
    finally:
        await buf.close()
    assert '"units":{"a":"degC"}' in sent[-1]
    assert '"clock_unsynced":true' in sent[-1]
    assert _stored(cfg.path)[-1]
    again = Buffer(cfg, "gw")
    await again.open()
    try:
        assert await _texts(again) == sent
    finally:
        await again.close()


async def test_messages_that_are_not_exactly_their_frames_stay_text(tmp_path: Path) -> None:
    """An unpublished tag, a change policy or raw = "changes": stored as text, as before."""
    for name, policies, raw in (
        ("unpublished", {("d1", "a"): PublishMode.EVERY, ("d1", "b"): PublishMode.EVERY}, None),
        ("change", {("d1", t): PublishMode.CHANGE for t in TAGS}, None),
        ("raw changes", {("d1", t): PublishMode.EVERY for t in TAGS}, RawMode.CHANGES),
    ):
        path = tmp_path / f"{name}.db"
        cfg = StorageConfig(path=path, raw=raw or RawMode.BLOCKS)
        buf = Buffer(cfg, "gw")
        await buf.open()
        try:
            engine = TelemetryEngine(
                {k: PublishPolicy(mode=m) for k, m in policies.items()}, publish_interval_s=1.0
            )
            staging = OutboxStaging(buf, TopicTemplates.create(site="lab", agent="gw"))
            pump = TelemetryPump(engine, staging, ClockWatch(lambda: True, 0.0))
            await _feed(buf, pump, CASES["several polls a round"])
            sent = await _texts(buf)
        finally:
            await buf.close()
        assert len(sent) == 3, name
        assert _stored(path) == [False, False, False], name


async def test_a_row_whose_frames_are_gone_is_dropped_and_counted(tmp_path: Path) -> None:
    """Frames removed (budget, age) before the row was sent: deleted at fetch, counted."""
    cfg = StorageConfig(path=tmp_path / "b.db")
    buf = Buffer(cfg, "gw")
    await buf.open()
    try:
        await _feed(buf, _pump(buf), CASES["ints"])
    finally:
        await buf.close()
    con = sqlite3.connect(cfg.path)
    con.execute("DELETE FROM frames WHERE id = (SELECT max(id) FROM frames)")
    con.commit()
    con.close()
    again = Buffer(cfg, "gw")
    await again.open()
    try:
        texts = await _texts(again)
        assert len(texts) == 2  # the text row and the reference whose frames remain
        assert again.stats()["dropped"].get("outbox:telemetry") == 1
        assert again.backlog == 2
    finally:
        await again.close()


async def test_frames_unsent_rows_refer_to_outlive_the_raw_age_limit(tmp_path: Path) -> None:
    """Frames past readings_retention_h stay while an unsent row refers to them."""
    cfg = StorageConfig(path=tmp_path / "b.db", readings_retention_h=1.0)
    buf = Buffer(cfg, "gw")
    await buf.open()
    try:
        await _feed(buf, _pump(buf), _shifted(CASES["ints"], -7200.0))  # two hours old
        sent = await _texts(buf)
    finally:
        await buf.close()
    again = Buffer(cfg, "gw")
    await again.open()  # prunes by age at once
    try:
        assert await _texts(again) == sent
        assert again.stats()["dropped"].get("outbox:telemetry") is None
    finally:
        await again.close()
    con = sqlite3.connect(cfg.path)
    left = con.execute("SELECT count(*) FROM frames").fetchone()[0]
    con.close()
    assert left == 2  # the first message's frame (a text row) was aged out


def _random_rounds(n: int) -> list[list[ColumnPoll]]:
    """Rounds of one poll of 125 incompressible registers (frames fill pages)."""
    rng = random.Random(7)
    tags = tuple(f"r{i}" for i in range(125))
    return [
        [ColumnPoll("d1", [Column(tags, [rng.randrange(65536) for _ in tags], T0 + r, float(r))])]
        for r in range(n)
    ]


async def test_under_the_budget_referred_frames_go_only_with_their_rows(tmp_path: Path) -> None:
    """Budget order: unreferred frames first; frames of unsent rows after those rows."""
    cfg = StorageConfig(path=tmp_path / "b.db")
    buf = Buffer(cfg, "gw")
    await buf.open()
    try:
        engine = TelemetryEngine(
            {("d1", f"r{i}"): PublishPolicy(mode=PublishMode.EVERY) for i in range(125)},
            publish_interval_s=1.0,
        )
        staging = OutboxStaging(buf, TopicTemplates.create(site="lab", agent="gw"))
        pump = TelemetryPump(engine, staging, ClockWatch(lambda: True, 0.0))
        await _feed(buf, pump, _random_rounds(120))
        rows = await buf.fetch_outbox(after=0, limit=1000)
        await buf.ack([r.seq for r in rows[:60]])  # sent: their frames are free to go
        unsent = {r.seq: r.data for r in rows[60:]}
    finally:
        await buf.close()
    con = sqlite3.connect(cfg.path, isolation_level=None)
    try:
        floor = referenced_floor(con)
        assert floor is not None
        used = retention.page_usage(con).used
        drops: Counter[str] = Counter()
        retention.prune_to_budget(con, used - 3, drops)  # what the sent rows' frames free
        assert drops["readings"] > 0
        assert "outbox:telemetry" not in drops
        kept = con.execute("SELECT min(id) FROM frames").fetchone()[0]
        assert kept <= floor + 1  # every frame an unsent row refers to is there
        assert materialise(con, _refs(con), None) == unsent
        retention.prune_to_budget(con, 0, drops)  # nothing but rows never evicted left
        assert drops["outbox:telemetry"] == 60
        assert con.execute("SELECT count(*) FROM frames").fetchone()[0] == 0
    finally:
        con.close()


def _refs(con: sqlite3.Connection) -> list[tuple[int, bytes]]:
    return [
        (int(seq), data)
        for seq, data in con.execute("SELECT seq, data FROM outbox ORDER BY seq")
        if isinstance(data, bytes) and data.startswith(REF_PREFIX)
    ]
