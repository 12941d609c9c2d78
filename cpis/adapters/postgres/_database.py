"""The :class:`~cpis.ports.database.Database` port: a transaction (:class:`PgTransaction`)
is every store of one connection together; :class:`PgDatabase` opens them and
answers what needs no transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from cpis.adapters.postgres._access_events import PgAccessEvents
from cpis.adapters.postgres._audit_log import append_audit_line
from cpis.adapters.postgres._connection import UNAVAILABLE, Deadline, borrow, pool_seconds
from cpis.adapters.postgres._plan_bulk import PgBulkPlans
from cpis.adapters.postgres._plans import PgPlans
from cpis.adapters.postgres._reference import PgReference, PgRegistry
from cpis.adapters.postgres._schema import schema_files
from cpis.adapters.postgres._uploads import PgUploads
from cpis.errors import Unavailable
from cpis.model import AuditEntry

# One row: a database that cannot take it in this long is failing, and the request's
# answer (already decided) should not wait longer for it.
AUDIT_SECONDS = 2.0


class PgTransaction(PgPlans, PgBulkPlans, PgAccessEvents, PgUploads, PgReference):
    """The :class:`~cpis.ports.database.Transaction` port over one asyncpg connection."""

    async def append_audit(self, entry: AuditEntry, at: datetime) -> None:
        await append_audit_line(self._conn, self._vault, entry, at, self._subjects)


class PgDatabase(PgRegistry):
    """The :class:`~cpis.ports.database.Database` port over an asyncpg pool."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTransaction]:
        """A transaction on one connection, all of it within the pool's deadline
        (:func:`~cpis.adapters.postgres._connection.borrow`; an upload's gets longer
        once it takes the upload lock)."""
        deadline = Deadline(pool_seconds(self.pool))
        try:
            async with borrow(self.pool, deadline=deadline) as conn, conn.transaction():
                yield PgTransaction(conn, self._vault, deadline)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PgTransaction]:
        """Like :meth:`transaction`, but each statement commits on its own. A lookup's
        read and write are on one of these: both within one deadline."""
        try:
            async with borrow(self.pool) as conn:
                yield PgTransaction(conn, self._vault)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    async def append_audit(self, entry: AuditEntry, at: datetime) -> None:
        """One audit line on a connection of its own, given up on after
        :data:`AUDIT_SECONDS`: it is written after a request's answer is decided
        (a 503 when the database did not answer, too), and holds that answer."""
        try:
            within = min(AUDIT_SECONDS, pool_seconds(self.pool))
            async with borrow(self.pool, within=within) as conn:
                await append_audit_line(conn, self._vault, entry, at)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    async def ping(self) -> bool:
        try:
            await self._run("SELECT 1")
        except Unavailable:
            return False
        return True

    async def migrations_current(self) -> bool:
        try:
            rows = await self._run("SELECT version FROM schema_migration")
        except (Unavailable, asyncpg.exceptions.UndefinedTableError):
            return False
        return {r["version"] for r in rows} >= {v for v, _ in schema_files("migrations")}
