"""Key material: where it comes from, how it is generated, and how it rotates.

Four kinds of key, each from its ``CPIS_KEYS_*`` setting when given, otherwise
from a file under ``settings.keys_dir`` that the first start generates (and
every later start reuses):

=========  ==========================  =============================================
kind       setting / file              format
=========  ==========================  =============================================
data       ``keys_data`` / data.keys   ``kid:base64key`` entries split by commas or
                                       newlines; the first is active (encrypts),
                                       the rest only decrypt what they once sealed
hash       ``keys_hash`` / hash.key    base64 of at least 32 bytes (HMAC-SHA256 key
                                       for NHS number lookups; never rotated
                                       without re-hashing every row)
signing    ``keys_signing`` (a path)   PEM: one EC P-256 ``PRIVATE KEY`` (active,
           / signing.pem               signs access tokens) then any number of
                                       ``PUBLIC KEY`` blocks (previous keys: still
                                       published, so tokens they signed verify)
audit      ``keys_audit`` (a path)     PEM: one Ed25519 ``PRIVATE KEY`` (active,
           / audit.pem                 signs the security audit log's seals) then
                                       the ``PUBLIC KEY`` of every earlier one (kept
                                       for good: old seals must still verify)
=========  ==========================  =============================================

The audit key exists so that the audit log's integrity does not rest on the
database alone (issue 9): the database holds the seals and their signatures
but never this key, so a database superuser who rewrites lines cannot make
seals that verify (``cpis.adapters.audit_log``). Every replica that seals needs
it; its public part, named by :func:`audit_key_id`, is all ``cpis audit verify``
needs.

Rotation (operator runbook): run :func:`rotate_data_key`,
:func:`rotate_signing_key` or :func:`rotate_audit_key` against the keys
directory, then restart the replicas one by one. Old ciphertexts carry their kid and still open; old
access tokens verify against the previous public keys until they expire. Keys
given through the environment are rotated the same way by hand: prepend a new
``kid:key`` to ``CPIS_KEYS_DATA``; put a new private key first in the PEM file
and keep the old one's public key after it (for the audit key, keep every old
public key: seals never expire). While replicas roll, one still
on the old data keys cannot open values sealed under the new kid (a VaultError,
500) and one on the old signing key rejects the new tokens, so keep the roll
short or stop writes for it.

Generated files are mode 0600 in a 0700 directory and are written to a
temporary name first and linked into place, so two replicas starting together
on one data directory agree on one key instead of each writing its own.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cpis.errors import MissingKeys, SettingsError
from cpis.settings import Settings

DATA_KEYS_FILE = "data.keys"
HASH_KEY_FILE = "hash.key"
SIGNING_KEY_FILE = "signing.pem"
AUDIT_KEY_FILE = "audit.pem"

_DATA_KEY_BYTES = 32
_MIN_HASH_KEY_BYTES = 32
# A kid travels inside every sealed value (one length byte), so keep it short
# and free of the separators the text format uses.
_KID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PEM_BLOCK_RE = re.compile(rb"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)


class _Log(Protocol):
    def warning(self, event: str, **kw: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """Every key the service holds, loaded once at start and passed to the adapters.

    Secret fields are left out of ``repr`` so a traceback or a debug print of
    the settings graph never shows them.
    """

    data_keys: Mapping[str, bytes] = field(repr=False)
    active_data_kid: str
    hash_key: bytes = field(repr=False)
    hash_kid: str
    signing_key: ec.EllipticCurvePrivateKey = field(repr=False)
    audit_key: ed25519.Ed25519PrivateKey = field(repr=False)
    previous_signing_keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    previous_audit_keys: tuple[ed25519.Ed25519PublicKey, ...] = ()

    def __post_init__(self) -> None:
        if self.active_data_kid not in self.data_keys:
            raise SettingsError("the active data key id has no key")

    @property
    def audit_public_keys(self) -> dict[str, ed25519.Ed25519PublicKey]:
        """Every audit key that may have signed a seal, by key id (the active one first)."""
        keys = (self.audit_key.public_key(), *self.previous_audit_keys)
        return {audit_key_id(k): k for k in keys}


def missing_key_files(settings: Settings) -> list[Path]:
    """The key files a start would need to read but that are not there (kinds given
    through ``CPIS_KEYS_*`` need none)."""
    wanted = [
        (settings.keys_data, DATA_KEYS_FILE),
        (settings.keys_hash, HASH_KEY_FILE),
        (settings.keys_signing, SIGNING_KEY_FILE),
        (settings.keys_audit, AUDIT_KEY_FILE),
    ]
    return [
        settings.keys_dir / name
        for given, name in wanted
        if given is None and not (settings.keys_dir / name).exists()
    ]


def load_keys(settings: Settings, *, log: _Log, create: bool = True) -> KeyMaterial:
    """Load each kind of key from its setting, or from the keys directory; with ``create``
    a missing file is generated, without it :class:`MissingKeys` is raised (only a start
    that may set up a new service makes keys: never an admin command, which would
    otherwise seal data with keys the service does not have)."""
    keys_dir = settings.keys_dir

    def read_or_create(path: Path, make: Callable[[], str], *, kind: str) -> str:
        return _read_or_create(path, make, kind=kind, log=log, create=create)

    if settings.keys_data is not None:
        data_keys, active = parse_data_keys(settings.keys_data.reveal(), source="CPIS_KEYS_DATA")
    else:
        path = keys_dir / DATA_KEYS_FILE
        text = read_or_create(path, lambda: _format_data_key(new_kid()), kind="data")
        data_keys, active = parse_data_keys(text, source=str(path))

    if settings.keys_hash is not None:
        hash_key = _parse_hash_key(settings.keys_hash.reveal(), source="CPIS_KEYS_HASH")
    else:
        path = keys_dir / HASH_KEY_FILE
        text = read_or_create(
            path, lambda: _b64(secrets.token_bytes(_DATA_KEY_BYTES)) + "\n", kind="hash"
        )
        hash_key = _parse_hash_key(text, source=str(path))

    if settings.keys_signing is not None:
        path = Path(settings.keys_signing.reveal())
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise SettingsError(f"CPIS_KEYS_SIGNING: cannot read {path}: {exc.strerror}") from None
        signing, previous = parse_signing_pem(pem, source="CPIS_KEYS_SIGNING")
    else:
        path = keys_dir / SIGNING_KEY_FILE
        text = read_or_create(path, lambda: _new_signing_pem().decode(), kind="signing")
        signing, previous = parse_signing_pem(text.encode(), source=str(path))

    if settings.keys_audit is not None:
        path = Path(settings.keys_audit.reveal())
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise SettingsError(f"CPIS_KEYS_AUDIT: cannot read {path}: {exc.strerror}") from None
        audit, previous_audit = parse_audit_pem(pem, source="CPIS_KEYS_AUDIT")
    else:
        path = keys_dir / AUDIT_KEY_FILE
        text = read_or_create(path, lambda: _new_audit_pem().decode(), kind="audit")
        audit, previous_audit = parse_audit_pem(text.encode(), source=str(path))

    return KeyMaterial(
        data_keys=data_keys,
        active_data_kid=active,
        hash_key=hash_key,
        hash_kid=hash_key_id(hash_key),
        signing_key=signing,
        audit_key=audit,
        previous_signing_keys=previous,
        previous_audit_keys=previous_audit,
    )


def rotate_data_key(keys_dir: Path) -> str:
    """Make a new active data key in ``keys_dir``, keeping the old ones; returns its kid.

    Old keys stay because values sealed with them are opened by the kid in
    their envelope; re-encrypting old rows is a separate, optional job.
    """
    path = keys_dir / DATA_KEYS_FILE
    old = path.read_text(encoding="ascii") if path.exists() else ""
    if old:
        existing, _ = parse_data_keys(old, source=str(path))
    else:
        existing = {}
    kid = new_kid()
    while kid in existing:  # pragma: no cover - 2**32 space, but a clash would lose a key
        kid = new_kid()
    lines = [_format_data_key(kid).strip()] + [f"{k}:{_b64(v)}" for k, v in existing.items()]
    _replace(path, "\n".join(lines) + "\n")
    return kid


def rotate_signing_key(keys_dir: Path, *, keep: int = 2) -> None:
    """Make a new active signing key; keep the newest ``keep`` previous public keys.

    Previous keys are kept as public keys only: they must still verify (and
    be published for) tokens issued before the rotation, but nothing should
    sign with them again. ``keep`` public keys are far more than one token
    lifetime needs; older ones are dropped.
    """
    path = keys_dir / SIGNING_KEY_FILE
    blocks: list[bytes] = []
    if path.exists():
        current, previous = parse_signing_pem(path.read_bytes(), source=str(path))
        for pub in (current.public_key(), *previous)[:keep]:
            blocks.append(
                pub.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
    _replace(path, b"".join([_new_signing_pem(), *blocks]).decode())


def rotate_audit_key(keys_dir: Path) -> str:
    """Make a new active audit key, keeping every earlier one's public key; returns its id.

    Unlike token signing keys, none is ever dropped: a seal made years ago
    must still verify with the key that signed it.
    """
    path = keys_dir / AUDIT_KEY_FILE
    blocks: list[bytes] = []
    if path.exists():
        current, previous = parse_audit_pem(path.read_bytes(), source=str(path))
        for pub in (current.public_key(), *previous):
            blocks.append(
                pub.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
    new = _new_audit_pem()
    _replace(path, b"".join([new, *blocks]).decode())
    active, _ = parse_audit_pem(new, source=str(path))
    return audit_key_id(active.public_key())


def parse_audit_pem(
    pem: bytes, *, source: str
) -> tuple[ed25519.Ed25519PrivateKey, tuple[ed25519.Ed25519PublicKey, ...]]:
    """Parse one Ed25519 private key followed by the earlier keys' public PEM blocks."""
    blocks = [m.group(0) for m in _PEM_BLOCK_RE.finditer(pem)]
    if not blocks:
        raise SettingsError(f"{source}: no PEM private key")
    try:
        private = serialization.load_pem_private_key(blocks[0], password=None)
    except (ValueError, TypeError):
        raise SettingsError(f"{source}: not an unencrypted PEM key") from None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise SettingsError(f"{source}: the audit key must be an Ed25519 private key")
    return private, parse_audit_public_keys(b"".join(blocks[1:]), source=source)


