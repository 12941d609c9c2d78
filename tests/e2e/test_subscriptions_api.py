"""LA FHIR Subscriptions over real HTTP: create, read, search, update, delete, $status, $events.

The dispatcher (which may run inside the served app) handshakes ``requested``
subscriptions and fans events out to ``active`` ones. Tests that need a
subscription nobody else changes create it with ``status: off`` (paused),
which the dispatcher leaves alone; ``$events`` rows are written here with SQL,
against real access events from real lookups.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import orjson

from cpis.fhir import notifications as fn
from cpis.fhir import subscriptions as fs
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model.notifications import Subscription
from tests.e2e.conftest import (
    E2E,
    ED_CLIENT,
    LA_NORTH,
    LA_NORTH_CLIENT,
    LA_SOUTH_CLIENT,
    NHS_SYSTEM,
    Reply,
    error_code,
    user_headers,
)
from tests.fhir_validation import validate_resource
from tests.polling import wait_until
from tests.ports import free_port

(CHILD,) = synthetic_numbers(1, start=701)
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def topic(e2e: E2E) -> str:
    return f"{e2e.fhir_base}/SubscriptionTopic/cpis-attendance"


def subscription_body(e2e: E2E, *, status: str = "requested", **channel: Any) -> dict[str, Any]:
    """A good Subscription body; the endpoint refuses connections, so nothing is delivered."""
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": status,
        "reason": "Unscheduled-care attendances of our children",
        "criteria": topic(e2e),
        "channel": {
            "extension": [{"url": fs.HEARTBEAT_EXT, "valueUnsignedInt": 3600}],
            "type": "rest-hook",
            "endpoint": f"http://127.0.0.1:{free_port()}/cpis-hook",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": fs.PAYLOAD_CONTENT_EXT, "valueCode": "id-only"}]},
            "header": ["Authorization: Bearer cms-secret"],
        },
    }
    body["channel"].update(channel)
    return body


async def call(
    e2e: E2E,
    method: str,
    path: str,
    client_id: str = LA_NORTH_CLIENT,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Reply:
    all_headers = {**await e2e.auth(client_id), **FHIR_JSON, **(headers or {})}
    if body is not None:
        kwargs["json"] = body
    return await e2e.request(method, f"/FHIR/R4/{path}", headers=all_headers, **kwargs)


async def create(e2e: E2E, client_id: str = LA_NORTH_CLIENT, **body_args: Any) -> dict[str, Any]:
    reply = await call(
        e2e, "POST", "Subscription", client_id, body=subscription_body(e2e, **body_args)
    )
    assert reply.status == 201, reply.text
    return reply.fhir()


async def test_create_stores_a_requested_subscription_for_the_handshake(e2e: E2E) -> None:
    """POST answers 201 with Location and ETag and the subscription as valid R4, status
    ``requested`` (the dispatcher's handshake makes it active), scoped to the caller's LA
    and storing the endpoint, headers, payload and heartbeat asked for."""
    reply = await call(e2e, "POST", "Subscription", body=subscription_body(e2e))
    assert reply.status == 201, reply.text
    created = reply.fhir()
    sub_id = created["id"]
    assert reply.headers["Location"] == f"{e2e.fhir_base}/Subscription/{sub_id}/_history/1"
    assert reply.headers["ETag"] == 'W/"1"'
    assert created["status"] == "requested"
    assert created["criteria"] == topic(e2e)
    assert created["_criteria"]["extension"][0]["valueString"] == "AuditEvent?local-authority=XLA01"
    # Not its status: the dispatcher may already have tried the handshake.
    (row,) = await e2e.fetch("SELECT * FROM subscription WHERE id = $1", uuid.UUID(sub_id))
    assert (row["la_ods"], row["client_id"], row["payload"]) == (
        "XLA01",
        LA_NORTH_CLIENT,
        "id-only",
    )
    # channel headers carry the LA's endpoint secret: sealed at rest, returned to the LA
    assert len(row["headers"]) == 1
    assert "cms-secret" not in row["headers"][0]
    assert created["channel"]["header"] == ["Authorization: Bearer cms-secret"]
    assert row["heartbeat_seconds"] == 3600
    assert row["events_since_start"] == 0


async def test_la_reads_searches_updates_and_deletes_its_subscription(e2e: E2E) -> None:
    """A paused subscription (which the dispatcher leaves alone, so its version is ours):
    read and search (by status and by url) return it as valid R4; PUT with a stale If-Match
    is 412 and changes nothing, with the current one replaces it; DELETE is 204 and then it
    is 404 and gone from search."""
    created = await create(e2e, status="off")
    sub_id = created["id"]

    read = await call(e2e, "GET", f"Subscription/{sub_id}")
    assert read.status == 200
    assert read.fhir() == created
    assert read.headers["ETag"] == 'W/"1"'
    assert "Last-Modified" in read.headers

    found = await call(e2e, "GET", "Subscription")
    assert found.status == 200
    bundle = found.fhir()
    assert bundle["total"] == 1
    assert bundle["entry"][0]["fullUrl"] == f"{e2e.fhir_base}/Subscription/{sub_id}"
    by_status = (await call(e2e, "GET", "Subscription", params={"status": "active"})).fhir()
    assert by_status["total"] == 0
    bad_search = await call(e2e, "GET", "Subscription", params={"status": "on"})
    assert bad_search.status == 400
    # url (the IG's R4 server CapabilityStatement): the channel endpoint, exactly.
    endpoint = created["channel"]["endpoint"]
    by_url = (await call(e2e, "GET", "Subscription", params={"url": endpoint})).fhir()
    assert [e["resource"]["id"] for e in by_url["entry"]] == [sub_id]
    other_url = {"url": "https://cms.example.gov.uk/elsewhere"}
    assert (await call(e2e, "GET", "Subscription", params=other_url)).fhir()["total"] == 0

    new_body = {**subscription_body(e2e, status="off"), "id": sub_id}
    new_body["channel"]["_payload"]["extension"][0]["valueCode"] = "full-resource"
    stale = await call(
        e2e, "PUT", f"Subscription/{sub_id}", body=new_body, headers={"If-Match": 'W/"99"'}
    )
    assert stale.status == 412
    assert error_code(stale.fhir()) == "RESOURCE_VERSION_MISMATCH"
    assert (await e2e.fetch("SELECT payload, version FROM subscription"))[0]["version"] == 1

    updated = await call(
        e2e, "PUT", f"Subscription/{sub_id}", body=new_body, headers={"If-Match": 'W/"1"'}
    )
    assert updated.status == 200, updated.text
    assert updated.headers["ETag"] == 'W/"2"'
    assert updated.fhir()["channel"]["_payload"]["extension"][0]["valueCode"] == "full-resource"

    stale_delete = await call(
        e2e, "DELETE", f"Subscription/{sub_id}", headers={"If-Match": 'W/"1"'}
    )
    assert stale_delete.status == 412
    gone = await call(e2e, "DELETE", f"Subscription/{sub_id}", headers={"If-Match": 'W/"2"'})
    assert gone.status == 204
    assert (await call(e2e, "GET", f"Subscription/{sub_id}")).status == 404
    assert (await call(e2e, "DELETE", f"Subscription/{sub_id}")).status == 404
    assert (await call(e2e, "GET", "Subscription")).fhir()["total"] == 0
    assert (await e2e.counts("subscription"))["subscription"] == 0


async def test_another_la_can_neither_see_nor_touch_a_subscription(e2e: E2E) -> None:
    """Southborough gets 404 for Northshire's subscription on every route (as if it did not
    exist), does not find it by search, and cannot subscribe with Northshire's filter."""
    sub = await create(e2e, status="off")
    path = f"Subscription/{sub['id']}"
    other = LA_SOUTH_CLIENT
    for method, target, body in [
        ("GET", path, None),
        ("PUT", path, {**subscription_body(e2e, status="off"), "id": sub["id"]}),
        ("DELETE", path, None),
        ("GET", f"{path}/$status", None),
        ("GET", f"{path}/$events", None),
    ]:
        reply = await call(e2e, method, target, other, body=body)
        assert reply.status == 404, (method, target, reply.text)
        assert error_code(reply.fhir()) == "RESOURCE_NOT_FOUND"
    assert (await call(e2e, "GET", "Subscription", other)).fhir()["total"] == 0

    forged = subscription_body(e2e)
    forged["_criteria"] = {
        "extension": [{"url": fs.FILTER_EXT, "valueString": "AuditEvent?local-authority=XLA01"}]
    }
    reply = await call(e2e, "POST", "Subscription", other, body=forged)
    assert reply.status == 403
    assert error_code(reply.fhir()) == "ACCESS_DENIED"
    (row,) = await e2e.fetch("SELECT la_ods, status, version FROM subscription")
    assert (row["la_ods"], row["status"], row["version"]) == ("XLA01", "off", 1)


