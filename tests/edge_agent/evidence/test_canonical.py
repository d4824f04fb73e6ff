"""RFC 8785 canonical form: the RFC's own examples, and stability under re-serialisation."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.evidence.canonical import CanonicalError, canonical, digest


def test_rfc8785_section_3_2_example() -> None:
    """The RFC's example object canonicalises to the RFC's bytes."""
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical(json.loads(text)) == expected.encode("utf-8")


def test_rfc8785_key_order_is_by_utf16_code_units() -> None:
    """Keys sort by UTF-16 code units: the emoji (surrogates) before U+FB33."""
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    out = json.loads(canonical(dict.fromkeys(keys, 0)))
    assert list(out) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(
    ("bits", "text"),
    [
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x7FEFFFFFFFFFFFFF, "1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44B52D02C7E14AF6, "1e+23"),
        (0x444B1AE4D6E2EF50, "1e+21"),
        (0x3EB0C6F7A0B5ED8D, "0.000001"),
        (0x41B3DE4355555555, "333333333.3333333"),
        (0x43143FF3C1CB0959, "1424953923781206.2"),
    ],
)
def test_rfc8785_appendix_b_numbers(bits: int, text: str) -> None:
    """IEEE 754 values of RFC 8785 appendix B in their ECMAScript form."""
    (value,) = struct.unpack(">d", bits.to_bytes(8, "big"))
    assert canonical(value) == text.encode()


def test_large_integers_are_numbers_like_any_other() -> None:
    """An integer beyond 2**53 is the double it denotes (what JSON.parse makes of it)."""
    assert canonical(2**53) == canonical(float(2**53)) == b"9007199254740992"
    assert canonical({"a": [10**17]}) == b'{"a":[100000000000000000]}'


def test_non_finite_numbers_are_refused() -> None:
    """NaN and Infinity are not JSON: they cannot be signed."""
    with pytest.raises(CanonicalError):
        canonical(float("nan"))
    with pytest.raises(CanonicalError):
        canonical(10**400)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_canonical_survives_any_json_round_trip(value: object) -> None:
    """Parsed and re-serialised by another JSON writer, a value keeps its canonical bytes."""
    once = canonical(value)
    relaxed = json.dumps(json.loads(once), indent=2, ensure_ascii=True, sort_keys=False)
    assert canonical(json.loads(relaxed)) == once
    assert digest(json.loads(relaxed)) == digest(value)
