"""Personal data at rest (SPEC §6): NHS numbers stored as a keyed hash plus ciphertext,
names and dates of birth sealed, keys rotatable. Adapters seal on the way in and
open on the way out, so callers only ever see plain domain values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Vault(Protocol):
    """Keyed hashing and field encryption for personal data at rest (SPEC §6)."""

    def subject_key(self, nhs_number: str) -> bytes:
        """The keyed hash under which a subject's rows are found."""

    def seal(self, purpose: str, value: str) -> bytes:
        """Encrypt ``value``; the key id travels inside the result."""

    def seal_many(self, purpose: str, values: Sequence[str | None]) -> list[bytes | None]:
        """:meth:`seal` for each value (None stays None), for bulk writes."""

    def open(self, purpose: str, sealed: bytes) -> str:
        """Decrypt what :meth:`seal` made, with whichever key id it names; raises
        :class:`cpis.errors.VaultError` when it cannot."""

    def blind(self, purpose: str, value: str) -> bytes:
        """A keyed hash of ``value`` for equality lookups (a "blind index").

        Deterministic, so it can be indexed; different for each ``purpose``, so
        a hash made for one column never matches another's (or a subject key).
        """
