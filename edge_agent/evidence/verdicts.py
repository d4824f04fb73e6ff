"""What a verification reads and concludes: inputs, findings, verdicts (data only).

:class:`Evidence` is everything read from a bundle or a capture; :class:`Trust` the
anchors from the contract annex; :class:`Report` what :func:`edge_agent.evidence.verify.verify`
found: :class:`Finding` lines and a :class:`WindowVerdict` per KPI window and contract
period. :class:`Rec` is one signed record during the checks. No logic beyond formatting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.evidence import proof
from edge_agent.evidence.keys import fingerprint_of
from edge_agent.kpi.profile import KpiProfile
from edge_agent.kpi.sample import Sample

PROBLEM = "problem"
GAP = "gap"
NOTE = "note"

# Flags only the streaming calculator can set (it saw samples arrive late or a window
# opened late): a record carrying them is not expected to equal a batch recomputation.


def window_of(data: Mapping[str, Any]) -> object:
    """A KPI record's window name (``window``; ``name`` in records of older agents)."""
    return data.get("window", data.get("name"))


@dataclass(frozen=True, slots=True)
class Entry:
    """One input item: an envelope as received, or a header-only stub of a bundle."""

    where: str  # "capture.jsonl line 12", "records.jsonl line 3"
    doc: Mapping[str, Any]
    stub: bool = False


@dataclass
class Evidence:
    """Everything read from a bundle or a capture, before any check."""

    source: str
    entries: list[Entry] = field(default_factory=list)
    bundle: bool = False
    manifest: Mapping[str, Any] | None = None
    #: Problems found while reading (truncated archive, manifest mismatch, bad lines).
    read_findings: list[Finding] = field(default_factory=list)
    #: Public keys the input carries (bundle ``keys/``); never trusted by themselves.
    keys: list[bytes] = field(default_factory=list)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    #: Per machine, the time span ``[from, to)`` (UNIX s) the samples are complete for.
    sample_spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: Per machine, whether the samples are exactly what the calculator was fed.
    sample_exact: dict[str, bool] = field(default_factory=dict)
    profiles: dict[str, KpiProfile] = field(default_factory=dict)
    #: Contract definitions by hash (bundle ``contracts/``), each checked against its hash.
    contracts: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``(kid, base64 signature)`` of the bundle manifest, when it is signed.
    manifest_sig: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One result line: ``severity`` is ``problem``, ``gap`` or ``note``; ``code`` is stable."""

    severity: str
    code: str
    message: str
    seq: int | None = None
    where: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "seq": self.seq,
            "where": self.where,
        }


@dataclass
class Trust:
    """The trust anchors: public keys (raw bytes) and fingerprints from the contract annex."""

    keys: list[bytes] = field(default_factory=list)
    fingerprints: set[str] = field(default_factory=set)

    def trusts(self, raw: bytes) -> bool:
        """Whether a public key is an anchor (given itself, or by its fingerprint)."""
        return raw in self.keys or fingerprint_of(raw) in self.fingerprints


@dataclass
class WindowVerdict:
    """The verdict on one KPI window (its highest revision)."""

    machine: str
    window: str
    start: str
    end: str
    revision: int
    seq: int
    verdict: str  # verified | authentic | altered | mismatch | untrusted
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


@dataclass
class Report:
    """What :func:`verify` found."""

    source: str
    findings: list[Finding] = field(default_factory=list)
    windows: list[WindowVerdict] = field(default_factory=list)
    periods: list[WindowVerdict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    chain: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        """Findings that make the evidence fail."""
        return [f for f in self.findings if f.severity == PROBLEM]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON form (``edge-agent verify --json``)."""
        return {
            "source": self.source,
            "verified": self.ok,
            "counts": self.counts,
            "chain": self.chain,
            "findings": [f.as_dict() for f in self.findings],
            "windows": [w.as_dict() for w in self.windows],
            "periods": [p.as_dict() for p in self.periods],
        }


@dataclass
class Rec:
    """One signed record under check: its entry, signed header, data and check results."""

    entry: Entry
    signed: proof.Signed
    data: Mapping[str, Any] | None  # None for a stub
    sig_ok: bool = False
    key_problem: str | None = None

    @property
    def label(self) -> str:
        """How findings name the record: seq, kind, window or stop, and where it was read."""
        s = self.signed
        text = f"seq {s.seq} ({s.kind}"
        if self.data is not None:
            name = window_of(self.data)
            if s.kind == "kpi" and isinstance(name, str):
                text += f" {self.data.get('machine', '?')} {name} rev {self.data.get('revision')}"
            elif s.kind == "stop":
                text += f" {self.data.get('machine', '?')} from {self.data.get('start')}"
            elif isinstance(self.data.get("event"), str):
                text += f" {self.data['event']}"
        return f"{text}, {self.entry.where})"
