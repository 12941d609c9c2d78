"""Subscriptions (Backport IG, R4): the Subscription resource, notification bundles, validation."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cpis import errors
from cpis.fhir import notifications as fn
from cpis.fhir import resources as r
from cpis.fhir import subscription_request as fsr
from cpis.fhir import subscriptions as fs
from cpis.fhir.capability import capability_statement
from cpis.model import AccessEvent, Accessor, SettingType
from cpis.model.notifications import NotificationEvent, Subscription
from cpis.model.persons import NhsNumberChange
from tests.fhir_validation import validate_resource

BASE = "https://cpis.example.org/FHIR/R4"
TOPIC = f"{BASE}/SubscriptionTopic/cpis-attendance"
NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
NHS = "9990000018"  # 999 range: synthetic
LA = "XLA01"


def subscription(**overrides: Any) -> Subscription:
    values: dict[str, Any] = {
        "id": uuid.UUID("0b6f6a0e-7d1e-4a4f-9d52-3c1d2b9f0001"),
        "la_ods": LA,
        "client_id": "la-north",
        "status": "active",
        "topic": TOPIC,
        "reason": "Attendances of our children",
        "endpoint": "https://cms.example.gov.uk/fhir/notify",
        "headers": ("Authorization: Bearer secret-for-cms",),
        "payload": "id-only",
        "heartbeat_seconds": 300,
        "timeout_seconds": 10,
        "end_at": None,
        "events_since_start": 7,
        "last_sent_at": None,
        "error": None,
        "version": 2,
        "created_at": NOW - timedelta(days=1),
        "updated_at": NOW - timedelta(hours=1),
    }
    values.update(overrides)
    return Subscription(**values)


def access_event(**accessor: Any) -> AccessEvent:
    acc: dict[str, Any] = {
        "client_id": "ed-system",
        "org_ods": "XED01",
        "org_name": "Northshire General Hospital Emergency Department",
        "setting_type": SettingType.ED,
        "user_id": "555000000001",
        "user_name": "Casey Nurse",
        "user_role": "Staff Nurse",
        "trace_id": "trace-1",
        # as the storage adapter gives it (a keyed hash of the viewer)
        "practitioner_role_id": uuid.UUID("0190f3a0-0000-8000-8000-0000000000aa"),
    }
    acc.update(accessor)
    return AccessEvent(
        id=uuid.UUID("0190f3a0-0000-7000-8000-000000000001"),
        nhs_number=NHS,
        occurred_at=NOW - timedelta(minutes=5),
        accessor=Accessor(**acc),
        la_codes=(LA,),
    )


def event(
    number: int = 7, *, ae: AccessEvent | None = None, gone: bool = False
) -> NotificationEvent:
    return NotificationEvent(
        number=number,
        notification_id=uuid.UUID(f"0190f3a0-0000-7000-8000-{number:012d}"),
        occurred_at=NOW - timedelta(minutes=5),
        access_event=None if gone else (ae or access_event()),
        plan_ids=("PLAN-1", "PLAN-2"),
    )


def params(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    status = bundle["entry"][0]["resource"]
    assert status["resourceType"] == "Parameters"
    assert status["meta"]["profile"] == [fs.STATUS_PROFILE]
    return list(status["parameter"])


def named(parameters: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [p for p in parameters if p["name"] == name]


def parts(parameter: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for part in parameter["part"]:
        out.setdefault(part["name"], []).append(part)
    return out


# --- the Subscription resource ---------------------------------------------------------


@pytest.mark.parametrize("payload", ["empty", "id-only", "full-resource"])
def test_subscription_resource_is_valid_r4_with_backport_extensions(payload: str) -> None:
    """A stored subscription renders as valid R4 with the backport profile, its LA filter,
    heartbeat, timeout and payload-content extensions where the IG puts them."""
    sub = subscription(payload=payload, end_at=NOW + timedelta(days=30), error="last one failed")
    res = fs.subscription_resource(sub, BASE)
    validate_resource(res)
    assert res["meta"] == {
        "versionId": "2",
        "lastUpdated": "2024-06-01T11:00:00.000Z",
        "profile": [fs.SUBSCRIPTION_PROFILE],
    }
    assert res["criteria"] == TOPIC
    assert res["_criteria"]["extension"] == [
        {"url": fs.FILTER_EXT, "valueString": "AuditEvent?local-authority=XLA01"}
    ]
    channel = res["channel"]
    assert channel["type"] == "rest-hook"
    assert channel["payload"] == "application/fhir+json"
    assert channel["_payload"]["extension"] == [
        {"url": fs.PAYLOAD_CONTENT_EXT, "valueCode": payload}
    ]
    assert {e["url"]: e["valueUnsignedInt"] for e in channel["extension"]} == {
        fs.HEARTBEAT_EXT: 300,
        fs.TIMEOUT_EXT: 10,
    }
    assert channel["header"] == ["Authorization: Bearer secret-for-cms"]
    assert res["end"] == "2024-07-01T12:00:00.000Z"
    assert res["error"] == "last one failed"


def test_subscription_resource_without_heartbeat_or_headers_omits_them() -> None:
    """No heartbeat, no headers, no end: the elements are left out, never sent empty."""
    res = fs.subscription_resource(subscription(heartbeat_seconds=None, headers=()), BASE)
    validate_resource(res)
    assert "header" not in res["channel"]
    assert [e["url"] for e in res["channel"]["extension"]] == [fs.TIMEOUT_EXT]
    assert "end" not in res


def test_capability_statement_advertises_the_topic_as_the_ig_says() -> None:
    """/metadata lists Subscription with the topic canonical extension on its rest.resource,
    the backport profile, the LA-facing interactions and $status / $events, saying that
    $status also works on the type."""
    cs = capability_statement(BASE, software_version="0.1.0", now="2024-06-01T00:00:00Z")
    validate_resource(cs)
    (rest,) = cs["rest"]
    (sub,) = [res for res in rest["resource"] if res["type"] == "Subscription"]
    assert sub["extension"] == [{"url": fs.TOPIC_CANONICAL_EXT, "valueCanonical": TOPIC}]
    assert sub["supportedProfile"] == [fs.SUBSCRIPTION_PROFILE]
    assert {i["code"] for i in sub["interaction"]} == {
        "create",
        "read",
        "update",
        "delete",
        "search-type",
    }
    assert {o["name"]: o["definition"] for o in sub["operation"]} == {
        "status": fs.STATUS_OPERATION,
        "events": fs.EVENTS_OPERATION,
    }
    # The IG's R4 server CapabilityStatement: search by url and status (SHOULD).
    assert {p["name"] for p in sub["searchParam"]} == {"status", "url"}
    (status_op,) = [o for o in sub["operation"] if o["name"] == "status"]
    assert "Subscription/$status" in status_op["documentation"]


# --- notification bundles ----------------------------------------------------------------

CONTEXT_EXT_ID = f"{BASE}/StructureDefinition/notification-id"
CONTEXT_EXT_TYPE = f"{BASE}/StructureDefinition/notification-event-type"
PLAN_SYSTEM = f"{BASE}/la/XLA01/plan-id"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def extensions(parameter: dict[str, Any]) -> dict[str, Any]:
    """A notification-event's extensions as url -> value (each of ours appears once)."""
    out: dict[str, Any] = {}
    for ext in parameter.get("extension", []):
        assert ext["url"] not in out
        out[ext["url"]] = next(v for k, v in ext.items() if k.startswith("value"))
    return out


