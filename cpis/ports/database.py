"""The database as the use cases see it: one :class:`Transaction` holds every store
that must commit together, and :class:`Database` opens them.

An upload is applied in one transaction with its acknowledgement (SPEC §5). The
unscheduled lookup uses :meth:`Database.connection` instead: two statements, the
read of the plans and one write of the access event, its outbox rows and the
audit line, which is refused if the plans changed in between
(:mod:`cpis.services.lookup`, SPEC §3, §8).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from cpis.ports.access import AccessEventStore, AuditLog
from cpis.ports.plans import PlanStore
from cpis.ports.registry import Registry
from cpis.ports.uploads import UploadStore


class Transaction(PlanStore, AccessEventStore, UploadStore, AuditLog, Protocol):
    """One database transaction; everything done through it commits together."""


class Database(AuditLog, Registry, Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    def connection(self) -> AbstractAsyncContextManager[Transaction]:
        """The same operations, each statement committing on its own (fewer round trips)."""

    async def ping(self) -> bool: ...

    async def migrations_current(self) -> bool: ...
