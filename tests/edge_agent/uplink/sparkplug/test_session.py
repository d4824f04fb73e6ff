"""The Edge Node session, driven without MQTT: a fake sender records what it publishes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.buffer.outbox import OutboxRow
from edge_agent.uplink.sparkplug.bdseq import BdSeq
from edge_agent.uplink.sparkplug.catalog import (
    Catalog,
    DataType,
    DeviceKind,
    DeviceSpec,
    MetricSpec,
)
from edge_agent.uplink.sparkplug.config import SparkplugConfig
from edge_agent.uplink.sparkplug.session import EdgeNode, RowResult
from tests.plugins.sparkplug import HostView, Msg, decode, rebirth_command, state_payload

GROUP, NODE = "g1", "gw"
T = 1_764_190_800.0


@dataclass
class FakeSender:
    """Accepts publishes while ``room`` lasts; records them decoded."""

    room: int = 1000
    sent: list[Msg] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)

    def send_control(self, topic: str, payload: bytes, qos: int) -> bool:
        """Record a birth/death while there is room."""
        if self.room <= 0:
            return False
        self.room -= 1
        self.sent.append(decode(topic, payload))
        return True

    def send_row(self, row: OutboxRow, topic: str, payload: bytes, qos: int) -> bool:
        """Record a row's message while there is room."""
        if not self.send_control(topic, payload, qos):
            return False
        self.rows.append(row.seq)
        return True

    def skip_row(self, row: OutboxRow) -> None:
        """Record a skipped row."""
        self.skipped.append(row.seq)

    def free_slots(self) -> int:
        """The room left."""
        return self.room

    def kinds(self) -> list[tuple[str, str | None]]:
        """``(message type, device)`` of everything sent."""
        return [(m.kind, m.device) for m in self.sent]


class Clock:
    """Wall and monotonic time the test moves by hand."""

    def __init__(self) -> None:
        self.wall = T
        self.mono = 100.0


def catalog() -> Catalog:
    plc = DeviceSpec(
        "plc",
        "plc",
        DeviceKind.PLC,
        {
            "temp": MetricSpec("temp", 10, DataType.FLOAT, "°C"),
            "count": MetricSpec("count", 11, DataType.UINT32),
        },
        flush_s=1.0,
    )
    ua = DeviceSpec("ua", "ua", DeviceKind.PLC, {"x": MetricSpec("x", 12, None)}, flush_s=1.0)
    press = DeviceSpec(
        "press-machine",
        "press",
        DeviceKind.MACHINE,
        {
            "KPI/day/window": MetricSpec("KPI/day/window", 20, DataType.STRING),
            "KPI/day/oee": MetricSpec("KPI/day/oee", 21, DataType.DOUBLE),
        },
    )
    return Catalog(
        node_metrics={"Health/cpu_percent": MetricSpec("Health/cpu_percent", 1, DataType.DOUBLE)},
        devices={"plc": plc, "ua": ua, "press-machine": press},
        plc={"plc": plc, "ua": ua},
        machines={"press": press},
        info={},
        window_kinds=("day",),
    )


def node(tmp_path: Path, clock: Clock, **kw: object) -> EdgeNode:
    config = SparkplugConfig(group_id=GROUP, device_death_grace_s=1.0, **kw)  # type: ignore[arg-type]
    spb = EdgeNode(
        config,
        NODE,
        BdSeq(tmp_path / "bdseq.json"),
        clock=lambda: clock.wall,
        monotonic=lambda: clock.mono,
    )
    spb.describe(catalog())
    return spb


def connect(spb: EdgeNode) -> None:
    spb.will()  # what the link does before CONNECT
    spb.accepted()
    spb.on_connected()


def telemetry(seq: int, device: str = "plc", **values: object) -> OutboxRow:
    data = {"device": device, "t0": int(T), "samples": [[seq, values]]}
    return OutboxRow(seq, "telemetry", 9, "t", json.dumps(data), T + seq / 1000, False)


def view(sender: FakeSender) -> HostView:
    return HostView(sender.sent, GROUP, NODE).check()


def test_births_come_first_then_rows_in_seq(tmp_path: Path) -> None:
    """NBIRTH (seq 0, bdSeq), the machine's DBIRTH and the up devices' DBIRTHs, then data."""
    clock, sender = Clock(), FakeSender()
    spb = node(tmp_path, clock)
    spb.device_comms("plc", True)
    connect(spb)
    assert spb.send_row(sender, telemetry(1, temp=1.5)) is RowResult.RETRY, "no data before NBIRTH"
    assert sender.sent == []
    assert spb.pump(sender, last_seq=0)
    assert sender.kinds() == [("NBIRTH", None), ("DBIRTH", "plc"), ("DBIRTH", "press-machine")]
    assert spb.send_row(sender, telemetry(5, temp=2.5, count=7)) is RowResult.SENT
    host = view(sender)
    assert host.sessions[0].bdseq == 0
    assert host.values("plc", "temp") == [(int(T * 1000) + 5, 2.5, False)]
    birth = sender.sent[1]
    assert birth.named("temp").properties == {"engUnit": "°C"}
    assert "x" not in {m.name for m in birth.metrics if m.name}, "untyped metric not announced"