def context_refs(parameter: dict[str, Any]) -> list[dict[str, Any]]:
    return [p["valueReference"] for p in parameter["part"] if p["name"] == "additional-context"]


def change_event(new: str | None = "9990000026", number: int = 8) -> NotificationEvent:
    return NotificationEvent(
        number=number,
        notification_id=uuid.UUID(f"0190f3a0-0000-7000-8000-{number:012d}"),
        occurred_at=NOW - timedelta(minutes=1),
        access_event=None,
        plan_ids=("N-1", "N-2"),
        nhs_number_change=NhsNumberChange(NHS, new),
    )


@pytest.mark.parametrize("kind", ["handshake", "heartbeat"])
def test_control_bundles_carry_status_and_no_events(kind: str) -> None:
    """Handshakes and heartbeats: a history Bundle whose only entry is the status Parameters
    with subscription, topic, status, type and the event count, and nothing about a child."""
    bundle = fn.notification_bundle(kind, subscription(), base=BASE, now=NOW)  # type: ignore[arg-type]
    validate_resource(bundle)
    assert bundle["type"] == "history"
    assert bundle["meta"]["profile"] == [fs.NOTIFICATION_PROFILE]
    assert bundle["timestamp"] == "2024-06-01T12:00:00.000Z"
    (entry,) = bundle["entry"]
    assert entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"
    assert entry["request"] == {
        "method": "GET",
        "url": f"{BASE}/Subscription/0b6f6a0e-7d1e-4a4f-9d52-3c1d2b9f0001/$status",
    }
    assert entry["response"] == {"status": "200"}
    ps = params(bundle)
    assert [p["name"] for p in ps] == [
        "subscription",
        "topic",
        "status",
        "type",
        "events-since-subscription-start",
    ]
    assert ps[0]["valueReference"]["reference"].endswith("/Subscription/" + str(subscription().id))
    assert ps[1]["valueCanonical"] == TOPIC
    assert ps[3]["valueCode"] == kind
    assert ps[4]["valueString"] == "7"
    assert NHS not in str(bundle)


