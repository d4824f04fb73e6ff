"""The agent's Ed25519 signer (OpenSSL's libcrypto) against the ``cryptography`` package.

Ed25519 is deterministic: for one key and message both must give the very same bytes,
and the key files they write must be the same bytes too.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.evidence import ed25519
from edge_agent.evidence.keys import KeyFileError, KeyStore, SigningKey, verify_signature


def _reference(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def test_libcrypto_is_used_where_python_has_it() -> None:
    """This interpreter links OpenSSL 3 (``ssl`` works): the agent signs without cryptography."""
    assert ed25519.backend() == "libcrypto"


@pytest.mark.parametrize("size", [0, 1, 64, 1000, 70_000])
def test_signatures_and_public_keys_equal_cryptography(size: int) -> None:
    """Random keys and messages: the same public key and the same signature bytes."""
    for _ in range(5):
        seed = secrets.token_bytes(32)
        message = secrets.token_bytes(size)
        ref = _reference(seed)
        raw = ref.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert ed25519.public_key(seed) == raw
        assert ed25519.sign(seed, message) == ref.sign(message)
        assert verify_signature(raw, ed25519.sign(seed, message), message)
        assert not verify_signature(raw, ed25519.sign(seed, message + b"x"), message)


def test_pem_files_are_what_cryptography_writes() -> None:
    """Private (PKCS #8) and public (SPKI) PEM byte for byte, and both read back."""
    seed = secrets.token_bytes(32)
    ref = _reference(seed)
    private = ref.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = ref.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert ed25519.private_pem(seed) == private
    assert ed25519.public_pem(ed25519.public_key(seed)) == public
    assert ed25519.seed_from_pem(private) == seed
    assert ed25519.seed_from_pem(public) is None
    assert (
        ed25519.seed_from_pem(b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----") is None
    )


def test_other_key_files_go_through_cryptography(tmp_path: Path) -> None:
    """Files not in the agent's own form: another key type or a damaged file is named."""
    from cryptography.hazmat.primitives.asymmetric import ec

    store = KeyStore(tmp_path)
    store.directory.mkdir(parents=True)
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    store.active_path.write_bytes(other)
    with pytest.raises(KeyFileError, match="not an Ed25519 private key"):
        store.active()
    store.active_path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        KeyStore(tmp_path).active()
    seed = secrets.token_bytes(32)
    wrapped = ed25519.private_pem(seed).replace(b"\n", b"\r\n")  # CRLF: still our form
    store.active_path.write_bytes(wrapped)
    key = KeyStore(tmp_path).active()
    assert key is not None
    assert key.sign(b"m") == _reference(seed).sign(b"m")


def test_generated_key_round_trips_through_its_file(tmp_path: Path) -> None:
    """A key the agent creates is read back by cryptography as the same key."""
    key, created = KeyStore(tmp_path).ensure()
    assert created
    loaded = serialization.load_pem_private_key(
        KeyStore(tmp_path).active_path.read_bytes(), password=None
    )
    assert isinstance(loaded, Ed25519PrivateKey)
    assert loaded.sign(b"record") == key.sign(b"record")
    assert repr(key) == f"SigningKey(kid={key.kid})"
    assert isinstance(SigningKey.generate(), SigningKey)


def test_fallback_signs_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a usable libcrypto the package signs: same bytes (the fallback path)."""
    seed = secrets.token_bytes(32)
    expected = ed25519.sign(seed, b"abc")
    monkeypatch.setattr(ed25519, "_loaded", [None])
    assert ed25519.backend() == "cryptography"
    assert ed25519.sign(seed, b"abc") == expected
    assert ed25519.public_key(seed) == _reference(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
