"""The collector's TOML configuration: the shipped example, defaults and error reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.collect import cli, config
from edge_agent.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "collector" / "collector.example.toml"


def test_example_loads() -> None:
    """config/collector/collector.example.toml is a valid collector configuration."""
    cfg = config.load(EXAMPLE)
    assert cfg.mqtt.subscriptions() == ["$share/fleet/edge/#"]
    assert cfg.mqtt.transport is config.Transport.TLS
    assert cfg.mqtt.port == 8883
    assert cfg.database.migrate is config.MigrateMode.AUTO
    assert cfg.evidence.fingerprints == {
        "press-gw-1": ("3f2a9c1e0b7d4a55" + "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b",)
    }
    assert cli.main(["check-config", str(EXAMPLE)]) == 0


def test_minimal_config_takes_the_defaults(tmp_path: Path) -> None:
    """Only dsn, host and client_id are required."""
    path = tmp_path / "c.toml"
    path.write_text('[database]\ndsn = "dbname=x"\n[mqtt]\nhost = "h"\nclient_id = "c1"\n')
    cfg = config.load(path)
    assert cfg.mqtt.subscriptions() == ["edge/#"]
    assert (cfg.mqtt.port, cfg.mqtt.session_expiry_s) == (1883, 86400)
    assert (cfg.batch.max_messages, cfg.batch.max_wait_ms) == (500, 20)


def test_every_mistake_is_reported_with_its_key(tmp_path: Path) -> None:
    """All problems at once, each with file, key path and expectation; exit code 2."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[database]\ndsn = "dbname=x"\nmigrate = "sometimes"\n'
        '[mqtt]\nhost = "h"\nshared_group = "a/b"\ntopics = ["edge/#/x"]\nca_file = "x"\n'
        "client_id = 5\n[batch]\nmax_messages = 0\ncolour = 1\n"
        "[evidence]\nverify_interval_s = -1\n"
        '[evidence.trust]\ngw-1 = ["SHA256:12"]\ngw-2 = "x.pem"\n[evidence.other]\n'
    )
    with pytest.raises(ConfigError) as info:
        config.load(path)
    text = str(info.value)
    for key in (
        "database.migrate",
        "mqtt.shared_group",
        "mqtt.topics[0]",
        "mqtt.ca_file",
        "mqtt.client_id",
        "batch.max_messages",
        "batch.colour: unknown key",
        "evidence.verify_interval_s",
        "evidence.trust.gw-1[0]",
        "evidence.trust.gw-2",
        "evidence.other: unknown key",
    ):
        assert f"bad.toml: {key}" in text, key
    assert cli.main(["check-config", str(path)]) == 2


def test_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password is read when connecting, from the named variable; a missing one is named."""
    monkeypatch.setenv("X_PW", "s3cret")
    assert config.read_secret("X_PW", None, "database.password") == "s3cret"
    monkeypatch.delenv("X_PW")
    with pytest.raises(config.SecretError, match="X_PW"):
        config.read_secret("X_PW", None, "database.password")


def test_docs_quote_the_example_verbatim() -> None:
    """docs/collector.md shows config/collector/collector.example.toml as it is."""
    docs = (EXAMPLE.parents[2] / "docs" / "collector.md").read_text(encoding="utf-8")
    assert "```toml\n" + EXAMPLE.read_text(encoding="utf-8") + "```" in docs


def test_evidence_trust_takes_fingerprints_and_pem_files(tmp_path: Path) -> None:
    """Fingerprints in any grouping are normalised; .pem paths are relative to the file."""
    path = tmp_path / "c.toml"
    fp = "ab" * 32
    path.write_text(
        '[database]\ndsn = "dbname=x"\n[mqtt]\nhost = "h"\nclient_id = "c1"\n'
        f'[evidence.trust]\n"gw-1" = ["SHA256:{fp.upper()}", "keys/gw-1.pem"]\n'
    )
    cfg = config.load(path)
    assert cfg.evidence.fingerprints == {"gw-1": (fp,)}
    assert cfg.evidence.key_files == {"gw-1": (tmp_path / "keys" / "gw-1.pem",)}
    assert cfg.evidence.agents() == ["gw-1"]
