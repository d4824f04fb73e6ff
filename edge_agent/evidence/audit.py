"""The configuration audit record (kind ``config``): what rules the numbers were computed with.

Every accepted configuration (at start and at each SIGHUP reload that was
applied) becomes one chained record, so a changed micro-stop threshold, shift
plan or fault attribution is visible in the evidence at the moment it took
effect. ``data`` (schema ``schemas/config.schema.json``)::

    {"event": "start", "config_sha256": "<hex of the file's bytes>", "config_file": "/etc/...",
     "agent_version": "0.9.0", "spec_version": "kpi-spec/1",
     "machines": {"press1": {"profile_hash": "<hex>", "profile": {<KPI parameters, spec names>}}},
     "contracts": {}}

The profile is carried whole (a few hundred bytes per machine), so a verifier
can recompute from the chain itself and the bundle's profiles are checked against
the signed ones. ``contracts`` maps contract ids to definition hashes once
contracts exist (issue 15); it is empty until then. The file's hash covers
everything else (signal mapping, fault names); the file holds no secrets (the MQTT
password is read from the environment or a file), but only its hash is published.
Pure code apart from reading the file's bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent import __version__
from edge_agent.kpi.profile import SPEC_VERSION, KpiProfile, profile_hash

EVENTS = ("start", "reload")


def file_sha256(path: Path) -> str | None:
    """SHA-256 (hex) of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def config_record(
    *,
    event: str,
    config_file: Path,
    profiles: Mapping[str, KpiProfile],
    contracts: Mapping[str, str] | None = None,
    config_sha256: str | None = None,
) -> dict[str, Any]:
    """The ``data`` of a ``config`` record.

    Args:
        event: ``start`` or ``reload``.
        config_file: The agent's TOML file (its bytes are hashed unless ``config_sha256``).
        profiles: KPI profile per machine.
        contracts: Contract id -> hash of its definition (issue 15), if any.
        config_sha256: The file's hash when the caller read the bytes it parsed.
    """
    if event not in EVENTS:
        raise ValueError(f"event must be one of {EVENTS}, got {event!r}")
    return {
        "event": event,
        "config_sha256": config_sha256 if config_sha256 is not None else file_sha256(config_file),
        "config_file": str(config_file),
        "agent_version": __version__,
        "spec_version": SPEC_VERSION,
        "machines": {
            name: {"profile_hash": profile_hash(p), "profile": p.as_json()}
            for name, p in sorted(profiles.items())
        },
        "contracts": dict(sorted((contracts or {}).items())),
    }


def profiles_of(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``profile_hash -> profile JSON`` named by a ``config`` record's data."""
    out: dict[str, dict[str, Any]] = {}
    machines = data.get("machines")
    if not isinstance(machines, dict):
        return out
    for entry in machines.values():
        if isinstance(entry, dict) and isinstance(entry.get("profile"), dict):
            out[str(entry.get("profile_hash"))] = entry["profile"]
    return out
