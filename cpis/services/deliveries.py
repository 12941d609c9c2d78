"""Notifications that could not be delivered (SPEC §3: nothing is silently dropped):
deliveries the dispatcher gave up on, and an LA's Subscriptions its handshake or
deliveries left in ``error``; and a delivery put back in the queue.

An LA sees and retries only its own (the store's queries are scoped by its ODS
code, so another LA's delivery id is one that does not exist); the operator
(``cpis notifications failed|retry``) sees and retries every LA's.
"""

from __future__ import annotations

from collections.abc import Sequence

from cpis.model.la import LaActor
from cpis.model.notifications import DeadDelivery, Subscription
from cpis.ports.clock import Clock
from cpis.ports.notifications import InboxStore, SubscriptionStore


async def failed(store: InboxStore, *, la_ods: str | None) -> Sequence[DeadDelivery]:
    """Deliveries the dispatcher gave up on, for one LA, or (None: the operator) all."""
    return await store.dead_deliveries(la_ods)


async def failing_subscriptions(store: SubscriptionStore, *, actor: LaActor) -> list[Subscription]:
    """The LA's Subscriptions in ``error`` (a handshake or delivery failed): until one is
    put right (``PUT`` it again), notifications reach the LA by its inbox and MESH only."""
    return await store.search(actor.la_ods, status="error")


async def retry(
    store: InboxStore, clock: Clock, *, delivery_id: int, actor: LaActor | None
) -> bool:
    """Put a delivery that was given up on back in the queue, due now; False if there is
    no such delivery given up on (of the actor's LA; ``actor`` None is the operator)."""
    la_ods = None if actor is None else actor.la_ods
    return await store.retry(delivery_id, now=clock.now(), la_ods=la_ods)