def parse_audit_public_keys(pem: bytes, *, source: str) -> tuple[ed25519.Ed25519PublicKey, ...]:
    """Ed25519 public keys from PEM ``PUBLIC KEY`` blocks (``cpis audit verify --public-key``)."""
    keys: list[ed25519.Ed25519PublicKey] = []
    for match in _PEM_BLOCK_RE.finditer(pem):
        try:
            pub = serialization.load_pem_public_key(match.group(0))
        except (ValueError, TypeError):
            raise SettingsError(f"{source}: not a PEM public key") from None
        if not isinstance(pub, ed25519.Ed25519PublicKey):
            raise SettingsError(f"{source}: audit keys must be Ed25519 public keys")
        keys.append(pub)
    return tuple(keys)


def audit_key_id(key: ed25519.Ed25519PublicKey) -> str:
    """The id a seal names its signing key by: a fingerprint of the public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(b"cpis audit key id\x00" + raw).hexdigest()[:16]


def audit_public_pem(keys: KeyMaterial) -> bytes:
    """Every audit public key as PEM, active first: what an auditor verifies with."""
    pubs = (keys.audit_key.public_key(), *keys.previous_audit_keys)
    return b"".join(
        k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        for k in pubs
    )


def parse_data_keys(text: str, *, source: str) -> tuple[dict[str, bytes], str]:
    """Parse ``kid:base64key`` entries (commas or newlines); returns (keys, active kid)."""
    keys: dict[str, bytes] = {}
    active: str | None = None
    for entry in re.split(r"[,\n]", text):
        entry = entry.strip()
        if not entry:
            continue
        kid, sep, encoded = entry.partition(":")
        kid = kid.strip()
        if not sep or not _KID_RE.match(kid):
            raise SettingsError(f"{source}: each data key must be kid:base64key")
        key = _unb64(encoded, source=source)
        if len(key) != _DATA_KEY_BYTES:
            raise SettingsError(f"{source}: data key {kid} must be 32 bytes")
        if kid in keys:
            raise SettingsError(f"{source}: data key id {kid} appears twice")
        keys[kid] = key
        active = active or kid
    if active is None:
        raise SettingsError(f"{source}: no data key")
    return keys, active


def parse_signing_pem(
    pem: bytes, *, source: str
) -> tuple[ec.EllipticCurvePrivateKey, tuple[ec.EllipticCurvePublicKey, ...]]:
    """Parse one P-256 private key followed by the previous keys' public PEM blocks."""
    blocks = [m.group(0) for m in _PEM_BLOCK_RE.finditer(pem)]
    if not blocks:
        raise SettingsError(f"{source}: no PEM private key")
    try:
        private = serialization.load_pem_private_key(blocks[0], password=None)
        publics = [serialization.load_pem_public_key(b) for b in blocks[1:]]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SettingsError(f"{source}: not an unencrypted PEM key") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise SettingsError(f"{source}: the signing key must be an EC P-256 private key")
    previous: list[ec.EllipticCurvePublicKey] = []
    for pub in publics:
        if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
            raise SettingsError(f"{source}: previous signing keys must be EC P-256 public keys")
        previous.append(pub)
    return private, tuple(previous)


