"""verify: an untouched month verifies; each kind of tampering is detected and named."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.evidence import proof
from edge_agent.evidence.bundle import read_bundle, read_capture
from edge_agent.evidence.canonical import canonical, digest
from edge_agent.evidence.keys import SigningKey
from edge_agent.evidence.verify import Evidence, Report, Trust, verify
from edge_agent.kpi.sample import Sample

from .conftest import MonthEvidence
from .month import write_capture

ROOT = Path(__file__).resolve().parents[3]


def _codes(report: Report) -> list[str]:
    return sorted(f.code for f in report.problems)


def _lines(ev: MonthEvidence) -> list[str]:
    return list(ev.month.envelopes)


def _find(lines: list[str], pred: Any) -> int:
    for i, line in enumerate(lines):
        if pred(json.loads(line)):
            return i
    raise AssertionError("no such record")


def _is_final(name: str) -> Any:
    return lambda d: d["kind"] == "kpi" and d["data"]["window"] == name and d["data"]["final"]


def _capture(tmp_path: Path, lines: list[str]) -> Report:
    return verify(read_capture(write_capture(tmp_path / "capture.jsonl", lines)), _TRUST[0])


_TRUST: list[Trust] = []


@pytest.fixture(autouse=True)
def _trust(month_evidence: MonthEvidence) -> None:
    _TRUST[:] = [month_evidence.trust()]


def _rezip(src: Path, dst: Path, change: Any) -> Path:
    """Copy a bundle, letting ``change(name, bytes)`` rewrite members (None drops one)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            raw = change(item.filename, zin.read(item.filename))
            if raw is not None:
                zout.writestr(item.filename, raw)
    return dst


def test_untouched_month_bundle_verifies(month_evidence: MonthEvidence) -> None:
    """A month's bundle: every signature and link holds and every window recomputes."""
    report = verify(read_bundle(month_evidence.bundle), month_evidence.trust())
    assert report.ok, [f.message for f in report.problems]
    verdicts = {w.window: w.verdict for w in report.windows}
    assert len(verdicts) > 800  # 720 hours, 90 shifts, 30 days, the month
    # Only the night shift that began before the month (before the samples) is not recomputed.
    assert [w for w, v in verdicts.items() if v != "verified"] == ["shift:2026-10-31:C"]
    assert [(p.window, p.verdict) for p in report.periods] == [("month:2026-11", "verified")]
    assert report.counts["provisional_kpi_records"] == 0  # a bundle holds chained records only


