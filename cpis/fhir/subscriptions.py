"""Topic-based FHIR Subscriptions for LAs (Subscriptions R5 Backport IG, R4 form): pure builders.

What an LA case management system subscribes to and what arrives at its
endpoint (the checks an incoming ``Subscription`` must pass are in
:mod:`cpis.fhir.subscription_request`). No I/O: the routes
(``cpis.web.subscriptions``), the store and the dispatcher call these.

Decisions, and why:

- **One topic**, canonical ``{base}/SubscriptionTopic/cpis-attendance`` with
  ``base`` = ``{CPIS_PUBLIC_BASE_URL}/FHIR/R4``. A topic canonical only has to
  be a stable URL the server advertises (the CapabilityStatement lists it with
  the IG's ``capabilitystatement-subscriptiontopic-canonical`` extension); one
  under our own base needs no domain we do not control, and an LA's system
  discovers it from ``/metadata`` instead of hard-coding it.
- **Scope is the caller's LA, always.** A filter (``backport-filter-criteria``
  on ``criteria``) is optional; naming another LA is refused (403), so an LA
  can never subscribe to another's children. The stored and rendered
  subscription always carries the filter for the caller's own LA, so what the
  LA reads back says exactly what it will receive.
- **The notification envelope mirrors NHS England's Multicast Notification
  Service** (``NHSDigital/multicast-notification-service``, e.g. event
  ``patientflags-change-1``): a ``history`` Bundle whose first entry is a
  ``Parameters`` profiled ``backport-subscription-status-r4`` (fullUrl
  ``urn:uuid:``, ``request`` GET, ``response`` 200), a ``notification-event``
  with ``event-number``, ``timestamp`` and ``focus``, then MNS's
  ``additional-context`` parameter with ``event-type``, ``source`` and
  ``subject``. Where the IG asks for more than MNS sends we follow the IG:
  ``topic`` and ``events-since-subscription-start`` are present and
  ``event-number`` counts per subscription (MNS fixes it at "1").
- **The de-duplication key** is the outbox ``notification_id``: it is the
  Bundle ``id`` of every single-event notification (where MNS puts its event
  id) and, always, the ``notification-id`` part of that event's
  ``additional-context`` (so ``$events`` replays carrying several events still
  say which is which). A re-delivery repeats the same id; a new event never
  does.
- **Contents per SPEC §3**, never clinical: for ``id-only`` and
  ``full-resource`` the ``additional-context`` carries the subject NHS number,
  this LA's plan ids, the setting (ODS code, name, type) and the user (name,
  role); the focus is the ``AuditEvent`` the LA can read. ``full-resource``
  adds that AuditEvent as a further entry (as MNS adds its "hydrated signal").
  ``empty`` carries only numbers, times and the notification id: nothing
  about the child.
- **NHS number changes ride the same topic** (issue 4): when the person index
  says a number an LA holds plans for was superseded or retired, the event
  has ``event-type`` ``cpis-nhs-number-inactive-1`` (shaped like MNS's
  ``nhs-number-change-2``: ``subject`` the old number, ``focus`` the Patient
  it identified), plus ``nhs-number-status`` and, when known, ``replaced-by``
  (the new number) in ``additional-context``, since an LA cannot be assumed
  to read PDS to learn it. ``full-resource`` adds that Patient, inactive,
  with a ``replaced-by`` link: FHIR's own way of saying a record was merged.
  A second topic would have needed every LA to subscribe again before it
  heard of a change to one of its children; ``docs/notifications.md`` says
  why in full.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cpis.fhir.resources import (
    NHS_NUMBER_SYSTEM,
    ODS_SYSTEM,
    SETTING_TYPE_DISPLAY,
    Resource,
    audit_event,
    instant,
    plan_identifier_system,
    setting_type_system,
)
from cpis.model import AccessEvent

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
SUBSCRIPTION_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription"
STATUS_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription-notification-r4"
PAYLOAD_CONTENT_EXT = f"{BACKPORT}/StructureDefinition/backport-payload-content"
HEARTBEAT_EXT = f"{BACKPORT}/StructureDefinition/backport-heartbeat-period"
TIMEOUT_EXT = f"{BACKPORT}/StructureDefinition/backport-timeout"
MAX_COUNT_EXT = f"{BACKPORT}/StructureDefinition/backport-max-count"
FILTER_EXT = f"{BACKPORT}/StructureDefinition/backport-filter-criteria"
TOPIC_CANONICAL_EXT = (
    f"{BACKPORT}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
)
STATUS_OPERATION = f"{BACKPORT}/OperationDefinition/backport-subscription-status"
EVENTS_OPERATION = f"{BACKPORT}/OperationDefinition/backport-subscription-events"

TOPIC_ID = "cpis-attendance"
# MNS names its event types "<name>-<version>"; this is ours.
EVENT_TYPE = "cpis-attendance-1"
# The person index no longer uses an NHS number the LA holds plans for.
NHS_NUMBER_INACTIVE_EVENT_TYPE = "cpis-nhs-number-inactive-1"
FHIR_JSON = "application/fhir+json"
# The filter parameter the topic defines: the owning LA's ODS code.
FILTER_PARAMETER = "local-authority"

Status = Literal["requested", "active", "error", "off"]
Payload = Literal["empty", "id-only", "full-resource"]
NotificationKind = Literal["handshake", "heartbeat", "event-notification", "query-event"]

STATUSES: tuple[Status, ...] = ("requested", "active", "error", "off")
PAYLOADS: tuple[Payload, ...] = ("empty", "id-only", "full-resource")
# The least that is still useful without a second request is the AuditEvent id.
DEFAULT_PAYLOAD: Payload = "id-only"

DEFAULT_TIMEOUT_SECONDS = 10
MAX_TIMEOUT_SECONDS = 120
# Heartbeats more often than this would cost the LA more than they tell it.
MIN_HEARTBEAT_SECONDS = 10
MAX_HEARTBEAT_SECONDS = 86_400
MAX_HEADERS = 10
MAX_HEADER_CHARS = 1024
MAX_REASON_CHARS = 1000
MAX_ENDPOINT_CHARS = 2048


def topic_url(base: str) -> str:
    """The canonical of the one topic served: unscheduled-care attendances of an LA's children."""
    return f"{base}/SubscriptionTopic/{TOPIC_ID}"


