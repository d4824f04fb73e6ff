"""The commands: key show/rotate, evidence export, verify (exit codes 0, 1, 2)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.evidence.keys import KeyStore, format_fingerprint, load_public_pem

from .conftest import MonthEvidence


def test_key_show_without_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before the first start there is no key: exit 1 and say so."""
    assert main(["key", "show", "--state-dir", str(tmp_path)]) == 1
    assert "no device key" in capsys.readouterr().err


def test_key_show_and_rotate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], month_evidence: MonthEvidence
) -> None:
    """Show prints the annex fingerprint and the PEM; rotate prepares next.key."""
    state = tmp_path / "state"
    shutil.copytree(month_evidence.month.state_dir / "evidence", state / "evidence")
    key = KeyStore(state).active()
    assert key is not None
    assert main(["key", "show", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert format_fingerprint(key.public.fingerprint) in out
    assert "PRIVATE" not in out
    assert main(["key", "show", "--pem", "--state-dir", str(state)]) == 0
    assert load_public_pem(capsys.readouterr().out.encode(), "stdout") == key.public.raw
    assert main(["key", "rotate", "--state-dir", str(state)]) == 0
    assert "new key prepared" in capsys.readouterr().out
    assert KeyStore(state).pending() is not None
    assert main(["key", "rotate", "--state-dir", str(state)]) == 1  # one at a time
    assert "already waiting" in capsys.readouterr().err


def test_export_then_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], month_evidence: MonthEvidence
) -> None:
    """Evidence export writes a signed bundle; verify with the fingerprint exits 0."""
    month = month_evidence.month
    out = tmp_path / "nov.zip"
    code = main(
        [
            "evidence",
            "export",
            "--db",
            str(month.db),
            "--from",
            "2026-10-31T23:00:00Z",
            "--to",
            "2026-12-02T00:00:00Z",
            "-o",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "manifest signed" in capsys.readouterr().out
    with zipfile.ZipFile(out) as z:
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["agent"] == "gw-evidence"
    assert manifest["from"] == "2026-10-31T23:00:00Z"
    # Without a config the bundle still carries the sample journal: exact, recomputed below.
    (samples,) = manifest["samples"].values()
    assert (samples["source"], samples["exact"]) == ("journal", True)
    assert samples["count"] == len(month.samples)
    key = month_evidence.keys.active()
    assert key is not None
    annex = format_fingerprint(key.public.fingerprint)
    assert main(["verify", str(out), "--key", annex]) == 0
    text = capsys.readouterr().out
    assert "RESULT: VERIFIED" in text
    assert "month:2026-11" in text
    assert main(["verify", str(out), "--key", annex, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is True


def test_verify_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], month_evidence: MonthEvidence
) -> None:
    """1 for an evidence problem, 2 for a usage error (missing file, no usable key)."""
    key = month_evidence.keys.active()
    assert key is not None
    pem = tmp_path / "device.pem"
    pem.write_text(key.public.pem())
    lines = month_evidence.month.envelopes[:50]
    capture = tmp_path / "capture.jsonl"
    capture.write_text("\n".join(lines) + "\n")
    assert main(["verify", str(capture), "--key", str(pem)]) == 0
    doc = json.loads(lines[20])
    doc["seq"] += 1000
    capture.write_text("\n".join([*lines[:20], json.dumps(doc), *lines[21:]]) + "\n")
    assert main(["verify", str(capture), "--key", str(pem)]) == 1
    out = capsys.readouterr().out
    assert "NOT VERIFIED" in out
    assert "capture.jsonl line 21" in out
    assert main(["verify", str(tmp_path / "nope.zip"), "--key", str(pem)]) == 2
    assert main(["verify", str(capture), "--key", "not-a-key"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err
    assert "neither a fingerprint nor a PEM file" in err
    with pytest.raises(SystemExit) as info:
        main(["verify", str(capture)])
    assert info.value.code == 2


def test_export_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad times and a missing database are reported in one line."""
    db = tmp_path / "none.db"
    args = ["evidence", "export", "--db", str(db), "-o", str(tmp_path / "x.zip")]
    assert main([*args, "--from", "2026-12-01", "--to", "2026-11-01"]) == 2
    assert main([*args, "--from", "yesterday", "--to", "2026-11-01"]) == 2
    assert main([*args, "--from", "2026-11-01", "--to", "2026-12-01"]) == 1
    err = capsys.readouterr().err
    assert "--to must be after --from" in err
    assert "no buffer database" in err


def test_verify_loads_no_gateway_code(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """Verify on a customer's laptop: no drivers, MQTT client, buffer or psutil imported."""
    import subprocess
    import sys

    capture = tmp_path / "capture.jsonl"
    capture.write_text("\n".join(month_evidence.month.envelopes[:20]) + "\n")
    key = month_evidence.keys.active()
    assert key is not None
    script = (
        "import sys\n"
        "from edge_agent.cli import main\n"
        f"code = main(['verify', {str(capture)!r}, '--key', {key.public.fingerprint!r}])\n"
        "heavy = [m for m in ('paho', 'asyncua', 'pymodbus', 'psutil', 'drivers', "
        "'edge_agent.buffer', 'edge_agent.uplink', 'sqlite_utils') if m in sys.modules]\n"
        "print('HEAVY', heavy, code)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    assert "HEAVY [] 0" in out


def test_independent_check_in_the_docs_works(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """The auditor's snippet in docs/evidence.md accepts the bundle and rejects an edit."""
    import re
    import subprocess
    import sys

    page = (Path(__file__).resolve().parents[3] / "docs" / "evidence.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", page, re.DOTALL)
    assert snippet is not None
    (tmp_path / "check.py").write_text(snippet.group(1))
    key = month_evidence.keys.active()
    assert key is not None
    (tmp_path / "device.pem").write_text(key.public.pem())
    with zipfile.ZipFile(month_evidence.bundle) as z:
        records = z.read("records.jsonl")
    (tmp_path / "records.jsonl").write_bytes(records)
    run = [sys.executable, "check.py"]
    subprocess.run(run, cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "records.jsonl").write_bytes(records.replace(b'"stops":', b'"stops":1', 1))
    failed = subprocess.run(run, check=False, cwd=tmp_path, capture_output=True, text=True)
    assert failed.returncode != 0
    assert "InvalidSignature" in failed.stderr
