"""Key material: generated once, reused, kept private, taken from settings, rotated."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from structlog.testing import capture_logs

from cpis.adapters.crypto import FieldVault
from cpis.adapters.keys import (
    KeyMaterial,
    audit_key_id,
    audit_public_pem,
    load_keys,
    parse_audit_public_keys,
    rotate_audit_key,
    rotate_data_key,
    rotate_signing_key,
)
from cpis.errors import SettingsError
from cpis.settings import Secret, Settings


def _load(settings: Settings) -> KeyMaterial:
    return load_keys(settings, log=structlog.get_logger())


def _pem(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_generates_and_logs_without_key_material(tmp_path: Path) -> None:
    """With no key settings, each kind is generated once and announced by kind and path only."""
    settings = Settings(data_dir=tmp_path)
    with capture_logs() as logs:
        keys = _load(settings)
    assert sorted(entry["kind"] for entry in logs) == ["audit", "data", "hash", "signing"]
    for entry in logs:
        assert entry["event"] == "keys_generated"
        assert entry["log_level"] == "warning"
        assert set(entry) == {"event", "log_level", "kind", "path"}
    assert len(keys.data_keys[keys.active_data_kid]) == 32
    assert len(keys.hash_key) >= 32
    assert keys.signing_key.curve.name == "secp256r1"
    assert keys.previous_signing_keys == ()
    assert isinstance(keys.audit_key, ed25519.Ed25519PrivateKey)
    assert keys.previous_audit_keys == ()


def test_second_start_reuses_the_keys(tmp_path: Path) -> None:
    """A restart finds the same keys, so data sealed before it still opens, and logs nothing."""
    settings = Settings(data_dir=tmp_path)
    first = _load(settings)
    with capture_logs() as logs:
        second = _load(settings)
    assert logs == []
    assert dict(second.data_keys) == dict(first.data_keys)
    assert second.active_data_kid == first.active_data_kid
    assert second.hash_key == first.hash_key
    assert second.hash_kid == first.hash_kid
    assert second.signing_key.private_numbers() == first.signing_key.private_numbers()
    assert second.audit_public_keys.keys() == first.audit_public_keys.keys()


def test_generated_files_are_private(tmp_path: Path) -> None:
    """The keys directory is 0700 and every key file 0600, whatever the umask."""
    settings = Settings(data_dir=tmp_path)
    _load(settings)
    assert _mode(settings.keys_dir) == 0o700
    files = sorted(p.name for p in settings.keys_dir.iterdir())
    assert files == ["audit.pem", "data.keys", "hash.key", "signing.pem"]
    for path in settings.keys_dir.iterdir():
        assert _mode(path) == 0o600


def test_repr_shows_no_key_material(tmp_path: Path) -> None:
    """Printing KeyMaterial (say in a traceback) shows ids, not keys."""
    keys = _load(Settings(data_dir=tmp_path))
    shown = repr(keys)
    assert keys.active_data_kid in shown
    assert base64.b64encode(keys.hash_key).decode() not in shown
    assert "data_keys" not in shown
    assert "signing_key=" not in shown
    assert "audit_key=" not in shown


def test_keys_from_settings_are_used_and_nothing_is_written(tmp_path: Path) -> None:
    """CPIS_KEYS_* values win; the keys directory is not created at all."""
    k1, k2, hkey = bytes(range(32)), bytes(range(1, 33)), b"\x07" * 40
    signing = ec.generate_private_key(ec.SECP256R1())
    pem_path = tmp_path / "signing.pem"
    pem_path.write_bytes(_pem(signing))
    audit = ed25519.Ed25519PrivateKey.generate()
    audit_path = tmp_path / "audit.pem"
    audit_path.write_bytes(_pem(audit))
    settings = Settings(
        data_dir=tmp_path / "data",
        keys_data=Secret(
            f"new:{base64.b64encode(k2).decode()},old:{base64.b64encode(k1).decode()}"
        ),
        keys_hash=Secret(base64.b64encode(hkey).decode()),
        keys_signing=Secret(str(pem_path)),
        keys_audit=Secret(str(audit_path)),
    )
    with capture_logs() as logs:
        keys = _load(settings)
    assert logs == []
    assert not settings.keys_dir.exists()
    assert keys.active_data_kid == "new"
    assert dict(keys.data_keys) == {"new": k2, "old": k1}
    assert keys.hash_key == hkey
    assert keys.signing_key.private_numbers() == signing.private_numbers()
    assert list(keys.audit_public_keys) == [audit_key_id(audit.public_key())]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("keys_data", "nokid", "kid:base64key"),
        ("keys_data", "k1:not base64!", "base64"),
        ("keys_data", "k1:" + base64.b64encode(b"short").decode(), "32 bytes"),
        (
            "keys_data",
            "a:"
            + base64.b64encode(bytes(32)).decode()
            + ",a:"
            + base64.b64encode(bytes(32)).decode(),
            "twice",
        ),
        ("keys_hash", base64.b64encode(b"short").decode(), "at least 32"),
    ],
)
def test_bad_key_settings_are_refused_without_echoing(
    tmp_path: Path, field: str, value: str, message: str
) -> None:
    """Malformed keys stop the start with a SettingsError naming the variable, not the value."""
    settings = Settings(data_dir=tmp_path, **{field: Secret(value)})  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=message) as caught:
        _load(settings)
    assert value not in str(caught.value)


def test_signing_key_must_be_p256(tmp_path: Path) -> None:
    """An RSA or P-384 signing key is refused: access tokens are ES256."""
    for key in (rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP384R1())):
        path = tmp_path / "k.pem"
        path.write_bytes(_pem(key))
        with pytest.raises(SettingsError, match="P-256"):
            _load(Settings(data_dir=tmp_path, keys_signing=Secret(str(path))))


def test_missing_signing_file_is_a_settings_error(tmp_path: Path) -> None:
    """A CPIS_KEYS_SIGNING path that does not exist fails clearly at start."""
    settings = Settings(data_dir=tmp_path, keys_signing=Secret(str(tmp_path / "nope.pem")))
    with pytest.raises(SettingsError, match="CPIS_KEYS_SIGNING"):
        _load(settings)


def test_rotate_data_key_keeps_old_keys_and_old_values(tmp_path: Path) -> None:
    """After rotation a new kid is active, the old key remains, and old values still open."""
    settings = Settings(data_dir=tmp_path)
    before = _load(settings)
    vault = FieldVault.from_keys(before)
    sealed = vault.seal("family_name", "Smith")

    kid = rotate_data_key(settings.keys_dir)
    after = _load(settings)
    assert after.active_data_kid == kid != before.active_data_kid
    assert after.data_keys[before.active_data_kid] == before.data_keys[before.active_data_kid]
    assert FieldVault.from_keys(after).open("family_name", sealed) == "Smith"
    assert _mode(settings.keys_dir / "data.keys") == 0o600


def test_rotate_signing_key_keeps_previous_public_keys(tmp_path: Path) -> None:
    """Rotation makes a new private key and keeps the old ones' public keys, newest first."""
    settings = Settings(data_dir=tmp_path)
    first = _load(settings)
    rotate_signing_key(settings.keys_dir)
    second = _load(settings)
    rotate_signing_key(settings.keys_dir)
    third = _load(settings)
    rotate_signing_key(settings.keys_dir, keep=2)
    fourth = _load(settings)

    def nums(key: ec.EllipticCurvePublicKey) -> object:
        return key.public_numbers()

    assert nums(second.previous_signing_keys[0]) == nums(first.signing_key.public_key())
    assert [nums(k) for k in third.previous_signing_keys] == [
        nums(second.signing_key.public_key()),
        nums(first.signing_key.public_key()),
    ]
    assert [nums(k) for k in fourth.previous_signing_keys] == [
        nums(third.signing_key.public_key()),
        nums(second.signing_key.public_key()),
    ]
    assert _mode(settings.keys_dir / "signing.pem") == 0o600