def filter_criteria(la_ods: str) -> str:
    """The filter string rendered on every stored subscription (its LA, always)."""
    return f"AuditEvent?{FILTER_PARAMETER}={la_ods}"


@dataclass(frozen=True, slots=True)
class Subscription:
    """One stored subscription (table ``subscription``).

    Lives here rather than in ``cpis.model`` only because this module owns the
    feature; it is a plain value with no FHIR in it.
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
class NhsNumberChange:
    """The person index no longer uses ``old_nhs_number``: it was superseded by
    ``new_nhs_number``, or is inactive with no replacement known (None)."""

    old_nhs_number: str
    new_nhs_number: str | None = None


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """One numbered event of a subscription: a delivery row joined to its outbox row.

    ``access_event`` is None when retention has already removed the access
    event (the delivery log outlives it); such an event is rendered with its
    number, time and notification id only. ``nhs_number_change`` is set, and
    ``access_event`` None, for an outbox row of kind ``nhs-number-inactive``.
    """

    number: int
    notification_id: uuid.UUID
    occurred_at: datetime
    access_event: AccessEvent | None
    plan_ids: tuple[str, ...] = ()
    nhs_number_change: NhsNumberChange | None = None


def subscription_from_row(row: Mapping[str, Any]) -> Subscription:
    """A :class:`Subscription` from a ``subscription`` table row as a mapping (column names)."""
    return Subscription(
        id=row["id"] if isinstance(row["id"], uuid.UUID) else uuid.UUID(str(row["id"])),
        la_ods=row["la_ods"],
        client_id=row["client_id"],
        status=row["status"],
        topic=row["topic"],
        reason=row.get("reason"),
        endpoint=row["endpoint"],
        headers=tuple(row.get("headers") or ()),
        payload=row["payload"],
        heartbeat_seconds=row.get("heartbeat_seconds"),
        timeout_seconds=row.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS,
        end_at=row.get("end_at"),
        events_since_start=row.get("events_since_start") or 0,
        last_sent_at=row.get("last_sent_at"),
        error=row.get("error"),
        version=row.get("version") or 1,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# --- the Subscription resource ---------------------------------------------------------


def subscription_resource(sub: Subscription, base: str) -> Resource:
    """The stored subscription as an R4 Subscription with the backport profile."""
    channel_ext: list[Resource] = []
    if sub.heartbeat_seconds is not None:
        channel_ext.append({"url": HEARTBEAT_EXT, "valueUnsignedInt": sub.heartbeat_seconds})
    channel_ext.append({"url": TIMEOUT_EXT, "valueUnsignedInt": sub.timeout_seconds})
    channel: Resource = {
        "extension": channel_ext,
        "type": "rest-hook",
        "endpoint": sub.endpoint,
        "payload": FHIR_JSON,
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT_EXT, "valueCode": sub.payload}]},
    }
    if sub.headers:
        channel["header"] = list(sub.headers)
    resource: Resource = {
        "resourceType": "Subscription",
        "id": str(sub.id),
        "meta": {
            "versionId": str(sub.version),
            "lastUpdated": instant(sub.updated_at),
            "profile": [SUBSCRIPTION_PROFILE],
        },
        "status": sub.status,
        "reason": sub.reason or "Unscheduled-care attendance notifications",
        "criteria": sub.topic,
        "_criteria": {
            "extension": [{"url": FILTER_EXT, "valueString": filter_criteria(sub.la_ods)}]
        },
        "channel": channel,
    }
    if sub.end_at is not None:
        resource["end"] = instant(sub.end_at)
    if sub.error:
        resource["error"] = sub.error
    return resource


def capability_resource(base: str) -> Resource:
    """The CapabilityStatement ``rest.resource`` entry for Subscription, topic advertised."""
    return {
        "extension": [{"url": TOPIC_CANONICAL_EXT, "valueCanonical": topic_url(base)}],
        "type": "Subscription",
        "supportedProfile": [SUBSCRIPTION_PROFILE],
        "documentation": (
            "Topic-based subscriptions (Subscriptions R5 Backport IG, R4) for local "
            "authority clients only, always scoped to the caller's own ODS code. "
            "Channel rest-hook; payload application/fhir+json with content empty, "
            "id-only or full-resource. Every notification body is signed (detached JWS "
            "in the X-JWS-Signature header) with a key published at /.well-known/jwks.json."
        ),
        "interaction": [
            {"code": "read"},
            {"code": "update"},
            {"code": "delete"},
            {"code": "search-type"},
            {"code": "create"},
        ],
        "versioning": "versioned-update",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": [
            {
                "name": "status",
                "definition": "http://hl7.org/fhir/SearchParameter/Subscription-status",
                "type": "token",
                "documentation": "requested | active | error | off; at most once",
            }
        ],
        "operation": [
            {"name": "status", "definition": STATUS_OPERATION},
            {"name": "events", "definition": EVENTS_OPERATION},
        ],
    }


# --- notifications -----------------------------------------------------------------------


def _status_parameters(
    kind: str, sub: Subscription, base: str, *, events_since: int | None = None
) -> list[Resource]:
    count = sub.events_since_start if events_since is None else events_since
    return [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub.id}"}},
        {"name": "topic", "valueCanonical": sub.topic},
        {"name": "status", "valueCode": sub.status},
        {"name": "type", "valueCode": kind},
        # integer64 in R5; the R4 backport carries it as a string.
        {"name": "events-since-subscription-start", "valueString": str(count)},
    ]


def _status_resource(parameters: list[Resource]) -> Resource:
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def _context_head(ev: NotificationEvent, base: str, event_type: str) -> list[Resource]:
    """The ``additional-context`` parts every content level carries: nothing about the child."""
    return [
        {"name": "event-type", "valueString": event_type},
        {"name": "source", "valueUri": base},
        {"name": "event-number", "valueString": str(ev.number)},
        {"name": "notification-id", "valueString": str(ev.notification_id)},
    ]


def _nhs_number_part(name: str, nhs_number: str) -> Resource:
    return {
        "name": name,
        "valueReference": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs_number}},
    }


def _plan_id_parts(ev: NotificationEvent, sub: Subscription, base: str) -> list[Resource]:
    system = plan_identifier_system(base, sub.la_ods)
    return [
        {"name": "plan-id", "valueIdentifier": {"system": system, "value": plan_id}}
        for plan_id in ev.plan_ids
    ]


def _change_context_parts(
    ev: NotificationEvent, change: NhsNumberChange, sub: Subscription, base: str, payload: Payload
) -> list[Resource]:
    """``additional-context`` of an ``nhs-number-inactive`` event: the old number, whether
    it was superseded or retired, the new number when known, and this LA's plan ids."""
    parts = _context_head(ev, base, NHS_NUMBER_INACTIVE_EVENT_TYPE)
    if payload == "empty":
        return parts
    parts.append(_nhs_number_part("subject", change.old_nhs_number))
    status = "inactive" if change.new_nhs_number is None else "superseded"
    parts.append({"name": "nhs-number-status", "valueCode": status})
    if change.new_nhs_number is not None:
        parts.append(_nhs_number_part("replaced-by", change.new_nhs_number))
    parts.extend(_plan_id_parts(ev, sub, base))
    return parts


