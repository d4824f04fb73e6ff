"""``run`` verifies the evidence itself with ``[evidence] verify_interval_s``.

A collector process with the annex fingerprint of the recorded agent
(:mod:`tests.edge_agent.collect.recorded`) receives the agent's recorded traffic through
a real Mosquitto: the agent turns ``verified`` without any command; a forged contract
alert delivered afterwards turns it ``problem`` with the forged number named.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.edge_agent.collect.recorded import AGENT, ANNEX, envelopes, recorded
from tests.integration.collect_support import (
    CollectorProcess,
    Publisher,
    collector_toml,
    query,
    wait_until,
)
from tests.plugins.broker import Mosquitto

pytestmark = pytest.mark.integration


def _status(dsn: str) -> tuple[str, str | None] | None:
    rows = query(
        dsn, "SELECT verification_status, verification_detail FROM agents WHERE agent = %s", AGENT
    )
    return (rows[0][0], rows[0][1]) if rows else None


def test_run_verifies_new_signed_records_periodically(
    mosquitto: Mosquitto, pg_migrated: str, tmp_path: Path
) -> None:
    """Verified after the traffic arrives; a forged record delivered later is named."""
    dsn = pg_migrated
    cfg = tmp_path / "collector.toml"
    cfg.write_text(
        collector_toml(dsn=dsn, port=mosquitto.port, client_id="verifying")
        + f'[evidence]\nverify_interval_s = 0.5\n[evidence.trust]\n"{AGENT}" = ["{ANNEX}"]\n'
    )
    collector = CollectorProcess(cfg, "verifying").start()
    try:
        publisher = Publisher(mosquitto.port, "replayer")
        try:
            publisher.publish(recorded())
            assert wait_until(lambda: _status(dsn) == ("verified", None), 20), (
                _status(dsn),
                collector.output,
            )
            forged = json.loads(json.dumps(envelopes("contract_alert")[-1]))
            forged["seq"] = 5000
            forged["data"]["alert_id"] += "-forged"
            topic = next(t for t, p in recorded() if b'"kind":"contract_alert"' in p)
            publisher.publish([(topic, json.dumps(forged).encode())])
        finally:
            publisher.close()
        assert wait_until(lambda: (_status(dsn) or ("",))[0] == "problem", 20), collector.output
        status = _status(dsn)
        assert status is not None
        assert status[1] is not None
        assert "altered: seq 5000 (contract_alert" in status[1]
        assert collector.count("Evidence problem") >= 1
    finally:
        assert collector.stop() == 0
