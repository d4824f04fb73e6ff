"""Verification, numbers: each KPI window's final record against a recomputation.

The highest revision of each window is recomputed from the evidence's samples with
the declared profile (the ``replay`` path, :func:`edge_agent.kpi.replay.compute_records`)
and compared field by field; contract/month periods get a verdict from the windows
inside them and the chain breaks in their span. Part of
:func:`edge_agent.evidence.verify.verify`; pure.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent.evidence.verdicts import (
    PROBLEM,
    Evidence,
    Finding,
    Rec,
    Report,
    WindowVerdict,
    window_of,
)
from edge_agent.kpi.timeutil import parse_instant

STREAMING_FLAGS = frozenset({"late_data_ignored", "partial_history"})
_IDENTITY_FIELDS = frozenset(
    {
        "name",
        "window",
        "window_kind",
        "start",
        "end",
        "revision",
        "final",
        "machine",
        "spec_version",
        "profile_hash",
    }
)
PERIOD_KINDS = ("month", "contract")


def _close(a: Any, b: Any, name: str) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], name) for k in a)
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return bool(a == b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        tol = 0.0005 if name.endswith("_s") or name == "downtime_by_code" else 1e-6
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=tol)
    return bool(a == b)


def compare(published: Mapping[str, Any], recomputed: Mapping[str, Any]) -> list[str]:
    """Fields whose published value differs from the recomputed one, described."""
    out: list[str] = []
    for key, value in recomputed.items():
        if key in _IDENTITY_FIELDS:
            continue
        if key == "pending_stop_s" and key not in published and not value:
            continue  # records of agents before pending_stop_s (always 0 in a final record)
        mine = published.get(key)
        if key == "flags":
            if set(mine or ()) - STREAMING_FLAGS != set(value or ()):
                out.append(f"flags published {sorted(mine or ())} recomputed {sorted(value)}")
            continue
        if not _close(mine, value, key):
            out.append(f"{key} published {mine!r} recomputed {value!r}")
    return out


def check_windows(
    recs: list[Rec],
    evidence: Evidence,
    report: Report,
    broken: list[tuple[str, str, str]],
) -> None:
    """Verdicts per KPI window (recomputed where the evidence allows) and per period."""
    from edge_agent.kpi.replay import compute_records

    finals: dict[tuple[str, str], Rec] = {}
    altered: set[tuple[str, str]] = set()
    provisional = 0
    for rec in recs:
        if rec.signed.kind != "kpi" or rec.data is None:
            continue
        key = (str(rec.data.get("machine", "")), str(window_of(rec.data) or ""))
        if not rec.signed.chained:
            provisional += 1
            continue
        if not rec.sig_ok or rec.key_problem is not None:
            altered.add(key)
        best = finals.get(key)
        rank = (int(rec.data.get("revision", 0) or 0), rec.signed.seq)
        if best is None or rank > (int((best.data or {}).get("revision", 0) or 0), best.signed.seq):
            finals[key] = rec
    report.counts["provisional_kpi_records"] = provisional
    # Recompute per machine and profile in one pass over the samples.
    todo: dict[tuple[str, str], list[Rec]] = defaultdict(list)
    verdicts: dict[tuple[str, str], WindowVerdict] = {}
    for key, rec in sorted(finals.items()):
        data = rec.data or {}
        verdict = WindowVerdict(
            machine=key[0],
            window=key[1],
            start=str(data.get("start")),
            end=str(data.get("end")),
            revision=int(data.get("revision", 0) or 0),
            seq=rec.signed.seq,
            verdict="authentic",
        )
        verdicts[key] = verdict
        if key in altered:
            verdict.verdict = "altered"
            verdict.detail = "a record of this window failed its signature check"
            continue
        reason = _recompute_blocker(key[0], data, evidence)
        if reason:
            verdict.detail = f"signature and chain checked; not recomputed: {reason}"
            continue
        todo[(key[0], str(data.get("profile_hash")))].append(rec)
    for (machine, phash), items in todo.items():
        profile = evidence.profiles[phash]
        windows = []
        for rec in items:
            data = rec.data or {}
            windows.append(
                (
                    str(window_of(data)),
                    parse_instant(str(data["start"])) / 1000.0,
                    parse_instant(str(data["end"])) / 1000.0,
                )
            )
        records = compute_records(profile, evidence.samples[machine], windows)
        exact = evidence.sample_exact.get(machine, False)
        for rec in items:
            data = rec.data or {}
            verdict = verdicts[(machine, str(window_of(data)))]
            diffs = compare(data, records[str(window_of(data))].as_dict())
            if not exact:
                verdict.detail = (
                    "signature and chain checked; recomputed from approximate samples (raw "
                    "readings): " + ("; ".join(diffs[:3]) if diffs else "agrees")
                )
                continue
            if diffs:
                verdict.verdict = "mismatch"
                verdict.detail = "; ".join(diffs[:6])
                report.findings.append(
                    Finding(
                        PROBLEM,
                        "mismatch",
                        f"{rec.label}: numbers differ from the recomputation from the bundle's "
                        f"samples: {verdict.detail}",
                        rec.signed.seq,
                        rec.entry.where,
                    )
                )
            else:
                verdict.verdict = "verified"
                verdict.detail = "signature, chain and recomputation agree"
    report.windows = [verdicts[k] for k in sorted(verdicts)]
    report.periods = [_period(v, report.windows, broken) for v in report.windows if _is_period(v)]


def _recompute_blocker(machine: str, data: Mapping[str, Any], evidence: Evidence) -> str:
    if machine not in evidence.samples:
        return "no samples for this machine in the evidence"
    phash = str(data.get("profile_hash"))
    if phash not in evidence.profiles:
        return f"the profile {phash[:12]}... is not in the evidence"
    span = evidence.sample_spans.get(machine)
    try:
        start = parse_instant(str(data.get("start"))) / 1000.0
        end = parse_instant(str(data.get("end"))) / 1000.0
    except ValueError:
        return "window start/end unreadable"
    if span is None or start < span[0] or end > span[1]:
        return "the samples do not cover the whole window"
    return ""


def _is_period(v: WindowVerdict) -> bool:
    return v.window.split(":", 1)[0] in PERIOD_KINDS


def _period(
    period: WindowVerdict, windows: Sequence[WindowVerdict], broken: list[tuple[str, str, str]]
) -> WindowVerdict:
    inside = [
        w
        for w in windows
        if w.machine == period.machine and w is not period and period.start <= w.start < period.end
    ]
    bad = [w for w in inside if w.verdict in ("altered", "mismatch")]
    breaks = [b for b in broken if b[1] < period.end and b[2] > period.start]
    out = WindowVerdict(**period.__dict__)
    if period.verdict in ("altered", "mismatch"):
        out.detail = f"the period's own record: {period.verdict}"
    elif bad or breaks:
        out.verdict = "not verified"
        out.detail = (
            f"{len(bad)} window(s) inside altered or mismatching, {len(breaks)} chain break(s) "
            "in its time span"
        )
    else:
        out.detail = (
            f"{period.verdict}; {len(inside)} window(s) inside, none altered, chain unbroken"
        )
    return out
