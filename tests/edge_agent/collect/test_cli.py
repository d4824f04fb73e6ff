"""edge-agent-collect's command line: exit codes and messages, against a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.collect import cli


def test_status_of_an_unmigrated_database_says_what_to_do(
    pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 while migrations are pending, naming the command that applies them."""
    assert cli.main(["status", "--dsn", pg_database]) == 1
    out = capsys.readouterr().out
    assert "PENDING: 0001.initial, 0002.views, 0003.contracts_evidence" in out
    assert "edge-agent-collect migrate" in out


def test_migrate_then_status(pg_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Migrating twice applies the schema once; status --json then lists no agent yet."""
    assert cli.main(["migrate", "--dsn", pg_database]) == 0
    assert cli.main(["migrate", "--dsn", pg_database]) == 0
    out = capsys.readouterr().out
    assert "applied: 0001.initial, 0002.views, 0003.contracts_evidence" in out
    assert "schema up to date" in out
    assert cli.main(["status", "--dsn", pg_database, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["agents"] == []
    assert doc["migrations"]["pending"] == []


def test_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """No traceback when the server is not there: exit 1 and the driver's first line."""
    dsn = "host=127.0.0.1 port=1 user=postgres dbname=x connect_timeout=2"
    assert cli.main(["status", "--dsn", dsn]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edge-agent-collect status: ")
    assert "Traceback" not in err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dsn and --config together, or neither, is a usage error."""
    assert cli.main(["status"]) == 2
    assert cli.main(["migrate", "--dsn", "x", "--config", str(tmp_path / "c.toml")]) == 2
    assert "--config or --dsn" in capsys.readouterr().err


def test_missing_tls_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CA file that does not exist stops run before anything is connected (exit 1)."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[database]\ndsn = "host=127.0.0.1 port=1 dbname=x"\n'
        '[mqtt]\nhost = "127.0.0.1"\ntransport = "tls"\n'
        f'ca_file = "{tmp_path / "missing.pem"}"\nclient_id = "x"\n'
    )
    assert cli.main(["run", "-c", str(path)]) == 1
    assert "mqtt TLS setup" in capsys.readouterr().err


def test_verify_command_json_and_unknown_agent(
    pg_migrated: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`verify --json` reports the annex-verified agent; an agent never heard exits 1."""
    from .recorded import AGENT, ANNEX, replay

    replay(pg_migrated)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[database]\ndsn = "{pg_migrated}"\n[mqtt]\nhost = "127.0.0.1"\nclient_id = "v"\n'
        f'[evidence.trust]\n"{AGENT}" = ["SHA256:{ANNEX}"]\n'
    )
    assert cli.main(["verify", "-c", str(cfg), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(a["agent"], a["status"], a["problems"]) for a in doc["agents"]] == [
        (AGENT, "verified", [])
    ]
    assert cli.main(["verify", "-c", str(cfg), "--agent", "ghost"]) == 1
    assert "ghost: not heard by the collector" in capsys.readouterr().out
    assert cli.main(["status", "--dsn", pg_migrated, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(v["agent"], v["verification_status"]) for v in status["verification"]] == [
        (AGENT, "verified")
    ]