async def test_health_clients_and_anonymous_callers_are_refused(e2e: E2E) -> None:
    """Subscriptions are for LA clients: an ED client gets 403, no token 401."""
    reply = await call(e2e, "POST", "Subscription", ED_CLIENT, body=subscription_body(e2e))
    assert reply.status == 403
    assert error_code(reply.fhir()) == "ACCESS_DENIED"
    assert (await call(e2e, "GET", "Subscription", ED_CLIENT)).status == 403
    anonymous = await e2e.request("GET", "/FHIR/R4/Subscription")
    assert anonymous.status == 401
    assert (await e2e.counts("subscription"))["subscription"] == 0


async def test_bad_bodies_are_refused_and_store_nothing(e2e: E2E) -> None:
    """Not JSON: 415; broken JSON or not a Subscription: 400; against this service's rules:
    422 naming the element. Nothing is stored for any of them."""
    url = f"{e2e.base}/FHIR/R4/Subscription"
    auth = await e2e.auth(LA_NORTH_CLIENT)
    xml = await e2e.request(
        "POST",
        url,
        headers={**auth, "Content-Type": "application/fhir+xml"},
        data=b"<Subscription/>",
    )
    assert xml.status == 415
    assert error_code(xml.fhir()) == "UNSUPPORTED_VALUE"
    broken = await e2e.request("POST", url, headers={**auth, **FHIR_JSON}, data=b'{"resourceType":')
    assert broken.status == 400

    good = subscription_body(e2e)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**good, "resourceType": "Patient"}, 400, "resourceType"),
        ({**good, "colour": "red"}, 400, "Subscription.colour"),
        ({**good, "criteria": "AuditEvent?patient:identifier=x"}, 422, "Subscription.criteria"),
        (
            {**good, "channel": {**good["channel"], "endpoint": "http://cms.example.gov.uk/h"}},
            422,
            "Subscription.channel.endpoint",
        ),
        (
            {**good, "channel": {**good["channel"], "header": ["X-JWS-Signature: forged"]}},
            422,
            "Subscription.channel.header",
        ),
    ]
    for body, status, expression in cases:
        reply = await call(e2e, "POST", "Subscription", body=body)
        assert reply.status == status, (expression, reply.text)
        outcome = reply.fhir()
        assert outcome["issue"][0]["expression"] == [expression]
    mismatched = await call(e2e, "POST", "Subscription", body=subscription_body(e2e, status="off"))
    sub_id = mismatched.fhir()["id"]
    reply = await call(e2e, "PUT", f"Subscription/{sub_id}", body={**good, "id": str(uuid.uuid4())})
    assert reply.status == 400
    assert (await e2e.counts("subscription"))["subscription"] == 1


async def test_status_reports_the_subscription_as_the_ig_says(e2e: E2E) -> None:
    """$status: a searchset Bundle with one query-status Parameters naming the subscription,
    the topic, its status and the events since it started."""
    sub = await create(e2e, status="off")
    await e2e.db.execute(
        "UPDATE subscription SET events_since_start = 12 WHERE id = $1", uuid.UUID(sub["id"])
    )
    reply = await call(e2e, "GET", f"Subscription/{sub['id']}/$status")
    assert reply.status == 200, reply.text
    bundle = reply.fhir()
    assert bundle["type"] == "searchset"
    (entry,) = bundle["entry"]
    values = {p["name"]: p for p in entry["resource"]["parameter"]}
    assert values["subscription"]["valueReference"]["reference"] == (
        f"{e2e.fhir_base}/Subscription/{sub['id']}"
    )
    assert values["topic"]["valueCanonical"] == topic(e2e)
    assert values["status"]["valueCode"] == "off"
    assert values["type"]["valueCode"] == "query-status"
    assert values["events-since-subscription-start"]["valueString"] == "12"
    unknown = await call(e2e, "GET", f"Subscription/{uuid.uuid4()}/$status")
    assert unknown.status == 404


def notification_id(e2e: E2E, event: dict[str, Any]) -> str:
    """The notification id (the de-duplication key) a notification-event carries."""
    (value,) = [
        x["valueId"]
        for x in event.get("extension", [])
        if x["url"] == f"{e2e.fhir_base}/StructureDefinition/notification-id"
    ]
    return str(value)


