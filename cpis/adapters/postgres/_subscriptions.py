"""LA Subscriptions and their numbered events in PostgreSQL (tables ``subscription``, ``delivery``).

Every query that a route makes is scoped by the caller's LA ODS code in its
``WHERE`` clause, so a subscription id of another LA is indistinguishable
from one that does not exist (404), whatever the route forgets.

``$events`` replays from the durable log: ``delivery`` rows of the
subscription's rest-hook channel (``target`` = subscription id, numbered by
``event_number``), joined to the outbox row (notification id, plan ids) and,
while retention has not removed it, the access event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from cpis.adapters.postgres._access_events import access_event_from_row
from cpis.adapters.postgres._at_rest import open_text, seal_text
from cpis.adapters.postgres._connection import UNAVAILABLE, borrow
from cpis.errors import Unavailable, VersionMismatch
from cpis.model import AccessEvent
from cpis.model.notifications import NotificationEvent, Status, Subscription, SubscriptionRequest
from cpis.model.persons import NhsNumberChange
from cpis.ports.vault import Vault

# channel.header values often carry the LA's bearer secret for its endpoint:
# sealed at rest like personal data, so a database dump does not give them away.
_HEADER_PURPOSE = "subscription_header"

_COLUMNS = """
    id, la_ods, client_id, status, topic, reason, endpoint, headers, payload,
    heartbeat_seconds, timeout_seconds, end_at, events_since_start, last_sent_at,
    error, version, created_at, updated_at
