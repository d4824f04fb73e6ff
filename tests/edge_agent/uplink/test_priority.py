"""Priority-aware draining: outbox class reads, the share scheduler, the lanes, the Uplink's order.

The Uplink tests drive the real publisher and a real Buffer with a fake MQTT link
(no broker, no sleeping): the test decides when PUBACKs arrive.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.buffer import Buffer, Outgoing, Priority, StorageConfig, outbox
from edge_agent.buffer.outbox import LaneQuery, OutboxRow
from edge_agent.buffer.schema import MIGRATIONS
from edge_agent.uplink import DrainOrder, MqttConfig, Uplink
from edge_agent.uplink.drain import SHARE_EVERY, DrainQueue, ShareScheduler

KIND = {Priority.HIGH: "kpi", Priority.MEDIUM: "health", Priority.LOW: "telemetry"}


# -- outbox reads --------------------------------------------------------------------------
@pytest.fixture
def con() -> sqlite3.Connection:
    """An in-memory database at the current schema."""
    c = sqlite3.connect(":memory:", isolation_level=None)
    for version in sorted(MIGRATIONS):
        for statement in MIGRATIONS[version]:
            c.execute(statement)
    return c


def add(con: sqlite3.Connection, priorities: Sequence[int]) -> None:
    outbox.insert(
        con,
        [
            outbox.NewMessage(
                kind="telemetry", priority=p, topic="t", data="{}", created=0.0, record_key=None
            )
            for p in priorities
        ],
    )


def test_priorities_lists_present_classes_ascending(con: sqlite3.Connection) -> None:
    """The class list is the distinct priorities present, most important first, [] when empty."""
    assert outbox.priorities(con) == []
    add(con, [9, 0, 9, 5, -1, 9])
    assert outbox.priorities(con) == [-1, 0, 5, 9]
    outbox.ack(con, [5], now=0.0)  # the only priority -1 row
    assert outbox.priorities(con) == [0, 5, 9]


def test_fetch_class_reads_one_class_in_seq_order_within_bounds(con: sqlite3.Connection) -> None:
    """A class read returns that class only, seq ascending, honouring after, max_seq and limit."""
    add(con, [9, 0, 9, 0, 9, 0, 9])  # seqs 1..7: class 0 = 2, 4, 6; class 9 = 1, 3, 5, 7

    def seqs(q: LaneQuery) -> list[int]:
        return [r.seq for r in outbox.fetch_class(con, q)]

    assert seqs(LaneQuery(priority=0, after=0, limit=10)) == [2, 4, 6]
    assert seqs(LaneQuery(priority=9, after=1, limit=2)) == [3, 5]
    assert seqs(LaneQuery(priority=9, after=0, limit=10, max_seq=5)) == [1, 3, 5]
    assert seqs(LaneQuery(priority=0, after=6, limit=10)) == []
    assert seqs(LaneQuery(priority=0, after=0, limit=0)) == []
    found, results = outbox.fetch_lanes(
        con,
        [LaneQuery(priority=0, after=2, limit=1), LaneQuery(priority=9, after=5, limit=5)],
        discover=True,
    )
    assert found == [0, 9]
    assert [[r.seq for r in rows] for rows in results] == [[4], [7]]


@pytest.mark.parametrize("max_seq", [None, 100])
def test_fetch_class_uses_the_priority_seq_index(
    con: sqlite3.Connection, max_seq: int | None
) -> None:
    """Class reads seek the existing (priority, seq) index: no migration, no table scan."""
    add(con, [9, 0] * 50)
    con.execute("ANALYZE")  # the plan must hold with statistics too
    captured: list[str] = []
    con.set_trace_callback(captured.append)  # the statement as run, parameters expanded
    outbox.fetch_class(con, LaneQuery(priority=0, after=0, limit=5, max_seq=max_seq))
    con.set_trace_callback(None)
    (sql,) = (c for c in captured if c.startswith("SELECT"))
    plan = " ".join(str(r[3]) for r in con.execute(f"EXPLAIN QUERY PLAN {sql}"))
    assert "INDEX outbox_priority_seq (priority=? AND seq>?" in plan
    assert "SCAN" not in plan


# -- the scheduler -------------------------------------------------------------------------
def test_scheduler_gives_the_top_class_all_but_a_share() -> None:
    """With two waiting classes the top one gets every-1 of every sends, the other the rest."""
    scheduler = ShareScheduler(8)
    picks = [scheduler.pick([0, 9]) for _ in range(800)]
    assert Counter(picks) == {0: 700, 9: 100}
    # The share is spread out: the lower class is never kept waiting more than 8 sends.
    gaps = [i for i, p in enumerate(picks) if p == 9]
    assert max(b - a for a, b in itertools.pairwise(gaps)) == 8
    assert gaps[0] < 8


def test_scheduler_shares_recursively_among_lower_classes() -> None:
    """With three waiting classes the shares are 7/8, 7/64 and 1/64: nobody is starved."""
    scheduler = ShareScheduler(8)
    picks = Counter(scheduler.pick([0, 5, 9]) for _ in range(64 * 10))
    assert picks == {0: 560, 5: 70, 9: 10}
    assert ShareScheduler(8).pick([9]) == 9


def test_scheduler_rejects_a_share_that_would_starve() -> None:
    """A share of every < 2 would give the lower classes nothing (or everything): refused."""
    with pytest.raises(ValueError, match="at least 2"):
        ShareScheduler(1)


# -- the lanes -----------------------------------------------------------------------------
def rows_of(spec: Sequence[tuple[int, int]]) -> list[OutboxRow]:
    """Outbox rows from (seq, priority) pairs."""
    return [OutboxRow(s, KIND[Priority(p)], p, "t", "{}", 0.0, False) for s, p in spec]


def backlog(n: int, kpi_every: int, health_every: int = 0) -> list[OutboxRow]:
    """A telemetry-heavy backlog with a kpi row every ``kpi_every`` seqs (and health)."""
    spec = []
    for seq in range(1, n + 1):
        if seq % kpi_every == 0:
            spec.append((seq, 0))
        elif health_every and seq % health_every == 0:
            spec.append((seq, 5))
        else:
            spec.append((seq, 9))
    return rows_of(spec)


def serve(queue: DrainQueue, rows: Sequence[OutboxRow], slots: int, limit: int) -> None:
    """Answer the queue's reads from an in-memory 'database' the way fetch_lanes would."""
    epoch = queue.epoch
    if queue.discovery_due:
        queue.discovery_due = False
        queue.add_classes(sorted({r.priority for r in rows}))
    queries = queue.queries(slots, limit)
    results = []
    for q in queries:
        got = [
            r
            for r in rows
            if r.priority == q.priority
            and r.seq > q.after
            and (q.max_seq is None or r.seq <= q.max_seq)
        ]
        results.append(got[: q.limit])
    queue.absorb(queries, results, epoch)


