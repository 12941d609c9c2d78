"""An LA's notifications (SPEC §5 web inbox; issue 3): what its staff see and
acknowledge, and the deliveries that could not be made, which the LA and the
operator see and the operator puts back in the queue.

Every call for an LA is scoped by its ODS code (the store's queries are), so
another LA's notification is indistinguishable from one that does not exist.
Attendances and NHS number changes (``nhs-number-inactive``, issue 4) are
listed and acknowledged alike, by notification id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from cpis.model.notifications import DeadDelivery, Inbox, InboxStatus
from cpis.ports.clock import Clock
from cpis.ports.notifications import InboxStore


async def inbox(store: InboxStore, *, la_ods: str, status: InboxStatus, limit: int) -> Inbox:
    """The LA's notifications with ``status``, newest first, at most ``limit`` of each kind
    (before ``acknowledged`` drops the ones not yet acknowledged)."""
    include_acknowledged = status != "new"
    attendances = await store.inbox(la_ods, include_acknowledged=include_acknowledged, limit=limit)
    changes = await store.nhs_number_changes(
        la_ods, include_acknowledged=include_acknowledged, limit=limit
    )
    if status == "acknowledged":
        attendances = [a for a in attendances if a.acknowledged_at is not None]
        changes = [c for c in changes if c.acknowledged_at is not None]
    return Inbox(status, tuple(attendances), tuple(changes))


async def acknowledge(
    store: InboxStore, clock: Clock, *, la_ods: str, ids: Sequence[uuid.UUID], by: str
) -> int:
    """Mark the LA's notifications ``ids`` acknowledged by ``by`` (a user id, or the
    client's when no user is known); how many were not acknowledged before."""
    return await store.acknowledge(la_ods, ids, by=by, now=clock.now())


async def failed_deliveries(store: InboxStore, *, la_ods: str | None) -> Sequence[DeadDelivery]:
    """Deliveries the dispatcher gave up on, for one LA, or (None: the operator) all."""
    return await store.dead_deliveries(la_ods)


async def retry(store: InboxStore, clock: Clock, *, delivery_id: int) -> bool:
    """Put a delivery that was given up on back in the queue, due now (``cpis
    notifications retry``); False if there is no such delivery given up on."""
    return await store.retry(delivery_id, now=clock.now())
