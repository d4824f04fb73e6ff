"""Unit tests of NodeId and browse-path parsing (pure, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.opcua.nodes import IdType, NodeRef, parse_browse_path, parse_node_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "ns=2;s=M1.GoodCount",
            NodeRef(id_type=IdType.STRING, identifier="M1.GoodCount", namespace_index=2),
        ),
        ("ns=2;i=1001", NodeRef(id_type=IdType.NUMERIC, identifier=1001, namespace_index=2)),
        ("i=2258", NodeRef(id_type=IdType.NUMERIC, identifier=2258)),
        (
            "ns=3;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63",
            NodeRef(
                id_type=IdType.GUID,
                identifier="72962b91-fa75-4ae6-8d28-b404dc7daf63",
                namespace_index=3,
            ),
        ),
        (
            "ns=2;b=AQJvcGFxdWU=",
            NodeRef(id_type=IdType.OPAQUE, identifier="AQJvcGFxdWU=", namespace_index=2),
        ),
        (
            "nsu=urn:edge-agent:simulator;s=M1.Good;Count",
            NodeRef(
                id_type=IdType.STRING,
                identifier="M1.Good;Count",
                namespace_uri="urn:edge-agent:simulator",
            ),
        ),
        (
            "nsu=http://x.org/UA/;i=5",
            NodeRef(id_type=IdType.NUMERIC, identifier=5, namespace_uri="http://x.org/UA/"),
        ),
    ],
)
def test_parse_node_id_accepts_every_form(text: str, expected: NodeRef) -> None:
    """Every NodeId form (numeric, string, GUID, opaque, ns=, nsu=) parses correctly."""
    assert parse_node_id(text) == expected


def test_opaque_identifier_decodes_to_bytes() -> None:
    """An opaque identifier yields its base64-decoded bytes."""
    assert parse_node_id("ns=2;b=AQJvcGFxdWU=").opaque_bytes() == b"\x01\x02opaque"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ns=x;s=A", "index 0..65535"),
        ("ns=70000;s=A", "index 0..65535"),
        ("ns=2;q=A", "expected a NodeId like"),
        ("M1.GoodCount", "expected a NodeId like"),
        ("ns=2;i=abc", "integer 0..4294967295"),
        ("ns=2;i=4294967296", "integer 0..4294967295"),
        ("ns=2;g=not-a-guid", "GUID"),
        ("ns=2;b=***", "base64"),
        ("ns=2;s=", "empty"),
        ("nsu=;s=A", "nsu=<namespace URI>"),
        ("nsu=urn:x", "nsu=<namespace URI>"),
    ],
)
def test_parse_node_id_rejects_with_expectation(text: str, fragment: str) -> None:
    """Malformed NodeIds are rejected with a message saying what was expected."""
    with pytest.raises(ValueError, match=fragment):
        parse_node_id(text)


@given(
    ns=st.integers(min_value=1, max_value=65535),
    ident=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40
    ).filter(lambda s: s == s.strip() and s != ""),
)
def test_string_node_id_round_trips(ns: int, ident: str) -> None:
    """Rendering a parsed string NodeId and parsing it again gives the same reference."""
    ref = parse_node_id(f"ns={ns};s={ident}")
    assert parse_node_id(str(ref)) == ref
    assert ref.identifier == ident


def test_browse_path_segments_and_namespace_prefixes() -> None:
    """Browse paths split on '/', and an 'N:' prefix restricts a segment to namespace N."""
    path = parse_browse_path("/Objects/2:M1/GoodCount/")
    assert [(s.name, s.namespace_index) for s in path.segments] == [
        ("Objects", None),
        ("M1", 2),
        ("GoodCount", None),
    ]
    assert str(path) == "Objects/2:M1/GoodCount"


@pytest.mark.parametrize("text", ["", "Objects//M1", "Objects/2:"])
def test_browse_path_rejects_empty_segments(text: str) -> None:
    """Empty browse paths and segments are errors, not silently skipped."""
    with pytest.raises(ValueError, match="browse path"):
        parse_browse_path(text)
