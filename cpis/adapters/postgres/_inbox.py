"""What people see of the outbox: an LA's inbox of notifications (attendances and NHS
number changes, acknowledged by its users) and the deliveries that failed for good."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from cpis.adapters.postgres._at_rest import open_viewer
from cpis.adapters.postgres._connection import UNAVAILABLE, borrow
from cpis.errors import Unavailable
from cpis.model import SettingType
from cpis.model.la import InboxChild, InboxCursor
from cpis.model.notifications import (
    Acknowledger,
    DeadDelivery,
    InboxAttendance,
    InboxNumberChange,
    InboxStatus,
)
from cpis.model.persons import NhsNumberChange
from cpis.ports.vault import Vault

# Who acknowledged a notification (issue 12): a signed-in LA person (their subject,
# name and role) or the LA's client system, as one JSON value sealed like every
# other staff identifier at rest. Values written before that were the bare id.
_ACKNOWLEDGED_BY = "acknowledged_by"

# Which attendance notifications each inbox filter lists, as a condition on an
# outbox row aliased {t}. Constants, never caller text.
_FILTERS: dict[str, str] = {
    "new": "{t}.acknowledged_at IS NULL",
    "acknowledged": "{t}.acknowledged_at IS NOT NULL",
    "all": "TRUE",
}

_ATTENDANCE_COLUMNS = """
    o.notification_id, o.plan_ids, o.created_at, o.acknowledged_at, o.acknowledged_by_sealed,
    e.id AS event_id, e.nhs_sealed, e.occurred_at, e.org_ods, e.org_name, e.setting_type,
    e.viewer_sealed, e.user_verified,
    (SELECT coalesce(array_agg(d.channel || ':' || d.state ORDER BY d.id), '{}') FROM delivery d
      WHERE d.notification_id = o.notification_id) AS deliveries
"""


def _page_query(status: str, *, cursor: bool) -> str:
    """The inbox page's one statement (see cpis/schema/migrations/0004_la_views.sql).

    ``heads`` walks the LA's attendances in the filter newest first, from the cursor
    when there is one (an index condition, so a deep page costs what the first
    does), keeping each child's newest only: a row with a newer one in the filter
    belongs to a child already listed. Then, per child, its newest attendances,
    how many it has in the filter, and its visits since ``$5`` this LA may see.
    """
    o, n, c = (_FILTERS[status].format(t=t) for t in ("o", "n", "c"))
    after = " AND (o.created_at, o.notification_id) < ($2::timestamptz, $3::uuid)"
    # The first page has no cursor; its parameters are still typed (a one-time filter).
    first = " AND $2::timestamptz IS NULL AND $3::uuid IS NULL"
    return f"""
WITH heads AS (
    SELECT o.subject_key, o.created_at, o.notification_id
    FROM outbox o
    WHERE o.la_ods = $1 AND o.kind = 'access' AND {o}{after if cursor else first}
      AND NOT EXISTS (
        SELECT 1 FROM outbox n
        WHERE n.la_ods = $1 AND n.subject_key = o.subject_key AND n.kind = 'access' AND {n}
          AND (n.created_at, n.notification_id) > (o.created_at, o.notification_id))
    ORDER BY o.created_at DESC, o.notification_id DESC
    LIMIT $4
)
SELECT h.created_at AS head_at, h.notification_id AS head_id,
    (SELECT count(*) FROM outbox c
      WHERE c.la_ods = $1 AND c.subject_key = h.subject_key AND c.kind = 'access' AND {c})
      AS in_filter,
    (SELECT count(*) FROM access_event v
      WHERE v.subject_key = h.subject_key AND NOT v.is_repeat AND v.occurred_at >= $5
        AND $1 = ANY (v.la_codes)) AS recent,
    a.*