def test_control_bundles_refuse_events() -> None:
    """A heartbeat with events is a programming error, not a notification."""
    with pytest.raises(ValueError):
        fn.notification_bundle("heartbeat", subscription(), [event()], base=BASE, now=NOW)


@pytest.mark.parametrize(
    ("payload", "kind", "topic"),
    [
        ("empty", "handshake", False),
        ("empty", "heartbeat", False),
        ("empty", "event-notification", False),
        ("empty", "query-event", False),
        ("id-only", "handshake", True),
        ("id-only", "event-notification", True),
        ("full-resource", "heartbeat", True),
        ("full-resource", "event-notification", True),
    ],
)
def test_topic_is_sent_only_when_the_content_level_allows_it(
    payload: str, kind: str, topic: bool
) -> None:
    """status-r4 profile, topic: "SHOULD NOT be present when using empty payloads, MAY be
    present when using id-only payloads, and SHOULD be present when using full-resource
    payloads". The rule is the subscription's content level, whatever the notification type."""
    events = [event()] if kind in ("event-notification", "query-event") else []
    bundle = fn.notification_bundle(
        kind,  # type: ignore[arg-type]
        subscription(payload=payload),
        events,
        base=BASE,
        now=NOW,
    )
    validate_resource(bundle)
    found = named(params(bundle), "topic")
    assert found == ([{"name": "topic", "valueCanonical": TOPIC}] if topic else [])


def test_events_override_of_content_decides_the_topic_too() -> None:
    """$events?content=empty on a full-resource subscription answers as empty: no topic."""
    sub = subscription(payload="full-resource")
    bundle = fn.notification_bundle(
        "query-event", sub, [event()], base=BASE, now=NOW, payload="empty"
    )
    assert named(params(bundle), "topic") == []


@pytest.mark.parametrize(
    ("payload", "has_references", "entries"),
    [("empty", False, 1), ("id-only", True, 1), ("full-resource", True, 6)],
)
def test_attendance_notification_per_payload(
    payload: str, has_references: bool, entries: int
) -> None:
    """One attendance: Bundle.id is the notification id. The notification-event has number
    and time and, on every level, our notification-id and event-type extensions; id-only and
    full-resource add focus (the AuditEvent) and additional-context as parts of that
    notification-event (the viewer's PractitionerRole by URL, the child's Patient and each of
    this LA's plans as a CareTeam, by identifier); full-resource adds an entry for each of
    them. There is no top-level additional-context parameter, and no source part."""
    ev = event(7)
    bundle = fn.notification_bundle(
        "event-notification", subscription(payload=payload), [ev], base=BASE, now=NOW
    )
    validate_resource(bundle)
    assert bundle["id"] == str(ev.notification_id)
    assert len(bundle["entry"]) == entries
    ps = params(bundle)
    assert named(ps, "additional-context") == []
    assert [p["name"] for p in ps if p["name"] not in ("topic",)] == [
        "subscription",
        "status",
        "type",
        "events-since-subscription-start",
        "notification-event",
    ]
    (notification,) = named(ps, "notification-event")
    assert extensions(notification) == {
        CONTEXT_EXT_ID: str(ev.notification_id),
        CONTEXT_EXT_TYPE: {
            "system": f"{BASE}/CodeSystem/notification-event-type",
            "code": "cpis-attendance-1",
            "display": "Unscheduled-care attendance",
        },
    }
    np = parts(notification)
    assert np["event-number"] == [{"name": "event-number", "valueString": "7"}]
    assert np["timestamp"] == [{"name": "timestamp", "valueInstant": "2024-06-01T11:55:00.000Z"}]
    assert set(np) <= {"event-number", "timestamp", "focus", "additional-context"}
    focus_url = f"{BASE}/AuditEvent/0190f3a0-0000-7000-8000-000000000001"
    if not has_references:
        assert set(np) == {"event-number", "timestamp"}
        assert NHS not in str(bundle)
        assert "Casey Nurse" not in str(bundle)
        assert "PLAN-1" not in str(bundle)
        return
    assert np["focus"] == [
        {"name": "focus", "valueReference": {"reference": focus_url, "type": "AuditEvent"}}
    ]
    viewer, *refs = context_refs(notification)
    assert ev.access_event is not None
    viewer_url = f"{BASE}/PractitionerRole/{ev.access_event.accessor.practitioner_role_id}"
    assert viewer == {"reference": viewer_url, "type": "PractitionerRole"}
    assert [(ref["type"], ref["identifier"]) for ref in refs] == [
        ("Patient", {"system": NHS_SYSTEM, "value": NHS}),
        ("CareTeam", {"system": PLAN_SYSTEM, "value": "PLAN-1"}),
        ("CareTeam", {"system": PLAN_SYSTEM, "value": "PLAN-2"}),
    ]
    if payload == "id-only":
        # "only ids of additional resources may be provided": nothing else, no entries.
        assert all("reference" not in ref for ref in refs)
        assert "Casey Nurse" not in str(bundle)
        return
    by_url = {e["fullUrl"]: e for e in bundle["entry"][1:]}
    audit = by_url[focus_url]
    assert audit["resource"] == r.audit_event(ev.access_event, BASE)
    assert audit["request"] == {"method": "GET", "url": focus_url}
    # The AuditEvent's relative reference to its viewer resolves to the included entry.
    assert audit["resource"]["agent"][1]["who"]["reference"] == viewer_url.removeprefix(f"{BASE}/")
    assert by_url[viewer_url]["resource"] == r.practitioner_role(ev.access_event.accessor)
    for ref in refs:
        entry = by_url[ref["reference"]]
        assert ref["reference"].startswith("urn:uuid:")
        assert entry["resource"]["resourceType"] == ref["type"]
        assert ref["identifier"] in entry["resource"]["identifier"]
        assert entry["response"] == {"status": "200"}
    care_team = by_url[refs[1]["reference"]]["resource"]
    assert care_team["subject"] == {"identifier": {"system": NHS_SYSTEM, "value": NHS}}