def test_seq_wraps_after_255_and_a_refused_publish_consumes_none(tmp_path: Path) -> None:
    """Seq runs 0..255 then 0 again; a message the sender refuses does not take a seq."""
    clock, sender = Clock(), FakeSender()
    spb = node(tmp_path, clock)
    connect(spb)
    assert spb.pump(sender, 0)
    for i in range(1, 300):
        if i == 150:
            sender.room = 0
            assert spb.send_row(sender, telemetry(i, temp=1.0)) is RowResult.RETRY
            sender.room = 1000
        assert spb.send_row(sender, telemetry(i, temp=float(i))) is RowResult.SENT
    seqs = [m.seq for m in sender.sent]
    assert seqs[:2] == [0, 1]
    assert 255 in seqs
    assert seqs[seqs.index(255) + 1] == 0
    view(sender)  # +1 mod 256 all the way, including the refused publish


def test_rebirth_request_resends_every_birth_with_the_same_bdseq(tmp_path: Path) -> None:
    """NCMD Node Control/Rebirth: data stops, NBIRTH (seq 0, same bdSeq) and DBIRTHs again."""
    clock, sender = Clock(), FakeSender()
    spb = node(tmp_path, clock)
    connect(spb)
    assert spb.pump(sender, 0)
    spb.send_row(sender, telemetry(1, temp=1.0))
    spb.on_message(f"spBv1.0/{GROUP}/NCMD/{NODE}", rebirth_command())
    assert not spb.ready
    assert spb.pump(sender, 1)
    nbirths = [m for m in sender.sent if m.kind == "NBIRTH"]
    assert [m.seq for m in nbirths] == [0, 0]
    assert {m.named("bdSeq").value for m in nbirths} == {0}
    # The rebirth announced the last value sent, with its timestamp.
    assert sender.sent[-1].kind == "DBIRTH"
    plc_birth = [m for m in sender.sent if m.kind == "DBIRTH" and m.device == "plc"][-1]
    assert plc_birth.named("temp").value == 1.0
    host = view(sender)
    assert len(host.sessions) == 1


def test_rows_stored_before_the_birth_are_historical(tmp_path: Path) -> None:
    """A row with an outbox seq <= the mark at birth is flagged is_historical, newer ones not."""
    clock, sender = Clock(), FakeSender()
    spb = node(tmp_path, clock)
    connect(spb)
    clock.wall = T + 100  # births after every sample below
    assert spb.pump(sender, last_seq=10)
    spb.send_row(sender, telemetry(9, temp=1.0))
    row = telemetry(11, temp=2.0)
    spb.send_row(sender, row)
    later = OutboxRow(
        12,
        "telemetry",
        9,
        "t",
        json.dumps({"device": "plc", "t0": int(T) + 200, "samples": [[0, {"temp": 3.0}]]}),
        T + 200,
        False,
    )
    spb.send_row(sender, later)
    assert [h for _t, _v, h in view(sender).values("plc", "temp")] == [True, True, False]


def test_device_down_gets_ddeath_after_grace_and_late_rows_a_new_birth(tmp_path: Path) -> None:
    """Down: DDEATH once the grace is over; a row for it later gets DBIRTH, DDATA, DDEATH."""
    clock, sender = Clock(), FakeSender()
    spb = node(tmp_path, clock)
    spb.device_comms("plc", True)
    connect(spb)
    assert spb.pump(sender, 0)
    spb.device_comms("plc", False)
    clock.mono += 1.5  # flush_s 1.0 + grace 1.0 not over yet
    spb.send_row(sender, telemetry(1, temp=None))
    assert spb.pump(sender, 1)
    assert ("DDEATH", "plc") not in sender.kinds()
    clock.mono += 1.0
    assert spb.pump(sender, 1)
    assert sender.kinds()[-1] == ("DDEATH", "plc")
    assert spb.send_row(sender, telemetry(2, temp=None)) is RowResult.SENT
    assert sender.kinds()[-2:] == [("DBIRTH", "plc"), ("DDATA", "plc")]
    clock.mono += 3.0
    assert spb.pump(sender, 2)
    assert sender.kinds()[-1] == ("DDEATH", "plc")
    spb.device_comms("plc", True)
    assert spb.pump(sender, 2)
    assert sender.kinds()[-1] == ("DBIRTH", "plc")
    view(sender)