def drain(queue: DrainQueue, rows: Sequence[OutboxRow], slots: int, limit: int = 16) -> list[int]:
    """Take everything, ``slots`` at a time, topping up before each take; the send order."""
    order: list[int] = []
    for _ in range(len(rows) + 1):
        serve(queue, rows, slots, limit)
        batch = queue.take(slots)
        if not batch:
            break
        order += [r.seq for r in batch]
    return order


def test_backlog_sends_every_kpi_first_in_seq_order_without_starving_telemetry() -> None:
    """Mixed backlog: all kpi rows leave first (seq order), telemetry still gets 1 in 8."""
    rows = backlog(400, kpi_every=10)  # 40 kpi, 360 telemetry
    order = drain(DrainQueue(live_mark=None), rows, slots=5)
    prio = {r.seq: r.priority for r in rows}
    assert sorted(order) == [r.seq for r in rows]  # each row exactly once
    kpi = [s for s in order if prio[s] == 0]
    tele = [s for s in order if prio[s] == 9]
    assert kpi == sorted(kpi)
    assert tele == sorted(tele)
    last_kpi = max(order.index(s) for s in kpi)
    # 40 kpi at 7 of every 8 sends: all out by send 46 (40 * 8 / 7 rounded up).
    assert last_kpi < 46
    assert sum(1 for s in order[: last_kpi + 1] if prio[s] == 9) == (last_kpi + 1) - 40
    assert 0 < (last_kpi + 1) - 40 <= (last_kpi + 1) // SHARE_EVERY + 1


