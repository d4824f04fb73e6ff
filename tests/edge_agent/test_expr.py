"""Tests for the run-signal expression language."""

import pytest

from edge_agent.expr import ExprError, compile_expr


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("p.speed > 5", {"p.speed": 6.0}, True),
        ("p.speed > 5", {"p.speed": 5}, False),
        ("p.speed >= 5", {"p.speed": 5}, True),
        ("p.state in [3, 4]", {"p.state": 4}, True),
        ("p.state in [3, 4]", {"p.state": 2}, False),
        ("p.run and not p.estop", {"p.run": True, "p.estop": False}, True),
        ("p.run and not p.estop", {"p.run": True, "p.estop": True}, False),
        ("(p.a > 1 or p.b > 1) and p.c == 0", {"p.a": 0, "p.b": 2, "p.c": 0}, True),
        ("p.speed != 0", {"p.speed": 0}, False),
    ],
)
def test_evaluates(text: str, env: dict[str, object], expected: bool) -> None:
    """Comparisons, membership and boolean operators give the expected truth value."""
    assert compile_expr(text).evaluate(env) is expected


def test_missing_value_is_unknown_not_false() -> None:
    """A tag without a value makes the result None (unknown), so the sample becomes bad."""
    assert compile_expr("p.speed > 5").evaluate({}) is None


def test_three_valued_logic_short_circuits_known_results() -> None:
    """False AND unknown is False; True OR unknown is True."""
    assert compile_expr("p.a and p.b").evaluate({"p.a": False}) is False
    assert compile_expr("p.a or p.b").evaluate({"p.a": True}) is True


def test_lists_tag_references() -> None:
    """The compiled expression names every tag it reads, once."""
    assert compile_expr("p.a > 1 and p.a < 5 or q.b == 2").tags == ("p.a", "q.b")


@pytest.mark.parametrize(
    "text", ["speed > 5", "p.speed >", "p.speed > 5 5", "__import__('os')", "p.x in 3"]
)
def test_rejects_invalid(text: str) -> None:
    """Malformed expressions and anything that is not the grammar raise ExprError."""
    with pytest.raises(ExprError):
        compile_expr(text)