def test_the_audit_event_carries_what_the_parts_no_longer_do() -> None:
    """SPEC §3 contents that are not references (setting name and type, user name and
    role) reach the LA in the focus AuditEvent: inline with full-resource, by reading the
    focus with id-only."""
    bundle = fn.notification_bundle(
        "event-notification", subscription(payload="full-resource"), [event()], base=BASE, now=NOW
    )
    audit = json.dumps(bundle["entry"][1]["resource"])
    for needed in (
        NHS,
        "XED01",
        "Northshire General Hospital",
        '"ED"',
        "Casey Nurse",
        "Staff Nurse",
    ):
        assert needed in audit


def test_full_resource_entries_are_the_same_on_every_delivery() -> None:
    """A re-delivery of the same event is the same document apart from its timestamp and
    status Parameters id: the local addresses derive from the notification id."""
    first = fn.notification_bundle(
        "event-notification", subscription(payload="full-resource"), [event()], base=BASE, now=NOW
    )
    again = fn.notification_bundle(
        "event-notification", subscription(payload="full-resource"), [event()], base=BASE, now=NOW
    )
    assert first["entry"][1:] == again["entry"][1:]
    assert first["id"] == again["id"]


def test_blank_user_details_are_left_out_not_sent_empty() -> None:
    """Token claims or headers may leave the user's name or role blank; FHIR forbids ''."""
    ev = event(ae=access_event(user_name="", user_role=""))
    bundle = fn.notification_bundle(
        "event-notification", subscription(payload="full-resource"), [ev], base=BASE, now=NOW
    )
    validate_resource(bundle)
    (requestor,) = [a for a in bundle["entry"][1]["resource"]["agent"] if a["requestor"]]
    assert "name" not in requestor
    assert "role" not in requestor


@pytest.mark.parametrize("payload", ["empty", "id-only", "full-resource"])
def test_the_notification_id_is_on_every_content_level(payload: str) -> None:
    """The de-duplication key travels in a conformant place whatever the content: our
    notification-id extension on each notification-event (and the single-event Bundle.id)."""
    ev = event(9)
    bundle = fn.notification_bundle(
        "event-notification", subscription(payload=payload), [ev], base=BASE, now=NOW
    )
    (notification,) = named(params(bundle), "notification-event")
    assert extensions(notification)[CONTEXT_EXT_ID] == str(ev.notification_id)
    assert bundle["id"] == str(ev.notification_id)


def test_query_event_bundle_replays_several_events_each_with_its_id() -> None:
    """$events: several events in one Bundle, each notification-event saying its number and
    notification id; payload may be overridden; an event whose access event retention
    removed keeps its number, time, type and id only."""
    events = [event(3), event(4, gone=True), event(5)]
    bundle = fn.notification_bundle(
        "query-event", subscription(), events, base=BASE, now=NOW, payload="full-resource"
    )
    validate_resource(bundle)
    ps = params(bundle)
    assert named(ps, "type")[0]["valueCode"] == "query-event"
    notifications = named(ps, "notification-event")
    numbers = [parts(p)["event-number"][0]["valueString"] for p in notifications]
    assert numbers == ["3", "4", "5"]
    assert [extensions(p)[CONTEXT_EXT_ID] for p in notifications] == [
        str(e.notification_id) for e in events
    ]
    assert set(parts(notifications[1])) == {"event-number", "timestamp"}
    # The same AuditEvent is included once however many events point at it.
    audits = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "AuditEvent"]
    assert len(audits) == 1
    assert bundle["id"] not in {str(e.notification_id) for e in events}


