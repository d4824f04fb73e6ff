"""Per-tag telemetry publishing policy: config dataclass and its TOML parser.

The runtime's config loader pulls the keys in :data:`POLICY_KEYS` out of every
``[devices.<d>]`` table (the device default) and every
``[devices.<d>.tags.<t>]`` table *before* the driver parses the rest, and hands
them to :func:`parse_publish_policy`. This module only validates and builds
immutable :class:`PublishPolicy` values; it does not evaluate readings (that is
:mod:`edge_agent.telemetry.engine`) and does no I/O.

Guarantees: every problem is recorded through :class:`~edge_agent.configkit.Table`
(file, dotted key path, expectation), all of them at once; a key that does not
apply to the selected mode is an error, never silently ignored.

Inheritance rules:

* A tag table without any policy key inherits the device default unchanged.
* A tag table that sets some policy keys overrides key by key: ``publish``
  comes from the device default when the tag does not set it, and the
  parameters (``deadband``/``deadband_percent``, ``heartbeat_s``,
  ``aggregate_s``) come from the device default when the resulting mode is
  the same as the default's. Setting either deadband key in the tag replaces
  both inherited deadband keys.
* A device table without any policy key means ``publish = "none"``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from edge_agent.configkit import Table

__all__ = ["POLICY_KEYS", "PublishMode", "PublishPolicy", "parse_publish_policy"]


class PublishMode(str, enum.Enum):
    """How a tag's values are forwarded."""

    NONE = "none"
    """Not forwarded as telemetry (the value may still feed KPIs)."""
    EVERY = "every"
    """Every reading, good or bad."""
    CHANGE = "change"
    """On change beyond a deadband, on quality change, and on heartbeat."""
    AGGREGATE = "aggregate"
    """One summary (min/max/mean/last/count/good_ratio) per epoch-aligned window."""


_K_PUBLISH = "publish"
_K_DEADBAND = "deadband"
_K_DEADBAND_PCT = "deadband_percent"
_K_HEARTBEAT = "heartbeat_s"
_K_AGGREGATE = "aggregate_s"

POLICY_KEYS: frozenset[str] = frozenset(
    {_K_PUBLISH, _K_DEADBAND, _K_DEADBAND_PCT, _K_HEARTBEAT, _K_AGGREGATE}
)
"""Key names this module reads from device and tag tables."""

_CHANGE_ONLY = (_K_DEADBAND, _K_DEADBAND_PCT, _K_HEARTBEAT)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishPolicy:
    """How one tag (or a device's tags by default) is published.

    Attributes:
        mode: The publishing mode.
        deadband: Absolute deadband for ``change``: a numeric value is published
            when it differs from the last published one by *more* than this.
        deadband_percent: Relative deadband for ``change``, in percent of the
            absolute last published value (``None`` when the absolute deadband
            is used). With a last published value of 0 any change publishes.
        heartbeat_s: For ``change``: republish an unchanged value when this many
            seconds (reading time) passed since the last publication; 0 = never.
        aggregate_s: For ``aggregate``: window length in seconds, windows are
            aligned to multiples of it since the UNIX epoch.
    """

    mode: PublishMode
    deadband: float = 0.0
    deadband_percent: float | None = None
    heartbeat_s: float = 0.0
    aggregate_s: float = 0.0

    def __post_init__(self) -> None:
        if self.deadband < 0 or (self.deadband_percent is not None and self.deadband_percent < 0):
            raise ValueError("deadbands must be >= 0")
        if self.deadband and self.deadband_percent is not None:
            raise ValueError("deadband and deadband_percent are exclusive")
        if self.heartbeat_s < 0:
            raise ValueError("heartbeat_s must be >= 0")
        if self.mode is PublishMode.AGGREGATE and not self.aggregate_s > 0:
            raise ValueError("aggregate mode needs aggregate_s > 0")

    @property
    def publishes(self) -> bool:
        """Whether the tag produces telemetry at all."""
        return self.mode is not PublishMode.NONE


NONE_POLICY = PublishPolicy(mode=PublishMode.NONE)


def parse_publish_policy(table: Table, *, default: PublishPolicy | None) -> PublishPolicy | None:
    """Read the policy keys of one device or tag table.

    Only the keys in :data:`POLICY_KEYS` are read (and marked used); the
    caller's own ``finish()`` reports unknown keys.

    Args:
        table: The ``[devices.<d>]`` table (pass ``default=None``) or a
            ``[devices.<d>.tags.<t>]`` table (pass the device's policy).
        default: The device default a tag inherits from; ``None`` when parsing
            the device table itself (the default then is ``publish = "none"``).

    Returns:
        The effective policy, or ``None`` when the policy keys of this table
        are invalid (the problems are recorded in ``table.issues``).
    """
    base = default if default is not None else NONE_POLICY
    if POLICY_KEYS.isdisjoint(table.data):
        return base
    before = len(table.issues.items)

    mode = table.get_enum(_K_PUBLISH, PublishMode, base.mode)
    inherit = base if mode is base.mode else NONE_POLICY

    deadband = inherit.deadband
    deadband_percent = inherit.deadband_percent
    if table.has(_K_DEADBAND) and table.has(_K_DEADBAND_PCT):
        table.error(_K_DEADBAND_PCT, "set either deadband or deadband_percent, not both")
    if table.has(_K_DEADBAND) or table.has(_K_DEADBAND_PCT):
        deadband = table.get_float(_K_DEADBAND, 0.0, min=0.0)
        deadband_percent = (
            table.get_float(_K_DEADBAND_PCT, min=0.0) if table.has(_K_DEADBAND_PCT) else None
        )
    heartbeat_s = table.get_float(_K_HEARTBEAT, inherit.heartbeat_s, min=0.0)
    aggregate_s = table.get_float(_K_AGGREGATE, inherit.aggregate_s, positive=True)

    if mode is not PublishMode.CHANGE:
        for key in _CHANGE_ONLY:
            if table.has(key):
                table.error(key, f'only valid with publish = "change", not {mode.value!r}')
    if mode is not PublishMode.AGGREGATE and table.has(_K_AGGREGATE):
        table.error(_K_AGGREGATE, f'only valid with publish = "aggregate", not {mode.value!r}')
    if mode is PublishMode.AGGREGATE and not aggregate_s > 0 and not table.has(_K_AGGREGATE):
        table.error(_K_AGGREGATE, 'missing, expected a number > 0 for publish = "aggregate"')

    if len(table.issues.items) != before:
        return None
    policy = PublishPolicy(
        mode=mode,
        deadband=deadband,
        deadband_percent=deadband_percent,
        heartbeat_s=heartbeat_s,
        aggregate_s=aggregate_s,
    )
    return _normalised(policy)


def _normalised(policy: PublishPolicy) -> PublishPolicy:
    """Drop parameters that do not apply to the mode, so equal behaviour compares equal."""
    if policy.mode is PublishMode.CHANGE:
        return replace(policy, aggregate_s=0.0)
    if policy.mode is PublishMode.AGGREGATE:
        return PublishPolicy(mode=policy.mode, aggregate_s=policy.aggregate_s)
    return PublishPolicy(mode=policy.mode)