"""


def subscription_from_row(r: asyncpg.Record, vault: Vault) -> Subscription:
    """A subscription from a row with the ``subscription`` table's columns (shared with
    the outbox store), its channel headers opened."""
    return Subscription(
        id=r["id"],
        la_ods=r["la_ods"],
        client_id=r["client_id"],
        status=r["status"],
        topic=r["topic"],
        reason=r["reason"],
        endpoint=r["endpoint"],
        headers=tuple(open_text(vault, _HEADER_PURPOSE, h) for h in r["headers"]),
        payload=r["payload"],
        heartbeat_seconds=r["heartbeat_seconds"],
        timeout_seconds=r["timeout_seconds"],
        end_at=r["end_at"],
        events_since_start=r["events_since_start"],
        last_sent_at=r["last_sent_at"],
        error=r["error"],
        version=r["version"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


class PgSubscriptionStore:
    """The :class:`~cpis.ports.notifications.SubscriptionStore` port over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, vault: Vault) -> None:
        self._pool = pool
        self._vault = vault

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        try:
            async with borrow(self._pool) as conn:
                return list(await conn.fetch(query, *args))
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    async def create(
        self,
        *,
        la_ods: str,
        client_id: str,
        topic: str,
        request: SubscriptionRequest,
        at: datetime,
    ) -> Subscription:
        rows = await self._fetch(
            "INSERT INTO subscription (id, la_ods, client_id, status, topic, reason, endpoint,"  # noqa: S608
            " headers, payload, heartbeat_seconds, timeout_seconds, end_at, created_at,"
            " updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)"
            f" RETURNING {_COLUMNS}",
            uuid.uuid4(),
            la_ods,
            client_id,
            request.status,
            topic,
            request.reason,
            request.endpoint,
            [seal_text(self._vault, _HEADER_PURPOSE, h) for h in request.headers],
            request.payload,
            request.heartbeat_seconds,
            request.timeout_seconds,
            request.end_at,
            at,
        )
        return subscription_from_row(rows[0], self._vault)

    async def get(self, la_ods: str, subscription_id: uuid.UUID) -> Subscription | None:
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM subscription WHERE id = $1 AND la_ods = $2",  # noqa: S608
            subscription_id,
            la_ods,
        )
        return subscription_from_row(rows[0], self._vault) if rows else None

    async def search(self, la_ods: str, *, status: Status | None = None) -> list[Subscription]:
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM subscription"  # noqa: S608
            " WHERE la_ods = $1 AND ($2::text IS NULL OR status = $2)"
            " ORDER BY created_at, id",
            la_ods,
            status,
        )
        return [subscription_from_row(r, self._vault) for r in rows]

    async def update(
        self,
        la_ods: str,
        subscription_id: uuid.UUID,
        *,
        request: SubscriptionRequest,
        if_match: int | None,
        at: datetime,
    ) -> Subscription | None:
        """Replace what the LA controls; None if there is no such subscription of this LA.

        The event count survives (numbering continues); the error is cleared
        because a replaced subscription goes back to ``requested`` for a new
        handshake (or ``off``, if that is what was asked).
        Raises :class:`VersionMismatch` when ``if_match`` is not the version.
        """
        rows = await self._fetch(
            "UPDATE subscription SET status = $4, reason = $5, endpoint = $6, headers = $7,"  # noqa: S608
            " payload = $8, heartbeat_seconds = $9, timeout_seconds = $10, end_at = $11,"
            " error = NULL, version = version + 1, updated_at = $12"
            " WHERE id = $1 AND la_ods = $2 AND ($3::integer IS NULL OR version = $3)"
            f" RETURNING {_COLUMNS}",
            subscription_id,
            la_ods,
            if_match,
            request.status,
            request.reason,
            request.endpoint,
            [seal_text(self._vault, _HEADER_PURPOSE, h) for h in request.headers],
            request.payload,
            request.heartbeat_seconds,
            request.timeout_seconds,
            request.end_at,
            at,
        )
        if rows:
            return subscription_from_row(rows[0], self._vault)
        if if_match is not None and await self.get(la_ods, subscription_id) is not None:
            raise VersionMismatch("If-Match does not match the current version")
        return None

    async def delete(
        self, la_ods: str, subscription_id: uuid.UUID, *, if_match: int | None
    ) -> bool:
        """Remove the subscription and its undelivered deliveries; False if there is none.

        Delivered and dead delivery rows stay as the record of what was sent;
        the notifications themselves stay in the outbox (the LA's web inbox).
        Raises :class:`VersionMismatch` when ``if_match`` is not the version.
        """
        try:
            async with borrow(self._pool) as conn, conn.transaction():
                deleted = await conn.fetchval(
                    "DELETE FROM subscription WHERE id = $1 AND la_ods = $2"
                    " AND ($3::integer IS NULL OR version = $3) RETURNING id",
                    subscription_id,
                    la_ods,
                    if_match,
                )
                if deleted is None:
                    exists = await conn.fetchval(
                        "SELECT 1 FROM subscription WHERE id = $1 AND la_ods = $2",
                        subscription_id,
                        la_ods,
                    )
                    if exists and if_match is not None:
                        raise VersionMismatch("If-Match does not match the current version")
                    return False
                await conn.execute(
                    "DELETE FROM delivery WHERE channel = 'rest-hook' AND target = $1"
                    " AND state = 'pending'",
                    str(subscription_id),
                )
                return True
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    async def events(
        self,
        la_ods: str,
        subscription_id: uuid.UUID,
        *,
        since: int,
        until: int | None,
        limit: int,
    ) -> Sequence[NotificationEvent]:
        """Numbered events ``since``..``until`` (inclusive), oldest first, at most ``limit``."""
        rows = await self._fetch(
            "SELECT d.event_number, o.notification_id, o.created_at, o.plan_ids,"
            " a.id AS event_id, a.nhs_sealed, a.occurred_at, a.client_id, a.org_ods,"
            " a.org_name, a.setting_type, a.viewer_sealed, a.user_verified,"
            " a.practitioner_role_id, a.trace_id, a.la_codes,"
            " o.old_nhs_sealed, o.new_nhs_sealed"
            " FROM delivery d"
            " JOIN outbox o ON o.notification_id = d.notification_id"
            " LEFT JOIN access_event a ON a.id = o.access_event_id"
            " WHERE d.channel = 'rest-hook' AND d.target = $1 AND d.la_ods = $2"
            " AND d.event_number IS NOT NULL AND d.event_number >= $3"
            " AND ($4::bigint IS NULL OR d.event_number <= $4)"
            " ORDER BY d.event_number LIMIT $5",
            str(subscription_id),
            la_ods,
            since,
            until,
            limit,
        )
        return [self._event(r) for r in rows]

    def _event(self, r: asyncpg.Record) -> NotificationEvent:
        access: AccessEvent | None = None
        if r["event_id"] is not None:
            access = access_event_from_row(r, self._vault, id_column="event_id")
        change: NhsNumberChange | None = None
        if r["old_nhs_sealed"] is not None:
            new = r["new_nhs_sealed"]
            change = NhsNumberChange(
                self._vault.open("nhs_number", r["old_nhs_sealed"]),
                None if new is None else self._vault.open("nhs_number", new),
            )
        return NotificationEvent(
            number=r["event_number"],
            notification_id=r["notification_id"],
            occurred_at=r["created_at"],
            access_event=access,
            plan_ids=tuple(r["plan_ids"]),
            nhs_number_change=change,
        )