@pytest.mark.parametrize("payload", ["id-only", "full-resource"])
def test_nhs_number_change_names_old_and_new_numbers(payload: str) -> None:
    """nhs-number-inactive: event type cpis-nhs-number-inactive-1; focus the Patient of the
    old number; additional-context the replacement Patient and each plan (filed under the
    old number). full-resource adds the old Patient, inactive and linked replaced-by to the
    new one, and the new Patient and plans as entries."""
    ev = change_event()
    bundle = fn.notification_bundle(
        "event-notification", subscription(payload=payload), [ev], base=BASE, now=NOW
    )
    validate_resource(bundle)
    (notification,) = named(params(bundle), "notification-event")
    assert extensions(notification)[CONTEXT_EXT_TYPE]["code"] == "cpis-nhs-number-inactive-1"
    np = parts(notification)
    (focus,) = np["focus"]
    assert focus["valueReference"]["type"] == "Patient"
    assert focus["valueReference"]["identifier"] == {"system": NHS_SYSTEM, "value": NHS}
    refs = context_refs(notification)
    assert [(ref["type"], ref["identifier"]["value"]) for ref in refs] == [
        ("Patient", "9990000026"),
        ("CareTeam", "N-1"),
        ("CareTeam", "N-2"),
    ]
    if payload == "id-only":
        assert len(bundle["entry"]) == 1
        assert "reference" not in focus["valueReference"]
        return
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"][1:]}
    old = by_url[focus["valueReference"]["reference"]]
    assert old["active"] is False
    assert old["identifier"] == [{"system": NHS_SYSTEM, "value": NHS}]
    (link,) = old["link"]
    assert link["type"] == "replaced-by"
    assert link["other"]["reference"] == refs[0]["reference"]
    new = by_url[refs[0]["reference"]]
    assert new["identifier"] == [{"system": NHS_SYSTEM, "value": "9990000026"}]
    assert by_url[refs[1]["reference"]]["subject"]["identifier"]["value"] == NHS


def test_a_retired_number_has_no_replacement() -> None:
    """An inactive number with no replacement known: no replacement Patient, no link."""
    bundle = fn.notification_bundle(
        "event-notification",
        subscription(payload="full-resource"),
        [change_event(new=None)],
        base=BASE,
        now=NOW,
    )
    validate_resource(bundle)
    (notification,) = named(params(bundle), "notification-event")
    assert [ref["type"] for ref in context_refs(notification)] == ["CareTeam", "CareTeam"]
    patients = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert len(patients) == 1
    assert "link" not in patients[0]


def test_an_empty_change_says_nothing_about_the_child() -> None:
    """empty: the event type and notification id, and neither number nor plan."""
    ev = change_event()
    bundle = fn.notification_bundle(
        "event-notification", subscription(payload="empty"), [ev], base=BASE, now=NOW
    )
    validate_resource(bundle)
    (notification,) = named(params(bundle), "notification-event")
    assert set(parts(notification)) == {"event-number", "timestamp"}
    assert extensions(notification)[CONTEXT_EXT_TYPE]["code"] == "cpis-nhs-number-inactive-1"
    for secret in (NHS, "9990000026", "N-1"):
        assert secret not in json.dumps(bundle)


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("no response from the endpoint", "no-response"),
        ("the endpoint's host name does not resolve", "dns-resolution-error"),
        ("endpoint answered 503", "error-response"),
        ("endpoint resolves only to non-public addresses, which are not allowed", None),
        (None, None),
    ],
)
def test_error_parameter_codes_the_recorded_reason(reason: str | None, code: str | None) -> None:
    """The IG's error parameter (CodeableConcept): a subscription-error code where one fits
    the failure the dispatcher recorded, and the reason as text always."""
    concept = fs.error_concept(reason)
    if code is None:
        assert "coding" not in concept
    else:
        assert concept["coding"] == [
            {
                "system": "http://terminology.hl7.org/CodeSystem/subscription-error",
                "code": code,
                "display": fs.SUBSCRIPTION_ERROR_DISPLAY[code],
            }
        ]
    assert concept["text"] == (reason or "the subscription is in error")