def test_three_classes_are_drained_in_priority_order() -> None:
    """KPI before health before telemetry; each class in seq order; every row once."""
    rows = backlog(600, kpi_every=20, health_every=7)
    order = drain(DrainQueue(live_mark=None), rows, slots=3, limit=8)
    prio = {r.seq: r.priority for r in rows}
    assert sorted(order) == list(range(1, 601))
    for p in (0, 5, 9):
        mine = [s for s in order if prio[s] == p]
        assert mine == sorted(mine)
    finish = {p: max(i for i, s in enumerate(order) if prio[s] == p) for p in (0, 5, 9)}
    assert finish[0] < finish[5] < finish[9]
    first = {p: min(i for i, s in enumerate(order) if prio[s] == p) for p in (0, 5, 9)}
    assert first[9] < SHARE_EVERY * SHARE_EVERY  # telemetry is served while both others wait


@settings(max_examples=150, deadline=None)
@given(
    prios=st.lists(st.sampled_from([0, 5, 9, 3]), min_size=1, max_size=120),
    slots=st.integers(1, 12),
    limit=st.integers(1, 20),
    mark=st.one_of(st.none(), st.integers(0, 120)),
)
def test_any_backlog_is_sent_once_in_lane_order_with_bounded_shares(
    prios: list[int], slots: int, limit: int, mark: int | None
) -> None:
    """Any backlog: every row once, seq order per lane, and lower classes get at most 1 in 8."""
    rows = [OutboxRow(s, "x", p, "t", "{}", 0.0, False) for s, p in enumerate(prios, 1)]
    order = drain(DrainQueue(live_mark=mark), rows, slots=slots, limit=limit)
    assert sorted(order) == list(range(1, len(rows) + 1))
    prio = {r.seq: r.priority for r in rows}
    for p in set(prios):
        for live in (False, True):
            lane = [s for s in order if prio[s] == p and (mark is not None and s > mark) is live]
            assert lane == sorted(lane)
    # While the most important class still has rows, the others get at most 1 send in 8.
    top = min(prios)
    last_top = max(i for i, s in enumerate(order) if prio[s] == top)
    others = sum(1 for s in order[: last_top + 1] if prio[s] != top)
    assert others <= (last_top + 1) // SHARE_EVERY


def test_live_first_alternates_live_and_backlog_within_a_class() -> None:
    """live_first: in one class, rows after the mark alternate with the backlog (half each)."""
    rows = rows_of([(s, 9) for s in range(1, 21)])
    queue = DrainQueue(live_mark=10)
    order = drain(queue, rows, slots=4)
    assert order[:8] == [11, 1, 12, 2, 13, 3, 14, 4]
    assert sorted(order) == list(range(1, 21))


def test_live_first_still_puts_a_more_important_class_first() -> None:
    """live_first composes with priority: the kpi backlog goes before live telemetry."""
    rows = rows_of([(1, 9), (2, 9), (3, 0), (4, 9), (5, 0), (6, 9), (7, 9), (8, 0)])
    order = drain(DrainQueue(live_mark=5), rows, slots=8)
    assert order[:3] == [8, 3, 5]  # kpi: live 8, backlog 3, backlog 5
    assert sorted(order) == list(range(1, 9))


