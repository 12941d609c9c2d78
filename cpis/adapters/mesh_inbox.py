"""What the MESH upload poller (``cpis.workers.mesh_uploads``) needs from the outside.

- :class:`MeshInbox`: our MESH mailbox, with :class:`~cpis.adapters.mesh.MeshError`
  translated into the worker's :class:`~cpis.workers.mesh_uploads.MailboxError`;
- :class:`PgMeshSenders`: which LAs a sending mailbox is registered to (``la_mesh``,
  set by ``cpis la mesh``);
- :class:`PgPollLock`: one replica polls a mailbox at a time, so two replicas
  do not both answer the same file (applying twice is already impossible:
  the per-LA upload lock and the sequence rule see to that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from cpis.adapters.mesh import MeshClient, MeshError
from cpis.adapters.postgres import UNAVAILABLE
from cpis.errors import Unavailable
from cpis.model.uploads import MeshMessage
from cpis.workers.mesh_uploads import MailboxError


def _failed(exc: MeshError) -> MailboxError:
    # MeshError's text names the operation and status, never a body or subject.
    return MailboxError(exc.reason, retryable=exc.retryable)


class MeshInbox:
    def __init__(self, client: MeshClient) -> None:
        self._client = client

    async def list_inbox(self) -> list[str]:
        try:
            return await self._client.list_inbox()
        except MeshError as exc:
            raise _failed(exc) from None

    async def read_message(self, message_id: str) -> MeshMessage:
        try:
            return await self._client.read_message(message_id)
        except MeshError as exc:
            raise _failed(exc) from None

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
        try:
            return await self._client.send_message(
                recipient=recipient,
                workflow_id=workflow_id,
                body=body,
                subject=subject,
                local_id=local_id,
                filename=filename,
                content_type=content_type,
            )
        except MeshError as exc:
            raise _failed(exc) from None

    async def acknowledge(self, message_id: str) -> None:
        try:
            await self._client.acknowledge(message_id)
        except MeshError as exc:
            raise _failed(exc) from None

    async def close(self) -> None:
        await self._client.close()


class PgMeshSenders:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def local_authorities(self, mailbox: str) -> frozenset[str]:
        try:
            async with self._pool.acquire(timeout=5) as conn:
                rows = await conn.fetch(
                    "SELECT la_ods FROM la_mesh WHERE upper(mailbox) = upper($1)", mailbox
                )
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc
        return frozenset(str(r["la_ods"]) for r in rows)


class PgPollLock:
    """A transaction-scoped advisory lock per mailbox, held for one poll.

    The transaction does nothing but hold the lock (no snapshot is kept in
    READ COMMITTED), and ends, releasing it, if the replica dies.
    """

    def __init__(self, pool: asyncpg.Pool, mailbox: str) -> None:
        self._pool = pool
        self._key = f"mesh-inbox:{mailbox.upper()}"

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[bool]:
        try:
            async with self._pool.acquire(timeout=5) as conn, conn.transaction():
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", self._key
                )
                yield bool(got)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc
