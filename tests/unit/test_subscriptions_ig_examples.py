"""Our notification Bundles against the IG's own R4 examples (Subscriptions R5 Backport 1.1.0).

``fixtures/subscriptions_backport_1_1_0_r4_examples.json`` is a synthetic copy
of the structure of the IG's example Bundles (``r4-notification-handshake``,
``-heartbeat``, ``-empty``, ``-id-only``, ``-full-resource``,
``-multi-resource``, ``-error``). Each test builds the matching Bundle here and
compares *shapes*: which parameters and parts appear with which ``value[x]``,
how the status entry is addressed, and how every reference resolves. Values
differ (our URLs, ids, times); shapes may differ only where a test says why.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from cpis.fhir import notifications as fn
from cpis.fhir import subscriptions as fs
from cpis.model.notifications import NotificationEvent
from tests.fhir_validation import validate_resource
from tests.unit.test_subscriptions_fhir import BASE, NOW, change_event, event, subscription

EXAMPLES: dict[str, Any] = json.loads(
    (
        Path(__file__).parent / "fixtures" / "subscriptions_backport_1_1_0_r4_examples.json"
    ).read_text()
)
Shape = dict[str, Any]


def _value_key(node: dict[str, Any]) -> str:
    (key,) = [k for k in node if k.startswith("value")]
    return key


def shape(bundle: dict[str, Any]) -> Shape:
    """What a notification Bundle is made of, without its values."""
    status_entry, *others = bundle["entry"]
    status = status_entry["resource"]
    parameters = status["parameter"]
    events = [p for p in parameters if p["name"] == "notification-event"]
    part_shapes = {(p["name"], _value_key(p)) for e in events for p in e["part"]}
    references = [
        p["valueReference"].get("reference")
        for e in events
        for p in e["part"]
        if p["name"] in ("focus", "additional-context")
    ]
    full_urls = {e["fullUrl"] for e in others}
    return {
        "bundle": (bundle["resourceType"], bundle["type"], tuple(bundle["meta"]["profile"])),
        "status": (
            status["resourceType"],
            tuple(status["meta"]["profile"]),
            status_entry["fullUrl"] == f"urn:uuid:{status['id']}",
            status_entry["request"]["method"],
            bool(re.search(r"/Subscription/[^/]+/\$status$", status_entry["request"]["url"])),
            status_entry["response"]["status"],
        ),
        "parameters": {
            (p["name"], "part" if "part" in p else _value_key(p))
            for p in parameters
            if p["name"] != "notification-event"
        },
        "events": len(events),
        "parts": part_shapes,
        # Every reference the IG's examples make resolves to an entry of the Bundle.
        "references resolve": all(r in full_urls for r in references if r is not None),
        "logical references": sum(r is None for r in references),
        "entries": sorted(
            ("resource" in e, "request" in e, "response" in e, e["resource"]["resourceType"])
            for e in others
        ),
    }


def ours(kind: str, payload: str, events: list[NotificationEvent], **sub: Any) -> Shape:
    bundle = fn.notification_bundle(
        kind,  # type: ignore[arg-type]
        subscription(payload=payload, **sub),
        events,
        base=BASE,
        now=NOW,
    )
    validate_resource(bundle)
    return shape(bundle)


def ig(name: str) -> Shape:
    example = EXAMPLES[name]
    validate_resource(example)
    return shape(example)


def test_the_fixture_is_what_the_ig_publishes() -> None:
    """The fixture holds the seven R4 examples, each a valid R4 history Bundle profiled
    backport-subscription-notification-r4 whose first entry is the status Parameters."""
    names = sorted(k for k in EXAMPLES if not k.startswith("_"))
    assert names == sorted(
        f"r4-notification-{n}"
        for n in (
            "handshake",
            "heartbeat",
            "empty",
            "id-only",
            "full-resource",
            "multi-resource",
            "error",
        )
    )
    for name in names:
        s = ig(name)
        assert s["bundle"] == ("Bundle", "history", (fs.NOTIFICATION_PROFILE,))
        assert s["status"] == ("Parameters", (fs.STATUS_PROFILE,), True, "GET", True, "200")


@pytest.mark.parametrize(("kind", "name"), [("handshake", "handshake"), ("heartbeat", "heartbeat")])
def test_handshakes_and_heartbeats_are_shaped_as_the_ig_examples(kind: str, name: str) -> None:
    """An id-only subscription's handshake and heartbeat have exactly the shape of the IG's."""
    assert ours(kind, "id-only", []) == ig(f"r4-notification-{name}")


def test_empty_is_shaped_as_the_ig_example_but_without_topic() -> None:
    """empty: the IG example's shape, less ``topic``: the example carries it, but the
    profile it illustrates says topic "SHOULD NOT be present when using empty payloads"."""
    mine, theirs = ours("event-notification", "empty", [event()]), ig("r4-notification-empty")
    assert ("topic", "valueCanonical") in theirs["parameters"]
    theirs["parameters"].discard(("topic", "valueCanonical"))
    assert mine == theirs


def test_id_only_is_shaped_as_the_ig_examples() -> None:
    """id-only: the IG's id-only example plus the additional-context part its
    multi-resource example shows; our context references are by identifier (the profile:
    additional-context "MAY refer to non-FHIR objects"), so no further entries."""
    mine = ours("event-notification", "id-only", [event()])
    theirs = ig("r4-notification-id-only")
    assert mine["parts"] == ig("r4-notification-multi-resource")["parts"]
    assert mine["logical references"] == 3  # the child and two plans
    for same in ("bundle", "status", "parameters", "events", "entries"):
        assert mine[same] == theirs[same], same


@pytest.mark.parametrize("which", ["attendance", "nhs-number change"])
def test_full_resource_is_shaped_as_the_ig_multi_resource_example(which: str) -> None:
    """full-resource: as the IG's multi-resource example, every focus and additional-context
    reference resolves to an entry that holds the resource, with request and response."""
    ev = event() if which == "attendance" else change_event()
    mine = ours("event-notification", "full-resource", [ev])
    theirs = ig("r4-notification-multi-resource")
    for same in ("bundle", "status", "parameters", "events", "parts", "references resolve"):
        assert mine[same] == theirs[same], same
    assert mine["logical references"] == 0
    assert mine["entries"] and all(e[:3] == (True, True, True) for e in mine["entries"])


def test_a_status_in_error_is_shaped_as_the_ig_error_example() -> None:
    """A subscription in error: the status Parameters has the IG error example's shape,
    error as a valueCodeableConcept coded from the same code system."""
    sub = subscription(status="error", error="no response from the endpoint", events_since_start=3)
    mine = fs.status_bundle([sub], base=BASE, self_url=f"{BASE}/Subscription/$status")
    validate_resource(mine)
    (entry,) = mine["entry"]
    our_params = {(p["name"], _value_key(p)) for p in entry["resource"]["parameter"]}
    theirs = EXAMPLES["r4-notification-error"]["entry"][0]["resource"]["parameter"]
    assert our_params == {(p["name"], _value_key(p)) for p in theirs}
    (their_error,) = [p for p in theirs if p["name"] == "error"]
    (our_error,) = [p for p in entry["resource"]["parameter"] if p["name"] == "error"]
    assert (
        our_error["valueCodeableConcept"]["coding"][0]["system"]
        == (their_error["valueCodeableConcept"]["coding"][0]["system"])
    )
    assert our_error["valueCodeableConcept"]["coding"][0]["code"] == "no-response"


def test_our_extensions_are_the_only_addition_to_the_igs_notification_event() -> None:
    """Beyond the IG's parts, a notification-event carries only our two extensions (which
    FHIR allows on any element); no parameter or part of our own."""
    bundle = fn.notification_bundle(
        "event-notification", subscription(payload="full-resource"), [event()], base=BASE, now=NOW
    )
    (notification,) = [
        p for p in bundle["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"
    ]
    assert set(notification) == {"extension", "name", "part"}
    assert [e["url"] for e in notification["extension"]] == [
        fs.notification_id_extension(BASE),
        fs.event_type_extension(BASE),
    ]
    assert uuid.UUID(notification["extension"][0]["valueId"])
