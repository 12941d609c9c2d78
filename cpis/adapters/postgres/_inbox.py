"""What people see of the outbox: an LA's inbox of notifications (attendances and NHS
number changes, acknowledged by its users) and the deliveries that failed for good."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from cpis.adapters.postgres._at_rest import open_viewer
from cpis.adapters.postgres._connection import UNAVAILABLE
from cpis.errors import Unavailable
from cpis.model import SettingType
from cpis.model.notifications import DeadDelivery, InboxAttendance, InboxNumberChange
from cpis.model.persons import NhsNumberChange
from cpis.ports.vault import Vault

# Who acknowledged a notification: an LA user's id (or their system's client
# id), sealed like every other staff identifier at rest.
_ACKNOWLEDGED_BY = "acknowledged_by"


class PgInbox:
    """The :class:`~cpis.ports.notifications.InboxStore` port over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, vault: Vault) -> None:
        self._pool = pool
        self._vault = vault

    async def inbox(
        self, la_ods: str, *, include_acknowledged: bool, limit: int
    ) -> Sequence[InboxAttendance]:
        rows = await self._fetch(
            "SELECT o.notification_id, o.plan_ids, o.created_at, o.acknowledged_at,"
            " o.acknowledged_by_sealed, e.id AS event_id, e.nhs_sealed, e.occurred_at, e.org_ods,"
            " e.org_name, e.setting_type, e.viewer_sealed, e.user_verified,"
            " e.practitioner_role_id,"
            " (SELECT coalesce(array_agg(d.channel || ':' || d.state), '{}') FROM delivery d"
            "   WHERE d.notification_id = o.notification_id) AS deliveries"
            " FROM outbox o JOIN access_event e ON e.id = o.access_event_id"
            " WHERE o.la_ods = $1 AND ($2 OR o.acknowledged_at IS NULL)"
            " ORDER BY o.created_at DESC LIMIT $3",
            la_ods,
            include_acknowledged,
            limit,
        )
        out = []
        for r in rows:
            viewer = open_viewer(self._vault, r["viewer_sealed"])
            out.append(
                InboxAttendance(
                    notification_id=r["notification_id"],
                    access_event_id=r["event_id"],
                    nhs_number=self._vault.open("nhs_number", r["nhs_sealed"]),
                    plan_ids=tuple(r["plan_ids"]),
                    occurred_at=r["occurred_at"],
                    org_ods=r["org_ods"],
                    org_name=r["org_name"],
                    setting_type=SettingType(r["setting_type"]),
                    user_name=viewer.user_name,
                    user_role=viewer.user_role,
                    role_code=viewer.role_code,
                    role_profile_id=viewer.role_profile_id,
                    user_verified=r["user_verified"],
                    acknowledged_at=r["acknowledged_at"],
                    acknowledged_by=self._acknowledged_by(r),
                    deliveries=tuple(r["deliveries"]),
                )
            )
        return out

    def _acknowledged_by(self, r: Any) -> str | None:
        """Who acknowledged the notification of row ``r``, opened."""
        by = r["acknowledged_by_sealed"]
        return None if by is None else self._vault.open(_ACKNOWLEDGED_BY, by)

    async def nhs_number_changes(
        self, la_ods: str, *, include_acknowledged: bool, limit: int
    ) -> Sequence[InboxNumberChange]:
        """The LA's ``nhs-number-inactive`` notifications, newest first, numbers opened."""
        rows = await self._fetch(
            "SELECT o.notification_id, o.kind, o.plan_ids, o.created_at, o.acknowledged_at,"
            " o.acknowledged_by_sealed, o.old_nhs_sealed, o.new_nhs_sealed,"
            " (SELECT coalesce(array_agg(d.channel || ':' || d.state), '{}') FROM delivery d"
            "   WHERE d.notification_id = o.notification_id) AS deliveries"
            " FROM outbox o"
            " WHERE o.la_ods = $1 AND o.kind = 'nhs-number-inactive'"
            " AND ($2 OR o.acknowledged_at IS NULL)"
            " ORDER BY o.created_at DESC, o.notification_id LIMIT $3",
            la_ods,
            include_acknowledged,
            limit,
        )
        return [
            InboxNumberChange(
                notification_id=r["notification_id"],
                kind=r["kind"],
                change=self._change(r),
                plan_ids=tuple(r["plan_ids"]),
                noted_at=r["created_at"],
                acknowledged_at=r["acknowledged_at"],
                acknowledged_by=self._acknowledged_by(r),
                deliveries=tuple(r["deliveries"]),
            )
            for r in rows
        ]

    async def acknowledge(
        self, la_ods: str, ids: Sequence[uuid.UUID], *, by: str, now: datetime
    ) -> int:
        rows = await self._fetch(
            "UPDATE outbox SET acknowledged_at = $3, acknowledged_by_sealed = $4"
            " WHERE la_ods = $1 AND notification_id = ANY($2::uuid[])"
            " AND acknowledged_at IS NULL RETURNING 1",
            la_ods,
            list(ids),
            now,
            self._vault.seal(_ACKNOWLEDGED_BY, by),
        )
        return len(rows)

    async def dead_deliveries(self, la_ods: str | None) -> Sequence[DeadDelivery]:
        rows = await self._fetch(
            "SELECT id, notification_id, la_ods, channel, target, attempts, created_at,"
            " last_error FROM delivery WHERE state = 'dead' AND ($1::text IS NULL OR la_ods = $1)"
            " ORDER BY id",
            la_ods,
        )
        return [
            DeadDelivery(
                id=r["id"],
                notification_id=r["notification_id"],
                la_ods=r["la_ods"],
                channel=r["channel"],
                target=r["target"],
                attempts=r["attempts"],
                created_at=r["created_at"],
                last_error=r["last_error"],
            )
            for r in rows
        ]

    def _change(self, r: Any) -> NhsNumberChange:
        new = r["new_nhs_sealed"]
        return NhsNumberChange(
            old_nhs_number=self._vault.open("nhs_number", r["old_nhs_sealed"]),
            new_nhs_number=None if new is None else self._vault.open("nhs_number", new),
        )

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        try:
            async with self._pool.acquire(timeout=5) as conn:
                return list(await conn.fetch(query, *args))
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc
