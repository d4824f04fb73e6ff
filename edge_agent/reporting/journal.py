"""Rows of the sample journal: what a machine's calculator was fed, as replay reads it.

:class:`~edge_agent.reporting.machine.MachineSet` journals every sample it feeds a
machine's calculator (the driver samples, and the ``quality = "bad"`` samples it adds
for a restart or a clean stop), numbered per machine (``n``, saved with the
calculator state). Each row holds the sample as the ``edge-agent replay`` input
object (:func:`~edge_agent.kpi.sample.sample_to_json`), so ``edge-agent export
--kind samples`` writes it verbatim and replay recomputes the published records.
Pure.
"""

from __future__ import annotations

import json

from edge_agent.kpi.sample import Sample, sample_to_json
from edge_agent.kpi.timeutil import MS_PER_S


def journal_row(machine: str, n: int, sample: Sample) -> tuple[str, int, float, str]:
    """The ``samples`` table row ``(machine, n, t, data)`` of one fed sample."""
    data = json.dumps(sample_to_json(sample), separators=(",", ":"))
    return (machine, n, sample.t_ms / MS_PER_S, data)
