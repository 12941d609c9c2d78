"""Batch uploads (SPEC §5): where applied files and their acknowledgements are kept,
and the MESH inbox files also arrive through.

A file is applied in one transaction with its acknowledgement, per LA in
sequence order; the MESH worker (``cpis.workers.mesh_uploads``) takes files
from our own mailbox and answers each with the same acknowledgement the HTTP
API would give.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from cpis.model.la import UploadSummary
from cpis.model.uploads import Acknowledgement, MeshMessage


class UploadStore(Protocol):
    """Applied files, inside one :class:`~cpis.ports.database.Transaction`."""

    async def lock_uploads(self, la_ods: str) -> None:
        """Serialise uploads of one LA until commit (sequence numbers are per LA)."""

    async def upload_acknowledgement(self, la_ods: str, sequence: int) -> Acknowledgement | None:
        """The acknowledgement stored for that file, if it was applied before."""

    async def last_upload_sequence(self, la_ods: str) -> int | None: ...

    async def store_upload(
        self, la_ods: str, sequence: int, file_code: str, ack: Acknowledgement, at: datetime
    ) -> None:
        """Keep the acknowledgement of an applied file; any ``new_nhs_number`` is sealed."""

    async def list_uploads(
        self, la_ods: str, *, before: int | None, limit: int
    ) -> Sequence[UploadSummary]:
        """The LA's applied files, highest sequence first, below ``before`` when given."""


class Mailbox(Protocol):
    """Our own MESH mailbox. Every method raises :class:`cpis.errors.MeshError` on failure."""

    async def list_inbox(self) -> list[str]: ...

    async def read_message(self, message_id: str) -> MeshMessage: ...

    async def send_message(
        self,
        *,
        recipient: str,
        workflow_id: str,
        body: bytes,
        subject: str | None = None,
        local_id: str | None = None,
        filename: str | None = None,
        content_type: str = "application/json",
    ) -> str:
        """Post ``body`` to ``recipient``'s inbox; returns MESH's message id."""

    async def acknowledge(self, message_id: str) -> None:
        """Remove a message from our inbox."""


class Senders(Protocol):
    async def local_authorities(self, mailbox: str) -> frozenset[str]:
        """The ODS codes of the LAs registered to ``mailbox``; empty when none is."""


# Held for one poll; yields False when another replica is polling this mailbox now.
PollLock = Callable[[], AbstractAsyncContextManager[bool]]
