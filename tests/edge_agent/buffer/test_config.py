"""``[storage]`` parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.buffer import StorageConfig, SyncMode, parse_storage
from edge_agent.configkit import Issues, Table
from edge_agent.errors import ConfigError


def test_defaults_put_the_database_in_the_state_dir() -> None:
    """Without a [storage] section the buffer is <state_dir>/buffer.db with a 512 MB budget."""
    config = parse_storage(None, state_dir=Path("/var/lib/edge-agent"))
    assert config.path == Path("/var/lib/edge-agent/buffer.db")
    assert config.max_bytes == 512 * 1024 * 1024
    assert config.outbox_sync is SyncMode.FULL


def test_values_and_relative_path() -> None:
    """Given values are used; a relative path is resolved under the state dir."""
    issues = Issues("a.toml")
    config = parse_storage(
        Table(
            {"path": "db/x.db", "max_mb": 64, "flush_rows": 10, "outbox_sync": "normal"},
            "storage",
            issues,
        ),
        state_dir=Path("/s"),
    )
    issues.raise_if_any()
    assert config == StorageConfig(
        path=Path("/s/db/x.db"), max_mb=64, flush_rows=10, outbox_sync=SyncMode.NORMAL
    )


def test_errors_name_the_key_path() -> None:
    """Out-of-range values, inconsistent bounds and unknown keys are all reported."""
    issues = Issues("a.toml")
    parse_storage(
        Table(
            {
                "max_mb": 0,
                "flush_rows": 500,
                "queue_max_rows": 10,
                "retention_days": 3,
                "outbox_sync": "off",
            },
            "storage",
            issues,
        ),
        state_dir=Path("/s"),
    )
    with pytest.raises(ConfigError) as info:
        issues.raise_if_any()
    text = str(info.value)
    for fragment in (
        "storage.max_mb",
        "storage.queue_max_rows: must be >=",
        "storage.retention_days: unknown key",
        "storage.outbox_sync",
    ):
        assert fragment in text


def test_raw_mode_defaults_to_blocks_and_refuses_unknown_modes() -> None:
    """``raw``: blocks by default, changes/none accepted, anything else named in the error."""
    from edge_agent.buffer.config import RawMode

    assert parse_storage(None, state_dir=Path("/s")).raw is RawMode.BLOCKS
    issues = Issues("a.toml")
    config = parse_storage(Table({"raw": "changes"}, "storage", issues), state_dir=Path("/s"))
    issues.raise_if_any()
    assert config.raw is RawMode.CHANGES
    bad = Issues("a.toml")
    parse_storage(Table({"raw": "rows"}, "storage", bad), state_dir=Path("/s"))
    with pytest.raises(ConfigError, match=r"storage\.raw"):
        bad.raise_if_any()