def test_put_back_restores_the_front_of_each_lane() -> None:
    """Rows taken but not sent go back to the front of their lanes, so each lane keeps seq order."""
    rows = rows_of([(s, 0) for s in range(1, 11)])
    queue = DrainQueue(live_mark=None)
    serve(queue, rows, slots=6, limit=32)
    batch = queue.take(6)
    queue.put_back(batch[2:])
    assert [r.seq for r in queue.take(6)] == [3, 4, 5, 6, 7, 8]
    mixed = backlog(30, kpi_every=3)
    queue = DrainQueue(live_mark=None)
    serve(queue, mixed, slots=10, limit=32)
    batch = queue.take(10)
    queue.put_back(batch[4:])
    again = queue.take(30)
    for p in (0, 9):
        lane = [r.seq for r in again if r.priority == p]
        put = [r.seq for r in batch[4:] if r.priority == p]
        assert lane[: len(put)] == put
        assert lane == sorted(lane)


def test_a_read_older_than_a_wake_does_not_exhaust_a_lane() -> None:
    """A short read answered before new rows were committed must not hide those rows."""
    queue = DrainQueue(live_mark=None)
    queue.add_classes([9])
    queue.discovery_due = False
    epoch = queue.epoch
    queries = queue.queries(4, 16)
    queue.wake()  # a publish lands while the read is in flight
    queue.absorb(queries, [rows_of([(1, 9)])], epoch)
    assert queue.queries(4, 16) == [LaneQuery(priority=9, after=1, limit=16)]
    epoch = queue.epoch
    queue.absorb(queue.queries(4, 16), [[]], epoch)
    assert queue.queries(4, 16) == []  # now really read out until the next wake
    queue.wake()
    assert queue.discovery_due
    assert queue.queries(4, 16) == [LaneQuery(priority=9, after=1, limit=16)]


# -- the Uplink with a fake link -----------------------------------------------------------
class FakeLink:
    """Stands in for MqttLink: records publishes, returns increasing mids, never connects."""

    def __init__(self) -> None:
        self.generation = 1
        self.sent: list[tuple[int, int]] = []  # (mid, seq)
        self._mid = 0

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> tuple[int, int, int]:
        """Record the envelope's seq; always 'queued'."""
        self._mid += 1
        self.sent.append((self._mid, int(json.loads(payload)["seq"])))
        return self.generation, self._mid, int(mqtt.MQTT_ERR_SUCCESS)

    def start(self, loop: object) -> None:
        """Nothing to start."""

    def drop_connection(self) -> None:
        """Nothing to drop."""

    async def close(self, timeout: float = 5.0) -> None:
        """Nothing to close."""


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    """An open Buffer on a temporary file."""
    buf = Buffer(StorageConfig(path=tmp_path / "b.db"), "gw1")
    await buf.open()
    yield buf
    await buf.close()


async def fill_backlog(buf: Buffer, spec: Sequence[int]) -> dict[int, int]:
    """Publish one message per priority in ``spec``; returns seq -> priority."""
    seqs = await buf.publish_many(
        [
            Outgoing(kind=KIND[Priority(p)], topic="edge/lab/gw1/x", data={"i": i}, priority=p)
            for i, p in enumerate(spec)
        ]
    )
    return dict(zip(seqs, spec, strict=True))


def make_uplink(buf: Buffer, **kw: object) -> tuple[Uplink, FakeLink]:
    link = FakeLink()
    config = MqttConfig(host="127.0.0.1", **kw)  # type: ignore[arg-type]
    uplink = Uplink(config, buf, "gw1", "lab", link=lambda _events, _will: link)
    return uplink, link


async def pump(uplink: Uplink, link: FakeLink, *, acks: bool, rounds: int) -> None:
    """Fill the window, then (optionally) PUBACK everything in flight; ``rounds`` times."""
    for _ in range(rounds):
        if acks:
            uplink.link_acked([(link.generation, mid, None) for mid in list(uplink._pending)])
            uplink._flush_acks()
        before = len(link.sent)
        await uplink._fill()
        if len(link.sent) == before and not (acks and uplink._pending):
            return


