"""`cpis keys rotate`: new keys become active and old sealed values still open."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from cpis.adapters.crypto import FieldVault
from cpis.adapters.keys import load_keys
from cpis.cli import main
from cpis.settings import Settings


def _vault(data_dir: Path) -> FieldVault:
    return FieldVault.from_keys(load_keys(Settings(data_dir=data_dir), log=structlog.get_logger()))


def test_rotating_the_data_key_keeps_old_values_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After rotation new values use the new kid, and values sealed before still open."""
    monkeypatch.setenv("CPIS_DATA_DIR", str(tmp_path))
    before = _vault(tmp_path)
    sealed = before.seal("family_name", "Testchild")
    assert main(["keys", "rotate", "data"]) == 0
    assert "new active data key" in capsys.readouterr().out
    after = _vault(tmp_path)
    assert after.open("family_name", sealed) == "Testchild"
    assert after.seal("family_name", "x")[2:10] != sealed[2:10]


def test_rotating_the_signing_key_keeps_the_old_public_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The previous signing key stays published so tokens it signed still verify."""
    monkeypatch.setenv("CPIS_DATA_DIR", str(tmp_path))
    first = load_keys(Settings(data_dir=tmp_path), log=structlog.get_logger())
    assert main(["keys", "rotate", "signing"]) == 0
    second = load_keys(Settings(data_dir=tmp_path), log=structlog.get_logger())
    assert second.signing_key.private_numbers() != first.signing_key.private_numbers()
    assert first.signing_key.public_key() in second.previous_signing_keys


def test_keys_from_the_environment_are_not_rotated_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys the operator supplies through CPIS_KEYS_* are theirs to rotate."""
    monkeypatch.setenv("CPIS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CPIS_KEYS_DATA", "k1:" + "A" * 43 + "=")
    assert main(["keys", "rotate", "data"]) == 2
