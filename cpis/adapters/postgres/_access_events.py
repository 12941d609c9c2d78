"""Access events: recorded with the lookup that made them (its outbox rows and audit
line in the same statement, ``record_lookup``), and read back as a child's history."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from cpis import rules
from cpis.adapters.ids import uuid7
from cpis.adapters.postgres._at_rest import (
    open_viewer,
    practitioner_role_id,
    seal_user_id,
    seal_viewer,
    user_key,
)
from cpis.adapters.postgres._connection import Session
from cpis.model import AccessEvent, Accessor, AuditEntry, Plan, SettingType, StoredAccessEvent
from cpis.ports.vault import Vault

_EVENT_COLUMNS = """
    id, nhs_sealed, occurred_at, client_id, org_ods, org_name, setting_type, viewer_sealed,
    user_verified, practitioner_role_id, trace_id, la_codes, is_repeat
"""


def access_event_from_row(r: asyncpg.Record, vault: Vault, *, id_column: str = "id") -> AccessEvent:
    """An access event from a row with access_event's columns (shared by the stores)."""
    viewer = open_viewer(vault, r["viewer_sealed"])
    return AccessEvent(
        id=r[id_column],
        nhs_number=vault.open("nhs_number", r["nhs_sealed"]),
        occurred_at=r["occurred_at"],
        accessor=Accessor(
            client_id=r["client_id"],
            org_ods=r["org_ods"],
            org_name=r["org_name"],
            setting_type=SettingType(r["setting_type"]),
            user_id=viewer.user_id,
            user_name=viewer.user_name,
            user_role=viewer.user_role,
            trace_id=r["trace_id"],
            role_code=viewer.role_code,
            role_profile_id=viewer.role_profile_id,
            user_verified=r["user_verified"],
            practitioner_role_id=r["practitioner_role_id"],
        ),
        la_codes=tuple(r["la_codes"]),
    )


class PgAccessEvents(Session):
    """The :class:`~cpis.ports.access.AccessEventStore` port over one connection."""

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
        event_id = uuid7()
        subject = self._subject(nhs_number)
        vault = self._vault
        accessor = dataclasses.replace(
            accessor, practitioner_role_id=practitioner_role_id(vault, accessor)
        )
        queued = await self._conn.fetchval(
            "SELECT record_lookup($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
            " $15, $16, $17, $18, $19, $20, $21, $22, $23)",
            subject,
            event_id,
            vault.seal("nhs_number", nhs_number),
            at,
            accessor.client_id,
            accessor.org_ods,
            accessor.org_name,
            accessor.setting_type.value,
            user_key(vault, accessor.user_id),
            seal_viewer(vault, accessor),
            accessor.user_verified,
            accessor.practitioner_role_id,
            accessor.trace_id,
            list(la_codes),
            {k: list(v) for k, v in plan_ids.items()},
            audit.action,
            audit.role,
            audit.resource,
            subject.hex(),
            audit.detail,
            seal_user_id(vault, accessor.user_id),
            sorted(f"{p.id}:{p.version}" for p in based_on),
            rules.REPEAT_VIEW_WINDOW,
        )
        if queued is None:
            return None
        event = AccessEvent(
            id=event_id,
            nhs_number=nhs_number,
            occurred_at=at,
            accessor=accessor,
            la_codes=tuple(la_codes),
        )
        return event, tuple(queued)

    def _event(self, r: asyncpg.Record) -> StoredAccessEvent:
        return StoredAccessEvent(event=access_event_from_row(r, self._vault), repeat=r["is_repeat"])

    async def access_history(
        self, nhs_number: str, limit: int, *, la_codes: Sequence[str] | None = None
    ) -> Sequence[StoredAccessEvent]:
        rows = await self._conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM access_event"  # noqa: S608
            " WHERE subject_key = $1 AND NOT is_repeat"
            " AND ($3::text[] IS NULL OR la_codes && $3)"
            " ORDER BY occurred_at DESC, id LIMIT $2",
            self._subject(nhs_number),
            limit,
            None if la_codes is None else list(la_codes),
        )
        return [self._event(r) for r in rows]

    async def get_access_event(self, event_id: uuid.UUID) -> StoredAccessEvent | None:
        r = await self._conn.fetchrow(
            f"SELECT {_EVENT_COLUMNS} FROM access_event WHERE id = $1",  # noqa: S608
            event_id,
        )
        return None if r is None else self._event(r)

    async def access_events_by_viewer(
        self, practitioner_role_id: uuid.UUID, limit: int
    ) -> Sequence[StoredAccessEvent]:
        rows = await self._conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM access_event"  # noqa: S608
            " WHERE practitioner_role_id = $1 ORDER BY occurred_at DESC LIMIT $2",
            practitioner_role_id,
            limit,
        )
        return [self._event(r) for r in rows]
