"""Topic-based FHIR Subscriptions for LAs (Subscriptions R5 Backport IG, R4 form): pure builders.

What an LA case management system subscribes to, what arrives at its endpoint,
and the checks an incoming ``Subscription`` must pass. No I/O: the routes
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

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from cpis.errors import Forbidden, InvalidRequest
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
# Headers the service sets itself on every notification request; a subscription
# may not override them (a forged signature header would defeat verification).
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "x-jws-signature",
    }
)
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_ODS = re.compile(r"^[A-Za-z0-9]{3,10}$")
# Pydantic reports a body's own keys back in its error locations; only keys
# that look like element names are echoed (a key could be an NHS number).
_ELEMENT = re.compile(r"^_?[A-Za-z][A-Za-z0-9]{0,63}$")


def topic_url(base: str) -> str:
    """The canonical of the one topic served: unscheduled-care attendances of an LA's children."""
    return f"{base}/SubscriptionTopic/{TOPIC_ID}"


def filter_criteria(la_ods: str) -> str:
    """The filter string rendered on every stored subscription (its LA, always)."""
    return f"AuditEvent?{FILTER_PARAMETER}={la_ods}"


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """What an LA asked for, already validated (see :func:`parse_subscription`)."""

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


# --- validating what an LA sends -----------------------------------------------------------


def _fhir_structure(body: Mapping[str, Any]) -> None:
    """Element names, types and cardinality, by the R4B model (Subscription is as in R4)."""
    # Imported here: pydantic model classes are heavy and only this path needs them.
    import pydantic
    from fhir.resources.R4B.subscription import Subscription as R4BSubscription

    try:
        R4BSubscription.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"] if not isinstance(p, int)]
        if all(_ELEMENT.match(p) for p in loc):
            where = ".".join(["Subscription", *loc])
            raise InvalidRequest(f"{where}: {first['msg']}", expression=where, status=400) from None
        raise InvalidRequest("the body has an element that is not allowed", status=400) from None


def _extension(node: Any, url: str) -> Mapping[str, Any] | None:
    if not isinstance(node, Mapping):
        return None
    found = [e for e in node.get("extension", []) if isinstance(e, Mapping) and e.get("url") == url]
    if len(found) > 1:
        raise InvalidRequest(f"extension {url} appears more than once")
    return found[0] if found else None


def _check_filter(body: Mapping[str, Any], la_ods: str) -> None:
    ext = _extension(body.get("_criteria"), FILTER_EXT)
    if ext is None:
        return
    where = "Subscription.criteria.extension"
    raw = ext.get("valueString")
    if not isinstance(raw, str):
        raise InvalidRequest("the filter criteria must be a valueString", expression=where)
    text = raw.strip()
    text = text.removeprefix("AuditEvent?")
    name, sep, value = text.partition("=")
    if not sep or name != FILTER_PARAMETER:
        raise InvalidRequest(
            f"the only filter this topic supports is {FILTER_PARAMETER}=<ODS code>",
            expression=where,
        )
    value = value.removeprefix(f"{ODS_SYSTEM}|")
    if not _ODS.match(value):
        raise InvalidRequest("the local-authority filter must be an ODS code", expression=where)
    if value.upper() != la_ods.upper():
        raise Forbidden("a subscription may only be for the caller's own local authority")


def _check_endpoint(raw: Any) -> str:
    where = "Subscription.channel.endpoint"
    if not isinstance(raw, str) or not raw:
        raise InvalidRequest("channel.endpoint is required", expression=where)
    if len(raw) > MAX_ENDPOINT_CHARS:
        raise InvalidRequest("channel.endpoint is too long", expression=where)
    try:
        url = urlsplit(raw)
        host = url.hostname
        _ = url.port  # raises on a malformed port
    except ValueError:
        raise InvalidRequest("channel.endpoint is not a URL", expression=where) from None
    if not host or url.scheme not in ("https", "http"):
        raise InvalidRequest("channel.endpoint must be an https URL", expression=where)
    if url.scheme == "http" and host not in _LOCAL_HOSTS:
        # Notifications carry NHS numbers: plain http only to this machine, for testing.
        raise InvalidRequest(
            "channel.endpoint must be https (http only to 127.0.0.1, for local testing)",
            expression=where,
        )
    if url.username is not None or url.password is not None:
        raise InvalidRequest(
            "channel.endpoint may not carry credentials; use channel.header", expression=where
        )
    if url.fragment:
        raise InvalidRequest("channel.endpoint may not have a fragment", expression=where)
    return raw