FROM heads h CROSS JOIN LATERAL (
    SELECT {_ATTENDANCE_COLUMNS}
    FROM outbox o JOIN access_event e ON e.id = o.access_event_id
    WHERE o.la_ods = $1 AND o.subject_key = h.subject_key AND o.kind = 'access' AND {o}
    ORDER BY o.created_at DESC, o.notification_id DESC
    LIMIT $6
) a
ORDER BY h.created_at DESC, h.notification_id DESC, a.created_at DESC, a.notification_id DESC
"""  # noqa: S608 (no caller text: the filters are constants)


_PAGE_QUERIES = {
    (status, cursor): _page_query(status, cursor=cursor)
    for status in _FILTERS
    for cursor in (False, True)
}


def seal_acknowledger(vault: Vault, who: Acknowledger) -> bytes:
    doc = {"kind": who.kind, "id": who.id, "name": who.name, "role": who.role}
    return vault.seal(_ACKNOWLEDGED_BY, orjson.dumps(doc).decode())


def open_acknowledger(vault: Vault, sealed: bytes) -> Acknowledger:
    text = vault.open(_ACKNOWLEDGED_BY, sealed)
    if not text.startswith("{"):
        return Acknowledger("system", text)  # the bare id kept before issue 12
    doc = orjson.loads(text)
    return Acknowledger(doc["kind"], doc["id"], doc.get("name"), doc.get("role"))


class PgInbox:
    """The :class:`~cpis.ports.notifications.InboxStore` port over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, vault: Vault) -> None:
        self._pool = pool
        self._vault = vault

    async def inbox_page(
        self,
        la_ods: str,
        *,
        status: InboxStatus,
        after: InboxCursor | None,
        children: int,
        per_child: int,
        recent_since: datetime,
    ) -> Sequence[InboxChild]:
        rows = await self._fetch(
            _PAGE_QUERIES[(status, after is not None)],
            la_ods,
            None if after is None else after.at,
            None if after is None else after.notification_id,
            children,
            recent_since,
            per_child,
        )
        out: list[InboxChild] = []
        group: list[Any] = []
        for r in rows:
            if group and group[0]["head_id"] != r["head_id"]:
                out.append(self._child(group))
                group = []
            group.append(r)
        if group:
            out.append(self._child(group))
        return out

    def _child(self, rows: list[Any]) -> InboxChild:
        head = rows[0]
        nhs_number = self._vault.open("nhs_number", head["nhs_sealed"])
        attendances = tuple(self._attendance(r, nhs_number) for r in rows)
        return InboxChild(
            nhs_number=nhs_number,
            plan_ids=tuple(sorted({p for a in attendances for p in a.plan_ids})),
            attendances=attendances,
            count=head["in_filter"],
            recent_visits=head["recent"],
            cursor=InboxCursor(head["head_at"], head["head_id"]),
        )

    def _attendance(self, r: Any, nhs_number: str | None = None) -> InboxAttendance:
        viewer = open_viewer(self._vault, r["viewer_sealed"])
        return InboxAttendance(
            notification_id=r["notification_id"],
            access_event_id=r["event_id"],
            nhs_number=nhs_number or self._vault.open("nhs_number", r["nhs_sealed"]),
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

    async def child_notifications(
        self, la_ods: str, nhs_number: str, *, limit: int
    ) -> Sequence[InboxAttendance]:
        rows = await self._fetch(
            f"SELECT {_ATTENDANCE_COLUMNS}"  # noqa: S608
            " FROM outbox o JOIN access_event e ON e.id = o.access_event_id"
            " WHERE o.la_ods = $1 AND o.subject_key = $2 AND o.kind = 'access'"
            " ORDER BY o.created_at DESC, o.notification_id DESC LIMIT $3",
            la_ods,
            self._vault.subject_key(nhs_number),
            limit,
        )
        return [self._attendance(r, nhs_number) for r in rows]

    def _acknowledged_by(self, r: Any) -> Acknowledger | None:
        """Who acknowledged the notification of row ``r``, opened."""
        by = r["acknowledged_by_sealed"]
        return None if by is None else open_acknowledger(self._vault, by)

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
        self, la_ods: str, ids: Sequence[uuid.UUID], *, by: Acknowledger, now: datetime
    ) -> int:
        rows = await self._fetch(
            "UPDATE outbox SET acknowledged_at = $3, acknowledged_by_sealed = $4"
            " WHERE la_ods = $1 AND notification_id = ANY($2::uuid[])"
            " AND acknowledged_at IS NULL RETURNING 1",
            la_ods,
            list(ids),
            now,
            seal_acknowledger(self._vault, by),
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
            async with borrow(self._pool) as conn:
                return list(await conn.fetch(query, *args))
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc
