"""Notification Bundles: what an LA's endpoint (or MESH mailbox) receives for its events.

The shape, and every decision about it, is in :mod:`cpis.fhir.subscriptions`
(Subscriptions R5 Backport IG 1.1.0, R4 form). This module builds the
``notification-event`` parameters and the entries a ``full-resource`` event
carries. The viewer (issue 8): an attendance's ``additional-context`` also
names the viewer's ``PractitionerRole`` (name, job role, role profile id,
organisation), the resource the focus AuditEvent's ASSIGNED agent and
``source.observer`` point at, so the LA learns who looked as an ED system does.
``id-only`` names it by URL (the LA reads it with its token); ``full-resource``
includes it at that URL, where the AuditEvent's relative reference resolves.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote

from cpis.fhir.resources import (
    NHS_NUMBER_SYSTEM,
    Resource,
    audit_event,
    instant,
    plan_identifier_system,
    practitioner_role,
)
from cpis.fhir.subscriptions import (
    EVENT_TYPE,
    EVENT_TYPE_DISPLAY,
    NHS_NUMBER_INACTIVE_EVENT_TYPE,
    NOTIFICATION_PROFILE,
    NotificationKind,
    event_type_extension,
    event_type_system,
    notification_id_extension,
    status_parameters,
    status_resource,
)
from cpis.model import AccessEvent
from cpis.model.notifications import NotificationEvent, Payload, Subscription
from cpis.model.persons import NhsNumberChange


def _nhs_identifier(nhs_number: str) -> Resource:
    return {"system": NHS_NUMBER_SYSTEM, "value": nhs_number}


def _local_url(ev: NotificationEvent, what: str) -> str:
    """The in-Bundle address of a resource a full-resource event carries; the same on
    every re-delivery of the event, so what the LA receives twice is the same."""
    return f"urn:uuid:{uuid.uuid5(ev.notification_id, what)}"


def _search_url(resource_type: str, system: str, value: str) -> str:
    return f"{resource_type}?identifier={system}|{quote(value, safe='')}"


class _Event:
    """One event's ``notification-event`` parameter and, for full-resource, its entries."""

    def __init__(self, ev: NotificationEvent, sub: Subscription, base: str, content: Payload):
        self.ev, self.sub, self.base, self.content = ev, sub, base, content
        when = ev.access_event.occurred_at if ev.access_event is not None else ev.occurred_at
        self.parts: list[Resource] = [
            {"name": "event-number", "valueString": str(ev.number)},
            {"name": "timestamp", "valueInstant": instant(when)},
        ]
        self.entries: list[Resource] = []

    @property
    def full(self) -> bool:
        return self.content == "full-resource"

    def reference(
        self, name: str, resource_type: str, identifier: Resource, known: Resource
    ) -> None:
        """A ``focus`` or ``additional-context`` part naming a resource by identifier and, for
        full-resource, also by an entry holding ``known`` (what CP-IS knows of it)."""
        ref: Resource = {}
        if self.full:
            url = _local_url(self.ev, f"{resource_type}/{identifier['value']}")
            ref["reference"] = url
            resource = {"resourceType": resource_type, "id": url.removeprefix("urn:uuid:")}
            search = _search_url(resource_type, identifier["system"], identifier["value"])
            self.entries.append(
                {
                    "fullUrl": url,
                    "resource": resource | known,
                    "request": {"method": "GET", "url": search},
                    "response": {"status": "200"},
                }
            )
        ref["type"] = resource_type
        ref["identifier"] = identifier
        self.parts.append({"name": name, "valueReference": ref})

    def plans(self, subject: str) -> None:
        system = plan_identifier_system(self.base, self.sub.la_ods)
        for plan_id in self.ev.plan_ids:
            identifier = {"system": system, "value": plan_id}
            care_team = {
                "identifier": [identifier],
                "subject": {"identifier": _nhs_identifier(subject)},
            }
            self.reference("additional-context", "CareTeam", identifier, care_team)

    def attendance(self, ae: AccessEvent) -> None:
        url = f"{self.base}/AuditEvent/{ae.id}"
        self.parts.append(
            {"name": "focus", "valueReference": {"reference": url, "type": "AuditEvent"}}
        )
        if self.full:
            self.entries.append(
                {
                    "fullUrl": url,
                    "resource": audit_event(ae, self.base),
                    "request": {"method": "GET", "url": url},
                    "response": {"status": "200"},
                }
            )
        self.viewer(ae)
        patient = _nhs_identifier(ae.nhs_number)
        self.reference("additional-context", "Patient", patient, {"identifier": [patient]})
        self.plans(ae.nhs_number)

    def viewer(self, ae: AccessEvent) -> None:
        """The viewer's PractitionerRole, at the URL the service serves it from."""
        role = practitioner_role(ae.accessor)
        url = f"{self.base}/PractitionerRole/{role['id']}"
        self.parts.append(
            {
                "name": "additional-context",
                "valueReference": {"reference": url, "type": "PractitionerRole"},
            }
        )
        if self.full:
            self.entries.append(
                {
                    "fullUrl": url,
                    "resource": role,
                    "request": {"method": "GET", "url": url},
                    "response": {"status": "200"},
                }
            )

    def nhs_number_change(self, change: NhsNumberChange) -> None:
        old = _nhs_identifier(change.old_nhs_number)
        replaced: Resource = {"identifier": [old], "active": False}
        new = None if change.new_nhs_number is None else _nhs_identifier(change.new_nhs_number)
        if new is not None:
            other: Resource = {"type": "Patient", "identifier": new}
            if self.full:
                other = {"reference": _local_url(self.ev, f"Patient/{new['value']}")} | other
            # FHIR's own shape for a record merged into another.
            replaced["link"] = [{"other": other, "type": "replaced-by"}]
        self.reference("focus", "Patient", old, replaced)
        if new is not None:
            self.reference("additional-context", "Patient", new, {"identifier": [new]})
        self.plans(change.old_nhs_number)

    def parameter(self) -> Resource:
        ev = self.ev
        event_type = EVENT_TYPE if ev.nhs_number_change is None else NHS_NUMBER_INACTIVE_EVENT_TYPE
        # empty: "focus and additionalContext SHALL NOT be present".
        if self.content != "empty" and ev.access_event is not None:
            self.attendance(ev.access_event)
        elif self.content != "empty" and ev.nhs_number_change is not None:
            self.nhs_number_change(ev.nhs_number_change)
        return {
            "extension": [
                {"url": notification_id_extension(self.base), "valueId": str(ev.notification_id)},
                {
                    "url": event_type_extension(self.base),
                    "valueCoding": {
                        "system": event_type_system(self.base),
                        "code": event_type,
                        "display": EVENT_TYPE_DISPLAY[event_type],
                    },
                },
            ],
            "name": "notification-event",
            "part": self.parts,
        }


