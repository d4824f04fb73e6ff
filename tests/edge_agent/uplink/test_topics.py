"""Topic templates: validation at load, rendering per message."""

from __future__ import annotations

import pytest

from edge_agent.uplink.topics import COMMON, KIND_FIELDS, TopicTemplates, check_template


def test_default_topics() -> None:
    """Default templates render the documented edge/{site}/{agent}/... layout."""
    t = TopicTemplates.create(site="lyon", agent="gw1")
    assert t.kpi(machine="press1", window_kind="shift") == "edge/lyon/gw1/press1/kpi/shift"
    assert t.stop(machine="press1") == "edge/lyon/gw1/press1/stop"
    assert t.health() == "edge/lyon/gw1/health"
    assert t.telemetry(device="plc1") == "edge/lyon/gw1/telemetry/plc1"
    assert t.status() == "edge/lyon/gw1/status"


def test_custom_prefix_and_template() -> None:
    """A custom prefix and per-kind template are both applied."""
    t = TopicTemplates.create(
        site="s",
        agent="a",
        prefix_template="factory/{site}",
        templates={"telemetry": "{prefix}/{agent}/raw/{device}/{tag}"},
    )
    assert t.telemetry(device="d", tag="speed") == "factory/s/a/raw/d/speed"


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{prefix}/{machine}/+", "wildcards"),
        ("{prefix}/#", "wildcards"),
        ("{prefix}/{nope}", "unknown placeholder"),
        ("{prefix}/{machine!r}", "format spec"),
        ("{prefix}/{machine", "invalid template"),
        ("$SYS/{prefix}", "reserved"),
        ("", "empty"),
    ],
)
def test_invalid_templates_are_reported(template: str, fragment: str) -> None:
    """Wildcards, unknown placeholders, format specs and $-topics are rejected with a reason."""
    problem = check_template(template, COMMON | KIND_FIELDS["stop"])
    assert problem is not None
    assert fragment in problem


def test_window_kind_not_allowed_in_stop_topic() -> None:
    """A placeholder valid for one kind is unknown for another."""
    assert check_template("{prefix}/{window_kind}", COMMON | KIND_FIELDS["stop"]) is not None
    assert check_template("{prefix}/{window_kind}", COMMON | KIND_FIELDS["kpi"]) is None


@pytest.mark.parametrize("value", ["a/b", "a+b", "a#", ""])
def test_render_refuses_values_that_change_topic_structure(value: str) -> None:
    """Values containing '/', '+', '#' or empty values cannot be rendered into a topic."""
    t = TopicTemplates.create(site="s", agent="a")
    with pytest.raises(ValueError, match="must be non-empty"):
        t.stop(machine=value)
