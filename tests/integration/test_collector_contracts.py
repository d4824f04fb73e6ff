"""The collector stores the running agent's contract records and verifies its evidence chain.

Bundled simulator → agent process (a contract whose period is a few wall seconds, one
scripted breakdown) → real Mosquitto → collector process → real PostgreSQL. Checked:

* contract status (latest), the closed period record (with its revisions) and the alerts
  are in their tables, each once, none quarantined, none left in ``other_records``;
* the ``contract_compliance`` view shows the DEVICE's term states and budgets for the
  customer whose back-office contract lists the agent's machine;
* ``edge-agent-collect verify`` with the annex fingerprint (``edge-agent key show``)
  finds the agent's stored chain ``verified``; a figure edited in the database, a signed
  record altered in the database, one deleted, and an altered copy delivered over MQTT
  each make it ``problem`` with the record named, and ``status`` shows it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.collect import cli
from edge_agent.evidence.keys import parse_fingerprint
from simulators.host import SimulatorHost
from tests.integration.collect_support import (
    CollectorProcess,
    Publisher,
    collector_toml,
    query,
    scalar,
    wait_until,
)
from tests.integration.sim_config import agent_section, machine_section, modbus_device
from tests.integration.test_contract_month import KPI, contract_section
from tests.integration.truth_kit import spawn_agent, stop_agent, unique_docs, wait_until_running
from tests.plugins.broker import Mosquitto, MqttCollector, Received

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

AGENT = "contract-gw"
PERIOD_S = 8.0
LEAD_S = 6.0


def _final_period(messages: list[Received]) -> bool:
    return any(
        m.payload.startswith(b"{") and b'"kind":"contract_period"' in m.payload for m in messages
    )


def _fingerprint(state: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent", "key", "show", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    line = next(w for w in out.splitlines() if "SHA256:" in w)
    text = line[line.index("SHA256:") :].strip()
    assert parse_fingerprint(text) is not None, out
    return text


def _verify(cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["verify", "-c", str(cfg), "--agent", AGENT])
    return code, capsys.readouterr().out


def _agent_row(dsn: str) -> tuple[Any, ...]:
    return query(
        dsn,
        "SELECT verification_status, verified_through_seq, verification_detail "
        "FROM agents WHERE agent = %s",
        AGENT,
    )[0]


async def test_contract_records_stored_and_evidence_verified(
    mosquitto: Mosquitto,
    pg_migrated: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Device contract figures land in their tables and view; the chain verifies, tampering not."""
    dsn = pg_migrated
    cfg = tmp_path / "collector.toml"
    base = collector_toml(dsn=dsn, port=mosquitto.port, client_id="contracts")
    cfg.write_text(base)
    collector = CollectorProcess(cfg, "contracts").start()
    log = tmp_path / "agent.log"
    state = tmp_path / "state"
    try:
        async with SimulatorHost(
            "steady", speed=1.0, seed=3, modbus_tcp=("127.0.0.1", 0), tick_s=0.01
        ) as sim:
            start = float(int(time.time() + LEAD_S))
            text = agent_section(
                agent_id=AGENT,
                state=state,
                mqtt_port=mosquitto.port,
                windows='["hour"]',
                allowed_lateness_s=1.0,
                status_interval_s=0.5,
            )
            text += modbus_device("plc", modbus_port=sim.modbus_port, poll_ms=100)
            text += machine_section("press", device="plc", kpi=KPI)
            text += contract_section(start, PERIOD_S, 4.0)
            (tmp_path / "agent.toml").write_text(text)
            with MqttCollector("127.0.0.1", mosquitto.port, "edge/#") as capture:
                proc = spawn_agent(tmp_path / "agent.toml", log)
                try:
                    await wait_until_running(
                        proc, state, ["press"], deadline=start - 0.5, log_path=log
                    )
                    await asyncio.sleep(max(0.0, start + 2 - time.time()))
                    sim.machine("M1").force_fault(17, 1.5)  # 1.5 s > 5 % of 8 s: breached
                    deadline = start + PERIOD_S + 15
                    while time.time() < deadline and proc.poll() is None:
                        if await asyncio.to_thread(capture.wait_for, _final_period, 0.5):
                            break
                    await asyncio.sleep(1.5)
                finally:
                    code = stop_agent(proc)
                assert code == 0, log.read_text()[-3000:]
                await asyncio.sleep(0.5)
                messages = capture.snapshot()

        docs = unique_docs(messages)
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for d in docs:
            by_kind.setdefault(d["kind"], []).append(d)
        assert {"contract", "contract_period", "contract_alert"} <= set(by_kind), (
            sorted(by_kind),
            log.read_text()[-3000:],
        )
        keys = {(d["agent"], d["epoch"], d["seq"]) for d in docs}
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == len(keys), 30), (
            collector.output
        )
        assert query(dsn, "SELECT reason FROM quarantine") == []
        assert scalar(dsn, "SELECT count(*) FROM other_records WHERE kind LIKE 'contract%%'") == 0

        # Latest status per (agent, contract): the one with the latest evaluation instant.
        last_status = max(by_kind["contract"], key=lambda d: (d["data"]["at"], d["seq"]))
        assert query(dsn, "SELECT contract, period, seq, data FROM device_contract_status") == [
            ("month", last_status["data"]["period"], last_status["seq"], last_status["data"])
        ]
        # The period record: highest revision; every revision kept.
        periods = by_kind["contract_period"]
        top = max(periods, key=lambda d: (d["data"]["revision"], d["seq"]))
        assert query(dsn, "SELECT revision, seq, data FROM device_contract_periods") == [
            (top["data"]["revision"], top["seq"], top["data"])
        ]
        assert scalar(dsn, "SELECT count(*) FROM device_contract_period_revisions") == len(
            {d["data"]["revision"] for d in periods}
        )
        alerts = {d["data"]["alert_id"] for d in by_kind["contract_alert"]}
        assert {r[0] for r in query(dsn, "SELECT alert_id FROM device_contract_alerts")} == alerts
        # Every signed message kept as received, with its proof.
        signed = {(d["agent"], d["epoch"], d["seq"]) for d in docs if "proof" in d}
        assert set(query(dsn, "SELECT agent, epoch, seq FROM signed_records")) == signed

        # Back office: customer ACME's contract C-1 covers the agent's press.
        query(dsn, "INSERT INTO customers (customer, name) VALUES ('acme', 'ACME') RETURNING 1")
        query(
            dsn,
            "INSERT INTO contracts (contract, customer, target) VALUES ('C-1', 'acme', 0.95) "
            "RETURNING 1",
        )
        query(
            dsn,
            "INSERT INTO contract_machines VALUES ('C-1', %s, 'press') RETURNING 1",
            AGENT,
        )
        view = query(
            dsn,
            "SELECT customer, contract, device_contract, final, term, level, state, so_far, "
            "budget FROM contract_compliance ORDER BY term, level",
        )
        expected = sorted(
            (
                "acme",
                "C-1",
                "month",
                True,
                t["term"],
                lv["level"],
                lv["state"],
                t["so_far"],
                lv["budget"],
            )
            for t in top["data"]["terms"]
            for lv in t["levels"]
        )
        assert sorted(view, key=lambda r: (r[4], r[5])) == sorted(
            expected, key=lambda r: (r[4], r[5])
        )
        assert any(r[6] in ("missed", "breached") for r in view), view

        # Evidence: not checked yet; verified with the annex fingerprint.
        assert _agent_row(dsn)[0] == "not_checked"
        fingerprint = _fingerprint(state)
        cfg.write_text(base + f'\n[evidence.trust]\n"{AGENT}" = ["{fingerprint}"]\n')
        code, out = _verify(cfg, capsys)
        assert code == 0, out
        status, through, detail = _agent_row(dsn)
        chained_top = max(d["seq"] for d in docs if "proof" in d)
        assert (status, through, detail) == ("verified", chained_top, None), out

        # 1. A figure edited in the database (the view's source row).
        query(
            dsn,
            "UPDATE device_contract_periods SET data = jsonb_set(data, '{terms,0,so_far}', "
            "'0.999') RETURNING 1",
        )
        code, out = _verify(cfg, capsys)
        status, _through, detail = _agent_row(dsn)
        assert (code, status) == (1, "problem"), out
        assert "row_altered: device_contract_periods" in detail
        assert f"seq {top['seq']}" in detail
        query(
            dsn,
            "UPDATE device_contract_periods SET data = r.data FROM "
            "device_contract_period_revisions r WHERE r.seq = device_contract_periods.seq "
            "RETURNING 1",
        )
        assert _verify(cfg, capsys)[0] == 0

        # 2. The signed copy itself altered in the database: its signature fails.
        raw = scalar(dsn, "SELECT raw FROM signed_records WHERE seq = %s", top["seq"])
        doc = json.loads(raw)
        doc["data"]["terms"][0]["so_far"] = 0.999
        query(
            dsn,
            "UPDATE signed_records SET raw = %s WHERE seq = %s RETURNING 1",
            json.dumps(doc),
            top["seq"],
        )
        code, out = _verify(cfg, capsys)
        detail = _agent_row(dsn)[2]
        assert code == 1, out
        assert f"altered: seq {top['seq']} (contract_period" in detail, out
        query(dsn, "UPDATE signed_records SET raw = %s WHERE seq = %s RETURNING 1", raw, top["seq"])

        # 3. A chained record deleted (with its row): the chain break is named.
        chained = sorted(d["seq"] for d in docs if d.get("proof", {}).get("prev") is not None)
        i = len(chained) // 2
        victim = chained[i]
        kept = query(dsn, "SELECT * FROM signed_records WHERE seq = %s", victim)
        query(dsn, "DELETE FROM signed_records WHERE seq = %s RETURNING 1", victim)
        code, out = _verify(cfg, capsys)
        detail = _agent_row(dsn)[2]
        assert code == 1, out
        assert "chain_break" in detail, out
        assert f"seq {chained[i - 1] + 1} to {chained[i + 1] - 1}" in detail, detail
        query(
            dsn,
            "INSERT INTO signed_records VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING 1",
            *kept[0],
        )
        assert _verify(cfg, capsys)[0] == 0

        # 4. An altered copy delivered over MQTT (a higher revision of the period, better
        # figures, a fresh seq): stored, shown by the view, and named by verify.
        forged = json.loads(json.dumps(top))
        forged["seq"] = max(d["seq"] for d in docs) + 1
        forged["data"]["revision"] += 1
        forged["data"]["terms"][0]["so_far"] = 1.0
        topic = next(m.topic for m in messages if b'"kind":"contract_period"' in m.payload)
        publisher = Publisher(mosquitto.port, "forger")
        try:
            publisher.publish([(topic, json.dumps(forged).encode())])
        finally:
            publisher.close()
        assert wait_until(
            lambda: (
                scalar(dsn, "SELECT max(revision) FROM device_contract_periods")
                == forged["data"]["revision"]
            ),
            20,
        ), collector.output
        code, out = _verify(cfg, capsys)
        status, _through, detail = _agent_row(dsn)
        assert (code, status) == (1, "problem"), out
        assert f"altered: seq {forged['seq']} (contract_period" in detail, detail
        assert scalar(dsn, "SELECT DISTINCT evidence FROM contract_compliance") == "problem"

        # status shows it.
        assert cli.main(["status", "--dsn", dsn]) == 0
        out = capsys.readouterr().out
        assert f"{AGENT}: problem" in out, out
        assert f"altered: seq {forged['seq']}" in out, out
    finally:
        assert collector.stop() == 0
