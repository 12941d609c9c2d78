"""FieldVault: AES-256-GCM field sealing and the keyed NHS number hash."""

from __future__ import annotations

import secrets

import pytest

from cpis.adapters.crypto import FieldVault
from cpis.errors import CpisError, VaultError

NHS = "9990000018"


def _vault(
    keys: dict[str, bytes] | None = None, active: str = "k1", hash_key: bytes | None = None
) -> FieldVault:
    return FieldVault(
        data_keys=keys or {"k1": bytes(32)},
        active_kid=active,
        hash_key=hash_key if hash_key is not None else b"h" * 32,
    )


def test_seal_open_round_trip() -> None:
    """What seal() makes, open() gives back, including non-ASCII names."""
    vault = _vault()
    for value in ("Smith", "O'Brien-Ní Dhomhnaill", "", NHS):
        assert vault.open("family_name", vault.seal("family_name", value)) == value


def test_sealed_value_hides_plaintext_and_is_randomised() -> None:
    """The ciphertext does not contain the value, and sealing twice gives different bytes."""
    vault = _vault()
    a, b = vault.seal("nhs_number", NHS), vault.seal("nhs_number", NHS)
    assert a != b
    assert NHS.encode() not in a


def test_envelope_names_its_key() -> None:
    """The envelope is version 1, then the kid, so any replica can pick the key."""
    sealed = _vault().seal("given_name", "Alex")
    assert sealed[0] == 1
    assert sealed[1] == 2
    assert sealed[2:4] == b"k1"


def test_purpose_is_bound_as_associated_data() -> None:
    """A value sealed for one column will not open as another column."""
    vault = _vault()
    sealed = vault.seal("family_name", "Smith")
    with pytest.raises(VaultError):
        vault.open("given_name", sealed)


@pytest.mark.parametrize("position", [0, 1, 4, 10, -1, -20])
def test_tamper_is_detected(position: int) -> None:
    """Flipping any byte (header, nonce, ciphertext or tag) makes open() fail."""
    vault = _vault()
    sealed = bytearray(vault.seal("family_name", "Smith"))
    sealed[position] ^= 0x01
    with pytest.raises(VaultError):
        vault.open("family_name", bytes(sealed))


@pytest.mark.parametrize("sealed", [b"", b"\x01", b"\x01\x02k1", b"\x01\x02k1" + bytes(27)])
def test_truncated_values_are_refused(sealed: bytes) -> None:
    """Short or empty input is a VaultError, not an IndexError."""
    with pytest.raises(VaultError):
        _vault().open("family_name", sealed)


def test_unknown_kid_is_refused_without_plaintext_in_message() -> None:
    """A value from a key we do not hold fails clearly, and the error never shows the value."""
    other = _vault({"k9": secrets.token_bytes(32)}, active="k9")
    sealed = other.seal("family_name", "Smith")
    with pytest.raises(VaultError) as caught:
        _vault().open("family_name", sealed)
    assert "Smith" not in str(caught.value)
    assert isinstance(caught.value, CpisError)


def test_rotation_keeps_old_values_readable() -> None:
    """After a new active key, old values still open and new ones use the new kid."""
    old_key, new_key = secrets.token_bytes(32), secrets.token_bytes(32)
    before = _vault({"k1": old_key}, active="k1")
    old_sealed = before.seal("family_name", "Smith")

    after = _vault({"k2": new_key, "k1": old_key}, active="k2")
    new_sealed = after.seal("family_name", "Jones")
    assert after.open("family_name", old_sealed) == "Smith"
    assert after.open("family_name", new_sealed) == "Jones"
    assert new_sealed[2:4] == b"k2"
    with pytest.raises(VaultError):
        before.open("family_name", new_sealed)


def test_subject_key_is_deterministic_and_normalised() -> None:
    """The lookup hash is 32 bytes, stable, and ignores the spaces people type."""
    vault = _vault()
    key = vault.subject_key(NHS)
    assert len(key) == 32
    assert key == vault.subject_key(NHS)
    assert key == vault.subject_key("999 000 0018")
    assert key == _vault(keys={"k2": bytes(32)}, active="k2").subject_key(NHS)
    assert key != vault.subject_key("9990000026")


def test_subject_key_depends_on_the_hash_key() -> None:
    """Without the hash key the lookup hashes cannot be recomputed from NHS numbers."""
    assert _vault(hash_key=b"a" * 32).subject_key(NHS) != _vault(hash_key=b"b" * 32).subject_key(
        NHS
    )


def test_active_kid_must_name_a_key() -> None:
    """A misconfigured active kid fails at construction, not at the first write."""
    with pytest.raises(ValueError):
        _vault({"k1": bytes(32)}, active="k2")


def test_seal_many_makes_the_same_envelopes_with_fresh_nonces() -> None:
    """Bulk sealing: each value opens under its purpose, None stays None, and no two
    sealed values share a nonce (they come from one random draw, sliced)."""
    vault = _vault()
    values = [NHS, None, NHS, "Ní Dhomhnaill", ""]
    sealed = vault.seal_many("nhs_number", values)
    assert sealed[1] is None
    opened = [None if s is None else vault.open("nhs_number", s) for s in sealed]
    assert opened == values
    present = [s for s in sealed if s is not None]
    assert len({bytes(s) for s in present}) == len(present)
    with pytest.raises(CpisError):
        vault.open("family_name", present[0])
    assert vault.seal_many("nhs_number", []) == []