@pytest.mark.parametrize("kind", ["heartbeat", "event-notification", "query-status"])
def test_a_subscription_in_error_says_so_in_every_status(kind: str) -> None:
    """status error: status bundles and notifications carry the error parameter; any other
    status does not, even with an old reason recorded."""
    broken = subscription(status="error", error="endpoint answered 503")
    fine = subscription(status="active", error="endpoint answered 503")
    for sub, expected in ((broken, True), (fine, False)):
        if kind == "query-status":
            bundle = fs.status_bundle([sub], base=BASE, self_url=f"{BASE}/Subscription/$status")
        else:
            events = [event()] if kind == "event-notification" else []
            bundle = fn.notification_bundle(kind, sub, events, base=BASE, now=NOW)  # type: ignore[arg-type]
        validate_resource(bundle)
        found = named(params(bundle), "error")
        if expected:
            assert found == [
                {"name": "error", "valueCodeableConcept": fs.error_concept("endpoint answered 503")}
            ]
        else:
            assert found == []


def test_status_bundle_is_a_searchset_of_query_status_parameters() -> None:
    """$status answers as the IG's operation says: a searchset Bundle, one Parameters each,
    each as the status-r4 profile says for that subscription's content level."""
    subs = [subscription(), subscription(id=uuid.uuid4(), payload="empty", events_since_start=0)]
    bundle = fs.status_bundle(subs, base=BASE, self_url=f"{BASE}/Subscription/$status")
    validate_resource(bundle)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 2
    for entry in bundle["entry"]:
        assert entry["search"] == {"mode": "match"}
        assert entry["resource"]["meta"]["profile"] == [fs.STATUS_PROFILE]
    first, second = (e["resource"]["parameter"] for e in bundle["entry"])
    assert {p["name"]: p.get("valueCode") for p in first}["type"] == "query-status"
    assert named(first, "events-since-subscription-start")[0]["valueString"] == "7"
    assert named(first, "topic") != []
    assert named(second, "topic") == []


def test_status_bundle_with_nothing_to_report_is_an_empty_searchset() -> None:
    """A type-level $status whose filters match nothing: total 0 and no entries."""
    bundle = fs.status_bundle([], base=BASE, self_url=f"{BASE}/Subscription/$status?status=off")
    validate_resource(bundle)
    assert bundle["total"] == 0
    assert "entry" not in bundle


# --- validating what an LA sends -----------------------------------------------------------


def body(**changes: Any) -> dict[str, Any]:
    """A good Subscription body, with ``changes`` applied (None deletes a key; dotted paths)."""
    b: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Attendances of our children",
        "criteria": TOPIC,
        "channel": {
            "extension": [
                {"url": fs.HEARTBEAT_EXT, "valueUnsignedInt": 60},
                {"url": fs.TIMEOUT_EXT, "valueUnsignedInt": 20},
            ],
            "type": "rest-hook",
            "endpoint": "https://cms.example.gov.uk/notify",
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": fs.PAYLOAD_CONTENT_EXT, "valueCode": "full-resource"}]
            },
            "header": ["Authorization: Bearer abc"],
        },
    }
    for path, value in changes.items():
        node = b
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return b


def parse(b: Any, la: str = LA) -> fsr.SubscriptionRequest:
    return fsr.parse_subscription(copy.deepcopy(b), base=BASE, la_ods=la, now=NOW)


def test_a_good_body_parses_into_what_is_stored() -> None:
    """Every element the service uses is read from where the IG puts it."""
    req = parse(body(end="2024-12-31T00:00:00Z"))
    assert req == fsr.SubscriptionRequest(
        status="requested",
        reason="Attendances of our children",
        endpoint="https://cms.example.gov.uk/notify",
        headers=("Authorization: Bearer abc",),
        payload="full-resource",
        heartbeat_seconds=60,
        timeout_seconds=20,
        end_at=datetime(2024, 12, 31, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"channel___payload": None}, "id-only"),
        ({"channel__payload": None, "channel___payload": None}, "empty"),
        ({"channel__extension": []}, None),
    ],
    ids=["payload-without-content-is-id-only", "no-payload-is-empty", "no-heartbeat"],
)
def test_defaults(changes: dict[str, Any], expected: str | None) -> None:
    """No content extension means id-only; no payload at all means empty (R4: "omit for no
    payload"); no heartbeat extension means no heartbeats and the default timeout."""
    req = parse(body(**changes))
    if expected is not None:
        assert req.payload == expected
    else:
        assert req.heartbeat_seconds is None
        assert req.timeout_seconds == fs.DEFAULT_TIMEOUT_SECONDS


def test_an_r4_fhir_version_parameter_is_accepted() -> None:
    """The IG: a server SHALL look for the payload MIME type's fhirVersion parameter; R4's
    (4.0) is what notifications are sent in, so it is accepted (others are refused)."""
    assert parse(body(channel__payload="application/fhir+json; fhirVersion=4.0")).payload == (
        "full-resource"
    )