def statuses(bundle: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """A $status searchset as subscription id -> parameter name -> parameter."""
    out = {}
    for entry in bundle.get("entry", []):
        params = {p["name"]: p for p in entry["resource"]["parameter"]}
        out[params["subscription"]["valueReference"]["reference"].rsplit("/", 1)[-1]] = params
    return out


async def test_type_level_status_reports_all_of_the_callers_subscriptions(e2e: E2E) -> None:
    """GET Subscription/$status (the IG's operation at the type level) answers with one
    query-status Parameters for each of the caller's LA's subscriptions, never another LA's;
    id and status narrow it, repeated or comma-separated values are OR-ed, and an id of
    another LA's subscription matches nothing."""
    mine = [await create(e2e, status="off") for _ in range(3)]
    theirs = await create(e2e, LA_SOUTH_CLIENT, status="off")
    await e2e.db.execute(
        "UPDATE subscription SET status = 'active' WHERE id = $1", uuid.UUID(mine[1]["id"])
    )
    await e2e.db.execute(
        "UPDATE subscription SET status = 'error', error = 'no response from the endpoint'"
        " WHERE id = $1",
        uuid.UUID(mine[2]["id"]),
    )
    ids = [m["id"] for m in mine]

    everything = await call(e2e, "GET", "Subscription/$status")
    assert everything.status == 200, everything.text
    bundle = everything.fhir()
    validate_resource(bundle)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 3
    found = statuses(bundle)
    assert set(found) == set(ids)
    assert {i: found[i]["status"]["valueCode"] for i in ids} == dict(
        zip(ids, ["off", "active", "error"], strict=True)
    )
    assert all(f["type"]["valueCode"] == "query-status" for f in found.values())
    assert "error" in found[ids[2]] and "error" not in found[ids[1]]

    cases: list[tuple[dict[str, Any] | list[tuple[str, str]], set[str]]] = [
        ({"status": "active"}, {ids[1]}),
        ([("status", "off"), ("status", "error")], {ids[0], ids[2]}),
        ({"status": "off,error"}, {ids[0], ids[2]}),
        ([("id", ids[0]), ("id", ids[1])], {ids[0], ids[1]}),
        ({"id": f"{ids[0]},{ids[2]}", "status": "error"}, {ids[2]}),
        ({"id": theirs["id"]}, set()),
        ({"id": "not-a-uuid"}, set()),
    ]
    for params, expected in cases:
        reply = await call(e2e, "GET", "Subscription/$status", params=params)
        assert reply.status == 200, (params, reply.text)
        assert set(statuses(reply.fhir())) == expected, params

    south = statuses((await call(e2e, "GET", "Subscription/$status", LA_SOUTH_CLIENT)).fhir())
    assert set(south) == {theirs["id"]}

    for bad in ({"status": "on"}, {"id": "a/b"}, {"patient": "1"}):
        refused = await call(e2e, "GET", "Subscription/$status", params=bad)
        assert refused.status == 400, (bad, refused.text)
        assert error_code(refused.fhir()) == "INVALID_SEARCH_DATA"
    assert (await call(e2e, "GET", "Subscription/$status", ED_CLIENT)).status == 403
    assert (await e2e.request("GET", "/FHIR/R4/Subscription/$status")).status == 401


async def test_status_and_events_also_answer_post_with_parameters(e2e: E2E) -> None:
    """The operations change nothing, so FHIR allows both GET and POST: POST with a
    Parameters body gives the same answer as GET with the same parameters; a body that is
    not Parameters is 400."""
    mine = [await create(e2e, status="off") for _ in range(2)]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "id", "valueId": mine[1]["id"]},
            {"name": "status", "valueCode": "off"},
        ],
    }
    posted = await call(e2e, "POST", "Subscription/$status", body=body)
    assert posted.status == 200, posted.text
    validate_resource(posted.fhir())
    assert set(statuses(posted.fhir())) == {mine[1]["id"]}
    nothing = await call(e2e, "POST", "Subscription/$status")
    assert set(statuses(nothing.fhir())) == {m["id"] for m in mine}

    instance = await call(e2e, "POST", f"Subscription/{mine[0]['id']}/$status")
    assert instance.status == 200, instance.text
    assert set(statuses(instance.fhir())) == {mine[0]["id"]}

    replay = await call(
        e2e,
        "POST",
        f"Subscription/{mine[0]['id']}/$events",
        body={
            "resourceType": "Parameters",
            "parameter": [{"name": "content", "valueCode": "empty"}],
        },
    )
    assert replay.status == 200, replay.text
    assert replay.fhir()["type"] == "history"

    for bad in (
        {"resourceType": "Patient"},
        {"resourceType": "Parameters", "parameter": [{"name": "id"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "colour", "valueString": "red"}]},
    ):
        refused = await call(e2e, "POST", "Subscription/$status", body=bad)
        assert refused.status == 400, (bad, refused.text)