def test_audit_key_must_be_ed25519(tmp_path: Path) -> None:
    """A CPIS_KEYS_AUDIT that is not an Ed25519 key, or not there, stops the start."""
    path = tmp_path / "k.pem"
    path.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(SettingsError, match="Ed25519"):
        _load(Settings(data_dir=tmp_path, keys_audit=Secret(str(path))))
    with pytest.raises(SettingsError, match="CPIS_KEYS_AUDIT"):
        _load(Settings(data_dir=tmp_path, keys_audit=Secret(str(tmp_path / "nope.pem"))))


def test_rotate_audit_key_keeps_every_earlier_public_key(tmp_path: Path) -> None:
    """Seals never expire, so rotation keeps every earlier audit key's public part (none
    is dropped, unlike token signing keys) and names the new one by its key id; all of
    them are what an auditor is given to check with."""
    settings = Settings(data_dir=tmp_path)
    first = _load(settings)
    ids = [audit_key_id(first.audit_key.public_key())]
    for _ in range(3):
        ids.append(rotate_audit_key(settings.keys_dir))
    last = _load(settings)
    assert list(last.audit_public_keys) == ids[::-1]
    assert audit_key_id(last.audit_key.public_key()) == ids[-1]
    published = parse_audit_public_keys(audit_public_pem(last), source="test")
    assert [audit_key_id(k) for k in published] == ids[::-1]
    assert _mode(settings.keys_dir / "audit.pem") == 0o600
