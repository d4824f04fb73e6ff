"""RFC 8785 (JSON Canonicalization Scheme) bytes and SHA-256 digests.

The canonical form is produced by the ``rfc8785`` package (Trail of Bits, pure
Python, typed, no dependencies): object keys sorted by their UTF-16 code units,
no whitespace, strings with the minimal JSON escapes in UTF-8, numbers in the
ECMAScript ``Number.prototype.toString`` form (``1.0`` -> ``1``, ``1e21``), so a
record parsed and re-serialised by any JSON library (a PostgreSQL ``jsonb``
column, a spreadsheet export) canonicalises to the same bytes again.

JCS treats every number as an IEEE 754 double. ``rfc8785`` refuses integers
beyond +-(2**53 - 1) outright; here such an integer is taken as the double it
denotes (as ECMAScript's ``JSON.parse`` would), so a float like ``1e16`` that a
parser reads back as the integer ``10000000000000000`` canonicalises the same
on both sides (found by the property test). Digits beyond a double's precision
are therefore not protected; no record the agent signs holds such a number (KPI
counts are deltas). NaN and Infinity are refused with :class:`CanonicalError`
(the agent never emits them). Pure code, no I/O.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


class CanonicalError(ValueError):
    """A value cannot be canonicalised (not I-JSON: huge integer, NaN, non-string key)."""


def canonical(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value.

    Raises:
        CanonicalError: The value is not representable in I-JSON.
    """
    try:
        return rfc8785.dumps(value)
    except rfc8785.IntegerDomainError:
        pass  # rare: convert the large integers to doubles and try again
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalError(str(exc)) from None
    try:
        return rfc8785.dumps(_doubles(value))
    except (rfc8785.CanonicalizationError, OverflowError) as exc:
        raise CanonicalError(str(exc)) from None


_SAFE = 2**53 - 1


def _doubles(value: Any) -> Any:
    """``value`` with integers outside the exact-double range as floats (JSON numbers)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) > _SAFE else value
    if isinstance(value, dict):
        return {k: _doubles(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_doubles(v) for v in value]
    return value


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data`` (what ``sha256sum`` prints)."""
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """Hex SHA-256 of the canonical form of a JSON value."""
    return sha256_hex(canonical(value))