def notification_bundle(
    kind: NotificationKind,
    subscription: Subscription,
    events: Sequence[NotificationEvent] = (),
    *,
    base: str,
    now: datetime,
    payload: Payload | None = None,
) -> Resource:
    """A notification Bundle (profile ``backport-subscription-notification-r4``).

    ``kind`` is what the Bundle is for: ``handshake`` (sent once on create or
    when the endpoint changes; no events), ``heartbeat`` (no events),
    ``event-notification`` (what the dispatcher sends, one event per Bundle),
    or ``query-event`` (a ``$events`` answer, any number). ``payload``
    overrides the subscription's (``$events?content=``). A Bundle carrying
    exactly one event has that event's notification id as its ``id``.
    """
    content = payload or subscription.payload
    if kind in ("handshake", "heartbeat") and events:
        raise ValueError(f"a {kind} carries no events")
    parameters = status_parameters(kind, subscription, base, content)
    further: dict[str, Resource] = {}
    for ev in events:
        built = _Event(ev, subscription, base, content)
        parameters.append(built.parameter())
        for entry in built.entries:
            # An AuditEvent several replayed events point at is included once.
            further.setdefault(entry["fullUrl"], entry)
    status = status_resource(parameters)
    entries: list[Resource] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            # "the request SHALL be filled out to match a request to the $status operation"
            "request": {"method": "GET", "url": f"{base}/Subscription/{subscription.id}/$status"},
            "response": {"status": "200"},
        },
        *further.values(),
    ]
    bundle_id = str(events[0].notification_id) if len(events) == 1 else str(uuid.uuid4())
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": instant(now),
        "entry": entries,
    }
