"""Ed25519 key files in RFC 8410's one fixed form: PEM format handling, no cryptography.

The agent reads its ``device.key`` at every start. Loading it through the
``cryptography`` package would map that package's compiled extension (about 8 MB
of resident memory, ``docs/bench-telemetry.md``, "Resident memory") into every
agent only to take 32 bytes out of a PEM file; signing itself is PyNaCl's
(:mod:`edge_agent.evidence.keys`). This module is **format handling of a fixed
structure, not cryptography**: RFC 8410 (section 7 and 10.3) encodes

* an Ed25519 private key as PKCS #8 v1 ``PrivateKeyInfo`` whose DER is always the
  16 bytes :data:`PKCS8_PREFIX` followed by the 32-byte seed (48 bytes), and
* an Ed25519 public key as ``SubjectPublicKeyInfo`` whose DER is always the 12
  bytes :data:`SPKI_PREFIX` followed by the 32-byte key (44 bytes),

each in PEM (RFC 7468: base64 between ``-----BEGIN/END ...-----`` lines of 64
characters). These are exactly the bytes ``cryptography`` and ``openssl genpkey``
write (tests compare them for random keys). Nothing here parses ASN.1: a file is
either exactly this form (label, strict base64, exact length, exact prefix) or the
readers answer None, and the caller hands the file to ``cryptography`` (imported
then), which reads the other encodings it supports (explanatory text around the
PEM, for one) and rejects garbage and other key types.
"""

from __future__ import annotations

import base64
import binascii

KEY_BYTES = 32
#: RFC 8410: PKCS #8 v1 PrivateKeyInfo of an Ed25519 key = this prefix + the 32-byte seed.
PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
#: RFC 8410: SubjectPublicKeyInfo of an Ed25519 key = this prefix + the 32-byte public key.
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PRIVATE = "PRIVATE KEY"
_PUBLIC = "PUBLIC KEY"


def _pem(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n".encode() + lines + f"\n-----END {label}-----\n".encode()


def _key_bytes(data: bytes, label: str, prefix: bytes) -> bytes | None:
    """The 32 bytes after ``prefix`` when ``data`` is exactly that PEM form, else None."""
    head = f"-----BEGIN {label}-----".encode()
    tail = f"-----END {label}-----".encode()
    text = data.strip()
    if not (text.startswith(head) and text.endswith(tail)) or len(text) > 200:
        return None
    try:
        der = base64.b64decode(b"".join(text[len(head) : -len(tail)].split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(der) != len(prefix) + KEY_BYTES or not der.startswith(prefix):
        return None
    return der[len(prefix) :]


def _checked(key: bytes, what: str) -> bytes:
    if len(key) != KEY_BYTES:
        raise ValueError(f"an Ed25519 {what} is {KEY_BYTES} bytes, not {len(key)}")
    return key


def private_pem(seed: bytes) -> bytes:
    """PKCS #8 PEM, unencrypted, of the private key with this 32-byte seed."""
    return _pem(_PRIVATE, PKCS8_PREFIX + _checked(seed, "seed"))


def public_pem(raw: bytes) -> bytes:
    """SubjectPublicKeyInfo PEM of a raw 32-byte public key."""
    return _pem(_PUBLIC, SPKI_PREFIX + _checked(raw, "public key"))


def seed_from_pem(data: bytes) -> bytes | None:
    """The seed of an RFC 8410 PKCS #8 v1 PEM private key, None for anything else."""
    return _key_bytes(data, _PRIVATE, PKCS8_PREFIX)


def public_from_pem(data: bytes) -> bytes | None:
    """The raw key of an RFC 8410 SubjectPublicKeyInfo PEM public key, None for anything else."""
    return _key_bytes(data, _PUBLIC, SPKI_PREFIX)