def _context_parts(
    ev: NotificationEvent, sub: Subscription, base: str, payload: Payload
) -> list[Resource]:
    """MNS's ``additional-context`` for one event; personal data only when the payload allows."""
    if ev.nhs_number_change is not None:
        return _change_context_parts(ev, ev.nhs_number_change, sub, base, payload)
    parts = _context_head(ev, base, EVENT_TYPE)
    ae = ev.access_event
    if payload == "empty" or ae is None:
        return parts
    acc = ae.accessor
    parts.append(_nhs_number_part("subject", ae.nhs_number))
    parts.extend(_plan_id_parts(ev, sub, base))
    setting: Resource = {"identifier": {"system": ODS_SYSTEM, "value": acc.org_ods}}
    if acc.org_name:
        setting["display"] = acc.org_name
    parts.append({"name": "setting", "valueReference": setting})
    parts.append(
        {
            "name": "setting-type",
            "valueCoding": {
                "system": setting_type_system(base),
                "code": acc.setting_type.value,
                "display": SETTING_TYPE_DISPLAY[acc.setting_type],
            },
        }
    )
    # Token claims or headers may leave these blank; FHIR forbids empty strings.
    if acc.user_name:
        parts.append({"name": "user-name", "valueString": acc.user_name})
    if acc.user_role:
        parts.append({"name": "user-role", "valueString": acc.user_role})
    return parts