def test_local_http_endpoint_is_allowed_for_testing() -> None:
    """http is accepted only to this machine, so an LA developer can try it locally."""
    assert parse(body(channel__endpoint="http://127.0.0.1:9000/hook")).endpoint.startswith("http:")


def test_status_off_creates_a_paused_subscription() -> None:
    """``off`` is kept (a paused subscription); ``active`` is asked for but starts ``requested``."""
    assert parse(body(status="off")).status == "off"
    assert parse(body(status="active")).status == "requested"


def test_filter_for_own_la_is_accepted_in_any_spelling() -> None:
    """The filter may name the caller's own LA with or without the ODS system or resource."""
    for value in (
        "AuditEvent?local-authority=XLA01",
        "local-authority=xla01",
        "AuditEvent?local-authority=https://fhir.nhs.uk/Id/ods-organization-code|XLA01",
    ):
        parse(body(_criteria={"extension": [{"url": fs.FILTER_EXT, "valueString": value}]}))


def test_filter_naming_another_la_is_forbidden() -> None:
    """An LA can never subscribe to another LA's children."""
    b = body(
        _criteria={
            "extension": [{"url": fs.FILTER_EXT, "valueString": "AuditEvent?local-authority=XLA02"}]
        }
    )
    with pytest.raises(errors.Forbidden):
        parse(b)


BAD_BODIES: list[tuple[str, Any, int, str | None]] = [
    ("not-an-object", [], 400, None),
    ("wrong-type", {"resourceType": "Patient"}, 400, "resourceType"),
    ("unknown-element", body(colour="red"), 400, "Subscription.colour"),
    ("channel-missing", body(channel=None), 400, "Subscription.channel"),
    ("reason-not-string", body(reason=5), 400, "Subscription.reason"),
    ("status-error", body(status="error"), 422, "Subscription.status"),
    ("reason-missing", body(reason=None), 400, "Subscription.reason"),
    ("criteria-legacy-query", body(criteria="AuditEvent?patient=x"), 422, "Subscription.criteria"),
    (
        "criteria-other-topic",
        body(criteria=f"{BASE}/SubscriptionTopic/x"),
        422,
        "Subscription.criteria",
    ),
    ("channel-email", body(channel__type="email"), 422, "Subscription.channel.type"),
    ("endpoint-missing", body(channel__endpoint=None), 422, "Subscription.channel.endpoint"),
    (
        "endpoint-plain-http",
        body(channel__endpoint="http://cms.example.gov.uk/n"),
        422,
        "Subscription.channel.endpoint",
    ),
    (
        "endpoint-ftp",
        body(channel__endpoint="ftp://cms.example.gov.uk/n"),
        422,
        "Subscription.channel.endpoint",
    ),
    (
        "endpoint-credentials",
        body(channel__endpoint="https://u:p@cms.example.gov.uk/n"),
        422,
        "Subscription.channel.endpoint",
    ),
    (
        "endpoint-bad-port",
        body(channel__endpoint="https://cms.example.gov.uk:99999/n"),
        422,
        "Subscription.channel.endpoint",
    ),
    (
        "payload-xml",
        body(channel__payload="application/fhir+xml"),
        422,
        "Subscription.channel.payload",
    ),
    (
        "payload-content-unknown",
        body(
            channel___payload={"extension": [{"url": fs.PAYLOAD_CONTENT_EXT, "valueCode": "all"}]}
        ),
        422,
        "Subscription.channel.payload",
    ),
    (
        "payload-fhir-version-r5",
        body(channel__payload="application/fhir+json; fhirVersion=5.0"),
        422,
        "Subscription.channel.payload",
    ),
    (
        "custom-channel-type",
        body(
            channel___type={
                "extension": [
                    {
                        "url": fs.CHANNEL_TYPE_EXT,
                        "valueCoding": {"system": "http://example.org/ch", "code": "zulip"},
                    }
                ]
            }
        ),
        422,
        "Subscription.channel.type",
    ),
    (
        "header-no-colon",
        body(channel__header=["Authorization Bearer x"]),
        422,
        "Subscription.channel.header",
    ),
    ("header-empty-value", body(channel__header=["X-Key:  "]), 422, "Subscription.channel.header"),
    (
        "header-reserved",
        body(channel__header=["X-JWS-Signature: forged"]),
        422,
        "Subscription.channel.header",
    ),
    (
        "header-too-many",
        body(channel__header=[f"X-H{i}: v" for i in range(11)]),
        422,
        "Subscription.channel.header",
    ),
    (
        "heartbeat-too-often",
        body(channel__extension=[{"url": fs.HEARTBEAT_EXT, "valueUnsignedInt": 1}]),
        422,
        "Subscription.channel.heartbeatPeriod",
    ),
    (
        "timeout-too-long",
        body(channel__extension=[{"url": fs.TIMEOUT_EXT, "valueUnsignedInt": 600}]),
        422,
        "Subscription.channel.timeout",
    ),
    ("end-in-past", body(end="2020-01-01T00:00:00Z"), 422, "Subscription.end"),
    (
        "filter-unknown-parameter",
        body(
            _criteria={"extension": [{"url": fs.FILTER_EXT, "valueString": "AuditEvent?patient=1"}]}
        ),
        422,
        "Subscription.criteria.extension",
    ),
]