async def test_a_failed_handshake_shows_as_the_igs_error_parameter(e2e: E2E) -> None:
    """The dispatcher's handshake to an endpoint that refuses connections puts the
    subscription in error; $status (instance and type level) then carries the IG's error
    parameter, coded no-response from terminology.hl7.org's subscription-error, with the
    reason as text; an empty-content subscription's status has no topic."""
    sub = await create(e2e, **{"_payload": {"extension": [
        {"url": fs.PAYLOAD_CONTENT_EXT, "valueCode": "empty"}]}})  # fmt: skip

    async def errored() -> bool:
        rows = await e2e.fetch(
            "SELECT status FROM subscription WHERE id = $1", uuid.UUID(sub["id"])
        )
        return rows[0]["status"] == "error"

    await wait_until(errored, what="the handshake to fail")
    for path, params in (
        (f"Subscription/{sub['id']}/$status", None),
        ("Subscription/$status", {"status": "error"}),
    ):
        reply = await call(e2e, "GET", path, params=params)
        assert reply.status == 200, reply.text
        validate_resource(reply.fhir())
        found = statuses(reply.fhir())[sub["id"]]
        assert found["status"]["valueCode"] == "error"
        concept = found["error"]["valueCodeableConcept"]
        assert concept["coding"] == [
            {
                "system": "http://terminology.hl7.org/CodeSystem/subscription-error",
                "code": "no-response",
                "display": "No response",
            }
        ]
        assert concept["text"] == "no response from the endpoint"
        assert "topic" not in found
    read = (await call(e2e, "GET", f"Subscription/{sub['id']}")).fhir()
    assert read["error"] == concept["text"]