@pytest.mark.parametrize("order", [DrainOrder.OLDEST_FIRST, DrainOrder.LIVE_FIRST])
async def test_uplink_publishes_kpi_backlog_first_and_deletes_only_on_puback(
    buffer: Buffer, order: DrainOrder
) -> None:
    """Real publisher + Buffer: kpi/stop rows go first, in seq order; rows leave only on PUBACK."""
    spec = [Priority.HIGH if i % 25 == 0 else Priority.LOW for i in range(500)]
    spec[7] = spec[300] = Priority.MEDIUM
    prio = await fill_backlog(buffer, spec)
    uplink, link = make_uplink(buffer, max_in_flight=10, drain_order=order)
    uplink.link_connected(1, False)
    await pump(uplink, link, acks=False, rounds=3)
    assert len(link.sent) == 10  # bounded: no PUBACK, no more sends
    await buffer.flush()
    assert buffer.backlog == 500  # nothing deleted without a PUBACK
    await pump(uplink, link, acks=True, rounds=1000)
    await buffer.ack([])  # a writer round trip: every ack_later job has run
    assert buffer.backlog == 0
    sent = [seq for _mid, seq in link.sent]
    assert sorted(set(sent)) == sorted(prio)
    assert len(sent) == len(set(sent)) + 0  # no duplicates without reconnects
    kpi = [s for s in sent if prio[s] == Priority.HIGH]
    assert kpi == sorted(kpi)
    assert max(sent.index(s) for s in kpi) < 24  # 20 kpi at 7 of every 8 sends
    tele = [s for s in sent if prio[s] == Priority.LOW]
    assert tele == sorted(tele)
    assert min(sent.index(s) for s in tele) < SHARE_EVERY * SHARE_EVERY


async def test_uplink_resends_unacked_rows_per_class_after_reconnect(buffer: Buffer) -> None:
    """A reconnect restarts every class at its oldest unacknowledged row, kpi again first."""
    prio = await fill_backlog(
        buffer, [Priority.LOW] * 30 + [Priority.HIGH] * 5 + [Priority.LOW] * 30
    )
    uplink, link = make_uplink(buffer, max_in_flight=8)
    uplink.link_connected(1, False)
    await pump(uplink, link, acks=False, rounds=1)
    first = [seq for _mid, seq in link.sent]
    assert [prio[s] for s in first[:5]] == [Priority.HIGH] * 5
    # PUBACK only the first three, then the connection drops.
    uplink.link_acked([(1, mid, None) for mid, _seq in link.sent[:3]])
    uplink._flush_acks()
    uplink.link_disconnected(1, "test")
    link.generation = 2
    uplink.link_connected(2, True)
    before = len(link.sent)
    await pump(uplink, link, acks=True, rounds=1000)
    await buffer.ack([])
    resent = [seq for _mid, seq in link.sent[before:]]
    assert resent[:2] == first[3:5]  # the unacked kpi rows go first again
    assert set(resent) == set(prio) - set(first[:3])
    assert buffer.backlog == 0


async def test_new_kpi_overtakes_a_telemetry_read_ahead(buffer: Buffer) -> None:
    """A kpi row committed while telemetry is read ahead is sent in the next window."""
    await fill_backlog(buffer, [Priority.LOW] * 300)
    uplink, link = make_uplink(buffer, max_in_flight=4)
    unsubscribe = buffer.on_publish(uplink._new_rows)
    try:
        uplink.link_connected(1, False)
        await pump(uplink, link, acks=True, rounds=3)
        (kpi_seq,) = (await fill_backlog(buffer, [Priority.HIGH])).keys()
        before = len(link.sent)
        await pump(uplink, link, acks=True, rounds=1)
        assert link.sent[before][1] == kpi_seq
    finally:
        unsubscribe()