@pytest.mark.parametrize(
    ("case", "bad", "status", "expression"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES]
)
def test_bad_bodies_are_refused_naming_the_element(
    case: str, bad: Any, status: int, expression: str | None
) -> None:
    """Each fault gets 400 (not a Subscription) or 422 (breaks this service's rules), with
    the element named as the OperationOutcome expression."""
    with pytest.raises(errors.InvalidRequest) as info:
        parse(bad)
    assert info.value.status == status, info.value.message
    assert info.value.expression == expression


def test_errors_never_echo_values() -> None:
    """Diagnostics name elements, never values: an endpoint or header may hold a secret, and
    a badly built body may key an element by an NHS number."""
    secret = "https://user:hunter2@cms.example.gov.uk/n"
    with pytest.raises(errors.InvalidRequest) as info:
        parse(body(channel__endpoint=secret))
    assert "hunter2" not in info.value.message
    with pytest.raises(errors.InvalidRequest) as info:
        parse({**body(), NHS: "x"})
    assert NHS not in info.value.message
    assert info.value.expression is None


# --- signing ---------------------------------------------------------------------------------


def _authority(key: Any, previous: tuple[Any, ...] = ()) -> Any:
    from cpis.adapters.tokens import JwtTokenAuthority

    async def never(client_id: str, jti: str, expires_at: datetime) -> bool:
        return False

    class Clock:
        def now(self) -> datetime:
            return NOW

    return JwtTokenAuthority(
        signing_key=key,
        previous_keys=previous,
        issuer="https://cpis.example.org",
        ttl_seconds=60,
        use_jti=never,
        clock=Clock(),
    )


def test_detached_signature_verifies_against_the_published_jwks() -> None:
    """The signature is ``header..signature`` (payload left out), ES256, with the kid the
    token authority publishes, and verifies only over the exact body bytes."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from cpis.adapters.signing import DetachedSigner, verify_detached

    key = ec.generate_private_key(ec.SECP256R1())
    signer = DetachedSigner(key)
    jwks = _authority(key).public_jwks()
    body = b'{"resourceType":"Bundle","type":"history"}'
    sig = signer.sign_detached(body)
    protected, empty, _ = sig.split(".")
    assert empty == ""
    header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    assert header == {"alg": "ES256", "kid": jwks["keys"][0]["kid"], "typ": "JOSE"}
    assert verify_detached(body, sig, jwks)
    assert not verify_detached(body + b" ", sig, jwks)
    assert not verify_detached(body, sig, {"keys": []})


def test_a_rotated_out_key_still_verifies_while_it_is_published() -> None:
    """After a key rotation the JWKS keeps the previous public key, so a notification signed
    just before the rotation (and retried after it) still verifies."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from cpis.adapters.signing import DetachedSigner, verify_detached

    old = ec.generate_private_key(ec.SECP256R1())
    new = ec.generate_private_key(ec.SECP256R1())
    sig = DetachedSigner(old).sign_detached(b"{}")
    assert verify_detached(b"{}", sig, _authority(new, (old.public_key(),)).public_jwks())
    assert not verify_detached(b"{}", sig, _authority(new).public_jwks())


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p, s, b: f"{p}.{b}.{s}",  # attached, not detached
        lambda p, s, b: f"{p}..",  # no signature
        lambda p, s, b: "not-a-jws",
        lambda p, s, b: f"{_header({'alg': 'HS256'})}..{s}",
        lambda p, s, b: f"{_header({'alg': 'ES256', 'b64': False, 'crit': ['b64']})}..{s}",
    ],
    ids=["attached", "no-signature", "garbage", "other-alg", "rfc7797"],
)
def test_malformed_signatures_do_not_verify(mangle: Any) -> None:
    """Anything but a detached ES256 JWS by a published key is simply not valid."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from cpis.adapters.signing import DetachedSigner, verify_detached

    key = ec.generate_private_key(ec.SECP256R1())
    body = b'{"a":1}'
    protected, _, sig = DetachedSigner(key).sign_detached(body).split(".")
    payload = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
    assert not verify_detached(body, mangle(protected, sig, payload), _authority(key).public_jwks())


def _header(h: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(h).encode()).rstrip(b"=").decode()
