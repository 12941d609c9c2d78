"""The notification outbox and its deliveries, in PostgreSQL (issue 3).

Two stages, both safe with any number of replicas:

- **fan-out**: pending outbox rows become one delivery per channel the LA
  has (each active rest-hook Subscription, its MESH mailbox). One replica at
  a time does this (a transaction advisory lock), in outbox order, so each
  subscription's events-since-subscription-start numbers follow that order.
- **delivery**: a worker claims the oldest pending delivery of a target
  (``FOR UPDATE SKIP LOCKED``), delivers it with the row lock held, and
  records the outcome in the same transaction. A later delivery of the same
  target is not claimable while an earlier one is pending, which keeps
  per-LA order and means no two workers deliver one row at once. If the
  process dies mid-delivery the lock goes with its connection and the row is
  delivered again (at least once; receivers de-duplicate by notification id).

Outbox rows are of two kinds: ``access`` (an attendance, joined to its access
event) and ``nhs-number-inactive`` (the person index retired or superseded an
NHS number the LA holds plans for; queued by :class:`PgIndexCheckStore` and
carrying the old and new numbers sealed). Both fan out and deliver the same
way; the renderer shapes each.

An outbox row keeps no staff data in clear (issue 9): the viewer is compared
for the LA's repeat window by ``user_key``, a keyed hash, and read from the
access event's sealed viewer; who acknowledged a notification is sealed too.

The LA's inbox, what people see of these rows, is :class:`PgInbox`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from cpis.adapters.postgres._access_events import access_event_from_row
from cpis.adapters.postgres._connection import UNAVAILABLE, Deadline, borrow, pool_seconds
from cpis.adapters.postgres._inbox import PgInbox
from cpis.adapters.postgres._subscriptions import subscription_from_row
from cpis.errors import Unavailable
from cpis.model.notifications import Delivery, Subscription

_FAN_OUT_LOCK = 7_201_843_553


# The oldest pending delivery of each target (a loose index scan over the
# pending index: one probe per target, however long the backlog), then the
# first of those that is due and not locked by another worker. Scanning every
# pending row instead made each claim slower as a backlog grew, so a backlog
# never drained (bench/notify).
_CLAIM = """
WITH RECURSIVE targets AS (
    (SELECT target FROM delivery WHERE state = 'pending' ORDER BY target LIMIT 1)
    UNION ALL
    SELECT (SELECT d.target FROM delivery d
            WHERE d.state = 'pending' AND d.target > t.target ORDER BY d.target LIMIT 1)
    FROM targets t WHERE t.target IS NOT NULL
), heads AS (
    SELECT (SELECT d.id FROM delivery d
            WHERE d.state = 'pending' AND d.target = t.target ORDER BY d.id LIMIT 1) AS id
    FROM targets t WHERE t.target IS NOT NULL
)
SELECT d.id, d.notification_id, d.la_ods, d.channel, d.target, d.event_number, d.attempts,
       d.created_at
