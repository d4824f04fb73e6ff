"""Ed25519 signing for the running agent, without loading ``cryptography`` (9 MB of RSS).

Every agent signs (the evidence chain's ``config`` and segment records at each start,
KPI records every reporting interval), so the signer is on the path of every
configuration. ``cryptography``'s compiled extension adds about 9.3 MB of resident
memory to the agent (its Rust module's pages touched at import, measured in
``docs/bench-telemetry.md``, "Resident memory"), against a budget of 45 MB for
the whole gateway (issue 20). Python's own ``ssl``/``hashlib`` modules have already
loaded the system's OpenSSL ``libcrypto``, which implements Ed25519 (OpenSSL >=
1.1.1); calling its ``EVP_DigestSign`` through :mod:`ctypes` costs about 0.1 MB.

No cryptography is written here: the algorithm is OpenSSL's (the same library
``cryptography`` wraps). This module only binds five ``EVP`` functions and encodes
the fixed RFC 8410 key containers (PKCS #8 and SubjectPublicKeyInfo for Ed25519 are
a constant DER prefix followed by the 32 key bytes). Before first use the binding
signs RFC 8032's test vector 1 and must give its published signature; otherwise,
or when no ``libcrypto`` is mapped into the process (a statically linked Python),
:func:`backend` answers ``"cryptography"`` and signing goes through that package,
imported then. Verification and PEM files written by other tools stay with
``cryptography`` (:mod:`edge_agent.evidence.keys`): they are used by ``verify``, the
collector and reports, not by the agent's hot path.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import threading
from pathlib import Path
from typing import Literal

#: OpenSSL's ``NID_ED25519`` / ``EVP_PKEY_ED25519`` (1.1.1 and 3.x).
_NID_ED25519 = 1087
SEED_BYTES = 32
SIGNATURE_BYTES = 64
#: RFC 8410: PKCS #8 v1 PrivateKeyInfo of an Ed25519 key = this prefix + the 32-byte seed.
PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
#: RFC 8410: SubjectPublicKeyInfo of an Ed25519 key = this prefix + the 32-byte public key.
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

# RFC 8032, section 7.1, TEST 1 (empty message).
_VECTOR_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
_VECTOR_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
_VECTOR_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

Backend = Literal["libcrypto", "cryptography"]


class _LibCrypto:
    """The five ``EVP`` calls Ed25519 signing needs, bound with exact C signatures."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        self._new_key = lib.EVP_PKEY_new_raw_private_key
        self._new_key.restype = vp
        self._new_key.argtypes = [ctypes.c_int, vp, ctypes.c_char_p, sz]
        self._free_key = lib.EVP_PKEY_free
        self._free_key.restype = None
        self._free_key.argtypes = [vp]
        self._raw_public = lib.EVP_PKEY_get_raw_public_key
        self._raw_public.restype = ctypes.c_int
        self._raw_public.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(sz)]
        self._new_ctx = lib.EVP_MD_CTX_new
        self._new_ctx.restype = vp
        self._new_ctx.argtypes = []
        self._free_ctx = lib.EVP_MD_CTX_free
        self._free_ctx.restype = None
        self._free_ctx.argtypes = [vp]
        self._sign_init = lib.EVP_DigestSignInit
        self._sign_init.restype = ctypes.c_int
        self._sign_init.argtypes = [vp, vp, vp, vp, vp]
        self._sign = lib.EVP_DigestSign
        self._sign.restype = ctypes.c_int
        self._sign.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(sz), ctypes.c_char_p, sz]

    def _key(self, seed: bytes) -> int:
        if len(seed) != SEED_BYTES:
            raise ValueError("an Ed25519 seed is 32 bytes")
        key = self._new_key(_NID_ED25519, None, seed, SEED_BYTES)
        if not key:
            raise RuntimeError("libcrypto refused the Ed25519 key")
        return int(key)

    def public(self, seed: bytes) -> bytes:
        """The raw public key of ``seed``."""
        key = self._key(seed)
        try:
            out = ctypes.create_string_buffer(SEED_BYTES)
            size = ctypes.c_size_t(SEED_BYTES)
            if self._raw_public(key, out, ctypes.byref(size)) != 1 or size.value != SEED_BYTES:
                raise RuntimeError("libcrypto could not derive the Ed25519 public key")
            return out.raw
        finally:
            self._free_key(key)

    def sign(self, seed: bytes, message: bytes) -> bytes:
        """The Ed25519 signature of ``message`` by ``seed``."""
        key = self._key(seed)
        ctx = self._new_ctx()
        try:
            if not ctx or self._sign_init(ctx, None, None, None, key) != 1:
                raise RuntimeError("libcrypto could not start an Ed25519 signature")
            out = ctypes.create_string_buffer(SIGNATURE_BYTES)
            size = ctypes.c_size_t(SIGNATURE_BYTES)
            if (
                self._sign(ctx, out, ctypes.byref(size), message, len(message)) != 1
                or size.value != SIGNATURE_BYTES
            ):
                raise RuntimeError("libcrypto could not sign with Ed25519")
            return out.raw
        finally:
            self._free_ctx(ctx)
            self._free_key(key)


def _mapped_libcrypto() -> Path | None:
    """The ``libcrypto`` file Python's ``hashlib`` already mapped into this process."""
    import hashlib  # noqa: F401 - its OpenSSL half (_hashlib) maps libcrypto

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and Path(fields[5]).name.startswith("libcrypto.so"):
            return Path(fields[5])
    return None


_lock = threading.Lock()
_loaded: list[_LibCrypto | None] = []


def _load() -> _LibCrypto | None:
    path = _mapped_libcrypto()
    if path is None:
        return None
    try:
        lib = _LibCrypto(ctypes.CDLL(str(path)))
        ok = (
            lib.public(_VECTOR_SEED) == _VECTOR_PUBLIC
            and lib.sign(_VECTOR_SEED, b"") == _VECTOR_SIG
        )
    except (OSError, AttributeError, RuntimeError):
        return None
    return lib if ok else None


def _libcrypto() -> _LibCrypto | None:
    with _lock:
        if not _loaded:
            _loaded.append(_load())
        return _loaded[0]


def backend() -> Backend:
    """Which implementation signs in this process (checked once, then remembered)."""
    return "libcrypto" if _libcrypto() is not None else "cryptography"


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key of an Ed25519 private key given by its 32-byte seed."""
    lib = _libcrypto()
    if lib is not None:
        return lib.public(seed)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` by the key with this seed."""
    lib = _libcrypto()
    if lib is not None:
        return lib.sign(seed, message)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    head = f"-----BEGIN {label}-----\n".encode("ascii")
    tail = f"-----END {label}-----\n".encode("ascii")
    return head + b"\n".join(lines) + b"\n" + tail


def private_pem(seed: bytes) -> bytes:
    """PKCS #8 PEM, unencrypted, byte for byte what ``cryptography`` and OpenSSL write."""
    if len(seed) != SEED_BYTES:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return _pem("PRIVATE KEY", PKCS8_PREFIX + seed)


def public_pem(raw: bytes) -> bytes:
    """SubjectPublicKeyInfo PEM (what ``openssl pkey -pubin`` reads)."""
    if len(raw) != SEED_BYTES:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return _pem("PUBLIC KEY", SPKI_PREFIX + raw)


def seed_from_pem(data: bytes) -> bytes | None:
    """The seed of a PKCS #8 PEM Ed25519 key in RFC 8410's plain form, else None.

    None means "not this exact form" (another key type, an encrypted key, the v2 form
    with the public key attached, not PEM at all): the caller then asks ``cryptography``.
    """
    text = data.strip()
    head, tail = b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----"
    if not (text.startswith(head) and text.endswith(tail)):
        return None
    try:
        der = base64.b64decode(b"".join(text[len(head) : -len(tail)].split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(der) != len(PKCS8_PREFIX) + SEED_BYTES or not der.startswith(PKCS8_PREFIX):
        return None
    return der[len(PKCS8_PREFIX) :]
