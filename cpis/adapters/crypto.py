"""Field encryption and keyed hashing for personal data at rest (SPEC §6).

A sealed value is a self-describing envelope, so keys can rotate without a
migration: the key id inside says which key opens it.

    version (1 byte, 0x01) | kid length (1 byte) | kid (ASCII) | nonce (12 bytes)
    | AES-256-GCM ciphertext and 16-byte tag

The associated data is the envelope header plus the column's ``purpose``
("nhs_number", "family_name", …), so a ciphertext copied into another column
or another key's envelope fails to open instead of showing the wrong field.

NHS numbers are found by :meth:`FieldVault.subject_key`, an HMAC-SHA256 under a
separate key: deterministic (so it can be indexed) but useless without the key
(the NHS number space is small enough that a plain hash is a lookup table).
Other values that must be found by equality without being readable (the person
index's blocking keys and row fingerprints) go through :meth:`FieldVault.blind`:
an HMAC-SHA256 under a key derived from the hash key and the purpose, so a
blind index made for one purpose never equals one made for another, nor a
subject key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cpis.adapters.keys import KeyMaterial
from cpis.errors import VaultError

_VERSION = 1
_NONCE_BYTES = 12
_TAG_BYTES = 16
_NHS_SEPARATORS = str.maketrans("", "", " -")


class FieldVault:
    """The :class:`cpis.ports.vault.Vault` over AES-256-GCM data keys and an HMAC hash key."""

    __slots__ = ("_active_header", "_active_kid", "_aeads", "_blind_keys", "_hash_key")

    def __init__(self, *, data_keys: Mapping[str, bytes], active_kid: str, hash_key: bytes) -> None:
        if active_kid not in data_keys:
            raise ValueError("active_kid names no data key")
        # One AESGCM per kid, built once: construction validates and copies the
        # key, which is measurable on a path taken for every field of every lookup.
        self._aeads: dict[bytes, AESGCM] = {}
        for kid, key in data_keys.items():
            kid_bytes = kid.encode("ascii")
            if not 0 < len(kid_bytes) < 256:
                raise ValueError("a data key id must be 1-255 ASCII characters")
            self._aeads[kid_bytes] = AESGCM(key)
        self._active_kid = active_kid.encode("ascii")
        self._active_header = bytes((_VERSION, len(self._active_kid))) + self._active_kid
        self._hash_key = hash_key
        self._blind_keys: dict[str, bytes] = {}

    @classmethod
    def from_keys(cls, keys: KeyMaterial) -> FieldVault:
        return cls(
            data_keys=keys.data_keys, active_kid=keys.active_data_kid, hash_key=keys.hash_key
        )

    def subject_key(self, nhs_number: str) -> bytes:
        """HMAC-SHA256 of the NHS number in its compact ten-digit form.

        Spaces and hyphens are dropped so "999 000 0018" and "9990000018" find
        the same rows; validity is the caller's job (matching.nhs_number).
        """
        normalised = nhs_number.strip().translate(_NHS_SEPARATORS)
        return hmac.digest(self._hash_key, normalised.encode("utf-8"), hashlib.sha256)

    def blind(self, purpose: str, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` under a key derived for ``purpose``.

        Deriving one key per purpose (rather than prefixing the message) keeps
        the per-value cost to a single ``hmac.digest`` call: a million-row
        person index load blinds several values per row.
        """
        key = self._blind_keys.get(purpose)
        if key is None:
            key = hmac.digest(
                self._hash_key, b"cpis-blind-index\x00" + purpose.encode("utf-8"), hashlib.sha256
            )
            self._blind_keys[purpose] = key
        return hmac.digest(key, value.encode("utf-8"), hashlib.sha256)

    def seal(self, purpose: str, value: str) -> bytes:
        """Encrypt ``value`` for the column ``purpose`` under the active key."""
        header = self._active_header
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aeads[self._active_kid].encrypt(
            nonce, value.encode("utf-8"), header + purpose.encode("utf-8")
        )
        return header + nonce + sealed

    def seal_many(self, purpose: str, values: Sequence[str | None]) -> list[bytes | None]:
        """:meth:`seal` for each of ``values`` (None stays None), for bulk writes.

        The same envelopes, each with its own random nonce; the nonces come
        from one ``os.urandom`` call, which is about a third of the cost of
        sealing a short value one at a time.
        """
        header = self._active_header
        aad = header + purpose.encode("utf-8")
        encrypt = self._aeads[self._active_kid].encrypt
        nonces = os.urandom(_NONCE_BYTES * len(values))
        sealed: list[bytes | None] = []
        for i, value in enumerate(values):
            if value is None:
                sealed.append(None)
                continue
            nonce = nonces[i * _NONCE_BYTES : (i + 1) * _NONCE_BYTES]
            sealed.append(header + nonce + encrypt(nonce, value.encode("utf-8"), aad))
        return sealed

    def open(self, purpose: str, sealed: bytes) -> str:
        """Decrypt a value from :meth:`seal`, with the key its envelope names."""
        if len(sealed) < 2 or sealed[0] != _VERSION:
            raise VaultError("sealed value has an unknown format")
        kid_end = 2 + sealed[1]
        nonce_end = kid_end + _NONCE_BYTES
        if len(sealed) < nonce_end + _TAG_BYTES:
            raise VaultError("sealed value is truncated")
        aead = self._aeads.get(bytes(sealed[2:kid_end]))
        if aead is None:
            raise VaultError("sealed value names an unknown data key")
        try:
            plain = aead.decrypt(
                sealed[kid_end:nonce_end],
                sealed[nonce_end:],
                bytes(sealed[:kid_end]) + purpose.encode("utf-8"),
            )
        except InvalidTag:
            raise VaultError("sealed value failed authentication") from None
        return plain.decode("utf-8")