FROM delivery d JOIN heads h ON h.id = d.id
WHERE d.state = 'pending' AND d.next_attempt_at <= $1
ORDER BY d.next_attempt_at, d.id
LIMIT 1
FOR UPDATE OF d SKIP LOCKED
"""


class PgOutboxStore(PgInbox):
    """The :class:`~cpis.ports.notifications.DeliveryStore` port, and operators' retry and
    queue stats, over an asyncpg pool; the LA's inbox it feeds is :class:`PgInbox`'s."""

    async def fan_out(self, *, now: datetime, limit: int = 500) -> int:
        """Turn pending outbox rows into deliveries; how many rows were fanned out."""
        try:
            return await self._fan_out(now=now, limit=limit)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    async def _fan_out(self, *, now: datetime, limit: int) -> int:
        async with borrow(self._pool) as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _FAN_OUT_LOCK):
                return 0
            rows = await conn.fetch(
                "SELECT notification_id, la_ods FROM outbox WHERE state = 'pending'"
                " ORDER BY created_at, notification_id LIMIT $1 FOR UPDATE",
                limit,
            )
            for row in rows:
                await conn.execute(
                    "WITH subs AS ("
                    "  UPDATE subscription SET events_since_start = events_since_start + 1"
                    "  WHERE la_ods = $2 AND status = 'active' AND (end_at IS NULL OR end_at > $3)"
                    "  RETURNING id, events_since_start)"
                    " INSERT INTO delivery (notification_id, la_ods, channel, target, event_number,"
                    "   next_attempt_at, created_at)"
                    " SELECT $1::uuid, $2::text, 'rest-hook', subs.id::text,"
                    "   subs.events_since_start, $3::timestamptz, $3::timestamptz"
                    " FROM subs"
                    " UNION ALL"
                    " SELECT $1::uuid, $2::text, 'mesh', m.mailbox, NULL::bigint, $3::timestamptz,"
                    "   $3::timestamptz FROM la_mesh m"
                    " WHERE m.la_ods = $2"
                    " ON CONFLICT DO NOTHING",
                    row["notification_id"],
                    row["la_ods"],
                    now,
                )
            if rows:
                await conn.execute(
                    "UPDATE outbox SET state = 'fanned' WHERE notification_id = ANY($1::uuid[])",
                    [r["notification_id"] for r in rows],
                )
            return len(rows)

    @asynccontextmanager
    async def claim(self, *, now: datetime) -> AsyncIterator[Claim | None]:
        """The next deliverable row, locked until the block ends (None when idle).

        The caller delivers inside the block and records the outcome through
        the :class:`Claim`, in the same transaction as the lock.
        """
        deadline = Deadline(pool_seconds(self._pool))
        try:
            async with borrow(self._pool, deadline=deadline) as conn, conn.transaction():
                row = await conn.fetchrow(_CLAIM, now)
                delivery = None if row is None else await self._load(conn, row)
                # The delivery takes as long as the LA's endpoint (up to the timeout it
                # chose) and sends nothing on this connection meanwhile: no deadline
                # until the outcome is recorded, and then one for that and the commit.
                deadline.stop()
                try:
                    yield None if delivery is None else Claim(conn, delivery, deadline)
                finally:
                    deadline.allow_statements(1)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    async def _load(self, conn: Any, row: Any) -> Delivery:
        details = await conn.fetchrow(
            "SELECT o.plan_ids, o.kind, o.old_nhs_sealed, o.new_nhs_sealed,"
            " o.created_at AS noted_at, e.id, e.nhs_sealed, e.occurred_at, e.client_id,"
            " e.org_ods, e.org_name, e.setting_type, e.viewer_sealed, e.user_verified,"
            " e.practitioner_role_id, e.trace_id, e.la_codes"
            " FROM outbox o LEFT JOIN access_event e ON e.id = o.access_event_id"
            " WHERE o.notification_id = $1",
            row["notification_id"],
        )
        event = None
        if details is not None and details["id"] is not None:
            event = access_event_from_row(details, self._vault)
        change = None
        if details is not None and details["old_nhs_sealed"] is not None:
            change = self._change(details)
        subscription = None
        workflow_id = None
        if row["channel"] == "mesh":
            workflow_id = await conn.fetchval(
                "SELECT workflow_id FROM la_mesh WHERE la_ods = $1", row["la_ods"]
            )
        if row["channel"] == "rest-hook":
            sub = await conn.fetchrow(
                "SELECT * FROM subscription WHERE id::text = $1", row["target"]
            )
            subscription = None if sub is None else subscription_from_row(sub, self._vault)
        return Delivery(
            id=row["id"],
            notification_id=row["notification_id"],
            la_ods=row["la_ods"],
            channel=row["channel"],
            target=row["target"],
            event_number=row["event_number"],
            attempts=row["attempts"],
            created_at=row["created_at"],
            plan_ids=tuple(details["plan_ids"]) if details is not None else (),
            event=event,
            subscription=subscription,
            mesh_workflow_id=workflow_id,
            kind=details["kind"] if details is not None else "access",
            nhs_number_change=change,
            noted_at=details["noted_at"] if details is not None else None,
        )

    # --- subscriptions' handshakes and heartbeats -------------------------------

    async def subscriptions_needing(self, *, now: datetime) -> list[Subscription]:
        """Subscriptions awaiting a handshake, or due a heartbeat."""
        rows = await self._fetch(
            "SELECT * FROM subscription WHERE status = 'requested'"
            " OR (status = 'active' AND heartbeat_seconds IS NOT NULL"
            "     AND coalesce(last_sent_at, created_at)"
            "         < $1::timestamptz - make_interval(secs => heartbeat_seconds))",
            now,
        )
        return [subscription_from_row(r, self._vault) for r in rows]

    async def expire_subscriptions(self, *, now: datetime) -> int:
        """Subscriptions past their ``end`` are switched off (FHIR: status off)."""
        rows = await self._fetch(
            "UPDATE subscription SET status = 'off', updated_at = $1, version = version + 1"
            " WHERE end_at <= $1 AND status <> 'off' RETURNING 1",
            now,
        )
        return len(rows)

    async def set_subscription_status(
        self, sub_id: uuid.UUID, status: str, *, error: str | None, now: datetime
    ) -> None:
        await self._fetch(
            "UPDATE subscription SET status = $2, error = $3, updated_at = $4,"
            " last_sent_at = CASE WHEN $2 = 'active' THEN $4 ELSE last_sent_at END,"
            " version = version + 1 WHERE id = $1",
            sub_id,
            status,
            error,
            now,
        )

    async def heartbeat_sent(self, sub_id: uuid.UUID, *, now: datetime) -> None:
        await self._fetch("UPDATE subscription SET last_sent_at = $2 WHERE id = $1", sub_id, now)

    # --- operators and the LA inbox ------------------------------------------

    async def retry(self, delivery_id: int, *, now: datetime, la_ods: str | None = None) -> bool:
        rows = await self._fetch(
            "UPDATE delivery SET state = 'pending', next_attempt_at = $2, attempts = 0"
            " WHERE id = $1 AND state = 'dead' AND ($3::text IS NULL OR la_ods = $3)"
            " RETURNING id",
            delivery_id,
            now,
            la_ods,
        )
        return bool(rows)

    async def stats(self, *, now: datetime) -> dict[str, float]:
        rows = await self._fetch(
            "SELECT"
            " (SELECT count(*) FROM outbox WHERE state = 'pending') AS outbox_pending,"
            " (SELECT count(*) FROM delivery WHERE state = 'pending') AS deliveries_pending,"
            " (SELECT count(*) FROM delivery WHERE state = 'dead') AS deliveries_dead,"
            " (SELECT extract(epoch FROM $1 - min(created_at)) FROM delivery"
            "   WHERE state = 'pending') AS oldest_pending_seconds",
            now,
        )
        r = rows[0]
        return {k: float(r[k] or 0) for k in r.keys()}  # noqa: SIM118 - asyncpg Record


class Claim:
    """A delivery locked for this worker, and how to record what happened to it."""

    def __init__(self, conn: Any, delivery: Delivery, deadline: Deadline | None = None) -> None:
        self._conn = conn
        self.delivery = delivery
        self._deadline = deadline

    def _recording(self) -> None:
        # The delivery is over; what records it is held to a deadline again.
        if self._deadline is not None:
            self._deadline.allow_statements(1)

    async def delivered(self, *, now: datetime) -> None:
        self._recording()
        delivery = self.delivery
        await self._conn.execute(
            "UPDATE delivery SET state = 'delivered', delivered_at = $2, attempts = attempts + 1,"
            " last_error = NULL WHERE id = $1",
            delivery.id,
            now,
        )
        if delivery.channel == "rest-hook":
            await self._conn.execute(
                "UPDATE subscription SET last_sent_at = $2 WHERE id::text = $1",
                delivery.target,
                now,
            )

    async def failed(self, *, error: str, retry_at: datetime | None) -> None:
        """Record a failed attempt; ``retry_at`` None means give up (dead)."""
        self._recording()
        delivery = self.delivery
        await self._conn.execute(
            "UPDATE delivery SET attempts = attempts + 1, last_error = $2,"
            " state = CASE WHEN $3::timestamptz IS NULL THEN 'dead' ELSE 'pending' END,"
            " next_attempt_at = coalesce($3, next_attempt_at) WHERE id = $1",
            delivery.id,
            error[:500],
            retry_at,
        )


def backoff(attempts: int, *, base: float = 5.0, cap: float = 3600.0) -> timedelta:
    """Exponential backoff before attempt ``attempts + 1`` (jitter is the caller's)."""
    return timedelta(seconds=min(cap, base * 2 ** min(attempts, 20)))