def _event_parameters(
    ev: NotificationEvent, sub: Subscription, base: str, payload: Payload
) -> list[Resource]:
    when = ev.access_event.occurred_at if ev.access_event is not None else ev.occurred_at
    parts: list[Resource] = [
        {"name": "event-number", "valueString": str(ev.number)},
        {"name": "timestamp", "valueInstant": instant(when)},
    ]
    if payload != "empty" and ev.access_event is not None:
        parts.append(
            {
                "name": "focus",
                "valueReference": {
                    "reference": f"{base}/AuditEvent/{ev.access_event.id}",
                    "type": "AuditEvent",
                },
            }
        )
    elif payload != "empty" and ev.nhs_number_change is not None:
        parts.append(
            {"name": "focus", "valueReference": _patient_focus(ev, ev.nhs_number_change, payload)}
        )
    return [
        {"name": "notification-event", "part": parts},
        {"name": "additional-context", "part": _context_parts(ev, sub, base, payload)},
    ]


def _patient_url(ev: NotificationEvent) -> str:
    """The in-Bundle address of the Patient a full-resource change event carries; the same
    on every re-delivery of the event, so what the LA receives twice is the same."""
    return f"urn:uuid:{uuid.uuid5(ev.notification_id, 'Patient')}"


def _patient_focus(ev: NotificationEvent, change: NhsNumberChange, payload: Payload) -> Resource:
    """The Patient the old number identified, by identifier (CP-IS serves no Patient;
    MNS's ``nhs-number-change-2`` likewise points at the person, not a record of ours).
    With ``full-resource`` it also references that Patient's entry in the Bundle."""
    ref: Resource = {}
    if payload == "full-resource":
        ref["reference"] = _patient_url(ev)
    ref["type"] = "Patient"
    ref["identifier"] = {"system": NHS_NUMBER_SYSTEM, "value": change.old_nhs_number}
    return ref


