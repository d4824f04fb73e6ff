"""Device keys: names, fingerprints as a contract annex writes them, rotation files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge_agent.evidence.keys import (
    KeyFileError,
    KeyStore,
    format_fingerprint,
    load_public_pem,
    parse_fingerprint,
)


def test_first_start_creates_one_key_and_keeps_it(tmp_path: Path) -> None:
    """ensure() creates the key once (0600), then returns the same key."""
    store = KeyStore(tmp_path)
    key, created = store.ensure()
    again, created_again = store.ensure()
    assert created
    assert not created_again
    assert again.kid == key.kid
    assert stat.S_IMODE(store.active_path.stat().st_mode) == 0o600
    assert [k.kid for k in store.public_keys()] == [key.kid]


def test_fingerprint_formats_round_trip() -> None:
    """An annex may write the fingerprint grouped, with a prefix, or in upper case."""
    fp = "ab" * 32
    shown = format_fingerprint(fp)
    assert shown.startswith("SHA256:abab abab")
    assert parse_fingerprint(shown) == fp
    assert parse_fingerprint(fp.upper()) == fp
    assert parse_fingerprint(":".join(fp[i : i + 2] for i in range(0, 64, 2))) == fp
    assert parse_fingerprint("device.pem") is None
    assert parse_fingerprint("ab" * 31) is None


def test_public_pem_round_trip(tmp_path: Path) -> None:
    """Key show --pem output loads back as the same key."""
    key, _ = KeyStore(tmp_path).ensure()
    assert load_public_pem(key.public.pem().encode(), "x") == key.public.raw
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_pem(b"garbage", "annex.pem")


def test_rotation_waits_for_the_agent(tmp_path: Path) -> None:
    """prepare_rotation writes next.key (0600); a second one is refused until committed."""
    store = KeyStore(tmp_path)
    with pytest.raises(KeyFileError, match="no device key"):
        store.prepare_rotation()
    old, _ = store.ensure()
    new = store.prepare_rotation()
    assert stat.S_IMODE(store.pending_path.stat().st_mode) == 0o600
    with pytest.raises(KeyFileError, match="already waiting"):
        store.prepare_rotation()
    assert store.signer(old.kid) is not None
    assert store.signer(new.kid) is not None
    store.promote(new.kid)
    active = store.active()
    assert active is not None
    assert active.kid == new.kid
    assert store.pending() is None
    assert {k.kid for k in store.public_keys()} == {old.kid, new.kid}


def test_damaged_key_file_is_named(tmp_path: Path) -> None:
    """A damaged device.key is an error naming the file, never silently replaced."""
    store = KeyStore(tmp_path)
    store.ensure()
    store.active_path.write_text("-----BEGIN PRIVATE KEY-----\nnope\n")
    with pytest.raises(KeyFileError, match=r"device\.key"):
        store.active()
