"""A simulated month, published once per test session and copied by the tests that tamper."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.evidence.export import export_bundle
from edge_agent.evidence.keys import KeyStore
from edge_agent.evidence.samples import ListSamples
from edge_agent.evidence.verify import Trust

from .month import AGENT, MACHINE, T0, Month, build_month


@dataclass
class MonthEvidence:
    """The month, its bundle and the trust anchor a customer would use."""

    month: Month
    bundle: Path
    keys: KeyStore

    def trust(self) -> Trust:
        """The fingerprint of the device key, as a contract annex gives it."""
        key = self.keys.active()
        assert key is not None
        return Trust(fingerprints={key.public.fingerprint})


@pytest.fixture(scope="session")
def month_evidence(tmp_path_factory: pytest.TempPathFactory) -> MonthEvidence:
    """30 days of one machine at one sample a minute, and its bundle with exact samples."""
    state = tmp_path_factory.mktemp("month")
    month = build_month(state, days=30)
    keys = KeyStore(state)
    out = state / "november.zip"
    export_bundle(
        db=month.db,
        out=out,
        start=T0,
        end=month.end + 1,
        agent=AGENT,
        keys=keys,
        samples=ListSamples({MACHINE: month.samples}),
        current_profiles={MACHINE: month.profile},
    )
    return MonthEvidence(month=month, bundle=out, keys=keys)
