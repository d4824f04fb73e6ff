"""Chaos (c): TLS with a CA generated in the test; a wrong CA is refused with a clear error."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from edge_agent.buffer import Priority
from edge_agent.uplink import MqttConfig, Transport
from tests.edge_agent.uplink.harness import running_agent, seqs
from tests.plugins.broker import MosquittoFactory, MqttCollector, make_test_pki

pytestmark = pytest.mark.integration


def tls_config(port: int, **kw: object) -> MqttConfig:
    """A TLS client config for 127.0.0.1 with fast reconnects."""
    return MqttConfig(
        host="127.0.0.1",
        port=port,
        transport=Transport.TLS,
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
        **kw,  # type: ignore[arg-type]
    )


async def test_tls_with_client_certificate_delivers(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """With the right CA and a client certificate (broker requires one) messages arrive."""
    pki = make_test_pki(tmp_path / "pki")
    broker = mosquitto_factory(tls=pki.broker_tls(require_certificate=True))
    # A plain listener next to the TLS one would be needed for an anonymous collector;
    # instead the collector also speaks TLS with the client certificate.
    coll = MqttCollector(broker.host, broker.port, "edge/#")
    coll.client.tls_set(
        ca_certs=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key)
    )
    with coll:
        config = tls_config(
            broker.port, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
        )
        async with running_agent(tmp_path / "b.db", config) as agent:
            for i in range(5):
                await agent.buffer.publish(
                    "health", agent.uplink.topics.health(), {"i": i}, priority=Priority.MEDIUM
                )
            assert await asyncio.to_thread(coll.wait_for, lambda m: len(seqs(m)) >= 5, 10)
    assert seqs(coll.snapshot()) == [1, 2, 3, 4, 5]


async def test_wrong_ca_is_refused_with_clear_error(
    tmp_path: Path, mosquitto_factory: MosquittoFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker certificate from another CA fails verification; the error says why."""
    pki = make_test_pki(tmp_path / "pki")
    other = make_test_pki(tmp_path / "other", name="other")
    broker = mosquitto_factory(tls=pki.broker_tls())
    with caplog.at_level(logging.ERROR):
        async with running_agent(
            tmp_path / "b.db", tls_config(broker.port, ca_file=other.ca)
        ) as agent:
            await agent.buffer.publish(
                "health", agent.uplink.topics.health(), {}, priority=Priority.MEDIUM
            )
            assert await agent.wait(lambda: agent.uplink.state()["last_error"] is not None, 5)
            state = agent.uplink.state()
            assert state["connected"] is False
            assert "TLS certificate verification failed" in state["last_error"]
            assert agent.buffer.backlog == 1
    assert any("TLS certificate verification failed" in r.getMessage() for r in caplog.records)


async def test_hostname_mismatch_refused_unless_insecure(
    tmp_path: Path, mosquitto_factory: MosquittoFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Hostname verification is on by default; tls_insecure turns it off with a WARNING."""
    pki = make_test_pki(tmp_path / "pki", san_ip=False)  # certificate names only "localhost"
    broker = mosquitto_factory(tls=pki.broker_tls())
    common = {"port": broker.port, "ca_file": pki.ca}
    async with running_agent(tmp_path / "a.db", tls_config(**common)) as agent:
        assert await agent.wait(lambda: agent.uplink.state()["last_error"] is not None, 5)
        assert "TLS certificate verification failed" in agent.uplink.state()["last_error"]
        assert "127.0.0.1" in agent.uplink.state()["last_error"]
        assert agent.uplink.state()["connected"] is False
    insecure = tls_config(**common, tls_insecure=True)
    with caplog.at_level(logging.WARNING):
        async with running_agent(tmp_path / "b.db", insecure) as agent:
            assert await agent.wait(lambda: agent.uplink.state()["connected"], 5)
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)