async def lookups(e2e: E2E, users: list[str]) -> list[dict[str, Any]]:
    """One unscheduled CareTeam lookup of CHILD per user; the outbox rows for Northshire."""
    for user in users:
        reply = await e2e.search("CareTeam", CHILD, headers=user_headers(user, name=f"User {user}"))
        assert reply.status == 200, reply.text
    rows = await e2e.fetch(
        "SELECT notification_id, access_event_id FROM outbox WHERE la_ods = $1 ORDER BY created_at",
        LA_NORTH.ods_code,
    )
    assert len(rows) == len(users)
    return [dict(r) for r in rows]


async def test_events_replays_stored_deliveries_from_the_log(e2e: E2E) -> None:
    """$events returns the numbered deliveries of this subscription as a query-event history
    Bundle: each notification-event has its number, time, its notification id (our
    extension), a focus on an AuditEvent the LA can read, and as additional-context parts the
    child's NHS number and the LA's plan id; the range and content parameters are honoured,
    and bad ones are 400."""
    start = (e2e.runtime.clock.today() - timedelta(days=30)).isoformat()
    await e2e.put_plan(
        LA_NORTH_CLIENT, "N-CPP-9", nhs_number=CHILD, plan_type="CPP", start_date=start
    )
    sub = await create(e2e, status="off")
    outbox = await lookups(e2e, ["555000000011", "555000000012", "555000000013"])
    for number, row in enumerate(outbox, start=1):
        await e2e.db.execute(
            "INSERT INTO delivery (notification_id, la_ods, channel, target, event_number, state,"
            " next_attempt_at, created_at) VALUES ($1, 'XLA01', 'rest-hook', $2, $3, 'delivered',"
            " now(), now())",
            row["notification_id"],
            sub["id"],
            number,
        )

    reply = await call(e2e, "GET", f"Subscription/{sub['id']}/$events")
    assert reply.status == 200, reply.text
    bundle = reply.fhir()
    validate_resource(bundle)
    assert bundle["type"] == "history"
    params = bundle["entry"][0]["resource"]["parameter"]
    assert {p["name"]: p.get("valueCode") for p in params}["type"] == "query-event"
    assert "additional-context" not in {p["name"] for p in params}
    events = [p for p in params if p["name"] == "notification-event"]
    assert [e["part"][0]["valueString"] for e in events] == ["1", "2", "3"]
    assert [notification_id(e2e, e) for e in events] == [str(r["notification_id"]) for r in outbox]
    for event in events:
        context = [p["valueReference"] for p in event["part"] if p["name"] == "additional-context"]
        viewer = context.pop(0)
        assert viewer["type"] == "PractitionerRole"
        assert viewer["reference"].startswith(f"{e2e.fhir_base}/PractitionerRole/")
        assert context == [
            {"type": "Patient", "identifier": {"system": NHS_SYSTEM, "value": CHILD}},
            {
                "type": "CareTeam",
                "identifier": {"system": f"{e2e.fhir_base}/la/XLA01/plan-id", "value": "N-CPP-9"},
            },
        ]
    focus = {part["name"]: part for part in events[0]["part"]}["focus"]["valueReference"]
    assert focus["reference"] == f"{e2e.fhir_base}/AuditEvent/{outbox[0]['access_event_id']}"
    audit = await e2e.request("GET", focus["reference"], headers=await e2e.auth(LA_NORTH_CLIENT))
    assert audit.status == 200, audit.text
    # What id-only leaves out of the notification the LA reads here: setting and user.
    assert audit.fhir()["resourceType"] == "AuditEvent"
    assert "XED01" in audit.text and "User 555000000011" in audit.text
    # And who looked, as the ED sees them: the viewer's PractitionerRole, by its URL.
    viewer_url = next(
        p["valueReference"] for p in events[0]["part"] if p["name"] == "additional-context"
    )["reference"]
    role = await e2e.request("GET", viewer_url, headers=await e2e.auth(LA_NORTH_CLIENT))
    assert role.status == 200, role.text
    assert role.fhir()["practitioner"]["display"] == "User 555000000011"

    ranged = await call(
        e2e,
        "GET",
        f"Subscription/{sub['id']}/$events",
        params={"eventsSinceNumber": "2", "eventsUntilNumber": "2", "content": "empty"},
    )
    assert ranged.status == 200, ranged.text
    one = ranged.fhir()
    validate_resource(one)
    ps = one["entry"][0]["resource"]["parameter"]
    (only,) = [p for p in ps if p["name"] == "notification-event"]
    assert only["part"][0]["valueString"] == "2"
    assert one["id"] == str(outbox[1]["notification_id"])
    assert notification_id(e2e, only) == str(outbox[1]["notification_id"])
    assert {p["name"] for p in only["part"]} == {"event-number", "timestamp"}
    assert "topic" not in {p["name"] for p in ps}
    assert CHILD not in ranged.text

    full = await call(
        e2e, "GET", f"Subscription/{sub['id']}/$events", params={"content": "full-resource"}
    )
    full_bundle = full.fhir()
    validate_resource(full_bundle)
    types = [e["resource"]["resourceType"] for e in full_bundle["entry"]]
    assert types[0] == "Parameters"
    # each event's AuditEvent, its viewer (three users here), the child and the plan
    assert sorted(types[1:]) == (
        ["AuditEvent"] * 3 + ["CareTeam"] * 3 + ["Patient"] * 3 + ["PractitionerRole"] * 3
    )

    for bad in (
        {"eventsSinceNumber": "0"},
        {"eventsSinceNumber": "x"},
        {"eventsSinceNumber": "3", "eventsUntilNumber": "2"},
        {"content": "everything"},
        {"patient": "1"},
    ):
        refused = await call(e2e, "GET", f"Subscription/{sub['id']}/$events", params=bad)
        assert refused.status == 400, (bad, refused.text)
        assert error_code(refused.fhir()) == "INVALID_SEARCH_DATA"
    assert CHILD not in "".join(r.text for r in e2e.replies if r.status >= 400)


