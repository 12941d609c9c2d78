"""Notifications to LAs (SPEC §5, issue 3): subscriptions, the outbox's deliveries and
numbered events, and what an LA's inbox lists.

One durable outbox feeds every channel: each outbox row (an attendance, or an
NHS number the person index no longer uses) becomes one :class:`Delivery` per
channel its LA has (each active rest-hook :class:`Subscription`, its MESH
mailbox), and the web inbox always lists it. No FHIR here: :mod:`cpis.fhir`
renders these values as the Subscriptions Backport IG's resources.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cpis.model import AccessEvent
from cpis.model.persons import NhsNumberChange

# A subscription's status and payload content, as FHIR's Subscription names them.
Status = Literal["requested", "active", "error", "off"]
Payload = Literal["empty", "id-only", "full-resource"]


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """What an LA asked for in a Subscription, already validated
    (:func:`cpis.fhir.subscription_request.parse_subscription`)."""

    status: Status
    reason: str
    endpoint: str
    headers: tuple[str, ...]
    payload: Payload
    heartbeat_seconds: int | None
    timeout_seconds: int
    end_at: datetime | None


@dataclass(frozen=True, slots=True)
class Subscription:
    """One stored rest-hook subscription of an LA (table ``subscription``).

    ``headers`` are the ``channel.header`` lines (``Name: value``) sent with
    every notification; ``events_since_start`` numbers its events.
    """

    id: uuid.UUID
    la_ods: str
    client_id: str
    status: Status
    topic: str
    reason: str | None
    endpoint: str
    headers: tuple[str, ...]
    payload: Payload
    heartbeat_seconds: int | None
    timeout_seconds: int
    end_at: datetime | None
    events_since_start: int
    last_sent_at: datetime | None
    error: str | None
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """One numbered event of a subscription: a delivery row joined to its outbox row.

    ``access_event`` is None when retention has already removed the access
    event (the delivery log outlives it); such an event is rendered with its
    number, time, type and notification id only. ``nhs_number_change`` is set,
    and ``access_event`` None, for an outbox row of kind ``nhs-number-inactive``.
    """

    number: int
    notification_id: uuid.UUID
    occurred_at: datetime
    access_event: AccessEvent | None
    plan_ids: tuple[str, ...] = ()
    nhs_number_change: NhsNumberChange | None = None
