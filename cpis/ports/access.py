"""Access events (the 25 visits) and the security audit log (SPEC §3, §6).

An access event is one unscheduled view of a subject with a visible plan; the
audit log has a line for every request of any kind, is append-only, and is
sealed into a signed hash chain after commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from cpis.model import AccessEvent, Accessor, AuditEntry, Plan, StoredAccessEvent


class AccessEventStore(Protocol):
    """Access events and their outbox rows, inside one
    :class:`~cpis.ports.database.Transaction`."""

    async def record_access(
        self,
        nhs_number: str,
        accessor: Accessor,
        la_codes: Sequence[str],
        at: datetime,
        plan_ids: Mapping[str, Sequence[str]],
        audit: AuditEntry,
        based_on: Sequence[Plan],
    ) -> tuple[AccessEvent, tuple[str, ...]] | None:
        """Store one access event, one outbox row per LA not inside its repeat window,
        and the request's audit line, serialised with other lookups of the subject.

        ``based_on`` is every plan the caller read for the subject: if the stored
        plans are no longer exactly those (same ids and versions), nothing is
        written and None is returned, so the caller can read again.
        ``plan_ids`` maps each LA to its own plan ids, carried in the notification.
        Returns the event and the LA codes that were queued a notification.
        """

    async def access_history(
        self, nhs_number: str, limit: int, *, la_codes: Sequence[str] | None = None
    ) -> Sequence[StoredAccessEvent]:
        """The most recent non-repeat access events for the subject, newest first; with
        ``la_codes``, only those recorded while one of these LAs had a visible plan."""

    async def get_access_event(self, event_id: uuid.UUID) -> StoredAccessEvent | None: ...

    async def access_events_by_viewer(
        self, practitioner_role_id: uuid.UUID, limit: int
    ) -> Sequence[StoredAccessEvent]:
        """The most recent access events whose viewer has this PractitionerRole id."""


class AuditLog(Protocol):
    async def append_audit(self, entry: AuditEntry, at: datetime) -> None:
        """Add one line to the security audit log (the subject only as its keyed hash)."""


class AuditSealer(Protocol):
    async def seal_pending(self) -> int:
        """Seal what has become final into the signed chain; how many lines were sealed."""