def test_primary_host_gates_births_and_offline_makes_the_node_leave(tmp_path: Path) -> None:
    """No birth before STATE online; a stale STATE is ignored; offline: NDEATH and leave."""
    clock, sender = Clock(), FakeSender()
    spb = node(tmp_path, clock, primary_host_id="scada")
    assert "spBv1.0/STATE/scada" in spb.subscriptions()
    connect(spb)
    assert not spb.pump(sender, 0)
    assert sender.sent == []
    spb.on_message("spBv1.0/STATE/scada", state_payload(True, 2000))
    assert spb.pump(sender, 0)
    spb.on_message("spBv1.0/STATE/scada", state_payload(False, 1000))  # older: ignored
    assert spb.ready
    assert not spb.leaving
    spb.on_message("spBv1.0/STATE/scada", b"not json")
    assert spb.ready
    spb.on_message("spBv1.0/STATE/scada", state_payload(False, 3000))
    assert spb.leaving
    assert not spb.pump(sender, 0)
    assert spb.leave(sender)
    assert sender.kinds()[-1] == ("NDEATH", None)
    assert sender.sent[-1].named("bdSeq").value == 0
    spb.on_disconnected()
    connect(spb)  # the link reconnects: next bdSeq, and waits for the host again
    assert not spb.pump(sender, 0)
    spb.on_message("spBv1.0/STATE/scada", state_payload(True, 4000))
    assert spb.pump(sender, 0)
    host = view(sender)
    assert [s.bdseq for s in host.sessions] == [0, 1]


def test_an_untyped_metric_is_learned_then_announced_by_a_rebirth(tmp_path: Path) -> None:
    """A metric without a configured type (OPC-UA) gets one from its first value and a rebirth."""
    clock, sender = Clock(), FakeSender()
    spb = node(tmp_path, clock)
    spb.device_comms("ua", True)
    connect(spb)
    assert spb.pump(sender, 0)
    row = telemetry(3, device="ua", x=41)
    assert spb.send_row(sender, row) is RowResult.RETRY
    assert spb.pump(sender, 3)
    ua_birth = [m for m in sender.sent if m.kind == "DBIRTH" and m.device == "ua"][-1]
    assert ua_birth.named("x").datatype == 4  # Int64
    assert spb.send_row(sender, telemetry(4, device="ua", x=42)) is RowResult.SENT
    view(sender)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("kpi", {"machine": "press", "name": "day:2026-11-26", "oee": 0.5}),
        ("kpi", {"machine": "press", "window": "day:2026-11-26", "window_kind": "day", "oee": 1}),
    ],
)
def test_kpi_records_become_machine_metrics(
    tmp_path: Path, kind: str, data: dict[str, object]
) -> None:
    """KPI records (current and announced shapes) are KPI/<kind>/<field> metrics."""
    clock, sender = Clock(), FakeSender()
    spb = node(tmp_path, clock)
    connect(spb)
    assert spb.pump(sender, 0)
    row = OutboxRow(1, kind, 0, "t", json.dumps(data), T, False)
    assert spb.send_row(sender, row) is RowResult.SENT
    host = view(sender)
    assert host.values("press-machine", "KPI/day/window")[0][1] == "day:2026-11-26"
    assert host.values("press-machine", "KPI/day/oee")[0][1] == data["oee"]


def test_rows_without_a_sparkplug_form_are_acknowledged_and_counted(tmp_path: Path) -> None:
    """A kind with no mapping, or a device not in the catalog, is skipped - and counted."""
    clock, sender = Clock(), FakeSender()
    spb = node(tmp_path, clock)
    connect(spb)
    assert spb.pump(sender, 0)
    assert spb.send_row(sender, OutboxRow(1, "status", 5, "t", "{}", T, False)) is RowResult.SKIPPED
    assert spb.send_row(sender, telemetry(2, device="nope", a=1)) is RowResult.SKIPPED
    assert sender.skipped == [1, 2]
    assert spb.state()["skipped_rows"] == 2


def test_a_reload_with_the_same_catalog_keeps_learned_types_and_needs_no_rebirth(
    tmp_path: Path,
) -> None:
    """Describing the same configuration again (SIGHUP) changes nothing on the wire."""
    clock, sender = Clock(), FakeSender()
    spb = node(tmp_path, clock)
    spb.device_comms("ua", True)
    connect(spb)
    assert spb.pump(sender, 0)
    assert spb.send_row(sender, telemetry(3, device="ua", x=41)) is RowResult.RETRY
    assert spb.pump(sender, 3)
    births = len(sender.sent)
    spb.describe(catalog())
    assert spb.ready
    assert spb.pump(sender, 3)
    assert len(sender.sent) == births
    changed = catalog()
    changed.plc["plc"].metrics["temp"].unit = "K"
    spb.describe(changed)
    assert not spb.ready, "a changed catalog is announced by a rebirth"
