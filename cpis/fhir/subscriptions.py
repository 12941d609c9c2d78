"""Topic-based FHIR Subscriptions for LAs (Subscriptions R5 Backport IG, R4 form): pure builders.

What an LA case management system subscribes to and what arrives at its
endpoint (the checks an incoming ``Subscription`` must pass are in
:mod:`cpis.fhir.subscription_request`). No I/O: the routes
(``cpis.web.subscriptions``) and the notification renderer
(``cpis.adapters.render``) call these, on the plain values of
:mod:`cpis.model.notifications`.

**What everything here conforms to**: HL7 FHIR *Subscriptions R5 Backport*
IG version 1.1.0 (STU 1.1, http://hl7.org/fhir/uv/subscriptions-backport/STU1.1/),
in its FHIR R4 form:

- a Subscription: profile ``…/StructureDefinition/backport-subscription``;
- a notification (handshake, heartbeat, event, ``$events`` answer): a
  ``history`` Bundle profiled ``…/backport-subscription-notification-r4``
  whose first entry is a ``Parameters`` profiled ``…/backport-subscription-status-r4``;
- ``$status`` and ``$events``: the IG's OperationDefinitions
  ``…/OperationDefinition/backport-subscription-status`` and ``…-events``.

It is **not** NHS England's Multicast Notification Service (MNS) envelope:
MNS delivers to its own queues, not to rest-hooks, and a bundle built here is
not valid against MNS's schema. MNS lent only the ``<name>-<version>`` shape of
our event-type codes.

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
- **``topic`` follows the content level** (status-r4 profile, ``topic``:
  "SHOULD NOT be present when using empty payloads, MAY be present when using
  id-only payloads, and SHOULD be present when using full-resource payloads"):
  it is left out of every status Parameters of an ``empty`` subscription
  (handshake, heartbeat, events, ``$status``) and sent for the other two. Its
  comment is on the element, not on a notification type, so one rule for all.
- **``error``** (status-r4 profile, 0..*, CodeableConcept): every status
  Parameters of a subscription whose status is ``error`` carries one, coded
  from ``http://terminology.hl7.org/CodeSystem/subscription-error`` (the code
  system of the IG's own error example) where the recorded reason maps to a
  code, and always with the reason as ``text`` (the code system's advice for
  ``error-response``: "convey the actual HTTP error … in text").
- **``additional-context`` is where the IG puts it**: a part of each
  ``notification-event``, one ``valueReference`` per resource relevant to the
  event, never a top-level parameter. What it references:

  ====================  =========================  ==============================
  event                 ``focus``                  ``additional-context``
  ====================  =========================  ==============================
  attendance            the ``AuditEvent``         the child (``Patient``), each of
                                                   this LA's plans (``CareTeam``)
  nhs-number-inactive   the old number's           the new number's ``Patient``
                        ``Patient``                (when superseded), each plan
  ====================  =========================  ==============================

  ``id-only`` sends references only ("only ids of additional resources may
  be provided"): the focus by URL, the others by business identifier (NHS
  number, the LA's plan id), which the profile allows ("MAY refer to non-FHIR
  objects": CP-IS serves no Patient, and a plan is the LA's own record).
  ``full-resource`` adds an entry for each referenced resource ("full
  resources should be provided") and points the reference at it: the
  AuditEvent as served, and for the rest the little CP-IS knows (identifier,
  subject, for a replaced number ``active: false`` and ``link`` replaced-by),
  at ``urn:uuid:`` addresses derived from the notification id, so a
  re-delivery is the same document. ``empty`` carries neither ("SHALL NOT be
  present") nor any further entry.
- **What did not fit the IG's parts** (SPEC §3 contents): the setting (ODS
  code, name, type) and the user (name, role) are in the focus AuditEvent,
  which ``full-resource`` includes and an ``id-only`` LA reads with its token
  (that is what ``id-only`` means). The event type and the notification id
  are two extensions of ours on the ``notification-event`` parameter (the
  profile's slicing is open, but an extension is FHIR's declared way to add
  to an element and maps onto ``SubscriptionStatus.notificationEvent`` in
  R4B/R5, where a part of our own would not):
  ``{base}/StructureDefinition/notification-id`` (``valueId``) and
  ``{base}/StructureDefinition/notification-event-type`` (``valueCoding`` from
  ``{base}/CodeSystem/notification-event-type``). They say nothing about the
  child, so ``empty`` carries them too. The ``source`` part of old is gone: the
  ``subscription`` reference already names this server.
- **The de-duplication key** is the outbox ``notification_id``: the
  ``notification-id`` extension of its ``notification-event`` on every content
  level (so ``$events`` replays carrying several events still say which is
  which) and the Bundle ``id`` of every single-event notification. A
  re-delivery repeats the same id; a new event never does.
- **NHS number changes ride the same topic** (issue 4): when the person index
  says a number an LA holds plans for was superseded or retired, the event
  type is ``cpis-nhs-number-inactive-1``; the focus is the Patient the old
  number identified and, when superseded, ``additional-context`` names the
  replacement (an LA cannot be assumed to read PDS to learn it); no
  replacement means the number was retired. A second topic would have needed
  every LA to subscribe again before it heard of a change to one of its
  children; ``docs/notifications.md`` says why in full.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Literal

from cpis.fhir.resources import Resource, instant
from cpis.model.notifications import Payload, Status, Subscription

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
# The IG version everything here is built to, and where it is published.
BACKPORT_VERSION = "1.1.0"
BACKPORT_PUBLISHED = f"{BACKPORT}/STU1.1"
SUBSCRIPTION_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription"
STATUS_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription-notification-r4"
PAYLOAD_CONTENT_EXT = f"{BACKPORT}/StructureDefinition/backport-payload-content"
HEARTBEAT_EXT = f"{BACKPORT}/StructureDefinition/backport-heartbeat-period"
TIMEOUT_EXT = f"{BACKPORT}/StructureDefinition/backport-timeout"
MAX_COUNT_EXT = f"{BACKPORT}/StructureDefinition/backport-max-count"
FILTER_EXT = f"{BACKPORT}/StructureDefinition/backport-filter-criteria"
CHANNEL_TYPE_EXT = f"{BACKPORT}/StructureDefinition/backport-channel-type"
TOPIC_CANONICAL_EXT = (
    f"{BACKPORT}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
)
STATUS_OPERATION = f"{BACKPORT}/OperationDefinition/backport-subscription-status"
EVENTS_OPERATION = f"{BACKPORT}/OperationDefinition/backport-subscription-events"
# The code system of the IG's own error example (r4-notification-error).
SUBSCRIPTION_ERROR_SYSTEM = "http://terminology.hl7.org/CodeSystem/subscription-error"
SUBSCRIPTION_ERROR_DISPLAY = {
    "dns-resolution-error": "DNS resolution error",
    "no-response": "No response",
    "error-response": "Error response",
}

TOPIC_ID = "cpis-attendance"
# Event types are named "<name>-<version>" (the one thing borrowed from MNS).
EVENT_TYPE = "cpis-attendance-1"
# The person index no longer uses an NHS number the LA holds plans for.
NHS_NUMBER_INACTIVE_EVENT_TYPE = "cpis-nhs-number-inactive-1"
EVENT_TYPE_DISPLAY = {
    EVENT_TYPE: "Unscheduled-care attendance",
    NHS_NUMBER_INACTIVE_EVENT_TYPE: "NHS number no longer in use",
}
FHIR_JSON = "application/fhir+json"
# The filter parameter the topic defines: the owning LA's ODS code.
FILTER_PARAMETER = "local-authority"

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


def notification_id_extension(base: str) -> str:
    """Our extension on ``notification-event``: the outbox notification id (de-duplication)."""
    return f"{base}/StructureDefinition/notification-id"


def event_type_extension(base: str) -> str:
    """Our extension on ``notification-event``: what kind of event it is."""
    return f"{base}/StructureDefinition/notification-event-type"


def event_type_system(base: str) -> str:
    """Where the event-type codes (``cpis-attendance-1``, ...) are defined."""
    return f"{base}/CodeSystem/notification-event-type"


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
        # Always present with its content extension, ``empty`` included: the
        # profile wants the content level said, and R4's "omit for no payload"
        # would leave it unsaid.
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
            f"Topic-based subscriptions (Subscriptions R5 Backport IG {BACKPORT_VERSION}, "
            "R4 form) for local authority clients only, always scoped to the caller's own "
            "ODS code. Channel rest-hook; payload application/fhir+json with content empty, "
            "id-only or full-resource. Notifications are backport-subscription-notification-r4 "
            "Bundles. Every notification body is signed (detached JWS in the X-JWS-Signature "
            "header) with a key published at /.well-known/jwks.json."
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
        "conditionalDelete": "not-supported",
        "conditionalUpdate": False,
        "searchParam": [
            {
                "name": "status",
                "definition": "http://hl7.org/fhir/SearchParameter/Subscription-status",
                "type": "token",
                "documentation": "requested | active | error | off; at most once",
            },
            {
                "name": "url",
                "definition": "http://hl7.org/fhir/SearchParameter/Subscription-url",
                "type": "uri",
                "documentation": "the channel endpoint, exactly; at most once",
            },
        ],
        "operation": [
            {
                "name": "status",
                "definition": STATUS_OPERATION,
                "documentation": (
                    "GET or POST, on one subscription (Subscription/{id}/$status) or on all of "
                    "the caller's LA's (Subscription/$status, optionally by id and status, "
                    "each repeatable, values joined by OR)."
                ),
            },
            {
                "name": "events",
                "definition": EVENTS_OPERATION,
                "documentation": (
                    "GET or POST on Subscription/{id}/$events; at most 100 events an answer."
                ),
            },
        ],
    }


# --- status parameters -------------------------------------------------------------------


def error_concept(reason: str | None) -> Resource:
    """The ``error`` parameter's value for a subscription in error, from its recorded reason.

    The reasons are the ones :mod:`cpis.adapters.webhook` records when a
    handshake fails; each that a ``subscription-error`` code fits gets that
    code, and every one travels as ``text`` (they name the kind of failure or
    the HTTP status, never a body or a secret).
    """
    text = reason or "the subscription is in error"
    code: str | None = None
    if text.startswith("no response from the endpoint"):
        code = "no-response"
    elif text.startswith("endpoint answered "):
        code = "error-response"
    elif text.startswith("the endpoint's host name does not resolve"):
        code = "dns-resolution-error"
    concept: Resource = {}
    if code is not None:
        concept["coding"] = [
            {
                "system": SUBSCRIPTION_ERROR_SYSTEM,
                "code": code,
                "display": SUBSCRIPTION_ERROR_DISPLAY[code],
            }
        ]
    concept["text"] = text
    return concept


def status_parameters(kind: str, sub: Subscription, base: str, content: Payload) -> list[Resource]:
    params: list[Resource] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub.id}"}}
    ]
    if content != "empty":
        params.append({"name": "topic", "valueCanonical": sub.topic})
    params += [
        {"name": "status", "valueCode": sub.status},
        {"name": "type", "valueCode": kind},
        # integer64 in R5; the R4 backport carries it as a string.
        {"name": "events-since-subscription-start", "valueString": str(sub.events_since_start)},
    ]
    if sub.status == "error":
        params.append({"name": "error", "valueCodeableConcept": error_concept(sub.error)})
    return params


def status_resource(parameters: list[Resource]) -> Resource:
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def status_bundle(subs: Sequence[Subscription], *, base: str, self_url: str) -> Resource:
    """The ``$status`` answer: a searchset Bundle of one ``query-status`` Parameters each."""
    entries = []
    for sub in subs:
        status = status_resource(status_parameters("query-status", sub, base, sub.payload))
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