def test_untouched_capture_verifies(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """The month as a subscriber saved it (mosquitto_sub -F %j) verifies without samples."""
    report = _capture(tmp_path, _lines(month_evidence))
    assert report.ok, [f.message for f in report.problems]
    assert {w.verdict for w in report.windows} == {"authentic"}
    assert report.counts["provisional_kpi_records"] > 0  # signed, not chained


def test_capture_with_qos1_duplicates_verifies(
    tmp_path: Path, month_evidence: MonthEvidence
) -> None:
    """Byte-identical re-deliveries (QoS 1) in a capture are not a problem."""
    lines = _lines(month_evidence)
    report = _capture(tmp_path, lines + lines[100:140])
    assert report.ok
    assert report.counts["duplicates_ignored"] == 40


def test_tampered_value_is_named(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """One changed number in one KPI record: that record is named, nothing else."""
    lines = _lines(month_evidence)
    i = _find(lines, _is_final("day:2026-11-10"))
    doc = json.loads(lines[i])
    doc["data"]["availability"] = 0.99
    lines[i] = json.dumps(doc)
    report = _capture(tmp_path, lines)
    assert _codes(report) == ["altered"]
    problem = report.problems[0]
    assert problem.seq == doc["seq"]
    assert "day:2026-11-10" in problem.message
    assert f"line {i + 1}" in problem.message
    assert {w.window: w.verdict for w in report.windows}["day:2026-11-10"] == "altered"
    assert report.periods[0].verdict == "not verified"


def test_tampered_value_in_bundle(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """In a bundle the changed member and the altered record are both named."""

    def change(name: str, raw: bytes) -> bytes:
        if name != "records.jsonl":
            return raw
        return raw.replace(b'"good_count":', b'"good_count":1', 1)

    report = verify(
        read_bundle(_rezip(month_evidence.bundle, tmp_path / "b.zip", change)),
        month_evidence.trust(),
    )
    assert _codes(report) == ["altered", "member_changed"]


def test_deleted_record_is_named(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """A deleted stop event: the break names the seq range and the time span."""
    lines = _lines(month_evidence)
    i = _find(lines, lambda d: d["kind"] == "stop" and d["seq"] > 2000)
    gone = json.loads(lines[i])
    del lines[i]
    report = _capture(tmp_path, lines)
    assert _codes(report) == ["chain_break"]
    message = report.problems[0].message
    assert f"seq {gone['seq']}" in message or f"{gone['seq']} to" in message
    assert "missing" in message
    assert report.periods[0].verdict == "not verified"


def test_reordered_pair_in_bundle_is_named(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """Two records swapped in a bundle's records file: the lines and seqs are named."""

    def change(name: str, raw: bytes) -> bytes:
        if name != "records.jsonl":
            return raw
        lines = raw.splitlines(keepends=True)
        lines[10], lines[11] = lines[11], lines[10]
        return b"".join(lines)

    report = verify(
        read_bundle(_rezip(month_evidence.bundle, tmp_path / "b.zip", change)),
        month_evidence.trust(),
    )
    codes = _codes(report)
    assert "reordered" in codes
    reordered = next(f for f in report.problems if f.code == "reordered")
    assert "records.jsonl line 12" in reordered.message


def test_swapped_sequence_numbers_are_named(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """Two records exchanging their seq (order changed in the stream): both are altered."""
    lines = _lines(month_evidence)
    a, b = json.loads(lines[50]), json.loads(lines[51])
    a["seq"], b["seq"] = b["seq"], a["seq"]
    lines[50], lines[51] = json.dumps(a), json.dumps(b)
    report = _capture(tmp_path, lines)
    assert _codes(report) == ["altered", "altered"]
    assert {f.seq for f in report.problems} == {a["seq"], b["seq"]}


def test_replayed_old_record_is_named(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """A record of the first week replayed into a capture of the last week: named isolated."""
    lines = _lines(month_evidence)
    last_week = lines[-1200:]
    old = _find(lines, _is_final("day:2026-11-02"))
    capture = write_capture(tmp_path / "c.jsonl", [*last_week[:500], lines[old], *last_week[500:]])
    key = month_evidence.keys.active()
    assert key is not None
    # A capture of a week holds no key record: the customer gives the public key itself.
    report = verify(read_capture(capture), Trust(keys=[key.public.raw]))
    assert _codes(report) == ["isolated"]
    assert "day:2026-11-02" in report.problems[0].message
    assert report.problems[0].seq == json.loads(lines[old])["seq"]


def test_replayed_line_in_bundle_is_named(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """A bundle holds each record once: a repeated line is a replay."""

    def change(name: str, raw: bytes) -> bytes:
        if name != "records.jsonl":
            return raw
        lines = raw.splitlines(keepends=True)
        return b"".join([*lines[:20], lines[5], *lines[20:]])

    report = verify(
        read_bundle(_rezip(month_evidence.bundle, tmp_path / "b.zip", change)),
        month_evidence.trust(),
    )
    assert {"duplicate", "reordered", "member_changed"} <= set(_codes(report))


def _resign(doc: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    signed = proof.from_envelope(doc)
    assert signed is not None
    head = proof.header(
        agent=doc["agent"],
        epoch=doc["epoch"],
        seq=doc["seq"],
        kind=doc["kind"],
        ts=doc["ts"],
        data_sha256=digest(doc["data"]),
        kid=key.kid,
        prev=doc["proof"]["prev"],
    )
    sig = proof.encode_sig(key.sign(canonical(head)))
    doc["proof"] = {"kid": key.kid, "prev": doc["proof"]["prev"], "sig": sig}
    return doc


def test_record_signed_by_another_key_is_named(
    tmp_path: Path, month_evidence: MonthEvidence
) -> None:
    """A record re-signed with someone else's key (numbers changed): unknown key."""
    lines = _lines(month_evidence)
    i = _find(lines, _is_final("shift:2026-11-12:B"))
    doc = json.loads(lines[i])
    doc["data"]["oee"] = 0.95
    lines[i] = json.dumps(_resign(doc, SigningKey.generate()))
    report = _capture(tmp_path, lines)
    assert _codes(report) == ["unknown_key"]
    assert "shift:2026-11-12:B" in report.problems[0].message


def test_wrong_trusted_key_fails_everything(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """Verifying with a key that is not the device's: every record is untrusted."""
    capture = write_capture(tmp_path / "c.jsonl", _lines(month_evidence)[:30])
    report = verify(read_capture(capture), Trust(keys=[SigningKey.generate().public.raw]))
    assert set(_codes(report)) == {"untrusted_key"}
    assert len(report.problems) == 30


def test_truncated_bundle_is_named(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """A bundle cut short (e-mail size limit, broken download) is reported as truncated."""
    raw = month_evidence.bundle.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(raw[: len(raw) // 2])
    report = verify(read_bundle(cut), month_evidence.trust())
    assert _codes(report) == ["truncated"]


def test_records_cut_off_the_end_are_named(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """Last records removed and the manifest's hash fixed: the signed manifest catches it."""

    def change(name: str, raw: bytes) -> bytes | None:
        if name == "records.jsonl":
            return b"".join(raw.splitlines(keepends=True)[:-5])
        if name == "manifest.json":
            doc = json.loads(raw)
            with zipfile.ZipFile(month_evidence.bundle) as z:
                records = b"".join(z.read("records.jsonl").splitlines(keepends=True)[:-5])
            import hashlib

            doc["members"]["records.jsonl"] = {
                "sha256": hashlib.sha256(records).hexdigest(),
                "bytes": len(records),
            }
            return json.dumps(doc).encode()
        return raw

    report = verify(
        read_bundle(_rezip(month_evidence.bundle, tmp_path / "b.zip", change)),
        month_evidence.trust(),
    )
    assert "manifest_altered" in _codes(report)
    assert "truncated" in _codes(report)


def test_unsigned_manifest_is_a_problem(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """A bundle without manifest.sig cannot prove nothing was cut off: a problem."""
    bundle = _rezip(
        month_evidence.bundle,
        tmp_path / "b.zip",
        lambda name, raw: None if name == "manifest.sig" else raw,
    )
    assert _codes(verify(read_bundle(bundle), month_evidence.trust())) == ["manifest_unsigned"]


def test_numbers_that_do_not_recompute_are_named(month_evidence: MonthEvidence) -> None:
    """Samples that disagree with a window's record: the window and field are named."""
    evidence = read_bundle(month_evidence.bundle)
    samples = evidence.samples["press1"]
    # Claim the machine stood still for two hours of 2026-11-20 (from 10:00 UTC).
    start = 1795168800.0
    evidence.samples["press1"] = [
        Sample(t=s.t, run=0, fault=101, good=s.good, total=s.total, mono_s=s.mono_s, synced=True)
        if start <= s.t < start + 7200 and not s.is_bad
        else s
        for s in samples
    ]
    report = verify(evidence, month_evidence.trust())
    mismatched = {f.message.split("(kpi ")[1].split(",")[0] for f in report.problems}
    assert "press1 day:2026-11-20 rev 0" in mismatched or "press1 day:2026-11-20 rev 1" in (
        mismatched
    )
    assert {f.code for f in report.problems} == {"mismatch"}
    assert any("running_time_s published" in f.message for f in report.problems), [
        f.message for f in report.problems
    ]


def test_evidence_without_entries_is_empty_but_ok() -> None:
    """Nothing to check is not a failure of verify itself (no records, no problems)."""
    report = verify(Evidence(source="empty"), Trust())
    assert report.ok
    assert report.windows == []


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_deletion_or_digit_flip_is_caught(
    tmp_path: Path, month_evidence: MonthEvidence, data: st.DataObject
) -> None:
    """Delete any chained record (not the last) or flip any digit of any signed one: caught.

    (Deleting the last chained record of a capture cannot be seen: nothing links to it.)
    """
    lines = _lines(month_evidence)[:300]
    chained = [i for i, line in enumerate(lines) if '"prev"' in line][:-1]
    signed = [i for i, line in enumerate(lines) if '"proof"' in line]
    if data.draw(st.booleans(), label="delete"):
        i = data.draw(st.sampled_from(chained[1:]), label="deleted index")
        changed = lines[:i] + lines[i + 1 :]
    else:
        i = data.draw(st.sampled_from(signed), label="record")
        digits = [k for k, c in enumerate(lines[i]) if c.isdigit()]
        k = data.draw(st.sampled_from(digits), label="digit")
        flipped = str((int(lines[i][k]) + 1) % 10)
        changed = [*lines[:i], lines[i][:k] + flipped + lines[i][k + 1 :], *lines[i + 1 :]]
    report = verify(
        read_capture(write_capture(tmp_path / "p.jsonl", changed)), month_evidence.trust()
    )
    assert not report.ok


def test_contract_definitions_travel_in_the_bundle_and_an_edit_is_named(
    tmp_path: Path, month_evidence: MonthEvidence
) -> None:
    """contracts/<hash>.json is the document its hash covers; a changed target is caught."""
    from edge_agent.config import load_config
    from edge_agent.contracts.model import contract_hash
    from edge_agent.evidence.export import export_bundle
    from edge_agent.evidence.samples import ListSamples

    from .month import AGENT, MACHINE, T0

    contracts = load_config(ROOT / "config" / "contracts.example.toml").contracts
    month = month_evidence.month
    out = tmp_path / "with-contracts.zip"
    export_bundle(
        db=month.db,
        out=out,
        start=T0,
        end=month.end + 1,
        agent=AGENT,
        keys=month_evidence.keys,
        samples=ListSamples({MACHINE: month.samples}),
        current_profiles={MACHINE: month.profile},
        current_contracts=contracts,
    )
    hashes = {name: contract_hash(c) for name, c in contracts.items()}
    with zipfile.ZipFile(out) as z:
        assert json.loads(z.read("manifest.json"))["contracts"] == hashes
    evidence = read_bundle(out)
    assert set(evidence.contracts) == set(hashes.values())
    report = verify(evidence, month_evidence.trust())
    assert report.ok, [f.message for f in report.problems]
    sla = hashes["line2-service"]

    def change(name: str, raw: bytes) -> bytes:
        if name != f"contracts/{sla}.json":
            return raw
        return raw.replace(b'"target": 0.98', b'"target": 0.9', 1)

    report = verify(read_bundle(_rezip(out, tmp_path / "edited.zip", change)), Trust())
    codes = {f.code for f in report.problems}
    assert {"contract", "member_changed"} <= codes
    assert any(sla in f.message and "altered" in f.message for f in report.problems)


def test_a_range_with_later_records_verifies(tmp_path: Path, month_evidence: MonthEvidence) -> None:
    """A bundle of the first ten days: the header of the next record is not a cut-off end."""
    from edge_agent.evidence.export import export_bundle
    from edge_agent.evidence.samples import ListSamples

    from .month import AGENT, MACHINE, T0

    month = month_evidence.month
    out = tmp_path / "ten-days.zip"
    export_bundle(
        db=month.db,
        out=out,
        start=T0,
        end=T0 + 10 * 86400,
        agent=AGENT,
        keys=month_evidence.keys,
        samples=ListSamples({MACHINE: month.samples}),
        current_profiles={MACHINE: month.profile},
    )
    report = verify(read_bundle(out), month_evidence.trust())
    assert report.ok, [f.message for f in report.problems]
    assert any(w.verdict == "verified" for w in report.windows)