def _replaced_patient(ev: NotificationEvent, change: NhsNumberChange) -> Resource:
    """The old number's Patient as the index now sees it: inactive and, when superseded,
    ``link.type`` ``replaced-by`` the new number (FHIR's shape for a merged record)."""
    patient: Resource = {
        "resourceType": "Patient",
        "id": _patient_url(ev).removeprefix("urn:uuid:"),
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": change.old_nhs_number}],
        "active": False,
    }
    if change.new_nhs_number is not None:
        patient["link"] = [
            {
                "other": {
                    "type": "Patient",
                    "identifier": {"system": NHS_NUMBER_SYSTEM, "value": change.new_nhs_number},
                },
                "type": "replaced-by",
            }
        ]
    return patient


def notification_bundle(
    kind: NotificationKind,
    subscription: Subscription | Mapping[str, Any],
    events: Sequence[NotificationEvent] = (),
    *,
    base: str,
    now: datetime,
    payload: Payload | None = None,
) -> Resource:
    """A notification Bundle as the IG's R4 form and MNS's envelope shape it.

    ``kind`` is what the Bundle is for: ``handshake`` (sent once on create or
    when the endpoint changes; no events), ``heartbeat`` (no events),
    ``event-notification`` (what the dispatcher sends, one event per Bundle),
    or ``query-event`` (a ``$events`` answer, any number). ``subscription``
    may be the dataclass or a table row as a mapping. ``payload``
    overrides the subscription's (``$events?content=``). A Bundle carrying
    exactly one event has that event's notification id as its ``id``.
    """
    if not isinstance(subscription, Subscription):
        subscription = subscription_from_row(subscription)
    content = payload or subscription.payload
    if kind in ("handshake", "heartbeat") and events:
        raise ValueError(f"a {kind} carries no events")
    status_url = f"{base}/Subscription/{subscription.id}/$status"
    parameters = _status_parameters(kind, subscription, base)
    for ev in events:
        parameters.extend(_event_parameters(ev, subscription, base, content))
    status = _status_resource(parameters)
    entries: list[Resource] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": status_url},
            "response": {"status": "200"},
        }
    ]
    if content == "full-resource":
        seen: set[uuid.UUID] = set()
        for ev in events:
            ae = ev.access_event
            if ae is None or ae.id in seen:
                continue
            seen.add(ae.id)
            url = f"{base}/AuditEvent/{ae.id}"
            entries.append(
                {
                    "fullUrl": url,
                    "resource": audit_event(ae, base),
                    "request": {"method": "GET", "url": url},
                    "response": {"status": "200"},
                }
            )
        for ev in events:
            change = ev.nhs_number_change
            if change is None:
                continue
            search = f"Patient?identifier={NHS_NUMBER_SYSTEM}|{change.old_nhs_number}"
            entries.append(
                {
                    "fullUrl": _patient_url(ev),
                    "resource": _replaced_patient(ev, change),
                    "request": {"method": "GET", "url": search},
                    "response": {"status": "200"},
                }
            )
    bundle_id = str(events[0].notification_id) if len(events) == 1 else str(uuid.uuid4())
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": instant(now),
        "entry": entries,
    }


def status_bundle(subs: Sequence[Subscription], *, base: str, self_url: str) -> Resource:
    """The ``$status`` answer: a searchset Bundle of one ``query-status`` Parameters each."""
    entries = []
    for sub in subs:
        status = _status_resource(_status_parameters("query-status", sub, base))
        entries.append(
            {
                "fullUrl": f"urn:uuid:{status['id']}",
                "resource": status,
                "search": {"mode": "match"},
            }
        )
    bundle: Resource = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "total": len(entries),
        "link": [{"relation": "self", "url": self_url}],
    }
    if entries:
        bundle["entry"] = entries
    return bundle
