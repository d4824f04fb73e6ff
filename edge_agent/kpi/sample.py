"""The calculator's input value: one machine sample, and its JSONL form.

A :class:`Sample` carries the run bit, fault code and raw cumulative counters
read at one instant (spec §3.1). ``quality == "bad"`` means the read failed
and no other field is trusted. ``mono_s``/``synced`` are optional clock
evidence used for correction (spec §3.2). The JSON form is the one of the
vector files (``t`` as ISO 8601 with 'Z'). Nothing here interprets samples.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from edge_agent.kpi.timeutil import MS_PER_S, format_instant, parse_instant, seconds_to_ms


class SampleQuality(str, enum.Enum):
    """Whether a sample's signals were read (``good``) or not (``bad``: unknown time)."""

    GOOD = "good"
    BAD = "bad"


QUALITY_GOOD = SampleQuality.GOOD
QUALITY_BAD = SampleQuality.BAD


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One reading of a machine's run bit, fault code and counters.

    Attributes:
        t: UTC epoch seconds; stored internally as integer milliseconds (``t_ms``).
        run: 1 = running, 0 = not running.
        fault: fault code, 0 = none.
        good: raw cumulative good-part counter.
        total: raw cumulative total-part counter.
        quality: "good", or "bad" when the read failed (no other field is trusted).
        mono_s: monotonic seconds since boot when the sample was taken, if known.
        synced: whether the wall clock was NTP-synchronised, if known.
    """

    t: float
    run: int = 0
    fault: int = 0
    good: int = 0
    total: int = 0
    quality: SampleQuality = QUALITY_GOOD
    mono_s: float | None = None
    synced: bool | None = None
    t_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not math.isfinite(self.t):
            raise ValueError("t must be finite")
        quality = self.quality
        if quality is not QUALITY_GOOD and quality is not QUALITY_BAD:
            # A plain "good"/"bad" is accepted and stored as the enum member.
            try:
                object.__setattr__(self, "quality", SampleQuality(quality))
            except ValueError:
                raise ValueError(f"quality must be 'good' or 'bad', got {quality!r}") from None
        object.__setattr__(self, "t_ms", seconds_to_ms(self.t))

    @classmethod
    def at_ms(cls, t_ms: int, **fields: Any) -> Sample:
        """Build a sample from an integer epoch-millisecond time."""
        return cls(t=t_ms / MS_PER_S, **fields)

    @property
    def is_bad(self) -> bool:
        """Whether the read failed (no field but ``t`` is trusted)."""
        return self.quality is QUALITY_BAD


def _int(obj: dict[str, Any], key: str, default: int = 0) -> int:
    """An integer field; integral floats (5100.0) and, for ``run``, booleans are accepted."""
    value = obj.get(key, default)
    if type(value) is int:  # fast path: the common case, and excludes bool
        return value
    if isinstance(value, bool) and key == "run":
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key!r} must be an integer, got {value!r}")  # noqa: TRY004
    return value


def sample_from_json(obj: Any) -> Sample:
    """Build a sample from a vector-format JSON object.

    Fields other than those of :class:`Sample` are ignored (annotations such
    as a comment do not make a line invalid). A ``quality: "bad"`` sample only
    needs ``t``: its other fields are not trusted and not validated.

    Raises:
        ValueError: naming the offending field when the object is malformed.
    """
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")  # noqa: TRY004 - one error type for callers
    if not isinstance(obj.get("t"), str):
        raise ValueError(  # noqa: TRY004 - one error type for callers
            "'t' must be an ISO 8601 UTC time string such as '2024-05-13T06:00:00Z'"
        )
    try:
        t_ms = parse_instant(obj["t"])
    except ValueError:
        raise ValueError(f"'t' is not an ISO 8601 UTC time with offset: {obj['t']!r}") from None
    quality = obj.get("quality", QUALITY_GOOD)
    if quality not in (QUALITY_GOOD, QUALITY_BAD):
        raise ValueError(f"'quality' must be 'good' or 'bad', got {quality!r}")
    mono = obj.get("mono_s")
    if mono is not None and (isinstance(mono, bool) or not isinstance(mono, int | float)):
        raise ValueError(f"'mono_s' must be a number, got {mono!r}")
    synced = obj.get("synced")
    if synced is not None and not isinstance(synced, bool):
        raise ValueError(f"'synced' must be true or false, got {synced!r}")
    clock: dict[str, Any] = {
        "mono_s": float(mono) if mono is not None else None,
        "synced": synced,
    }
    if quality == QUALITY_BAD:
        return Sample.at_ms(t_ms, quality=QUALITY_BAD, **clock)
    run = _int(obj, "run")
    if run not in (0, 1):
        raise ValueError(f"'run' must be 0 or 1, got {run!r}")
    return Sample.at_ms(
        t_ms,
        run=run,
        fault=_int(obj, "fault"),
        good=_int(obj, "good"),
        total=_int(obj, "total"),
        **clock,
    )


def sample_to_json(sample: Sample) -> dict[str, Any]:
    """The vector-format JSON object of a sample (optional fields only when set)."""
    out: dict[str, Any] = {
        "t": format_instant(sample.t_ms),
        "run": sample.run,
        "fault": sample.fault,
        "good": sample.good,
        "total": sample.total,
    }
    if sample.is_bad:
        out["quality"] = QUALITY_BAD.value
    if sample.mono_s is not None:
        out["mono_s"] = sample.mono_s
    if sample.synced is not None:
        out["synced"] = sample.synced
    return out
