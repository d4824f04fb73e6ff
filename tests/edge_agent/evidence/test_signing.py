"""Signing with PyNaCl and the RFC 8410 key files equal what ``cryptography`` makes, byte for byte.

The agent signs with ``nacl.signing`` and reads/writes its key files through
:mod:`edge_agent.evidence.rfc8410`; ``cryptography`` (what verifiers, the collector and
earlier versions use) is the reference here.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.evidence import rfc8410
from edge_agent.evidence.keys import (
    KeyFileError,
    KeyStore,
    SigningKey,
    load_public_pem,
    verify_signature,
)

# Random keys, but the same on every pytest-xdist worker (collection must agree).
SEEDS = [random.Random(f"signing-{i}").randbytes(32) for i in range(16)]


def _reference(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def _raw_public(seed: bytes) -> bytes:
    return (
        _reference(seed)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s.hex()[:8])
def test_signatures_and_public_keys_equal_cryptography(seed: bytes) -> None:
    """Same seed, same message: PyNaCl's signature is cryptography's, and it verifies."""
    key = SigningKey(seed)
    assert key.public.raw == _raw_public(seed)
    rng = random.Random(seed)
    for size in (0, 1, 63, 64, 65, 1000, rng.randrange(1, 5000)):
        message = rng.randbytes(size)
        signature = key.sign(message)
        assert signature == _reference(seed).sign(message)
        assert verify_signature(key.public.raw, signature, message)
        assert not verify_signature(key.public.raw, signature, message + b"x")


@pytest.mark.parametrize("seed", SEEDS[:4], ids=lambda s: s.hex()[:8])
def test_key_files_are_what_cryptography_writes(seed: bytes) -> None:
    """device.key (PKCS #8) and public/<kid>.pem (SPKI) are byte-identical to cryptography's."""
    reference = _reference(seed)
    key = SigningKey(seed)
    assert key.private_pem() == reference.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert key.public.pem().encode() == reference.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert rfc8410.seed_from_pem(key.private_pem()) == seed
    assert rfc8410.public_from_pem(key.public.pem().encode()) == key.public.raw


def test_generated_key_round_trips_through_its_file(tmp_path: Path) -> None:
    """A key created by the store is read back (fast path) and cryptography reads the file too."""
    store = KeyStore(tmp_path)
    key, created = store.ensure()
    assert created
    data = store.active_path.read_bytes()
    assert rfc8410.seed_from_pem(data) is not None
    loaded = serialization.load_pem_private_key(data, password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert loaded.sign(b"m") == key.sign(b"m")
    again = KeyStore(tmp_path).active()
    assert again is not None
    assert again.sign(b"m") == key.sign(b"m")


@pytest.mark.parametrize(
    "variant",
    ["openssl", "crlf", "text_around"],
)
def test_other_valid_private_key_files_are_read(tmp_path: Path, variant: str) -> None:
    """Key files others write (``openssl genpkey``, CRLF, text around the PEM): the same key.

    Text around the PEM is not the fixed form, so that file is read by cryptography.
    """
    store = KeyStore(tmp_path)
    store.directory.mkdir(parents=True)
    if variant == "openssl":
        if shutil.which("openssl") is None:
            pytest.skip("no openssl command")
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(store.active_path)],
            check=True,
            timeout=30,
        )
        loaded = serialization.load_pem_private_key(store.active_path.read_bytes(), None)
        assert isinstance(loaded, Ed25519PrivateKey)
        seed = loaded.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    else:
        seed = SEEDS[0]
        fixed = SigningKey(seed).private_pem()
        crlf = fixed.replace(b"\n", b"\r\n")
        store.active_path.write_bytes(crlf if variant == "crlf" else b"device key\n" + fixed)
    key = store.active()
    assert key is not None
    assert key.public.raw == _raw_public(seed)
    assert key.sign(b"record") == _reference(seed).sign(b"record")


def test_other_valid_public_key_files_are_read_through_cryptography() -> None:
    """An SPKI PEM with text around it is not the fixed form, yet the same key."""
    raw = _raw_public(SEEDS[1])
    pem = SigningKey(SEEDS[1]).public.pem().encode()
    assert rfc8410.public_from_pem(b"annex key\n" + pem) is None
    assert load_public_pem(b"annex key\n" + pem, "annex.pem") == raw


def _ec_pem() -> bytes:
    return generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"garbage", "not a PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", "not a PEM private"),
        # the fixed prefix with a 31-byte seed: strict length, then cryptography rejects it too
        (
            rfc8410._pem("PRIVATE KEY", rfc8410.PKCS8_PREFIX + b"\x01" * 31),
            "not a PEM private key",
        ),
        (None, "not an Ed25519 private key"),
    ],
    ids=["garbage", "bad-base64", "short-seed", "ec-key"],
)
def test_unusable_private_key_files_are_named_errors(
    tmp_path: Path, data: bytes | None, message: str
) -> None:
    """Garbage, truncated or non-Ed25519 device.key: a KeyFileError naming the file."""
    store = KeyStore(tmp_path)
    store.directory.mkdir(parents=True)
    store.active_path.write_bytes(_ec_pem() if data is None else data)
    assert rfc8410.seed_from_pem(store.active_path.read_bytes()) is None
    with pytest.raises(KeyFileError, match=message) as err:
        store.active()
    assert "device.key" in str(err.value)


def test_fixed_form_readers_are_strict() -> None:
    """Wrong label, prefix, length or base64: None (the caller asks cryptography)."""
    seed = SEEDS[2]
    good = rfc8410.private_pem(seed)
    assert rfc8410.seed_from_pem(good) == seed
    assert rfc8410.public_from_pem(good) is None  # a private key is not a public key
    assert rfc8410.seed_from_pem(good.replace(b"PRIVATE", b"PUBLIC")) is None
    assert rfc8410.seed_from_pem(rfc8410._pem("PRIVATE KEY", bytes(16) + seed)) is None
    assert (
        rfc8410.seed_from_pem(rfc8410._pem("PRIVATE KEY", rfc8410.PKCS8_PREFIX + seed + b"\0"))
        is None
    )
    assert rfc8410.seed_from_pem(good.replace(b"\n-----END", b"!\n-----END")) is None
    with pytest.raises(ValueError, match="32 bytes"):
        rfc8410.private_pem(seed[:31])
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey(seed + b"\0")
