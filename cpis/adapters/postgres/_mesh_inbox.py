"""What the MESH upload poller (``cpis.workers.mesh_uploads``) needs from the database.

Its mailbox is :class:`cpis.adapters.mesh.MeshClient` itself (the ``Mailbox``
port, failing with :class:`cpis.errors.MeshError`). Here:

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

from cpis.adapters.postgres._connection import UNAVAILABLE, Deadline, borrow, pool_seconds
from cpis.errors import Unavailable


class PgMeshSenders:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def local_authorities(self, mailbox: str) -> frozenset[str]:
        try:
            async with borrow(self._pool) as conn:
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
        deadline = Deadline(pool_seconds(self._pool))
        try:
            async with borrow(self._pool, deadline=deadline) as conn, conn.transaction():
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", self._key
                )
                # The poll is as long as the mailbox makes it, and sends nothing on this
                # connection meanwhile; the commit that ends it has a deadline again.
                deadline.stop()
                try:
                    yield bool(got)
                finally:
                    deadline.allow_statements(1)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc
