"""The device's Ed25519 key pair: created at first start, shown, rotated, never published.

Layout in ``<state_dir>/evidence/`` (directory mode 0700):

* ``device.key``: the active private key (PKCS #8 PEM, mode 0600). It is read
  by the agent only; nothing logs or publishes it;
* ``next.key``: a private key prepared by ``edge-agent key rotate`` (0600). The
  agent commits a signed ``key`` record (old key signs, new key proves
  possession) with its next outbox transaction and then renames it over
  ``device.key``, so the old private key is gone once the rotation is in the chain;
* ``public/<kid>.pem``: every public key this device ever used (0644), kept so
  records signed before a rotation stay verifiable and bundles can carry them.

A key is named by its **kid** (the first 16 hex digits of the SHA-256 of the raw
32-byte public key, carried in every proof) and its **fingerprint** (all 64 hex
digits, shown as ``SHA256:`` and 16 groups of 4: what goes into a contract
annex). Files are written to a temporary name with ``O_EXCL`` and mode 0600,
fsynced and renamed, so a crash leaves either the old or the new key, never half
of one.

No cryptography is written here. Signing is PyNaCl's (``nacl.signing``, pyca's
libsodium binding), imported by the first key used: every agent signs, and PyNaCl
costs about 2 MB of resident memory where ``cryptography``'s extension costs about
8 MB (``docs/bench-telemetry.md``, "Resident memory"). Ed25519 is deterministic
(RFC 8032), so the signatures are byte for byte those ``cryptography`` makes (tested).
Key files in RFC 8410's fixed PEM form, the only form this module writes, are
encoded and read by :mod:`.rfc8410` (format handling, no ASN.1 parser); any other
key file, and signature verification (``verify``, the collector, reports), go
through ``cryptography``, imported by the functions that need it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.evidence import rfc8410

if TYPE_CHECKING:
    import nacl.signing

KEY_DIR = "evidence"
ACTIVE = "device.key"
PENDING = "next.key"
PUBLIC_DIR = "public"
KID_HEX = 16
_HEX = re.compile(r"[0-9a-f]")


class KeyFileError(Exception):
    """A key file is missing, unreadable or not an Ed25519 key (the message names the file)."""


def fingerprint_of(public_raw: bytes) -> str:
    """All 64 hex digits of the SHA-256 of the raw public key."""
    return hashlib.sha256(public_raw).hexdigest()


def kid_of(public_raw: bytes) -> str:
    """The key id carried in proofs: the first 16 hex digits of the fingerprint."""
    return fingerprint_of(public_raw)[:KID_HEX]


def format_fingerprint(fingerprint: str) -> str:
    """``SHA256:1a2b 3c4d ...``: 16 groups of 4 hex digits, easy to compare by eye."""
    groups = " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))
    return f"SHA256:{groups}"


def parse_fingerprint(text: str) -> str | None:
    """The 64 hex digits of a fingerprint written in any grouping, or None if it is not one.

    Accepts ``SHA256:`` prefixes, spaces, colons and upper case.
    """
    body = text.strip()
    if body.upper().startswith("SHA256:"):
        body = body[7:]
    digits = "".join(_HEX.findall(body.lower()))
    cleaned = re.sub(r"[\s:_-]", "", body.lower())
    if len(digits) != 64 or cleaned != digits:
        return None
    return digits


def public_pem(raw: bytes) -> str:
    """A public key as SubjectPublicKeyInfo PEM (what ``openssl pkey -pubin`` reads)."""
    return rfc8410.public_pem(raw).decode("ascii")


def load_public_pem(data: bytes, name: str) -> bytes:
    """The raw bytes of an Ed25519 public key in PEM.

    Raises:
        KeyFileError: Not a PEM Ed25519 public key (``name`` says which file).
    """
    raw = rfc8410.public_from_pem(data)
    if raw is not None:
        return raw
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{name}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{name}: not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def verify_signature(raw: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by key ``raw``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A public key and its names."""

    raw: bytes

    @property
    def kid(self) -> str:
        """Key id (16 hex digits)."""
        return kid_of(self.raw)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the raw key, 64 hex digits."""
        return fingerprint_of(self.raw)

    def pem(self) -> str:
        """SubjectPublicKeyInfo PEM."""
        return public_pem(self.raw)


class SigningKey:
    """A private key held in memory to sign; its ``repr`` never shows key material.

    Args:
        seed: The 32-byte Ed25519 private key (RFC 8032's seed).
    """

    __slots__ = ("_key", "public")

    def __init__(self, seed: bytes) -> None:
        import nacl.signing

        if len(seed) != rfc8410.KEY_BYTES:
            raise ValueError(f"an Ed25519 private key is {rfc8410.KEY_BYTES} bytes")
        self._key: nacl.signing.SigningKey = nacl.signing.SigningKey(seed)
        self.public = PublicKey(self._key.verify_key.encode())

    @property
    def kid(self) -> str:
        """Key id of the public half."""
        return self.public.kid

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message).signature

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid})"

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key from the operating system's random source (via libsodium)."""
        import nacl.signing

        return cls(bytes(nacl.signing.SigningKey.generate()))

    def private_pem(self) -> bytes:
        """PKCS #8 PEM, unencrypted (the file's mode protects it)."""
        return rfc8410.private_pem(bytes(self._key))


def _seed_of_other_pem(data: bytes, path: Path) -> bytes:
    """The seed of a PEM private key in another form than RFC 8410's, via ``cryptography``."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not a PEM private key (damaged?)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _load_private(path: Path) -> SigningKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the device key: {exc.strerror or exc}") from None
    seed = rfc8410.seed_from_pem(data)
    return SigningKey(seed if seed is not None else _seed_of_other_pem(data, path))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a fresh temporary file created with ``mode``."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a crash; never a key in use
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class KeyStore:
    """The key files of one agent (see the module docstring for the layout).

    Args:
        state_dir: The agent's state directory; keys live in ``<state_dir>/evidence``.
    """

    def __init__(self, state_dir: Path) -> None:
        self.directory = Path(state_dir) / KEY_DIR
        self._cache: dict[Path, tuple[tuple[int, int], SigningKey]] = {}

    @property
    def active_path(self) -> Path:
        """The active private key file."""
        return self.directory / ACTIVE

    @property
    def pending_path(self) -> Path:
        """The private key prepared by ``key rotate``, until the agent commits it."""
        return self.directory / PENDING

    def _mkdir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.directory / PUBLIC_DIR).mkdir(mode=0o755, exist_ok=True)

    def _read(self, path: Path) -> SigningKey | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            self._cache.pop(path, None)
            return None
        stamp = (st.st_mtime_ns, st.st_ino)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        key = _load_private(path)
        self._cache[path] = (stamp, key)
        return key

    def active(self) -> SigningKey | None:
        """The active key, or None before the first start.

        Raises:
            KeyFileError: The file exists but cannot be used.
        """
        return self._read(self.active_path)

    def pending(self) -> SigningKey | None:
        """The key prepared by ``key rotate`` and not yet committed, or None."""
        return self._read(self.pending_path)

    def ensure(self) -> tuple[SigningKey, bool]:
        """The active key, created when there is none; ``(key, created)``."""
        key = self.active()
        if key is not None:
            self._save_public(key.public)
            return key, False
        self._mkdir()
        key = SigningKey.generate()
        _write_atomic(self.active_path, key.private_pem(), 0o600)
        self._save_public(key.public)
        return key, True

    def signer(self, kid: str) -> SigningKey | None:
        """The private key with this kid (active or pending), or None when it is not here."""
        for key in (self.active(), self.pending()):
            if key is not None and key.kid == kid:
                return key
        return None

    def prepare_rotation(self) -> SigningKey:
        """Create ``next.key`` (the agent signs the rotation record with its next commit).

        Raises:
            KeyFileError: No active key yet, or a rotation is already waiting.
        """
        if self.active() is None:
            raise KeyFileError(f"{self.active_path}: no device key yet (start the agent once)")
        if self.pending() is not None:
            raise KeyFileError(
                f"{self.pending_path}: a rotation is already waiting for the agent to commit it"
            )
        key = SigningKey.generate()
        _write_atomic(self.pending_path, key.private_pem(), 0o600)
        self._save_public(key.public)
        return key

    def promote(self, kid: str) -> None:
        """Make the pending key the active one (after its rotation record was committed)."""
        pending = self.pending()
        if pending is None or pending.kid != kid:
            return
        os.replace(self.pending_path, self.active_path)
        _fsync_dir(self.directory)
        self._cache.clear()

    def _save_public(self, key: PublicKey) -> None:
        path = self.directory / PUBLIC_DIR / f"{key.kid}.pem"
        if path.exists():
            return
        self._mkdir()
        _write_atomic(path, key.pem().encode("ascii"), 0o644)

    def public_keys(self) -> list[PublicKey]:
        """Every public key kept in ``public/`` (unreadable files are skipped)."""
        out: list[PublicKey] = []
        folder = self.directory / PUBLIC_DIR
        if not folder.is_dir():
            return out
        for path in sorted(folder.glob("*.pem")):
            try:
                out.append(PublicKey(load_public_pem(path.read_bytes(), str(path))))
            except (OSError, KeyFileError):
                continue
        return out
