"""Parse OPC-UA node addresses from the config, without I/O and without asyncua.

Two ways to name a variable are accepted:

* a NodeId string: ``ns=<index>;<t>=<id>`` or ``nsu=<namespace URI>;<t>=<id>``
  with ``t`` one of ``i`` (numeric), ``s`` (string), ``g`` (GUID), ``b``
  (opaque, base64); the namespace part may be omitted for namespace 0;
* a browse path: ``Objects/M1/GoodCount``, segments separated by ``/``, each
  optionally prefixed with a namespace index (``2:GoodCount``).

This module only checks syntax and produces immutable values; turning them
into server NodeIds (namespace URI -> index, browse path -> node) happens at
connect time in :mod:`drivers.opcua.resolve`, because namespace indexes may
change between server restarts. Guarantee: every string accepted here has a
well-defined NodeId form; every rejected string gets a message saying what
was expected.
"""

from __future__ import annotations

import base64
import binascii
import enum
import uuid
from dataclasses import dataclass

_MAX_NUMERIC = 2**32 - 1
_MAX_NS = 2**16 - 1


class IdType(str, enum.Enum):
    """The four NodeId identifier types of OPC-UA Part 3."""

    NUMERIC = "i"
    STRING = "s"
    GUID = "g"
    OPAQUE = "b"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRef:
    """A syntactically valid NodeId as written in the config.

    Attributes:
        id_type: Identifier type.
        identifier: ``int`` for numeric, ``str`` otherwise (GUID normalised to
            lower case, opaque kept as its base64 text).
        namespace_index: Namespace index when written as ``ns=``.
        namespace_uri: Namespace URI when written as ``nsu=`` (resolved at connect).
    """

    id_type: IdType
    identifier: int | str
    namespace_index: int | None = None
    namespace_uri: str | None = None

    def __str__(self) -> str:
        prefix = f"nsu={self.namespace_uri};" if self.namespace_uri is not None else ""
        if self.namespace_index:
            prefix = f"ns={self.namespace_index};"
        return f"{prefix}{self.id_type.value}={self.identifier}"

    def opaque_bytes(self) -> bytes:
        """The opaque identifier decoded from base64 (only for ``b=``)."""
        return base64.b64decode(str(self.identifier), validate=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class PathSegment:
    """One element of a browse path: a browse name, optionally with a namespace index."""

    name: str
    namespace_index: int | None = None

    def __str__(self) -> str:
        return self.name if self.namespace_index is None else f"{self.namespace_index}:{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowsePath:
    """A browse path from the Root folder (``Objects/M1/GoodCount``)."""

    segments: tuple[PathSegment, ...]

    def __str__(self) -> str:
        return "/".join(str(s) for s in self.segments)


def parse_node_id(text: str) -> NodeRef:
    """Parse a NodeId string.

    Args:
        text: ``ns=2;s=M1.Good``, ``nsu=urn:x;i=5``, ``i=2258``, ``ns=3;g=<uuid>``,
            ``ns=2;b=<base64>``.

    Returns:
        The parsed reference.

    Raises:
        ValueError: With a message naming the problem and the expected form.
    """
    text = text.strip()
    ns_index: int | None = None
    ns_uri: str | None = None
    rest = text
    if rest.startswith("nsu="):
        uri, sep, rest = rest[4:].partition(";")
        if not sep or not uri:
            raise ValueError("expected 'nsu=<namespace URI>;<i|s|g|b>=<id>'")
        ns_uri = uri
    elif rest.startswith("ns="):
        idx, sep, rest = rest[3:].partition(";")
        if not sep or not idx.isdigit() or int(idx) > _MAX_NS:
            raise ValueError("expected 'ns=<index 0..65535>;<i|s|g|b>=<id>'")
        ns_index = int(idx)
    kind, sep, ident = rest.partition("=")
    try:
        id_type = IdType(kind)
    except ValueError:
        id_type = None
    if not sep or id_type is None:
        raise ValueError(
            "expected a NodeId like 'ns=2;s=Name', 'nsu=<uri>;i=5', "
            "'ns=2;g=<GUID>' or 'ns=2;b=<base64>'"
        )
    if not ident:
        raise ValueError("NodeId identifier is empty")
    identifier: int | str = ident
    if id_type is IdType.NUMERIC:
        if not ident.isdigit() or int(ident) > _MAX_NUMERIC:
            raise ValueError("numeric NodeId identifier must be an integer 0..4294967295")
        identifier = int(ident)
    elif id_type is IdType.GUID:
        try:
            identifier = str(uuid.UUID(ident))
        except ValueError:
            raise ValueError(
                "GUID NodeId identifier must look like 72962b91-fa75-4ae6-8d28-b404dc7daf63"
            ) from None
    elif id_type is IdType.OPAQUE:
        try:
            base64.b64decode(ident, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("opaque NodeId identifier must be base64 text") from None
    return NodeRef(
        id_type=id_type, identifier=identifier, namespace_index=ns_index, namespace_uri=ns_uri
    )


def parse_browse_path(text: str) -> BrowsePath:
    """Parse a ``/``-separated browse path starting below the Root folder.

    Args:
        text: ``Objects/M1/GoodCount`` or ``Objects/2:M1/2:GoodCount``.

    Returns:
        The parsed path.

    Raises:
        ValueError: On an empty path or segment, or a bad namespace prefix.
    """
    parts = text.strip().strip("/").split("/")
    segments: list[PathSegment] = []
    for part in parts:
        if not part:
            raise ValueError("expected a browse path like 'Objects/M1/GoodCount' (empty segment)")
        idx, sep, name = part.partition(":")
        if sep and idx.isdigit():
            if not name or int(idx) > _MAX_NS:
                raise ValueError(f"bad browse path segment {part!r}: expected '<index>:<name>'")
            segments.append(PathSegment(name=name, namespace_index=int(idx)))
        else:
            segments.append(PathSegment(name=part))
    return BrowsePath(segments=tuple(segments))


def check_node_id(text: str) -> str | None:
    """``Table.get_str`` checker: an error text for an invalid NodeId, else None."""
    try:
        parse_node_id(text)
    except ValueError as exc:
        return str(exc)
    return None


def check_browse_path(text: str) -> str | None:
    """``Table.get_str`` checker: an error text for an invalid browse path, else None."""
    try:
        parse_browse_path(text)
    except ValueError as exc:
        return str(exc)
    return None