async def test_metadata_lists_the_subscription_topic(e2e: E2E) -> None:
    """An LA system discovers what to subscribe to from /metadata, without a token."""
    reply = await e2e.request("GET", "/FHIR/R4/metadata")
    assert reply.status == 200
    (rest,) = reply.fhir()["rest"]
    (sub,) = [r for r in rest["resource"] if r["type"] == "Subscription"]
    assert sub["extension"] == [{"url": fs.TOPIC_CANONICAL_EXT, "valueCanonical": topic(e2e)}]


async def test_notification_signatures_verify_with_the_served_jwks(e2e: E2E) -> None:
    """A body signed by the service's signer (as the dispatcher signs each notification)
    verifies against the JWKS served at /.well-known/jwks.json, as an LA would check it."""
    from cpis.adapters.signing import DetachedSigner, verify_detached

    sub = await create(e2e, status="off")
    body = orjson.dumps(
        fn.notification_bundle(
            "heartbeat", fs_subscription(sub, e2e), base=e2e.fhir_base, now=e2e.runtime.clock.now()
        )
    )
    signature = DetachedSigner(e2e.runtime.keys.signing_key).sign_detached(body)
    jwks = (await e2e.request("GET", "/.well-known/jwks.json")).json()
    assert verify_detached(body, signature, jwks)
    assert not verify_detached(body.replace(b"heartbeat", b"handshake"), signature, jwks)


def fs_subscription(resource: dict[str, Any], e2e: E2E) -> Subscription:
    """The stored value behind a Subscription the API returned (enough to build bundles)."""
    now = e2e.runtime.clock.now()
    return Subscription(
        id=uuid.UUID(resource["id"]),
        la_ods=LA_NORTH.ods_code,
        client_id=LA_NORTH_CLIENT,
        status=resource["status"],
        topic=resource["criteria"],
        reason=resource["reason"],
        endpoint=resource["channel"]["endpoint"],
        headers=tuple(resource["channel"].get("header", ())),
        payload="id-only",
        heartbeat_seconds=None,
        timeout_seconds=10,
        end_at=None,
        events_since_start=0,
        last_sent_at=None,
        error=None,
        version=1,
        created_at=now,
        updated_at=now,
    )