def hash_key_id(hash_key: bytes) -> str:
    """A short, non-secret fingerprint naming the hash key.

    Stored next to subject hashes so that a wrong CPIS_KEYS_HASH shows up as a
    clear mismatch at start instead of as every lookup silently finding nothing.
    """
    return hashlib.sha256(b"cpis hash key id\x00" + hash_key).hexdigest()[:12]


def data_key_id(data_key: bytes) -> str:
    """A short, non-secret fingerprint of a data key (kept in the database so that a
    process holding other keys under the same kid is refused at start)."""
    return hashlib.sha256(b"cpis data key id\x00" + data_key).hexdigest()[:12]


def new_kid() -> str:
    """A fresh data key id: short (it is stored in every sealed value) and unguessable enough."""
    return secrets.token_hex(4)


def _format_data_key(kid: str) -> str:
    return f"{kid}:{_b64(secrets.token_bytes(_DATA_KEY_BYTES))}\n"


def _parse_hash_key(text: str, *, source: str) -> bytes:
    key = _unb64(text, source=source)
    if len(key) < _MIN_HASH_KEY_BYTES:
        raise SettingsError(f"{source}: the hash key must be at least 32 bytes")
    return key


def _new_signing_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _new_audit_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, *, source: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{source}: not valid base64") from None


def _ensure_dir(path: Path) -> None:
    # Only tighten a directory we made: an operator's mount may be read-only
    # or deliberately shared with a sidecar.
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)


def _write_temp(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _read(path: Path) -> str:
    """A key file's text; unreadable or not text is a SettingsError naming the file."""
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not a key file (it is not ASCII text)") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read it: {exc.strerror or exc}") from None


def _read_or_create(
    path: Path, make: Callable[[], str], *, kind: str, log: _Log, create: bool = True
) -> str:
    """Read ``path``; if missing, write ``make()`` there exactly once (first writer wins)."""
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    if not create:
        raise MissingKeys(f"no {kind} key: {path} does not exist")
    _ensure_dir(path.parent)
    tmp = _write_temp(path, make())
    try:
        # link() fails if another process created the file meanwhile, unlike
        # rename(); then we use theirs so both processes share one key.
        os.link(tmp, path)
    except FileExistsError:
        pass
    else:
        log.warning("keys_generated", kind=kind, path=str(path))
    finally:
        tmp.unlink()
    return _read(path)


def _replace(path: Path, text: str) -> None:
    _ensure_dir(path.parent)
    tmp = _write_temp(path, text)
    os.replace(tmp, path)
