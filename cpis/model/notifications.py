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

from cpis.model import AccessEvent, SettingType
from cpis.model.persons import NhsNumberChange

# A subscription's status and payload content, as FHIR's Subscription names them.
Status = Literal["requested", "active", "error", "off"]
Payload = Literal["empty", "id-only", "full-resource"]
# What a subscription is sent besides its events: the handshake that activates it,
# and heartbeats while it is quiet.
ControlKind = Literal["handshake", "heartbeat"]


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


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row on its way down one channel, as a worker claimed it.

    ``channel`` is ``rest-hook`` (``target`` the subscription id, ``subscription``
    the subscription, ``event_number`` its number there) or ``mesh`` (``target``
    the LA's mailbox, ``mesh_workflow_id`` its workflow id). ``kind`` is the
    outbox row's: ``access`` carries the access ``event`` (None once retention
    has removed it), ``nhs-number-inactive`` the ``nhs_number_change`` and when
    the index check ``noted_at`` it.
    """

    id: int
    notification_id: uuid.UUID
    la_ods: str
    channel: str
    target: str
    event_number: int | None
    attempts: int
    created_at: datetime
    plan_ids: tuple[str, ...]
    event: AccessEvent | None
    subscription: Subscription | None
    mesh_workflow_id: str | None = None
    kind: str = "access"
    nhs_number_change: NhsNumberChange | None = None
    noted_at: datetime | None = None


# Who acts for an LA: a signed-in person, or one of its client systems.
ActorKind = Literal["person", "system"]


@dataclass(frozen=True, slots=True)
class Acknowledger:
    """Who acknowledged a notification, as it is kept (sealed) with it."""

    kind: ActorKind
    id: str
    name: str | None = None
    role: str | None = None


@dataclass(frozen=True, slots=True)
class InboxAttendance:
    """An attendance notification as the LA's inbox lists it: the child, the LA's plans,
    where and when, who looked (never their user id), and what became of it.

    ``deliveries`` are ``channel:state`` (``rest-hook:delivered``, ``mesh:dead``).
    """

    notification_id: uuid.UUID
    access_event_id: uuid.UUID
    nhs_number: str
    plan_ids: tuple[str, ...]
    occurred_at: datetime
    org_ods: str
    org_name: str
    setting_type: SettingType
    user_name: str
    user_role: str
    role_code: str | None
    role_profile_id: str | None
    user_verified: bool
    acknowledged_at: datetime | None = None
    acknowledged_by: Acknowledger | None = None
    deliveries: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InboxNumberChange:
    """An ``nhs-number-inactive`` notification as the LA's inbox lists it: the number the
    person index no longer uses for a child the LA holds ``plan_ids`` for."""

    notification_id: uuid.UUID
    kind: str
    change: NhsNumberChange
    plan_ids: tuple[str, ...]
    noted_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: Acknowledger | None = None
    deliveries: tuple[str, ...] = ()


# Which of an LA's notifications its inbox lists: those not yet acknowledged, those
# that were, or both.
InboxStatus = Literal["new", "acknowledged", "all"]


@dataclass(frozen=True, slots=True)
class Inbox:
    """What an LA's web inbox lists, newest first: attendances and NHS number changes."""

    status: InboxStatus
    attendances: tuple[InboxAttendance, ...]
    number_changes: tuple[InboxNumberChange, ...]


@dataclass(frozen=True, slots=True)
class DeadDelivery:
    """A delivery the dispatcher gave up on: visible to the LA and the operator until
    ``cpis notifications retry ID`` puts it back."""

    id: int
    notification_id: uuid.UUID
    la_ods: str
    channel: str
    target: str
    attempts: int
    created_at: datetime
    last_error: str | None
