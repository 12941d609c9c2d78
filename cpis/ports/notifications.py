"""Notifications to LAs (SPEC §5, issue 3): the durable outbox and its channels, the
LA's web inbox, and its FHIR Subscriptions.

Every query a store makes for an LA is scoped by that LA's ODS code, so another
LA's notification or subscription is indistinguishable from one that does not
exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from cpis.model.la import InboxChild, InboxCursor
from cpis.model.notifications import (
    Acknowledger,
    ControlKind,
    DeadDelivery,
    Delivery,
    InboxAttendance,
    InboxNumberChange,
    InboxStatus,
    NotificationEvent,
    Status,
    Subscription,
    SubscriptionRequest,
)

# --- the outbox, as the dispatcher (cpis.workers.dispatcher) works it -----------------


class ClaimedDelivery(Protocol):
    """A delivery locked for one worker until it says what happened to it."""

    @property
    def delivery(self) -> Delivery: ...

    async def delivered(self, *, now: datetime) -> None: ...

    async def failed(self, *, error: str, retry_at: datetime | None) -> None:
        """Record a failed attempt; ``retry_at`` None means give up (dead)."""


class DeliveryStore(Protocol):
    async def fan_out(self, *, now: datetime, limit: int = 500) -> int:
        """Turn pending outbox rows into one delivery per channel; how many rows."""

    def claim(self, *, now: datetime) -> AbstractAsyncContextManager[ClaimedDelivery | None]:
        """The next due delivery, locked while the block runs (None when idle)."""

    async def subscriptions_needing(self, *, now: datetime) -> Sequence[Subscription]:
        """Subscriptions awaiting a handshake, or due a heartbeat."""

    async def expire_subscriptions(self, *, now: datetime) -> int:
        """Switch off subscriptions past their ``end``; how many."""

    async def set_subscription_status(
        self, sub_id: uuid.UUID, status: Status, *, error: str | None, now: datetime
    ) -> None: ...

    async def heartbeat_sent(self, sub_id: uuid.UUID, *, now: datetime) -> None: ...


# A channel: send(delivery) for event notifications; send_control(subscription, kind)
# for handshakes and heartbeats. Both raise cpis.errors.DeliveryFailed.
SendDelivery = Callable[[Delivery], Awaitable[None]]
SendControl = Callable[[Subscription, ControlKind], Awaitable[None]]


# --- the LA's web inbox -----------------------------------------------------------------


class InboxStore(Protocol):
    """An LA's notifications as its staff see them; every call is scoped to ``la_ods``."""

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
        """At most ``children`` children with attendance notifications in ``status``, by
        their newest one, newest first, starting after ``after``; each with its newest
        ``per_child`` attendances in ``status`` and its visits since ``recent_since``."""

    async def child_notifications(
        self, la_ods: str, nhs_number: str, *, limit: int
    ) -> Sequence[InboxAttendance]:
        """The LA's attendance notifications about one child, newest first."""

    async def nhs_number_changes(
        self, la_ods: str, *, include_acknowledged: bool, limit: int
    ) -> Sequence[InboxNumberChange]:
        """The LA's ``nhs-number-inactive`` notifications, newest first."""

    async def acknowledge(
        self, la_ods: str, ids: Sequence[uuid.UUID], *, by: Acknowledger, now: datetime
    ) -> int:
        """Mark the LA's notifications acknowledged by ``by``; how many were not before."""

    async def dead_deliveries(self, la_ods: str | None) -> Sequence[DeadDelivery]:
        """Deliveries given up on, for one LA or (None) for all."""

    async def retry(self, delivery_id: int, *, now: datetime, la_ods: str | None = None) -> bool:
        """Put a delivery given up on back in the queue, due ``now``; False if there is
        no such delivery given up on (for ``la_ods``, when given)."""


# --- FHIR Subscriptions -------------------------------------------------------------------


class SubscriptionStore(Protocol):
    """Where subscriptions and their numbered events live; every call is scoped by LA."""

    async def create(
        self,
        *,
        la_ods: str,
        client_id: str,
        topic: str,
        request: SubscriptionRequest,
        at: datetime,
    ) -> Subscription: ...

    async def get(self, la_ods: str, subscription_id: uuid.UUID) -> Subscription | None: ...

    async def search(self, la_ods: str, *, status: Status | None = None) -> list[Subscription]: ...

    async def update(
        self,
        la_ods: str,
        subscription_id: uuid.UUID,
        *,
        request: SubscriptionRequest,
        if_match: int | None,
        at: datetime,
    ) -> Subscription | None:
        """None if there is no such subscription; raises VersionMismatch on a stale If-Match."""

    async def delete(
        self, la_ods: str, subscription_id: uuid.UUID, *, if_match: int | None
    ) -> bool:
        """False if there is no such subscription; raises VersionMismatch on a stale If-Match."""

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
