"""An LA's FHIR Subscriptions (SPEC §5; Subscriptions R5 Backport IG 1.1.0, for R4):
created, read, searched, replaced, removed, their status, and their events replayed.

Every call is scoped to the LA's own ODS code (the store's queries are), so
another LA's subscription answers :class:`~cpis.errors.NotFound` exactly like
one that never existed. What is stored is the request: a new or replaced
subscription is ``requested``, and the dispatcher (``cpis.workers.dispatcher``)
does the rest (the handshake that makes it ``active`` or ``error``, heartbeats,
numbering and delivery). Removing one deletes it (FHIR's delete); a client that
wants to pause sets ``status: off`` instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from cpis.errors import NotFound
from cpis.model.notifications import NotificationEvent, Status, Subscription, SubscriptionRequest
from cpis.ports.notifications import SubscriptionStore

MAX_EVENTS_PER_CALL = 100
"""One ``$events`` answer carries at most this many events; a client pages on with
``eventsSinceNumber``. Keeps a replay of a busy subscription to a bounded body."""


async def create(
    store: SubscriptionStore,
    *,
    la_ods: str,
    client_id: str,
    topic: str,
    request: SubscriptionRequest,
    at: datetime,
) -> Subscription:
    """Store a new subscription for the LA, ``requested`` until its handshake."""
    return await store.create(
        la_ods=la_ods, client_id=client_id, topic=topic, request=request, at=at
    )


async def read(
    store: SubscriptionStore, *, la_ods: str, subscription_id: uuid.UUID
) -> Subscription:
    sub = await store.get(la_ods, subscription_id)
    if sub is None:
        raise NotFound("no such subscription")
    return sub


async def search(
    store: SubscriptionStore,
    *,
    la_ods: str,
    status: Status | None = None,
    endpoint: str | None = None,
) -> list[Subscription]:
    """The LA's subscriptions, by ``status`` and channel ``endpoint`` (exactly) when given."""
    subs = await store.search(la_ods, status=status)
    if endpoint is not None:
        subs = [s for s in subs if s.endpoint == endpoint]
    return subs


async def statuses(
    store: SubscriptionStore,
    *,
    la_ods: str,
    ids: Collection[uuid.UUID | None] = (),
    status: Collection[Status] = (),
) -> list[Subscription]:
    """The type-level ``$status``: the LA's subscriptions with one of ``ids`` (None
    stands for an id no subscription can have) and one of ``status``; an empty
    collection does not narrow."""
    subs = await store.search(la_ods)
    if ids:
        subs = [s for s in subs if s.id in ids]
    if status:
        subs = [s for s in subs if s.status in status]
    return subs


async def update(
    store: SubscriptionStore,
    *,
    la_ods: str,
    subscription_id: uuid.UUID,
    request: SubscriptionRequest,
    if_match: int | None,
    at: datetime,
) -> Subscription:
    """Replace a subscription (``If-Match`` honoured); it goes back to ``requested``.
    There is no update-as-create: ids are the server's to assign."""
    sub = await store.update(la_ods, subscription_id, request=request, if_match=if_match, at=at)
    if sub is None:
        raise NotFound("no such subscription")
    return sub


async def delete(
    store: SubscriptionStore, *, la_ods: str, subscription_id: uuid.UUID, if_match: int | None
) -> None:
    if not await store.delete(la_ods, subscription_id, if_match=if_match):
        raise NotFound("no such subscription")


async def events(
    store: SubscriptionStore,
    *,
    la_ods: str,
    subscription_id: uuid.UUID,
    since: int,
    until: int | None,
) -> Sequence[NotificationEvent]:
    """``$events``: the subscription's numbered events ``since``..``until``, oldest
    first, at most :data:`MAX_EVENTS_PER_CALL` of them."""
    return await store.events(
        la_ods, subscription_id, since=since, until=until, limit=MAX_EVENTS_PER_CALL
    )