def _check_headers(raw: Any) -> tuple[str, ...]:
    where = "Subscription.channel.header"
    if raw is None:
        return ()
    values = raw if isinstance(raw, list) else [raw]
    if len(values) > MAX_HEADERS:
        raise InvalidRequest(f"at most {MAX_HEADERS} channel.header values", expression=where)
    out = []
    for value in values:
        if not isinstance(value, str) or len(value) > MAX_HEADER_CHARS:
            raise InvalidRequest("each channel.header must be 'Name: value'", expression=where)
        name, sep, rest = value.partition(":")
        if not sep or not _HEADER_NAME.match(name.strip()) or name != name.strip():
            raise InvalidRequest("each channel.header must be 'Name: value'", expression=where)
        rest = rest.strip()
        if not rest or not rest.isprintable():
            raise InvalidRequest(
                "a channel.header value is empty or has characters not allowed", expression=where
            )
        if name.lower() in RESERVED_HEADERS:
            raise InvalidRequest(
                "channel.header may not set a header the service sets itself", expression=where
            )
        out.append(f"{name}: {rest}")
    return tuple(out)


def _unsigned(channel: Mapping[str, Any], url: str, element: str) -> int | None:
    ext = _extension(channel, url)
    if ext is None:
        return None
    value = ext.get("valueUnsignedInt")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            f"{element} must be a valueUnsignedInt", expression=f"Subscription.channel.{element}"
        )
    return value


def _check_payload(channel: Mapping[str, Any]) -> Payload:
    where = "Subscription.channel.payload"
    mime = channel.get("payload")
    ext = _extension(channel.get("_payload"), PAYLOAD_CONTENT_EXT)
    if mime is None:
        # R4: "omit for no payload".
        if ext is not None and ext.get("valueCode") != "empty":
            raise InvalidRequest("channel.payload is required for that content", expression=where)
        return "empty"
    if not isinstance(mime, str) or mime.split(";")[0].strip().lower() != FHIR_JSON:
        raise InvalidRequest(f"channel.payload must be {FHIR_JSON}", expression=where)
    if ext is None:
        return DEFAULT_PAYLOAD
    code = ext.get("valueCode")
    for option in PAYLOADS:
        if code == option:
            return option
    raise InvalidRequest(
        "the payload content must be empty, id-only or full-resource", expression=where
    )


def _check_end(raw: Any, now: datetime) -> datetime | None:
    if raw is None:
        return None
    where = "Subscription.end"
    if not isinstance(raw, str):
        raise InvalidRequest("end must be an instant", expression=where)
    try:
        end = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest("end must be an instant", expression=where) from None
    if end.tzinfo is None:
        raise InvalidRequest("end must include a time zone", expression=where)
    if end <= now:
        raise InvalidRequest("end is in the past", expression=where)
    return end


def parse_subscription(body: Any, *, base: str, la_ods: str, now: datetime) -> SubscriptionRequest:
    """Validate an LA's Subscription body, or raise naming the first bad element.

    Structure first (the R4B model: 400), then this service's rules (422),
    except a filter naming another LA (403). Messages never echo values: an
    endpoint or header may hold a secret.
    """
    if not isinstance(body, Mapping):
        raise InvalidRequest("the body must be a JSON object", status=400)
    if body.get("resourceType") != "Subscription":
        raise InvalidRequest(
            "the body must be a Subscription resource", expression="resourceType", status=400
        )
    _fhir_structure(body)
    status = body.get("status")
    if status not in ("requested", "active", "off"):
        raise InvalidRequest(
            "status must be requested (or off, to pause)", expression="Subscription.status"
        )
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("reason is required", expression="Subscription.reason")
    if len(reason) > MAX_REASON_CHARS or not reason.isprintable():
        raise InvalidRequest(
            f"reason must be printable and at most {MAX_REASON_CHARS} characters",
            expression="Subscription.reason",
        )
    if body.get("criteria") != topic_url(base):
        raise InvalidRequest(
            f"criteria must be the topic canonical {topic_url(base)}",
            expression="Subscription.criteria",
        )
    _check_filter(body, la_ods)
    channel = body.get("channel")
    assert isinstance(channel, Mapping)  # the model requires it
    if channel.get("type") != "rest-hook":
        raise InvalidRequest(
            "channel.type must be rest-hook", expression="Subscription.channel.type"
        )
    endpoint = _check_endpoint(channel.get("endpoint"))
    headers = _check_headers(channel.get("header"))
    payload = _check_payload(channel)
    heartbeat = _unsigned(channel, HEARTBEAT_EXT, "heartbeatPeriod")
    if heartbeat == 0:
        heartbeat = None
    if heartbeat is not None and not MIN_HEARTBEAT_SECONDS <= heartbeat <= MAX_HEARTBEAT_SECONDS:
        raise InvalidRequest(
            f"the heartbeat period must be {MIN_HEARTBEAT_SECONDS}-{MAX_HEARTBEAT_SECONDS} s",
            expression="Subscription.channel.heartbeatPeriod",
        )
    timeout = _unsigned(channel, TIMEOUT_EXT, "timeout")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT_SECONDS
    if not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
        raise InvalidRequest(
            f"the timeout must be 1-{MAX_TIMEOUT_SECONDS} s",
            expression="Subscription.channel.timeout",
        )
    return SubscriptionRequest(
        status="off" if status == "off" else "requested",
        reason=reason.strip(),
        endpoint=endpoint,
        headers=headers,
        payload=payload,
        heartbeat_seconds=heartbeat,
        timeout_seconds=timeout,
        end_at=_check_end(body.get("end"), now),
    )
